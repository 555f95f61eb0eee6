//! The parent's side of a pool: workers, the tasks waiting for one, and the
//! reading of results.
//!
//! * Each worker has its own task ring and takes one plain task, or up to
//!   `concurrency` async ones, at a time; tasks wait in the parent's FIFO
//!   *backlog* until a worker has room, so work goes to idle workers only (fairness) and a
//!   task not yet handed over can be withdrawn (a dropped `map`).
//! * All workers answer on one result ring. Whoever waits for a result (an
//!   `apply`, a `map` stream, `join`) and finds nobody reading becomes the
//!   *reader*: it drains the ring, hands each result to its owner and wakes
//!   it, feeds freed workers from the backlog, and sleeps on the ring. The
//!   others sleep until the reader wakes them. No thread is started.
//! * Each worker holds a robust lock, its *life lock*, from its start to its
//!   end. When it dies, however it dies, the kernel marks that word
//!   `OWNER_DIED` and wakes the reader, which sleeps on the result ring and
//!   every life word at once (`futex_waitv`). The worker's unanswered tasks
//!   fail with `WorkerDied` and a new worker takes its place.
//! * A worker between its start and taking its life lock cannot be watched
//!   that way: while one is starting, the reader also looks at its process
//!   every few milliseconds.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Wake, Waker};
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::call::Entry;
use super::error::PoolError;
use crate::process::{Builder, Process, ProcessError};
use crate::queue::Queue;
use crate::sync::Lock;
use crate::wait::Watch;

/// Bytes of each worker's task ring.
const TASK_RING: usize = 4 << 20;
/// Bytes of the result ring (larger results stream through it).
const RESULT_RING: usize = 16 << 20;
/// The largest encoded task: half the task ring, less room for framing.
pub(crate) const MAX_TASK_BYTES: usize = TASK_RING / 2 - 4096;
/// A chunk is cut once its arguments take this many bytes.
pub(crate) const CHUNK_BYTES: usize = 256 << 10;
/// How often a reader looks at workers that have not taken their life lock.
const STARTING_POLL: Duration = Duration::from_millis(5);
/// How often the reader asks every running worker's process whether it
/// ended, and so the longest it sleeps while tasks run.
const SWEEP: Duration = Duration::from_secs(1);
/// The longest sleep of a blocking reader with more words than one
/// `futex_waitv` takes (more than 127 workers).
const MANY_WORDS_POLL: Duration = Duration::from_millis(20);
/// Workers that die before they start, in a row, before the pool gives up.
const START_FAILURES: u32 = 3;

