//! The blocking process pool across real processes: results against the
//! serial computation, worker replacement (a task limit, a crash, a kill
//! from outside), panics, terminate, close and join, fairness, a map
//! dropped halfway, arguments that do not serialize, a failing
//! initializer, timeouts, start methods and many threads on one pool.
//!
//! Handles reach the workers through the initializer, which keeps them in a
//! `static` of the worker process (as Python code keeps them in globals).

aiop::test_support!();

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use aiop::arena::Slot;
use aiop::blocking::pool::{Map, Pool, PoolError};
use aiop::blocking::process::{self, StartMethod};
use aiop::blocking::queue::Queue;
use aiop::blocking::sync::Lock;
use common::{
    GENEROUS, assert_reaped, blocked_in, park_forever, pidfd, raw_pid, set_and_wake, until,
    wait_nonzero,
};
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------
// Helpers

/// In a worker: the test's shared words, given by the initializer.
static SLOT: OnceLock<Slot> = OnceLock::new();

/// The initializer of the pools that share a [`Slot`] with their workers.
fn keep_slot(slot: Slot) {
    assert!(SLOT.set(slot).is_ok(), "the initializer ran twice");
}

/// In a worker: the slot its initializer kept.
fn slot() -> &'static Slot {
    SLOT.get().expect("the initializer ran before the task")
}

/// A pool of `processes` workers sharing a fresh slot (all words zero).
fn pool_with_slot(processes: usize) -> (Pool, Slot) {
    let slot = Slot::new().unwrap();
    let pool = Pool::builder()
        .processes(processes)
        .initializer(keep_slot, slot.clone())
        .build()
        .unwrap();
    (pool, slot)
}

/// Runs `f` on a thread of its own and returns its result; panics if it has
/// not returned within [`GENEROUS`] (turns a hang into a failure).
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(GENEROUS) {
        Ok(v) => {
            t.join().unwrap();
            v
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what} did not return within {GENEROUS:?}")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(t.join().unwrap_err())
        }
    }
}

/// Closes and joins `pool`, failing rather than hanging.
fn join(pool: &Pool) {
    let p = pool.clone();
    within("join", move || p.join()).unwrap();
}

/// Pidfds for `pids` (live workers of this process: not yet reaped).
fn pidfds(pids: &[u32]) -> Vec<(u32, OwnedFd)> {
    pids.iter().map(|&p| (p, pidfd(p))).collect()
}

/// Kills this worker process with `SIGKILL`.
fn kill_myself() -> ! {
    rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL)
        .unwrap();
    park_forever()
}

fn triple(x: u64) -> u64 {
    x * 3
}

fn pid_of(_: ()) -> u32 {
    std::process::id()
}

