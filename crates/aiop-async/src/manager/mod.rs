//! Managers: objects held by a server process and used through proxies,
//! from any process on this machine or, over TCP, on another one.
//!
//! A [`Manager`] starts a server ([`Manager::start`], or
//! [`Builder::serve_here`] on threads of this process) or connects to a
//! running one by address and authkey ([`Manager::connect`]). Its methods
//! create served objects and return typed proxies; every proxy method is
//! async, with a `_blocking` twin for plain threads. A proxy serializes, so
//! it can be a spawned process's argument, travel through a
//! [`Connection`](crate::connection::Connection), or be sent to an
//! unrelated process that knows the authkey.
//!
//! ```no_run
//! use aiop_async::manager::{DictProxy, Manager, QueueProxy};
//! use aiop_async::process::Process;
//!
//! // Counts the words it takes from `jobs` until it takes `None`.
//! fn worker((counts, jobs): (DictProxy<String, u64>, QueueProxy<Option<String>>)) {
//!     while let Some(word) = jobs.get_blocking().unwrap() {
//!         let n = counts.get_blocking(&word).unwrap().unwrap_or(0);
//!         counts.insert_blocking(&word, &(n + 1)).unwrap();
//!     }
//! }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     aiop_async::process::init();
//!     let manager = Manager::start()?;
//!     let counts = manager.dict_blocking::<String, u64>()?;
//!     let jobs = manager.queue_blocking::<Option<String>>(0)?;
//!     let mut child = Process::spawn(worker, (counts.clone(), jobs.clone()))?;
//!     for word in ["a", "b", "a"] {
//!         jobs.put_blocking(&Some(word.to_string()))?;
//!     }
//!     jobs.put_blocking(&None)?;
//!     child.join_blocking()?;
//!     assert_eq!(counts.get_blocking(&"a".to_string())?, Some(2));
//!     manager.shutdown_blocking()?;
//!     Ok(())
//! }
//! ```
//!
//! # Relationship with Python multiprocessing
//!
//! | Python | aiop |
//! |---|---|
//! | `Manager()` / `SyncManager().start()` | [`Manager::start`] |
//! | `BaseManager(address, authkey).connect()` | [`Manager::connect`] |
//! | `manager.get_server().serve_forever()` | [`Server::bind`] + [`Server::serve_forever`] |
//! | `manager.address`, `manager.shutdown()` | [`Manager::address`], [`Manager::shutdown`] |
//! | `manager.dict()`, `list()`, `Namespace()` | [`Manager::dict`], [`Manager::list`], [`Manager::namespace`] |
//! | `manager.Queue(maxsize)`, `JoinableQueue(maxsize)` | [`Manager::queue`], [`Manager::joinable_queue`] |
//! | `manager.Lock()`, `RLock()`, `Semaphore(n)`, `BoundedSemaphore(n)` | [`Manager::lock`], [`Manager::rlock`], [`Manager::semaphore`], [`Manager::bounded_semaphore`] |
//! | `manager.Condition()`, `Event()`, `Barrier(n)` | [`Manager::condition`], [`Manager::event`], [`Manager::barrier`] |
//! | `manager.Value(typecode, v)`, `Array(typecode, seq)` | [`Manager::value`], [`Manager::array`] |
//! | `BaseManager.register(typeid, callable)` | [`Registry::register`] (with [`Builder::types`] for a server process) and [`Manager::create`] |
//! | `BaseProxy._callmethod(name, args)` | [`Proxy::call`] |
//! | `RemoteError` | [`ManagerError::Remote`] holding a [`RemoteError`] |
//!
//! Differences: values are serde types, not pickles, and a dict's keys
//! compare by their encoding; proxies have typed methods instead of
//! Python's operators; each process keeps one connection per manager and
//! pipelines its calls on it (Python opens one per thread); a client whose
//! process dies gives back the locks it held; cancelling an async call
//! that waits (a queue's `get`, a lock's `acquire`) loses nothing, even as
//! a process's last act (an exiting process waits, up to 2 s, for the
//! server to answer its cancelled calls so that their undos go out).
//!
//! # Implementation
//!
//! The server ([`Server`]) runs one thread per client connection and one
//! per call that has to wait; see its module for the protocol, references
//! and interruption. A client ([`Proxy`] calls) has no thread: callers read
//! the replies themselves, see `client.rs`.

