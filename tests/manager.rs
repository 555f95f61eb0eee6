//! Managers (`aiop::manager`) across real processes.
//!
//! Every claim is shown with spawned children (`Process::spawn`, daemons so
//! that a failed test leaves nothing behind); sequencing is done through
//! proxies, pipes and the in-order handling of one connection's requests
//! (a round trip on a connection proves that the server has handled every
//! request sent on it before), never by sleeping. `GENEROUS` only bounds a
//! wait so that a bug fails instead of hanging. What is proven:
//!
//! * **Unrelated clients, authkey.** A server started with
//!   `Builder::address(tcp 127.0.0.1:0).authkey(k).start()` is reached by a
//!   process that is not its child and gets only the address text and the
//!   key: it connects (`Manager::connect_blocking`), finds a published dict
//!   (`lookup_blocking`) and uses it both ways; with a wrong key and with no
//!   key the connection is refused with an `AuthenticationError` inside
//!   `ManagerError::Io`; a missing name is `None`, the wrong proxy type a
//!   `Decode` error.
//! * **Locks of a SIGKILLed client.** A child holding a manager `Lock` (and,
//!   separately, an `RLock` at depth 2) is SIGKILLed: the server releases
//!   it, an async acquire that another process had pending on the server is
//!   granted, and a later `acquire_timeout_blocking(GENEROUS)` of a third
//!   process succeeds.
//! * **A waiting call holds up nobody.** While one client waits in
//!   `get_blocking()` on an empty queue (a thread of the test process, known
//!   to be waiting on the server), 50 client *processes* (one connection
//!   each, 20 dict round trips each, results checked) and 4 more threads
//!   sharing the waiter's own connection all complete; the waiter is still
//!   waiting afterwards (its flag is unset), and a put then releases it.
//! * **Shutdown with calls pending.** Blocking threads (queue get, lock
//!   acquire, event wait), async calls (queue get, lock acquire) and a child
//!   process (async get, acquire and wait, each known to be pending on the
//!   server) all return an error (`ServerGone` or `Remote(SHUTTING_DOWN)`)
//!   when the owner calls `shutdown_blocking()`; later calls fail with
//!   `ServerGone`, a new connection is refused, and the server process
//!   (found by the peer credentials of its socket) has exited and been
//!   reaped. The same when a connected client (not the
//!   owner) shuts down a server run with `Builder::server()` +
//!   `serve_forever()` in a child: `serve_forever` returns and the child
//!   exits.
//! * **A server that dies.** A server process SIGKILLed (one the test
//!   spawned itself, running `Builder::server()` + `serve_forever()`) turns
//!   every pending call (threads, tasks, a child process) and every later
//!   call into `ManagerError::ServerGone`; none hangs.
//! * **Cancel safety, on every executor.** Async `get()` futures raced
//!   against short timers (hundreds of them dropped after their request went
//!   out) while a child puts N distinct items: the items received plus those
//!   left in the queue are exactly the N, each once. Async `acquire()`
//!   futures dropped the same way while a child takes and releases the lock
//!   in a loop: the child never gets stuck, and the lock ends free.
//!   Two deterministic cases go further: a `get` (and an `acquire`) that
//!   the server completed (seen through a second connection) and whose
//!   future is then dropped with its result unread must give the item (the
//!   lock) back although the dropping process makes no further call, so
//!   that another process gets it (the client's drain thread reads the
//!   result and sends the undo).
//! * **Reference counting.** An object lives while a proxy to it exists in
//!   any process: the parent drops its proxy after passing it to a child,
//!   and the child still uses it; once every proxy is dropped
//!   `stats_blocking()` counts 0 objects. A child SIGKILLed while holding
//!   proxies (passed ones and objects it created itself) gives its
//!   references back, and its connections leave the server's count.
//! * **Remote errors.** A custom type served through `Builder::types`
//!   returns its own `RemoteError` ("Overdrawn", "balance 5 < 10"), which
//!   arrives with kind and message, in the parent and in a child; a panic in
//!   a method arrives as `PANICKED` with the panic's text; the server goes on
//!   serving after both. An unknown method is `NO_SUCH_METHOD`, an unknown
//!   type in `create` is `NO_SUCH_TYPE`.
//! * **Passing proxies.** A proxy goes to a child through an
//!   `aiop::connection::pipe` (the parent dropping its own proxy meanwhile),
//!   is used there and sent back; a `Vec` of proxies is a spawn argument.
//! * `Builder::serve_here()` (the server on threads of the test process)
//!   serves a child.
//! * **Fork.** In a `fork`ed copy of the test process, every call through
//!   the inherited connection (blocking and async, a lock `release` among
//!   them) is refused with `Unsupported`; the parent's lock is still held
//!   and its dict untouched afterwards.
//! * **Spinning.** A server started by `Manager::start` reports (through a
//!   custom type) the `aiop::sync::spinning()` its starter set, on and off.
aiop::test_support!();

mod common;

use std::collections::HashSet;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use aiop::connection::{Address, AuthenticationError};
use aiop::manager::{
    Call, CallError, DictProxy, EventProxy, LockProxy, Manager, ManagerError, Proxy, QueueProxy,
    RLockProxy, Registry, RemoteError, Served, Types,
};
use common::manager::{objects, watcher};
use common::{
    Child, GENEROUS, assert_reaped, blocked_in, executor_tests, or_timeout, park_forever, rng,
    short_delay, spawn, until,
};
use futures_lite::future::{self, poll_once};
use serde::Serialize;
use serde::de::DeserializeOwned;

// ---------------------------------------------------------------------------
// Helpers

type Dict = DictProxy<String, u64>;

/// The pid of the process listening at the abstract address `address`: the
/// peer credentials of a bare connection to it (which the server drops at
/// its handshake).
fn server_pid(address: &Address) -> u32 {
    use std::os::linux::net::SocketAddrExt;
    let Address::Abstract(name) = address else {
        panic!("not an abstract address: {address}")
    };
    let sa = std::os::unix::net::SocketAddr::from_abstract_name(name).expect("abstract name");
    let s = std::os::unix::net::UnixStream::connect_addr(&sa).expect("connect to the server");
    let cred = rustix::net::sockopt::socket_peercred(&s).expect("SO_PEERCRED");
    cred.pid.as_raw_nonzero().get() as u32
}

