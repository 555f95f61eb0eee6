//! `QueueProxy` and `JoinableQueueProxy`: FIFO queues served by the
//! manager (Python's `manager.Queue()` and `manager.JoinableQueue()`).

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{bool_or_timeout, decode, enc, timed_out};
use crate::manager::proxy::typed_proxy;
use crate::manager::{
    Call, CallError, Manager, ManagerError, Monitor, Proxy, Registry, RemoteError, Served,
};

const QUEUE: &str = "aiop.Queue";
const JOINABLE: &str = "aiop.JoinableQueue";

pub(super) fn register(r: &mut Registry) {
    r.register(QUEUE, |maxsize: u64| Ok(Queue::new(maxsize)));
    r.register(JOINABLE, |maxsize: u64| Ok(Queue::new(maxsize)));
}

/// The served queue: encoded items, a bound (0: none), and the count of
/// items put and not yet marked done (for `join`).
struct Queue {
    m: Monitor<QueueState>,
}

struct QueueState {
    /// Each item with its place in the order of `put`s (ascending), so that
    /// items given back by cancelled `get`s return to their places.
    items: VecDeque<(u64, Vec<u8>)>,
    next_seq: u64,
    maxsize: usize,
    unfinished: u64,
}

impl QueueState {
    fn full(&self) -> bool {
        self.maxsize > 0 && self.items.len() >= self.maxsize
    }
}

impl Queue {
    fn new(maxsize: u64) -> Queue {
        Queue {
            m: Monitor::new(QueueState {
                items: VecDeque::new(),
                next_seq: 0,
                maxsize: usize::try_from(maxsize).unwrap_or(usize::MAX),
                unfinished: 0,
            }),
        }
    }
}

impl Served for Queue {
    fn call(&self, call: &Call<'_>) -> Result<Vec<u8>, CallError> {
        let q = self.m.lock();
        match call.method() {
            "put" => {
                let (timeout, item): (Option<Duration>, Vec<u8>) = call.args()?;
                let deadline = call.deadline(timeout);
                let (mut q, ok) = call.wait_until(&self.m, q, deadline, |q| !q.full())?;
                if !ok {
                    return Err(timed_out("the queue stayed full"));
                }
                let seq = q.next_seq;
                q.next_seq += 1;
                q.items.push_back((seq, item));
                q.unfinished += 1;
                drop(q);
                self.m.notify_all();
                call.reply(&())
            }
            "get" => {
                let timeout: Option<Duration> = call.args()?;
                let deadline = call.deadline(timeout);
                let (mut q, ok) = call.wait_until(&self.m, q, deadline, |q| !q.items.is_empty())?;
                if !ok {
                    return Err(timed_out("the queue stayed empty"));
                }
                let (seq, item) = q.items.pop_front().expect("not empty");
                drop(q);
                self.m.notify_all();
                // The reply is `(seq, item)` in postcard (the varint of
                // `seq`, then the item's own encoding), so that an orphaned
                // reply is the argument of `unget` as it stands.
                let mut reply = call.reply(&seq)?;
                reply.extend_from_slice(&item);
                Ok(reply)
            }
            "unget" => {
                // The undo of a cancelled `get`: the item goes back to its
                // place in the order of puts (the front, unless several
                // cancelled gets give theirs back out of order).
                let (seq, item) = call.leading_args::<u64>()?;
                let mut q = q;
                let at = q.items.partition_point(|(s, _)| *s < seq);
                q.items.insert(at, (seq, item.to_vec()));
                drop(q);
                self.m.notify_all();
                call.reply(&())
            }
            "qsize" => call.reply(&(q.items.len() as u64)),
            "maxsize" => call.reply(&(q.maxsize as u64)),
            "task_done" => {
                let mut q = q;
                if q.unfinished == 0 {
                    return Err(RemoteError::new(
                        RemoteError::INVALID_VALUE,
                        "task_done() called more times than there were items",
                    )
                    .into());
                }
                q.unfinished -= 1;
                drop(q);
                self.m.notify_all();
                call.reply(&())
            }
            "join" => {
                let timeout: Option<Duration> = call.args()?;
                let deadline = call.deadline(timeout);
                let (q, ok) = call.wait_until(&self.m, q, deadline, |q| q.unfinished == 0)?;
                drop(q);
                call.reply(&ok)
            }
            _ => Err(call.no_such_method()),
        }
    }
}