/// A byte string that serializes as one (postcard: length + bytes).
#[derive(Clone, Debug, Default)]
#[doc(hidden)]
pub struct Bytes(pub Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// A task as a worker receives it.
#[derive(Debug, Serialize, Deserialize)]
#[doc(hidden)]
pub struct TaskMsg {
    pub id: u64,
    pub entry: Entry,
    pub args: Bytes,
}

/// A task's reply: one outcome per item of its chunk.
#[derive(Debug, Serialize, Deserialize)]
#[doc(hidden)]
pub struct ResultMsg {
    pub id: u64,
    pub body: Bytes,
}

/// What a worker process is started with.
#[derive(Debug, Serialize, Deserialize)]
#[doc(hidden)]
pub struct WorkerArgs {
    /// This worker's tasks (closed when the pool is joined).
    pub tasks: Queue<TaskMsg>,
    /// Where every worker puts its replies.
    pub results: Queue<ResultMsg>,
    /// Held from the worker's start to its end.
    pub life: Lock,
    /// Tasks to take before exiting (0: no limit).
    pub max_tasks: u64,
    /// Tasks to run at once (async workers).
    pub concurrency: u32,
}

/// A task's outcome as the engine hands it over: its reply body, or why
/// there is none.
pub type Outcome = Result<Vec<u8>, PoolError>;

/// How the engine is set up.
pub(crate) struct Config {
    pub(crate) processes: usize,
    pub(crate) max_tasks: u64,
    pub(crate) concurrency: usize,
    pub(crate) builder: Builder,
    pub(crate) worker: fn(WorkerArgs),
}

struct Slot {
    proc: Option<Process<()>>,
    pid: u32,
    tasks: Queue<TaskMsg>,
    life: Lock,
    /// Tasks handed to this worker and not answered, in order.
    assigned: Vec<u64>,
    /// Tasks handed to this incarnation.
    given: u64,
    /// Plain (not async) tasks among `assigned`.
    plain: usize,
    /// Seen holding its life lock.
    running: bool,
    /// Its life lock came free while its process lives on.
    ending: bool,
    /// Its task ring was full at the last dispatch.
    full: bool,
    /// Ended for good: not to be replaced.
    gone: bool,
}

struct Task {
    owner: u64,
    /// The message, while the task waits in the backlog.
    msg: Option<TaskMsg>,
    slot: Option<usize>,
    /// A plain task: it has its worker to itself.
    plain: bool,
}

#[derive(Default)]
struct Owner {
    ready: VecDeque<(u64, Outcome)>,
    waker: Option<Waker>,
    /// Tasks submitted whose outcome has not reached `ready` yet.
    pending: usize,
    /// Waits for every task of the pool (`join`).
    join: bool,
    /// In `State::waiting`.
    queued: bool,
}

struct State {
    slots: Vec<Slot>,
    tasks: HashMap<u64, Task>,
    /// Plain tasks waiting for a worker, oldest first.
    plain_q: VecDeque<u64>,
    /// Async tasks waiting for a worker, oldest first (ids grow, so the two
    /// queues merge back into submission order).
    async_q: VecDeque<u64>,
    owners: HashMap<u64, Owner>,
    /// Owners that sleep, in the order they went to sleep (may hold ids
    /// that woke or left since).
    waiting: VecDeque<u64>,
    next_id: u64,
    /// The reader's generation, while someone holds the role.
    reader: Option<u64>,
    /// Generations handed out so far.
    reader_gen: u64,
    /// When the reader last pumped: a reader that has not for a while may
    /// have been set aside (an async future polled once and kept, never
    /// polled again), so a waiter's `turn` takes the role from it.
    last_pump: Instant,
    /// When the reader last asked every worker's process whether it ended.
    last_sweep: Instant,
    /// Wakers to wake once the state lock is released.
    to_wake: Vec<Waker>,
    closed: bool,
    failure: Option<PoolError>,
    start_failures: u32,
}

/// The shared state of a pool. Every handle (the pool, its results, its
/// streams) keeps it alive; the last one to go kills the workers.
#[doc(hidden)]
pub struct Engine {
    st: Mutex<State>,
    results: Queue<ResultMsg>,
    cfg: Config,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("processes", &self.cfg.processes)
            .finish_non_exhaustive()
    }
}

/// What a waiting owner should do next.
#[doc(hidden)]
#[derive(Debug)]
pub enum Turn {
    /// These outcomes are its (possibly none: nothing is pending).
    Ready(Vec<(u64, Outcome)>),
    /// Nobody reads the result ring: the owner is the reader now (this
    /// generation of it), and must give the role back when it stops (a
    /// [`ReaderGuard`]).
    Read(u64),
    /// Another reader will wake the waker given. If nothing does within
    /// the waiter's patience, it asks for its turn again: a reader that has
    /// not pumped for [`PATIENCE_MIN`] loses the role to it.
    Wait,
}

/// How long a waiter waits for the reader before it tries to take the
/// role; doubled after each try, up to [`PATIENCE_MAX`].
pub const PATIENCE_MIN: Duration = Duration::from_millis(10);
/// The longest patience.
pub const PATIENCE_MAX: Duration = Duration::from_secs(1);