/// How a call ended, as a child reports it.
fn outcome<T: std::fmt::Debug>(r: &Result<T, ManagerError>) -> String {
    match r {
        Ok(v) => format!("ok {v:?}"),
        Err(e) if e.is_server_gone() => "gone".into(),
        Err(e) if e.is_remote(RemoteError::SHUTTING_DOWN) => "shutting down".into(),
        Err(e) => format!("other {e}"),
    }
}

/// Whether `e` is what a call pending at a shutdown may end with.
fn gone_or_shutting_down(e: &ManagerError) -> bool {
    e.is_server_gone() || e.is_remote(RemoteError::SHUTTING_DOWN)
}

/// A result produced on another thread, awaited with a bound.
struct Waiting<T> {
    rx: mpsc::Receiver<T>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl<T> Waiting<T> {
    fn join(mut self) -> T {
        match self.rx.recv_timeout(GENEROUS) {
            Ok(v) => {
                self.thread.take().unwrap().join().unwrap();
                v
            }
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("still waiting after {GENEROUS:?}"),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                std::panic::resume_unwind(self.thread.take().unwrap().join().unwrap_err())
            }
        }
    }
}

/// Runs `fut` on a thread of its own and returns once its first poll has
/// sent its request and is pending (so the request is on the connection,
/// ahead of any later request of this process).
fn pending_async<T, F>(fut: F) -> Waiting<T>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    let (sent_tx, sent_rx) = mpsc::channel();
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let r = future::block_on(async move {
            let mut fut = pin!(fut);
            assert!(
                poll_once(&mut fut).await.is_none(),
                "the call returned at once"
            );
            sent_tx.send(()).unwrap();
            fut.await
        });
        let _ = tx.send(r);
    });
    if sent_rx.recv_timeout(GENEROUS).is_err() {
        // The thread panicked (or hangs): report its panic.
        std::panic::resume_unwind(thread.join().unwrap_err());
    }
    Waiting {
        rx,
        thread: Some(thread),
    }
}

/// The system calls a thread blocked in a manager call sleeps in: the
/// reader in `poll`/`recvmsg`, the others on the client's condition
/// variable.
const BLOCKED_IN: &[libc::c_long] = &[
    libc::SYS_futex,
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_recvmsg,
    libc::SYS_recvfrom,
];

// ---------------------------------------------------------------------------
// 1. A client that is not a child of the server, and the authkey

const KEY: &[u8] = b"the manager test key";

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct RemoteReport {
    parent: u32,
    wrong_key: String,
    no_key: String,
    seen: Option<u64>,
    missing: String,
    wrong_type: String,
}

fn auth_outcome(r: Result<Manager, ManagerError>) -> String {
    match r {
        Ok(_) => "connected".into(),
        Err(ManagerError::Io(e)) => match AuthenticationError::find(&e) {
            Some(a) => format!("auth: {a}"),
            None => format!("io: {e}"),
        },
        Err(e) => format!("other: {e}"),
    }
}

/// Given only the address text and the key: tries a wrong key and no key,
/// then connects, finds the published dict, reads it and writes to it.
fn unrelated_client((address, key): (String, Vec<u8>)) -> RemoteReport {
    let address: Address = address.parse().expect("an address");
    let wrong_key = auth_outcome(Manager::connect_blocking(&address, Some(b"not the key")));
    let no_key = auth_outcome(Manager::connect_blocking(&address, None));
    let m = Manager::connect_blocking(&address, Some(&key)).expect("connect with the key");
    assert!(!m.owns_server());
    let d: Dict = m
        .lookup_blocking("shared")
        .expect("lookup")
        .expect("the dict is published");
    let seen = d.get_blocking(&"from parent".into()).expect("get");
    d.insert_blocking(&"from child".into(), &u64::from(std::process::id()))
        .expect("insert");
    let missing = format!(
        "{:?}",
        m.lookup_blocking::<Dict>("no such name")
            .map(|o| o.is_none())
    );
    let wrong_type = match m.lookup_blocking::<QueueProxy<u64>>("shared") {
        Err(ManagerError::Decode(_)) => "decode".into(),
        other => format!("{other:?}"),
    };
    RemoteReport {
        parent: std::os::unix::process::parent_id(),
        wrong_key,
        no_key,
        seen,
        missing,
        wrong_type,
    }
}

#[test]
fn an_unrelated_process_connects_by_address_and_key_and_a_wrong_key_is_refused() {
    let tcp: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    let m = Manager::builder()
        .address(Address::Tcp(tcp))
        .authkey(KEY)
        .start()
        .expect("start a TCP manager");
    let Address::Tcp(bound) = m.address() else {
        panic!("a TCP address: {}", m.address())
    };
    assert_ne!(bound.port(), 0, "the address names the port bound");
    let d: Dict = m.dict_blocking().unwrap();
    d.insert_blocking(&"from parent".into(), &7).unwrap();
    assert!(!m.publish_blocking("shared", &d).unwrap(), "a new name");

    let child = spawn(unrelated_client, (m.address().to_string(), KEY.to_vec()));
    let child_pid = child.pid();
    let report = child.join();
    assert_eq!(
        report.parent,
        std::process::id(),
        "a sibling of the server, not its child"
    );
    assert!(
        report.wrong_key.starts_with("auth: "),
        "wrong key: {}",
        report.wrong_key
    );
    assert!(
        report.no_key.starts_with("auth: "),
        "no key: {}",
        report.no_key
    );
    assert_eq!(report.seen, Some(7), "the child read the parent's entry");
    assert_eq!(report.missing, "Ok(true)", "a missing name is None");
    assert_eq!(report.wrong_type, "decode", "a dict is not a queue");
    assert_eq!(
        d.get_blocking(&"from child".into()).unwrap(),
        Some(u64::from(child_pid)),
        "the parent reads the child's entry"
    );
    // A wrong key from this process too.
    assert!(
        auth_outcome(Manager::connect_blocking(m.address(), Some(b"nope"))).starts_with("auth: ")
    );
    drop(d);
    m.shutdown_blocking().unwrap();
}

// ---------------------------------------------------------------------------
// 2. Locks held by a SIGKILLed client are released

/// The lock operations the kill tests use, for both lock proxies.
trait TestLock: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    fn take(&self) -> Result<(), ManagerError>;
    fn take_within(&self, timeout: Duration) -> Result<bool, ManagerError>;
    fn take_within_async(
        &self,
        timeout: Duration,
    ) -> impl Future<Output = Result<bool, ManagerError>> + Send + '_;
    fn try_take(&self) -> Result<bool, ManagerError>;
    fn give(&self) -> Result<(), ManagerError>;
    fn give_async(&self) -> impl Future<Output = Result<(), ManagerError>> + Send + '_;
    fn locked(&self) -> Result<bool, ManagerError>;
}