mod client;
mod error;
mod protocol;
mod proxy;
mod served;
mod server;
mod types;

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use aiop_core::connection::{self as core, Address};
use aiop_core::process::StartMethod;

pub use error::{ManagerError, RemoteError};
pub use proxy::{Proxy, ProxyType};
pub use served::{Builtins, Call, CallError, ClientId, Monitor, Registry, Served, Types};
pub use server::Server;
pub use types::*;

use client::Client;
use protocol::Request;
use proxy::{Handle, decode_result};

/// A connection to a manager's server, and the server itself when this
/// process started it: Python's `SyncManager`.
///
/// Dropping a `Manager` that started its server shuts the server down (as
/// leaving Python's `with Manager() as m:` does); proxies still held then
/// fail with [`ManagerError::ServerGone`]. Dropping one made by
/// [`connect`](Manager::connect) only closes this process's use of it.
pub struct Manager {
    client: Arc<Client>,
    owned: Option<Owned>,
}

/// The server's process, as this process started it.
type ServerProcess = crate::process::Process<Result<(), String>>;

enum Owned {
    Process(Mutex<Option<Box<ServerProcess>>>),
    Local(Server),
}

impl fmt::Debug for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manager")
            .field("address", self.client.address())
            .field(
                "server",
                &match &self.owned {
                    Some(Owned::Process(_)) => "child process",
                    Some(Owned::Local(_)) => "this process",
                    None => "connected",
                },
            )
            .finish()
    }
}

/// What a server process is started with.
#[derive(Serialize, Deserialize)]
struct ServeArgs {
    address: String,
    authkey: Option<Vec<u8>>,
    /// Where the server reports its address (or why it could not bind).
    report: core::Connection,
    /// The starting process's `aiop::sync::set_spinning` setting, if made.
    spinning: Option<bool>,
}

/// The body of a manager's server process.
fn serve_main<T: Types>(args: ServeArgs) -> Result<(), String> {
    if let Some(on) = args.spinning {
        aiop_core::sync::set_spinning(on);
    }
    let mut registry = Registry::with_builtins();
    T::register(&mut registry);
    let address: Address = args.address.parse().map_err(|e| format!("{e}"))?;
    match Server::bind(&address, args.authkey.as_deref(), registry) {
        Ok(server) => {
            let _ = args
                .report
                .send(&Ok::<String, String>(server.address().to_string()));
            drop(args.report);
            server.serve_forever();
            Ok(())
        }
        Err(e) => {
            let why = format!("binding {address}: {e}");
            let _ = args.report.send(&Err::<String, String>(why.clone()));
            Err(why)
        }
    }
}

/// `n` random bytes (an authkey, a transit token).
pub(crate) fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    core::fill_random(&mut b).unwrap_or_else(|e| panic!("getrandom failed: {e}"));
    b
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How to start a manager's server: address, authkey, custom types, start
/// method.
pub struct Builder {
    address: Option<Address>,
    authkey: Option<Vec<u8>>,
    entry: fn(ServeArgs) -> Result<(), String>,
    register: fn(&mut Registry),
    start_method: Option<StartMethod>,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("address", &self.address)
            .field("authkey", &self.authkey.as_ref().map(|_| "<set>"))
            .field("start_method", &self.start_method)
            .finish_non_exhaustive()
    }
}

impl Default for Builder {
    fn default() -> Builder {
        Builder::new()
    }
}

impl Builder {
    /// The defaults: a fresh name in the abstract Unix namespace, a random
    /// 32-byte authkey, the built-in types, the default start method.
    pub fn new() -> Builder {
        Builder {
            address: None,
            authkey: None,
            entry: serve_main::<Builtins>,
            register: Builtins::register,
            start_method: None,
        }
    }

    /// Where the server listens: a Unix socket path, an abstract name, or a
    /// TCP address (port 0 picks a free port; see [`Manager::address`]).
    pub fn address(mut self, address: Address) -> Builder {
        self.address = Some(address);
        self
    }

    /// The key clients must prove they hold (instead of a random one).
    pub fn authkey(mut self, key: impl Into<Vec<u8>>) -> Builder {
        self.authkey = Some(key.into());
        self
    }

    /// Serves the custom types of `T` too. `T::register` runs in the server,
    /// which for [`start`](Builder::start) is another process started on a
    /// function of this program.
    pub fn types<T: Types>(mut self) -> Builder {
        self.entry = serve_main::<T>;
        self.register = T::register;
        self
    }

