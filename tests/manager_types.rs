//! Every manager proxy type, used from two (or three) processes at once,
//! with the semantics of its local twin (Python's `multiprocessing` objects,
//! aiop's `sync`, `queue` and `shared` types).
//!
//! Each test starts one manager, hands proxies to `aiop::process::Process`
//! children as their spawn arguments, and checks the combined effect of the
//! parent's and the children's calls on the one served object. Processes
//! are sequenced through proxies (queues carrying steps, a barrier's
//! `n_waiting`), never by sleeping; a thread known to be asleep in a call
//! to the manager (`common::blocked_in`) shows that a call waits. Short
//! timeouts appear only where a wait must expire (its result is checked,
//! never its duration); [`GENEROUS`] bounds the rest so that a bug fails
//! instead of hanging.
//!
//! What is proven:
//!
//! * `DictProxy`: insert / get / contains / len / remove / update /
//!   setdefault / popitem / clear / keys / values / items from a child are
//!   seen by the parent and the other way round; iteration follows
//!   insertion order (an overwrite keeps its place, `popitem` takes the
//!   last); `setdefault` is atomic: three processes racing over the same
//!   keys (and one shared key, many times) all get one value per key.
//! * `ListProxy`: every method from a child (insert clamps past the end,
//!   `set` / `pop_at` out of range are `OUT_OF_RANGE`, remove / index_of /
//!   count / contains compare by value, reverse), seen by the parent;
//!   pushes from two processes at once are all kept, each process's in its
//!   order.
//! * `NamespaceProxy`: values of several types set by either process,
//!   overwritten, removed; `names` sorted; a value read as a type it does
//!   not decode as is `ManagerError::Decode`.
//! * `ValueProxy`: `compare_exchange` increments racing from two processes
//!   add up exactly; `swap` / `set` / failed `compare_exchange` semantics.
//! * `ArrayProxy`: a child's writes seen by the parent and the other way
//!   round; `get` / `set` out of range are `OUT_OF_RANGE`, `set_all` of the
//!   wrong length is `INVALID_VALUE` and changes nothing.
//! * `QueueProxy`: FIFO both ways between processes; `try_put` false and
//!   `put_timeout` false when full; a `put` on a full queue waits until a
//!   child's `get` (then the queue holds exactly the rest plus the new
//!   item); `get_timeout` / `try_get` `None` when empty.
//!   `JoinableQueueProxy`: `join_timeout` false while items are unfinished,
//!   `join` waits for a child's last `task_done`, one `task_done` too many
//!   is `INVALID_VALUE`.
//! * `LockProxy`: a counter incremented (get, then set) under the lock by
//!   the parent and a child, N times each, ends at exactly 2N; while a
//!   process holds it, another's `try_acquire` / `acquire_timeout` are
//!   false and its `release` is `NOT_OWNER`; a guard's drop releases it; a
//!   holder that exits gives it back.
//! * `RLockProxy`: re-entry by the same thread (levels counted: the lock is
//!   free only after as many releases), another thread of the same process
//!   is another owner (`try_acquire` false, `release` `NOT_OWNER`), another
//!   process waits until the depth is back to 0; nested guards; a child
//!   that exits holding two levels frees them all.
//! * `ConditionProxy`: the parent in `wait_for` over a value a producer
//!   child sets and notifies under the lock sees the final value; `wait`
//!   and `notify` without holding the lock are `NOT_OWNER` (also from the
//!   child, while the parent holds it); `wait_timeout` without a notify is
//!   false; `wait_for_timeout` with a false predicate is false; a wait
//!   gives back and takes back every level its caller holds (the
//!   producer could lock it while the parent held two levels, and after
//!   the waits one release leaves the parent holding one); a child that
//!   exits holding it frees it.
//! * `SemaphoreProxy`: with value 2, the parent and a child each hold one
//!   and a third `try_acquire` (either process) is false; a parent's
//!   `acquire` asleep on the server is served by the child's `release`;
//!   `release_n`, `get_value`. `BoundedSemaphoreProxy`: any process may
//!   release, but not past the initial value (`INVALID_VALUE`, nothing
//!   changed).
//! * `EventProxy`: a parent asleep in `wait` is woken by a child's `set`;
//!   a child's set-then-clear pulse also ends the parent's wait (Python's
//!   `Event.wait` semantics); `wait_timeout` is false while clear and true
//!   once set; a `clear` by the parent is seen by the child.
//! * `BarrierProxy` of 3 parties across 3 processes: arrival indexes are
//!   0, 1, 2 in arrival order and distinct in a free-for-all round; `abort`
//!   fails the waiter and every later wait with `BROKEN_BARRIER` until
//!   `reset`; a `reset` while a child waits fails that wait but leaves the
//!   barrier whole (a full round then passes); a `wait_timeout` that
//!   expires breaks it for the other waiter too; a waiting child that is
//!   killed breaks it; `parties` 0 is `INVALID_VALUE`.
//! * Async forms, on every executor (smol, async-std, tokio multi-thread
//!   and current-thread, `async_io::block_on`), each with a child using the
//!   blocking forms on the same objects: dict / list / namespace, value /
//!   array, queue `get` / `get_timeout` and joinable `join` /
//!   `join_timeout` / `task_done`, lock (`lock().await` waits for the
//!   child's release) and rlock owners (each proxy clone is an owner),
//!   condition `wait` / `wait_timeout` / `notify_one`, semaphore `acquire`
//!   served by the child, bounded over-release, event `wait` set by the
//!   child, barrier `wait` with the child, `abort` / `reset`; and the
//!   manager's async constructors and `shutdown`.
//! * An async call left pending without being polled (after a `poll_once`,
//!   or the future a `select` hands back) does not stall the other async
//!   calls of the same process (one executor: the client's reading of
//!   replies is the same on all): the call that is polled takes over
//!   watching the socket from the one set aside.
aiop::test_support!();

mod common;

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::time::Duration;

use aiop::manager::{
    ArrayProxy, BarrierProxy, BoundedSemaphoreProxy, ConditionProxy, DictProxy, EventProxy,
    JoinableQueueProxy, ListProxy, LockProxy, Manager, ManagerError, NamespaceProxy, QueueProxy,
    RLockProxy, RemoteError, SemaphoreProxy, ValueProxy,
};
use aiop::process::Process;
use common::{Blocked, GENEROUS, blocked_in, executor_tests, until};
use futures_lite::future::zip;
use serde::de::DeserializeOwned;

/// A wait that must expire (only its result is checked).
const SHORT: Duration = Duration::from_millis(20);

/// A queue carrying named steps between the parent and a child.
type Steps = QueueProxy<String>;

fn start() -> Manager {
    Manager::start().expect("the manager starts")
}

fn join<R: DeserializeOwned>(mut p: Process<R>) -> R {
    p.join_timeout_blocking(GENEROUS)
        .expect("the child succeeds")
}

async fn join_async<R: DeserializeOwned>(mut p: Process<R>) -> R {
    p.join_timeout(GENEROUS).await.expect("the child succeeds")
}

fn send(q: &Steps, step: &str) {
    q.put_blocking(&step.to_string()).expect("a step is sent");
}

#[track_caller]
fn expect_step(q: &Steps, want: &str) {
    let got = q.get_timeout_blocking(GENEROUS).expect("a step arrives");
    assert_eq!(got.as_deref(), Some(want), "waiting for step {want:?}");
}

