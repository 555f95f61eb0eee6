//! Async connections: typed messages, descriptors and handles between
//! processes, awaited on any executor.
//!
//! The async twin of [`aiop_core::connection`]: [`pipe`] makes a pair of
//! [`Connection`]s; [`Listener`] and [`client`] connect unrelated processes
//! (with the same handshake and optional HMAC authentication); [`wait`]
//! awaits the first of several connections, listeners and process
//! sentinels. Every message is the core's frame, so an async end talks to a
//! blocking end, and a `Connection` sent through a connection or passed to a
//! spawned process arrives usable (as a core connection or, after
//! [`Connection::new`], an async one).
//!
//! # Relationship with Python (aioprocessing)
//!
//! | Python / aioprocessing | aiop |
//! |---|---|
//! | `AioPipe(duplex)` | [`pipe`]`(duplex)` |
//! | `conn.coro_send(obj)` / `conn.send(obj)` | [`Connection::send`]`(&obj).await` / [`Connection::send_blocking`] |
//! | `conn.coro_recv()` / `conn.recv()` | [`Connection::recv`]`().await` / [`Connection::recv_blocking`] |
//! | `conn.coro_send_bytes(b)` | [`Connection::send_bytes`]`(b).await` |
//! | `conn.coro_recv_bytes()` | [`Connection::recv_bytes`]`().await` |
//! | `conn.coro_recv_bytes_into(buf)` | [`Connection::recv_bytes_into`]`(buf).await` |
//! | `conn.coro_poll(timeout)` | [`Connection::poll`]`(timeout).await` |
//! | `poll(0)` then `recv()` | [`Connection::try_recv`] |
//! | `Listener(...).accept()` | [`Listener::accept`]`().await` |
//! | `Client(address, authkey=...)` | [`client`]`(&address, authkey).await` |
//! | `multiprocessing.connection.wait(objs, timeout)` | [`wait`]`(&[..], timeout).await` |
//!
//! Unlike aioprocessing, which runs the blocking call on a thread and so
//! loses a message when the awaiting coroutine is cancelled, every async
//! method here is cancel safe (see each `# Cancel safety`).
//!
//! # Implementation
//!
//! A [`Connection`] is the core connection registered with async-io's
//! reactor ([`async_io::Async`]) without changing the socket's blocking mode
//! (which is shared with every process holding a copy): each read and write
//! passes `MSG_DONTWAIT`. An async receive calls the core's non-blocking
//! [`try_recv`](aiop_core::connection::Connection::try_recv), which keeps the
//! part of a frame that has arrived (header bytes, descriptors, payload
//! bytes) inside the connection, and awaits readability when the frame is
//! not complete. An async send encodes the frame once, commits it with one
//! non-blocking `sendmsg` (the descriptors ride on its first byte) and keeps
//! any unwritten rest inside the connection, where every later send writes
//! it first, then awaits writability until the rest is out. No thread is
//! started and no blocking call is handed to a pool.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixSocketAddr, UnixStream};
use std::pin::pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use async_io::{Async, Timer};
use futures_lite::future;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use aiop_core::connection as core;
pub use aiop_core::connection::{
    Address, AuthenticationError, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_MESSAGE, Fd,
    ParseAddressError, RecvError, Waitable,
};

fn is_would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// Runs `fut` until `deadline`; `None` when the deadline came first (and
/// `fut` was dropped).
async fn until<T>(deadline: Option<Instant>, fut: impl Future<Output = T>) -> Option<T> {
    match deadline {
        None => Some(fut.await),
        Some(d) => {
            future::or(async { Some(fut.await) }, async {
                Timer::at(d).await;
                None
            })
            .await
        }
    }
}

fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// One end of a message channel between processes, for async code:
/// aioprocessing's `AioConnection`.
///
/// It wraps a core [`Connection`](aiop_core::connection::Connection) (same
/// frames, same descriptor transfer; [`new`](Connection::new) and
/// [`into_core`](Connection::into_core) convert) and adds async methods.
/// Each async method has a `_blocking` twin that drives the same state
/// (a partial frame left by a dropped async receive is continued by
/// `recv_blocking`, and the other way round).
///
/// Serializing a `Connection` (into a message or a spawned process's
/// arguments) sends the core connection: the receiver gets a core
/// `Connection`, or this type when it deserializes one.
///
/// # Examples
///
/// ```
/// use aiop_async::connection::pipe;
///
/// futures_lite::future::block_on(async {
///     let (a, b) = pipe(true)?;
///     a.send(&("hello", 42u32)).await?;
///     let (word, n): (String, u32) = b.recv().await?;
///     assert_eq!((word.as_str(), n), ("hello", 42));
///     drop(a);
///     assert!(b.recv::<u32>().await.unwrap_err().is_closed());
///     Ok::<(), Box<dyn std::error::Error>>(())
/// })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Connection {
    inner: Async<core::Connection>,
}

/// A connected pair of async [`Connection`]s (Python's `Pipe`,
/// aioprocessing's `AioPipe`); without `duplex`, `(reader, writer)`.
///
/// # Errors
///
/// The error of `socketpair(2)`, or of registering with the reactor.
pub fn pipe(duplex: bool) -> io::Result<(Connection, Connection)> {
    let (a, b) = core::pipe(duplex)?;
    Ok((Connection::new(a)?, Connection::new(b)?))
}

impl Connection {
    /// Registers a core connection with the reactor. Its socket's blocking
    /// mode is left as it is.
    ///
    /// # Errors
    ///
    /// The error of registering the socket with async-io's reactor.
    pub fn new(conn: core::Connection) -> io::Result<Connection> {
        Ok(Connection {
            inner: Async::new_nonblocking(conn)?,
        })
    }

    /// The core connection (for blocking code, or to send it elsewhere).
    /// A partial frame received or a rest still to send stays in it.
    pub fn into_core(self) -> core::Connection {
        self.inner
            .into_inner()
            .expect("deregistering a socket from the reactor does not fail")
    }

    /// The core connection, borrowed.
    pub fn get_ref(&self) -> &core::Connection {
        self.inner.get_ref()
    }

    /// Whether this end can receive (false for the writer of a one-way pipe).
    pub fn readable(&self) -> bool {
        self.get_ref().readable()
    }

    /// Whether this end can send (false for the reader of a one-way pipe).
    pub fn writable(&self) -> bool {
        self.get_ref().writable()
    }

    /// The largest message this end sends or receives (set it on the core
    /// connection before [`new`](Connection::new)).
    pub fn max_message_size(&self) -> usize {
        self.get_ref().max_message_size()
    }

    /// Waits until the socket has room to write (the manager's sender).
    pub(crate) async fn wait_writable(&self) -> io::Result<()> {
        self.inner.writable().await
    }

    /// Registers `cx` for the socket's next readability (the manager's
    /// reply reader).
    pub(crate) fn poll_readable(&self, cx: &mut std::task::Context<'_>) -> Poll<io::Result<()>> {
        self.inner.poll_readable(cx)
    }

    /// Sends `value` as one message, with the descriptors of any handles in
    /// it (aioprocessing's `coro_send`).
    ///
    /// # Cancel safety
    ///
    /// If the future is dropped before the message's first byte was
    /// written, nothing was sent. Once it was (in one `sendmsg`, with the
    /// descriptors), the message is committed: what is left of it stays
    /// buffered in the connection and is written before any later message,
    /// by the next send (or [`flush`](Connection::flush)) on this
    /// connection; it is never interleaved with another message. If the
    /// connection itself is dropped with such a rest still buffered, the
    /// message is cut off and the peer's receive fails with
    /// `UnexpectedEof`.
    ///
    /// # Errors
    ///
    /// As the core's [`send`](aiop_core::connection::Connection::send):
    /// `InvalidData` for a value that does not serialize, `InvalidInput` for
    /// an oversized message, `BrokenPipe` when the peer is gone,
    /// `Unsupported` on a read-only end.
    #[doc(alias = "coro_send")]
    pub async fn send<T: Serialize + ?Sized>(&self, value: &T) -> io::Result<()> {
        let msg = self.get_ref().encode(value)?;
        self.send_encoded(msg).await
    }

