//! Named objects (`create_named` / `open_named`) across real processes.
//!
//! Every object lives in `/dev/shm/aiop.<name>`; names here are unique to a
//! run and a test (`t<pid>-<test>`), and a [`Names`] guard removes them even
//! when a test fails half-way, so tests run in parallel and leave nothing
//! in `/dev/shm`.
//!
//! What is proven:
//!
//! * A second, unrelated program (this test binary started again with
//!   `std::process::Command`, running the ignored helper
//!   `named_helper_program`, which gets nothing but a name in its
//!   environment) opens a `Lock`, two `Event`s and a `Value` by name: it
//!   holds the lock while the parent sees `WouldBlock`, waits on an event the
//!   parent sets, and its writes under the lock are seen by the parent. When
//!   it is SIGKILLed holding the lock, the parent's next `lock()` reports
//!   `OwnerDied`.
//! * Errors: opening a missing name is `NotFound`; opening an object as
//!   another kind is `InvalidData` with a message naming both kinds (every
//!   pair of the eleven named kinds); a `Value<u64>` opened as `Value<u32>`
//!   or as a `RawValue` is `InvalidData`; `create_named` of a taken name is
//!   `AlreadyExists`; bad names are `InvalidInput`.
//! * Every named kind round-trips: `Lock`, `RLock`, `Semaphore`,
//!   `BoundedSemaphore`, `Event`, `Condition`, `Barrier`, `Value`, `Array`,
//!   `RawValue`, `RawArray` are created here, opened by a child that is given
//!   only the name string, and both sides see each other's effects.
//! * Lifetime: the name goes from `/dev/shm` when the creator drops its last
//!   handle, even while a child (that opened it by name, or received the
//!   handle) still uses the object; a process that only opened it does not
//!   remove it; a child that creates a name and returns removes it.
//! * A name left by a SIGKILLed creator is stale: `create_named` refuses it
//!   with `AlreadyExists` and a message saying it is stale, `is_stale` is
//!   true, `stale()` lists it, its lock reports `OwnerDied`, and after
//!   `remove` the name can be created again.

aiop::test_support!();

mod common;

use std::io::{self, ErrorKind};
use std::process::{Command, Stdio};

use aiop::blocking::process::{Process, StartMethod};
use aiop::blocking::shared::{Array, RawArray, RawValue, Value};
use aiop::blocking::sync::{
    Barrier, BoundedSemaphore, Condition, Event, Lock, OverReleaseError, RLock, Semaphore,
};
use aiop::named;
use common::{GENEROUS, park_forever};

const METHODS: [StartMethod; 2] = [StartMethod::SPAWN, StartMethod::FORK_SERVER];

/// A name unique to this run of this test binary and to `test`.
fn unique(test: &str) -> String {
    format!("t{}-{test}", std::process::id())
}

/// Whether `/dev/shm` holds the name.
fn exists(name: &str) -> bool {
    std::path::Path::new(&format!("/dev/shm/{}{name}", named::PREFIX)).exists()
}

/// Removes its names when dropped, whatever happened: declare it before the
/// objects, so that it runs after them (on success it finds nothing).
struct Names(Vec<String>);

impl Names {
    fn new<const N: usize>(names: [&str; N]) -> Names {
        Names(names.iter().map(|n| n.to_string()).collect())
    }
}

impl Drop for Names {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = named::remove(n);
        }
    }
}

fn expect_event(ev: &Event, what: &str) {
    assert!(ev.wait_timeout(GENEROUS), "timed out waiting until {what}");
}

fn assert_kind<T>(r: io::Result<T>, kind: ErrorKind, what: &str) -> String {
    match r {
        Ok(_) => panic!("{what}: succeeded, expected {kind:?}"),
        Err(e) => {
            assert_eq!(e.kind(), kind, "{what}: {e}");
            e.to_string()
        }
    }
}

// ---------------------------------------------------------------------------
// An unrelated program

/// The base name the helper program works on; its absence means "not
/// started as the helper".
const HELPER_NAME: &str = "AIOP_NAMED_TEST_HELPER_NAME";
/// What the helper does while it holds the lock: `release` (wait for the
/// `go` event, then release) or `die` (wait to be killed).
const HELPER_MODE: &str = "AIOP_NAMED_TEST_HELPER_MODE";

