//! Process pools: Python's `multiprocessing.Pool`, crash proof.
//!
//! ```no_run
//! use aiop_core::pool::Pool;
//!
//! fn main() -> Result<(), aiop_core::pool::PoolError> {
//!     aiop_core::init(); // a spawned worker takes over here
//!     let pool = Pool::new(4)?;
//!     assert_eq!(pool.apply(|x: u64| x * x, 12)?, 144);
//!     let squares: Result<Vec<u64>, _> = pool.map(|x: u64| x * x, 0..1000).collect();
//!     assert_eq!(squares?[999], 998_001);
//!     pool.close();
//!     pool.join()?;
//!     Ok(())
//! }
//! ```
//!
//! # Pool functions
//!
//! A task runs a function item or a closure that captures nothing (a
//! capturing closure is refused at compile time): its arguments and result
//! cross with serde (postcard). The worker rebuilds the function from its
//! type alone, so a closure must not capture even zero-sized values that
//! mean something only in this process (a proof token made by an
//! initialisation that the worker never ran). Handles (locks, queues, shared memory)
//! cannot ride in task arguments, which travel through shared memory; give
//! them to the workers through [`Builder::initializer`], as in Python.
//!
//! # Scheduling
//!
//! Tasks wait in this process until a worker is idle, so work goes to idle
//! workers only and CPU-bound tasks use every worker. [`Pool::map`] and
//! friends read their input lazily, keeping a bounded number of tasks in
//! flight ([`Map::max_in_flight`]), and cut it into chunks of
//! [`Map::chunksize`] items (by default four chunks per worker when the
//! input's length is known, as Python does, else chunks that grow while
//! they come back quickly).
//!
//! # Crashes
//!
//! A worker that dies during a task (killed, aborted, out of memory) fails
//! that task with [`PoolError::WorkerDied`] and is replaced; a panicking task
//! fails with [`PoolError::TaskPanicked`] and its worker goes on. The pool
//! learns of a death from the kernel at once (each worker holds a robust
//! lock for its whole life), so nothing waits on a dead worker.
//!
//! # Who does the work
//!
//! A pool starts no thread. Whoever waits for a result (a call to
//! [`apply`](Pool::apply), an iterator from [`map`](Pool::map), an
//! [`AsyncResult::get`], [`join`](Pool::join)) reads the workers' replies
//! for everyone and hands idle workers the next tasks. Tasks submitted with
//! [`apply_async`](Pool::apply_async) start at once as far as workers are
//! idle; the rest start while someone waits on the pool.
//!
//! # Dropping
//!
//! The workers live while any handle to the pool lives: a [`Pool`] clone, an
//! [`AsyncResult`], a [`Map`]. When the last one is dropped, the workers are
//! killed and reaped, and unfinished tasks are abandoned. Call
//! [`close`](Pool::close) and [`join`](Pool::join) to let them finish.
//! Dropping a [`Map`] withdraws its tasks that no worker has started.
//!
//! # Relationship with Python
//!
//! | Python | aiop |
//! |---|---|
//! | `Pool(processes, initializer, initargs, maxtasksperchild)` | [`Pool::builder`]`().processes(n).initializer(f, args).max_tasks_per_child(m).build()` |
//! | `pool.apply(f, (x,))` | [`Pool::apply`]`(f, x)` |
//! | `pool.apply_async(f, (x,))`, `.get(timeout)`, `.ready()` | [`Pool::apply_async`], [`AsyncResult::get_timeout`], [`AsyncResult::ready`] |
//! | `pool.map(f, xs, chunksize)`, `pool.imap(f, xs)` | [`Pool::map`]`(f, xs)` (lazy, ordered; [`Map::chunksize`]) |
//! | `pool.imap_unordered(f, xs)` | [`Pool::map_unordered`] |
//! | `pool.starmap(f, [(a, b), ...])` | [`Pool::starmap`] |
//! | `pool.close()`, `pool.terminate()`, `pool.join()` | [`Pool::close`], [`Pool::terminate`], [`Pool::join`] |

mod call;
mod engine;
mod error;
mod map;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

#[doc(hidden)]
pub use call::{AsyncCallee, Callee, Entry, LocalFuture, One, Star};
#[doc(hidden)]
pub use engine::{
    Bytes, Engine, Outcome, PATIENCE_MAX, PATIENCE_MIN, ReaderGuard, ResultMsg, TaskMsg, Turn,
    WorkerArgs, sync_worker,
};
pub use error::PoolError;
#[doc(hidden)]
pub use map::{MapCore, Pull};

use crate::process::{self, StartMethod};

