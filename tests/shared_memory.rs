//! Segments, arena slots, handle transfer and futexes across real processes.

aiop::test_support!();

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use aiop::arena::Slot;
use aiop::blocking::process::{Process, StartMethod};
use aiop::futex::{self, Timeout, Wake, WakeV};
use aiop::shm::Segment;
use common::{GENEROUS, RefusesToDeserialize, set_and_wake, wait_nonzero};

const METHODS: [StartMethod; 2] = [StartMethod::SPAWN, StartMethod::FORK_SERVER];

#[test]
fn a_slot_written_by_a_child_is_read_by_the_parent() {
    for method in METHODS {
        let slot = Slot::new().unwrap();
        let mut p = Process::builder()
            .start_method(method)
            .spawn(
                |s: Slot| s.word(3).store(0xC0FFEE, Ordering::Release),
                slot.clone(),
            )
            .unwrap();
        p.join().unwrap();
        assert_eq!(slot.word(3).load(Ordering::Acquire), 0xC0FFEE);
        // The child's handle and the one in flight are both given back.
        assert_eq!(slot.ref_count(), 1);
    }
}

#[test]
fn slot_reference_counts_cross_processes() {
    let slot = Slot::new().unwrap();
    assert_eq!(slot.ref_count(), 1);
    // The child holds its handle while it reports the count it sees.
    let mut p = Process::spawn(|s: Slot| s.ref_count(), slot.clone()).unwrap();
    assert_eq!(p.join().unwrap(), 2);
    assert_eq!(slot.ref_count(), 1);
    let twin = slot.clone();
    assert!(twin.same_as(&slot));
    assert_eq!(slot.ref_count(), 2);
    drop(twin);
    assert_eq!(slot.ref_count(), 1);
}

#[test]
fn freed_slots_are_reused_and_zeroed() {
    let a = Slot::new().unwrap();
    a.word(0).store(77, Ordering::Relaxed);
    let many: Vec<Slot> = (0..2000).map(|_| Slot::new().unwrap()).collect();
    assert!(many.iter().all(|s| s.word(0).load(Ordering::Relaxed) == 0));
    assert!(many.iter().all(|s| !s.same_as(&a)));
    drop(many);
    let again: Vec<Slot> = (0..2000).map(|_| Slot::new().unwrap()).collect();
    assert!(
        again
            .iter()
            .all(|s| s.word(0).load(Ordering::Relaxed) == 0 && s.ref_count() == 1)
    );
}

#[test]
fn a_child_can_return_new_handles() {
    fn make(v: u32) -> (Slot, Segment) {
        let s = Slot::new().unwrap();
        s.word(0).store(v, Ordering::Release);
        let seg = Segment::new(1 << 20).unwrap();
        seg.atomic_u64(8 << 10)
            .store(u64::from(v) << 32, Ordering::Release);
        (s, seg)
    }
    for method in METHODS {
        let mut p = Process::builder()
            .start_method(method)
            .spawn(make, 31)
            .unwrap();
        let (slot, seg) = p.join().unwrap();
        assert_eq!(slot.word(0).load(Ordering::Acquire), 31);
        assert_eq!(
            slot.ref_count(),
            1,
            "the child's handle is gone, ours remains"
        );
        assert_eq!(seg.len(), 1 << 20);
        assert_eq!(seg.atomic_u64(8 << 10).load(Ordering::Acquire), 31 << 32);
    }
}

#[test]
fn a_segment_is_shared_both_ways_and_mapped_once() {
    fn fill(seg: Segment) -> Segment {
        for i in 0..seg.len() / 4 {
            seg.atomic_u32(i * 4).store(i as u32, Ordering::Relaxed);
        }
        seg
    }
    let seg = Segment::new(64 << 10).unwrap();
    let mut p = Process::spawn(fill, seg.clone()).unwrap();
    let back = p.join().unwrap();
    // The segment came back to the process that owns it: same mapping.
    assert_eq!(back.as_ptr(), seg.as_ptr());
    assert!((0..seg.len() / 4).all(|i| seg.atomic_u32(i * 4).load(Ordering::Relaxed) == i as u32));
}

#[test]
fn the_same_handle_twice_in_one_message_uses_one_descriptor() {
    let slot = Slot::new().unwrap();
    let mut p = Process::spawn(
        |(a, b): (Slot, Slot)| a.same_as(&b) && a.ref_count() == 3,
        (slot.clone(), slot.clone()),
    )
    .unwrap();
    assert!(p.join().unwrap());
    assert_eq!(slot.ref_count(), 1);
}