/// The kind of a call's remote error, or the call's other outcome.
fn kind<T: Debug>(r: Result<T, ManagerError>) -> Result<T, String> {
    r.map_err(|e| match e.remote() {
        Some(remote) => remote.kind().to_string(),
        None => format!("not a RemoteError: {e}"),
    })
}

#[track_caller]
fn assert_remote<T: Debug>(r: Result<T, ManagerError>, want: &str) {
    match r {
        Err(e) if e.is_remote(want) => {}
        other => panic!("expected a RemoteError of kind {want}, got {other:?}"),
    }
}

/// Runs `call` on a thread and returns once that thread is asleep waiting
/// for the manager's reply (in `poll(2)` on its connection).
fn blocked_call<T: Send + 'static>(call: impl FnOnce() -> T + Send + 'static) -> Blocked<T> {
    blocked_in(&[libc::SYS_recvmsg, libc::SYS_poll, libc::SYS_ppoll], call)
}

// ---------------------------------------------------------------------------
// DictProxy

fn s(x: &str) -> String {
    x.to_string()
}

/// Checks what the parent wrote, then edits the dict.
fn dict_child(d: DictProxy<String, u32>) -> Vec<(String, u32)> {
    assert_eq!(d.keys_blocking().unwrap(), [s("a"), s("b"), s("c")]);
    assert_eq!(d.values_blocking().unwrap(), [1, 2, 3]);
    assert_eq!(d.len_blocking().unwrap(), 3);
    assert_eq!(d.get_blocking(&s("b")).unwrap(), Some(2));
    assert_eq!(d.get_blocking(&s("zz")).unwrap(), None);
    assert!(d.contains_key_blocking(&s("a")).unwrap());
    assert!(!d.contains_key_blocking(&s("zz")).unwrap());
    assert_eq!(d.insert_blocking(&s("d"), &4).unwrap(), None);
    // An overwrite returns the old value and keeps the key's place.
    assert_eq!(d.insert_blocking(&s("a"), &10).unwrap(), Some(1));
    assert_eq!(d.remove_blocking(&s("b")).unwrap(), Some(2));
    assert_eq!(d.remove_blocking(&s("b")).unwrap(), None);
    d.update_blocking([(&s("e"), &5), (&s("c"), &30)]).unwrap();
    assert_eq!(d.setdefault_blocking(&s("c"), &99).unwrap(), 30);
    assert_eq!(d.setdefault_blocking(&s("f"), &6).unwrap(), 6);
    d.items_blocking().unwrap()
}

#[test]
fn dict_operations_across_processes() {
    let m = start();
    let d = m.dict_blocking::<String, u32>().unwrap();
    assert!(d.is_empty_blocking().unwrap());
    for (k, v) in [("a", 1), ("b", 2), ("c", 3)] {
        assert_eq!(d.insert_blocking(&s(k), &v).unwrap(), None);
    }
    let seen_by_child = join(Process::spawn(dict_child, d.clone()).unwrap());
    let want = vec![
        (s("a"), 10),
        (s("c"), 30),
        (s("d"), 4),
        (s("e"), 5),
        (s("f"), 6),
    ];
    assert_eq!(seen_by_child, want);
    // The child's writes, seen by the parent, in insertion order.
    assert_eq!(d.items_blocking().unwrap(), want);
    assert_eq!(d.get_blocking(&s("f")).unwrap(), Some(6));
    assert_eq!(d.popitem_blocking().unwrap(), Some((s("f"), 6)));
    assert_eq!(d.popitem_blocking().unwrap(), Some((s("e"), 5)));
    assert_eq!(d.len_blocking().unwrap(), 3);
    d.clear_blocking().unwrap();
    assert!(d.is_empty_blocking().unwrap());
    assert_eq!(d.popitem_blocking().unwrap(), None);
    assert_eq!(d.keys_blocking().unwrap(), Vec::<String>::new());
    drop(d);
    m.shutdown_blocking().unwrap();
}

const RACE_KEYS: u32 = 40;

/// `setdefault(key, me)` on every race key and on one shared key; returns
/// what each call returned.
fn setdefault_race(d: &DictProxy<String, u32>, me: u32) -> Vec<u32> {
    let mut got = Vec::new();
    for i in 0..RACE_KEYS {
        got.push(d.setdefault_blocking(&format!("k{i}"), &me).unwrap());
        got.push(d.setdefault_blocking(&s("same"), &me).unwrap());
    }
    got
}

fn setdefault_child((d, gate, me): (DictProxy<String, u32>, QueueProxy<()>, u32)) -> Vec<u32> {
    gate.get_blocking().unwrap();
    setdefault_race(&d, me)
}

#[test]
fn dict_setdefault_is_atomic_across_processes() {
    let m = start();
    let d = m.dict_blocking::<String, u32>().unwrap();
    let gate = m.queue_blocking::<()>(0).unwrap();
    let children: Vec<_> = [1, 2]
        .into_iter()
        .map(|me| Process::spawn(setdefault_child, (d.clone(), gate.clone(), me)).unwrap())
        .collect();
    for _ in &children {
        gate.put_blocking(&()).unwrap();
    }
    let mut results = vec![setdefault_race(&d, 0)];
    results.extend(children.into_iter().map(join));
    assert_eq!(d.len_blocking().unwrap(), RACE_KEYS as usize + 1);
    let same = d.get_blocking(&s("same")).unwrap().expect("set");
    for i in 0..RACE_KEYS {
        let stored = d.get_blocking(&format!("k{i}")).unwrap().expect("set");
        for r in &results {
            assert_eq!(r[2 * i as usize], stored, "key k{i}: one value for all");
            assert_eq!(
                r[2 * i as usize + 1],
                same,
                "the shared key: one value for all"
            );
        }
    }
    m.shutdown_blocking().unwrap();
}

// ---------------------------------------------------------------------------
// ListProxy

fn list_child(l: ListProxy<u32>) -> Vec<u32> {
    assert_eq!(l.to_vec_blocking().unwrap(), [1, 2, 3]);
    assert_eq!(l.len_blocking().unwrap(), 3);
    assert_eq!(l.get_blocking(0).unwrap(), Some(1));
    assert_eq!(l.get_blocking(3).unwrap(), None);
    l.push_blocking(&4).unwrap();
    l.extend_blocking(&[5, 6]).unwrap();
    l.insert_blocking(0, &0).unwrap();
    l.insert_blocking(100, &7).unwrap(); // clamped to the end, as Python
    assert_eq!(l.to_vec_blocking().unwrap(), [0, 1, 2, 3, 4, 5, 6, 7]);
    l.set_blocking(1, &10).unwrap();
    assert_remote(l.set_blocking(8, &0), RemoteError::OUT_OF_RANGE);
    assert_eq!(l.pop_blocking().unwrap(), Some(7));
    assert_eq!(l.pop_at_blocking(0).unwrap(), 0);
    assert_remote(l.pop_at_blocking(99), RemoteError::OUT_OF_RANGE);
    l.push_blocking(&2).unwrap();
    // [10, 2, 3, 4, 5, 6, 2]
    assert_eq!(l.count_blocking(&2).unwrap(), 2);
    assert_eq!(l.index_of_blocking(&2).unwrap(), Some(1));
    assert_eq!(l.index_of_blocking(&99).unwrap(), None);
    assert!(l.contains_blocking(&5).unwrap());
    assert!(!l.contains_blocking(&99).unwrap());
    assert!(l.remove_blocking(&2).unwrap()); // the first one
    assert!(!l.remove_blocking(&99).unwrap());
    l.reverse_blocking().unwrap();
    l.to_vec_blocking().unwrap()
}