/// Options for a pool: the number of workers, an initializer, a limit of
/// tasks per worker, the start method.
#[derive(Clone, Debug, Default)]
pub struct Builder {
    processes: Option<usize>,
    max_tasks: u64,
    process: process::Builder,
}

impl Builder {
    /// Default options: one worker per CPU, no initializer, no task limit,
    /// the global start method.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// The number of worker processes (0, the default: [`cpu_count`](process::cpu_count)).
    pub fn processes(mut self, n: usize) -> Builder {
        self.processes = (n > 0).then_some(n);
        self
    }

    /// Runs `f(args)` in each worker when it starts, before any task (once
    /// per worker, also per replacement). Handles among `args` (locks,
    /// queues, shared memory) reach the workers with their descriptors.
    /// If it panics, the pool stops: every task fails with
    /// [`PoolError::InitializerFailed`].
    #[doc(alias = "initargs")]
    pub fn initializer<I>(mut self, f: fn(I), args: I) -> Builder
    where
        I: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        self.process = self.process.initializer(f, args);
        self
    }

    /// Replaces each worker after it has taken `n` tasks (0, the default:
    /// never). Python's `maxtasksperchild`.
    #[doc(alias = "maxtasksperchild")]
    pub fn max_tasks_per_child(mut self, n: u64) -> Builder {
        self.max_tasks = n;
        self
    }

    /// The start method of the workers (default: [`process::start_method`]).
    pub fn start_method(mut self, method: StartMethod) -> Builder {
        self.process = self.process.start_method(method);
        self
    }

    /// Starts the workers of a blocking pool.
    ///
    /// # Errors
    ///
    /// [`PoolError::Io`] or [`PoolError::Failed`] when shared memory or a
    /// worker process cannot be had.
    pub fn build(self) -> Result<Pool, PoolError> {
        let engine = self.__engine(sync_worker, 1)?;
        Ok(Pool { engine })
    }

    /// Starts workers running `worker` with `concurrency` tasks each (for
    /// the async pool).
    #[doc(hidden)]
    pub fn __engine(
        self,
        worker: fn(WorkerArgs),
        concurrency: usize,
    ) -> Result<Arc<Engine>, PoolError> {
        let processes = self.processes.unwrap_or_else(process::cpu_count).max(1);
        Engine::start(engine::Config {
            processes,
            max_tasks: self.max_tasks,
            concurrency: concurrency.max(1),
            builder: self.process.daemon(true),
            worker,
        })
    }
}

/// A pool of worker processes: Python's `multiprocessing.Pool`.
///
/// Cheap to clone (every clone is the same pool). See the
/// [module docs](self) for scheduling, crashes and what dropping does.
#[derive(Clone)]
pub struct Pool {
    engine: Arc<Engine>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("processes", &self.engine.processes())
            .field("pids", &self.engine.pids())
            .finish()
    }
}

/// The entry of a synchronous one-argument function.
fn entry_of<F, A, R>(f: F) -> Result<Entry, PoolError>
where
    F: Fn(A) -> R + Copy + 'static,
    A: DeserializeOwned + 'static,
    R: Serialize,
{
    call::one_sync(f).map_err(PoolError::Failed)
}

impl Pool {
    /// Starts a pool of `processes` workers (0: one per CPU).
    ///
    /// # Errors
    ///
    /// As [`Builder::build`].
    pub fn new(processes: usize) -> Result<Pool, PoolError> {
        Builder::new().processes(processes).build()
    }

    /// Options for a pool.
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// Makes a blocking pool of a pool engine (the async pool's, say).
    #[doc(hidden)]
    pub fn __from_engine(engine: Arc<Engine>) -> Pool {
        Pool { engine }
    }

    /// The engine (for the async layer).
    #[doc(hidden)]
    pub fn __engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The number of worker processes.
    pub fn processes(&self) -> usize {
        self.engine.processes()
    }

    /// The process ids of the current workers (they change as workers are
    /// replaced).
    pub fn pids(&self) -> Vec<u32> {
        self.engine.pids()
    }

    /// Runs `f(args)` in a worker and returns its result.
    ///
    /// # Errors
    ///
    /// [`PoolError::Encode`] when `args` does not serialize (nothing ran),
    /// [`PoolError::TaskPanicked`], [`PoolError::WorkerDied`],
    /// [`PoolError::Closed`] after [`close`](Pool::close),
    /// [`PoolError::Terminated`].
    pub fn apply<F, A, R>(&self, f: F, args: A) -> Result<R, PoolError>
    where
        F: Fn(A) -> R + Copy + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned,
    {
        self.apply_async(f, args)?.get()
    }