// ---------------------------------------------------------------------------
// 1. Results match the serial computation

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Job {
    id: u32,
    words: Vec<String>,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Report {
    id: u32,
    upper: Vec<String>,
    total: usize,
    longest: Option<String>,
}

fn job(i: u32) -> Job {
    Job {
        id: i,
        words: (0..i % 7)
            .map(|k| format!("w{i}-{k}").repeat(k as usize % 3 + 1))
            .collect(),
    }
}

fn summarize(job: Job) -> Report {
    Report {
        id: job.id,
        upper: job.words.iter().map(|w| w.to_uppercase()).collect(),
        total: job.words.iter().map(String::len).sum(),
        longest: job.words.iter().max_by_key(|w| w.len()).cloned(),
    }
}

const JOBS: u32 = 200;

/// The jobs with a known length.
fn jobs() -> Vec<Job> {
    (0..JOBS).map(job).collect()
}

/// The same jobs from an iterator that does not know its length.
fn jobs_of_unknown_length() -> impl Iterator<Item = Job> {
    let mut i = 0;
    let it = std::iter::from_fn(move || {
        (i < JOBS).then(|| {
            i += 1;
            job(i - 1)
        })
    });
    assert_eq!(it.size_hint(), (0, None));
    it
}

/// Chunk size 1, or the automatic one.
fn chunked<I, R: serde::de::DeserializeOwned>(m: Map<I, R>, chunk: Option<usize>) -> Map<I, R> {
    match chunk {
        Some(n) => m.chunksize(n),
        None => m,
    }
}

fn collect<T>(results: impl Iterator<Item = Result<T, PoolError>>) -> Vec<T> {
    results.collect::<Result<Vec<T>, PoolError>>().unwrap()
}

#[test]
fn apply_matches_the_serial_computation() {
    let pool = Pool::new(3).unwrap();
    for i in [0, 1, 6, 13, 20] {
        assert_eq!(pool.apply(summarize, job(i)).unwrap(), summarize(job(i)));
    }
    let pending: Vec<_> = (0..JOBS)
        .map(|i| pool.apply_async(summarize, job(i)).unwrap())
        .collect();
    let got: Vec<Report> = pending.into_iter().map(|r| r.get().unwrap()).collect();
    assert_eq!(got, jobs().into_iter().map(summarize).collect::<Vec<_>>());
    join(&pool);
}

#[test]
fn map_matches_the_serial_computation_in_order() {
    let pool = Pool::new(3).unwrap();
    let serial: Vec<Report> = jobs().into_iter().map(summarize).collect();
    for chunk in [Some(1), None] {
        let known = collect(chunked(pool.map(summarize, jobs()), chunk));
        assert_eq!(known, serial, "known length, chunk size {chunk:?}");
        let unknown = collect(chunked(
            pool.map(summarize, jobs_of_unknown_length()),
            chunk,
        ));
        assert_eq!(unknown, serial, "unknown length, chunk size {chunk:?}");
    }
    join(&pool);
}

#[test]
fn map_unordered_matches_the_serial_computation_as_a_set() {
    let pool = Pool::new(3).unwrap();
    let mut serial: Vec<Report> = jobs().into_iter().map(summarize).collect();
    serial.sort();
    for chunk in [Some(1), None] {
        let mut known = collect(chunked(pool.map_unordered(summarize, jobs()), chunk));
        known.sort();
        assert_eq!(known, serial, "known length, chunk size {chunk:?}");
        let mut unknown = collect(chunked(
            pool.map_unordered(summarize, jobs_of_unknown_length()),
            chunk,
        ));
        unknown.sort();
        assert_eq!(unknown, serial, "unknown length, chunk size {chunk:?}");
    }
    join(&pool);
}

fn tag(job: Job, sep: String, times: u16) -> (u32, String) {
    (job.id, job.words.join(&sep.repeat(times as usize)))
}

fn tag_args(i: u32) -> (Job, String, u16) {
    (
        job(i),
        ["-", "+", "::"][i as usize % 3].to_string(),
        (i % 4) as u16,
    )
}

#[test]
fn starmap_matches_the_serial_computation_in_order() {
    let pool = Pool::new(3).unwrap();
    let serial: Vec<(u32, String)> = (0..JOBS)
        .map(|i| {
            let (a, b, c) = tag_args(i);
            tag(a, b, c)
        })
        .collect();
    for chunk in [Some(1), None] {
        let known: Vec<_> = (0..JOBS).map(tag_args).collect();
        let got = collect(chunked(pool.starmap(tag, known), chunk));
        assert_eq!(got, serial, "known length, chunk size {chunk:?}");
        let unknown = (0..JOBS).filter(|_| true).map(tag_args);
        assert_eq!(unknown.size_hint().0, 0);
        let got = collect(chunked(pool.starmap(tag, unknown), chunk));
        assert_eq!(got, serial, "unknown length, chunk size {chunk:?}");
    }
    join(&pool);
}

// ---------------------------------------------------------------------------
// 2. max_tasks_per_child

/// In a worker: how many times its initializer ran.
static INIT_RUNS: AtomicU32 = AtomicU32::new(0);

/// An initializer that counts its runs in this process and announces its
/// pid to the test.
fn record_start(started: Queue<u32>) {
    INIT_RUNS.fetch_add(1, Ordering::SeqCst);
    started.put(std::process::id()).unwrap();
}

/// The square, the worker's pid and how often its initializer ran.
fn square_pid_inits(x: u64) -> (u64, u32, u32) {
    (x * x, std::process::id(), INIT_RUNS.load(Ordering::SeqCst))
}

#[test]
fn max_tasks_per_child_replaces_workers_and_each_runs_its_initializer_once() {
    const PROCESSES: usize = 2;
    const MAX: u64 = 2;
    const TASKS: u64 = 20;
    let started = Queue::<u32>::new(0).unwrap();
    let pool = Pool::builder()
        .processes(PROCESSES)
        .max_tasks_per_child(MAX)
        .initializer(record_start, started.clone())
        .build()
        .unwrap();
    let got = collect(pool.map(square_pid_inits, 0..TASKS).chunksize(1));
    // Every result once, in order.
    let squares: Vec<u64> = got.iter().map(|r| r.0).collect();
    assert_eq!(squares, (0..TASKS).map(|x| x * x).collect::<Vec<_>>());
    // No worker took more than MAX tasks, so there were many workers.
    let mut per_pid: BTreeMap<u32, u64> = BTreeMap::new();
    for &(_, pid, inits) in &got {
        *per_pid.entry(pid).or_default() += 1;
        assert_eq!(inits, 1, "worker {pid}'s initializer ran {inits} times");
    }
    assert!(per_pid.values().all(|&n| n <= MAX), "{per_pid:?}");
    assert!(per_pid.len() as u64 >= TASKS.div_ceil(MAX), "{per_pid:?}");
    assert!(per_pid.len() > PROCESSES);
    // Every worker ever started either ran a task or is one of the current
    // workers (a worker that took no task has no reason to end, and join
    // starts no replacement).
    let current = pool.pids();
    assert_eq!(current.len(), PROCESSES);
    let fds = pidfds(&current);
    join(&pool);
    let mut workers: BTreeSet<u32> = per_pid.keys().copied().collect();
    workers.extend(&current);
    // Each worker announced itself exactly once.
    let mut announced = Vec::new();
    while let Ok(pid) = started.try_get() {
        announced.push(pid);
    }
    let distinct: BTreeSet<u32> = announced.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        announced.len(),
        "an initializer ran twice: {announced:?}"
    );
    assert_eq!(distinct, workers, "initializer runs vs workers");
    for (pid, fd) in &fds {
        assert_reaped(*pid, fd);
    }
}

