//! Async process pools: Python's `multiprocessing.Pool` as `aioprocessing`'s
//! `AioPool` and `aiomultiprocess`'s `Pool` give it to asyncio, for any
//! executor.
//!
//! ```no_run
//! use aiop_async::pool::{AsyncFn, Pool};
//! use futures_lite::StreamExt;
//!
//! async fn fetch(n: u32) -> String {
//!     // any async I/O: aiop's async connections and queues work here
//!     format!("page {n}")
//! }
//!
//! fn main() -> Result<(), aiop_async::pool::PoolError> {
//!     aiop_async::process::init(); // a spawned worker takes over here
//!     async_io::block_on(async {
//!         // 2 workers, each running up to 16 async tasks at once.
//!         let pool = Pool::builder().processes(2).child_concurrency(16).build()?;
//!         // A plain function: CPU work in a worker.
//!         assert_eq!(pool.apply(|x: u64| x * x, 12).await?, 144);
//!         // An async function: many at once per worker.
//!         let pages: Vec<_> = pool.map(AsyncFn(fetch), 0..100).collect().await;
//!         assert_eq!(pages.len(), 100);
//!         pool.close();
//!         pool.join().await
//!     })
//! }
//! ```
//!
//! Everything the blocking pool ([`aiop_core::pool`]) documents holds here:
//! work goes to idle workers only; a worker that dies fails its tasks with
//! [`PoolError::WorkerDied`] and is replaced; a panic is
//! [`PoolError::TaskPanicked`]; the workers live while any handle lives.
//! What this pool adds:
//!
//! * **Async worker functions.** Wrap an `async fn` (or a closure returning a
//!   future, capturing nothing) in [`AsyncFn`]. Each worker runs up to
//!   [`child_concurrency`](Builder::child_concurrency) tasks at once on a
//!   small executor of its own (the aiomultiprocess model), driven by
//!   async-io, so aiop's async primitives, queues and connections work
//!   inside tasks. Plain functions run there too, one at a time.
//! * **Async results.** [`apply`](Pool::apply) is awaited; [`map`](Pool::map)
//!   and friends return a [`MapStream`]. Nothing parks a thread: the waiting
//!   task that reads the workers' replies sleeps on the futex watcher.
//!
//! A pool started from async code spawns its workers (and replaces dead
//! ones) with the blocking spawn of the core, which takes about a
//! millisecond per process.
//!
//! # Relationship with Python
//!
//! | Python | aiop |
//! |---|---|
//! | `AioPool(n)`, `aiomultiprocess.Pool(processes, childconcurrency=)` | [`Pool::new`], [`Builder::child_concurrency`] |
//! | `await pool.coro_apply(f, (x,))`, `await pool.apply(coro, (x,))` | [`Pool::apply`]`(f, x).await`, [`Pool::apply`]`(AsyncFn(coro), x).await` |
//! | `await pool.coro_map(f, xs)`, `async for r in pool.map(coro, xs)` | [`Pool::map`] (a `Stream`) |
//! | `pool.imap_unordered(f, xs)` | [`Pool::map_unordered`] |
//! | `await pool.coro_starmap(f, xs)`, `pool.starmap(coro, xs)` | [`Pool::starmap`] |
//! | `pool.close()`, `await pool.coro_join()`, `pool.terminate()` | [`Pool::close`], [`Pool::join`], [`Pool::terminate`] |

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use aiop_core::pool::{
    self as core, Engine, Entry, MapCore, One, Outcome, PATIENCE_MAX, PATIENCE_MIN, Pull,
    ReaderGuard, ResultMsg, Star, Turn, WorkerArgs,
};
use aiop_core::process::StartMethod;
use async_io::Timer;
use futures_lite::{Stream, future};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use aiop_core::pool::PoolError;

use crate::watcher;

/// Marks an async function (or a closure returning a future, capturing
/// nothing) as a pool task: `pool.apply(AsyncFn(fetch), url)`. The worker
/// awaits it on its executor, next to up to
/// [`child_concurrency`](Builder::child_concurrency) others.
#[derive(Clone, Copy, Debug)]
pub struct AsyncFn<F>(pub F);