#[test]
fn list_operations_across_processes() {
    let m = start();
    let l = m.list_blocking::<u32>(&[1, 2, 3]).unwrap();
    let from_child = join(Process::spawn(list_child, l.clone()).unwrap());
    let want = [2, 6, 5, 4, 3, 10];
    assert_eq!(from_child, want);
    assert_eq!(l.to_vec_blocking().unwrap(), want);
    assert_eq!(l.get_blocking(5).unwrap(), Some(10));
    assert!(!l.is_empty_blocking().unwrap());
    l.clear_blocking().unwrap();
    assert!(l.is_empty_blocking().unwrap());
    assert_eq!(l.pop_blocking().unwrap(), None);
    m.shutdown_blocking().unwrap();
}

const PUSHES: u32 = 100;

fn push_range(l: &ListProxy<u32>, from: u32) {
    for i in from..from + PUSHES {
        l.push_blocking(&i).unwrap();
    }
}

fn push_child((l, gate): (ListProxy<u32>, QueueProxy<()>)) {
    gate.get_blocking().unwrap();
    push_range(&l, 1000);
}

#[test]
fn list_pushes_from_two_processes_are_all_kept_in_order() {
    let m = start();
    let l = m.list_blocking::<u32>(&[]).unwrap();
    let gate = m.queue_blocking::<()>(0).unwrap();
    let child = Process::spawn(push_child, (l.clone(), gate.clone())).unwrap();
    gate.put_blocking(&()).unwrap();
    push_range(&l, 0);
    join(child);
    let all = l.to_vec_blocking().unwrap();
    assert_eq!(all.len(), 2 * PUSHES as usize);
    let mine: Vec<u32> = all.iter().copied().filter(|&x| x < 1000).collect();
    let theirs: Vec<u32> = all.iter().copied().filter(|&x| x >= 1000).collect();
    assert_eq!(mine, (0..PUSHES).collect::<Vec<_>>());
    assert_eq!(theirs, (1000..1000 + PUSHES).collect::<Vec<_>>());
    m.shutdown_blocking().unwrap();
}

// ---------------------------------------------------------------------------
// NamespaceProxy

fn namespace_child(ns: NamespaceProxy) -> Vec<String> {
    assert_eq!(ns.get_blocking::<u32>("x").unwrap(), Some(1));
    assert_eq!(ns.get_blocking::<String>("name").unwrap(), Some(s("hello")));
    assert_eq!(ns.get_blocking::<u32>("missing").unwrap(), None);
    assert!(ns.contains_blocking("x").unwrap());
    assert!(!ns.contains_blocking("missing").unwrap());
    assert_eq!(ns.names_blocking().unwrap(), [s("name"), s("x")]);
    ns.set_blocking("x", &2u32).unwrap();
    ns.set_blocking("list", &vec![1u8, 2]).unwrap();
    ns.set_blocking("flag", &7u8).unwrap();
    assert!(ns.remove_blocking("name").unwrap());
    assert!(!ns.remove_blocking("name").unwrap());
    ns.names_blocking().unwrap()
}

#[test]
fn namespace_across_processes() {
    let m = start();
    let ns = m.namespace_blocking().unwrap();
    ns.set_blocking("x", &1u32).unwrap();
    ns.set_blocking("name", "hello").unwrap();
    let names = join(Process::spawn(namespace_child, ns.clone()).unwrap());
    assert_eq!(names, [s("flag"), s("list"), s("x")]);
    assert_eq!(ns.names_blocking().unwrap(), names);
    assert_eq!(ns.get_blocking::<u32>("x").unwrap(), Some(2));
    assert_eq!(
        ns.get_blocking::<Vec<u8>>("list").unwrap(),
        Some(vec![1, 2])
    );
    assert!(!ns.contains_blocking("name").unwrap());
    // 7 is no bool.
    let wrong = ns.get_blocking::<bool>("flag");
    assert!(matches!(wrong, Err(ManagerError::Decode(_))), "{wrong:?}");
    assert_eq!(ns.get_blocking::<u8>("flag").unwrap(), Some(7));
    m.shutdown_blocking().unwrap();
}

// ---------------------------------------------------------------------------
// ValueProxy, ArrayProxy

const INCREMENTS: u64 = 200;

/// `n` increments by compare-and-exchange.
fn cas_increments(v: &ValueProxy<u64>, n: u64) {
    for _ in 0..n {
        let mut seen = v.get_blocking().unwrap();
        loop {
            match v.compare_exchange_blocking(&seen, &(seen + 1)).unwrap() {
                Ok(new) => {
                    assert_eq!(new, seen + 1);
                    break;
                }
                Err(actual) => {
                    assert_ne!(actual, seen, "a failed exchange reports the value found");
                    seen = actual;
                }
            }
        }
    }
}

fn cas_child((v, gate): (ValueProxy<u64>, QueueProxy<()>)) {
    gate.get_blocking().unwrap();
    cas_increments(&v, INCREMENTS);
}

#[test]
fn value_compare_exchange_from_two_processes_adds_up() {
    let m = start();
    let v = m.value_blocking(&0u64).unwrap();
    let gate = m.queue_blocking::<()>(0).unwrap();
    let child = Process::spawn(cas_child, (v.clone(), gate.clone())).unwrap();
    gate.put_blocking(&()).unwrap();
    cas_increments(&v, INCREMENTS);
    join(child);
    assert_eq!(v.get_blocking().unwrap(), 2 * INCREMENTS);
    assert_eq!(v.swap_blocking(&7).unwrap(), 2 * INCREMENTS);
    assert_eq!(v.compare_exchange_blocking(&1, &9).unwrap(), Err(7));
    assert_eq!(
        v.get_blocking().unwrap(),
        7,
        "a failed exchange changes nothing"
    );
    assert_eq!(v.compare_exchange_blocking(&7, &9).unwrap(), Ok(9));
    v.set_blocking(&3).unwrap();
    assert_eq!(v.get_blocking().unwrap(), 3);
    m.shutdown_blocking().unwrap();
}

fn array_child(a: ArrayProxy<i64>) -> Vec<i64> {
    assert_eq!(a.len_blocking().unwrap(), 4);
    assert!(!a.is_empty_blocking().unwrap());
    assert_eq!(a.get_blocking(0).unwrap(), -1, "the parent's write");
    a.set_blocking(2, &5).unwrap();
    assert_eq!(a.get_blocking(2).unwrap(), 5);
    assert_remote(a.get_blocking(4), RemoteError::OUT_OF_RANGE);
    assert_remote(a.set_blocking(4, &0), RemoteError::OUT_OF_RANGE);
    assert_remote(a.set_all_blocking(&[1, 2, 3]), RemoteError::INVALID_VALUE);
    a.to_vec_blocking().unwrap()
}

#[test]
fn array_across_processes() {
    let m = start();
    let a = m.array_blocking(&[0i64; 4]).unwrap();
    a.set_blocking(0, &-1).unwrap();
    let from_child = join(Process::spawn(array_child, a.clone()).unwrap());
    assert_eq!(from_child, [-1, 0, 5, 0]);
    assert_eq!(a.to_vec_blocking().unwrap(), [-1, 0, 5, 0]);
    a.set_all_blocking(&[1, 2, 3, 4]).unwrap();
    assert_eq!(a.to_vec_blocking().unwrap(), [1, 2, 3, 4]);
    assert_remote(a.set_all_blocking(&[1; 5]), RemoteError::INVALID_VALUE);
    assert_eq!(
        a.to_vec_blocking().unwrap(),
        [1, 2, 3, 4],
        "nothing changed"
    );
    m.shutdown_blocking().unwrap();
}