// ---------------------------------------------------------------------------
// 3. Dead workers

/// Word 0: the pid of the worker that killed itself.
fn die_on_seven(x: u64) -> u64 {
    if x == 7 {
        set_and_wake(slot(), 0, std::process::id());
        kill_myself();
    }
    x * 3 + 1
}

#[test]
fn a_task_that_kills_its_worker_fails_alone_and_the_worker_is_replaced() {
    const PROCESSES: usize = 3;
    let (pool, slot) = pool_with_slot(PROCESSES);
    let before = pool.pids();
    let got: Vec<Result<u64, PoolError>> = pool.map(die_on_seven, 0..30u64).chunksize(1).collect();
    assert_eq!(got.len(), 30);
    let dead = slot.word(0).load(Ordering::SeqCst);
    assert!(
        before.contains(&dead),
        "{dead} was not a worker: {before:?}"
    );
    for (x, r) in got.into_iter().enumerate() {
        match (x, r) {
            (7, Err(PoolError::WorkerDied { pid, how })) => {
                assert_eq!(pid, dead);
                assert!(how.contains("signal 9"), "{how}");
            }
            (7, other) => panic!("item 7: expected WorkerDied, got {other:?}"),
            (x, r) => assert_eq!(r.unwrap(), x as u64 * 3 + 1, "item {x}"),
        }
    }
    let after = pool.pids();
    assert_eq!(after.len(), PROCESSES);
    assert!(!after.contains(&dead), "{after:?}");
    // The dead worker was reaped.
    assert_eq!(
        rustix::process::test_kill_process(raw_pid(dead)),
        Err(rustix::io::Errno::SRCH)
    );
    // The pool goes on, on all its workers.
    assert_eq!(pool.apply(die_on_seven, 8).unwrap(), 25);
    let again = collect(pool.map(die_on_seven, (0..30u64).filter(|&x| x != 7)));
    assert_eq!(
        again,
        (0..30u64)
            .filter(|&x| x != 7)
            .map(|x| x * 3 + 1)
            .collect::<Vec<_>>()
    );
    join(&pool);
}