#[test]
fn handles_refuse_plain_serialization_with_a_clear_error() {
    let slot = Slot::new().unwrap();
    let json = serde_json::to_string(&slot).unwrap_err().to_string();
    assert!(
        json.contains("can only be serialized into the arguments or result of a spawned process"),
        "{json}"
    );
    assert_eq!(json, aiop::transfer::HANDLE_OUTSIDE_TRANSFER);
    // postcard drops custom messages, but it fails all the same.
    assert!(postcard::to_allocvec(&slot).is_err());
    let seg = Segment::new(4096).unwrap();
    assert!(postcard::to_allocvec(&seg).is_err());
    assert!(
        serde_json::to_string(&seg)
            .unwrap_err()
            .to_string()
            .contains("descriptor travels with it")
    );
    // A refused serialization takes no reference.
    assert_eq!(slot.ref_count(), 1);
    // Nor can handle bytes be made up and deserialized.
    let err = postcard::from_bytes::<Slot>(&[0, 0]).unwrap_err();
    assert!(matches!(err, postcard::Error::SerdeDeCustom), "{err:?}");
    let err = serde_json::from_str::<Slot>("[0, 3]")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("can only be deserialized from a message that carried its descriptor"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------
// Futexes

#[test]
fn futex_wake_crosses_processes() {
    fn waiter(s: Slot) -> u32 {
        set_and_wake(&s, 1, 1); // ready
        loop {
            let v = s.word(0).load(Ordering::Acquire);
            if v != 0 {
                return v;
            }
            futex::wait(s.word(0), 0, Timeout::Never).unwrap();
        }
    }
    for method in METHODS {
        let slot = Slot::new().unwrap();
        let mut p = Process::builder()
            .start_method(method)
            .spawn(waiter, slot.clone())
            .unwrap();
        wait_nonzero(&slot, 1);
        set_and_wake(&slot, 0, 5);
        assert_eq!(p.join_timeout(GENEROUS).unwrap(), 5);
    }
}

#[test]
fn futex_waitv_wakes_on_any_of_several_words_from_another_process() {
    fn poke((s, i): (Slot, usize)) {
        wait_nonzero(&s, 15); // the parent is about to wait
        s.word(i).store(1, Ordering::Release);
        futex::wake_all(s.word(i)).unwrap();
    }
    let slot = Slot::new().unwrap();
    let mut p = Process::spawn(poke, (slot.clone(), 2)).unwrap();
    set_and_wake(&slot, 15, 1);
    let words: Vec<_> = (0..4).map(|i| (slot.word(i), 0)).collect();
    match futex::waitv(&words, Timeout::After(GENEROUS)).unwrap() {
        WakeV::Woken(i) => assert_eq!(i, 2),
        // The word changed before the kernel looked.
        WakeV::Changed => assert_eq!(slot.word(2).load(Ordering::Acquire), 1),
        WakeV::TimedOut => panic!("waitv never woke"),
    }
    p.join().unwrap();
}

#[test]
fn futex_timeouts_relative_and_absolute() {
    let slot = Slot::new().unwrap();
    let w = slot.word(0);
    assert_eq!(
        futex::wait(w, 0, Timeout::After(Duration::from_millis(20))).unwrap(),
        Wake::TimedOut
    );
    assert_eq!(
        futex::wait(
            w,
            0,
            Timeout::At(Instant::now() + Duration::from_millis(20))
        )
        .unwrap(),
        Wake::TimedOut
    );
    // A deadline in the past returns at once with TimedOut.
    assert_eq!(
        futex::wait(w, 0, Timeout::At(Instant::now())).unwrap(),
        Wake::TimedOut
    );
    // A word that does not hold the expected value does not sleep at all.
    assert_eq!(futex::wait(w, 1, Timeout::Never).unwrap(), Wake::Changed);
    assert_eq!(
        futex::waitv(&[(w, 0)], Timeout::After(Duration::from_millis(20))).unwrap(),
        WakeV::TimedOut
    );
    assert_eq!(
        futex::waitv(&[(w, 9)], Timeout::Never).unwrap(),
        WakeV::Changed
    );
    // Nobody sleeps: a wake wakes no one.
    assert_eq!(futex::wake_all(w).unwrap(), 0);
    assert_eq!(
        futex::waitv(&[], Timeout::Never).unwrap_err().kind(),
        std::io::ErrorKind::InvalidInput
    );
}

#[test]
fn segments_and_slot_words_check_bounds() {
    let seg = Segment::new(4096).unwrap();
    assert!(std::panic::catch_unwind(|| seg.atomic_u32(4096).load(Ordering::Relaxed)).is_err());
    assert!(std::panic::catch_unwind(|| seg.atomic_u32(2).load(Ordering::Relaxed)).is_err());
    assert!(std::panic::catch_unwind(|| seg.atomic_u64(4).load(Ordering::Relaxed)).is_err());
    assert_eq!(
        Segment::new(0).unwrap_err().kind(),
        std::io::ErrorKind::InvalidInput
    );
    let slot = Slot::new().unwrap();
    assert!(std::panic::catch_unwind(|| slot.word(16).load(Ordering::Relaxed)).is_err());
    assert!(std::panic::catch_unwind(|| slot.word64(8).load(Ordering::Relaxed)).is_err());
    slot.word64(7).store(u64::MAX, Ordering::Relaxed);
    assert_eq!(slot.word(15).load(Ordering::Relaxed), u32::MAX);
}

#[test]
fn nothing_is_left_in_dev_shm() {
    let _keep: Vec<Slot> = (0..10).map(|_| Slot::new().unwrap()).collect();
    let _seg = Segment::new(1 << 16).unwrap();
    let named: Vec<String> = std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(!named.iter().any(|n| n.contains("aiop")), "{named:?}");
}

#[test]
fn more_handles_than_a_message_can_carry_is_an_error_not_a_hang() {
    let segs: Vec<Segment> = (0..300).map(|_| Segment::new(4096).unwrap()).collect();
    for method in METHODS {
        let err = Process::builder()
            .start_method(method)
            .spawn(|v: Vec<Segment>| v.len(), segs.clone())
            .unwrap_err();
        // Found before anything is started.
        assert!(
            matches!(err, aiop::blocking::process::ProcessError::Encode(_)),
            "{err}"
        );
        assert!(err.to_string().contains("at most 253"), "{err}");
    }
    // 253 distinct descriptors are fine.
    let mut p = Process::spawn(|v: Vec<Segment>| v.len(), segs[..253].to_vec()).unwrap();
    assert_eq!(p.join().unwrap(), 253);
}

// ---------------------------------------------------------------------------
// EINTR

static SIGNALS_SEEN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

extern "C" fn count_signal(_: libc::c_int) {
    SIGNALS_SEEN.fetch_add(1, Ordering::SeqCst);
}

/// Whether thread `tid` of this process is inside system call `nr` now.
fn in_syscall(tid: i32, nr: libc::c_long) -> bool {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall"))
        .is_ok_and(|s| s.split_whitespace().next() == Some(&nr.to_string()))
}

/// Waits (with a deadline) until `cond` holds.
fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + GENEROUS;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::yield_now();
    }
}