// ---------------------------------------------------------------------------
// QueueProxy, JoinableQueueProxy

const ITEMS: u32 = 50;

/// Puts 0..ITEMS on `out`, then returns the ITEMS items of `back` in the
/// order taken.
fn fifo_child((out, back): (QueueProxy<u32>, QueueProxy<u32>)) -> Vec<u32> {
    for i in 0..ITEMS {
        out.put_blocking(&i).unwrap();
    }
    (0..ITEMS).map(|_| back.get_blocking().unwrap()).collect()
}

#[test]
fn queue_is_fifo_across_processes() {
    let m = start();
    let out = m.queue_blocking::<u32>(0).unwrap();
    let back = m.queue_blocking::<u32>(0).unwrap();
    assert_eq!(out.maxsize_blocking().unwrap(), 0);
    let child = Process::spawn(fifo_child, (out.clone(), back.clone())).unwrap();
    let got: Vec<u32> = (0..ITEMS)
        .map(|_| {
            out.get_timeout_blocking(GENEROUS)
                .unwrap()
                .expect("an item")
        })
        .collect();
    assert_eq!(got, (0..ITEMS).collect::<Vec<_>>());
    for i in (0..ITEMS).rev() {
        back.put_blocking(&i).unwrap();
    }
    assert_eq!(join(child), (0..ITEMS).rev().collect::<Vec<_>>());
    assert!(out.is_empty_blocking().unwrap() && back.is_empty_blocking().unwrap());
    assert_eq!(out.try_get_blocking().unwrap(), None);
    assert_eq!(out.get_timeout_blocking(SHORT).unwrap(), None);
    m.shutdown_blocking().unwrap();
}

fn get_one(q: QueueProxy<u32>) -> u32 {
    q.get_blocking().unwrap()
}

#[test]
fn queue_put_on_a_full_queue_waits_for_a_childs_get() {
    let m = start();
    let q = m.queue_blocking::<u32>(2).unwrap();
    assert_eq!(q.maxsize_blocking().unwrap(), 2);
    q.put_blocking(&1).unwrap();
    assert!(q.try_put_blocking(&2).unwrap());
    assert!(!q.try_put_blocking(&3).unwrap(), "full");
    assert!(!q.put_timeout_blocking(&3, SHORT).unwrap(), "full");
    assert_eq!(q.qsize_blocking().unwrap(), 2);
    let putter = q.clone();
    let put = blocked_call(move || putter.put_blocking(&3));
    assert!(!put.is_finished());
    assert_eq!(q.qsize_blocking().unwrap(), 2, "the waiting put is not in");
    assert_eq!(join(Process::spawn(get_one, q.clone()).unwrap()), 1);
    put.join().expect("the put went in");
    assert_eq!(q.qsize_blocking().unwrap(), 2);
    assert_eq!(q.get_blocking().unwrap(), 2);
    assert_eq!(q.get_blocking().unwrap(), 3);
    assert_eq!(q.try_get_blocking().unwrap(), None);
    m.shutdown_blocking().unwrap();
}

/// Takes three items, marks two done, and the third once told to.
fn task_child((jq, to_child, from_child): (JoinableQueueProxy<u32>, Steps, Steps)) -> Vec<u32> {
    let items: Vec<u32> = (0..3).map(|_| jq.get_blocking().unwrap()).collect();
    jq.task_done_blocking().unwrap();
    jq.task_done_blocking().unwrap();
    send(&from_child, "two done");
    expect_step(&to_child, "finish");
    jq.task_done_blocking().unwrap();
    items
}

#[test]
fn joinable_queue_join_waits_for_a_childs_task_done() {
    let m = start();
    let jq = m.joinable_queue_blocking::<u32>(0).unwrap();
    let to_child = m.queue_blocking::<String>(0).unwrap();
    let from_child = m.queue_blocking::<String>(0).unwrap();
    for i in 1..=3 {
        jq.put_blocking(&i).unwrap();
    }
    assert!(
        !jq.join_timeout_blocking(SHORT).unwrap(),
        "nothing done yet"
    );
    let child = Process::spawn(
        task_child,
        (jq.clone(), to_child.clone(), from_child.clone()),
    )
    .unwrap();
    expect_step(&from_child, "two done");
    assert!(jq.is_empty_blocking().unwrap());
    let joiner = jq.clone();
    let joined = blocked_call(move || joiner.join_blocking());
    assert!(!joined.is_finished(), "one item is still unfinished");
    send(&to_child, "finish");
    joined.join().expect("join returns once all are done");
    assert_eq!(join(child), [1, 2, 3]);
    assert!(jq.join_timeout_blocking(SHORT).unwrap());
    assert_remote(jq.task_done_blocking(), RemoteError::INVALID_VALUE);
    m.shutdown_blocking().unwrap();
}

// ---------------------------------------------------------------------------
// LockProxy, RLockProxy

const LOCKED_INCREMENTS: u64 = 150;

fn locked_increments_child((lock, counter, gate): (LockProxy, ValueProxy<u64>, QueueProxy<()>)) {
    gate.get_blocking().unwrap();
    for _ in 0..LOCKED_INCREMENTS {
        let guard = lock.lock_blocking().unwrap();
        let v = counter.get_blocking().unwrap();
        counter.set_blocking(&(v + 1)).unwrap();
        drop(guard);
    }
}

#[test]
fn lock_excludes_the_other_process() {
    let m = start();
    let lock = m.lock_blocking().unwrap();
    let counter = m.value_blocking(&0u64).unwrap();
    let gate = m.queue_blocking::<()>(0).unwrap();
    let child = Process::spawn(
        locked_increments_child,
        (lock.clone(), counter.clone(), gate.clone()),
    )
    .unwrap();
    gate.put_blocking(&()).unwrap();
    for _ in 0..LOCKED_INCREMENTS {
        assert!(lock.acquire_timeout_blocking(GENEROUS).unwrap());
        let v = counter.get_blocking().unwrap();
        counter.set_blocking(&(v + 1)).unwrap();
        lock.release_blocking().unwrap();
    }
    join(child);
    assert_eq!(counter.get_blocking().unwrap(), 2 * LOCKED_INCREMENTS);
    assert!(!lock.is_locked_blocking().unwrap());
    m.shutdown_blocking().unwrap();
}

fn lock_owner_child((lock, to_child, from_child): (LockProxy, Steps, Steps)) {
    // The parent holds it.
    assert!(lock.is_locked_blocking().unwrap());
    assert!(!lock.try_acquire_blocking().unwrap());
    assert!(!lock.acquire_timeout_blocking(SHORT).unwrap());
    assert_remote(lock.release_blocking(), RemoteError::NOT_OWNER);
    send(&from_child, "checked");
    let guard = lock.lock_blocking().unwrap();
    send(&from_child, "holding");
    expect_step(&to_child, "release");
    drop(guard);
    send(&from_child, "released");
    expect_step(&to_child, "take it and exit");
    lock.acquire_blocking().unwrap();
    send(&from_child, "holding again");
}