/// Word 0: the pid of the worker running this task, which never returns.
fn announce_and_park(_: ()) -> u32 {
    set_and_wake(slot(), 0, std::process::id());
    park_forever()
}

#[test]
fn a_worker_killed_from_outside_fails_its_task_and_is_replaced() {
    const PROCESSES: usize = 2;
    let (pool, slot) = pool_with_slot(PROCESSES);
    let stuck = pool.apply_async(announce_and_park, ()).unwrap();
    let victim = wait_nonzero(&slot, 0);
    assert!(pool.pids().contains(&victim));
    // The other worker keeps working meanwhile.
    for x in 0..10 {
        assert_eq!(pool.apply(triple, x).unwrap(), 3 * x);
    }
    rustix::process::kill_process(raw_pid(victim), rustix::process::Signal::KILL).unwrap();
    match stuck.get() {
        Err(PoolError::WorkerDied { pid, how }) => {
            assert_eq!(pid, victim);
            assert!(how.contains("signal 9"), "{how}");
        }
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    let after = pool.pids();
    assert_eq!(after.len(), PROCESSES);
    assert!(!after.contains(&victim), "{after:?}");
    let got = collect(pool.map(triple, 0..100u64).chunksize(1));
    assert_eq!(got, (0..100u64).map(triple).collect::<Vec<_>>());
    join(&pool);
}

// ---------------------------------------------------------------------------
// 4. Panics

fn panics_on_odd(x: u32) -> u32 {
    assert!(x % 2 == 0, "odd input {x}");
    x / 2
}

#[test]
fn a_panicking_task_reports_its_message_and_its_worker_survives() {
    let pool = Pool::new(1).unwrap();
    let worker = pool.apply(pid_of, ()).unwrap();
    match pool.apply(panics_on_odd, 41) {
        Err(e @ PoolError::TaskPanicked(_)) => {
            assert_eq!(e.panic_message(), Some("odd input 41"));
        }
        other => panic!("expected TaskPanicked, got {other:?}"),
    }
    assert_eq!(pool.apply(pid_of, ()).unwrap(), worker);
    // In a chunk, the panic fails its own item only.
    let got: Vec<_> = pool.map(panics_on_odd, 0..10u32).chunksize(10).collect();
    for (x, r) in (0u32..).zip(got) {
        if x % 2 == 0 {
            assert_eq!(r.unwrap(), x / 2);
        } else {
            let msg = format!("odd input {x}");
            assert_eq!(r.unwrap_err().panic_message(), Some(msg.as_str()));
        }
    }
    assert_eq!(pool.apply(pid_of, ()).unwrap(), worker);
    assert_eq!(pool.pids(), vec![worker]);
    join(&pool);
}

// ---------------------------------------------------------------------------
// 5. terminate

/// Word 0: tasks started. Never returns.
fn count_and_park(_: ()) -> u32 {
    slot().word(0).fetch_add(1, Ordering::SeqCst);
    park_forever()
}

#[test]
fn terminate_while_busy_kills_and_reaps_every_worker_and_fails_pending_tasks() {
    const PROCESSES: usize = 2;
    let (pool, slot) = pool_with_slot(PROCESSES);
    let pending: Vec<_> = (0..5)
        .map(|_| pool.apply_async(count_and_park, ()).unwrap())
        .collect();
    until("both workers are busy", || {
        slot.word(0).load(Ordering::SeqCst) == PROCESSES as u32
    });
    let fds = pidfds(&pool.pids());
    assert_eq!(fds.len(), PROCESSES);
    let p = pool.clone();
    within("terminate", move || p.terminate());
    let got = within("get", move || {
        pending.into_iter().map(|r| r.get()).collect::<Vec<_>>()
    });
    for r in got {
        assert!(matches!(r, Err(PoolError::Terminated)), "{r:?}");
    }
    assert!(matches!(pool.apply(triple, 1), Err(PoolError::Terminated)));
    assert!(pool.pids().is_empty(), "{:?}", pool.pids());
    for (pid, fd) in &fds {
        assert_reaped(*pid, fd);
    }
}

// ---------------------------------------------------------------------------
// 6. Fairness

/// Word 0: tasks started. Spins (CPU-bound) until two tasks have started,
/// which needs a second worker: each worker runs one task at a time.
fn spin_until_two_started(x: u32) -> (u32, u32, bool) {
    let started = slot().word(0);
    started.fetch_add(1, Ordering::SeqCst);
    let deadline = Instant::now() + GENEROUS;
    while started.load(Ordering::SeqCst) < 2 && Instant::now() < deadline {
        std::hint::spin_loop();
    }
    (x, std::process::id(), started.load(Ordering::SeqCst) >= 2)
}

#[test]
fn cpu_bound_tasks_run_on_both_workers_at_once() {
    let (pool, _slot) = pool_with_slot(2);
    let got = collect(pool.map(spin_until_two_started, 0..4u32));
    assert_eq!(got.iter().map(|r| r.0).collect::<Vec<_>>(), [0, 1, 2, 3]);
    assert!(got.iter().all(|r| r.2), "a task ran alone: {got:?}");
    let pids: BTreeSet<u32> = got.iter().map(|r| r.1).collect();
    assert_eq!(pids.len(), 2, "{got:?}");
    assert_eq!(pids, pool.pids().into_iter().collect());
    join(&pool);
}

// ---------------------------------------------------------------------------
// 7. A map dropped halfway

/// Word 0: tasks started. Items from `GATED_FROM` on wait for word 1.
fn gated(x: u32) -> u32 {
    slot().word(0).fetch_add(1, Ordering::SeqCst);
    if x >= GATED_FROM {
        wait_nonzero(slot(), 1);
    }
    x * 2
}

const GATED_FROM: u32 = 10;

#[test]
fn dropping_a_map_halfway_withdraws_the_tasks_no_worker_started() {
    const PROCESSES: usize = 2;
    const TAKEN: usize = GATED_FROM as usize;
    const IN_FLIGHT: usize = 6;
    let (pool, slot) = pool_with_slot(PROCESSES);
    let pulled = Arc::new(AtomicUsize::new(0));
    let counted = pulled.clone();
    let input = (0..1000u32).inspect(move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
    });
    let mut results = pool.map(gated, input).chunksize(1).max_in_flight(IN_FLIGHT);
    for x in 0..TAKEN as u32 {
        assert_eq!(results.next().unwrap().unwrap(), x * 2);
    }
    // The bound (engine.rs, map.rs): a map submits a task only while fewer
    // than `max_in_flight` of its tasks are outstanding (submitted, result
    // not handed out), so at most TAKEN + IN_FLIGHT items were ever
    // submitted. Of those, a worker is handed one task at a time (a sync
    // worker's concurrency is 1; the rest wait in the parent's backlog),
    // and the tasks of items 10 and up stop at the gate: once both workers
    // are busy, exactly items 10 and 11 have started (TAKEN + PROCESSES),
    // and every other submitted item waits in the backlog, from which
    // dropping the map withdraws it. So the count must end at exactly
    // TAKEN + PROCESSES, well within TAKEN + IN_FLIGHT + PROCESSES.
    until("two gated tasks have started", || {
        slot.word(0).load(Ordering::SeqCst) == TAKEN as u32 + PROCESSES as u32
    });
    // The input is read lazily: at most the results taken plus the tasks
    // in flight (chunk size 1: one item per task).
    let read = pulled.load(Ordering::SeqCst);
    assert!(read <= TAKEN + IN_FLIGHT, "{read} items read");
    assert!(read >= TAKEN + PROCESSES, "{read} items read");
    drop(results);
    // The withdrawn tasks must not start when the workers come free.
    set_and_wake(&slot, 1, 1);
    for x in 0..10 {
        assert_eq!(pool.apply(triple, x).unwrap(), 3 * x);
    }
    // join waits for every task handed to a worker.
    join(&pool);
    assert_eq!(
        slot.word(0).load(Ordering::SeqCst),
        TAKEN as u32 + PROCESSES as u32,
        "tasks withdrawn by the drop ran anyway"
    );
    assert_eq!(pulled.load(Ordering::SeqCst), read);
}