macro_rules! test_lock {
    ($t:ty) => {
        impl TestLock for $t {
            fn take(&self) -> Result<(), ManagerError> {
                self.acquire_blocking()
            }
            fn take_within(&self, timeout: Duration) -> Result<bool, ManagerError> {
                self.acquire_timeout_blocking(timeout)
            }
            fn take_within_async(
                &self,
                timeout: Duration,
            ) -> impl Future<Output = Result<bool, ManagerError>> + Send + '_ {
                self.acquire_timeout(timeout)
            }
            fn try_take(&self) -> Result<bool, ManagerError> {
                self.try_acquire_blocking()
            }
            fn give(&self) -> Result<(), ManagerError> {
                self.release_blocking()
            }
            fn give_async(&self) -> impl Future<Output = Result<(), ManagerError>> + Send + '_ {
                self.release()
            }
            fn locked(&self) -> Result<bool, ManagerError> {
                self.is_locked_blocking()
            }
        }
    };
}
test_lock!(LockProxy);
test_lock!(RLockProxy);

/// Takes the lock `depth` times, says so, and parks until killed.
fn hold_forever<L: TestLock>((lock, depth, signal): (L, u32, QueueProxy<u32>)) {
    for _ in 0..depth {
        lock.take().expect("acquire");
    }
    signal.put_blocking(&std::process::id()).expect("signal");
    park_forever()
}

/// Has an acquire pending on the server (sent, then a put on the same
/// connection that the server handles after it), says so, and waits for
/// the lock; releases it if it got it.
fn acquire_pending<L: TestLock>((lock, signal): (L, QueueProxy<u32>)) -> Result<bool, String> {
    future::block_on(async {
        let mut acquire = pin!(lock.take_within_async(GENEROUS));
        if poll_once(&mut acquire).await.is_some() {
            return Err("the acquire returned while the lock was held".into());
        }
        signal.put_blocking(&0).map_err(|e| e.to_string())?;
        let got = acquire.await.map_err(|e| e.to_string())?;
        if got {
            // Async, as the acquire: the same owner for an RLock.
            lock.give_async().await.map_err(|e| e.to_string())?;
        }
        Ok(got)
    })
}

fn acquire_within_generous<L: TestLock>(lock: L) -> Result<bool, String> {
    let got = lock.take_within(GENEROUS).map_err(|e| e.to_string())?;
    if got {
        lock.give().map_err(|e| e.to_string())?;
    }
    Ok(got)
}

fn killed_holder_releases<L: TestLock>(make: fn(&Manager) -> L, depth: u32) {
    let m = Manager::start().unwrap();
    let lock = make(&m);
    let signal = m.queue_blocking::<u32>(0).unwrap();

    let holder = spawn(hold_forever::<L>, (lock.clone(), depth, signal.clone()));
    assert_eq!(
        signal.get_timeout_blocking(GENEROUS).unwrap(),
        Some(holder.pid())
    );
    assert!(lock.locked().unwrap());
    assert!(!lock.try_take().unwrap(), "the child holds it");

    let waiter = spawn(acquire_pending::<L>, (lock.clone(), signal.clone()));
    assert_eq!(
        signal.get_timeout_blocking(GENEROUS).unwrap(),
        Some(0),
        "the waiter waits"
    );
    holder.kill();
    assert_eq!(waiter.join(), Ok(true), "the pending acquire is granted");

    let later = spawn(acquire_within_generous::<L>, lock.clone());
    assert_eq!(later.join(), Ok(true));
    assert!(lock.try_take().unwrap(), "free again");
    lock.give().unwrap();
    assert!(!lock.locked().unwrap());
    drop((lock, signal));
    m.shutdown_blocking().unwrap();
}

#[test]
fn a_sigkilled_client_holding_a_lock_releases_it() {
    killed_holder_releases(|m| m.lock_blocking().unwrap(), 1);
}

#[test]
fn a_sigkilled_client_holding_an_rlock_twice_releases_it() {
    killed_holder_releases(|m| m.rlock_blocking().unwrap(), 2);
}

// ---------------------------------------------------------------------------
// 3. One waiting call holds up nobody

const ROUND_TRIPS: u64 = 20;

/// `ROUND_TRIPS` inserts and gets of keys of its own, each checked.
fn round_trips((d, id): (Dict, u64)) -> Result<u64, String> {
    for i in 0..ROUND_TRIPS {
        let key = format!("{id}/{i}");
        let value = id * 1000 + i;
        let old = d.insert_blocking(&key, &value).map_err(|e| e.to_string())?;
        if old.is_some() {
            return Err(format!("{key} was set before: {old:?}"));
        }
        let got = d.get_blocking(&key).map_err(|e| e.to_string())?;
        if got != Some(value) {
            return Err(format!("{key}: {got:?} instead of {value}"));
        }
    }
    Ok(ROUND_TRIPS)
}

#[test]
fn fifty_client_processes_are_served_while_another_waits_in_get() {
    const PROCESSES: u64 = 50;
    const THREADS: u64 = 4;
    let m = Manager::start().unwrap();
    let q = m.queue_blocking::<u32>(0).unwrap();
    let d: Dict = m.dict_blocking().unwrap();

    let returned = Arc::new(AtomicBool::new(false));
    let (q2, r2) = (q.clone(), returned.clone());
    let waiter = blocked_in(
        &[
            libc::SYS_poll,
            libc::SYS_ppoll,
            libc::SYS_recvmsg,
            libc::SYS_recvfrom,
        ],
        move || {
            let got = q2.get_blocking();
            r2.store(true, Ordering::SeqCst);
            got
        },
    );
    // Sent after the get on the same connection: once answered, the get is
    // waiting on the server.
    assert_eq!(q.qsize_blocking().unwrap(), 0);

    let children: Vec<Child<Result<u64, String>>> = (0..PROCESSES)
        .map(|id| spawn(round_trips, (d.clone(), id)))
        .collect();
    // Threads sharing the waiter's connection.
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let d = d.clone();
            std::thread::spawn(move || round_trips((d, 1000 + t)))
        })
        .collect();
    for c in children {
        assert_eq!(c.join(), Ok(ROUND_TRIPS));
    }
    for t in threads {
        assert_eq!(t.join().unwrap(), Ok(ROUND_TRIPS));
    }
    assert_eq!(
        d.len_blocking().unwrap() as u64,
        (PROCESSES + THREADS) * ROUND_TRIPS
    );
    assert_eq!(d.get_blocking(&"49/19".into()).unwrap(), Some(49_019));

    assert!(
        !returned.load(Ordering::SeqCst),
        "the getter is still waiting after every other client finished"
    );
    q.put_blocking(&42).unwrap();
    assert_eq!(waiter.join().unwrap(), 42);
    assert!(returned.load(Ordering::SeqCst));
    drop((q, d));
    m.shutdown_blocking().unwrap();
}