/// A function a pool runs on one argument: a plain function or closure
/// (capturing nothing), or an [`AsyncFn`].
pub trait PoolFn<A>: Copy + 'static {
    /// What the task returns.
    type Output: Serialize + DeserializeOwned;
    #[doc(hidden)]
    fn __entry() -> Result<Entry, String>;
}

impl<F, A, R> PoolFn<A> for F
where
    F: Fn(A) -> R + Copy + 'static,
    A: DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned,
{
    type Output = R;
    fn __entry() -> Result<Entry, String> {
        Entry::sync_of::<One<F, A>>()
    }
}

impl<F, A, Fut> PoolFn<A> for AsyncFn<F>
where
    F: Fn(A) -> Fut + Copy + 'static,
    A: DeserializeOwned + 'static,
    Fut: Future + 'static,
    Fut::Output: Serialize + DeserializeOwned,
{
    type Output = Fut::Output;
    fn __entry() -> Result<Entry, String> {
        Entry::async_of::<One<F, A>>()
    }
}

/// A function a pool runs on the fields of a tuple (`starmap`): a plain
/// function of 1 to 6 arguments, or an [`AsyncFn`] of 1 to 6.
pub trait StarFn<Args>: Copy + 'static {
    /// What the task returns.
    type Output: Serialize + DeserializeOwned;
    #[doc(hidden)]
    fn __entry() -> Result<Entry, String>;
}

macro_rules! star_fn {
    ($($a:ident),+) => {
        impl<F, R, $($a),+> StarFn<($($a,)+)> for F
        where
            F: Fn($($a),+) -> R + Copy + 'static,
            $($a: DeserializeOwned + 'static,)+
            R: Serialize + DeserializeOwned,
        {
            type Output = R;
            fn __entry() -> Result<Entry, String> {
                Entry::sync_of::<Star<F, ($($a,)+)>>()
            }
        }

        impl<F, Fut, $($a),+> StarFn<($($a,)+)> for AsyncFn<F>
        where
            F: Fn($($a),+) -> Fut + Copy + 'static,
            $($a: DeserializeOwned + 'static,)+
            Fut: Future + 'static,
            Fut::Output: Serialize + DeserializeOwned,
        {
            type Output = Fut::Output;
            fn __entry() -> Result<Entry, String> {
                Entry::async_of::<Star<F, ($($a,)+)>>()
            }
        }
    };
}

star_fn!(A);
star_fn!(A, B);
star_fn!(A, B, C);
star_fn!(A, B, C, D);
star_fn!(A, B, C, D, E);
star_fn!(A, B, C, D, E, G);

/// The most async tasks a worker runs at once.
const MAX_CONCURRENCY: usize = 1 << 16;

/// Options for an async pool: the blocking pool's, and how many tasks each
/// worker runs at once.
#[derive(Clone, Debug, Default)]
pub struct Builder {
    core: core::Builder,
    concurrency: Option<usize>,
}

impl Builder {
    /// Default options: one worker per CPU, 16 tasks at once per worker.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// The number of worker processes (0: one per CPU).
    pub fn processes(mut self, n: usize) -> Builder {
        self.core = self.core.processes(n);
        self
    }

    /// How many [`AsyncFn`] tasks each worker runs at once (default 16, as
    /// aiomultiprocess; at most 65,536), overlapping their waits. A plain
    /// function's task has its worker to itself, so plain tasks still go to
    /// idle workers only.
    #[doc(alias = "childconcurrency")]
    pub fn child_concurrency(mut self, n: usize) -> Builder {
        self.concurrency = Some(n.clamp(1, MAX_CONCURRENCY));
        self
    }

    /// Runs `f(args)` once in each worker before any task (see the core's
    /// [`initializer`](core::Builder::initializer)).
    #[doc(alias = "initargs")]
    pub fn initializer<I>(mut self, f: fn(I), args: I) -> Builder
    where
        I: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        self.core = self.core.initializer(f, args);
        self
    }

    /// Replaces each worker after `n` tasks (0: never).
    #[doc(alias = "maxtasksperchild")]
    pub fn max_tasks_per_child(mut self, n: u64) -> Builder {
        self.core = self.core.max_tasks_per_child(n);
        self
    }

    /// The start method of the workers.
    pub fn start_method(mut self, method: StartMethod) -> Builder {
        self.core = self.core.start_method(method);
        self
    }

    /// Starts the workers.
    ///
    /// # Errors
    ///
    /// As the core's [`build`](core::Builder::build).
    pub fn build(self) -> Result<Pool, PoolError> {
        let engine = self
            .core
            .__engine(async_worker, self.concurrency.unwrap_or(16))?;
        Ok(Pool {
            blocking: core::Pool::__from_engine(engine),
        })
    }
}

/// An async pool of worker processes. Cheap to clone.
#[derive(Clone)]
pub struct Pool {
    blocking: core::Pool,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("processes", &self.processes())
            .field("pids", &self.pids())
            .finish()
    }
}