/// Not a test: the "unrelated program" of the tests below, which start this
/// binary again to run only this function. It gets nothing from them but a
/// base name in its environment, and opens everything by name.
#[test]
#[ignore = "a helper program, started by the named-object tests"]
fn named_helper_program() {
    let Ok(base) = std::env::var(HELPER_NAME) else {
        return;
    };
    let mode = std::env::var(HELPER_MODE).expect("a mode");
    let lock = Lock::open_named(&format!("{base}-lock")).unwrap();
    let ready = Event::open_named(&format!("{base}-ready")).unwrap();
    let go = Event::open_named(&format!("{base}-go")).unwrap();
    let value = Value::<u64>::open_named(&format!("{base}-value")).unwrap();
    let guard = lock.lock().unwrap();
    *value.lock().unwrap() += 1;
    ready.set();
    if mode == "die" {
        park_forever()
    }
    expect_event(&go, "the test lets go");
    *value.lock().unwrap() *= 10;
    drop(guard);
}

/// A helper program; killed (and reaped) if the test gives up on it.
struct Helper(Option<std::process::Child>);

impl Helper {
    fn start(base: &str, mode: &str) -> Helper {
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "named_helper_program",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(HELPER_NAME, base)
            .env(HELPER_MODE, mode)
            .env_remove("AIOP_CHILD")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Helper(Some(child))
    }