/// Interrupts a thread blocked in `syscall` with signals whose handler has no
/// SA_RESTART (so the kernel returns EINTR), then wakes it for real.
fn interrupt_then_wake(
    word: &'static std::sync::atomic::AtomicU32,
    syscall: libc::c_long,
    wait: fn(&std::sync::atomic::AtomicU32) -> bool,
) {
    // SAFETY: `sigaction` is plain data for which all-zero is valid (no flags,
    // so no SA_RESTART: on purpose).
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = count_signal as extern "C" fn(libc::c_int) as usize;
    // SAFETY: the mask is a valid sigset_t inside `sa`.
    unsafe { libc::sigemptyset(&mut sa.sa_mask) };
    // SAFETY: installs a handler that only touches an atomic.
    let installed = unsafe { libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()) };
    assert_eq!(installed, 0);
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        tx.send((
            rustix::thread::gettid().as_raw_nonzero().get(),
            unsafe_pthread_self(),
        ))
        .unwrap();
        wait(word)
    });
    let (tid, pthread) = rx.recv().unwrap();
    let before = SIGNALS_SEEN.load(Ordering::SeqCst);
    for round in 1..=3 {
        until("the waiter sleeps in the futex call", || {
            in_syscall(tid, syscall)
        });
        // SAFETY: `pthread` is a live thread of this process (it has not returned).
        assert_eq!(unsafe { libc::pthread_kill(pthread, libc::SIGUSR1) }, 0);
        until("the signal was handled", || {
            SIGNALS_SEEN.load(Ordering::SeqCst) >= before + round
        });
    }
    until("the waiter sleeps again after the signals", || {
        in_syscall(tid, syscall)
    });
    word.store(1, Ordering::SeqCst);
    futex::wake_all(word).unwrap();
    assert!(
        waiter.join().unwrap(),
        "the wait returned before the word changed"
    );
}