impl Pool {
    /// Starts a pool of `processes` workers (0: one per CPU), each running
    /// up to 16 tasks at once.
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

    fn engine(&self) -> &Arc<Engine> {
        self.blocking.__engine()
    }

    /// The blocking face of this pool (the same workers): blocking
    /// `apply`, and `map` as a blocking iterator, for plain functions.
    pub fn as_blocking(&self) -> &core::Pool {
        &self.blocking
    }

    /// The number of worker processes.
    pub fn processes(&self) -> usize {
        self.blocking.processes()
    }

    /// The process ids of the current workers.
    pub fn pids(&self) -> Vec<u32> {
        self.blocking.pids()
    }

    /// Runs `f(args)` in a worker and returns its result.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before the task was handed to a worker withdraws
    /// it; after that, the task runs and its result is dropped.
    ///
    /// # Errors
    ///
    /// As the core's [`apply`](core::Pool::apply).
    #[doc(alias = "coro_apply")]
    pub async fn apply<T, A>(&self, f: T, args: A) -> Result<T::Output, PoolError>
    where
        T: PoolFn<A>,
        A: Serialize,
    {
        self.apply_async(f, args)?.await
    }

    /// Submits `f(args)` now; the returned handle is a future of the
    /// result (Python's `apply_async`).
    ///
    /// # Errors
    ///
    /// [`PoolError::Encode`] when `args` does not serialize; `Closed`,
    /// `Terminated`: nothing was submitted.
    pub fn apply_async<T, A>(&self, _f: T, args: A) -> Result<AsyncResult<T::Output>, PoolError>
    where
        T: PoolFn<A>,
        A: Serialize,
    {
        let entry = T::__entry().map_err(PoolError::Failed);
        let inner = core::AsyncResult::submit(self.engine(), entry, &args)?;
        Ok(AsyncResult {
            engine: self.engine().clone(),
            inner,
            waiting: None,
        })
    }

    /// Runs `f(args)` in a worker, blocking this thread until the result
    /// comes (not inside an async task).
    ///
    /// # Errors
    ///
    /// As [`apply`](Pool::apply).
    #[doc(alias = "apply")]
    pub fn apply_blocking<T, A>(&self, f: T, args: A) -> Result<T::Output, PoolError>
    where
        T: PoolFn<A>,
        A: Serialize,
    {
        let r = self.apply_async(f, args)?;
        r.get_blocking()
    }

    /// `f` over every item of `input`, in input order, as a [`Stream`]:
    /// `coro_map` / `imap`. The input is read lazily; see [`MapStream`].
    #[doc(alias = "coro_map")]
    #[doc(alias = "imap")]
    pub fn map<T, I, A>(
        &self,
        f: T,
        input: I,
    ) -> MapStream<futures_lite::stream::Iter<I::IntoIter>, T::Output>
    where
        T: PoolFn<A>,
        I: IntoIterator<Item = A>,
        A: Serialize,
    {
        self.map_stream(f, futures_lite::stream::iter(input))
    }

    /// As [`map`](Pool::map), over an async [`Stream`] of inputs.
    pub fn map_stream<T, S, A>(&self, _f: T, input: S) -> MapStream<S, T::Output>
    where
        T: PoolFn<A>,
        S: Stream<Item = A>,
        A: Serialize,
    {
        MapStream::new(self.engine(), T::__entry(), input, true)
    }

    /// As [`map`](Pool::map), each result as soon as it is ready:
    /// `imap_unordered`.
    #[doc(alias = "imap_unordered")]
    pub fn map_unordered<T, I, A>(
        &self,
        _f: T,
        input: I,
    ) -> MapStream<futures_lite::stream::Iter<I::IntoIter>, T::Output>
    where
        T: PoolFn<A>,
        I: IntoIterator<Item = A>,
        A: Serialize,
    {
        MapStream::new(
            self.engine(),
            T::__entry(),
            futures_lite::stream::iter(input),
            false,
        )
    }