// ---------------------------------------------------------------------------
// 4 and 5. Shutdown and death of the server with calls pending

/// Has a queue get, a lock acquire and an event wait pending on the server
/// (each sent; the signal put behind them on the same connection), then
/// reports how each ended and how a later call ends.
fn pending_in_child(
    (q, lock, event, signal): (QueueProxy<u32>, LockProxy, EventProxy, QueueProxy<u32>),
) -> Vec<String> {
    future::block_on(async {
        let mut get = pin!(q.get());
        let mut acquire = pin!(lock.acquire());
        let mut wait = pin!(event.wait());
        assert!(poll_once(&mut get).await.is_none(), "get waits");
        assert!(poll_once(&mut acquire).await.is_none(), "acquire waits");
        assert!(poll_once(&mut wait).await.is_none(), "wait waits");
        signal.put_blocking(&1).expect("signal");
        let got = get.await;
        let acquired = acquire.await;
        let waited = wait.await;
        let later = q.qsize_blocking();
        vec![
            outcome(&got),
            outcome(&acquired),
            outcome(&waited),
            outcome(&later),
        ]
    })
}

/// Everything pending on one manager: in this process three blocking
/// threads and two async calls, and a child with three async calls.
struct Pending {
    get: common::Blocked<Result<u32, ManagerError>>,
    acquire: common::Blocked<Result<(), ManagerError>>,
    wait: common::Blocked<Result<(), ManagerError>>,
    async_get: Waiting<Result<u32, ManagerError>>,
    async_acquire: Waiting<Result<(), ManagerError>>,
    child: Child<Vec<String>>,
}

/// Starts the calls of [`Pending`] on `m` and returns once every one of them
/// is waiting on the server. The lock is held by this process's main thread.
fn start_pending(m: &Manager) -> (Pending, QueueProxy<u32>, LockProxy) {
    let q = m.queue_blocking::<u32>(0).unwrap();
    let lock = m.lock_blocking().unwrap();
    let event = m.event_blocking().unwrap();
    let signal = m.queue_blocking::<u32>(0).unwrap();
    lock.acquire_blocking().unwrap();

    let child = spawn(
        pending_in_child,
        (q.clone(), lock.clone(), event.clone(), signal.clone()),
    );
    assert_eq!(
        signal.get_timeout_blocking(GENEROUS).unwrap(),
        Some(1),
        "the child waits"
    );

    // One at a time, so that each is asleep (its request sent) before the
    // next starts.
    let q1 = q.clone();
    let get = blocked_in(BLOCKED_IN, move || q1.get_blocking());
    let l1 = lock.clone();
    let acquire = blocked_in(BLOCKED_IN, move || l1.acquire_blocking());
    let e1 = event.clone();
    let wait = blocked_in(BLOCKED_IN, move || e1.wait_blocking());
    let q2 = q.clone();
    let async_get = pending_async(async move { q2.get().await });
    let l2 = lock.clone();
    let async_acquire = pending_async(async move { l2.acquire().await });
    // Answered after every request above: all are waiting on the server.
    assert_eq!(q.qsize_blocking().unwrap(), 0);
    assert!(lock.is_locked_blocking().unwrap());
    assert!(!event.is_set_blocking().unwrap());
    (
        Pending {
            get,
            acquire,
            wait,
            async_get,
            async_acquire,
            child,
        },
        q,
        lock,
    )
}

impl Pending {
    /// Joins every pending call (each bounded) and checks how it ended.
    fn check(
        self,
        ok: fn(&ManagerError) -> bool,
        child_ok: &[&str],
        child_later_ok: fn(&str) -> bool,
    ) {
        let get = self.get.join();
        let acquire = self.acquire.join();
        let wait = self.wait.join();
        let async_get = self.async_get.join();
        let async_acquire = self.async_acquire.join();
        assert!(get.as_ref().is_err_and(ok), "blocking get: {get:?}");
        assert!(
            acquire.as_ref().is_err_and(ok),
            "blocking acquire: {acquire:?}"
        );
        assert!(wait.as_ref().is_err_and(ok), "blocking wait: {wait:?}");
        assert!(
            async_get.as_ref().is_err_and(ok),
            "async get: {async_get:?}"
        );
        assert!(
            async_acquire.as_ref().is_err_and(ok),
            "async acquire: {async_acquire:?}"
        );
        let child = self.child.join();
        assert_eq!(child.len(), 4);
        for (what, got) in ["get", "acquire", "wait"].iter().zip(&child) {
            assert!(
                child_ok.contains(&got.as_str()),
                "the child's {what}: {got}"
            );
        }
        assert!(
            child_later_ok(&child[3]),
            "the child's later call: {}",
            child[3]
        );
    }
}

/// How a child's call made after its pending calls failed at a shutdown
/// must end: refused (the server's connection thread may still read it
/// before the connection is closed) or with the server gone; never served.
fn later_fails(later: &str) -> bool {
    later == "shutting down" || later == "gone"
}

#[test]
fn shutdown_by_the_owner_ends_every_pending_call_and_the_server_process() {
    let m = Manager::start().unwrap();
    let pid = server_pid(m.address());
    assert_ne!(pid, std::process::id());
    let server = common::pidfd(pid);
    let (pending, q, lock) = start_pending(&m);

    m.shutdown_blocking().expect("shutdown");
    pending.check(
        gone_or_shutting_down,
        &["gone", "shutting down"],
        later_fails,
    );
    // Later calls fail too, and nobody can connect any more.
    assert!(q.qsize_blocking().unwrap_err().is_server_gone());
    assert!(lock.release_blocking().unwrap_err().is_server_gone());
    assert!(m.dict_blocking::<u8, u8>().unwrap_err().is_server_gone());
    assert!(matches!(
        Manager::connect_blocking(m.address(), m.authkey()),
        Err(ManagerError::Io(_))
    ));
    assert!(
        m.shutdown_blocking().unwrap_err().is_server_gone(),
        "stopped already"
    );
    // The server process has exited and was reaped.
    assert_reaped(pid, &server);
}

