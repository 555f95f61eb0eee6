//! What the server holds: the [`Served`] trait, a method [`Call`], the
//! [`Monitor`] a waiting method waits on, and the [`Registry`] of types.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::RemoteError;
use super::protocol;

/// Which client connection a call came from. Each connection to the server
/// (one per process and manager address, usually) has its own id, never
/// reused while the server runs.
pub type ClientId = u64;

/// An object the manager's server holds and proxies call: the Rust form of
/// the classes given to Python's `BaseManager.register`.
///
/// [`call`](Served::call) gets the method's name and its serde arguments
/// and returns the encoded result ([`Call::reply`]). A method that may have
/// to wait (a queue's `get`, a lock's `acquire`) waits through
/// [`Call::wait_until`] on a [`Monitor`], so that the server can interrupt
/// it when the caller cancels, the caller's process dies or the server
/// shuts down. The server first calls every method on the connection's own
/// thread, where waiting is not allowed ([`Call::can_block`] is false); a
/// method that would wait returns [`Call::must_block`], and the server calls
/// it again on a thread of its own. So a call that returns at once costs no
/// thread, and one that waits never holds up the other calls of its
/// connection or of any other client.
///
/// # Examples
///
/// ```
/// use aiop_async::manager::{Call, CallError, RemoteError, Served};
/// use std::sync::Mutex;
///
/// #[derive(Default)]
/// struct Counter(Mutex<u64>);
///
/// impl Served for Counter {
///     fn call(&self, call: &Call<'_>) -> Result<Vec<u8>, CallError> {
///         let mut n = self.0.lock().unwrap();
///         match call.method() {
///             "add" => {
///                 *n += call.args::<u64>()?;
///                 call.reply(&*n)
///             }
///             "get" => call.reply(&*n),
///             _ => Err(call.no_such_method()),
///         }
///     }
/// }
/// ```
pub trait Served: Send + Sync + 'static {
    /// Runs one method call and returns its encoded result.
    ///
    /// # Errors
    ///
    /// A [`RemoteError`] (converted with `?` or `.into()`), which the caller
    /// receives as [`ManagerError::Remote`](super::ManagerError::Remote);
    /// [`Call::must_block`] to be called again where waiting is allowed; the
    /// errors of [`Call::wait_until`] as they are.
    fn call(&self, call: &Call<'_>) -> Result<Vec<u8>, CallError>;

    /// The connection of `client` has ended (its process exited or died):
    /// give back what it held. Called for objects on which a call of that
    /// client used [`Call::hold`]. The default does nothing.
    fn client_gone(&self, client: ClientId) {
        let _ = client;
    }
}

/// Why a [`Served::call`] did not return a result.
pub struct CallError(pub(crate) Fault);

pub(crate) enum Fault {
    Remote(RemoteError),
    MustBlock,
}

impl From<RemoteError> for CallError {
    fn from(e: RemoteError) -> CallError {
        CallError(Fault::Remote(e))
    }
}

impl fmt::Debug for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Fault::Remote(e) => f.debug_tuple("CallError").field(e).finish(),
            Fault::MustBlock => f.write_str("CallError(MustBlock)"),
        }
    }
}

/// Why a waiting call was interrupted.
const LIVE: u8 = 0;
const CANCELLED: u8 = 1;
const SHUTDOWN: u8 = 2;
const CLIENT_GONE: u8 = 3;

/// Wakes a waiter of a [`Monitor`]: locks its mutex and notifies its
/// condition variable, so a waiter between its check and its sleep cannot
/// miss the wake-up.
trait Wake: Send + Sync {
    fn wake(&self);
}

/// The interruption of one waiting call.
pub(crate) struct CancelToken {
    state: AtomicU8,
    waiting: Mutex<Vec<(u64, Arc<dyn Wake>)>>,
}

static NEXT_WAIT: AtomicU64 = AtomicU64::new(1);

