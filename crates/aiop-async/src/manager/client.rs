//! A client's connection to a manager: requests go out in order, replies
//! come back in any order and are matched by id.
//!
//! No thread reads the connection. Whoever waits for a reply reads: a
//! blocking caller blocks in the receive and hands out the replies of
//! others as they come; an async caller reads what has arrived without
//! waiting and then awaits the socket's readability (it is then the
//! *parked* reader). Only one reads at a time (`busy`); the others wait on
//! their slot (a condition variable for threads, a waker for tasks). When a
//! reader leaves with its own reply, it wakes the waiters so that one of
//! them takes over (`handoff`).
//!
//! An async call dropped after its request went out leaves an *orphaned*
//! slot and sends `Cancel`; if a result still arrives for it, the call's
//! undo runs (a queue's `get` puts the item back at the front, a lock's
//! `acquire` releases), so that cancelling loses nothing.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};

use aiop_core::connection::{self as core, Address, RecvError};

use super::error::{ManagerError, RemoteError};
use super::protocol::{Reply, Request};
use super::served::lock;
use crate::connection::Connection;

/// What to send when the result of a cancelled call arrives anyway.
#[derive(Debug, Clone)]
pub(crate) struct Undo {
    pub(crate) object: u64,
    pub(crate) method: &'static str,
    pub(crate) owner: u64,
    /// The undo's arguments; `None`: the orphaned result's bytes.
    pub(crate) args: Option<Vec<u8>>,
}

enum Slot {
    Waiting(Option<Waker>),
    Done(Result<Vec<u8>, RemoteError>),
    Orphaned(Option<Undo>),
}

#[derive(Default)]
struct Demux {
    /// Someone is inside a receive.
    busy: bool,
    /// The async call that watches the socket's readability.
    parked: Option<u64>,
    /// Why the connection ended, once it has.
    gone: Option<String>,
    /// A drain thread is reading for orphaned calls with an undo.
    draining: bool,
    /// Threads asleep on `replied` (so that waking nobody costs no call).
    sleepers: usize,
    slots: HashMap<u64, Slot>,
}

impl Demux {
    /// Takes the result filed for call `id`, if it has arrived.
    fn take_done(&mut self, id: u64) -> Option<Result<Vec<u8>, RemoteError>> {
        if !matches!(self.slots.get(&id), Some(Slot::Done(_))) {
            return None;
        }
        match self.slots.remove(&id) {
            Some(Slot::Done(result)) => Some(result),
            _ => unreachable!("checked above"),
        }
    }
}

pub(crate) struct Client {
    conn: Connection,
    pid: u32,
    address: Address,
    authkey: Option<Vec<u8>>,
    next_id: AtomicU64,
    demux: Mutex<Demux>,
    replied: Condvar,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("address", &self.address)
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

/// The clients of this process, for proxies that arrive by value.
static CLIENTS: Mutex<Vec<Weak<Client>>> = Mutex::new(Vec::new());

/// How long a process that exits waits for the server to answer the calls
/// it cancelled, so that their undos (an item put back, a permit given
/// back) go out before it is gone. The answer is a round trip away unless
/// the server is stuck.
const EXIT_UNDO_BOUND: std::time::Duration = std::time::Duration::from_secs(2);

static EXIT_HOOK: std::sync::Once = std::sync::Once::new();

/// Run when the process exits: waits (up to [`EXIT_UNDO_BOUND`] in all) for
/// the drain threads of this process's clients.
fn finish_undos_at_exit() {
    let pid = std::process::id();
    // `try_lock`: in a forked copy the lock may be held by a thread that
    // does not exist there (and that copy's clients are not its own).
    let clients: Vec<Arc<Client>> = match CLIENTS.try_lock() {
        Ok(all) => all.iter().filter_map(Weak::upgrade).collect(),
        Err(_) => return,
    };
    let deadline = std::time::Instant::now() + EXIT_UNDO_BOUND;
    for c in clients.iter().filter(|c| c.pid == pid) {
        c.await_drain(deadline);
    }
}

impl Client {
    fn new(
        conn: core::Connection,
        address: &Address,
        authkey: Option<&[u8]>,
    ) -> io::Result<Arc<Client>> {
        let client = Arc::new(Client {
            conn: Connection::new(conn)?,
            pid: std::process::id(),
            address: address.clone(),
            authkey: authkey.map(<[u8]>::to_vec),
            next_id: AtomicU64::new(1),
            demux: Mutex::new(Demux::default()),
            replied: Condvar::new(),
        });
        let mut all = lock(&CLIENTS);
        all.retain(|w| w.strong_count() > 0);
        all.push(Arc::downgrade(&client));
        drop(all);
        EXIT_HOOK.call_once(|| aiop_core::process::at_exit(finish_undos_at_exit));
        Ok(client)
    }