    /// The start method of the server process (default: the process-wide
    /// one, see [`set_start_method`](crate::process::set_start_method)).
    pub fn start_method(mut self, method: StartMethod) -> Builder {
        self.start_method = Some(method);
        self
    }

    fn address_or_default(&self) -> Address {
        self.address.clone().unwrap_or_else(|| {
            let name = format!(
                "aiop-manager-{}-{}",
                std::process::id(),
                hex(&random_bytes(8))
            );
            Address::Abstract(name.into_bytes())
        })
    }

    fn authkey_or_default(&self) -> Vec<u8> {
        self.authkey.clone().unwrap_or_else(|| random_bytes(32))
    }

    /// Starts the server in a new (daemon) process and connects to it.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Io`] when the process does not start, the server
    /// cannot bind its address (the server's message says why) or the
    /// connection fails.
    pub fn start(self) -> Result<Manager, ManagerError> {
        let address = self.address_or_default();
        let authkey = self.authkey_or_default();
        let (ours, theirs) = core::pipe(true)?;
        let mut builder = aiop_core::process::Process::builder()
            .name("aiop-manager")
            .daemon(true);
        if let Some(m) = self.start_method {
            builder = builder.start_method(m);
        }
        let process = builder
            .spawn(
                self.entry,
                ServeArgs {
                    address: address.to_string(),
                    authkey: Some(authkey.clone()),
                    report: theirs,
                    spinning: aiop_core::sync::spinning_setting(),
                },
            )
            .map_err(|e| {
                ManagerError::Io(std::io::Error::other(format!(
                    "starting the manager's process: {e}"
                )))
            })?;
        let mut process = crate::process::Process::from(process);
        let reported = ours.recv_timeout::<Result<String, String>>(Duration::from_secs(60));
        let bound = match reported {
            Ok(Ok(a)) => a,
            Ok(Err(why)) => {
                let _ = process.join_blocking();
                return Err(ManagerError::Io(std::io::Error::other(format!(
                    "the manager could not start: {why}"
                ))));
            }
            Err(e) => {
                let _ = process.kill();
                let _ = process.join_blocking();
                return Err(ManagerError::Io(std::io::Error::other(format!(
                    "the manager's process did not report its address: {e}"
                ))));
            }
        };
        let address: Address = bound
            .parse()
            .map_err(|e| ManagerError::Io(std::io::Error::other(format!("{e}"))))?;
        let client = match Client::connect_blocking(&address, Some(&authkey)) {
            Ok(c) => c,
            Err(e) => {
                let _ = process.kill();
                let _ = process.join_blocking();
                return Err(e);
            }
        };
        Ok(Manager {
            client,
            owned: Some(Owned::Process(Mutex::new(Some(Box::new(process))))),
        })
    }

    /// Serves from threads of this process (no server process) and connects
    /// to it: for a program that is itself the manager.
    ///
    /// # Errors
    ///
    /// As [`Server::bind`], or the connection's.
    pub fn serve_here(self) -> Result<Manager, ManagerError> {
        let authkey = self.authkey_or_default();
        let mut registry = Registry::with_builtins();
        (self.register)(&mut registry);
        let server = Server::bind(&self.address_or_default(), Some(&authkey), registry)?;
        let client = Client::connect_blocking(server.address(), Some(&authkey))?;
        Ok(Manager {
            client,
            owned: Some(Owned::Local(server)),
        })
    }

    /// A [`Server`] in this process, listening, for the caller to run with
    /// [`Server::serve_forever`]: Python's `get_server()`. Without an
    /// [`authkey`](Builder::authkey), clients are not authenticated.
    ///
    /// # Errors
    ///
    /// As [`Server::bind`].
    pub fn server(&self) -> std::io::Result<Server> {
        let mut registry = Registry::with_builtins();
        (self.register)(&mut registry);
        Server::bind(
            &self.address_or_default(),
            self.authkey.as_deref(),
            registry,
        )
    }
}

impl Manager {
    /// Starts a manager with the defaults ([`Builder::new`]): a server
    /// process of the built-in types at a fresh abstract address, with a
    /// random authkey.
    ///
    /// # Errors
    ///
    /// As [`Builder::start`].
    pub fn start() -> Result<Manager, ManagerError> {
        Builder::new().start()
    }