    /// `f(a, b, ..)` for every tuple of `input`, in input order:
    /// `coro_starmap` / `starmap`.
    #[doc(alias = "coro_starmap")]
    pub fn starmap<T, I, Args>(
        &self,
        _f: T,
        input: I,
    ) -> MapStream<futures_lite::stream::Iter<I::IntoIter>, T::Output>
    where
        T: StarFn<Args>,
        I: IntoIterator<Item = Args>,
        Args: Serialize,
    {
        MapStream::new(
            self.engine(),
            T::__entry(),
            futures_lite::stream::iter(input),
            true,
        )
    }

    /// No new tasks; the workers exit once the submitted ones are done.
    pub fn close(&self) {
        self.blocking.close();
    }

    /// Kills every worker (`SIGKILL`) and reaps it; every unfinished task
    /// fails with [`PoolError::Terminated`].
    pub fn terminate(&self) {
        self.blocking.terminate();
    }

    /// Waits until every submitted task is done, then lets the workers exit
    /// and reaps them (closing the pool if it was not).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future stops the waiting; the pool stays closed.
    ///
    /// # Errors
    ///
    /// None yet, as the core's `join`.
    #[doc(alias = "coro_join")]
    pub async fn join(&self) -> Result<(), PoolError> {
        let engine = self.engine().clone();
        let owner = OwnerGuard {
            id: engine.new_joiner(),
            engine: &engine,
        };
        wait_owner(&engine, owner.id).await;
        drop(owner);
        for p in engine.finish_workers() {
            let mut p = crate::process::Process::from(p);
            let _ = p.join().await;
        }
        Ok(())
    }

    /// [`join`](Pool::join), blocking this thread.
    ///
    /// # Errors
    ///
    /// As [`join`](Pool::join).
    #[doc(alias = "join")]
    pub fn join_blocking(&self) -> Result<(), PoolError> {
        self.blocking.join()
    }
}

/// An engine owner that is forgotten when dropped.
struct OwnerGuard<'a> {
    engine: &'a Engine,
    id: u64,
}

impl Drop for OwnerGuard<'_> {
    fn drop(&mut self) {
        self.engine.drop_owner(self.id);
    }
}

/// Waits for outcomes of `owner`: takes the reader role when nobody holds
/// it (reading the workers' replies for every owner), else sleeps until the
/// reader hands some over or gives the role up.
///
/// A waiter that asks for its turn while the reader has not read for a
/// while (its future may have been set aside: polled once and kept, never
/// polled again) takes the role, and every waiter asks again within its
/// patience, so no waiter depends on a future it cannot drive.
///
/// Cancel safe: the reader role is given back when the future is dropped
/// (the next waiter takes it), and outcomes taken from the engine are only
/// taken in the poll that returns them.
async fn wait_owner(engine: &Engine, owner: u64) -> Vec<(u64, Outcome)> {
    let mut patience = PATIENCE_MIN;
    loop {
        let turn = future::poll_fn(|cx| Poll::Ready(engine.turn(owner, cx.waker()))).await;
        let role = match turn {
            Turn::Ready(v) => return v,
            Turn::Read(role) => role,
            Turn::Wait => {
                // The waker is registered: wait for it, or for patience, then
                // ask again (a reader that has stopped reading, for instance
                // a future set aside, loses the role to the next turn).
                let timer = Timer::after(patience);
                let mut polled = false;
                let woke = future::or(
                    async {
                        timer.await;
                        false
                    },
                    future::poll_fn(|_| {
                        if std::mem::replace(&mut polled, true) {
                            Poll::Ready(true)
                        } else {
                            Poll::Pending
                        }
                    }),
                )
                .await;
                engine.unwait(owner);
                if !woke {
                    patience = (patience * 2).min(PATIENCE_MAX);
                }
                continue;
            }
        };
        let _reader = ReaderGuard(engine, role);
        while engine.is_reader(role) {
            if let Some(v) = engine.pump_for(owner) {
                return v;
            }
            if engine.spin() {
                continue;
            }
            let (watches, until) = engine.watches();
            let listen = watcher::listen(watches);
            if engine.has_replies() {
                continue;
            }
            match until {
                None => listen.await,
                Some(d) => {
                    future::or(listen, async {
                        Timer::at(d).await;
                    })
                    .await
                }
            }
        }
    }
}