impl Engine {
    pub(crate) fn start(cfg: Config) -> Result<Arc<Engine>, PoolError> {
        let results = Queue::with_capacity(0, RESULT_RING)?;
        let engine = Arc::new(Engine {
            st: Mutex::new(State {
                slots: Vec::new(),
                tasks: HashMap::new(),
                plain_q: VecDeque::new(),
                async_q: VecDeque::new(),
                owners: HashMap::new(),
                waiting: VecDeque::new(),
                next_id: 1,
                reader: None,
                reader_gen: 0,
                last_pump: Instant::now(),
                last_sweep: Instant::now(),
                to_wake: Vec::new(),
                closed: false,
                failure: None,
                start_failures: 0,
            }),
            results,
            cfg,
        });
        {
            let mut st = engine.lock();
            for _ in 0..engine.cfg.processes {
                let slot = engine.new_slot()?;
                st.slots.push(slot);
            }
        }
        Ok(engine)
    }

    /// The state, locked; wakers queued while it is held are woken once
    /// it is released (never under the lock: a waker may run code that
    /// comes back to the pool).
    fn lock(&self) -> Locked<'_> {
        Locked(Some(self.st.lock().unwrap_or_else(|e| e.into_inner())))
    }

    fn new_slot(&self) -> Result<Slot, PoolError> {
        let tasks = Queue::with_capacity(0, TASK_RING)?;
        let life = Lock::new()?;
        let args = WorkerArgs {
            tasks: tasks.clone(),
            results: self.results.clone(),
            life: life.clone(),
            max_tasks: self.cfg.max_tasks,
            concurrency: self.cfg.concurrency as u32,
        };
        let proc = self
            .cfg
            .builder
            .spawn(self.cfg.worker, args)
            .map_err(|e| match e {
                ProcessError::Io(e) => PoolError::from(e),
                e => PoolError::Failed(format!("a worker could not start: {e}")),
            })?;
        Ok(Slot {
            pid: proc.pid(),
            proc: Some(proc),
            tasks,
            life,
            assigned: Vec::new(),
            given: 0,
            plain: 0,
            running: false,
            ending: false,
            full: false,
            gone: false,
        })
    }

    /// The number of worker processes.
    pub fn processes(&self) -> usize {
        self.cfg.processes
    }

    /// Tasks each worker runs at once.
    pub fn concurrency(&self) -> usize {
        self.cfg.concurrency
    }

    /// The process ids of the current workers.
    pub fn pids(&self) -> Vec<u32> {
        self.lock()
            .slots
            .iter()
            .filter(|s| !s.gone)
            .map(|s| s.pid)
            .collect()
    }

    /// A new owner of tasks (an `apply`, a stream, a `join`).
    pub fn new_owner(&self) -> u64 {
        let mut st = self.lock();
        let id = st.next_id;
        st.next_id += 1;
        st.owners.insert(id, Owner::default());
        id
    }

    /// Forgets an owner: its tasks still in the backlog are withdrawn (they
    /// never start); the results of its running tasks will be dropped.
    pub fn drop_owner(&self, owner: u64) {
        let mut st = self.lock();
        if st.owners.remove(&owner).is_none() {
            return;
        }
        let st = &mut *st;
        let tasks = &mut st.tasks;
        for q in [&mut st.plain_q, &mut st.async_q] {
            q.retain(|id| match tasks.get(id) {
                Some(t) if t.owner == owner => {
                    tasks.remove(id);
                    false
                }
                _ => true,
            });
        }
        for t in tasks.values_mut() {
            if t.owner == owner {
                t.owner = 0;
            }
        }
        self.wake_joiners(st);
        self.baton(st);
    }

    /// Submits a task of `owner`: `args` is a chunk (see `call`).
    ///
    /// # Errors
    ///
    /// [`PoolError::Closed`] after `close`, the pool's failure after
    /// `terminate` or a failed initializer, [`PoolError::Encode`] for a
    /// chunk too large for a task ring.
    pub fn submit(&self, owner: u64, entry: Entry, args: Vec<u8>) -> Result<u64, PoolError> {
        if args.len() > MAX_TASK_BYTES {
            return Err(PoolError::Encode(format!(
                "the task's arguments take {} bytes, more than a pool task carries ({MAX_TASK_BYTES}); put large data in shared memory (SharedMemory, Array) and pass that through the initializer",
                args.len()
            )));
        }
        let mut st = self.lock();
        if let Some(f) = &st.failure {
            return Err(f.clone());
        }
        if st.closed {
            return Err(PoolError::Closed);
        }
        let Some(o) = st.owners.get_mut(&owner) else {
            return Err(PoolError::Closed);
        };
        o.pending += 1;
        let id = st.next_id;
        st.next_id += 1;
        st.tasks.insert(
            id,
            Task {
                owner,
                msg: Some(TaskMsg {
                    id,
                    entry,
                    args: Bytes(args),
                }),
                slot: None,
                plain: false,
            },
        );
        if entry.is_async() {
            st.async_q.push_back(id);
        } else {
            st.plain_q.push_back(id);
        }
        self.dispatch(&mut st);
        Ok(id)
    }

    /// Hands backlog tasks to workers with room, idlest first, in order of
    /// submission within each kind.
    ///
    /// A plain task runs on the worker's thread and holds up whatever else
    /// the worker has: it goes only to a worker with nothing, and nothing
    /// joins it there. Async tasks share a worker up to its concurrency. A
    /// plain task waiting for an idle worker does not hold back the async
    /// tasks behind it (one of them may be what a running task waits for),
    /// but those go only to workers that are busy already, so that the next
    /// worker to become idle is the plain task's.
    fn dispatch(&self, st: &mut State) {
        for s in st.slots.iter_mut() {
            s.full = false;
        }
        let max = self.cfg.max_tasks;
        let mut plain_waits = false;
        loop {
            // The oldest task first, but a plain one waiting for an idle
            // worker lets the async ones behind it go.
            let id = match (st.plain_q.front(), st.async_q.front()) {
                (Some(&p), Some(&a)) if !plain_waits && p < a => p,
                (_, Some(&a)) => a,
                (Some(&p), None) if !plain_waits => p,
                _ => break,
            };
            let is_async = st.async_q.front() == Some(&id);
            let queue = if is_async {
                &mut st.async_q
            } else {
                &mut st.plain_q
            };
            let Some(msg_ok) = st.tasks.get(&id).map(|t| t.msg.is_some()) else {
                // Withdrawn or done: forget it.
                queue.pop_front();
                continue;
            };
            if !msg_ok {
                queue.pop_front();
                continue;
            }
            let room = |s: &Slot| {
                if is_async {
                    s.plain == 0
                        && s.assigned.len() < self.cfg.concurrency
                        && !(plain_waits && s.assigned.is_empty())
                } else {
                    s.assigned.is_empty()
                }
            };
            let pick = st
                .slots
                .iter()
                .enumerate()
                .filter(|(_, s)| {
                    !s.gone && !s.full && s.proc.is_some() && room(s) && (max == 0 || s.given < max)
                })
                .min_by_key(|(i, s)| (s.assigned.len(), !s.running, *i))
                .map(|(i, _)| i);
            let Some(i) = pick else {
                if is_async {
                    // No room for async tasks anywhere (and a plain task
                    // ahead needs an idle worker, which there is not).
                    break;
                }
                plain_waits = true;
                continue;
            };
            let task = st.tasks.get_mut(&id).expect("checked above");
            let msg = task.msg.take().expect("checked above");
            let slot = &mut st.slots[i];
            match slot.tasks.try_put(msg) {
                Ok(()) => {
                    task.slot = Some(i);
                    task.plain = !is_async;
                    slot.plain += usize::from(!is_async);
                    slot.assigned.push(id);
                    slot.given += 1;
                    if is_async {
                        st.async_q.pop_front();
                    } else {
                        st.plain_q.pop_front();
                    }
                }
                Err(e) => {
                    let closed = e.is_closed();
                    task.msg = Some(e.into_inner());
                    if closed {
                        slot.gone = true;
                    }
                    slot.full = true;
                }
            }
        }
    }

    /// Gives a task's outcome to its owner.
    fn finish(&self, st: &mut State, id: u64, outcome: Outcome) {
        let Some(task) = st.tasks.remove(&id) else {
            return;
        };
        if let Some(i) = task.slot {
            let s = &mut st.slots[i];
            s.assigned.retain(|&a| a != id);
            s.plain -= usize::from(task.plain);
        }
        if let Some(o) = st.owners.get_mut(&task.owner) {
            o.pending -= 1;
            o.ready.push_back((id, outcome));
            if let Some(w) = o.waker.take() {
                st.to_wake.push(w);
            }
        }
        self.wake_joiners(st);
    }

    fn wake_joiners(&self, st: &mut State) {
        if st.tasks.is_empty() {
            for o in st.owners.values_mut().filter(|o| o.join) {
                if let Some(w) = o.waker.take() {
                    st.to_wake.push(w);
                }
            }
        }
    }

    /// With no reader, wakes one sleeping owner to take the role.
    fn baton(&self, st: &mut State) {
        if st.reader.is_some() {
            return;
        }
        while let Some(id) = st.waiting.pop_front() {
            let Some(o) = st.owners.get_mut(&id) else {
                continue;
            };
            o.queued = false;
            if let Some(w) = o.waker.take() {
                st.to_wake.push(w);
                return;
            }
        }
    }

    /// Takes every reply the ring holds now.
    fn drain(&self, st: &mut State) {
        loop {
            match self.results.try_get_now() {
                Ok(msg) => self.finish(st, msg.id, Ok(msg.body.0)),
                Err(e) if e.busy => continue,
                Err(_) => break,
            }
        }
    }

    /// Does everything that can be done now: takes replies, notices workers
    /// that started or ended, replaces those that ended, feeds workers.
    fn pump(&self, st: &mut State) {
        self.drain(st);
        // Now and then, ask every running worker's process whether it ended:
        // the life lock cannot tell when the kernel did not reach it (a
        // worker that held more than 2048 robust locks at its death).
        let sweep = st.last_sweep.elapsed() >= SWEEP;
        if sweep {
            st.last_sweep = Instant::now();
        }
        for i in 0..st.slots.len() {
            let s = &mut st.slots[i];
            if s.gone || s.proc.is_none() {
                continue;
            }
            if !s.running && s.life.is_locked() {
                s.running = true;
                st.start_failures = 0;
                continue;
            }
            // Look at the process when the worker is starting, when its life
            // lock came free (it ends, or exec'd: never wait for it here),
            // or at a sweep.
            let look = !s.running || !s.life.is_locked() || sweep;
            if !look {
                continue;
            }
            let ended = match s.proc.as_mut().map(Process::try_join) {
                Some(Ok(None)) | None => {
                    if s.running && !s.life.is_locked() {
                        // Its life lock is free but the process lives on:
                        // look again soon (see `watches`).
                        s.ending = true;
                    }
                    continue;
                }
                Some(Ok(Some(()))) => Ok(()),
                Some(Err(e)) => Err(e),
            };
            // A worker that took its life lock and has ended since
            // (quickly, as with one task per child) did start; its last
            // replies may have landed since the drain above.
            let early = !s.running && !s.life.raw().was_held();
            self.drain(st);
            self.ended(st, i, ended, early);
        }
        self.dispatch(st);
    }

    /// Slot `i`'s process has ended with `how`; `early`: before it took its
    /// life lock.
    fn ended(&self, st: &mut State, i: usize, how: Result<(), ProcessError>, early: bool) {
        let s = &mut st.slots[i];
        s.proc = None;
        s.gone = true;
        let pid = s.pid;
        let unanswered = std::mem::take(&mut s.assigned);
        let init_failed = match &how {
            Err(ProcessError::Panicked(m)) if m.starts_with("the initializer panicked") => {
                Some(m.clone())
            }
            Err(ProcessError::Failed(m)) if m.starts_with("initializer") => Some(m.clone()),
            _ => None,
        };
        let words = match &how {
            Ok(()) => "it exited after its last task".to_string(),
            Err(ProcessError::Signaled(sig)) => format!("killed by signal {sig}"),
            Err(ProcessError::Exited(c)) => format!("exited with code {c}"),
            Err(ProcessError::Panicked(m)) => format!("panicked: {m}"),
            Err(e) => e.to_string(),
        };
        if let Some(m) = init_failed {
            // Its tasks never ran: they fail, with every other, for the
            // reason the pool cannot go on.
            self.fail_all(st, PoolError::InitializerFailed(m));
            return;
        }
        for id in unanswered {
            self.finish(
                st,
                id,
                Err(PoolError::WorkerDied {
                    pid,
                    how: words.clone(),
                }),
            );
        }
        if early {
            st.start_failures += 1;
            if st.start_failures >= START_FAILURES {
                self.fail_all(
                    st,
                    PoolError::Failed(format!(
                        "{START_FAILURES} workers in a row ended before they started (the last: {words})"
                    )),
                );
                return;
            }
        }
        if st.failure.is_some() || (st.closed && st.tasks.is_empty()) {
            return;
        }
        match self.new_slot() {
            Ok(slot) => st.slots[i] = slot,
            Err(e) => {
                if st.slots.iter().all(|s| s.gone) {
                    self.fail_all(st, e);
                }
            }
        }
    }

    /// The pool cannot go on: every task fails with `err`, every worker is
    /// killed.
    fn fail_all(&self, st: &mut State, err: PoolError) {
        if st.failure.is_none() {
            st.failure = Some(err.clone());
        }
        for s in st.slots.iter_mut() {
            s.gone = true;
            s.tasks.close();
            if let Some(p) = &s.proc {
                let _ = p.kill();
            }
        }
        let ids: Vec<u64> = st.tasks.keys().copied().collect();
        st.plain_q.clear();
        st.async_q.clear();
        for id in ids {
            self.finish(st, id, Err(err.clone()));
        }
        // The processes are reaped by `reap` (join, terminate, drop).
    }

    /// What `owner` does next; `waker` is woken when that changes.
    pub fn turn(&self, owner: u64, waker: &Waker) -> Turn {
        let mut st = self.lock();
        let st = &mut *st;
        let all_done = st.tasks.is_empty();
        let Some(o) = st.owners.get_mut(&owner) else {
            return Turn::Ready(Vec::new());
        };
        if !o.ready.is_empty() || (o.pending == 0 && !o.join) || (o.join && all_done) {
            let got = o.ready.drain(..).collect();
            self.baton(st);
            return Turn::Ready(got);
        }
        if st.reader.is_none() || st.last_pump.elapsed() >= PATIENCE_MIN {
            // Nobody reads, or the reader has not for a while (it may have
            // been set aside); the old holder notices at its next step.
            return Turn::Read(Self::take_role(st));
        }
        o.waker = Some(waker.clone());
        if !std::mem::replace(&mut o.queued, true) {
            st.waiting.push_back(owner);
        }
        Turn::Wait
    }

    fn take_role(st: &mut State) -> u64 {
        st.reader_gen += 1;
        st.reader = Some(st.reader_gen);
        st.last_pump = Instant::now();
        st.reader_gen
    }

    /// Whether generation `role` still holds the reader role.
    pub fn is_reader(&self, role: u64) -> bool {
        self.lock().reader == Some(role)
    }

    /// For the reader: does what can be done now, and returns `owner`'s
    /// outcomes if it has some (or has nothing pending).
    pub fn pump_for(&self, owner: u64) -> Option<Vec<(u64, Outcome)>> {
        let mut st = self.lock();
        st.last_pump = Instant::now();
        self.pump(&mut st);
        let all_done = st.tasks.is_empty();
        let o = st.owners.get_mut(&owner)?;
        if !o.ready.is_empty() || (o.pending == 0 && !o.join) || (o.join && all_done) {
            return Some(o.ready.drain(..).collect());
        }
        None
    }

    /// Gives up the reader role of generation `role` (if it still holds
    /// it), waking a sleeping owner to take it.
    pub fn release_reader(&self, role: u64) {
        let mut st = self.lock();
        if st.reader == Some(role) {
            st.reader = None;
            // Whoever still waits needs a reader.
            self.baton(&mut st);
        }
    }

    /// For the reader: the words to sleep on (the result ring and each
    /// running worker's life word), and how long at most (while a worker
    /// is starting). An empty list with a past deadline: look again now.
    pub fn watches(&self) -> (Vec<Watch>, Option<Instant>) {
        let st = self.lock();
        let now = Instant::now();
        let mut watches = self.results.watch_get();
        let mut deadline: Option<Instant> = None;
        let mut soon = |by: Duration| {
            let t = now + by;
            deadline = Some(deadline.map_or(t, |d| d.min(t)));
        };
        if !st.tasks.is_empty() {
            // The periodic sweep (see `pump`).
            soon(SWEEP.saturating_sub(st.last_sweep.elapsed()));
        }
        for s in st.slots.iter().filter(|s| !s.gone && s.proc.is_some()) {
            if !s.running || s.ending {
                soon(STARTING_POLL);
                continue;
            }
            match s.life.watch() {
                Some(w) => watches.push(w),
                None => return (Vec::new(), Some(now)),
            }
        }
        if watches.len() > crate::futex::WAITV_MAX {
            // A blocking sleep takes the first words only: look at the rest
            // now and then.
            soon(MANY_WORDS_POLL);
        }
        (watches, deadline)
    }

    /// For the reader, before it sleeps: spins briefly on the result ring;
    /// `true` when a reply may be there.
    pub fn spin(&self) -> bool {
        self.results.spin_get()
    }

    /// For the reader, after announcing its watches and before sleeping:
    /// whether a reply arrived since it last drained the ring.
    pub fn has_replies(&self) -> bool {
        !self.results.is_empty()
    }

    /// Waits, on this thread, for outcomes of `owner` until `deadline`;
    /// `None` when the deadline passed.
    pub(crate) fn wait_blocking(
        &self,
        owner: u64,
        deadline: Option<Instant>,
    ) -> Option<Vec<(u64, Outcome)>> {
        let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
        let mut patience = PATIENCE_MIN;
        loop {
            let role = match self.turn(owner, &waker) {
                Turn::Ready(v) => return Some(v),
                Turn::Read(role) => role,
                Turn::Wait => {
                    let now = Instant::now();
                    if deadline.is_some_and(|d| now >= d) {
                        self.unwait(owner);
                        return None;
                    }
                    // Woken, or patience over: ask again (a reader that has
                    // stopped reading loses the role to the next turn).
                    let until = deadline.map_or(now + patience, |d| d.min(now + patience));
                    std::thread::park_timeout(until - now);
                    self.unwait(owner);
                    if Instant::now() >= now + patience {
                        patience = (patience * 2).min(PATIENCE_MAX);
                    }
                    continue;
                }
            };
            let _reader = ReaderGuard(self, role);
            loop {
                if !self.is_reader(role) {
                    break;
                }
                if let Some(v) = self.pump_for(owner) {
                    return Some(v);
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return None;
                }
                if self.spin() {
                    continue;
                }
                let (mut watches, until) = self.watches();
                let until = match (until, deadline) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                let again = || self.has_replies();
                if crate::wait::wait_any(&mut watches, until, again).is_err() {
                    // No futex_waitv: look again shortly rather
                    // than never.
                    std::thread::sleep(STARTING_POLL);
                }
            }
        }
    }

    /// Takes back an owner's waker (it stopped sleeping).
    pub fn unwait(&self, owner: u64) {
        let mut st = self.lock();
        if let Some(o) = st.owners.get_mut(&owner) {
            o.waker = None;
        }
    }

    /// Closes the pool and returns a new owner that waits for every task of
    /// the pool (for `join`).
    pub fn new_joiner(&self) -> u64 {
        let mut st = self.lock();
        st.closed = true;
        let id = st.next_id;
        st.next_id += 1;
        st.owners.insert(
            id,
            Owner {
                join: true,
                ..Owner::default()
            },
        );
        id
    }

    /// No new tasks from now on; workers exit once the backlog is done.
    pub fn close(&self) {
        self.lock().closed = true;
    }

    /// After every task is done: closes the task rings, so that each worker
    /// exits, and takes the processes to reap.
    pub fn finish_workers(&self) -> Vec<Process<()>> {
        let mut st = self.lock();
        st.closed = true;
        let mut procs = Vec::new();
        for s in st.slots.iter_mut() {
            s.gone = true;
            s.tasks.close();
            procs.extend(s.proc.take());
        }
        procs
    }

    /// Kills every worker; every unfinished task fails with
    /// [`PoolError::Terminated`]. Returns the processes to reap.
    pub fn terminate(&self) -> Vec<Process<()>> {
        let mut st = self.lock();
        self.fail_all(&mut st, PoolError::Terminated);
        st.closed = true;
        let mut procs = Vec::new();
        for s in st.slots.iter_mut() {
            procs.extend(s.proc.take());
        }
        procs
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        for mut p in self.terminate() {
            let _ = p.join();
        }
    }
}