impl CancelToken {
    pub(crate) fn new() -> CancelToken {
        CancelToken {
            state: AtomicU8::new(LIVE),
            waiting: Mutex::new(Vec::new()),
        }
    }

    fn cancel_with(&self, why: u8) {
        if self
            .state
            .compare_exchange(LIVE, why, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return;
        }
        // Wake outside the list's lock: a waiter holds its monitor's lock
        // when it registers, and waking takes that lock.
        let waiting: Vec<Arc<dyn Wake>> =
            lock(&self.waiting).iter().map(|(_, w)| w.clone()).collect();
        for w in waiting {
            w.wake();
        }
    }

    /// The caller cancelled the call.
    pub(crate) fn cancel(&self) {
        self.cancel_with(CANCELLED);
    }

    /// The server is shutting down.
    pub(crate) fn shut_down(&self) {
        self.cancel_with(SHUTDOWN);
    }

    /// The caller's connection ended.
    pub(crate) fn client_gone(&self) {
        self.cancel_with(CLIENT_GONE);
    }

    fn interrupted(&self) -> Option<RemoteError> {
        match self.state.load(Ordering::SeqCst) {
            LIVE => None,
            CANCELLED => Some(RemoteError::new(
                RemoteError::CANCELLED,
                "the caller cancelled the call",
            )),
            SHUTDOWN => Some(RemoteError::new(
                RemoteError::SHUTTING_DOWN,
                "the manager is shutting down",
            )),
            _ => Some(RemoteError::new(
                RemoteError::CANCELLED,
                "the caller's connection ended",
            )),
        }
    }
}

/// Locks `m`, taking the data of a poisoned mutex as it is: a served
/// object's state stays consistent between statements, and a panicking
/// method is already reported to its caller.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A served object's state and the condition its waiting calls wait on: a
/// mutex and a condition variable that the server can wake when it
/// interrupts a call ([`Call::wait_until`]).
pub struct Monitor<T> {
    inner: Arc<MonitorInner<T>>,
}

struct MonitorInner<T> {
    state: Mutex<T>,
    changed: Condvar,
}

impl<T: Send + 'static> Wake for MonitorInner<T> {
    fn wake(&self) {
        drop(lock(&self.state));
        self.changed.notify_all();
    }
}

impl<T: Send + 'static> Monitor<T> {
    /// A monitor over `state`.
    pub fn new(state: T) -> Monitor<T> {
        Monitor {
            inner: Arc::new(MonitorInner {
                state: Mutex::new(state),
                changed: Condvar::new(),
            }),
        }
    }

    /// Locks the state (a poisoned lock is taken as it is).
    pub fn lock(&self) -> MutexGuard<'_, T> {
        lock(&self.inner.state)
    }

    /// Wakes every call waiting in [`Call::wait_until`] on this monitor, to
    /// check its condition again. Call it after changing the state.
    pub fn notify_all(&self) {
        self.inner.changed.notify_all();
    }
}

impl<T> fmt::Debug for Monitor<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Monitor").finish_non_exhaustive()
    }
}

/// One method call on a served object.
pub struct Call<'a> {
    pub(crate) method: &'a str,
    pub(crate) args: &'a [u8],
    pub(crate) client: ClientId,
    pub(crate) owner: u64,
    pub(crate) received: Instant,
    pub(crate) token: Option<&'a CancelToken>,
    pub(crate) hold: &'a (dyn Fn() + 'a),
}

impl fmt::Debug for Call<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call")
            .field("method", &self.method)
            .field("client", &self.client)
            .field("owner", &self.owner)
            .field("can_block", &self.can_block())
            .finish_non_exhaustive()
    }
}