/// Serves the built-in types with `authkey` at a fresh abstract address,
/// reports the address through `report`, and serves until shut down.
fn host_server(
    (authkey, report): (Vec<u8>, aiop::blocking::connection::Connection),
) -> Result<(), String> {
    let server = Manager::builder()
        .authkey(authkey)
        .server()
        .map_err(|e| e.to_string())?;
    report
        .send(&server.address().to_string())
        .map_err(|e| e.to_string())?;
    server.serve_forever();
    Ok(())
}

/// A server in a child of this test (not started by a `Manager`), and a
/// connection to it.
fn hosted_server() -> (Child<Result<(), String>>, Manager) {
    let (ours, theirs) = aiop::blocking::connection::pipe(true).unwrap();
    let host = spawn(host_server, (KEY.to_vec(), theirs));
    let address: String = ours.recv_timeout(GENEROUS).expect("the server's address");
    let address: Address = address.parse().unwrap();
    assert_eq!(server_pid(&address), host.pid());
    let m = Manager::connect_blocking(&address, Some(KEY)).expect("connect");
    assert!(!m.owns_server());
    (host, m)
}

#[test]
fn shutdown_by_a_connected_client_ends_every_pending_call_and_serve_forever() {
    let (host, m) = hosted_server();
    let (pending, q, _lock) = start_pending(&m);
    m.shutdown_blocking().expect("shutdown from a client");
    pending.check(
        gone_or_shutting_down,
        &["gone", "shutting down"],
        later_fails,
    );
    assert!(q.qsize_blocking().unwrap_err().is_server_gone());
    // serve_forever returned: the server's process ended by itself.
    assert_eq!(host.join(), Ok(()));
}

#[test]
fn a_sigkilled_server_turns_every_pending_and_later_call_into_server_gone() {
    let (host, m) = hosted_server();
    let (pending, q, lock) = start_pending(&m);
    let address = m.address().clone();
    host.kill();
    pending.check(ManagerError::is_server_gone, &["gone"], |later| {
        later == "gone"
    });
    assert!(q.qsize_blocking().unwrap_err().is_server_gone());
    assert!(q.put_blocking(&1).unwrap_err().is_server_gone());
    assert!(lock.release_blocking().unwrap_err().is_server_gone());
    assert!(m.queue_blocking::<u8>(0).unwrap_err().is_server_gone());
    assert!(m.stats_blocking().unwrap_err().is_server_gone());
    future::block_on(async {
        assert!(q.get().await.unwrap_err().is_server_gone());
        assert!(lock.acquire().await.unwrap_err().is_server_gone());
    });
    assert!(matches!(
        Manager::connect_blocking(&address, Some(KEY)),
        Err(ManagerError::Io(_))
    ));
}

// ---------------------------------------------------------------------------
// 6. Cancel safety

fn produce((q, n): (QueueProxy<u32>, u32)) {
    for i in 0..n {
        q.put_blocking(&i).expect("put");
    }
}

/// Takes and releases the lock `rounds` times, each acquire bounded.
fn contend((lock, rounds): (LockProxy, u32)) -> Result<u32, String> {
    for i in 0..rounds {
        match lock.acquire_timeout_blocking(GENEROUS) {
            Ok(true) => {}
            Ok(false) => return Err(format!("round {i}: the lock stayed held")),
            Err(e) => return Err(format!("round {i}: {e}")),
        }
        lock.release_blocking()
            .map_err(|e| format!("round {i}: {e}"))?;
    }
    Ok(rounds)
}

executor_tests! {
    async fn dropped_gets_lose_no_item() {
        const N: u32 = 300;
        const TRIES: u32 = 600;
        let m = Manager::start().unwrap();
        let q = m.queue_blocking::<u32>(0).unwrap();
        let producer = spawn(produce, (q.clone(), N));
        let mut next = rng(u64::from(std::process::id()));
        let mut seen = HashSet::new();
        let mut dropped = 0;
        for _ in 0..TRIES {
            match or_timeout(q.get(), short_delay(&mut next)).await {
                Some(got) => {
                    let x = got.expect("get");
                    assert!(x < N && seen.insert(x), "{x} received twice");
                }
                None => dropped += 1,
            }
            if seen.len() == N as usize {
                break;
            }
        }
        let received = seen.len();
        producer.join();
        // What is left: items still queued, and any taken by a dropped get
        // whose result this process has not read yet (reading it gives the
        // item back, so keep reading until all are accounted for).
        let deadline = std::time::Instant::now() + GENEROUS;
        while seen.len() < N as usize {
            while let Some(x) = q.try_get().await.expect("try_get") {
                assert!(x < N && seen.insert(x), "{x} received twice");
            }
            if seen.len() < N as usize {
                assert!(
                    std::time::Instant::now() < deadline,
                    "lost items: {:?}",
                    (0..N).filter(|x| !seen.contains(x)).collect::<Vec<_>>()
                );
                async_io::Timer::after(Duration::from_millis(1)).await;
            }
        }
        assert!(dropped > 0, "some gets were dropped midway");
        assert!(received > 0, "some gets completed");
        assert_eq!(q.qsize().await.unwrap(), 0);
        drop(q);
        m.shutdown().await.unwrap();
    }

    async fn dropped_acquires_leave_the_lock_free() {
        const ROUNDS: u32 = 300;
        const TRIES: u32 = 400;
        let m = Manager::start().unwrap();
        let lock = m.lock_blocking().unwrap();
        let contender = spawn(contend, (lock.clone(), ROUNDS));
        let mut next = rng(u64::from(std::process::id()) + 1);
        let (mut acquired, mut dropped) = (0, 0);
        for _ in 0..TRIES {
            match or_timeout(lock.acquire(), short_delay(&mut next)).await {
                Some(got) => {
                    got.expect("acquire");
                    acquired += 1;
                    lock.release().await.expect("release what this process holds");
                }
                None => dropped += 1,
            }
        }
        assert!(dropped > 0, "some acquires were dropped midway");
        assert!(acquired > 0, "some acquires completed");
        // Keep reading this process's connection (a late grant to a dropped
        // acquire is given back when its result is read) until the lock is
        // free for this process.
        until("the lock is free", || lock.try_acquire_blocking().unwrap());
        lock.release().await.unwrap();
        assert_eq!(contender.join(), Ok(ROUNDS), "the child was never locked out");
        assert!(lock.try_acquire().await.unwrap());
        lock.release().await.unwrap();
        drop(lock);
        m.shutdown().await.unwrap();
    }
}

