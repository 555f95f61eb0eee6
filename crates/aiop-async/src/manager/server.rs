//! The manager's server: the objects, their reference counts, and one thread
//! per client connection.
//!
//! # Threads
//!
//! * An accept thread waits for clients (and for the stop pipe) and starts
//!   one thread per client, which runs the handshake under the listener's
//!   deadline (so a slow client holds up nobody) and then reads the
//!   client's requests in order.
//! * A request is handled on its connection's thread when it can be: a
//!   reference count, a creation, a method that returns at once. A method
//!   that must wait ([`Call::must_block`]) is called again on a thread of its
//!   own, registered under its request id so that a `Cancel`, the end of the
//!   connection or a shutdown can interrupt it. So requests are pipelined:
//!   one waiting call never holds up the next request of the same
//!   connection, nor any other client.
//! * Replies are written by whichever thread finished the call; the
//!   connection's send lock keeps frames whole.
//!
//! # References
//!
//! Each connection counts its references to each object; an object lives
//! while any connection (or a proxy in transit, see [`Request::Lend`])
//! refers to it. When a connection ends (its process exited, or was
//! killed), its waiting calls are interrupted, every object it holds
//! something of ([`Call::hold`]) hears [`Served::client_gone`], and its
//! references are dropped.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Instant;

use aiop_core::connection::{self as core, Address, Listener, RecvError};
use rustix::event::{PollFd, PollFlags};

use super::error::RemoteError;
use super::protocol::{self, Reply, Request};
use super::served::{Call, CallError, CancelToken, ClientId, Fault, Registry, Served, lock};

/// A manager's server, serving in this process: Python's
/// `BaseManager.get_server()`.
///
/// [`bind`](Server::bind) listens at once, and a thread accepts and serves
/// clients from then on; [`serve_forever`](Server::serve_forever) blocks
/// until a client (or [`shutdown`](Server::shutdown)) stops the server.
/// Dropping the `Server` shuts it down.
pub struct Server {
    shared: Arc<Shared>,
    accept: Option<thread::JoinHandle<()>>,
}

struct Shared {
    registry: Registry,
    address: Address,
    objects: Mutex<Objects>,
    clients: Mutex<HashMap<ClientId, Arc<Client>>>,
    next_client: AtomicU64,
    stopping: AtomicBool,
    stopped: Mutex<bool>,
    stopped_cond: Condvar,
    /// Written once to wake the accept thread for good.
    stop_write: Mutex<Option<OwnedFd>>,
}

struct Objects {
    next_id: u64,
    live: HashMap<u64, Entry>,
    /// References moved into transit by `Lend`, by token.
    transit: HashMap<u128, u64>,
    /// Tokens adopted before their `Lend` arrived (on another connection).
    early: HashSet<u128>,
    /// Published names; each holds a reference.
    names: HashMap<String, u64>,
}

struct Entry {
    object: Arc<dyn Served>,
    kind: Arc<str>,
    refs: usize,
}

/// One client connection.
struct Client {
    id: ClientId,
    conn: core::Connection,
    state: Mutex<ClientState>,
}

