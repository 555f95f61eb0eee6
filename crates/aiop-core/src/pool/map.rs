//! The state of one `map`: chunks in flight, results waiting to be handed
//! out in order, and how big the next chunk is. The blocking iterator and
//! the async stream drive the same machine.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::call::{self, Entry};
use super::engine::{CHUNK_BYTES, Engine, MAX_TASK_BYTES, Outcome};
use super::error::PoolError;

/// The largest chunk the automatic size grows to (items).
const AUTO_MAX: usize = 1 << 16;
/// The default in-flight bound covers at least this many items.
const WINDOW_ITEMS: usize = 256;
/// An automatic chunk grows while chunks come back faster than this.
const AUTO_GROW_BELOW: Duration = Duration::from_millis(2);

/// What the input gave when asked for an item.
#[doc(hidden)]
#[derive(Debug)]
pub enum Pull<A> {
    /// The next item.
    Item(A),
    /// None yet (an async stream that is not ready).
    Pending,
    /// The input is exhausted.
    Done,
}

/// How many items go into one task.
#[derive(Clone, Copy, Debug)]
enum Chunking {
    /// Exactly this many (the last chunk may hold fewer).
    Fixed(usize),
    /// Starts at this size; doubles while chunks come back quickly.
    Growing(usize),
}

/// One map's state: see the module docs.
#[doc(hidden)]
pub struct MapCore<R> {
    engine: Arc<Engine>,
    owner: u64,
    entry: Entry,
    ordered: bool,
    chunking: Option<Chunking>,
    /// The input's lower size bound, for the automatic chunk size.
    hint: usize,
    limit: Option<usize>,
    /// Task id → (sequence number, items, submitted at).
    chunks: HashMap<u64, (u64, usize, Instant)>,
    next_seq: u64,
    yield_seq: u64,
    reorder: BTreeMap<u64, VecDeque<Result<R, PoolError>>>,
    out: VecDeque<Result<R, PoolError>>,
    input_done: bool,
}

impl<R> fmt::Debug for MapCore<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapCore")
            .field("ordered", &self.ordered)
            .field("chunking", &self.chunking)
            .field("in_flight", &self.chunks.len())
            .field("input_done", &self.input_done)
            .finish_non_exhaustive()
    }
}

impl<R: DeserializeOwned> MapCore<R> {
    /// A map of `entry` over an input whose size hint's lower bound is
    /// `hint`; results in input order when `ordered`.
    pub fn new(engine: Arc<Engine>, entry: Entry, ordered: bool, hint: usize) -> MapCore<R> {
        let owner = engine.new_owner();
        MapCore {
            engine,
            owner,
            entry,
            ordered,
            chunking: None,
            hint,
            limit: None,
            chunks: HashMap::new(),
            next_seq: 0,
            yield_seq: 0,
            reorder: BTreeMap::new(),
            out: VecDeque::new(),
            input_done: false,
        }
    }

    /// The engine this map runs on.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// This map's owner id in the engine.
    pub fn owner(&self) -> u64 {
        self.owner
    }

    /// Sets the number of items per task (at least 1).
    pub fn set_chunksize(&mut self, n: usize) {
        self.chunking = Some(Chunking::Fixed(n.max(1)));
    }

    /// Sets the most tasks submitted and not yet handed out (at least 1).
    pub fn set_max_in_flight(&mut self, n: usize) {
        self.limit = Some(n.max(1));
    }

    fn limit(&mut self) -> usize {
        if let Some(l) = self.limit {
            return l;
        }
        // Twice the workers, and enough small tasks that a worker held up
        // for a scheduler slice does not stall an ordered map.
        let workers = self.workers();
        let chunk = self.chunk_size();
        workers
            .saturating_mul(2)
            .max(WINDOW_ITEMS.div_ceil(chunk))
            .max(2)
    }

    fn chunk_size(&mut self) -> usize {
        if self.entry.is_async() && self.chunking.is_none() {
            // I/O-bound tasks: one per task, so they overlap.
            self.chunking = Some(Chunking::Fixed(1));
        }
        let workers = self.workers();
        let hint = self.hint;
        let c = *self.chunking.get_or_insert_with(|| {
            if hint > 0 {
                // Python's rule: four chunks per worker.
                Chunking::Fixed(hint.div_ceil(workers.saturating_mul(4)).clamp(1, AUTO_MAX))
            } else {
                Chunking::Growing(1)
            }
        });
        match c {
            Chunking::Fixed(n) | Chunking::Growing(n) => n,
        }
    }