// ---------------------------------------------------------------------------
// 8. Arguments that do not serialize

/// Serializes as its number, or refuses when it has none.
#[derive(Debug)]
struct Maybe(Option<u32>);

impl Serialize for Maybe {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(x) => s.serialize_u32(x),
            None => Err(serde::ser::Error::custom("not today")),
        }
    }
}

impl<'de> Deserialize<'de> for Maybe {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Maybe, D::Error> {
        u32::deserialize(d).map(|x| Maybe(Some(x)))
    }
}

/// Word 0: tasks run.
fn count_maybe(m: Maybe) -> u32 {
    slot().word(0).fetch_add(1, Ordering::SeqCst);
    m.0.unwrap() * 10
}

/// Word 0: tasks run.
fn count_with_lock((x, _lock): (u32, Lock)) -> u32 {
    slot().word(0).fetch_add(1, Ordering::SeqCst);
    x
}

#[test]
fn arguments_that_do_not_serialize_are_refused_at_submission_and_nothing_runs() {
    let (pool, slot) = pool_with_slot(2);
    let lock = Lock::new().unwrap();
    match pool.apply(count_with_lock, (1, lock.clone())) {
        Err(PoolError::Encode(m)) => assert!(m.contains("initializer"), "{m}"),
        other => panic!("expected Encode, got {other:?}"),
    }
    match pool.apply_async(count_with_lock, (2, lock.clone())) {
        Err(PoolError::Encode(m)) => assert!(m.contains("initializer"), "{m}"),
        other => panic!("expected Encode, got {other:?}"),
    }
    assert!(matches!(
        pool.apply(count_maybe, Maybe(None)),
        Err(PoolError::Encode(_))
    ));
    // In a map, the refused item fails in its place; the others run.
    for chunk in [1, 3] {
        let input = [Some(1), None, Some(3)].map(Maybe);
        let got: Vec<_> = pool.map(count_maybe, input).chunksize(chunk).collect();
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(*got[0].as_ref().unwrap(), 10);
        assert!(matches!(got[1], Err(PoolError::Encode(_))), "{got:?}");
        assert_eq!(*got[2].as_ref().unwrap(), 30);
    }
    join(&pool);
    // Only the four good map items ran.
    assert_eq!(slot.word(0).load(Ordering::SeqCst), 4);
}