    /// Sends `bytes` as one message (aioprocessing's `coro_send_bytes`).
    ///
    /// # Cancel safety
    ///
    /// As [`send`](Connection::send).
    ///
    /// # Errors
    ///
    /// As [`send`](Connection::send).
    #[doc(alias = "coro_send_bytes")]
    pub async fn send_bytes(&self, bytes: &[u8]) -> io::Result<()> {
        let msg = self.get_ref().encode_bytes(bytes)?;
        self.send_encoded(msg).await
    }

    async fn send_encoded(&self, msg: core::Encoded) -> io::Result<()> {
        let mut msg = Some(msg);
        loop {
            match self.get_ref().try_send_encoded(&mut msg) {
                Ok(()) => break,
                Err(e) if is_would_block(&e) => self.inner.writable().await?,
                Err(e) => return Err(e),
            }
        }
        self.flush().await
    }

    /// Waits until every committed message is written whole (the rest of a
    /// message whose send future was dropped, say).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future loses nothing: the rest stays buffered.
    ///
    /// # Errors
    ///
    /// The socket's error.
    pub async fn flush(&self) -> io::Result<()> {
        loop {
            match self.get_ref().try_flush() {
                Err(e) if is_would_block(&e) => self.inner.writable().await?,
                other => return other,
            }
        }
    }

    /// Sends without waiting; see the core's
    /// [`try_send`](aiop_core::connection::Connection::try_send).
    ///
    /// # Errors
    ///
    /// `WouldBlock` when nothing could be written; otherwise as [`send`](Connection::send).
    pub fn try_send<T: Serialize + ?Sized>(&self, value: &T) -> io::Result<()> {
        self.get_ref().try_send(value)
    }

    /// Sends `value` as one message, blocking the thread.
    ///
    /// # Blocking
    ///
    /// Blocks the calling thread until the message is written: do not call
    /// it from async code.
    ///
    /// # Errors
    ///
    /// As [`send`](Connection::send).
    #[doc(alias = "send")]
    pub fn send_blocking<T: Serialize + ?Sized>(&self, value: &T) -> io::Result<()> {
        self.get_ref().send(value)
    }

    /// Sends `bytes` as one message, blocking the thread.
    ///
    /// # Blocking
    ///
    /// Blocks the calling thread: do not call it from async code.
    ///
    /// # Errors
    ///
    /// As [`send`](Connection::send).
    #[doc(alias = "send_bytes")]
    pub fn send_bytes_blocking(&self, bytes: &[u8]) -> io::Result<()> {
        self.get_ref().send_bytes(bytes)
    }

    /// Receives one message and decodes it as `T` (aioprocessing's
    /// `coro_recv`); handles in it arrive usable.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if the future is dropped, no message is lost. The part
    /// of a message that had arrived (bytes and descriptors) stays in the
    /// connection, and the next receive of any kind continues it.
    ///
    /// # Errors
    ///
    /// [`RecvError::Closed`] at end of stream (the peer closed or died);
    /// otherwise as the core's [`recv`](aiop_core::connection::Connection::recv).
    #[doc(alias = "coro_recv")]
    pub async fn recv<T: DeserializeOwned>(&self) -> Result<T, RecvError> {
        loop {
            match self.get_ref().try_recv::<T>() {
                Err(RecvError::Empty) => self.inner.readable().await?,
                other => return other,
            }
        }
    }

    /// Receives one message as bytes (aioprocessing's `coro_recv_bytes`).
    ///
    /// # Cancel safety
    ///
    /// As [`recv`](Connection::recv).
    ///
    /// # Errors
    ///
    /// As [`recv`](Connection::recv); a message that carries descriptors is
    /// `InvalidData` here.
    #[doc(alias = "coro_recv_bytes")]
    pub async fn recv_bytes(&self) -> Result<Vec<u8>, RecvError> {
        loop {
            match self.get_ref().try_recv_bytes() {
                Err(RecvError::Empty) => self.inner.readable().await?,
                other => return other,
            }
        }
    }