    /// A [`Builder`] for address, authkey, custom types and start method.
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// Connects to a running manager at `address` with `authkey`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Io`]: refused, unreachable, or an
    /// [`AuthenticationError`](crate::connection::AuthenticationError) when
    /// the keys differ.
    pub async fn connect(
        address: &Address,
        authkey: Option<&[u8]>,
    ) -> Result<Manager, ManagerError> {
        Ok(Manager {
            client: Client::connect(address, authkey).await?,
            owned: None,
        })
    }

    /// [`connect`](Manager::connect), blocking the thread.
    ///
    /// # Errors
    ///
    /// As [`connect`](Manager::connect).
    pub fn connect_blocking(
        address: &Address,
        authkey: Option<&[u8]>,
    ) -> Result<Manager, ManagerError> {
        Ok(Manager {
            client: Client::connect_blocking(address, authkey)?,
            owned: None,
        })
    }

    /// The server's address (for TCP, with the port it bound).
    pub fn address(&self) -> &Address {
        self.client.address()
    }

    /// The authkey clients prove they hold (`None`: no authentication).
    pub fn authkey(&self) -> Option<&[u8]> {
        self.client.authkey()
    }

    /// Whether this process started the server (and shuts it down when the
    /// `Manager` is dropped).
    pub fn owns_server(&self) -> bool {
        self.owned.is_some()
    }

    fn request_blocking(&self, make: impl FnOnce(u64) -> Request) -> Result<Vec<u8>, ManagerError> {
        let id = self.client.next_id();
        self.client.call_blocking(id, &make(id))
    }

    async fn request(&self, make: impl FnOnce(u64) -> Request) -> Result<Vec<u8>, ManagerError> {
        let id = self.client.next_id();
        self.client.call(id, &make(id), None).await
    }

    fn proxy_from(&self, kind: &str, reply: &[u8]) -> Result<Proxy, ManagerError> {
        let object: u64 = decode_result(reply)?;
        Ok(Proxy::from_handle(Handle {
            client: self.client.clone(),
            object,
            kind: kind.to_string(),
        }))
    }

    /// Creates a served object of the registered type `kind` from `args`
    /// and returns a proxy to it: Python's `manager.<typeid>(*args)`.
    ///
    /// # Errors
    ///
    /// [`RemoteError::NO_SUCH_TYPE`] when `kind` is not registered;
    /// [`RemoteError::BAD_ARGUMENTS`] when `args` is not what it takes; the
    /// type's own errors; [`ManagerError::ServerGone`].
    pub async fn create<A: Serialize + ?Sized>(
        &self,
        kind: &str,
        args: &A,
    ) -> Result<Proxy, ManagerError> {
        let args = protocol::encode(args).map_err(|e| ManagerError::Encode(e.to_string()))?;
        let reply = self
            .request(|id| Request::Create {
                id,
                kind: kind.to_string(),
                args,
            })
            .await?;
        self.proxy_from(kind, &reply)
    }

    /// [`create`](Manager::create), blocking the thread.
    ///
    /// # Errors
    ///
    /// As [`create`](Manager::create).
    pub fn create_blocking<A: Serialize + ?Sized>(
        &self,
        kind: &str,
        args: &A,
    ) -> Result<Proxy, ManagerError> {
        let args = protocol::encode(args).map_err(|e| ManagerError::Encode(e.to_string()))?;
        let reply = self.request_blocking(|id| Request::Create {
            id,
            kind: kind.to_string(),
            args,
        })?;
        self.proxy_from(kind, &reply)
    }

    /// Binds `name` on the server to `proxy`'s object, which then lives at
    /// least as long as the name; a name bound before is rebound. Another
    /// process that [`connect`](Manager::connect)s by address finds it with
    /// [`lookup`](Manager::lookup): the Rust form of registering a
    /// `get_queue` callable in Python.
    ///
    /// Returns whether the name was bound before.
    ///
    /// # Errors
    ///
    /// [`RemoteError::NO_SUCH_OBJECT`] when the object is gone;
    /// [`ManagerError::ServerGone`].
    pub async fn publish<P: ProxyType>(&self, name: &str, proxy: &P) -> Result<bool, ManagerError> {
        let object = Some(proxy.as_proxy().id());
        let name = name.to_string();
        decode_result(
            &self
                .request(|id| Request::Publish { id, name, object })
                .await?,
        )
    }