// ---------------------------------------------------------------------------
// 9. A failing initializer

fn broken_setup(_: ()) {
    panic!("no config today")
}

fn assert_initializer_failed(r: Result<u64, PoolError>) {
    match r {
        Err(PoolError::InitializerFailed(m)) => assert!(m.contains("no config today"), "{m}"),
        other => panic!("expected InitializerFailed, got {other:?}"),
    }
}

#[test]
fn a_panicking_initializer_fails_every_task_without_hanging() {
    let pool = Pool::builder()
        .processes(2)
        .initializer(broken_setup, ())
        .build()
        .unwrap();
    let fds = pidfds(&pool.pids());
    assert_eq!(fds.len(), 2);
    let p = pool.clone();
    assert_initializer_failed(within("apply", move || p.apply(triple, 1)));
    let p = pool.clone();
    let mapped = within("map", move || p.map(triple, 0..10u64).collect::<Vec<_>>());
    assert!(!mapped.is_empty());
    for r in mapped {
        assert_initializer_failed(r);
    }
    pool.close();
    join(&pool);
    for (pid, fd) in &fds {
        assert_reaped(*pid, fd);
    }
}

#[test]
fn the_first_tasks_of_a_pool_whose_initializer_panics_fail_with_initializer_failed() {
    // Tasks submitted at once, before any worker could have run its
    // initializer.
    let pool = Pool::builder()
        .processes(2)
        .initializer(broken_setup, ())
        .build()
        .unwrap();
    let fds = pidfds(&pool.pids());
    let pending: Vec<_> = (0..4)
        .map(|x| pool.apply_async(triple, x).unwrap())
        .collect();
    for r in pending {
        assert_initializer_failed(within("get", move || r.get()));
    }
    join(&pool);
    for (pid, fd) in &fds {
        assert_reaped(*pid, fd);
    }
}

