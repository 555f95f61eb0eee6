//! The per-process futex watcher: kernel wake-ups turned into
//! `event_listener` notifications.
//!
//! An async operation never blocks a thread. When its `try_` form fails, it
//! registers a [`Watch`] (a futex word in shared memory and the value it
//! holds) here and awaits the returned [`Listen`]. One `aiop-watcher` thread
//! sleeps in `futex_waitv` on every watched word of the process at once, plus
//! a private control word that registration bumps. When a word no longer
//! holds its value, the thread notifies every task waiting on it, and the
//! tasks try again.
//!
//! * One `futex_waitv` takes 128 words: the control word and 127 watched
//!   ones. A second thread starts only when the first has 127 words, and so
//!   on: 10,000 tasks waiting on 100 primitives cost one thread.
//! * Tasks waiting on the same word share one entry (keyed by segment and
//!   offset), so the kernel sees each word once.
//! * A task whose future is dropped drops its listener and nudges the
//!   watcher, which forgets entries nobody listens to and gives back their
//!   waiter counts. Nothing else is held for a waiting task: dropping the
//!   future loses nothing.
//! * For words whose wakers wake a single waiter (a lock's release, a
//!   semaphore's), the watcher passes one `FUTEX_WAKE` on after it has seen a
//!   change, so that a wake-up it consumed for tasks that no longer want it
//!   still reaches another process's waiter.
//! * After `fork`, the child has none of these threads; the first
//!   registration in a new process starts afresh.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use aiop_core::futex::{self, Timeout};
use aiop_core::wait::Watch;
use event_listener::{Event, EventListener};

/// Watched words per thread: `futex_waitv` takes 128, one is the control word.
const PER_THREAD: usize = futex::WAITV_MAX - 1;

/// Tasks waiting on one word. Immutable once registered; dropping it (only
/// the watcher thread removes entries) gives back the waiter count.
struct Entry {
    watch: Watch,
    event: Event,
}

/// One watcher thread and the words it sleeps on.
struct Shard {
    /// Bumped (and woken) whenever `entries` changes, so that the thread
    /// rebuilds its wait list. Private memory: only this process waits on it.
    ctl: AtomicU32,
    entries: Mutex<Vec<Arc<Entry>>>,
}

impl Shard {
    fn nudge(&self) {
        self.ctl.fetch_add(1, Ordering::SeqCst);
        let _ = futex::wake_all(&self.ctl);
    }

    fn run(self: Arc<Shard>) {
        let mut watched: Vec<Arc<Entry>> = Vec::new();
        loop {
            // Read the control word before the scan and the list: a
            // registration or a dropped listener after this read bumps it,
            // and the wait below returns at once for another scan.
            let seen = self.ctl.load(Ordering::SeqCst);
            self.scan();
            watched.clear();
            watched.extend(
                self.entries
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                    .cloned(),
            );
            let mut words: Vec<(&AtomicU32, u32)> = Vec::with_capacity(watched.len() + 1);
            words.push((&self.ctl, seen));
            words.extend(watched.iter().map(|e| (e.watch.word(), e.watch.expected())));
            // Any return (a wake, a changed word, a signal) leads to a scan.
            let _ = futex::waitv(&words, Timeout::Never);
        }
    }

    /// Notifies the tasks of every word that changed, and forgets entries
    /// that changed or that nobody listens to any more.
    fn scan(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|e| {
            let changed = e.watch.word().load(Ordering::SeqCst) != e.watch.expected();
            if changed {
                e.event.notify(usize::MAX);
                if e.watch.wakes_one() {
                    // Pass on the single wake-up we may have consumed.
                    let _ = futex::wake(e.watch.word(), 1);
                }
                false
            } else {
                e.event.total_listeners() > 0
            }
        });
    }
}

/// The watcher threads of this process.
struct Watchers {
    pid: u32,
    shards: Vec<Arc<Shard>>,
}

static WATCHERS: Mutex<Option<Watchers>> = Mutex::new(None);