    /// Receives one message into `buf` and returns its length
    /// (aioprocessing's `coro_recv_bytes_into`).
    ///
    /// # Cancel safety
    ///
    /// As [`recv`](Connection::recv).
    ///
    /// # Errors
    ///
    /// [`RecvError::BufferTooShort`] when the message is longer than `buf`
    /// (it is kept for the next receive); otherwise as
    /// [`recv_bytes`](Connection::recv_bytes).
    #[doc(alias = "coro_recv_bytes_into")]
    pub async fn recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize, RecvError> {
        loop {
            match self.get_ref().try_recv_bytes_into(buf) {
                Err(RecvError::Empty) => self.inner.readable().await?,
                other => return other,
            }
        }
    }

    /// [`recv`](Connection::recv) that gives up with [`RecvError::Timeout`]
    /// after `timeout`.
    ///
    /// # Cancel safety
    ///
    /// As [`recv`](Connection::recv); a message that began to arrive before
    /// the timeout stays in the connection for the next receive.
    ///
    /// # Errors
    ///
    /// As [`recv`](Connection::recv), and [`RecvError::Timeout`].
    pub async fn recv_timeout<T: DeserializeOwned>(
        &self,
        timeout: Duration,
    ) -> Result<T, RecvError> {
        self.recv_deadline_opt(deadline_after(timeout)).await
    }

    /// [`recv_timeout`](Connection::recv_timeout) with a deadline.
    ///
    /// # Cancel safety
    ///
    /// As [`recv_timeout`](Connection::recv_timeout).
    ///
    /// # Errors
    ///
    /// As [`recv_timeout`](Connection::recv_timeout).
    pub async fn recv_deadline<T: DeserializeOwned>(
        &self,
        deadline: Instant,
    ) -> Result<T, RecvError> {
        self.recv_deadline_opt(Some(deadline)).await
    }

    async fn recv_deadline_opt<T: DeserializeOwned>(
        &self,
        deadline: Option<Instant>,
    ) -> Result<T, RecvError> {
        until(deadline, self.recv::<T>())
            .await
            .unwrap_or(Err(RecvError::Timeout))
    }

    /// Receives a message if a whole one has arrived, without waiting.
    ///
    /// # Errors
    ///
    /// [`RecvError::Empty`] when none has; otherwise as [`recv`](Connection::recv).
    pub fn try_recv<T: DeserializeOwned>(&self) -> Result<T, RecvError> {
        self.get_ref().try_recv()
    }

    /// Receives a byte message if a whole one has arrived, without waiting.
    ///
    /// # Errors
    ///
    /// As [`try_recv`](Connection::try_recv) and [`recv_bytes`](Connection::recv_bytes).
    pub fn try_recv_bytes(&self) -> Result<Vec<u8>, RecvError> {
        self.get_ref().try_recv_bytes()
    }

    /// Receives one message, blocking the thread.
    ///
    /// # Blocking
    ///
    /// Blocks the calling thread until a message arrives: do not call it
    /// from async code.
    ///
    /// # Errors
    ///
    /// As [`recv`](Connection::recv).
    #[doc(alias = "recv")]
    pub fn recv_blocking<T: DeserializeOwned>(&self) -> Result<T, RecvError> {
        self.get_ref().recv()
    }

    /// Receives one byte message, blocking the thread.
    ///
    /// # Blocking
    ///
    /// Blocks the calling thread: do not call it from async code.
    ///
    /// # Errors
    ///
    /// As [`recv_bytes`](Connection::recv_bytes).
    #[doc(alias = "recv_bytes")]
    pub fn recv_bytes_blocking(&self) -> Result<Vec<u8>, RecvError> {
        self.get_ref().recv_bytes()
    }