    /// How many tasks of this map run at once: a plain task has its worker
    /// to itself; async ones share it.
    fn workers(&self) -> usize {
        let per = if self.entry.is_async() {
            self.engine.concurrency()
        } else {
            1
        };
        self.engine.processes().saturating_mul(per).max(1)
    }

    /// Tasks submitted whose items have not all been handed out.
    fn outstanding(&self) -> usize {
        self.chunks.len() + self.reorder.len()
    }

    /// Submits chunks from `pull` while fewer than the in-flight bound are
    /// outstanding and the input gives items.
    pub fn fill<A: Serialize>(&mut self, mut pull: impl FnMut() -> Pull<A>) {
        while !self.input_done && self.outstanding() < self.limit() {
            let want = self.chunk_size();
            let mut items = Vec::new();
            let mut count = 0;
            let mut pending = false;
            while count < want && items.len() < CHUNK_BYTES {
                let before = items.len();
                match pull() {
                    Pull::Item(a) => match call::push_arg(&mut items, &a) {
                        Ok(()) if count > 0 && items.len() > MAX_TASK_BYTES - 16 => {
                            // Too much for one task with this item: the
                            // chunk goes without it, and it starts the next
                            // (alone, it fails only if it alone is too big).
                            let rest = items.split_off(before);
                            self.submit(std::mem::replace(&mut items, rest), count);
                            count = 1;
                        }
                        Ok(()) => count += 1,
                        Err(e) => {
                            // The items before it go as they are; the error
                            // takes the failed item's place.
                            if count > 0 {
                                self.submit(std::mem::take(&mut items), count);
                                count = 0;
                            }
                            self.push_results(vec![Err(e)]);
                        }
                    },
                    Pull::Pending => {
                        pending = true;
                        break;
                    }
                    Pull::Done => {
                        self.input_done = true;
                        break;
                    }
                }
            }
            if count > 0 {
                self.submit(items, count);
            }
            if pending {
                break;
            }
        }
    }

    fn submit(&mut self, items: Vec<u8>, count: usize) {
        let mut args = Vec::with_capacity(items.len() + 10);
        call::start_chunk(&mut args, count);
        args.extend_from_slice(&items);
        drop(items);
        match self.engine.submit(self.owner, self.entry, args) {
            Ok(id) => {
                self.chunks
                    .insert(id, (self.next_seq, count, Instant::now()));
                self.next_seq += 1;
            }
            Err(e) => {
                if !matches!(e, PoolError::Encode(_)) {
                    // The pool refuses work: report it for these items and
                    // stop reading the input.
                    self.input_done = true;
                }
                self.push_results((0..count).map(|_| Err(e.clone())).collect());
            }
        }
    }

    /// Results that need no task (errors at submission), in their place.
    fn push_results(&mut self, results: Vec<Result<R, PoolError>>) {
        if self.ordered {
            self.reorder.insert(self.next_seq, results.into());
        } else {
            self.out.extend(results);
        }
        self.next_seq += 1;
    }

    /// Takes the outcomes the engine handed over.
    pub fn absorb(&mut self, outcomes: Vec<(u64, Outcome)>) {
        for (id, outcome) in outcomes {
            let Some((seq, n, at)) = self.chunks.remove(&id) else {
                continue;
            };
            if let Some(Chunking::Growing(size)) = &mut self.chunking {
                if at.elapsed() < AUTO_GROW_BELOW && *size == n {
                    *size = (*size * 2).min(AUTO_MAX);
                }
            }
            let results = match outcome {
                Ok(body) => call::parse_reply::<R>(&body, n),
                Err(e) => (0..n).map(|_| Err(e.clone())).collect(),
            };
            if self.ordered {
                self.reorder.insert(seq, results.into());
            } else {
                self.out.extend(results);
            }
        }
    }

    /// The next result that can be handed out.
    pub fn pop(&mut self) -> Option<Result<R, PoolError>> {
        if self.ordered && self.out.is_empty() {
            if let Some(v) = self.reorder.remove(&self.yield_seq) {
                self.yield_seq += 1;
                self.out = v;
            }
        }
        self.out.pop_front()
    }

    /// Whether some task of this map is submitted and not answered.
    pub fn in_flight(&self) -> bool {
        !self.chunks.is_empty()
    }

    /// Whether every result has been handed out and the input is done.
    pub fn finished(&self) -> bool {
        self.input_done && self.chunks.is_empty() && self.reorder.is_empty() && self.out.is_empty()
    }
}

impl<R> Drop for MapCore<R> {
    fn drop(&mut self) {
        // Tasks not handed to a worker yet never start.
        self.engine.drop_owner(self.owner);
    }
}