/// How long another process waits for what a dropped call of an idle
/// process should have given back. Only a failure reaches it: the client's
/// drain thread reads the dropped call's result and sends its undo
/// (`unget`, `release`) although the process makes no further call.
const GIVEN_BACK_WITHIN: Duration = GENEROUS;

fn get_within((q, within): (QueueProxy<u32>, Duration)) -> Result<Option<u32>, String> {
    q.get_timeout_blocking(within).map_err(|e| e.to_string())
}

#[test]
fn a_dropped_get_gives_its_item_back_even_if_its_process_makes_no_further_call() {
    let m = Manager::start().unwrap();
    let q = m.queue_blocking::<u32>(0).unwrap();
    let watcher = watcher(&m, &q);
    future::block_on(async {
        let mut get = pin!(q.get());
        assert!(poll_once(&mut get).await.is_none(), "the queue is empty");
        // Answered after the get: the get waits on the server.
        assert_eq!(q.qsize_blocking().unwrap(), 0);
        // Another process puts; seen through a second connection (this
        // one stays unread), the item is gone from the queue: the server
        // gave it to the waiting get, the only taker, and sent its result.
        spawn(produce, (q.clone(), 1)).join();
        until("the waiting get has taken the item", || {
            watcher.qsize_blocking().unwrap() == 0
        });
        // Dropped here, with its result unread.
    });
    // The get was dropped above, without its result being read; this
    // process now makes no call on the manager while another one waits.
    let other = spawn(get_within, (q.clone(), GIVEN_BACK_WITHIN));
    let got = other.join();
    if got != Ok(Some(0)) {
        // Where the item went: reading this process's connection gives a
        // late result back (behind this try_get, hence the second look).
        let left = q.try_get_blocking().unwrap();
        let left = left.or(q.get_timeout_blocking(GENEROUS).unwrap());
        panic!(
            "another process waiting {GIVEN_BACK_WITHIN:?} got {got:?}: the item taken for \
             the dropped get was not given back while this process made no call (once it \
             read its connection again the queue held {left:?})"
        );
    }
    assert_eq!(q.try_get_blocking().unwrap(), None);
    drop(q);
    m.shutdown_blocking().unwrap();
}

/// Takes the lock, says so through `conn`, releases it when told, and says
/// so: signals that do not go through the parent's manager connection.
fn hold_until_told((lock, conn): (LockProxy, aiop::blocking::connection::Connection)) {
    lock.acquire_blocking().expect("acquire");
    conn.send(&1u8).expect("say held");
    conn.recv::<u8>().expect("told");
    lock.release_blocking().expect("release");
    conn.send(&2u8).expect("say released");
    let _ = conn.recv::<u8>();
}

fn acquire_within((lock, within): (LockProxy, Duration)) -> Result<bool, String> {
    let got = lock
        .acquire_timeout_blocking(within)
        .map_err(|e| e.to_string())?;
    if got {
        lock.release_blocking().map_err(|e| e.to_string())?;
    }
    Ok(got)
}

#[test]
fn a_dropped_acquire_gives_the_lock_back_even_if_its_process_makes_no_further_call() {
    let m = Manager::start().unwrap();
    let lock = m.lock_blocking().unwrap();
    let (ours, theirs) = aiop::blocking::connection::pipe(true).unwrap();
    let watcher = watcher(&m, &lock);
    let holder = spawn(hold_until_told, (lock.clone(), theirs));
    assert_eq!(ours.recv_timeout::<u8>(GENEROUS).unwrap(), 1);
    future::block_on(async {
        let mut acquire = pin!(lock.acquire());
        assert!(
            poll_once(&mut acquire).await.is_none(),
            "the child holds it"
        );
        // Answered after the acquire: it waits on the server.
        assert!(lock.is_locked_blocking().unwrap());
        ours.send(&0u8).unwrap();
        assert_eq!(ours.recv_timeout::<u8>(GENEROUS).unwrap(), 2);
        // Released by the child; seen through a second connection (this
        // one stays unread), it is locked again: the server granted it to
        // the waiting acquire, the only taker, and sent its result.
        until("the waiting acquire is granted the lock", || {
            watcher.is_locked_blocking().unwrap()
        });
        // Dropped here, with its result unread.
    });
    ours.send(&0u8).unwrap();
    holder.join();
    // The acquire was dropped above, without its result being read; this
    // process now makes no call on the manager while another one waits.
    let other = spawn(acquire_within, (lock.clone(), GIVEN_BACK_WITHIN));
    let got = other.join();
    // Reading this process's connection gives a late grant back.
    until("the lock is free", || lock.try_acquire_blocking().unwrap());
    lock.release_blocking().unwrap();
    assert_eq!(
        got,
        Ok(true),
        "the lock granted to the dropped acquire stayed held while this process made no call"
    );
    drop(lock);
    m.shutdown_blocking().unwrap();
}

// ---------------------------------------------------------------------------
// 7. Reference counting

/// Waits for the gate, then uses the dict the parent no longer holds.
fn use_after_gate((d, gate): (Dict, QueueProxy<u32>)) -> Option<u64> {
    gate.get_blocking().expect("gate");
    d.insert_blocking(&"child".into(), &5).expect("insert");
    d.get_blocking(&"child".into()).expect("get")
}

#[test]
fn an_object_lives_while_any_process_holds_a_proxy_to_it() {
    let m = Manager::start().unwrap();
    let gate = m.queue_blocking::<u32>(0).unwrap();
    let d: Dict = m.dict_blocking().unwrap();
    assert_eq!(objects(&m), 2);
    let child = spawn(use_after_gate, (d.clone(), gate.clone()));
    // Every proxy of this process to the dict is dropped (the release is
    // handled before the stats and the gate below, sent after it).
    drop(d);
    assert_eq!(objects(&m), 2, "the child's reference keeps the dict");
    gate.put_blocking(&1).unwrap();
    assert_eq!(
        child.join(),
        Some(5),
        "the child used the dict after the parent dropped it"
    );
    drop(gate);
    until("every object is released", || objects(&m) == 0);
    m.shutdown_blocking().unwrap();
}