    /// Starts `f(args)` in a worker; the result comes through the returned
    /// handle.
    ///
    /// # Errors
    ///
    /// [`PoolError::Encode`] when `args` does not serialize, `Closed` and
    /// `Terminated` as for [`apply`](Pool::apply): nothing was submitted.
    pub fn apply_async<F, A, R>(&self, f: F, args: A) -> Result<AsyncResult<R>, PoolError>
    where
        F: Fn(A) -> R + Copy + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned,
    {
        AsyncResult::submit(&self.engine, entry_of(f), &args)
    }

    /// `f` over every item of `input`, in input order: Python's `imap`
    /// (and `map`, with `.collect()`).
    ///
    /// The input is read lazily, as tasks are handed out; see [`Map`] for
    /// chunk size and tasks in flight. Each item's result is its own: a
    /// panic or a dead worker fails the items it concerns, not the map.
    #[doc(alias = "imap")]
    pub fn map<F, I, A, R>(&self, f: F, input: I) -> Map<I::IntoIter, R>
    where
        F: Fn(A) -> R + Copy + 'static,
        I: IntoIterator<Item = A>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned,
    {
        Map::new(&self.engine, entry_of(f), input.into_iter(), true)
    }

    /// As [`map`](Pool::map), but each result comes as soon as it is
    /// ready: Python's `imap_unordered`.
    #[doc(alias = "imap_unordered")]
    pub fn map_unordered<F, I, A, R>(&self, f: F, input: I) -> Map<I::IntoIter, R>
    where
        F: Fn(A) -> R + Copy + 'static,
        I: IntoIterator<Item = A>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned,
    {
        Map::new(&self.engine, entry_of(f), input.into_iter(), false)
    }

    /// `f(a, b, ..)` for every tuple `(a, b, ..)` of `input` (1 to 6
    /// fields), in input order: Python's `starmap`.
    pub fn starmap<F, I, Args>(
        &self,
        _f: F,
        input: I,
    ) -> Map<I::IntoIter, <Star<F, Args> as Callee>::Out>
    where
        F: Copy + 'static,
        I: IntoIterator<Item = Args>,
        Args: Serialize + DeserializeOwned + 'static,
        Star<F, Args>: Callee<Arg = Args>,
        <Star<F, Args> as Callee>::Out: DeserializeOwned,
    {
        let entry = Entry::sync_of::<Star<F, Args>>().map_err(PoolError::Failed);
        Map::new(&self.engine, entry, input.into_iter(), true)
    }

    /// No new tasks from now on; the workers exit once every submitted task
    /// is done (see [`join`](Pool::join)).
    pub fn close(&self) {
        self.engine.close();
    }

    /// Kills every worker at once (`SIGKILL`) and reaps it; every
    /// unfinished task fails with [`PoolError::Terminated`].
    pub fn terminate(&self) {
        for mut p in self.engine.terminate() {
            let _ = p.join();
        }
    }

    /// Waits until every submitted task is done (reading results for their
    /// owners meanwhile), then lets the workers exit and reaps them. Closes
    /// the pool if it was not.
    ///
    /// # Errors
    ///
    /// None yet; the `Result` leaves room for reporting workers that could
    /// not be reaped.
    pub fn join(&self) -> Result<(), PoolError> {
        let owner = self.engine.new_joiner();
        let _ = self.engine.wait_blocking(owner, None);
        self.engine.drop_owner(owner);
        for mut p in self.engine.finish_workers() {
            let _ = p.join();
        }
        Ok(())
    }
}

/// The result of [`Pool::apply_async`], to come: Python's `AsyncResult`.
///
/// Dropping it before the task started withdraws the task; after, its
/// result is dropped when it comes.
pub struct AsyncResult<R> {
    engine: Arc<Engine>,
    owner: u64,
    result: Option<Result<R, PoolError>>,
}

impl<R> fmt::Debug for AsyncResult<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.result.is_some())
            .finish()
    }
}

impl<R: DeserializeOwned> AsyncResult<R> {
    /// Submits a one-item task.
    #[doc(hidden)]
    pub fn submit<A: Serialize>(
        engine: &Arc<Engine>,
        entry: Result<Entry, PoolError>,
        args: &A,
    ) -> Result<AsyncResult<R>, PoolError> {
        let entry = entry?;
        let mut buf = Vec::new();
        call::start_chunk(&mut buf, 1);
        call::push_arg(&mut buf, args)?;
        let owner = engine.new_owner();
        let me = AsyncResult {
            engine: engine.clone(),
            owner,
            result: None,
        };
        engine.submit(owner, entry, buf)?;
        Ok(me)
    }

    /// The owner id (for the async layer).
    #[doc(hidden)]
    pub fn __owner(&self) -> u64 {
        self.owner
    }