    /// Waits until no drain thread runs (every undo owed has gone out), the
    /// connection has ended, or `deadline`.
    fn await_drain(&self, deadline: std::time::Instant) {
        let mut d = lock(&self.demux);
        while d.draining && d.gone.is_none() && std::time::Instant::now() < deadline {
            d = self.sleep_until(d, Some(deadline));
        }
    }

    /// Connects to the manager at `address`, blocking.
    pub(crate) fn connect_blocking(
        address: &Address,
        authkey: Option<&[u8]>,
    ) -> Result<Arc<Client>, ManagerError> {
        let conn = core::client(address, authkey)?;
        Ok(Client::new(conn, address, authkey)?)
    }

    /// Connects to the manager at `address`.
    pub(crate) async fn connect(
        address: &Address,
        authkey: Option<&[u8]>,
    ) -> Result<Arc<Client>, ManagerError> {
        let conn = crate::connection::client(address, authkey).await?;
        Ok(Client::new(conn.into_core(), address, authkey)?)
    }

    /// A live client of this process for `address` and `authkey`, or a new
    /// one (blocking to connect).
    pub(crate) fn shared(
        address: &Address,
        authkey: Option<&[u8]>,
    ) -> Result<Arc<Client>, ManagerError> {
        let pid = std::process::id();
        let found = lock(&CLIENTS).iter().filter_map(Weak::upgrade).find(|c| {
            c.pid == pid && &c.address == address && c.authkey.as_deref() == authkey && !c.is_gone()
        });
        match found {
            Some(c) => Ok(c),
            None => Client::connect_blocking(address, authkey),
        }
    }

    pub(crate) fn address(&self) -> &Address {
        &self.address
    }

    pub(crate) fn authkey(&self) -> Option<&[u8]> {
        self.authkey.as_deref()
    }

    /// Whether this client was made in this process (not inherited by a
    /// fork, whose copy of the socket is the parent's).
    pub(crate) fn is_ours(&self) -> bool {
        self.pid == std::process::id()
    }

    pub(crate) fn is_gone(&self) -> bool {
        lock(&self.demux).gone.is_some()
    }

    fn check_ours(&self) -> Result<(), ManagerError> {
        if self.is_ours() {
            Ok(())
        } else {
            Err(ManagerError::Io(io::Error::new(
                io::ErrorKind::Unsupported,
                "this manager connection was inherited through fork: pass proxies to a child as its arguments, which connects the child itself",
            )))
        }
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends a request that wants no reply, blocking; a connection that has
    /// ended is not an error here (the server has let go of everything).
    pub(crate) fn post(&self, request: &Request) {
        if self.is_ours() && !self.is_gone() {
            let _ = self.conn.send_blocking(request);
        }
    }

    fn gone_error(why: &str) -> ManagerError {
        ManagerError::ServerGone(why.to_string())
    }

    /// Sends `request` (whose id is `id`) and blocks until its reply.
    pub(crate) fn call_blocking(
        &self,
        id: u64,
        request: &Request,
    ) -> Result<Vec<u8>, ManagerError> {
        self.check_ours()?;
        {
            let mut d = lock(&self.demux);
            if let Some(why) = &d.gone {
                return Err(Client::gone_error(why));
            }
            d.slots.insert(id, Slot::Waiting(None));
        }
        if let Err(e) = self.conn.send_blocking(request) {
            let mut d = lock(&self.demux);
            d.slots.remove(&id);
            return Err(match &d.gone {
                Some(why) => Client::gone_error(why),
                None => self.sent_error(&mut d, e),
            });
        }
        let mut d = lock(&self.demux);
        let mut read = false;
        loop {
            if let Some(result) = d.take_done(id) {
                if read {
                    self.handoff(&mut d);
                }
                return result.map_err(ManagerError::Remote);
            }
            if let Some(why) = &d.gone {
                let err = Client::gone_error(why);
                d.slots.remove(&id);
                return Err(err);
            }
            if d.busy {
                d = self.sleep(d);
                continue;
            }
            read = true;
            d = self.read_blocking(d);
        }
    }

    /// Sleeps on `replied` until a reply is filed or a reader leaves.
    fn sleep<'a>(&self, d: MutexGuard<'a, Demux>) -> MutexGuard<'a, Demux> {
        self.sleep_until(d, None)
    }