    /// [`publish`](Manager::publish), blocking.
    ///
    /// # Errors
    ///
    /// As [`publish`](Manager::publish).
    pub fn publish_blocking<P: ProxyType>(
        &self,
        name: &str,
        proxy: &P,
    ) -> Result<bool, ManagerError> {
        let object = Some(proxy.as_proxy().id());
        let name = name.to_string();
        decode_result(&self.request_blocking(|id| Request::Publish { id, name, object })?)
    }

    /// Removes the name `name` (the object lives on while proxies refer to
    /// it). Returns whether it was bound.
    ///
    /// # Errors
    ///
    /// [`ManagerError::ServerGone`].
    pub fn unpublish_blocking(&self, name: &str) -> Result<bool, ManagerError> {
        let name = name.to_string();
        decode_result(&self.request_blocking(|id| Request::Publish {
            id,
            name,
            object: None,
        })?)
    }

    fn found<P: ProxyType>(&self, reply: &[u8]) -> Result<Option<P>, ManagerError> {
        let Some((object, kind)) = decode_result::<Option<(u64, String)>>(reply)? else {
            return Ok(None);
        };
        let proxy = Proxy::from_handle(Handle {
            client: self.client.clone(),
            object,
            kind,
        });
        P::from_proxy(proxy).map(Some)
    }

    /// The object published as `name`, as a `P` (`None`: no such name).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Decode`] when the object is not of `P`'s type (use
    /// [`Proxy`] to take any); [`ManagerError::ServerGone`].
    pub async fn lookup<P: ProxyType>(&self, name: &str) -> Result<Option<P>, ManagerError> {
        let name = name.to_string();
        let reply = self.request(|id| Request::Lookup { id, name }).await?;
        self.found(&reply)
    }

    /// [`lookup`](Manager::lookup), blocking.
    ///
    /// # Errors
    ///
    /// As [`lookup`](Manager::lookup).
    pub fn lookup_blocking<P: ProxyType>(&self, name: &str) -> Result<Option<P>, ManagerError> {
        let name = name.to_string();
        let reply = self.request_blocking(|id| Request::Lookup { id, name })?;
        self.found(&reply)
    }

    /// How many objects the server holds and how many clients are connected
    /// (Python's `_number_of_objects`, for tests and diagnostics).
    ///
    /// # Errors
    ///
    /// [`ManagerError::ServerGone`].
    pub fn stats_blocking(&self) -> Result<(u64, u64), ManagerError> {
        let reply = self.request_blocking(|id| Request::Stats { id })?;
        decode_result(&reply)
    }

    /// Stops the server (Python's `shutdown`): every waiting call on it ends
    /// with an error, every connection to it closes, and, if this process
    /// started it, its process is waited for. Other processes' proxies fail
    /// with [`ManagerError::ServerGone`] from then on.
    ///
    /// # Errors
    ///
    /// [`ManagerError::ServerGone`] when it had already stopped.
    pub async fn shutdown(&self) -> Result<(), ManagerError> {
        let sent = self.request(|id| Request::Shutdown { id }).await.map(drop);
        match &self.owned {
            Some(Owned::Process(p)) => {
                let process = p.lock().unwrap_or_else(|e| e.into_inner()).take();
                if let Some(mut process) = process {
                    let _ = process.join().await;
                }
            }
            Some(Owned::Local(server)) => server.shutdown(),
            None => {}
        }
        sent
    }

    /// [`shutdown`](Manager::shutdown), blocking the thread.
    ///
    /// # Errors
    ///
    /// As [`shutdown`](Manager::shutdown).
    pub fn shutdown_blocking(&self) -> Result<(), ManagerError> {
        let sent = self
            .request_blocking(|id| Request::Shutdown { id })
            .map(drop);
        self.stop_owned();
        sent
    }

    fn stop_owned(&self) {
        match &self.owned {
            Some(Owned::Process(p)) => {
                let process = p.lock().unwrap_or_else(|e| e.into_inner()).take();
                if let Some(mut process) = process {
                    if process
                        .join_timeout_blocking(Duration::from_secs(10))
                        .is_err()
                    {
                        let _ = process.kill();
                        let _ = process.join_blocking();
                    }
                }
            }
            Some(Owned::Local(server)) => server.shutdown(),
            None => {}
        }
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        if self.owned.is_some() {
            if !self.client.is_gone() {
                self.client.post(&Request::Shutdown { id: 0 });
            }
            self.stop_owned();
        }
    }
}