/// The locked state; wakes the wakers queued under it once released.
struct Locked<'a>(Option<MutexGuard<'a, State>>);

impl std::ops::Deref for Locked<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        self.0.as_ref().expect("locked until dropped")
    }
}

impl std::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut State {
        self.0.as_mut().expect("locked until dropped")
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let Some(mut st) = self.0.take() else { return };
        let wakers = std::mem::take(&mut st.to_wake);
        drop(st);
        for w in wakers {
            w.wake();
        }
    }
}

/// Holds the reader role (a generation of it); gives it up when dropped.
#[doc(hidden)]
#[derive(Debug)]
pub struct ReaderGuard<'a>(pub &'a Engine, pub u64);

impl Drop for ReaderGuard<'_> {
    fn drop(&mut self) {
        self.0.release_reader(self.1);
    }
}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// The worker of a blocking pool: takes tasks in order, one at a time.
#[doc(hidden)]
pub fn sync_worker(args: WorkerArgs) {
    let Some(image) = crate::process::same_image() else {
        return;
    };
    args.hold_life();
    let mut taken = 0u64;
    while args.max_tasks == 0 || taken < args.max_tasks {
        let Ok(task) = args.tasks.get() else {
            break;
        };
        taken += 1;
        let body = super::call::run_sync_task(image, task.entry, &task.args.0);
        if args
            .results
            .put(ResultMsg {
                id: task.id,
                body: Bytes(body),
            })
            .is_err()
        {
            break;
        }
    }
}

impl WorkerArgs {
    /// Takes this worker's life lock for the rest of the process: its
    /// release, by the kernel at the process's end, is what the parent
    /// watches. Called first thing by a worker.
    pub fn hold_life(&self) {
        match self.life.lock() {
            Ok(g) => g.leak(),
            Err(d) => d.into_inner().leak(),
        }
    }

    /// Runs a synchronous task; its reply. For async workers.
    pub fn run_sync(task: &TaskMsg) -> ResultMsg {
        let body = match crate::process::same_image() {
            Some(image) => super::call::run_sync_task(image, task.entry, &task.args.0),
            None => Vec::new(),
        };
        ResultMsg {
            id: task.id,
            body: Bytes(body),
        }
    }

    /// Starts an async task; the future of its reply body. For async workers.
    pub fn run_async(task: TaskMsg) -> Option<super::call::LocalFuture> {
        let image = crate::process::same_image()?;
        Some(super::call::run_async_task(image, task.entry, task.args.0))
    }
}