// ---------------------------------------------------------------------------
// 10-11. close, join, get_timeout

/// Word 0: tasks started. Waits for word 1.
fn gate_then_square(x: u64) -> u64 {
    slot().word(0).fetch_add(1, Ordering::SeqCst);
    wait_nonzero(slot(), 1);
    x * x
}

#[test]
fn close_refuses_new_tasks_and_join_waits_for_the_outstanding_ones() {
    const PROCESSES: usize = 2;
    let (pool, slot) = pool_with_slot(PROCESSES);
    let mut pending: Vec<_> = (0..6u64)
        .map(|x| pool.apply_async(gate_then_square, x).unwrap())
        .collect();
    until("both workers are at the gate", || {
        slot.word(0).load(Ordering::SeqCst) == PROCESSES as u32
    });
    let fds = pidfds(&pool.pids());
    pool.close();
    assert!(matches!(pool.apply(triple, 1), Err(PoolError::Closed)));
    assert!(matches!(
        pool.apply_async(triple, 1),
        Err(PoolError::Closed)
    ));
    let refused: Vec<_> = pool.map(triple, 0..5u64).collect();
    assert!(!refused.is_empty());
    assert!(refused.iter().all(|r| matches!(r, Err(PoolError::Closed))));
    // join sleeps (reading results for everyone) while tasks are gated.
    let p = pool.clone();
    let joining = blocked_in(&[libc::SYS_futex, libc::SYS_futex_waitv], move || p.join());
    assert!(!pending[0].ready());
    assert!(
        !joining.is_finished(),
        "join returned before the tasks ended"
    );
    set_and_wake(&slot, 1, 1);
    joining.join().unwrap();
    // join read every result for its owner: they are all there.
    let got = within("get", move || {
        pending
            .into_iter()
            .map(|r| r.get().unwrap())
            .collect::<Vec<u64>>()
    });
    assert_eq!(got, (0..6u64).map(|x| x * x).collect::<Vec<_>>());
    assert_eq!(slot.word(0).load(Ordering::SeqCst), 6);
    assert!(pool.pids().is_empty(), "{:?}", pool.pids());
    for (pid, fd) in &fds {
        assert_reaped(*pid, fd);
    }
}