#[test]
fn lock_ownership_across_processes() {
    let m = start();
    let lock = m.lock_blocking().unwrap();
    let to_child = m.queue_blocking::<String>(0).unwrap();
    let from_child = m.queue_blocking::<String>(0).unwrap();
    lock.acquire_blocking().unwrap();
    assert!(lock.is_locked_blocking().unwrap());
    let child = Process::spawn(
        lock_owner_child,
        (lock.clone(), to_child.clone(), from_child.clone()),
    )
    .unwrap();
    expect_step(&from_child, "checked");
    lock.release_blocking().unwrap();
    expect_step(&from_child, "holding");
    assert!(lock.is_locked_blocking().unwrap());
    assert!(!lock.try_acquire_blocking().unwrap());
    assert_remote(lock.release_blocking(), RemoteError::NOT_OWNER);
    send(&to_child, "release");
    expect_step(&from_child, "released");
    // The child's guard released it.
    assert!(lock.try_acquire_blocking().unwrap());
    send(&to_child, "take it and exit");
    lock.release_blocking().unwrap();
    expect_step(&from_child, "holding again");
    join(child);
    // The child exited holding it: the server gave it back.
    assert!(lock.acquire_timeout_blocking(GENEROUS).unwrap());
    lock.release_blocking().unwrap();
    assert_remote(lock.release_blocking(), RemoteError::NOT_OWNER);
    m.shutdown_blocking().unwrap();
}

fn rlock_child((rl, to_child, from_child): (RLockProxy, Steps, Steps)) {
    assert!(!rl.try_acquire_blocking().unwrap());
    assert_remote(rl.release_blocking(), RemoteError::NOT_OWNER);
    send(&from_child, "checked");
    rl.acquire_blocking().unwrap();
    {
        // Re-entry in this process too, through nested guards.
        let _g = rl.lock_blocking().unwrap();
    }
    send(&from_child, "holding");
    expect_step(&to_child, "release");
    rl.release_blocking().unwrap();
    send(&from_child, "released");
    // Exits holding two levels.
    expect_step(&to_child, "take it and exit");
    rl.acquire_blocking().unwrap();
    rl.acquire_blocking().unwrap();
    send(&from_child, "holding twice");
}

#[test]
fn rlock_reentry_and_owners_across_processes() {
    let m = start();
    let rl = m.rlock_blocking().unwrap();
    let to_child = m.queue_blocking::<String>(0).unwrap();
    let from_child = m.queue_blocking::<String>(0).unwrap();
    // Depth 3 for this thread: re-entry does not wait.
    rl.acquire_blocking().unwrap();
    rl.acquire_blocking().unwrap();
    assert!(rl.try_acquire_blocking().unwrap());
    rl.release_blocking().unwrap();
    // Another thread of this process is another owner.
    let other = rl.clone();
    std::thread::spawn(move || {
        assert!(!other.try_acquire_blocking().unwrap());
        assert_remote(other.release_blocking(), RemoteError::NOT_OWNER);
    })
    .join()
    .unwrap();
    let child = Process::spawn(
        rlock_child,
        (rl.clone(), to_child.clone(), from_child.clone()),
    )
    .unwrap();
    expect_step(&from_child, "checked");
    rl.release_blocking().unwrap();
    assert!(rl.is_locked_blocking().unwrap(), "one level left");
    assert_eq!(
        from_child.try_get_blocking().unwrap(),
        None,
        "the child cannot hold it yet"
    );
    rl.release_blocking().unwrap();
    expect_step(&from_child, "holding");
    assert!(!rl.try_acquire_blocking().unwrap());
    assert_remote(rl.release_blocking(), RemoteError::NOT_OWNER);
    send(&to_child, "release");
    expect_step(&from_child, "released");
    assert!(rl.try_acquire_blocking().unwrap());
    send(&to_child, "take it and exit");
    rl.release_blocking().unwrap();
    expect_step(&from_child, "holding twice");
    join(child);
    // The child exited holding it: the server freed every level.
    assert!(rl.acquire_timeout_blocking(GENEROUS).unwrap());
    rl.release_blocking().unwrap();
    // Nested guards: free after the outer one only.
    let outer = rl.lock_blocking().unwrap();
    let inner = rl.lock_blocking().unwrap();
    drop(inner);
    assert!(rl.is_locked_blocking().unwrap());
    drop(outer);
    assert!(!rl.is_locked_blocking().unwrap());
    assert_remote(rl.release_blocking(), RemoteError::NOT_OWNER);
    m.shutdown_blocking().unwrap();
}

// ---------------------------------------------------------------------------
// ConditionProxy

/// Sets `level` to 1..=n, each under the lock with a `notify_all`.
fn produce_levels((cond, level, n): (ConditionProxy, ValueProxy<u32>, u32)) {
    for i in 1..=n {
        let guard = cond.lock_blocking().unwrap();
        level.set_blocking(&i).unwrap();
        cond.notify_all_blocking().unwrap();
        drop(guard);
    }
}

/// Checks that `wait` / `notify` need the lock (which the parent holds).
fn condition_not_owner_child(cond: ConditionProxy) {
    assert!(!cond.try_acquire_blocking().unwrap());
    assert_remote(cond.wait_blocking(), RemoteError::NOT_OWNER);
    assert_remote(cond.wait_timeout_blocking(SHORT), RemoteError::NOT_OWNER);
    assert_remote(cond.notify_one_blocking(), RemoteError::NOT_OWNER);
    assert_remote(cond.notify_all_blocking(), RemoteError::NOT_OWNER);
    assert_remote(cond.release_blocking(), RemoteError::NOT_OWNER);
}

fn hold_condition_and_exit(cond: ConditionProxy) {
    cond.acquire_blocking().unwrap();
    cond.acquire_blocking().unwrap();
}

#[test]
fn condition_wait_for_a_producer_child() {
    const LEVELS: u32 = 20;
    let m = start();
    let cond = m.condition_blocking().unwrap();
    let level = m.value_blocking(&0u32).unwrap();
    assert_remote(cond.wait_blocking(), RemoteError::NOT_OWNER);
    assert_remote(cond.notify_all_blocking(), RemoteError::NOT_OWNER);
    let guard = cond.lock_blocking().unwrap();
    // Two levels: a wait gives both back and takes both back.
    cond.acquire_blocking().unwrap();
    assert!(
        !cond.wait_timeout_blocking(SHORT).unwrap(),
        "nobody notifies"
    );
    assert!(!cond.wait_for_timeout_blocking(|| false, SHORT).unwrap());
    join(Process::spawn(condition_not_owner_child, cond.clone()).unwrap());
    let producer = Process::spawn(produce_levels, (cond.clone(), level.clone(), LEVELS)).unwrap();
    let mut checks = 0;
    let reached = cond
        .wait_for_timeout_blocking(
            || {
                checks += 1;
                level.get_blocking().unwrap() == LEVELS
            },
            GENEROUS,
        )
        .unwrap();
    assert!(reached, "the producer's last level reaches the waiter");
    assert!(checks >= 2, "the predicate was false at first");
    assert_eq!(level.get_blocking().unwrap(), LEVELS);
    // Both levels are held again after the waits.
    cond.notify_all_blocking().unwrap();
    cond.release_blocking().unwrap();
    assert!(
        !cond.wait_timeout_blocking(SHORT).unwrap(),
        "one level still held"
    );
    drop(guard);
    assert_remote(cond.notify_one_blocking(), RemoteError::NOT_OWNER);
    join(producer);
    // A holder that exits gives the lock back, every level.
    join(Process::spawn(hold_condition_and_exit, cond.clone()).unwrap());
    assert!(cond.acquire_timeout_blocking(GENEROUS).unwrap());
    cond.release_blocking().unwrap();
    // wait_for with a true predicate returns at once.
    let guard = cond.lock_blocking().unwrap();
    cond.wait_for_blocking(|| true).unwrap();
    drop(guard);
    m.shutdown_blocking().unwrap();
}