/// Registers `watches` and returns a future that completes when any of
/// their words changes (or at once, when one has changed already).
///
/// The caller re-checks its condition after this returns and before it
/// awaits the future: changes made before registration are seen by that
/// check, changes after it by the watcher.
pub(crate) fn listen(watches: Vec<Watch>) -> Listen {
    let mut listeners = Vec::with_capacity(watches.len());
    let mut shards = Vec::with_capacity(watches.len());
    for mut watch in watches {
        let mut all = WATCHERS.lock().unwrap_or_else(|e| e.into_inner());
        let pid = std::process::id();
        if all.as_ref().is_none_or(|w| w.pid != pid) {
            // First use, or a forked child whose watcher threads are gone.
            *all = Some(Watchers {
                pid,
                shards: Vec::new(),
            });
        }
        let all = all.as_mut().expect("initialized above");
        let key = watch.key();
        // Join another task's entry for the same word only while the word
        // still holds that entry's value: then the entry's announcement is
        // in force, and the next change wakes the watcher. A stale entry
        // (its word moved on, and the watcher may be asleep on the old
        // value) is left for the watcher to clean up, nudged, and this task
        // registers an entry of its own.
        let mut existing = None;
        for shard in &all.shards {
            let entries = shard.entries.lock().unwrap_or_else(|e| e.into_inner());
            for e in entries.iter().filter(|e| e.watch.key() == key) {
                if e.watch.word().load(Ordering::SeqCst) == e.watch.expected() {
                    existing = Some((shard.clone(), e.event.listen()));
                    break;
                }
                shard.nudge();
            }
            if existing.is_some() {
                break;
            }
        }
        if let Some((shard, listener)) = existing {
            listeners.push(listener);
            shards.push(shard);
            continue;
        }
        if !watch.announce() {
            // Changed already: no need to sleep. Entries registered for
            // the other watches lose their listeners here: nudge them away.
            return Listen {
                listeners: Vec::new(),
                shards,
                done: true,
                nudge: true,
            };
        }
        let shard = match all
            .shards
            .iter()
            .find(|s| s.entries.lock().unwrap_or_else(|e| e.into_inner()).len() < PER_THREAD)
        {
            Some(s) => s.clone(),
            None => match start_shard() {
                Ok(s) => {
                    all.shards.push(s.clone());
                    s
                }
                // No thread for a watcher: let the caller poll again rather
                // than sleep forever.
                Err(_) => {
                    return Listen {
                        listeners: Vec::new(),
                        shards,
                        done: true,
                        nudge: true,
                    };
                }
            },
        };
        let entry = Arc::new(Entry {
            watch,
            event: Event::new(),
        });
        listeners.push(entry.event.listen());
        shard
            .entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(entry);
        shard.nudge();
        shards.push(shard);
    }
    let nudge = listeners.len() > 1;
    Listen {
        listeners,
        shards,
        done: false,
        nudge,
    }
}

fn start_shard() -> std::io::Result<Arc<Shard>> {
    let shard = Arc::new(Shard {
        ctl: AtomicU32::new(0),
        entries: Mutex::new(Vec::new()),
    });
    let run = shard.clone();
    std::thread::Builder::new()
        .name("aiop-watcher".into())
        .stack_size(64 * 1024)
        .spawn(move || run.run())?;
    Ok(shard)
}

/// The loop every async wait runs: `attempt` (a non-blocking `try_`) until
/// it gives a value; between attempts, `watch` names the word to wait on
/// (`None`: the state changed already, try again), which is registered
/// before the attempt that precedes sleeping, so no change is missed.
///
/// Cancel safe when `attempt` is: dropping the future between attempts
/// holds nothing but a registration, which the watcher forgets.
pub(crate) async fn wait_for<T>(
    mut attempt: impl FnMut() -> Option<T>,
    mut watch: impl FnMut() -> Option<Watch>,
) -> T {
    loop {
        if let Some(v) = attempt() {
            return v;
        }
        let Some(w) = watch() else {
            continue;
        };
        let listen = listen(vec![w]);
        if let Some(v) = attempt() {
            return v;
        }
        listen.await;
    }
}

/// [`wait_for`] for a lock: `try_lock` until it takes the lock or reports
/// that its previous owner died.
pub(crate) async fn lock_for<G>(
    try_lock: impl Fn() -> aiop_core::sync::TryLockResult<G>,
    watch: impl FnMut() -> Option<Watch>,
) -> aiop_core::sync::LockResult<G> {
    use aiop_core::sync::TryLockError;
    wait_for(
        || match try_lock() {
            Ok(g) => Some(Ok(g)),
            Err(TryLockError::OwnerDied(d)) => Some(Err(d)),
            Err(TryLockError::WouldBlock) => None,
        },
        watch,
    )
    .await
}

/// The number of watcher threads this process runs (for tests and benches).
#[doc(hidden)]
pub fn __watcher_threads() -> usize {
    WATCHERS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .filter(|w| w.pid == std::process::id())
        .map_or(0, |w| w.shards.len())
}

/// Completes when a registered word changes. Dropping it before then
/// nudges the watcher, which forgets words nobody waits on any more.
#[must_use = "a Listen does nothing unless awaited"]
pub(crate) struct Listen {
    listeners: Vec<EventListener>,
    shards: Vec<Arc<Shard>>,
    done: bool,
    /// Nudge the shards even after completing: with several words, those
    /// that did not fire keep entries nobody listens to any more.
    nudge: bool,
}

impl std::fmt::Debug for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listen")
            .field("words", &self.listeners.len())
            .field("done", &self.done)
            .finish()
    }
}

impl Future for Listen {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.done {
            return Poll::Ready(());
        }
        for l in self.listeners.iter_mut() {
            if Pin::new(l).poll(cx).is_ready() {
                self.done = true;
                return Poll::Ready(());
            }
        }
        Poll::Pending
    }
}

impl Drop for Listen {
    fn drop(&mut self) {
        // Dropping the listeners first lets the watcher see that nobody
        // listens any more.
        self.listeners.clear();
        if !self.done || self.nudge {
            for s in &self.shards {
                s.nudge();
            }
        }
    }
}