    /// Receives one message into `buf`, blocking the thread.
    ///
    /// # Blocking
    ///
    /// Blocks the calling thread: do not call it from async code.
    ///
    /// # Errors
    ///
    /// As [`recv_bytes_into`](Connection::recv_bytes_into).
    #[doc(alias = "recv_bytes_into")]
    pub fn recv_bytes_into_blocking(&self, buf: &mut [u8]) -> Result<usize, RecvError> {
        self.get_ref().recv_bytes_into(buf)
    }

    /// Receives one message, blocking the thread for at most `timeout`
    /// before a message begins to arrive.
    ///
    /// # Blocking
    ///
    /// Blocks the calling thread: do not call it from async code.
    ///
    /// # Errors
    ///
    /// As [`recv_timeout`](Connection::recv_timeout).
    pub fn recv_timeout_blocking<T: DeserializeOwned>(
        &self,
        timeout: Duration,
    ) -> Result<T, RecvError> {
        self.get_ref().recv_timeout(timeout)
    }

    /// Whether a message (or end of stream) can be received without
    /// waiting, after waiting up to `timeout` (`None`: as long as it takes)
    /// (aioprocessing's `coro_poll`).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only waits, and consumes nothing.
    ///
    /// # Errors
    ///
    /// The error of `poll(2)` or of the reactor.
    #[doc(alias = "coro_poll")]
    pub async fn poll(&self, timeout: Option<Duration>) -> io::Result<bool> {
        let deadline = timeout.and_then(deadline_after);
        let wait = async {
            loop {
                if self.get_ref().poll(Some(Duration::ZERO))? {
                    return Ok(true);
                }
                self.inner.readable().await?;
            }
        };
        match until(deadline, wait).await {
            Some(r) => r,
            None => self.get_ref().poll(Some(Duration::ZERO)),
        }
    }

    /// [`poll`](Connection::poll), blocking the thread.
    ///
    /// # Blocking
    ///
    /// Blocks the calling thread up to `timeout`: do not call it from async code.
    ///
    /// # Errors
    ///
    /// The error of `poll(2)`.
    #[doc(alias = "poll")]
    pub fn poll_blocking(&self, timeout: Option<Duration>) -> io::Result<bool> {
        self.get_ref().poll(timeout)
    }

    /// Closes this end (Python's `close`); dropping it does the same.
    pub fn close(self) {
        drop(self);
    }
}

impl AsFd for Connection {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.get_ref().as_fd()
    }
}

impl Waitable for Connection {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }
    fn ready_now(&self) -> bool {
        self.get_ref().ready_now()
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Connection").field(self.get_ref()).finish()
    }
}

impl TryFrom<core::Connection> for Connection {
    type Error = io::Error;
    fn try_from(conn: core::Connection) -> io::Result<Connection> {
        Connection::new(conn)
    }
}

impl From<Connection> for core::Connection {
    fn from(conn: Connection) -> core::Connection {
        conn.into_core()
    }
}

/// Serializes exactly as the core connection (a duplicate of the socket
/// travels with the message).
impl Serialize for Connection {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.get_ref().serialize(serializer)
    }
}

/// Deserializes a connection sent as a core or async one, and registers it
/// with the reactor.
impl<'de> Deserialize<'de> for Connection {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Connection, D::Error> {
        let conn = core::Connection::deserialize(deserializer)?;
        Connection::new(conn).map_err(serde::de::Error::custom)
    }
}

/// A bound socket that accepts async [`Connection`]s from [`client`]s
/// (Python's `Listener`), wrapping the core
/// [`Listener`](aiop_core::connection::Listener).
///
/// # Examples
///
/// ```
/// use aiop_async::connection::{client, Address, Listener};
///
/// futures_lite::future::block_on(async {
///     let listener = Listener::bind(&"@aiop-async-doc".parse::<Address>()?, Some(b"key"))?;
///     let address = listener.address().clone();
///     let (server, peer) = futures_lite::future::zip(listener.accept(), client(&address, Some(b"key"))).await;
///     server?.send(&7u8).await?;
///     assert_eq!(peer?.recv::<u8>().await?, 7);
///     Ok::<(), Box<dyn std::error::Error>>(())
/// })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Listener {
    inner: Async<core::Listener>,
}