// ---------------------------------------------------------------------------
// SemaphoreProxy, BoundedSemaphoreProxy

fn semaphore_child(
    (sem, bounded, to_child, from_child): (SemaphoreProxy, BoundedSemaphoreProxy, Steps, Steps),
) {
    sem.acquire_blocking().unwrap();
    send(&from_child, "holding");
    expect_step(&to_child, "release");
    // Neither process can take a third permit.
    assert!(!sem.try_acquire_blocking().unwrap());
    sem.release_blocking().unwrap();
    // The parent holds the bounded one's only permit: this process may
    // give it back, once.
    bounded.release_blocking().unwrap();
    assert_remote(bounded.release_blocking(), RemoteError::INVALID_VALUE);
    assert_eq!(bounded.get_value_blocking().unwrap(), 1);
}

#[test]
fn semaphore_counts_across_processes() {
    let m = start();
    let sem = m.semaphore_blocking(2).unwrap();
    let bounded = m.bounded_semaphore_blocking(1).unwrap();
    let to_child = m.queue_blocking::<String>(0).unwrap();
    let from_child = m.queue_blocking::<String>(0).unwrap();
    sem.acquire_blocking().unwrap();
    assert_eq!(sem.get_value_blocking().unwrap(), 1);
    bounded.acquire_blocking().unwrap();
    let child = Process::spawn(
        semaphore_child,
        (
            sem.clone(),
            bounded.clone(),
            to_child.clone(),
            from_child.clone(),
        ),
    )
    .unwrap();
    expect_step(&from_child, "holding");
    assert_eq!(sem.get_value_blocking().unwrap(), 0);
    assert!(!sem.try_acquire_blocking().unwrap(), "a third permit");
    assert!(!sem.acquire_timeout_blocking(SHORT).unwrap());
    let acquirer = sem.clone();
    let acquire = blocked_call(move || acquirer.acquire_blocking());
    send(&to_child, "release");
    acquire
        .join()
        .expect("the child's release serves the waiting acquire");
    join(child);
    assert_eq!(sem.get_value_blocking().unwrap(), 0, "the parent holds two");
    sem.release_n_blocking(2).unwrap();
    assert_eq!(sem.get_value_blocking().unwrap(), 2);
    // An unbounded semaphore may pass its initial value.
    sem.release_blocking().unwrap();
    assert_eq!(sem.get_value_blocking().unwrap(), 3);
    // The child gave the bounded permit back.
    assert!(bounded.try_acquire_blocking().unwrap());
    assert_remote(bounded.release_n_blocking(2), RemoteError::INVALID_VALUE);
    assert_eq!(bounded.get_value_blocking().unwrap(), 0, "nothing changed");
    bounded.release_blocking().unwrap();
    m.shutdown_blocking().unwrap();
}

// ---------------------------------------------------------------------------
// EventProxy

fn event_child((ev, to_child, from_child): (EventProxy, Steps, Steps)) {
    assert!(!ev.is_set_blocking().unwrap());
    // A pulse: a waiter that saw it clear returns, as in Python.
    ev.set_blocking().unwrap();
    ev.clear_blocking().unwrap();
    send(&from_child, "pulsed");
    expect_step(&to_child, "set it");
    ev.set_blocking().unwrap();
    send(&from_child, "set");
    expect_step(&to_child, "cleared");
    assert!(!ev.is_set_blocking().unwrap());
    assert!(!ev.wait_timeout_blocking(SHORT).unwrap());
    send(&from_child, "saw it clear");
}

#[test]
fn event_set_in_a_child_wakes_the_parent() {
    let m = start();
    let ev = m.event_blocking().unwrap();
    let to_child = m.queue_blocking::<String>(0).unwrap();
    let from_child = m.queue_blocking::<String>(0).unwrap();
    assert!(!ev.is_set_blocking().unwrap());
    assert!(!ev.wait_timeout_blocking(SHORT).unwrap());
    let waiter = ev.clone();
    let wait = blocked_call(move || waiter.wait_blocking());
    let child = Process::spawn(
        event_child,
        (ev.clone(), to_child.clone(), from_child.clone()),
    )
    .unwrap();
    wait.join().expect("the child's set wakes the wait");
    expect_step(&from_child, "pulsed");
    assert!(!ev.is_set_blocking().unwrap());
    assert!(!ev.wait_timeout_blocking(SHORT).unwrap());
    send(&to_child, "set it");
    expect_step(&from_child, "set");
    assert!(ev.is_set_blocking().unwrap());
    ev.wait_blocking().unwrap();
    assert!(ev.wait_timeout_blocking(SHORT).unwrap());
    ev.clear_blocking().unwrap();
    send(&to_child, "cleared");
    expect_step(&from_child, "saw it clear");
    join(child);
    assert!(!ev.is_set_blocking().unwrap());
    m.shutdown_blocking().unwrap();
}

// ---------------------------------------------------------------------------
// BarrierProxy

const WAIT: u8 = 1;
const STOP: u8 = 0;

type Outcome = Result<u32, String>;

/// Waits on the barrier each time it is told to; reports each outcome.
fn barrier_child((b, cmds, out): (BarrierProxy, QueueProxy<u8>, QueueProxy<Outcome>)) {
    loop {
        match cmds.get_blocking().unwrap() {
            WAIT => out.put_blocking(&kind(b.wait_blocking())).unwrap(),
            _ => return,
        }
    }
}

struct BarrierChild {
    cmds: QueueProxy<u8>,
    out: QueueProxy<Outcome>,
    process: Process<()>,
}

impl BarrierChild {
    fn spawn(m: &Manager, b: &BarrierProxy) -> BarrierChild {
        let cmds = m.queue_blocking::<u8>(0).unwrap();
        let out = m.queue_blocking::<Outcome>(0).unwrap();
        let process =
            Process::spawn(barrier_child, (b.clone(), cmds.clone(), out.clone())).unwrap();
        BarrierChild { cmds, out, process }
    }

    fn wait(&self) {
        self.cmds.put_blocking(&WAIT).unwrap();
    }

    fn outcome(&self) -> Outcome {
        self.out
            .get_timeout_blocking(GENEROUS)
            .unwrap()
            .expect("the child reports its wait")
    }

    /// Kills the child (asleep in a wait or on its commands).
    fn kill(mut self) {
        self.process.kill().unwrap();
        assert!(
            self.process.join_timeout_blocking(GENEROUS).is_err(),
            "killed"
        );
    }

    fn stop(self) {
        self.cmds.put_blocking(&STOP).unwrap();
        join(self.process);
    }
}

/// Tells `c` to wait and returns once it waits (the barrier counts it).
fn arrive(b: &BarrierProxy, c: &BarrierChild, waiting: u32) {
    c.wait();
    until("the child waits on the barrier", || {
        b.n_waiting_blocking().unwrap() == waiting
    });
}