impl Call<'_> {
    /// The method's name.
    pub fn method(&self) -> &str {
        self.method
    }

    /// Decodes the arguments as `A`.
    ///
    /// # Errors
    ///
    /// [`RemoteError::BAD_ARGUMENTS`] when they do not decode as `A`.
    pub fn args<A: DeserializeOwned>(&self) -> Result<A, RemoteError> {
        protocol::decode(self.args).map_err(|e| self.bad_args(e))
    }

    /// Decodes the arguments' first value as `A`, and returns the bytes
    /// after it.
    pub(crate) fn leading_args<A: DeserializeOwned>(&self) -> Result<(A, &[u8]), RemoteError> {
        postcard::take_from_bytes::<A>(self.args).map_err(|e| self.bad_args(e))
    }

    fn bad_args(&self, e: impl std::fmt::Display) -> RemoteError {
        RemoteError::new(
            RemoteError::BAD_ARGUMENTS,
            format!("the arguments of {:?} did not decode: {e}", self.method),
        )
    }

    /// The arguments as they were sent (postcard bytes).
    pub fn raw_args(&self) -> &[u8] {
        self.args
    }

    /// The connection the call came from.
    pub fn client(&self) -> ClientId {
        self.client
    }

    /// Who makes the call, for objects that track an owner (a re-entrant
    /// lock): the client connection and the caller within it (a thread for
    /// blocking calls, a proxy value for async ones).
    pub fn owner(&self) -> (ClientId, u64) {
        (self.client, self.owner)
    }

    /// The deadline `timeout` after the server received the call (`None`:
    /// no timeout). Relative timeouts travel, not instants, since client and
    /// server clocks may differ.
    pub fn deadline(&self, timeout: Option<Duration>) -> Option<Instant> {
        timeout.and_then(|t| self.received.checked_add(t))
    }

    /// Whether this call may wait. False on the connection's own thread:
    /// there, return [`must_block`](Call::must_block) instead of waiting.
    pub fn can_block(&self) -> bool {
        self.token.is_some()
    }

    /// The answer of a method that must wait and cannot here: the server
    /// calls it again on a thread where [`can_block`](Call::can_block) is
    /// true. The method must have changed nothing before returning it.
    pub fn must_block(&self) -> CallError {
        CallError(Fault::MustBlock)
    }

    /// Encodes `value` as the method's result.
    ///
    /// # Errors
    ///
    /// A [`RemoteError`] when `value` does not serialize.
    pub fn reply<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CallError> {
        protocol::encode(value).map_err(|e| {
            RemoteError::new(
                RemoteError::INVALID_VALUE,
                format!("the result of {:?} did not serialize: {e}", self.method),
            )
            .into()
        })
    }

    /// The error for a method this type does not have.
    pub fn no_such_method(&self) -> CallError {
        RemoteError::new(
            RemoteError::NO_SUCH_METHOD,
            format!("no method {:?} on this object", self.method),
        )
        .into()
    }

    /// Records that the caller's client now holds something of this object
    /// (a lock): when the client's connection ends, the server calls
    /// [`Served::client_gone`] on the object.
    pub fn hold(&self) {
        (self.hold)();
    }

    /// Waits on `monitor` until `ready` holds for its state or `deadline`
    /// passes. Returns the guard and whether `ready` held (false: timed
    /// out).
    ///
    /// # Errors
    ///
    /// [`must_block`](Call::must_block) when this call cannot wait (and
    /// `ready` does not hold yet); [`RemoteError::CANCELLED`] or
    /// [`RemoteError::SHUTTING_DOWN`] when the server interrupts the call.
    pub fn wait_until<'m, T: Send + 'static>(
        &self,
        monitor: &'m Monitor<T>,
        mut guard: MutexGuard<'m, T>,
        deadline: Option<Instant>,
        mut ready: impl FnMut(&mut T) -> bool,
    ) -> Result<(MutexGuard<'m, T>, bool), CallError> {
        // Interruption first, here too: the call may be run on its own
        // thread after its `Cancel` was handled (and after what it waits for
        // was released), and must then take nothing.
        if let Some(e) = self.token.and_then(CancelToken::interrupted) {
            return Err(e.into());
        }
        if ready(&mut guard) {
            return Ok((guard, true));
        }
        if deadline.is_some_and(|d| d <= Instant::now()) {
            return Ok((guard, false));
        }
        let Some(token) = self.token else {
            return Err(self.must_block());
        };
        let key = NEXT_WAIT.fetch_add(1, Ordering::Relaxed);
        lock(&token.waiting).push((key, monitor.inner.clone() as Arc<dyn Wake>));
        let outcome = loop {
            // Interruption first: a cancelled call takes nothing released
            // after its `Cancel` was handled.
            if let Some(e) = token.interrupted() {
                break Err(e);
            }
            if ready(&mut guard) {
                break Ok(true);
            }
            match deadline {
                None => {
                    guard = monitor
                        .inner
                        .changed
                        .wait(guard)
                        .unwrap_or_else(|e| e.into_inner());
                }
                Some(d) => {
                    let now = Instant::now();
                    if d <= now {
                        break Ok(false);
                    }
                    guard = monitor
                        .inner
                        .changed
                        .wait_timeout(guard, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        };
        lock(&token.waiting).retain(|(k, _)| *k != key);
        match outcome {
            Ok(ready) => Ok((guard, ready)),
            Err(e) => Err(e.into()),
        }
    }
}

type Factory = Box<dyn Fn(&[u8]) -> Result<Arc<dyn Served>, RemoteError> + Send + Sync>;

/// The types a manager's server can create, by name: Python's
/// `BaseManager.register(typeid, callable)`.
///
/// The built-in types are always there (under names starting with
/// `aiop.`); [`register`](Registry::register) adds more, and a proxy for
/// one is made with [`Manager::create`](super::Manager::create).
pub struct Registry {
    factories: HashMap<String, Factory>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kinds: Vec<&String> = self.factories.keys().collect();
        kinds.sort();
        f.debug_struct("Registry").field("types", &kinds).finish()
    }
}

impl Registry {
    /// The registry of the built-in types.
    pub(crate) fn with_builtins() -> Registry {
        let mut r = Registry {
            factories: HashMap::new(),
        };
        super::types::register_builtins(&mut r);
        r
    }

    /// Registers `kind`: a [`Manager::create`](super::Manager::create) of
    /// that name decodes its arguments as `A` and serves what `make` returns.
    /// A later registration of the same name replaces the earlier one.
    pub fn register<A, T, F>(&mut self, kind: &str, make: F) -> &mut Registry
    where
        A: DeserializeOwned,
        T: Served,
        F: Fn(A) -> Result<T, RemoteError> + Send + Sync + 'static,
    {
        let name = kind.to_string();
        self.factories.insert(
            kind.to_string(),
            Box::new(move |bytes| {
                let args: A = protocol::decode(bytes).map_err(|e| {
                    RemoteError::new(
                        RemoteError::BAD_ARGUMENTS,
                        format!("the arguments for a {name:?} did not decode: {e}"),
                    )
                })?;
                Ok(Arc::new(make(args)?) as Arc<dyn Served>)
            }),
        );
        self
    }

    /// Whether `kind` is registered.
    pub fn contains(&self, kind: &str) -> bool {
        self.factories.contains_key(kind)
    }

    pub(crate) fn create(&self, kind: &str, args: &[u8]) -> Result<Arc<dyn Served>, RemoteError> {
        let Some(make) = self.factories.get(kind) else {
            return Err(RemoteError::new(
                RemoteError::NO_SUCH_TYPE,
                format!("no type {kind:?} is registered with this manager"),
            ));
        };
        make(args)
    }
}

/// The custom types of a manager whose server runs in a process of its own:
/// the server process calls [`register`](Types::register) before it serves.
///
/// It is a type, not a closure, because the server process is started on a
/// function of this program (see [`Builder::types`](super::Builder::types)).
pub trait Types: 'static {
    /// Adds this program's types to the server's registry.
    fn register(registry: &mut Registry);
}

/// No custom types: the built-in ones only.
#[derive(Debug, Clone, Copy, Default)]
pub struct Builtins;

impl Types for Builtins {
    fn register(_: &mut Registry) {}
}