/// Holds a passed proxy and objects it made itself, says so, parks.
fn hold_proxies_and_park((d, signal, address, key): (Dict, QueueProxy<u32>, String, Vec<u8>)) {
    let m = Manager::connect_blocking(&address.parse().unwrap(), Some(&key)).expect("connect");
    let mine: Vec<Dict> = (0..2).map(|_| m.dict_blocking().expect("dict")).collect();
    for x in &mine {
        x.insert_blocking(&"mine".into(), &1).expect("insert");
    }
    d.insert_blocking(&"held".into(), &1).expect("insert");
    signal.put_blocking(&1).expect("signal");
    let _keep = (d, mine, m);
    park_forever()
}

#[test]
fn a_sigkilled_client_gives_its_references_back() {
    let m = Manager::start().unwrap();
    let signal = m.queue_blocking::<u32>(0).unwrap();
    let d: Dict = m.dict_blocking().unwrap();
    let child = spawn(
        hold_proxies_and_park,
        (
            d.clone(),
            signal.clone(),
            m.address().to_string(),
            m.authkey().unwrap().to_vec(),
        ),
    );
    assert_eq!(signal.get_timeout_blocking(GENEROUS).unwrap(), Some(1));
    drop(d);
    // The signal queue, the passed dict and the child's two dicts; this
    // process's connection and the child's two.
    assert_eq!(
        m.stats_blocking().unwrap(),
        (4, 3),
        "the child's references keep its objects"
    );
    child.kill();
    until(
        "the killed child's connections and objects are released",
        || m.stats_blocking().unwrap() == (1, 1),
    );
    drop(signal);
    until("every object is released", || objects(&m) == 0);
    m.shutdown_blocking().unwrap();
}

// ---------------------------------------------------------------------------
// 8. Remote errors of a custom type

struct Account {
    balance: std::sync::Mutex<u64>,
}

impl Served for Account {
    fn call(&self, call: &Call<'_>) -> Result<Vec<u8>, CallError> {
        match call.method() {
            "withdraw" => {
                let amount: u64 = call.args()?;
                let mut b = self.balance.lock().unwrap();
                if *b < amount {
                    return Err(
                        RemoteError::new("Overdrawn", format!("balance {b} < {amount}")).into(),
                    );
                }
                *b -= amount;
                call.reply(&*b)
            }
            "balance" => call.reply(&*self.balance.lock().unwrap()),
            "audit" => panic!("audit found a hole of {} coins", 3),
            _ => Err(call.no_such_method()),
        }
    }
}

struct BankTypes;

impl Types for BankTypes {
    fn register(registry: &mut Registry) {
        registry.register("test.Account", |balance: u64| {
            Ok(Account {
                balance: std::sync::Mutex::new(balance),
            })
        });
    }
}

fn overdraw_in_child(account: Proxy) -> (String, String) {
    match account.call_blocking::<_, u64>("withdraw", &10u64) {
        Err(ManagerError::Remote(e)) => (e.kind().to_string(), e.message().to_string()),
        other => (format!("{other:?}"), String::new()),
    }
}

#[test]
fn a_custom_types_errors_and_panics_come_back_as_remote_errors() {
    let m = Manager::builder().types::<BankTypes>().start().unwrap();
    let account = m.create_blocking("test.Account", &5u64).unwrap();
    assert_eq!(account.kind(), "test.Account");

    let e = account
        .call_blocking::<_, u64>("withdraw", &10u64)
        .unwrap_err();
    let remote = e.remote().expect("a remote error");
    assert_eq!(remote.kind(), "Overdrawn");
    assert_eq!(remote.message(), "balance 5 < 10");
    assert_eq!(
        spawn(overdraw_in_child, account.clone()).join(),
        ("Overdrawn".to_string(), "balance 5 < 10".to_string()),
        "in another process too"
    );

    let e = account.call_blocking::<_, ()>("audit", &()).unwrap_err();
    assert!(e.is_remote(RemoteError::PANICKED), "{e}");
    assert!(
        e.remote()
            .unwrap()
            .message()
            .contains("audit found a hole of 3 coins"),
        "{e}"
    );
    // Still serving, the object intact.
    assert_eq!(account.call_blocking::<_, u64>("balance", &()).unwrap(), 5);
    assert_eq!(
        account.call_blocking::<_, u64>("withdraw", &3u64).unwrap(),
        2
    );
    future::block_on(async {
        let e = account
            .call::<_, u64>("withdraw", &10u64)
            .await
            .unwrap_err();
        assert_eq!(e.remote().unwrap().message(), "balance 2 < 10");
        let e = account.call::<_, ()>("audit", &()).await.unwrap_err();
        assert!(e.is_remote(RemoteError::PANICKED), "{e}");
    });

    let e = account
        .call_blocking::<_, ()>("no such method", &())
        .unwrap_err();
    assert!(e.is_remote(RemoteError::NO_SUCH_METHOD), "{e}");
    let e = m.create_blocking("test.NoSuchType", &()).unwrap_err();
    assert!(e.is_remote(RemoteError::NO_SUCH_TYPE), "{e}");
    // Built-in types are served too.
    let d: Dict = m.dict_blocking().unwrap();
    d.insert_blocking(&"x".into(), &1).unwrap();
    assert_eq!(objects(&m), 2);
    drop((account, d));
    m.shutdown_blocking().unwrap();
}

// ---------------------------------------------------------------------------
// 9. Proxies through a pipe and inside a Vec

/// Receives a dict proxy through the pipe, uses it and sends it back.
fn through_pipe(conn: aiop::connection::Connection) -> Option<u64> {
    let d: Dict = conn.recv_blocking().expect("a proxy");
    let seen = d.get_blocking(&"parent".into()).expect("get");
    d.insert_blocking(&"child".into(), &2).expect("insert");
    conn.send_blocking(&d).expect("send it back");
    // Wait for the parent to be done with the pipe.
    let _ = conn.recv_blocking::<u8>();
    seen
}