#[test]
fn get_timeout_expires_on_a_running_task_which_can_still_be_got() {
    let (pool, slot) = pool_with_slot(1);
    let mut r = pool.apply_async(gate_then_square, 9).unwrap();
    until("the task runs", || slot.word(0).load(Ordering::SeqCst) == 1);
    assert!(!r.ready());
    let e = r.get_timeout(Duration::from_millis(50)).unwrap_err();
    assert!(e.is_timeout(), "{e}");
    assert!(!r.ready());
    set_and_wake(&slot, 1, 1);
    assert_eq!(within("get", move || r.get()).unwrap(), 81);
    join(&pool);
}

// ---------------------------------------------------------------------------
// 12. Start methods

/// The square, this worker's pid and its parent's.
fn square_and_parent(x: u64) -> (u64, u32, u32) {
    (
        x * x,
        std::process::id(),
        std::os::unix::process::parent_id(),
    )
}

/// Runs `square_and_parent` over 0..50 and `die_on_seven` on `pool`;
/// returns the parents of the workers seen.
fn exercise(pool: &Pool, slot: &Slot) -> BTreeSet<u32> {
    let workers: BTreeSet<u32> = pool.pids().into_iter().collect();
    let got = collect(pool.map(square_and_parent, 0..50u64).chunksize(1));
    assert_eq!(
        got.iter().map(|r| r.0).collect::<Vec<_>>(),
        (0..50u64).map(|x| x * x).collect::<Vec<_>>()
    );
    assert!(got.iter().all(|r| workers.contains(&r.1)), "{got:?}");
    // A crash is noticed and the worker replaced with this method too.
    match pool.apply(die_on_seven, 7) {
        Err(PoolError::WorkerDied { pid, how }) => {
            assert_eq!(pid, slot.word(0).load(Ordering::SeqCst));
            assert!(how.contains("signal 9"), "{how}");
        }
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    assert_eq!(pool.pids().len(), pool.processes());
    assert_eq!(pool.apply(die_on_seven, 6).unwrap(), 19);
    got.iter().map(|r| r.2).collect()
}

#[test]
fn a_fork_server_pool_runs_tasks_and_replaces_workers() {
    let slot = Slot::new().unwrap();
    let pool = Pool::builder()
        .processes(2)
        .start_method(StartMethod::FORK_SERVER)
        .initializer(keep_slot, slot.clone())
        .build()
        .unwrap();
    let parents = exercise(&pool, &slot);
    // The fork server, not this process, is the workers' parent.
    assert!(!parents.contains(&std::process::id()), "{parents:?}");
    join(&pool);
}

#[test]
fn a_default_pool_spawns_its_workers_as_children_of_this_process() {
    assert_eq!(process::start_method(), StartMethod::SPAWN);
    let slot = Slot::new().unwrap();
    let pool = Pool::builder()
        .processes(2)
        .initializer(keep_slot, slot.clone())
        .build()
        .unwrap();
    let parents = exercise(&pool, &slot);
    assert_eq!(
        parents,
        BTreeSet::from([std::process::id()]),
        "spawned workers are children of this process"
    );
    let fds = pidfds(&pool.pids());
    join(&pool);
    for (pid, fd) in &fds {
        assert_reaped(*pid, fd);
    }
}

// ---------------------------------------------------------------------------
// 13. Many threads on one pool

fn mix((t, i): (u32, u32)) -> (u32, u32, u64) {
    (t, i, u64::from(t) * 1_000_003 + u64::from(i) * u64::from(i))
}

#[test]
fn eight_threads_share_one_pool() {
    const THREADS: u32 = 8;
    const EACH: u32 = 200;
    let pool = Pool::new(4).unwrap();
    let p = pool.clone();
    let done = within("the threads", move || {
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let pool = p.clone();
                std::thread::spawn(move || {
                    for i in 0..EACH {
                        assert_eq!(pool.apply(mix, (t, i)).unwrap(), mix((t, i)));
                    }
                    EACH
                })
            })
            .collect();
        threads.into_iter().map(|h| h.join().unwrap()).sum::<u32>()
    });
    assert_eq!(done, THREADS * EACH);
    join(&pool);
}