impl Listener {
    /// Binds `address` (see the core's
    /// [`bind`](aiop_core::connection::Listener::bind)).
    ///
    /// # Errors
    ///
    /// As the core's `bind`, or the reactor's registration error.
    pub fn bind(address: &Address, authkey: Option<&[u8]>) -> io::Result<Listener> {
        Listener::new(core::Listener::bind(address, authkey)?)
    }

    /// Registers a core listener (configure its handshake timeout first).
    ///
    /// # Errors
    ///
    /// The reactor's registration error.
    pub fn new(listener: core::Listener) -> io::Result<Listener> {
        Ok(Listener {
            inner: Async::new_nonblocking(listener)?,
        })
    }

    /// The core listener, borrowed.
    pub fn get_ref(&self) -> &core::Listener {
        self.inner.get_ref()
    }

    /// The address bound.
    pub fn address(&self) -> &Address {
        self.get_ref().address()
    }

    /// The peer address of the last accepted connection.
    pub fn last_accepted(&self) -> Option<Address> {
        self.get_ref().last_accepted()
    }

    /// Awaits a client, runs the handshake with it (asynchronously, on the
    /// accepted socket, within the listener's handshake timeout) and returns
    /// the connection.
    ///
    /// A client that stays silent costs this call at most the handshake
    /// timeout, and blocks no thread meanwhile; other tasks (and another
    /// `accept` for the next client) keep running.
    ///
    /// # Cancel safety
    ///
    /// If the future is dropped while no client has been taken, nothing is
    /// lost. If it is dropped during a client's handshake, that client's
    /// connection is closed (the client sees its handshake fail).
    ///
    /// # Errors
    ///
    /// As the core's [`accept`](aiop_core::connection::Listener::accept):
    /// an [`AuthenticationError`] inside `PermissionDenied`, `TimedOut`,
    /// `InvalidData`, `UnexpectedEof`; each concerns one client only.
    pub async fn accept(&self) -> io::Result<Connection> {
        let mut pending = loop {
            match self.get_ref().try_accept_handshaking() {
                Err(e) if is_would_block(&e) => self.inner.readable().await?,
                other => break other?,
            }
        };
        let deadline = deadline_after(self.get_ref().handshake_timeout());
        drive(&mut pending, deadline).await?;
        Connection::new(self.get_ref().finish_accept(pending)?)
    }

    /// Accepts a client, blocking the thread.
    ///
    /// # Blocking
    ///
    /// Blocks the calling thread until a client completes the handshake:
    /// do not call it from async code.
    ///
    /// # Errors
    ///
    /// As [`accept`](Listener::accept).
    #[doc(alias = "accept")]
    pub fn accept_blocking(&self) -> io::Result<Connection> {
        Connection::new(self.get_ref().accept()?)
    }

    /// Stops listening (Python's `close`); dropping does the same.
    pub fn close(self) {
        drop(self);
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.get_ref().as_fd()
    }
}

impl Waitable for Listener {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Listener").field(self.get_ref()).finish()
    }
}

/// Drives a handshake to its end, awaiting the socket's readiness, until
/// `deadline`.
async fn drive(h: &mut core::Handshaking, deadline: Option<Instant>) -> io::Result<()> {
    // A duplicate registered with the reactor: the handshake itself needs
    // `&mut`, which `Async` does not give without unsafe code.
    let watch = Async::new_nonblocking(h.as_fd().try_clone_to_owned()?)?;
    let run = async {
        loop {
            match h.advance() {
                Err(e) if is_would_block(&e) => {
                    if h.wants_write() {
                        watch.writable().await?;
                    } else {
                        watch.readable().await?;
                    }
                }
                other => return other,
            }
        }
    };
    until(deadline, run).await.unwrap_or_else(|| {
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "connection handshake: the peer did not answer in time",
        ))
    })
}