#[derive(Default)]
struct ClientState {
    closed: bool,
    refs: HashMap<u64, usize>,
    held: HashSet<u64>,
    /// The calls waiting on threads of their own, by a key of the server's
    /// (a no-reply call has request id 0, and a client may reuse ids): the
    /// request id and the call's interruption.
    waiting: HashMap<u64, (u64, Arc<CancelToken>)>,
    next_wait: u64,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("address", &self.shared.address)
            .field("stopping", &self.shared.stopping.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Listens at `address` with `authkey` and serves the built-in types and
    /// those of `registry` (see [`Server::registry`]).
    ///
    /// # Errors
    ///
    /// The listener's ([`Listener::bind`]) or the thread's.
    pub fn bind(
        address: &Address,
        authkey: Option<&[u8]>,
        registry: Registry,
    ) -> io::Result<Server> {
        let listener = Listener::bind(address, authkey)?;
        let (stop_read, stop_write) = rustix::pipe::pipe()?;
        let shared = Arc::new(Shared {
            registry,
            address: listener.address().clone(),
            objects: Mutex::new(Objects {
                next_id: 1,
                live: HashMap::new(),
                transit: HashMap::new(),
                early: HashSet::new(),
                names: HashMap::new(),
            }),
            clients: Mutex::new(HashMap::new()),
            next_client: AtomicU64::new(1),
            stopping: AtomicBool::new(false),
            stopped: Mutex::new(false),
            stopped_cond: Condvar::new(),
            stop_write: Mutex::new(Some(stop_write)),
        });
        let s = shared.clone();
        let accept = thread::Builder::new()
            .name("aiop-manager-accept".into())
            .spawn(move || accept_loop(&s, &listener, &stop_read))?;
        Ok(Server {
            shared,
            accept: Some(accept),
        })
    }

    /// A registry with the built-in types, to add custom ones to before
    /// [`bind`](Server::bind).
    pub fn registry() -> Registry {
        Registry::with_builtins()
    }

    /// The address clients connect to (with the port chosen, for TCP port 0).
    pub fn address(&self) -> &Address {
        &self.shared.address
    }

    /// Blocks until the server is shut down, by a client's
    /// [`Manager::shutdown`](super::Manager::shutdown) or by
    /// [`shutdown`](Server::shutdown) on another thread.
    pub fn serve_forever(&self) {
        let mut stopped = lock(&self.shared.stopped);
        while !*stopped {
            stopped = self
                .shared
                .stopped_cond
                .wait(stopped)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Stops the server: no more clients are accepted, every waiting call
    /// ends with [`RemoteError::SHUTTING_DOWN`], every connection is closed
    /// (so each call still in flight fails with
    /// [`ManagerError::ServerGone`](super::ManagerError::ServerGone)) and the
    /// objects are dropped.
    pub fn shutdown(&self) {
        self.shared.shutdown();
    }

    /// How many objects the server holds.
    pub fn object_count(&self) -> usize {
        lock(&self.shared.objects).live.len()
    }

    /// How many clients are connected.
    pub fn client_count(&self) -> usize {
        lock(&self.shared.clients).len()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.shutdown();
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

impl Shared {
    fn shutdown(&self) {
        if self.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        // Wake the accept thread (it ends, and drops the listener).
        drop(lock(&self.stop_write).take());
        let clients: Vec<Arc<Client>> = lock(&self.clients).values().cloned().collect();
        for c in &clients {
            let waiting: Vec<Arc<CancelToken>> = lock(&c.state)
                .waiting
                .values()
                .map(|(_, t)| t.clone())
                .collect();
            for t in waiting {
                t.shut_down();
            }
        }
        for c in &clients {
            // Ends the connection's reads (its thread cleans up) and, for
            // the client, every call in flight.
            let _ = rustix::net::shutdown(c.conn.as_fd(), rustix::net::Shutdown::Both);
        }
        let dropped: Vec<Entry> = {
            let mut objects = lock(&self.objects);
            objects.transit.clear();
            objects.names.clear();
            objects.live.drain().map(|(_, e)| e).collect()
        };
        for e in dropped {
            quietly(|| drop(e));
        }
        *lock(&self.stopped) = true;
        self.stopped_cond.notify_all();
    }

    /// Drops one reference to `object` (if it lives).
    fn release(&self, object: u64) {
        let gone = {
            let mut objects = lock(&self.objects);
            match objects.live.get_mut(&object) {
                Some(e) if e.refs > 1 => {
                    e.refs -= 1;
                    None
                }
                Some(_) => objects.live.remove(&object),
                None => None,
            }
        };
        // Dropped outside the lock: a served object's drop may take time
        // (or panic).
        quietly(|| drop(gone));
    }

    fn get(&self, object: u64) -> Result<(Arc<dyn Served>, Arc<str>), RemoteError> {
        match lock(&self.objects).live.get(&object) {
            Some(e) => Ok((e.object.clone(), e.kind.clone())),
            None => Err(no_such_object(object)),
        }
    }
}

fn no_such_object(object: u64) -> RemoteError {
    RemoteError::new(
        RemoteError::NO_SUCH_OBJECT,
        format!("no object {object} on the manager (its last proxy was dropped)"),
    )
}

fn accept_loop(shared: &Arc<Shared>, listener: &Listener, stop: &OwnedFd) {
    loop {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let mut fds = [
            PollFd::new(listener, PollFlags::IN),
            PollFd::new(stop, PollFlags::IN),
        ];
        match rustix::event::poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return,
        }
        if !fds[1].revents().is_empty() {
            return;
        }
        let pending = match listener.try_accept_handshaking() {
            Ok(p) => p,
            // WouldBlock (another wake-up took it) or a client that hung up
            // before being accepted: neither concerns the server.
            Err(_) => continue,
        };
        let id = shared.next_client.fetch_add(1, Ordering::Relaxed);
        let s = shared.clone();
        let timeout = listener.handshake_timeout();
        let _ = thread::Builder::new()
            .name(format!("aiop-manager-client-{id}"))
            .spawn(move || {
                if let Ok(conn) = finish_handshake(pending, timeout) {
                    serve_client(&s, id, conn);
                }
            });
    }
}

/// Drives the server side of the handshake on this client's own thread.
fn finish_handshake(
    mut pending: core::Handshaking,
    timeout: std::time::Duration,
) -> io::Result<core::Connection> {
    let deadline = Instant::now() + timeout;
    loop {
        match pending.advance() {
            Ok(()) => return pending.into_connection(),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let now = Instant::now();
                if now >= deadline {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                let flags = if pending.wants_write() {
                    PollFlags::OUT
                } else {
                    PollFlags::IN
                };
                let left = rustix::time::Timespec::try_from(deadline - now)
                    .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
                let mut fds = [PollFd::new(&pending, flags)];
                match rustix::event::poll(&mut fds, Some(&left)) {
                    Ok(_) | Err(rustix::io::Errno::INTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e),
        }
    }
}

fn serve_client(shared: &Arc<Shared>, id: ClientId, conn: core::Connection) {
    let client = Arc::new(Client {
        id,
        conn,
        state: Mutex::new(ClientState::default()),
    });
    {
        let mut clients = lock(&shared.clients);
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        clients.insert(id, client.clone());
    }
    loop {
        // This thread is the connection's only receiver.
        match protocol::spin_then_recv::<Request>(&client.conn) {
            Ok(request) => {
                // A panic (in user code not contained below, or a bug) ends
                // this client's connection, never without its cleanup.
                match catch_unwind(AssertUnwindSafe(|| handle(shared, &client, request))) {
                    Ok(false) => {}
                    Ok(true) | Err(_) => break,
                }
            }
            Err(RecvError::Closed) => break,
            // A malformed request: the client is not speaking this
            // protocol; end its connection rather than guess.
            Err(_) => break,
        }
    }
    client_ended(shared, &client);
}

/// The client's connection has ended: interrupt its waiting calls, let go
/// of what it held, drop its references.
fn client_ended(shared: &Shared, client: &Arc<Client>) {
    lock(&shared.clients).remove(&client.id);
    let (waiting, held, refs) = {
        let mut st = lock(&client.state);
        st.closed = true;
        (
            std::mem::take(&mut st.waiting),
            std::mem::take(&mut st.held),
            std::mem::take(&mut st.refs),
        )
    };
    for (_, t) in waiting.values() {
        t.client_gone();
    }
    for object in held {
        if let Ok((o, _)) = shared.get(object) {
            quietly(|| o.client_gone(client.id));
        }
    }
    for (object, n) in refs {
        for _ in 0..n {
            shared.release(object);
        }
    }
    let _ = rustix::net::shutdown(client.conn.as_fd(), rustix::net::Shutdown::Both);
}

fn reply(client: &Client, id: u64, result: Result<Vec<u8>, RemoteError>) {
    if id != 0 {
        // A failed write means the client is gone; its thread sees that.
        let _ = client.conn.send(&Reply { id, result });
    }
}

/// Handles one request; true when the connection should end.
fn handle(shared: &Arc<Shared>, client: &Arc<Client>, request: Request) -> bool {
    if shared.stopping.load(Ordering::SeqCst) {
        // Once a shutdown has begun nothing takes effect any more: a request
        // read now (say one sent after its client saw another call end with
        // `SHUTTING_DOWN`) is refused, and the connection ends.
        let refused = match request {
            // Stopping twice is not an error.
            Request::Shutdown { .. } => Ok(protocol::encode(&()).expect("unit encodes")),
            _ => Err(RemoteError::new(
                RemoteError::SHUTTING_DOWN,
                "the manager is shutting down",
            )),
        };
        if let Some(id) = request_id(&request) {
            reply(client, id, refused);
        }
        return true;
    }
    match request {
        Request::Call {
            id,
            object,
            method,
            owner,
            args,
        } => call(shared, client, id, object, method, owner, args),
        Request::Create { id, kind, args } => {
            // A constructor that panics fails this create, like a method.
            let made = catch_unwind(AssertUnwindSafe(|| shared.registry.create(&kind, &args)))
                .unwrap_or_else(|p| {
                    Err(RemoteError::new(
                        RemoteError::PANICKED,
                        format!(
                            "the constructor of {kind:?} panicked: {}",
                            panic_message(p.as_ref())
                        ),
                    ))
                });
            let result = made.and_then(|object| {
                let mut objects = lock(&shared.objects);
                if shared.stopping.load(Ordering::SeqCst) {
                    return Err(RemoteError::new(
                        RemoteError::SHUTTING_DOWN,
                        "the manager is shutting down",
                    ));
                }
                let oid = objects.next_id;
                objects.next_id += 1;
                objects.live.insert(
                    oid,
                    Entry {
                        object,
                        kind: kind.as_str().into(),
                        refs: 1,
                    },
                );
                *lock(&client.state).refs.entry(oid).or_default() += 1;
                Ok(protocol::encode(&oid).expect("a u64 encodes"))
            });
            reply(client, id, result);
        }
        Request::Cancel { id } => {
            let tokens: Vec<Arc<CancelToken>> = lock(&client.state)
                .waiting
                .values()
                .filter(|(request, _)| *request == id && id != 0)
                .map(|(_, t)| t.clone())
                .collect();
            for t in tokens {
                t.cancel();
            }
        }
        Request::DecRef { object } => {
            let mine = {
                let mut st = lock(&client.state);
                match st.refs.get_mut(&object) {
                    Some(n) if *n > 1 => {
                        *n -= 1;
                        true
                    }
                    Some(_) => {
                        st.refs.remove(&object);
                        true
                    }
                    None => false,
                }
            };
            if mine {
                shared.release(object);
            }
        }
        Request::Lend { object, token } => {
            let mut objects = lock(&shared.objects);
            let mine = {
                let st = lock(&client.state);
                st.refs.get(&object).is_some_and(|n| *n > 0)
            };
            if !mine || !objects.live.contains_key(&object) {
                return false;
            }
            if objects.early.remove(&token) {
                // Adopted already (with a reference of its own): nothing to
                // move.
                return false;
            }
            objects.transit.insert(token, object);
            if let Some(e) = objects.live.get_mut(&object) {
                e.refs += 1;
            }
        }
        Request::Adopt { object, token } => {
            let mut objects = lock(&shared.objects);
            // Only a transit reference to this very object is taken over; a
            // token that names another object is left alone.
            let from_transit = objects.transit.get(&token) == Some(&object);
            if from_transit {
                objects.transit.remove(&token);
            } else {
                let Some(e) = objects.live.get_mut(&object) else {
                    // Nothing to adopt: calls through the proxy will say
                    // there is no such object.
                    return false;
                };
                e.refs += 1;
                objects.early.insert(token);
            }
            *lock(&client.state).refs.entry(object).or_default() += 1;
        }
        Request::Publish { id, name, object } => {
            let result = publish(shared, &name, object);
            reply(client, id, result);
        }
        Request::Lookup { id, name } => {
            let found = {
                let mut objects = lock(&shared.objects);
                let oid = objects.names.get(&name).copied();
                match oid.and_then(|o| objects.live.get_mut(&o).map(|e| (o, e))) {
                    Some((oid, e)) => {
                        e.refs += 1;
                        *lock(&client.state).refs.entry(oid).or_default() += 1;
                        Some((oid, e.kind.to_string()))
                    }
                    None => None,
                }
            };
            reply(
                client,
                id,
                Ok(protocol::encode(&found).expect("ids and names encode")),
            );
        }
        Request::Stats { id } => {
            let objects = lock(&shared.objects).live.len() as u64;
            let clients = lock(&shared.clients).len() as u64;
            reply(
                client,
                id,
                Ok(protocol::encode(&(objects, clients)).expect("numbers encode")),
            );
        }
        Request::Shutdown { id } => {
            reply(client, id, Ok(protocol::encode(&()).expect("unit encodes")));
            shared.shutdown();
            return true;
        }
    }
    false
}

/// The id a request's reply carries, for requests that are answered.
fn request_id(request: &Request) -> Option<u64> {
    match *request {
        Request::Create { id, .. }
        | Request::Call { id, .. }
        | Request::Publish { id, .. }
        | Request::Lookup { id, .. }
        | Request::Stats { id }
        | Request::Shutdown { id } => Some(id),
        Request::Cancel { .. }
        | Request::DecRef { .. }
        | Request::Lend { .. }
        | Request::Adopt { .. } => None,
    }
}

fn call(
    shared: &Arc<Shared>,
    client: &Arc<Client>,
    id: u64,
    object: u64,
    method: String,
    owner: u64,
    args: Vec<u8>,
) {
    let (served, _) = match shared.get(object) {
        Ok(o) => o,
        Err(e) => return reply(client, id, Err(e)),
    };
    let received = Instant::now();
    match run(
        client, object, &*served, &method, owner, &args, received, None,
    ) {
        Err(CallError(Fault::MustBlock)) => {}
        done => return reply(client, id, finish(done)),
    }
    // It must wait: on a thread of its own, interruptible by `Cancel`.
    let token = Arc::new(CancelToken::new());
    let key = {
        let mut st = lock(&client.state);
        if st.closed {
            return;
        }
        // Every waiting call is registered, a no-reply one too, so that the
        // end of its client or a shutdown interrupts it.
        st.next_wait += 1;
        let key = st.next_wait;
        st.waiting.insert(key, (id, token.clone()));
        key
    };
    if shared.stopping.load(Ordering::SeqCst) {
        token.shut_down();
    }
    let c = client.clone();
    let spawned = thread::Builder::new()
        .name("aiop-manager-wait".into())
        .spawn(move || {
            let done = run(
                &c,
                object,
                &*served,
                &method,
                owner,
                &args,
                received,
                Some(&token),
            );
            lock(&c.state).waiting.remove(&key);
            reply(&c, id, finish(done));
        });
    if let Err(e) = spawned {
        lock(&client.state).waiting.remove(&key);
        reply(
            client,
            id,
            Err(RemoteError::new(
                "Io",
                format!("the manager could not start a thread for a waiting call: {e}"),
            )),
        );
    }
}

/// Binds (or unbinds) a published name.
fn publish(shared: &Shared, name: &str, object: Option<u64>) -> Result<Vec<u8>, RemoteError> {
    let old = {
        let mut objects = lock(&shared.objects);
        if let Some(oid) = object {
            let Some(e) = objects.live.get_mut(&oid) else {
                return Err(no_such_object(oid));
            };
            e.refs += 1;
            objects.names.insert(name.to_string(), oid)
        } else {
            objects.names.remove(name)
        }
    };
    if let Some(old) = old {
        shared.release(old);
    }
    Ok(protocol::encode(&old.is_some()).expect("a bool encodes"))
}

fn finish(done: Result<Vec<u8>, CallError>) -> Result<Vec<u8>, RemoteError> {
    match done {
        Ok(bytes) => Ok(bytes),
        Err(CallError(Fault::Remote(e))) => Err(e),
        Err(CallError(Fault::MustBlock)) => Err(RemoteError::new(
            RemoteError::INVALID_VALUE,
            "the method asked to wait on a thread where it may wait",
        )),
    }
}

#[allow(clippy::too_many_arguments)]
fn run(
    client: &Arc<Client>,
    object: u64,
    served: &dyn Served,
    method: &str,
    owner: u64,
    args: &[u8],
    received: Instant,
    token: Option<&CancelToken>,
) -> Result<Vec<u8>, CallError> {
    // Set when the method holds something for a client whose connection
    // had already ended: it must be given back at once.
    let orphan_hold = std::cell::Cell::new(false);
    let hold = || {
        let mut st = lock(&client.state);
        if st.closed {
            orphan_hold.set(true);
        } else {
            st.held.insert(object);
        }
    };
    let call = Call {
        method,
        args,
        client: client.id,
        owner,
        received,
        token,
        hold: &hold,
    };
    let result = catch_unwind(AssertUnwindSafe(|| served.call(&call))).unwrap_or_else(|p| {
        let msg = panic_message(p.as_ref());
        Err(RemoteError::new(RemoteError::PANICKED, format!("{method:?} panicked: {msg}")).into())
    });
    if orphan_hold.get() {
        quietly(|| served.client_gone(client.id));
    }
    result
}

/// The text of a panic's payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic".to_string()
    }
}

/// Runs user code whose panic must not end the server's thread (a served
/// object's `client_gone` or `Drop`): the panic is contained and dropped,
/// as there is nobody to report it to.
fn quietly(f: impl FnOnce()) {
    let _ = catch_unwind(AssertUnwindSafe(f));
}