    /// Waits for it to end; panics with its output unless it passed.
    fn finish(mut self) {
        let out = self.0.take().unwrap().wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "the helper failed: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// SIGKILLs it and reaps it.
    fn kill(mut self) {
        let mut child = self.0.take().unwrap();
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The objects the helper opens, created here.
struct HelperObjects {
    base: String,
    lock: Lock,
    ready: Event,
    go: Event,
    value: Value<u64>,
}

impl HelperObjects {
    fn create(base: String) -> HelperObjects {
        HelperObjects {
            lock: Lock::create_named(&format!("{base}-lock")).unwrap(),
            ready: Event::create_named(&format!("{base}-ready")).unwrap(),
            go: Event::create_named(&format!("{base}-go")).unwrap(),
            value: Value::create_named(&format!("{base}-value"), 41u64).unwrap(),
            base,
        }
    }

    fn names(base: &str) -> Names {
        Names(
            ["lock", "ready", "go", "value"]
                .iter()
                .map(|s| format!("{base}-{s}"))
                .collect(),
        )
    }
}

#[test]
fn a_separate_program_opens_a_lock_events_and_a_value_by_name() {
    let base = unique("helper-release");
    let _names = HelperObjects::names(&base);
    let o = HelperObjects::create(base);
    let helper = Helper::start(&o.base, "release");
    expect_event(&o.ready, "the helper holds the lock");
    assert!(o.lock.try_lock().unwrap_err().is_would_block());
    assert!(o.lock.is_locked() && !o.lock.is_held_here());
    assert_eq!(o.value.get(), 42);
    o.go.set();
    // Its last write under the lock is visible to the next holder.
    let guard = o.lock.lock_timeout(GENEROUS).unwrap();
    assert_eq!(o.value.get(), 420);
    drop(guard);
    helper.finish();
    let base = o.base.clone();
    drop(o);
    for s in ["lock", "ready", "go", "value"] {
        assert!(!exists(&format!("{base}-{s}")), "{s} left in /dev/shm");
    }
}

#[test]
fn a_separate_program_killed_holding_a_named_lock_hands_it_on_as_owner_died() {
    let base = unique("helper-die");
    let _names = HelperObjects::names(&base);
    let o = HelperObjects::create(base);
    let helper = Helper::start(&o.base, "die");
    expect_event(&o.ready, "the helper holds the lock");
    assert!(o.lock.try_lock().unwrap_err().is_would_block());
    helper.kill();
    let died = o.lock.lock().unwrap_err();
    drop(died);
    assert!(o.lock.try_lock().is_ok());
    assert_eq!(o.value.get(), 42);
}

// ---------------------------------------------------------------------------
// Errors

/// The eleven named kinds, for the error matrix.
const KINDS: [&str; 11] = [
    "Lock",
    "RLock",
    "Semaphore",
    "BoundedSemaphore",
    "Event",
    "Condition",
    "Barrier",
    "Value",
    "Array",
    "RawValue",
    "RawArray",
];

/// What the header of kind `k` calls itself in messages ("a Lock").
fn article(k: usize) -> String {
    let name = match KINDS[k] {
        "RawValue" => "Value",
        "RawArray" => "Array",
        n => n,
    };
    let an = matches!(name.as_bytes()[0], b'A' | b'E' | b'R');
    format!("{} {name}", if an { "an" } else { "a" })
}

/// Creates an object of kind `k` named `name`; returns something that keeps it.
fn try_create_kind(k: usize, name: &str) -> io::Result<Box<dyn std::any::Any>> {
    fn keep<T: 'static>(r: io::Result<T>) -> io::Result<Box<dyn std::any::Any>> {
        r.map(|t| Box::new(t) as Box<dyn std::any::Any>)
    }
    match KINDS[k] {
        "Lock" => keep(Lock::create_named(name)),
        "RLock" => keep(RLock::create_named(name)),
        "Semaphore" => keep(Semaphore::create_named(name, 1)),
        "BoundedSemaphore" => keep(BoundedSemaphore::create_named(name, 1)),
        "Event" => keep(Event::create_named(name)),
        "Condition" => keep(Condition::create_named(name)),
        "Barrier" => keep(Barrier::create_named(name, 2)),
        "Value" => keep(Value::create_named(name, 1u64)),
        "Array" => keep(Array::create_named(name, &[1u64, 2])),
        "RawValue" => keep(RawValue::create_named(name, 1u64)),
        "RawArray" => keep(RawArray::create_named(name, &[1u64, 2])),
        _ => unreachable!(),
    }
}

/// Opens `name` as kind `k`.
fn open_kind(k: usize, name: &str) -> io::Result<()> {
    match KINDS[k] {
        "Lock" => Lock::open_named(name).map(drop),
        "RLock" => RLock::open_named(name).map(drop),
        "Semaphore" => Semaphore::open_named(name).map(drop),
        "BoundedSemaphore" => BoundedSemaphore::open_named(name).map(drop),
        "Event" => Event::open_named(name).map(drop),
        "Condition" => Condition::open_named(name).map(drop),
        "Barrier" => Barrier::open_named(name).map(drop),
        "Value" => Value::<u64>::open_named(name).map(drop),
        "Array" => Array::<u64>::open_named(name).map(drop),
        "RawValue" => RawValue::<u64>::open_named(name).map(drop),
        "RawArray" => RawArray::<u64>::open_named(name).map(drop),
        _ => unreachable!(),
    }
}

#[test]
fn every_kind_refuses_to_be_opened_as_another() {
    let names: Vec<String> = (0..KINDS.len())
        .map(|k| unique(&format!("kinds-{k}")))
        .collect();
    let _names = Names(names.clone());
    for (k, name) in names.iter().enumerate() {
        let what = KINDS[k];
        assert_kind(open_kind(k, name), ErrorKind::NotFound, what);
        let keep = try_create_kind(k, name).unwrap();
        open_kind(k, name).unwrap_or_else(|e| panic!("{what} as itself: {e}"));
        for j in (0..KINDS.len()).filter(|&j| j != k) {
            let ctx = format!("{what} opened as {}", KINDS[j]);
            let msg = assert_kind(open_kind(j, name), ErrorKind::InvalidData, &ctx);
            if article(k) == article(j) {
                // A Value and a RawValue share a header kind: the payload
                // protocol tells them apart.
                assert!(
                    msg.contains("raw (lock-free)") && msg.contains("locked"),
                    "{ctx}: {msg}"
                );
            } else {
                let expected = format!("the object is {}, not {}", article(k), article(j));
                assert!(msg.contains(&expected), "{ctx}: {msg}");
            }
        }
        // Taken: by the same kind or another.
        for j in [k, (k + 1) % KINDS.len()] {
            let ctx = format!("{what} created again as {}", KINDS[j]);
            let msg = assert_kind(try_create_kind(j, name), ErrorKind::AlreadyExists, &ctx);
            assert!(
                msg.contains(name.as_str()) && !msg.contains("is stale"),
                "{msg}"
            );
        }
        drop(keep);
        assert!(!exists(name), "{what} left in /dev/shm");
    }
}

#[test]
fn values_of_another_element_type_and_bad_names_are_refused() {
    let name = unique("value-u64");
    let _names = Names::new([&name]);
    let v = Value::create_named(&name, 5u64).unwrap();
    let msg = assert_kind(
        Value::<u32>::open_named(&name),
        ErrorKind::InvalidData,
        "Value<u64> as Value<u32>",
    );
    assert!(
        msg.contains("holds elements of 8 bytes (alignment 8), not of 4 bytes (alignment 4)"),
        "{msg}"
    );
    assert_kind(
        Value::<[u32; 2]>::open_named(&name),
        ErrorKind::InvalidData,
        "Value<u64> as Value<[u32; 2]> (same size, other alignment)",
    );
    assert_kind(
        Array::<u64>::open_named(&name),
        ErrorKind::InvalidData,
        "Value as Array",
    );
    assert_eq!(Value::<u64>::open_named(&name).unwrap().get(), 5);
    drop(v);
    assert!(!exists(&name));

    for bad in ["", "a/b", "nul\0byte", &"x".repeat(named::MAX_NAME_LEN + 1)] {
        assert_kind(Lock::create_named(bad), ErrorKind::InvalidInput, bad);
        assert_kind(Lock::open_named(bad), ErrorKind::InvalidInput, bad);
    }
    let missing = unique("never-created");
    assert_kind(named::remove(&missing), ErrorKind::NotFound, "remove");
    assert_kind(named::is_stale(&missing), ErrorKind::NotFound, "is_stale");
}

// ---------------------------------------------------------------------------
// Every kind, created here and opened by a child given only the name

/// Creates `test`'s name, runs `child` on it (in a Spawn child given only the
/// name), and checks that the name is gone once `keep` is dropped.
fn round_trip<K>(test: &str, create: impl FnOnce(&str) -> K, check: impl FnOnce(&K, &str)) {
    let name = unique(test);
    let _names = Names::new([&name]);
    let keep = create(&name);
    assert!(exists(&name));
    check(&keep, &name);
    // The child's handle is gone with it; ours keeps the name.
    assert!(
        exists(&name),
        "a process that only opened the name removed it"
    );
    drop(keep);
    assert!(
        !exists(&name),
        "{test}: the name outlived its creator's handles"
    );
}

fn spawn_with_name<R: serde::Serialize + serde::de::DeserializeOwned>(
    f: fn(String) -> R,
    name: &str,
) -> R {
    Process::spawn(f, name.to_string()).unwrap().join().unwrap()
}

#[test]
fn named_lock_round_trip() {
    round_trip(
        "rt-lock",
        |n| Lock::create_named(n).unwrap(),
        |lock, n| {
            let guard = lock.lock().unwrap();
            let seen = spawn_with_name(
                |n| {
                    let l = Lock::open_named(&n).unwrap();
                    (
                        l.is_locked(),
                        l.try_lock().is_err_and(|e| e.is_would_block()),
                    )
                },
                n,
            );
            assert_eq!(seen, (true, true));
            drop(guard);
            // The child takes it and returns holding it: the creator sees OwnerDied.
            spawn_with_name(|n| Lock::open_named(&n).unwrap().lock().unwrap().leak(), n);
            assert!(lock.lock().is_err());
            assert!(lock.try_lock().is_ok());
        },
    );
}

#[test]
fn named_rlock_round_trip() {
    round_trip(
        "rt-rlock",
        |n| RLock::create_named(n).unwrap(),
        |lock, n| {
            let guard = lock.lock().unwrap();
            let seen = spawn_with_name(
                |n| {
                    let l = RLock::open_named(&n).unwrap();
                    (
                        l.try_lock().is_err_and(|e| e.is_would_block()),
                        l.release().is_err(),
                    )
                },
                n,
            );
            assert_eq!(seen, (true, true));
            drop(guard);
            assert!(spawn_with_name(
                |n| RLock::open_named(&n).unwrap().try_lock().is_ok(),
                n
            ));
        },
    );
}

#[test]
fn named_semaphore_round_trip() {
    round_trip(
        "rt-sem",
        |n| Semaphore::create_named(n, 5).unwrap(),
        |sem, n| {
            sem.acquire();
            let seen = spawn_with_name(
                |n| {
                    let s = Semaphore::open_named(&n).unwrap();
                    let before = s.get_value();
                    assert!(s.try_acquire() && s.try_acquire());
                    (before, s.get_value())
                },
                n,
            );
            assert_eq!(seen, (4, 2));
            assert_eq!(sem.get_value(), 2);
        },
    );
}

#[test]
fn named_bounded_semaphore_round_trip() {
    round_trip(
        "rt-bsem",
        |n| BoundedSemaphore::create_named(n, 2).unwrap(),
        |sem, n| {
            sem.acquire();
            let seen = spawn_with_name(
                |n| {
                    let s = BoundedSemaphore::open_named(&n).unwrap();
                    (
                        s.bound(),
                        s.get_value(),
                        s.release().is_ok(),
                        s.release() == Err(OverReleaseError),
                    )
                },
                n,
            );
            assert_eq!(seen, (2, 1, true, true));
            assert_eq!(sem.get_value(), 2);
        },
    );
}

#[test]
fn named_event_round_trip() {
    round_trip(
        "rt-event",
        |n| Event::create_named(n).unwrap(),
        |ev, n| {
            let was_set = spawn_with_name(
                |n| {
                    let e = Event::open_named(&n).unwrap();
                    let was = e.is_set();
                    e.set();
                    was
                },
                n,
            );
            assert!(!was_set);
            assert!(ev.is_set());
            ev.clear();
            assert!(!spawn_with_name(
                |n| Event::open_named(&n).unwrap().is_set(),
                n
            ));
        },
    );
}

#[test]
fn named_condition_round_trip() {
    let flag_name = unique("rt-cond-flag");
    let _flag_names = Names::new([&flag_name]);
    let flag = Value::create_named(&flag_name, 0u32).unwrap();
    round_trip(
        "rt-cond",
        |n| Condition::create_named(n).unwrap(),
        |cond, n| {
            // Held here until our wait gives it up: the child's lock() waits
            // for that, then sets the flag and notifies.
            let mut guard = cond.lock().unwrap();
            let mut p = Process::spawn(
                |(n, f): (String, String)| {
                    let c = Condition::open_named(&n).unwrap();
                    let flag = Value::<u32>::open_named(&f).unwrap();
                    let _g = c.lock().unwrap();
                    flag.set(1);
                    c.notify_all();
                },
                (n.to_string(), flag_name.clone()),
            )
            .unwrap();
            assert!(
                cond.wait_for_timeout(&mut guard, GENEROUS, || flag.get() == 1)
                    .unwrap()
            );
            drop(guard);
            p.join().unwrap();
        },
    );
    drop(flag);
    assert!(!exists(&flag_name));
}

#[test]
fn named_barrier_round_trip() {
    round_trip(
        "rt-barrier",
        |n| Barrier::create_named(n, 2).unwrap(),
        |b, n| {
            let mut p = Process::spawn(
                |n: String| {
                    let b = Barrier::open_named(&n).unwrap();
                    (b.parties(), b.wait().unwrap())
                },
                n.to_string(),
            )
            .unwrap();
            let mine = b.wait().unwrap();
            let (parties, theirs) = p.join().unwrap();
            assert_eq!(parties, 2);
            let mut both = [mine, theirs];
            both.sort_unstable();
            assert_eq!(both, [0, 1]);
        },
    );
}

#[test]
fn named_value_round_trip() {
    round_trip(
        "rt-value",
        |n| Value::create_named(n, 41u64).unwrap(),
        |v, n| {
            let seen = spawn_with_name(
                |n| {
                    let v = Value::<u64>::open_named(&n).unwrap();
                    let mut g = v.lock().unwrap();
                    let before = *g;
                    *g += 1;
                    before
                },
                n,
            );
            assert_eq!(seen, 41);
            assert_eq!(v.get(), 42);
        },
    );
}

#[test]
fn named_array_round_trip() {
    round_trip(
        "rt-array",
        |n| Array::create_named(n, &[1u32, 2, 3]).unwrap(),
        |a, n| {
            let seen = spawn_with_name(
                |n| {
                    let a = Array::<u32>::open_named(&n).unwrap();
                    let before = a.to_vec();
                    a.lock().unwrap()[0] = 10;
                    before
                },
                n,
            );
            assert_eq!(seen, [1, 2, 3]);
            assert_eq!(a.to_vec(), [10, 2, 3]);
        },
    );
}

#[test]
fn named_raw_value_round_trip() {
    round_trip(
        "rt-rawvalue",
        |n| RawValue::create_named(n, 1.5f64).unwrap(),
        |v, n| {
            let seen = spawn_with_name(
                |n| {
                    let v = RawValue::<f64>::open_named(&n).unwrap();
                    let before = v.get();
                    v.set(-3.0);
                    before
                },
                n,
            );
            assert_eq!(seen, 1.5);
            assert_eq!(v.get(), -3.0);
        },
    );
}

#[test]
fn named_raw_array_round_trip() {
    round_trip(
        "rt-rawarray",
        |n| RawArray::create_named(n, &[7i16, -7]).unwrap(),
        |a, n| {
            let seen = spawn_with_name(
                |n| {
                    let a = RawArray::<i16>::open_named(&n).unwrap();
                    let before = a.to_vec();
                    a.set(1, 99);
                    (a.len(), before)
                },
                n,
            );
            assert_eq!(seen, (2, vec![7, -7]));
            assert_eq!(a.to_vec(), [7, 99]);
        },
    );
}

// ---------------------------------------------------------------------------
// Lifetime of a name

/// Opens the event by name (or uses the one it was given), waits for the
/// parent to drop it, then checks it is unnamed but still works.
fn outlive_the_name(
    (name, given, opened, dropped): (String, Option<Event>, Event, Event),
) -> (bool, bool) {
    let ev = match given {
        Some(ev) => ev,
        None => Event::open_named(&name).unwrap(),
    };
    opened.set();
    expect_event(&dropped, "the creator dropped the object");
    let unnamed = Event::open_named(&name).unwrap_err().kind() == ErrorKind::NotFound;
    ev.set();
    (unnamed, ev.is_set() && ev.wait_timeout(GENEROUS))
}

#[test]
fn a_name_goes_with_its_creators_last_handle_while_children_still_use_it() {
    for by_name in [true, false] {
        let name = unique(&format!("lifetime-{by_name}"));
        let _names = Names::new([&name]);
        let ev = Event::create_named(&name).unwrap();
        let twin = ev.clone();
        let (opened, dropped) = (Event::new().unwrap(), Event::new().unwrap());
        let given = (!by_name).then(|| ev.clone());
        let mut p = Process::builder()
            .daemon(true)
            .spawn(
                outlive_the_name,
                (name.clone(), given, opened.clone(), dropped.clone()),
            )
            .unwrap();
        expect_event(&opened, "the child has the object");
        drop(ev);
        assert!(exists(&name), "removed before the creator's last handle");
        drop(twin);
        assert!(!exists(&name), "the name outlived its creator's handles");
        dropped.set();
        assert_eq!(p.join().unwrap(), (true, true), "by name: {by_name}");
    }
}

#[test]
fn a_child_that_creates_a_name_and_returns_removes_it() {
    for method in METHODS {
        let name = unique(&format!("child-created-{method}"));
        let _names = Names::new([&name]);
        let mut p = Process::builder()
            .start_method(method)
            .spawn(
                |n: String| {
                    let ev = Event::create_named(&n).unwrap();
                    ev.set();
                    std::path::Path::new(&format!("/dev/shm/aiop.{n}")).exists()
                },
                name.clone(),
            )
            .unwrap();
        assert!(
            p.join().unwrap(),
            "{method}: the child's name did not exist"
        );
        assert!(!exists(&name), "{method}: the child's name outlived it");
    }
}

/// Creates a named lock, takes it, says so, and waits to be killed.
fn create_hold_and_park((name, made): (String, Event)) {
    let lock = Lock::create_named(&name).unwrap();
    lock.lock().unwrap().leak();
    made.set();
    park_forever()
}

#[test]
fn a_name_left_by_a_killed_creator_is_stale_until_removed() {
    let name = unique("killed-creator");
    let _names = Names::new([&name]);
    let made = Event::new().unwrap();
    let mut p = Process::builder()
        .daemon(true)
        .spawn(create_hold_and_park, (name.clone(), made.clone()))
        .unwrap();
    expect_event(&made, "the child created the lock");
    // Alive: taken, not stale.
    assert!(!named::is_stale(&name).unwrap());
    assert!(!named::stale().unwrap().contains(&name));
    let msg = assert_kind(Lock::create_named(&name), ErrorKind::AlreadyExists, "live");
    assert!(!msg.contains("is stale"), "{msg}");

    p.kill().unwrap();
    assert_eq!(p.join().unwrap_err().signal(), Some(libc::SIGKILL));
    assert!(exists(&name), "a killed creator cannot remove its name");
    assert!(named::is_stale(&name).unwrap());
    assert!(named::stale().unwrap().contains(&name));
    let msg = assert_kind(Lock::create_named(&name), ErrorKind::AlreadyExists, "stale");
    assert!(msg.contains("is stale"), "{msg}");
    assert!(msg.contains("aiop::named::remove"), "{msg}");
    // The object is still there, and its lock reports its holder's death.
    let left = Lock::open_named(&name).unwrap();
    assert!(left.lock().is_err());
    drop(left);
    assert!(exists(&name), "opening it made us its creator");

    named::remove(&name).unwrap();
    assert!(!exists(&name));
    assert_kind(named::is_stale(&name), ErrorKind::NotFound, "removed");
    assert!(!named::stale().unwrap().contains(&name));
    let again = Lock::create_named(&name).unwrap();
    assert!(again.try_lock().is_ok(), "a new lock, not the dead one");
    assert!(!named::is_stale(&name).unwrap());
    drop(again);
    assert!(!exists(&name));
}