type BoxedWait = Pin<Box<dyn Future<Output = Vec<(u64, Outcome)>> + Send>>;

fn boxed_wait(engine: Arc<Engine>, owner: u64) -> BoxedWait {
    Box::pin(async move { wait_owner(&engine, owner).await })
}

/// The result of [`Pool::apply_async`]: a future of the task's result.
///
/// Dropping it before the task was handed to a worker withdraws the task.
pub struct AsyncResult<R> {
    engine: Arc<Engine>,
    inner: core::AsyncResult<R>,
    waiting: Option<BoxedWait>,
}

impl<R> fmt::Debug for AsyncResult<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult").finish_non_exhaustive()
    }
}

impl<R: DeserializeOwned> AsyncResult<R> {
    /// Waits for the result, blocking this thread.
    ///
    /// # Errors
    ///
    /// As [`Pool::apply`].
    pub fn get_blocking(self) -> Result<R, PoolError> {
        let AsyncResult { inner, .. } = self;
        inner.get()
    }
}

impl<R: DeserializeOwned> Future for AsyncResult<R> {
    type Output = Result<R, PoolError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let me = self.get_mut();
        loop {
            if let Some(r) = me.inner.__take() {
                return Poll::Ready(r);
            }
            let w = me
                .waiting
                .get_or_insert_with(|| boxed_wait(me.engine.clone(), me.inner.__owner()));
            match w.as_mut().poll(cx) {
                Poll::Ready(got) => {
                    me.waiting = None;
                    if got.is_empty() {
                        // Nothing pending and nothing to hand over: the task
                        // was dropped by a terminated pool.
                        me.inner.__absorb(vec![(0, Err(PoolError::Terminated))]);
                    } else {
                        me.inner.__absorb(got);
                    }
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<R> Unpin for AsyncResult<R> {}

/// The results of [`Pool::map`] and friends: a [`Stream`] of one `Result`
/// per input item.
///
/// Polling it hands out results and keeps the workers fed from the input,
/// which it reads lazily: at most [`max_in_flight`](MapStream::max_in_flight)
/// tasks are submitted and not yet handed out. Set
/// [`chunksize`](MapStream::chunksize) and `max_in_flight` before the first
/// poll. Async functions go one item per task by default.
///
/// Dropping the stream withdraws the tasks no worker has started (the
/// others finish and their results are dropped): no further task starts.
pub struct MapStream<S, R> {
    core: Result<MapCore<R>, Option<PoolError>>,
    input: Pin<Box<S>>,
    input_pending: bool,
    waiting: Option<BoxedWait>,
}

impl<S, R> fmt::Debug for MapStream<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapStream")
            .field("core", &self.core.as_ref().ok())
            .finish_non_exhaustive()
    }
}

impl<S: Stream, R: DeserializeOwned> MapStream<S, R> {
    fn new(
        engine: &Arc<Engine>,
        entry: Result<Entry, String>,
        input: S,
        ordered: bool,
    ) -> MapStream<S, R> {
        let hint = input.size_hint().0;
        MapStream {
            core: entry
                .map(|e| MapCore::new(engine.clone(), e, ordered, hint))
                .map_err(|m| Some(PoolError::Failed(m))),
            input: Box::pin(input),
            input_pending: false,
            waiting: None,
        }
    }

    /// Items per task (see the core's [`Map::chunksize`](core::Map::chunksize)).
    pub fn chunksize(mut self, n: usize) -> Self {
        if let Ok(c) = &mut self.core {
            c.set_chunksize(n);
        }
        self
    }

    /// The most tasks submitted and not yet handed out (see the core's
    /// [`Map::max_in_flight`](core::Map::max_in_flight)).
    pub fn max_in_flight(mut self, n: usize) -> Self {
        if let Ok(c) = &mut self.core {
            c.set_max_in_flight(n);
        }
        self
    }

    /// The results as a blocking iterator, for a thread outside any
    /// executor (not inside an async task: it blocks its thread).
    pub fn into_blocking_iter<A>(self) -> impl Iterator<Item = Result<R, PoolError>>
    where
        S: Stream<Item = A>,
        A: Serialize,
    {
        futures_lite::stream::block_on(self)
    }
}

impl<S, A, R> Stream for MapStream<S, R>
where
    S: Stream<Item = A>,
    A: Serialize,
    R: DeserializeOwned,
{
    type Item = Result<R, PoolError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // Every field is Unpin (the input is boxed).
        let me = self.get_mut();
        let core = match &mut me.core {
            Ok(c) => c,
            Err(e) => return Poll::Ready(e.take().map(Err)),
        };
        loop {
            let input = &mut me.input;
            let mut pending = false;
            core.fill(|| match input.as_mut().poll_next(cx) {
                Poll::Ready(Some(a)) => Pull::Item(a),
                Poll::Ready(None) => Pull::Done,
                Poll::Pending => {
                    pending = true;
                    Pull::Pending
                }
            });
            me.input_pending = pending;
            if let Some(r) = core.pop() {
                return Poll::Ready(Some(r));
            }
            if core.finished() {
                return Poll::Ready(None);
            }
            if !core.in_flight() {
                // Nothing to wait for but the input, whose waker is set.
                return Poll::Pending;
            }
            let w = me
                .waiting
                .get_or_insert_with(|| boxed_wait(core.engine().clone(), core.owner()));
            match w.as_mut().poll(cx) {
                Poll::Ready(got) => {
                    me.waiting = None;
                    core.absorb(got);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<S, R> Unpin for MapStream<S, R> {}

/// The worker of an async pool: takes up to `concurrency` tasks at once and
/// runs them on one thread, async ones interleaved at their awaits.
fn async_worker(args: WorkerArgs) {
    args.hold_life();
    let tasks = crate::queue::Queue::from(args.tasks.clone());
    let results = crate::queue::Queue::from(args.results.clone());
    let concurrency = (args.concurrency as usize).max(1);
    let max = args.max_tasks;
    async_io::block_on(async move {
        let mut running: Vec<Pin<Box<dyn Future<Output = ()>>>> = Vec::new();
        let mut intake: Option<Pin<Box<dyn Future<Output = Option<core::TaskMsg>>>>> = None;
        let mut taken = 0u64;
        let mut closed = false;
        future::poll_fn(|cx| {
            loop {
                // Finished tasks first: their replies go out before this
                // worker spins waiting for more work.
                running.retain_mut(|f| f.as_mut().poll(cx).is_pending());
                let before = (running.len(), taken);
                while !closed && running.len() < concurrency && (max == 0 || taken < max) {
                    let q = tasks.clone();
                    let fut =
                        intake.get_or_insert_with(|| Box::pin(async move { q.get().await.ok() }));
                    match fut.as_mut().poll(cx) {
                        Poll::Ready(Some(task)) => {
                            intake = None;
                            taken += 1;
                            // Run it to its first wait now: a plain task's
                            // reply goes out before the next get spins.
                            let mut f = start_task(task, results.clone());
                            if f.as_mut().poll(cx).is_pending() {
                                running.push(f);
                            }
                        }
                        Poll::Ready(None) => {
                            intake = None;
                            closed = true;
                        }
                        Poll::Pending => break,
                    }
                }
                let no_more = closed || (max > 0 && taken >= max);
                if running.is_empty() && no_more {
                    return Poll::Ready(());
                }
                if (running.len(), taken) == before {
                    return Poll::Pending;
                }
            }
        })
        .await;
    });
}

/// A task as a future that ends once its reply is in the result ring.
fn start_task(
    task: core::TaskMsg,
    results: crate::queue::Queue<ResultMsg>,
) -> Pin<Box<dyn Future<Output = ()>>> {
    let id = task.id;
    if task.entry.is_async() {
        let Some(fut) = WorkerArgs::run_async(task) else {
            return Box::pin(async {});
        };
        Box::pin(async move {
            let body = fut.await;
            let _ = results
                .put(ResultMsg {
                    id,
                    body: core::Bytes(body),
                })
                .await;
        })
    } else {
        let reply = WorkerArgs::run_sync(&task);
        Box::pin(async move {
            let _ = results.put(reply).await;
        })
    }
}