#[test]
fn barrier_of_three_processes() {
    let m = start();
    assert_remote(m.barrier_blocking(0), RemoteError::INVALID_VALUE);
    let b = m.barrier_blocking(3).unwrap();
    assert_eq!(b.parties_blocking().unwrap(), 3);
    assert_eq!(b.n_waiting_blocking().unwrap(), 0);
    assert!(!b.broken_blocking().unwrap());
    let c1 = BarrierChild::spawn(&m, &b);
    let c2 = BarrierChild::spawn(&m, &b);
    let broken = Err(RemoteError::BROKEN_BARRIER.to_string());

    // Arrival order gives the indexes: 0 first, parties - 1 last.
    arrive(&b, &c1, 1);
    arrive(&b, &c2, 2);
    assert_eq!(
        b.wait_blocking().unwrap(),
        2,
        "the last arrival releases at once"
    );
    assert_eq!(c1.outcome(), Ok(0));
    assert_eq!(c2.outcome(), Ok(1));
    assert_eq!(b.n_waiting_blocking().unwrap(), 0);

    // A free-for-all round: three distinct indexes.
    c1.wait();
    c2.wait();
    let mine = b.wait_timeout_blocking(GENEROUS).unwrap();
    let all: BTreeSet<u32> = [mine, c1.outcome().unwrap(), c2.outcome().unwrap()].into();
    assert_eq!(all, BTreeSet::from([0, 1, 2]));

    // abort: the waiter fails, and so does every wait until a reset.
    arrive(&b, &c1, 1);
    b.abort_blocking().unwrap();
    assert_eq!(c1.outcome(), broken);
    assert!(b.broken_blocking().unwrap());
    assert_remote(b.wait_blocking(), RemoteError::BROKEN_BARRIER);
    c2.wait();
    assert_eq!(c2.outcome(), broken);
    b.reset_blocking().unwrap();
    assert!(!b.broken_blocking().unwrap());

    // A reset while a child waits fails that wait, leaving it whole.
    arrive(&b, &c1, 1);
    b.reset_blocking().unwrap();
    assert_eq!(c1.outcome(), broken);
    assert!(!b.broken_blocking().unwrap());
    assert_eq!(b.n_waiting_blocking().unwrap(), 0);
    c1.wait();
    c2.wait();
    let mine = b.wait_timeout_blocking(GENEROUS).unwrap();
    let all: BTreeSet<u32> = [mine, c1.outcome().unwrap(), c2.outcome().unwrap()].into();
    assert_eq!(all, BTreeSet::from([0, 1, 2]));

    // A wait that times out breaks it for the other waiter too.
    arrive(&b, &c1, 1);
    assert_remote(b.wait_timeout_blocking(SHORT), RemoteError::BROKEN_BARRIER);
    assert_eq!(c1.outcome(), broken);
    assert!(b.broken_blocking().unwrap());
    b.reset_blocking().unwrap();

    // A waiter whose process dies breaks it.
    arrive(&b, &c1, 1);
    c1.kill();
    until("the dead waiter breaks the barrier", || {
        b.broken_blocking().unwrap()
    });
    assert_eq!(b.n_waiting_blocking().unwrap(), 0);
    assert_remote(b.wait_blocking(), RemoteError::BROKEN_BARRIER);
    b.reset_blocking().unwrap();

    c2.stop();
    m.shutdown_blocking().unwrap();
}

// ---------------------------------------------------------------------------
// Async forms, on every executor; children use the blocking forms.

fn collections_child((d, l, ns): (DictProxy<String, u32>, ListProxy<u32>, NamespaceProxy)) {
    d.insert_blocking(&s("child"), &1).unwrap();
    assert_eq!(d.setdefault_blocking(&s("shared"), &7).unwrap(), 7);
    l.extend_blocking(&[1, 2]).unwrap();
    ns.set_blocking("who", "child").unwrap();
}

fn value_array_child((v, a): (ValueProxy<u64>, ArrayProxy<u64>)) {
    cas_increments(&v, 50);
    a.set_blocking(1, &11).unwrap();
}

fn queues_child((q, jq, go): (QueueProxy<u32>, JoinableQueueProxy<u32>, QueueProxy<()>)) {
    for i in 0..5 {
        q.put_blocking(&i).unwrap();
    }
    go.get_blocking().unwrap();
    for _ in 0..2 {
        jq.get_blocking().unwrap();
        jq.task_done_blocking().unwrap();
    }
}

/// Holds `lock` until told to go; returns whether it could take `rl`
/// (which the parent holds then).
fn hold_lock_child(
    (lock, rl, held, go): (LockProxy, RLockProxy, QueueProxy<()>, QueueProxy<()>),
) -> bool {
    let guard = lock.lock_blocking().unwrap();
    held.put_blocking(&()).unwrap();
    go.get_blocking().unwrap();
    drop(guard);
    go.get_blocking().unwrap();
    rl.try_acquire_blocking().unwrap()
}

fn release_after_go((sem, go): (SemaphoreProxy, QueueProxy<()>)) {
    go.get_blocking().unwrap();
    sem.release_blocking().unwrap();
}

fn set_after_go((ev, go): (EventProxy, QueueProxy<()>)) {
    go.get_blocking().unwrap();
    ev.set_blocking().unwrap();
}

fn barrier_wait_child(b: BarrierProxy) -> u32 {
    b.wait_blocking().unwrap()
}

/// Waits for a step the other side sends through `q`, asynchronously.
async fn recv_async(q: &QueueProxy<()>) {
    q.get_timeout(GENEROUS)
        .await
        .unwrap()
        .expect("the step arrives");
}