    /// [`sleep`](Self::sleep), also ending at `deadline`.
    fn sleep_until<'a>(
        &self,
        mut d: MutexGuard<'a, Demux>,
        deadline: Option<std::time::Instant>,
    ) -> MutexGuard<'a, Demux> {
        d.sleepers += 1;
        let mut d = match deadline {
            None => self.replied.wait(d).unwrap_or_else(|e| e.into_inner()),
            Some(at) => {
                let left = at.saturating_duration_since(std::time::Instant::now());
                match self.replied.wait_timeout(d, left) {
                    Ok((d, _)) => d,
                    Err(e) => e.into_inner().0,
                }
            }
        };
        d.sleepers -= 1;
        d
    }

    /// Wakes the threads asleep on `replied`, if any.
    fn wake_sleepers(&self, d: &Demux) {
        if d.sleepers > 0 {
            self.replied.notify_all();
        }
    }

    /// A send that failed: a broken connection ends the client.
    fn sent_error(&self, d: &mut Demux, e: io::Error) -> ManagerError {
        match e.kind() {
            io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::NotConnected => {
                let why = format!("the connection to the manager broke: {e}");
                self.end(d, why.clone());
                ManagerError::ServerGone(why)
            }
            io::ErrorKind::InvalidData => ManagerError::Encode(e.to_string()),
            _ => ManagerError::Io(e),
        }
    }

    /// Files a received reply (or the receive's error); returns the undos
    /// of orphaned results, to send once the demux is unlocked.
    fn deliver(&self, d: &mut Demux, got: Result<Reply, RecvError>) -> Vec<(Undo, Vec<u8>)> {
        let mut undos = Vec::new();
        match got {
            Ok(reply) => {
                match d.slots.remove(&reply.id) {
                    Some(Slot::Waiting(waker)) => {
                        d.slots.insert(reply.id, Slot::Done(reply.result));
                        if let Some(w) = waker {
                            w.wake();
                        }
                    }
                    Some(Slot::Orphaned(undo)) => {
                        if let (Some(undo), Ok(bytes)) = (undo, reply.result) {
                            undos.push((undo, bytes));
                        }
                    }
                    Some(done @ Slot::Done(_)) => {
                        d.slots.insert(reply.id, done);
                    }
                    None => {}
                }
                self.wake_sleepers(d);
            }
            Err(RecvError::Closed) => {
                self.end(
                    d,
                    "the manager closed the connection (it shut down or exited)".into(),
                );
            }
            Err(e) => self.end(d, format!("receiving from the manager failed: {e}")),
        }
        undos
    }

    /// The connection has ended: every waiting call fails.
    fn end(&self, d: &mut Demux, why: String) {
        if d.gone.is_none() {
            d.gone = Some(why);
        }
        for slot in d.slots.values_mut() {
            if let Slot::Waiting(w) = slot {
                if let Some(w) = w.take() {
                    w.wake();
                }
            }
        }
        self.wake_sleepers(d);
    }

    /// A reader leaves: wake the waiters so that one takes over.
    fn handoff(&self, d: &mut Demux) {
        for slot in d.slots.values_mut() {
            if let Slot::Waiting(w) = slot {
                if let Some(w) = w.take() {
                    w.wake();
                }
            }
        }
        self.wake_sleepers(d);
    }

    fn run_undos(&self, undos: Vec<(Undo, Vec<u8>)>) {
        for (undo, result) in undos {
            self.post(&Request::Call {
                id: 0,
                object: undo.object,
                method: undo.method.to_string(),
                owner: undo.owner,
                args: undo.args.unwrap_or(result),
            });
        }
    }

    /// Sends `request` (whose id is `id`) and awaits its reply. Dropping the
    /// future after the request went out cancels the call on the server and,
    /// if its result arrives anyway, sends `undo`.
    pub(crate) async fn call(
        self: &Arc<Self>,
        id: u64,
        request: &Request,
        undo: Option<Undo>,
    ) -> Result<Vec<u8>, ManagerError> {
        self.check_ours()?;
        {
            let mut d = lock(&self.demux);
            if let Some(why) = &d.gone {
                return Err(Client::gone_error(why));
            }
            d.slots.insert(id, Slot::Waiting(None));
        }
        let mut pending = Pending {
            client: self.clone(),
            id,
            sent: false,
            undo,
            finished: false,
        };
        // Committed once its first byte is written: from then on the
        // request reaches the server even if this future is dropped (the
        // rest goes out before any later message), so dropping must cancel.
        let sent = async {
            let mut msg = Some(self.conn.get_ref().encode(request)?);
            loop {
                match self.conn.get_ref().try_send_encoded(&mut msg) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.conn.wait_writable().await?;
                    }
                    Err(e) => return Err(e),
                }
            }
            pending.sent = true;
            self.conn.flush().await
        }
        .await;
        if let Err(e) = sent {
            let mut d = lock(&self.demux);
            if !pending.sent {
                d.slots.remove(&id);
                pending.finished = true;
            }
            return Err(match &d.gone {
                Some(why) => Client::gone_error(why),
                None => self.sent_error(&mut d, e),
            });
        }
        (&mut pending).await
    }

    fn poll_reply(&self, id: u64, cx: &mut Context<'_>) -> Poll<Result<Vec<u8>, ManagerError>> {
        let mut d = lock(&self.demux);
        // Whether this poll read the socket: other calls may have seen it
        // `busy` meanwhile and returned `Pending`, counting on a reader; one
        // that leaves must wake them so that one takes over.
        let mut read = false;
        loop {
            if let Some(result) = d.take_done(id) {
                let was_parked = d.parked == Some(id);
                if was_parked {
                    d.parked = None;
                }
                if was_parked || read {
                    self.handoff(&mut d);
                }
                return Poll::Ready(result.map_err(ManagerError::Remote));
            }
            if let Some(why) = &d.gone {
                let err = Client::gone_error(why);
                d.slots.remove(&id);
                return Poll::Ready(Err(err));
            }
            if d.busy {
                if d.parked == Some(id) {
                    // A blocking reader has the socket; its handoff wakes us.
                    d.parked = None;
                }
                d.slots.insert(id, Slot::Waiting(Some(cx.waker().clone())));
                return Poll::Pending;
            }
            // Whoever is polled reads, and becomes the one that watches the
            // socket, taking over from a parked call (whose future may have
            // been set aside and never be polled again; it keeps its waker
            // in its slot, woken when its reply is filed or when this call
            // leaves).
            // Read what has arrived, without waiting.
            d.busy = true;
            read = true;
            drop(d);
            let mut got = Vec::new();
            loop {
                match self.conn.get_ref().try_recv::<Reply>() {
                    Err(RecvError::Empty) => break,
                    Ok(r) => got.push(Ok(r)),
                    Err(e) => {
                        got.push(Err(e));
                        break;
                    }
                }
            }
            d = lock(&self.demux);
            d.busy = false;
            // A blocking caller that waited while this task read may take
            // over the socket (it blocks in the receive; this task only
            // watches readiness).
            self.wake_sleepers(&d);
            let mut undos = Vec::new();
            for g in got {
                undos.extend(self.deliver(&mut d, g));
            }
            if !undos.is_empty() {
                drop(d);
                self.run_undos(undos);
                d = lock(&self.demux);
            }
            if matches!(d.slots.get(&id), Some(Slot::Done(_))) || d.gone.is_some() {
                continue;
            }
            // Nothing for us yet: watch the socket.
            d.parked = Some(id);
            d.slots.insert(id, Slot::Waiting(Some(cx.waker().clone())));
            drop(d);
            match self.conn.poll_readable(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) => d = lock(&self.demux),
                Poll::Ready(Err(e)) => {
                    d = lock(&self.demux);
                    self.end(&mut d, format!("waiting for the manager failed: {e}"));
                }
            }
        }
    }

    /// The call `id` was dropped before its reply.
    fn abandon(self: &Arc<Self>, id: u64, sent: bool, undo: Option<Undo>) {
        let mut d = lock(&self.demux);
        let slot = d.slots.remove(&id);
        let mut run = Vec::new();
        let mut cancel = false;
        let mut drain = false;
        match slot {
            Some(Slot::Done(Ok(bytes))) => {
                if let Some(u) = undo {
                    run.push((u, bytes));
                }
            }
            Some(Slot::Waiting(_)) if sent && d.gone.is_none() => {
                drain = undo.is_some() && !d.draining;
                d.draining |= drain;
                d.slots.insert(id, Slot::Orphaned(undo));
                cancel = true;
            }
            _ => {}
        }
        if d.parked == Some(id) {
            d.parked = None;
            self.handoff(&mut d);
        }
        drop(d);
        if cancel {
            self.post(&Request::Cancel { id });
        }
        self.run_undos(run);
        if drain {
            // The result may already be on its way (the call finished before
            // the cancel arrived), and this process may make no other call
            // that would read it: a thread reads until every orphaned call
            // with an undo has its answer, so that the undo is not delayed.
            let client = self.clone();
            let spawned = std::thread::Builder::new()
                .name("aiop-manager-drain".into())
                .spawn(move || client.drain());
            if spawned.is_err() {
                lock(&self.demux).draining = false;
            }
        }
    }

    /// Reads (taking turns with the callers) until no orphaned call with an
    /// undo is left, running the undos of those whose results arrive.
    fn drain(&self) {
        let mut d = lock(&self.demux);
        loop {
            let orphans = d
                .slots
                .values()
                .any(|s| matches!(s, Slot::Orphaned(Some(_))));
            if !orphans || d.gone.is_some() {
                d.draining = false;
                self.handoff(&mut d);
                return;
            }
            if d.busy {
                d = self.sleep(d);
                continue;
            }
            d = self.read_blocking(d);
        }
    }

    /// Takes the reader's turn (the caller saw nobody `busy`), blocks for
    /// one reply, files it and runs the undos it calls for.
    fn read_blocking<'a>(&'a self, mut d: MutexGuard<'a, Demux>) -> MutexGuard<'a, Demux> {
        d.busy = true;
        drop(d);
        // The demux's `busy` flag makes this the only receiver.
        let got = super::protocol::spin_then_recv::<Reply>(self.conn.get_ref());
        let mut d = lock(&self.demux);
        d.busy = false;
        let undos = self.deliver(&mut d, got);
        if !undos.is_empty() {
            drop(d);
            self.run_undos(undos);
            d = lock(&self.demux);
        }
        d
    }
}

use std::io;

/// An async call in flight; dropping it abandons the call.
struct Pending {
    client: Arc<Client>,
    id: u64,
    sent: bool,
    undo: Option<Undo>,
    finished: bool,
}

impl Future for Pending {
    type Output = Result<Vec<u8>, ManagerError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let r = this.client.poll_reply(this.id, cx);
        if r.is_ready() {
            this.finished = true;
        }
        r
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.finished {
            self.client.abandon(self.id, self.sent, self.undo.take());
        }
    }
}