/// Connects to the [`Listener`] at `address` and runs the handshake within
/// [`DEFAULT_HANDSHAKE_TIMEOUT`] (Python's `Client`).
///
/// A TCP connect is awaited; a Unix socket connect completes at once (it
/// waits only while the listener's backlog is full).
///
/// # Cancel safety
///
/// If the future is dropped, the half-made connection is closed; nothing
/// else is affected.
///
/// # Errors
///
/// As the core's [`client`](aiop_core::connection::client).
pub async fn client(address: &Address, authkey: Option<&[u8]>) -> io::Result<Connection> {
    client_timeout(address, authkey, DEFAULT_HANDSHAKE_TIMEOUT).await
}

/// [`client`] with a handshake timeout (which also bounds a TCP connect).
///
/// # Cancel safety
///
/// As [`client`].
///
/// # Errors
///
/// As [`client`].
pub async fn client_timeout(
    address: &Address,
    authkey: Option<&[u8]>,
    timeout: Duration,
) -> io::Result<Connection> {
    let deadline = deadline_after(timeout);
    let fd: OwnedFd = match address {
        Address::Unix(path) => UnixStream::connect(path)?.into(),
        Address::Abstract(name) => {
            UnixStream::connect_addr(&UnixSocketAddr::from_abstract_name(name)?)?.into()
        }
        Address::Tcp(a) => {
            let connect = Async::<TcpStream>::connect(*a);
            let s = until(deadline, connect).await.unwrap_or_else(|| {
                Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
            })?;
            let s = s.into_inner()?;
            // Back to blocking mode: the socket may be shared with blocking code.
            s.set_nonblocking(false)?;
            s.set_nodelay(true)?;
            s.into()
        }
    };
    let mut h = core::Handshaking::client(fd, authkey)?;
    drive(&mut h, deadline).await?;
    Connection::new(h.into_connection()?)
}

/// Awaits until at least one of `objects` is ready, or `timeout` passes
/// (`None`: no limit), and returns the indexes of the ready ones; empty on
/// timeout. The async twin of [`aiop_core::connection::wait`] (Python's
/// `multiprocessing.connection.wait`): connections (async or core),
/// listeners, processes (their sentinels) and descriptors.
///
/// # Cancel safety
///
/// Cancel safe: it only waits, and consumes nothing.
///
/// # Errors
///
/// The error of `poll(2)`, of duplicating a descriptor or of the reactor.
pub async fn wait(
    objects: &[&(dyn Waitable + Sync)],
    timeout: Option<Duration>,
) -> io::Result<Vec<usize>> {
    let deadline = timeout.and_then(deadline_after);
    let ready = ready_now(objects)?;
    if !ready.is_empty() || timeout == Some(Duration::ZERO) {
        return Ok(ready);
    }
    let watched = objects
        .iter()
        .map(|o| Async::new_nonblocking(o.wait_fd().try_clone_to_owned()?))
        .collect::<io::Result<Vec<_>>>()?;
    loop {
        let any = future::poll_fn(|cx| {
            for w in &watched {
                if let Poll::Ready(r) = w.poll_readable(cx) {
                    return Poll::Ready(r);
                }
            }
            Poll::Pending
        });
        let timed_out = until(deadline, pin!(any)).await.transpose()?.is_none();
        let ready = ready_now(objects)?;
        if !ready.is_empty() || timed_out {
            return Ok(ready);
        }
    }
}

/// The indexes of the objects ready now.
fn ready_now(objects: &[&(dyn Waitable + Sync)]) -> io::Result<Vec<usize>> {
    let objects: Vec<&dyn Waitable> = objects.iter().map(|o| *o as &dyn Waitable).collect();
    core::wait(&objects, Some(Duration::ZERO))
}

/// [`wait`], blocking the thread.
///
/// # Blocking
///
/// Blocks the calling thread up to `timeout`: do not call it from async code.
///
/// # Errors
///
/// The error of `poll(2)`.
#[doc(alias = "wait")]
pub fn wait_blocking(
    objects: &[&dyn Waitable],
    timeout: Option<Duration>,
) -> io::Result<Vec<usize>> {
    core::wait(objects, timeout)
}