executor_tests! {
    async fn async_dict_list_namespace() {
        let m = start();
        let d = m.dict::<String, u32>().await.unwrap();
        let l = m.list::<u32>(&[]).await.unwrap();
        let ns = m.namespace().await.unwrap();
        let child = Process::spawn(collections_child, (d.clone(), l.clone(), ns.clone())).unwrap();
        join_async(child).await;
        assert_eq!(d.setdefault(&s("shared"), &9).await.unwrap(), 7);
        assert_eq!(d.insert(&s("parent"), &2).await.unwrap(), None);
        assert_eq!(d.get(&s("child")).await.unwrap(), Some(1));
        assert_eq!(
            d.items().await.unwrap(),
            [(s("child"), 1), (s("shared"), 7), (s("parent"), 2)]
        );
        l.push(&3).await.unwrap();
        assert_eq!(l.to_vec().await.unwrap(), [1, 2, 3]);
        assert_eq!(l.pop_at(0).await.unwrap(), 1);
        assert_remote(l.pop_at(5).await, RemoteError::OUT_OF_RANGE);
        assert_eq!(ns.get::<String>("who").await.unwrap(), Some(s("child")));
        ns.set("n", &1u8).await.unwrap();
        assert_eq!(ns.names().await.unwrap(), [s("n"), s("who")]);
        m.shutdown().await.unwrap();
    }

    async fn async_value_array() {
        let m = start();
        let v = m.value(&0u64).await.unwrap();
        let a = m.array(&[0u64; 3]).await.unwrap();
        let child = Process::spawn(value_array_child, (v.clone(), a.clone())).unwrap();
        for _ in 0..50 {
            let mut seen = v.get().await.unwrap();
            while let Err(actual) = v.compare_exchange(&seen, &(seen + 1)).await.unwrap() {
                seen = actual;
            }
        }
        join_async(child).await;
        assert_eq!(v.swap(&0).await.unwrap(), 100, "both processes' increments");
        assert_eq!(a.get(1).await.unwrap(), 11);
        a.set(2, &22).await.unwrap();
        assert_eq!(a.to_vec().await.unwrap(), [0, 11, 22]);
        assert_remote(a.get(3).await, RemoteError::OUT_OF_RANGE);
        m.shutdown().await.unwrap();
    }

    async fn async_queues() {
        let m = start();
        let q = m.queue::<u32>(0).await.unwrap();
        let jq = m.joinable_queue::<u32>(0).await.unwrap();
        let go = m.queue::<()>(0).await.unwrap();
        let child = Process::spawn(queues_child, (q.clone(), jq.clone(), go.clone())).unwrap();
        for i in 0..5 {
            let item = or_hang(q.get()).await.expect("an item").unwrap();
            assert_eq!(item, i, "FIFO");
        }
        assert_eq!(q.get_timeout(SHORT).await.unwrap(), None);
        jq.put(&1).await.unwrap();
        jq.put(&2).await.unwrap();
        assert!(!jq.join_timeout(SHORT).await.unwrap(), "the child waits for go");
        let (joined, sent) = zip(or_hang(jq.join()), go.put(&())).await;
        sent.unwrap();
        joined.expect("join ends once the child is done").unwrap();
        assert!(jq.is_empty().await.unwrap());
        assert_remote(jq.task_done().await, RemoteError::INVALID_VALUE);
        join_async(child).await;
        m.shutdown().await.unwrap();
    }

    async fn async_lock_rlock() {
        let m = start();
        let lock = m.lock().await.unwrap();
        let rl = m.rlock().await.unwrap();
        let held = m.queue::<()>(0).await.unwrap();
        let go = m.queue::<()>(0).await.unwrap();
        let child = Process::spawn(
            hold_lock_child,
            (lock.clone(), rl.clone(), held.clone(), go.clone()),
        )
        .unwrap();
        recv_async(&held).await;
        assert!(lock.is_locked().await.unwrap());
        assert!(!lock.try_acquire().await.unwrap());
        assert_remote(lock.release().await, RemoteError::NOT_OWNER);
        let (guard, sent) = zip(or_hang(lock.lock()), go.put(&())).await;
        sent.unwrap();
        let guard = guard.expect("taken once the child released it").unwrap();
        drop(guard);
        assert!(lock.try_acquire().await.unwrap(), "the guard released it");
        lock.release().await.unwrap();
        // An async owner is the proxy value: a clone is another owner.
        rl.acquire().await.unwrap();
        rl.acquire().await.unwrap();
        let other = rl.clone();
        assert!(!other.try_acquire().await.unwrap());
        assert_remote(other.release().await, RemoteError::NOT_OWNER);
        go.put(&()).await.unwrap();
        assert!(!join_async(child).await, "the child cannot take it");
        rl.release().await.unwrap();
        assert!(rl.is_locked().await.unwrap());
        rl.release().await.unwrap();
        assert!(other.try_acquire().await.unwrap());
        other.release().await.unwrap();
        m.shutdown().await.unwrap();
    }

    async fn async_condition() {
        let m = start();
        let cond = m.condition().await.unwrap();
        let level = m.value(&0u32).await.unwrap();
        let guard = cond.lock().await.unwrap();
        assert_remote(cond.clone().notify_one().await, RemoteError::NOT_OWNER);
        assert!(!cond.wait_timeout(SHORT).await.unwrap(), "nobody notifies");
        let child = Process::spawn(produce_levels, (cond.clone(), level.clone(), 3)).unwrap();
        while level.get().await.unwrap() < 3 {
            or_hang(cond.wait()).await.expect("a notify").unwrap();
        }
        cond.notify_one().await.unwrap();
        drop(guard);
        join_async(child).await;
        m.shutdown().await.unwrap();
    }

    async fn async_semaphores() {
        let m = start();
        let sem = m.semaphore(0).await.unwrap();
        let bounded = m.bounded_semaphore(1).await.unwrap();
        let go = m.queue::<()>(0).await.unwrap();
        let child = Process::spawn(release_after_go, (sem.clone(), go.clone())).unwrap();
        assert!(!sem.try_acquire().await.unwrap());
        let (acquired, sent) = zip(or_hang(sem.acquire()), go.put(&())).await;
        sent.unwrap();
        acquired.expect("the child's release serves it").unwrap();
        assert_eq!(sem.get_value().await.unwrap(), 0);
        sem.release_n(2).await.unwrap();
        assert_eq!(sem.get_value().await.unwrap(), 2);
        assert_remote(bounded.release().await, RemoteError::INVALID_VALUE);
        bounded.acquire().await.unwrap();
        assert!(!bounded.acquire_timeout(SHORT).await.unwrap());
        bounded.release().await.unwrap();
        assert_eq!(bounded.get_value().await.unwrap(), 1);
        join_async(child).await;
        m.shutdown().await.unwrap();
    }

    async fn async_event() {
        let m = start();
        let ev = m.event().await.unwrap();
        let go = m.queue::<()>(0).await.unwrap();
        let child = Process::spawn(set_after_go, (ev.clone(), go.clone())).unwrap();
        assert!(!ev.wait_timeout(SHORT).await.unwrap());
        let (waited, sent) = zip(or_hang(ev.wait()), go.put(&())).await;
        sent.unwrap();
        waited.expect("the child's set wakes it").unwrap();
        assert!(ev.is_set().await.unwrap());
        ev.clear().await.unwrap();
        assert!(!ev.is_set().await.unwrap());
        ev.set().await.unwrap();
        assert!(ev.wait_timeout(SHORT).await.unwrap());
        join_async(child).await;
        m.shutdown().await.unwrap();
    }

    async fn async_barrier() {
        let m = start();
        let b = m.barrier(2).await.unwrap();
        let child = Process::spawn(barrier_wait_child, b.clone()).unwrap();
        let mine = or_hang(b.wait()).await.expect("the child arrives").unwrap();
        let theirs = join_async(child).await;
        assert_eq!(BTreeSet::from([mine, theirs]), BTreeSet::from([0, 1]));
        assert_eq!(b.parties().await.unwrap(), 2);
        b.abort().await.unwrap();
        assert!(b.broken().await.unwrap());
        assert_remote(b.wait().await, RemoteError::BROKEN_BARRIER);
        b.reset().await.unwrap();
        assert!(!b.broken().await.unwrap());
        assert_eq!(b.n_waiting().await.unwrap(), 0);
        assert_remote(b.wait_timeout(SHORT).await, RemoteError::BROKEN_BARRIER);
        m.shutdown().await.unwrap();
    }
}

// ---------------------------------------------------------------------------
// A pending call that is not polled

/// `fut`, or `None` once [`GENEROUS`] has passed (a hang guard).
async fn or_hang<T>(fut: impl std::future::Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(fut.await) }, async {
        async_io::Timer::after(GENEROUS).await;
        None
    })
    .await
}

/// An async call that was polled once (its request is out and it watches
/// the connection for replies) and is then left alone while the same task
/// makes other calls, as after `poll_once`, or with the future that
/// `futures::future::select` hands back when the other one won. Those
/// other calls must still complete. (One executor suffices: the reading of
/// replies is the client's own, the same on every executor.)
///
/// (Found by review: `poll_reply` used to return `Pending` without reading
/// while another call was the parked reader, relying on that call's future
/// being polled when the socket turned readable; a future set aside never
/// is. Now whoever is polled reads.)
#[test]
fn an_idle_pending_call_does_not_stall_the_others() {
    async_io::block_on(async {
        let m = start();
        let ev = m.event().await.unwrap();
        let go = m.queue::<()>(0).await.unwrap();
        let child = Process::spawn(set_after_go, (ev.clone(), go.clone())).unwrap();
        let mut wait = Box::pin(ev.wait());
        assert!(futures_lite::future::poll_once(&mut wait).await.is_none());
        let sent = or_hang(go.put(&())).await;
        assert!(
            sent.is_some(),
            "an async put stalled behind an unpolled pending wait"
        );
        sent.unwrap().unwrap();
        join_async(child).await;
        assert!(ev.is_set().await.unwrap());
        or_hang(wait).await.expect("the wait ends").unwrap();
        m.shutdown().await.unwrap();
    });
}