    /// Takes the outcomes the engine handed over (for the async layer).
    #[doc(hidden)]
    pub fn __absorb(&mut self, outcomes: Vec<(u64, Outcome)>) {
        if self.result.is_some() {
            return;
        }
        if let Some((_, outcome)) = outcomes.into_iter().next() {
            self.result = Some(match outcome {
                Ok(body) => call::parse_reply::<R>(&body, 1)
                    .pop()
                    .unwrap_or(Err(PoolError::Decode("an empty reply".into()))),
                Err(e) => Err(e),
            });
        }
    }

    /// Takes the result once it is there (for the async layer).
    #[doc(hidden)]
    pub fn __take(&mut self) -> Option<Result<R, PoolError>> {
        self.result.take()
    }

    /// Waits for the result.
    ///
    /// # Errors
    ///
    /// As [`Pool::apply`].
    pub fn get(mut self) -> Result<R, PoolError> {
        self.wait(None);
        self.result.take().unwrap_or(Err(PoolError::Terminated))
    }

    /// Waits at most `timeout` for the result: [`PoolError::Timeout`] when
    /// it has not come (the task goes on; ask again).
    ///
    /// # Errors
    ///
    /// As [`Pool::apply`], and `Timeout`.
    pub fn get_timeout(&mut self, timeout: Duration) -> Result<R, PoolError> {
        self.wait(Instant::now().checked_add(timeout));
        self.result.take().unwrap_or(Err(PoolError::Timeout))
    }

    /// Whether the result is there (reading the workers' replies if nobody
    /// else is).
    pub fn ready(&mut self) -> bool {
        if self.result.is_none() {
            self.wait(Some(Instant::now()));
        }
        self.result.is_some()
    }

    fn wait(&mut self, deadline: Option<Instant>) {
        if self.result.is_some() {
            return;
        }
        if let Some(got) = self.engine.wait_blocking(self.owner, deadline) {
            self.__absorb(got);
        }
    }
}

impl<R> Drop for AsyncResult<R> {
    fn drop(&mut self) {
        self.engine.drop_owner(self.owner);
    }
}

/// The results of [`Pool::map`], [`Pool::map_unordered`] or
/// [`Pool::starmap`]: an iterator of one `Result` per input item.
///
/// Each `next` hands out a result, waiting for one if needed, and keeps the
/// workers fed from the input. When the pool refuses work (it was closed,
/// terminated or broken), the items of the chunk being submitted get that
/// error and the map ends there: the rest of the input is not read. Set [`chunksize`](Map::chunksize) and
/// [`max_in_flight`](Map::max_in_flight) before the first `next`.
/// Dropping it withdraws the tasks no worker has started.
pub struct Map<I, R> {
    core: Result<MapCore<R>, Option<PoolError>>,
    input: I,
}

impl<I, R> fmt::Debug for Map<I, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Map")
            .field("core", &self.core.as_ref().ok())
            .finish()
    }
}

impl<I, R: DeserializeOwned> Map<I, R> {
    fn new(
        engine: &Arc<Engine>,
        entry: Result<Entry, PoolError>,
        input: I,
        ordered: bool,
    ) -> Map<I, R>
    where
        I: Iterator,
    {
        let hint = input.size_hint().0;
        Map {
            core: entry
                .map(|e| MapCore::new(engine.clone(), e, ordered, hint))
                .map_err(Some),
            input,
        }
    }

    /// Items per task (default: see the [module docs](self)). One item per
    /// task spreads uneven work best; larger chunks cost less per item.
    pub fn chunksize(mut self, n: usize) -> Self {
        if let Ok(c) = &mut self.core {
            c.set_chunksize(n);
        }
        self
    }

    /// The most tasks submitted and not yet handed out (default: twice the
    /// number of workers, or enough tasks for 256 items if that is more):
    /// bounds the input read ahead and the results held back for ordering.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        if let Ok(c) = &mut self.core {
            c.set_max_in_flight(n);
        }
        self
    }
}

impl<I, A, R> Iterator for Map<I, R>
where
    I: Iterator<Item = A>,
    A: Serialize,
    R: DeserializeOwned,
{
    type Item = Result<R, PoolError>;

    fn next(&mut self) -> Option<Result<R, PoolError>> {
        let core = match &mut self.core {
            Ok(c) => c,
            // The function could not be used: say so once.
            Err(e) => return e.take().map(Err),
        };
        loop {
            let input = &mut self.input;
            core.fill(|| match input.next() {
                Some(a) => Pull::Item(a),
                None => Pull::Done,
            });
            if let Some(r) = core.pop() {
                return Some(r);
            }
            if core.finished() {
                return None;
            }
            let got = core
                .engine()
                .wait_blocking(core.owner(), None)
                .unwrap_or_default();
            core.absorb(got);
        }
    }
}