#[test]
fn a_proxy_sent_through_a_pipe_is_used_in_the_child() {
    let m = Manager::start().unwrap();
    let d: Dict = m.dict_blocking().unwrap();
    d.insert_blocking(&"parent".into(), &1).unwrap();
    let (ours, theirs) = aiop::connection::pipe(true).unwrap();
    let child = spawn(through_pipe, theirs);
    ours.send_blocking(&d).unwrap();
    // The proxy in the pipe keeps the dict alive on its own.
    drop(d);
    assert_eq!(objects(&m), 1);
    let back: Dict = ours.recv_blocking().expect("the proxy comes back");
    assert_eq!(back.get_blocking(&"child".into()).unwrap(), Some(2));
    assert_eq!(back.len_blocking().unwrap(), 2);
    ours.send_blocking(&0u8).unwrap();
    assert_eq!(child.join(), Some(1));
    drop(back);
    until("the dict is released", || objects(&m) == 0);
    m.shutdown_blocking().unwrap();
}

fn fill_each(queues: Vec<QueueProxy<u32>>) -> usize {
    for (i, q) in queues.iter().enumerate() {
        q.put_blocking(&(i as u32 * 10)).expect("put");
    }
    queues.len()
}

#[test]
fn a_vec_of_proxies_is_a_spawn_argument() {
    let m = Manager::start().unwrap();
    let queues: Vec<QueueProxy<u32>> = (0..3).map(|_| m.queue_blocking(0).unwrap()).collect();
    assert_eq!(spawn(fill_each, queues.clone()).join(), 3);
    for (i, q) in queues.iter().enumerate() {
        assert_eq!(
            q.get_timeout_blocking(GENEROUS).unwrap(),
            Some(i as u32 * 10)
        );
        assert_eq!(q.qsize_blocking().unwrap(), 0);
    }
    drop(queues);
    until("the queues are released", || objects(&m) == 0);
    m.shutdown_blocking().unwrap();
}

// ---------------------------------------------------------------------------
// serve_here

fn double_in_child(d: Dict) {
    let x = d.get_blocking(&"x".into()).expect("get").expect("x is set");
    d.insert_blocking(&"2x".into(), &(x * 2)).expect("insert");
}

#[test]
fn serve_here_serves_a_child() {
    let m = Manager::builder().serve_here().unwrap();
    assert!(m.owns_server());
    let d: Dict = m.dict_blocking().unwrap();
    d.insert_blocking(&"x".into(), &21).unwrap();
    spawn(double_in_child, d.clone()).join();
    assert_eq!(d.get_blocking(&"2x".into()).unwrap(), Some(42));
    m.shutdown_blocking().unwrap();
    assert!(d.len_blocking().unwrap_err().is_server_gone());
}

// ---------------------------------------------------------------------------
// A connection inherited through fork

/// Whether `r` is the refusal of a manager connection inherited through
/// `fork`.
fn refused_in_fork<T>(r: &Result<T, ManagerError>) -> bool {
    matches!(r, Err(ManagerError::Io(e)) if e.kind() == std::io::ErrorKind::Unsupported)
}

/// Run in the forked copy of the test process: every call through the
/// parent's connection, blocking or async, must be refused.
fn calls_in_fork(lock: &LockProxy, d: &Dict) -> bool {
    refused_in_fork(&lock.release_blocking())
        && refused_in_fork(&lock.is_locked_blocking())
        && refused_in_fork(&d.insert_blocking(&"k".into(), &1))
        && refused_in_fork(&future::block_on(d.insert(&"k".into(), &2)))
        && refused_in_fork(&future::block_on(lock.acquire()))
}

#[test]
fn a_connection_inherited_through_fork_refuses_every_call() {
    let m = Manager::start().unwrap();
    let lock = m.lock_blocking().unwrap();
    let d: Dict = m.dict_blocking().unwrap();
    // Held by this process's connection, which the forked copy shares: a
    // release sent through it would succeed on the server.
    lock.acquire_blocking().unwrap();

    // SAFETY: fork in a multi-threaded process. The copy runs only this
    // thread, and before `_exit` it does nothing but the calls above, which
    // stop at the client's pid check (no lock of another thread is taken
    // first; allocation is fork-safe in glibc, whose malloc takes its locks
    // around fork).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let refused = std::panic::catch_unwind(|| calls_in_fork(&lock, &d)).unwrap_or(false);
        // SAFETY: ends the copy at once, running no destructor or exit
        // handler of the parent's state (its manager, threads and harness).
        unsafe { libc::_exit(if refused { 0 } else { 1 }) };
    }
    let copy = common::pidfd(pid as u32);
    let ended = common::ends_within(&copy, GENEROUS);
    if !ended {
        // SAFETY: `pid` is our unreaped child, so the number is still its.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let mut status = 0;
    // SAFETY: `pid` is our child; `status` is a valid out-pointer.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(ended, "the forked copy hung");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "a call through the inherited connection was not refused (status {status:#x})"
    );
    // Nothing reached the server, and the connection is still in step.
    assert!(lock.is_locked_blocking().unwrap());
    assert_eq!(d.len_blocking().unwrap(), 0);
    lock.release_blocking().unwrap();
    m.shutdown_blocking().unwrap();
}

// ---------------------------------------------------------------------------
// The spinning setting travels to a server process

/// Answers `spinning` with the server process's `aiop::sync::spinning()`.
struct SpinReport;

impl Served for SpinReport {
    fn call(&self, call: &Call<'_>) -> Result<Vec<u8>, CallError> {
        match call.method() {
            "spinning" => call.reply(&aiop::sync::spinning()),
            _ => Err(call.no_such_method()),
        }
    }
}

struct SpinTypes;

impl Types for SpinTypes {
    fn register(registry: &mut Registry) {
        registry.register("test.SpinReport", |(): ()| Ok(SpinReport));
    }
}

/// What a server started now by `Manager::start` says of its spinning.
fn server_spins() -> bool {
    let m = Manager::builder().types::<SpinTypes>().start().unwrap();
    let report = m.create_blocking("test.SpinReport", &()).unwrap();
    let spins: bool = report.call_blocking("spinning", &()).unwrap();
    drop(report);
    m.shutdown_blocking().unwrap();
    spins
}

/// A server process started by `Manager::start` follows its starter's
/// `set_spinning`, either way. (The setting is process-wide: this test
/// leaves it on, which other tests of this binary only feel as speed.)
#[test]
fn a_started_server_takes_its_starters_spinning_setting() {
    aiop::sync::set_spinning(false);
    let off = server_spins();
    aiop::sync::set_spinning(true);
    let on = server_spins();
    assert!(
        !off,
        "set_spinning(false) in the starter: the server must not spin"
    );
    assert!(
        on,
        "set_spinning(true) in the starter: the server must spin"
    );
}