fn unsafe_pthread_self() -> libc::pthread_t {
    // SAFETY: pthread_self has no preconditions.
    unsafe { libc::pthread_self() }
}

#[test]
fn futex_waits_retry_eintr() {
    static WORD: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    static WORD_V: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    // One `wait` call, no caller loop: EINTR must be retried inside it.
    interrupt_then_wake(&WORD, libc::SYS_futex, |w| {
        let r = futex::wait(w, 0, Timeout::After(GENEROUS)).unwrap();
        r != Wake::TimedOut && w.load(Ordering::SeqCst) == 1
    });
    interrupt_then_wake(&WORD_V, libc::SYS_futex_waitv, |w| {
        let r = futex::waitv(&[(w, 0)], Timeout::After(GENEROUS)).unwrap();
        r != WakeV::TimedOut && w.load(Ordering::SeqCst) == 1
    });
}

#[test]
fn handles_and_processes_are_send_sync() {
    fn shared_handle<T: Clone + Send + Sync + serde::Serialize + serde::de::DeserializeOwned>() {}
    fn send_sync<T: Send + Sync>() {}
    shared_handle::<Slot>();
    shared_handle::<Segment>();
    send_sync::<Process<u32>>();
}

// ---------------------------------------------------------------------------
// Reference counts of slots in messages that are not delivered or not decoded

#[test]
fn a_refused_spawn_gives_back_the_slot_counts_it_took() {
    let slot = Slot::new().unwrap();
    let segs: Vec<Segment> = (0..300).map(|_| Segment::new(4096).unwrap()).collect();
    // Encoded (the count taken), then refused for too many descriptors.
    let err = Process::spawn(
        |(_s, v): (Slot, Vec<Segment>)| v.len(),
        (slot.clone(), segs),
    )
    .unwrap_err();
    assert!(
        matches!(err, aiop::blocking::process::ProcessError::Encode(_)),
        "{err}"
    );
    assert_eq!(slot.ref_count(), 1);
}

#[test]
fn a_child_that_cannot_decode_its_arguments_gives_back_their_slot_counts() {
    for method in METHODS {
        let slot = Slot::new().unwrap();
        let mut p = Process::builder()
            .start_method(method)
            .spawn(
                |_: (Slot, RefusesToDeserialize)| 0u8,
                (slot.clone(), RefusesToDeserialize),
            )
            .unwrap();
        assert!(p.join().is_err());
        assert_eq!(slot.ref_count(), 1);
    }
}

#[test]
fn a_child_whose_initializer_fails_gives_back_the_arguments_slot_counts() {
    let slot = Slot::new().unwrap();
    let mut p = Process::builder()
        .initializer(|_: ()| panic!("no setup today"), ())
        .spawn(|s: Slot| s.ref_count(), slot.clone())
        .unwrap();
    assert!(p.join().unwrap_err().panic_message().is_some());
    assert_eq!(slot.ref_count(), 1);
}

#[test]
fn an_unjoined_result_gives_back_its_slot_counts() {
    fn keep_one(s: Slot) -> (Slot, Slot) {
        (s.clone(), s)
    }
    let slot = Slot::new().unwrap();
    let p = Process::spawn(keep_one, slot.clone()).unwrap();
    let watch = p.sentinel().try_clone_to_owned().unwrap();
    assert!(common::ends_within(&watch, GENEROUS));
    // The child ended with two counts in its reply; nobody joins it.
    drop(p);
    assert_eq!(slot.ref_count(), 1);

    // A joined result holds exactly its handles.
    let mut p = Process::spawn(keep_one, slot.clone()).unwrap();
    let (a, b) = p.join().unwrap();
    assert!(a.same_as(&slot) && b.same_as(&slot));
    assert_eq!(slot.ref_count(), 3);
}