/// A proxy to a FIFO queue served by a manager: Python's `manager.Queue()`.
///
/// Items are serde values of type `T`. `get` waits on the server, so a
/// waiting `get` costs the caller no thread and the server one thread, and
/// holds up nobody else.
///
/// # Cancel safety
///
/// Dropping a [`get`](QueueProxy::get) future loses no item: if the server
/// had already taken one for it, the proxy puts it back in its place (the
/// front, unless a later item was given back first). A dropped [`put`](QueueProxy::put) either put its item or did
/// not; it is never put twice.
pub struct QueueProxy<T> {
    proxy: Proxy,
    _types: PhantomData<fn() -> T>,
}

typed_proxy!(QueueProxy<T>, QUEUE);

/// A proxy to a queue whose consumers mark items done, served by a manager:
/// Python's `manager.JoinableQueue()`. It has every method of
/// [`QueueProxy`], with the same cancel safety, and
/// [`task_done`](JoinableQueueProxy::task_done) / [`join`](JoinableQueueProxy::join).
pub struct JoinableQueueProxy<T> {
    proxy: Proxy,
    _types: PhantomData<fn() -> T>,
}

typed_proxy!(JoinableQueueProxy<T>, JOINABLE);

fn item_or_timeout<T: DeserializeOwned>(
    r: Result<Vec<u8>, ManagerError>,
) -> Result<Option<T>, ManagerError> {
    match r {
        // `(seq, item)`: the item's place in the queue's order, then itself.
        Ok(bytes) => decode::<(u64, T)>(&bytes).map(|(_, item)| Some(item)),
        Err(e) if e.is_remote(RemoteError::TIMED_OUT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The operations of both queue proxies, on the untyped proxy.
struct Ops<'a>(&'a Proxy);

impl Ops<'_> {
    async fn put<T: Serialize>(
        &self,
        item: &T,
        timeout: Option<Duration>,
    ) -> Result<bool, ManagerError> {
        let args = enc(&(timeout, enc(item)?))?;
        bool_or_timeout(self.0.call_raw("put", args, None).await)
    }

    fn put_blocking<T: Serialize>(
        &self,
        item: &T,
        timeout: Option<Duration>,
    ) -> Result<bool, ManagerError> {
        let args = enc(&(timeout, enc(item)?))?;
        bool_or_timeout(self.0.call_raw_blocking("put", args))
    }

    async fn get<T: DeserializeOwned>(
        &self,
        timeout: Option<Duration>,
    ) -> Result<Option<T>, ManagerError> {
        let r = self
            .0
            .call_raw("get", enc(&timeout)?, Some(("unget", None)))
            .await;
        item_or_timeout(r)
    }

    fn get_blocking<T: DeserializeOwned>(
        &self,
        timeout: Option<Duration>,
    ) -> Result<Option<T>, ManagerError> {
        item_or_timeout(self.0.call_raw_blocking("get", enc(&timeout)?))
    }

    async fn query<R: DeserializeOwned>(&self, method: &str) -> Result<R, ManagerError> {
        decode(&self.0.call_raw(method, enc(&())?, None).await?)
    }

    fn query_blocking<R: DeserializeOwned>(&self, method: &str) -> Result<R, ManagerError> {
        decode(&self.0.call_raw_blocking(method, enc(&())?)?)
    }
}

fn expect_item<T>(got: Option<T>) -> T {
    got.expect("a get without a timeout returns an item or an error")
}

macro_rules! queue_methods {
    () => {
        /// Puts `item` at the back, waiting while the queue is full
        /// (Python's `put(item)`).
        ///
        /// # Errors
        ///
        /// [`ManagerError::ServerGone`] when the server is gone (or shuts
        /// down while this waits); the other errors of [`Proxy::call`].
        pub async fn put(&self, item: &T) -> Result<(), ManagerError> {
            Ops(&self.proxy).put(item, None).await.map(drop)
        }

        /// [`put`](Self::put), blocking the thread.
        ///
        /// # Errors
        ///
        /// As [`put`](Self::put).
        pub fn put_blocking(&self, item: &T) -> Result<(), ManagerError> {
            Ops(&self.proxy).put_blocking(item, None).map(drop)
        }

        /// Puts `item`, waiting at most `timeout` for room; false when the
        /// queue stayed full (Python's `put(item, timeout=t)` raising `Full`).
        ///
        /// # Errors
        ///
        /// As [`put`](Self::put).
        pub async fn put_timeout(&self, item: &T, timeout: Duration) -> Result<bool, ManagerError> {
            Ops(&self.proxy).put(item, Some(timeout)).await
        }

        /// [`put_timeout`](Self::put_timeout), blocking the thread.
        ///
        /// # Errors
        ///
        /// As [`put`](Self::put).
        pub fn put_timeout_blocking(
            &self,
            item: &T,
            timeout: Duration,
        ) -> Result<bool, ManagerError> {
            Ops(&self.proxy).put_blocking(item, Some(timeout))
        }

        /// Puts `item` if there is room now; false when full (Python's
        /// `put_nowait`). One round trip, no waiting on the server.
        ///
        /// # Errors
        ///
        /// As [`put`](Self::put).
        pub async fn try_put(&self, item: &T) -> Result<bool, ManagerError> {
            Ops(&self.proxy).put(item, Some(Duration::ZERO)).await
        }

        /// [`try_put`](Self::try_put), blocking the thread for the round trip.
        ///
        /// # Errors
        ///
        /// As [`put`](Self::put).
        pub fn try_put_blocking(&self, item: &T) -> Result<bool, ManagerError> {
            Ops(&self.proxy).put_blocking(item, Some(Duration::ZERO))
        }

        /// Takes the item at the front, waiting while the queue is empty
        /// (Python's `get()`).
        ///
        /// # Cancel safety
        ///
        /// Cancel safe: an item the server took for a dropped future is put
        /// back at the front.
        ///
        /// # Errors
        ///
        /// As [`put`](Self::put).
        pub async fn get(&self) -> Result<T, ManagerError> {
            Ops(&self.proxy).get(None).await.map(expect_item)
        }

        /// [`get`](Self::get), blocking the thread.
        ///
        /// # Errors
        ///
        /// As [`put`](Self::put).
        pub fn get_blocking(&self) -> Result<T, ManagerError> {
            Ops(&self.proxy).get_blocking(None).map(expect_item)
        }

        /// Takes the front item, waiting at most `timeout`; `None` when the
        /// queue stayed empty (Python's `get(timeout=t)` raising `Empty`).
        ///
        /// # Cancel safety
        ///
        /// As [`get`](Self::get).
        ///
        /// # Errors
        ///
        /// As [`put`](Self::put).
        pub async fn get_timeout(&self, timeout: Duration) -> Result<Option<T>, ManagerError> {
            Ops(&self.proxy).get(Some(timeout)).await
        }

        /// [`get_timeout`](Self::get_timeout), blocking the thread.
        ///
        /// # Errors
        ///
        /// As [`put`](Self::put).
        pub fn get_timeout_blocking(&self, timeout: Duration) -> Result<Option<T>, ManagerError> {
            Ops(&self.proxy).get_blocking(Some(timeout))
        }

        /// Takes the front item if there is one now (Python's `get_nowait`).
        ///
        /// # Errors
        ///
        /// As [`put`](Self::put).
        pub async fn try_get(&self) -> Result<Option<T>, ManagerError> {
            Ops(&self.proxy).get(Some(Duration::ZERO)).await
        }

        /// [`try_get`](Self::try_get), blocking the thread for the round trip.
        ///
        /// # Errors
        ///
        /// As [`put`](Self::put).
        pub fn try_get_blocking(&self) -> Result<Option<T>, ManagerError> {
            Ops(&self.proxy).get_blocking(Some(Duration::ZERO))
        }

        /// How many items are queued (Python's `qsize()`).
        ///
        /// # Errors
        ///
        /// As [`put`](Self::put).
        pub async fn qsize(&self) -> Result<usize, ManagerError> {
            Ok(Ops(&self.proxy).query::<u64>("qsize").await? as usize)
        }

        /// [`qsize`](Self::qsize), blocking the thread.
        ///
        /// # Errors
        ///
        /// As [`put`](Self::put).
        pub fn qsize_blocking(&self) -> Result<usize, ManagerError> {
            Ok(Ops(&self.proxy).query_blocking::<u64>("qsize")? as usize)
        }

        /// Whether the queue is empty (Python's `empty()`).
        ///
        /// # Errors
        ///
        /// As [`put`](Self::put).
        pub async fn is_empty(&self) -> Result<bool, ManagerError> {
            Ok(self.qsize().await? == 0)
        }

        /// [`is_empty`](Self::is_empty), blocking the thread.
        ///
        /// # Errors
        ///
        /// As [`put`](Self::put).
        pub fn is_empty_blocking(&self) -> Result<bool, ManagerError> {
            Ok(self.qsize_blocking()? == 0)
        }

        /// The bound given at creation (0: unbounded).
        ///
        /// # Errors
        ///
        /// As [`put`](Self::put).
        pub fn maxsize_blocking(&self) -> Result<usize, ManagerError> {
            Ok(Ops(&self.proxy).query_blocking::<u64>("maxsize")? as usize)
        }
    };
}

impl<T: Serialize + DeserializeOwned> QueueProxy<T> {
    queue_methods!();
}

impl<T: Serialize + DeserializeOwned> JoinableQueueProxy<T> {
    queue_methods!();

    /// Marks one item taken by a consumer as processed (Python's
    /// `task_done()`).
    ///
    /// # Errors
    ///
    /// [`RemoteError::INVALID_VALUE`] when called more times than items
    /// were put; otherwise as [`put`](Self::put).
    pub async fn task_done(&self) -> Result<(), ManagerError> {
        Ops(&self.proxy).query("task_done").await
    }

    /// [`task_done`](Self::task_done), blocking the thread.
    ///
    /// # Errors
    ///
    /// As [`task_done`](Self::task_done).
    pub fn task_done_blocking(&self) -> Result<(), ManagerError> {
        Ops(&self.proxy).query_blocking("task_done")
    }

    /// Waits until every item put has been marked done (Python's `join()`).
    ///
    /// # Errors
    ///
    /// As [`put`](Self::put).
    pub async fn join(&self) -> Result<(), ManagerError> {
        decode::<bool>(
            &self
                .proxy
                .call_raw("join", enc(&None::<Duration>)?, None)
                .await?,
        )
        .map(drop)
    }

    /// [`join`](Self::join), blocking the thread.
    ///
    /// # Errors
    ///
    /// As [`put`](Self::put).
    pub fn join_blocking(&self) -> Result<(), ManagerError> {
        decode::<bool>(
            &self
                .proxy
                .call_raw_blocking("join", enc(&None::<Duration>)?)?,
        )
        .map(drop)
    }

    /// [`join`](Self::join) for at most `timeout`; false when items were
    /// still unfinished then.
    ///
    /// # Errors
    ///
    /// As [`put`](Self::put).
    pub async fn join_timeout(&self, timeout: Duration) -> Result<bool, ManagerError> {
        decode(
            &self
                .proxy
                .call_raw("join", enc(&Some(timeout))?, None)
                .await?,
        )
    }

    /// [`join_timeout`](Self::join_timeout), blocking the thread.
    ///
    /// # Errors
    ///
    /// As [`put`](Self::put).
    pub fn join_timeout_blocking(&self, timeout: Duration) -> Result<bool, ManagerError> {
        decode(&self.proxy.call_raw_blocking("join", enc(&Some(timeout))?)?)
    }
}

impl Manager {
    /// Creates a queue on the server holding at most `maxsize` items (0: no
    /// bound): Python's `manager.Queue(maxsize)`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::ServerGone`] when the server is gone.
    pub async fn queue<T>(&self, maxsize: usize) -> Result<QueueProxy<T>, ManagerError> {
        QueueProxy::from_proxy(self.create(QUEUE, &(maxsize as u64)).await?)
    }

    /// [`queue`](Manager::queue), blocking.
    ///
    /// # Errors
    ///
    /// As [`queue`](Manager::queue).
    pub fn queue_blocking<T>(&self, maxsize: usize) -> Result<QueueProxy<T>, ManagerError> {
        QueueProxy::from_proxy(self.create_blocking(QUEUE, &(maxsize as u64))?)
    }

    /// Creates a joinable queue on the server: Python's
    /// `manager.JoinableQueue(maxsize)`.
    ///
    /// # Errors
    ///
    /// As [`queue`](Manager::queue).
    pub async fn joinable_queue<T>(
        &self,
        maxsize: usize,
    ) -> Result<JoinableQueueProxy<T>, ManagerError> {
        JoinableQueueProxy::from_proxy(self.create(JOINABLE, &(maxsize as u64)).await?)
    }

    /// [`joinable_queue`](Manager::joinable_queue), blocking.
    ///
    /// # Errors
    ///
    /// As [`queue`](Manager::queue).
    pub fn joinable_queue_blocking<T>(
        &self,
        maxsize: usize,
    ) -> Result<JoinableQueueProxy<T>, ManagerError> {
        JoinableQueueProxy::from_proxy(self.create_blocking(JOINABLE, &(maxsize as u64))?)
    }
}
