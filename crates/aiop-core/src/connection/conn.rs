//! [`Connection`]: framed, typed messages with descriptors on a stream socket.

use std::fmt;
use std::io;
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustix::net::AddressFamily;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::RecvError;
use super::fd::Fd;
use super::wait::{deadline_after, readable_by, writable_by};
use crate::sys::fdpass::{self, Frame};
use crate::transfer::{self, Inbound, Outbound, Refs};

/// The default largest message a connection sends or receives: 64 MiB.
pub const DEFAULT_MAX_MESSAGE: usize = 64 << 20;

/// One end of a two-way (or one-way) message channel between processes:
/// Python's `multiprocessing.connection.Connection`.
///
/// Made by [`pipe`](super::pipe), [`Listener::accept`](super::Listener::accept)
/// and [`client`](super::client), or from a connected socket with
/// [`from_unix_stream`](Connection::from_unix_stream) /
/// [`from_tcp_stream`](Connection::from_tcp_stream).
///
/// A message is a frame: a little-endian `u32` length and a `u32` descriptor
/// count, then the payload (see [`fdpass`](crate::fdpass)). Typed messages
/// ([`send`](Connection::send) / [`recv`](Connection::recv)) are postcard;
/// byte messages ([`send_bytes`](Connection::send_bytes) /
/// [`recv_bytes`](Connection::recv_bytes)) are the bytes as given. A typed
/// message that holds no handle is exactly its postcard encoding, so either
/// side may use either form for it.
///
/// # Handles and descriptors
///
/// On a Unix socket, a message may hold aiop handles (a `Lock`, an `Event`, a
/// `Value`, a [`Segment`](crate::shm::Segment), another `Connection`, ...) and
/// sockets or files wrapped in [`Fd`]: their descriptors travel with the
/// message as `SCM_RIGHTS`, and they arrive usable. Over TCP, such a message
/// is refused with `InvalidInput` before anything is sent.
///
/// A `Connection` is itself such a handle: sending one (or passing it in a
/// spawned process's arguments) gives the receiver a duplicate of the socket.
/// The sender's copy stays open; drop it when the receiver alone should own
/// the end (the peer sees end of stream only once every copy is closed).
///
/// # Threads
///
/// `Connection` is `Send + Sync`. Concurrent senders never interleave: each
/// message is written whole under a lock. Concurrent receivers take whole
/// messages in turn.
///
/// # Limits
///
/// A message longer than the maximum ([`DEFAULT_MAX_MESSAGE`] unless
/// [set](Connection::set_max_message_size)) is refused by the sender
/// (`InvalidInput`) and by the receiver, which checks the length prefix
/// before allocating anything (`InvalidData`).
///
/// # Examples
///
/// ```
/// let (a, b) = aiop_core::connection::pipe(true)?;
/// a.send(&("hello", 42u32))?;
/// let (word, n): (String, u32) = b.recv()?;
/// assert_eq!((word.as_str(), n), ("hello", 42));
/// b.send_bytes(b"raw")?;
/// assert_eq!(a.recv_bytes()?, b"raw");
/// drop(b);
/// assert!(a.recv::<u32>().unwrap_err().is_closed());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Connection {
    sock: OwnedFd,
    /// A Unix socket (descriptors can travel), not TCP.
    unix: bool,
    readable: bool,
    writable: bool,
    max_len: usize,
    /// The unwritten rest of a committed outgoing frame. Held only for
    /// non-blocking writes, never while waiting.
    send_lock: Mutex<SendState>,
    /// The part of an incoming frame that has arrived, and a message that did
    /// not fit a [`Connection::recv_bytes_into`] buffer. Held only for
    /// non-blocking reads, never while waiting.
    recv_lock: Mutex<RecvState>,
    /// Whether `recv_lock` holds a kept message (readable without locking).
    has_pending: AtomicBool,
}

#[derive(Default)]
struct SendState {
    /// The frame being written and how much of it went.
    pending: Vec<u8>,
    sent: usize,
    /// An error cut a frame in half: the stream is unusable for sending.
    broken: Option<io::ErrorKind>,
}

#[derive(Default)]
struct RecvState {
    kept: Option<Frame>,
    partial: fdpass::PartialFrame,
}

/// A message encoded for one [`Connection`], to be sent without waiting
/// with [`Connection::try_send_encoded`]: the frame's bytes and the
/// descriptors (and handle reference counts) that travel with it.
///
/// Dropping it unsent gives the handles' counts back; nothing is sent.
pub struct Encoded {
    frame: Vec<u8>,
    out: Outbound,
}

impl fmt::Debug for Encoded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encoded")
            .field("len", &self.frame.len())
            .field("fds", &self.out.fds().len())
            .finish()
    }
}

/// When a receive gives up.
#[derive(Clone, Copy)]
enum Until {
    Forever,
    At(Instant),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

impl Connection {
    /// A connection on a connected Unix stream socket, readable and writable.
    pub fn from_unix_stream(stream: UnixStream) -> Connection {
        Connection::new(stream.into(), true, true, true)
    }

    /// A connection on a connected TCP stream (with `TCP_NODELAY` set, as
    /// message round trips want). Descriptors cannot travel over it.
    ///
    /// # Errors
    ///
    /// The error of setting `TCP_NODELAY`.
    pub fn from_tcp_stream(stream: TcpStream) -> io::Result<Connection> {
        stream.set_nodelay(true)?;
        Ok(Connection::new(stream.into(), false, true, true))
    }

    pub(crate) fn new(sock: OwnedFd, unix: bool, readable: bool, writable: bool) -> Connection {
        Connection {
            sock,
            unix,
            readable,
            writable,
            max_len: DEFAULT_MAX_MESSAGE,
            send_lock: Mutex::new(SendState::default()),
            recv_lock: Mutex::new(RecvState::default()),
            has_pending: AtomicBool::new(false),
        }
    }

    /// Whether this end can receive (false for the writing end of a one-way pipe).
    pub fn readable(&self) -> bool {
        self.readable
    }

    /// Whether this end can send (false for the reading end of a one-way pipe).
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// The largest message this end sends or receives, in bytes.
    pub fn max_message_size(&self) -> usize {
        self.max_len
    }

    /// Sets the largest message this end sends or receives (at most
    /// `u32::MAX`, what a frame's length prefix can say; larger values mean
    /// that). Both ends should agree: the receiver's limit is the one that
    /// protects it.
    pub fn set_max_message_size(&mut self, max: usize) {
        self.max_len = max.min(u32::MAX as usize);
    }

    fn check_writable(&self) -> io::Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "this end of a one-way pipe is read-only: it cannot send",
            ))
        }
    }

    fn check_readable(&self) -> Result<(), RecvError> {
        if self.readable {
            Ok(())
        } else {
            Err(RecvError::Io(io::Error::new(
                io::ErrorKind::Unsupported,
                "this end of a one-way pipe is write-only: it cannot receive",
            )))
        }
    }

    /// Sends `value` as one message (postcard), with the descriptors of any
    /// handles in it.
    ///
    /// # Errors
    ///
    /// `InvalidData` when `value` does not serialize (a handle over TCP
    /// does not), `InvalidInput` when the message exceeds the maximum size
    /// or a Unix socket's 253 descriptors, or holds descriptors on a TCP
    /// connection; `BrokenPipe` when the peer is gone; `Unsupported` on the
    /// read-only end of a one-way pipe.
    pub fn send<T: Serialize + ?Sized>(&self, value: &T) -> io::Result<()> {
        let msg = self.encode(value)?;
        self.send_encoded(msg)
    }

    /// Sends `bytes` as one message (Python's `send_bytes`; slice it for an
    /// offset and size).
    ///
    /// # Errors
    ///
    /// As [`send`](Connection::send).
    pub fn send_bytes(&self, bytes: &[u8]) -> io::Result<()> {
        let msg = self.encode_bytes(bytes)?;
        self.send_encoded(msg)
    }

    /// Encodes `value` as one message for this connection, to be sent with
    /// [`try_send_encoded`](Connection::try_send_encoded) (the first half of
    /// [`send`](Connection::send), for callers that wait in their own way).
    ///
    /// # Errors
    ///
    /// As [`send`](Connection::send), except for the socket's errors.
    pub fn encode<T: Serialize + ?Sized>(&self, value: &T) -> io::Result<Encoded> {
        self.check_writable()?;
        let mut body = Vec::new();
        let mut out = Outbound::default();
        transfer::encode(value, &mut body, &mut out)?;
        let nfds = out.fds().len();
        if nfds != 0 && !self.unix {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "descriptors (aiop handles, sockets) can only travel over a Unix socket connection, not TCP",
            ));
        }
        // A message with descriptors starts with the slot counts it carries
        // (see `transfer`); one without is the bare postcard value.
        let refs = if nfds == 0 {
            Vec::new()
        } else {
            postcard::to_allocvec(&out.refs()).map_err(|e| invalid(e.to_string()))?
        };
        fdpass::check_frame(refs.len() + body.len(), nfds, self.max_len)?;
        let frame = fdpass::encode_frame(&[&refs, &body], nfds)?;
        Ok(Encoded { frame, out })
    }

    /// [`encode`](Connection::encode) for a byte message.
    ///
    /// # Errors
    ///
    /// As [`send_bytes`](Connection::send_bytes), except for the socket's errors.
    pub fn encode_bytes(&self, bytes: &[u8]) -> io::Result<Encoded> {
        self.check_writable()?;
        fdpass::check_frame(bytes.len(), 0, self.max_len)?;
        let frame = fdpass::encode_frame(&[bytes], 0)?;
        Ok(Encoded {
            frame,
            out: Outbound::default(),
        })
    }

    /// Sends `value` as one message if the socket takes it without waiting.
    ///
    /// `Ok` means the message is committed: it was written whole, or its
    /// start (with its descriptors) was written and the rest is buffered in
    /// this connection, to be written before any later message by the next
    /// send of any kind or by [`try_flush`](Connection::try_flush). Dropping
    /// the connection with a rest buffered cuts the message off: the peer's
    /// receive fails with `UnexpectedEof`.
    ///
    /// # Errors
    ///
    /// `WouldBlock` when nothing could be written (nothing of the message
    /// was, and the rest of an earlier message may still be buffered);
    /// otherwise as [`send`](Connection::send).
    pub fn try_send<T: Serialize + ?Sized>(&self, value: &T) -> io::Result<()> {
        let mut msg = Some(self.encode(value)?);
        self.try_send_encoded(&mut msg)
    }

    /// [`try_send`](Connection::try_send) for a byte message.
    ///
    /// # Errors
    ///
    /// As [`try_send`](Connection::try_send).
    pub fn try_send_bytes(&self, bytes: &[u8]) -> io::Result<()> {
        let mut msg = Some(self.encode_bytes(bytes)?);
        self.try_send_encoded(&mut msg)
    }

    /// Commits an [encoded](Connection::encode) message without waiting, as
    /// [`try_send`](Connection::try_send) does: on `Ok` the message is taken
    /// out of `msg` (written, or its rest buffered); on `WouldBlock` it stays
    /// in `msg` for another try, and nothing of it was written. A `msg` that
    /// is `None` is `Ok` at once.
    ///
    /// # Errors
    ///
    /// As [`try_send`](Connection::try_send).
    pub fn try_send_encoded(&self, msg: &mut Option<Encoded>) -> io::Result<()> {
        let Some(m) = msg.as_ref() else {
            return Ok(());
        };
        let mut st = lock(&self.send_lock);
        self.flush_locked(&mut st)?;
        let fds = m.out.fds();
        let n = fdpass::send_frame_nonblocking(self.sock.as_fd(), &m.frame, &fds)?;
        drop(fds);
        let m = msg.take().expect("checked above");
        m.out.delivered();
        if n < m.frame.len() {
            st.pending = m.frame;
            st.sent = n;
        }
        Ok(())
    }

    /// Writes, without waiting, the buffered rest of a message committed by
    /// a `try_` send (or by a send whose waiting was given up).
    ///
    /// # Errors
    ///
    /// `WouldBlock` when part of it is still buffered; the socket's error
    /// otherwise (the cut-off message then makes this end unusable for
    /// sending: later sends fail with an error of the same kind).
    pub fn try_flush(&self) -> io::Result<()> {
        self.flush_locked(&mut lock(&self.send_lock))
    }

    /// Whether part of a committed message still waits to be written.
    pub fn has_unflushed(&self) -> bool {
        !lock(&self.send_lock).pending.is_empty()
    }

    fn flush_locked(&self, st: &mut SendState) -> io::Result<()> {
        if let Some(kind) = st.broken {
            return Err(io::Error::new(
                kind,
                "an earlier message was cut off by an error: this connection can no longer send",
            ));
        }
        while st.sent < st.pending.len() {
            match fdpass::send_nonblocking(self.sock.as_fd(), &st.pending[st.sent..]) {
                Ok(n) => st.sent += n,
                Err(e) => {
                    if e.kind() != io::ErrorKind::WouldBlock {
                        st.broken = Some(e.kind());
                        st.pending = Vec::new();
                        st.sent = 0;
                    }
                    return Err(e);
                }
            }
        }
        st.pending = Vec::new();
        st.sent = 0;
        Ok(())
    }

    /// Sends an encoded message, waiting for room in the socket (without
    /// holding a lock while waiting).
    fn send_encoded(&self, msg: Encoded) -> io::Result<()> {
        let mut msg = Some(msg);
        loop {
            match self.try_send_encoded(&mut msg) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait_writable()?,
                Err(e) => return Err(e),
            }
        }
        self.flush()
    }

    /// Waits until every committed message is written whole.
    ///
    /// # Errors
    ///
    /// As [`try_flush`](Connection::try_flush), without `WouldBlock`.
    pub fn flush(&self) -> io::Result<()> {
        loop {
            match self.try_flush() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait_writable()?,
                other => return other,
            }
        }
    }

    fn wait_writable(&self) -> io::Result<()> {
        writable_by(self.sock.as_fd(), None).map(drop)
    }

    /// Sends one descriptor (a socket, a file, a pidfd, ...) to be taken
    /// with [`recv_fd`](Connection::recv_fd) (Python's
    /// `multiprocessing.reduction.send_handle`). The descriptor is
    /// duplicated into the receiver; the caller keeps its own.
    ///
    /// # Errors
    ///
    /// As [`send`](Connection::send).
    pub fn send_fd(&self, fd: impl AsFd) -> io::Result<()> {
        self.send(&Fd::new(fd.as_fd()))
    }

    /// Receives a descriptor sent with [`send_fd`](Connection::send_fd)
    /// (Python's `recv_handle`). It is `CLOEXEC`.
    ///
    /// # Errors
    ///
    /// As [`recv`](Connection::recv).
    pub fn recv_fd(&self) -> Result<OwnedFd, RecvError> {
        self.recv::<Fd<OwnedFd>>().map(Fd::into_inner)
    }

    /// Receives one message and decodes it as `T`; handles in it come with
    /// their descriptors, usable here.
    ///
    /// # Errors
    ///
    /// [`RecvError::Closed`] at end of stream (the peer closed or died);
    /// `RecvError::Io` with `InvalidData` for a message that is oversized,
    /// malformed or not a `T`.
    pub fn recv<T: DeserializeOwned>(&self) -> Result<T, RecvError> {
        self.recv_until(Until::Forever)
    }

    /// [`recv`](Connection::recv) that gives up with [`RecvError::Timeout`]
    /// when no message begins to arrive within `timeout`. A message that has
    /// begun is read to its end.
    ///
    /// # Errors
    ///
    /// As [`recv`](Connection::recv), and [`RecvError::Timeout`].
    pub fn recv_timeout<T: DeserializeOwned>(&self, timeout: Duration) -> Result<T, RecvError> {
        self.recv_until(Until::At(deadline_after(timeout)))
    }

    /// [`recv_timeout`](Connection::recv_timeout) with a deadline.
    ///
    /// # Errors
    ///
    /// As [`recv_timeout`](Connection::recv_timeout).
    pub fn recv_deadline<T: DeserializeOwned>(&self, deadline: Instant) -> Result<T, RecvError> {
        self.recv_until(Until::At(deadline))
    }

    /// Receives one message if a whole one has arrived, without waiting.
    /// Part of a message that has arrived is kept in the connection, and
    /// the next receive of any kind continues it.
    ///
    /// # Errors
    ///
    /// [`RecvError::Empty`] when no whole message is there yet; otherwise
    /// as [`recv`](Connection::recv).
    pub fn try_recv<T: DeserializeOwned>(&self) -> Result<T, RecvError> {
        let frame = self.try_frame()?;
        decode_frame(frame)
    }

    /// [`try_recv`](Connection::try_recv) for a byte message.
    ///
    /// # Errors
    ///
    /// As [`try_recv`](Connection::try_recv) and [`recv_bytes`](Connection::recv_bytes).
    pub fn try_recv_bytes(&self) -> Result<Vec<u8>, RecvError> {
        Ok(plain(self.try_frame()?)?)
    }

    /// [`recv_bytes_into`](Connection::recv_bytes_into) without waiting.
    ///
    /// # Errors
    ///
    /// As [`try_recv`](Connection::try_recv) and
    /// [`recv_bytes_into`](Connection::recv_bytes_into).
    pub fn try_recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize, RecvError> {
        self.check_readable()?;
        let mut st = lock(&self.recv_lock);
        let frame = match st.kept.take() {
            Some(f) => f,
            None => self.read_step(&mut st)?,
        };
        let needed = frame.payload.len();
        if needed > buf.len() && frame.fds.is_empty() {
            st.kept = Some(frame);
            // Release: the kept frame is published before the flag (poll reads it).
            self.has_pending.store(true, Ordering::Release);
            return Err(RecvError::BufferTooShort { needed });
        }
        self.has_pending.store(false, Ordering::Release);
        drop(st);
        let bytes = plain(frame)?;
        buf[..needed].copy_from_slice(&bytes);
        Ok(needed)
    }

    /// Receives one message, waiting inside the receive call itself (not in
    /// `poll`) while holding the receive lock: one wake-up less per message.
    /// For a caller that is the only receiver of this connection in its
    /// process (the manager's client, whose readers take turns): another
    /// receiver would wait for the lock meanwhile, whatever its deadline.
    /// On a socket someone put in non-blocking mode it waits with `poll`.
    ///
    /// # Errors
    ///
    /// As [`recv`](Connection::recv).
    #[doc(hidden)]
    pub fn recv_exclusive<T: DeserializeOwned>(&self) -> Result<T, RecvError> {
        self.check_readable()?;
        let frame = {
            let mut st = lock(&self.recv_lock);
            if let Some(f) = st.kept.take() {
                self.has_pending.store(false, Ordering::Release);
                Ok(f)
            } else {
                match st.partial.read_waiting(self.sock.as_fd(), self.max_len) {
                    Ok(Some(frame)) => Ok(frame),
                    Ok(None) => Err(RecvError::Closed),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(RecvError::Empty),
                    Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Err(RecvError::Closed),
                    Err(e) => Err(RecvError::Io(e)),
                }
            }
        };
        match frame {
            Err(RecvError::Empty) => self.recv(),
            other => decode_frame(other?),
        }
    }

    fn recv_until<T: DeserializeOwned>(&self, until: Until) -> Result<T, RecvError> {
        let frame = self.next_frame(until)?;
        decode_frame(frame)
    }

    /// Receives one message as bytes (Python's `recv_bytes`).
    ///
    /// # Errors
    ///
    /// As [`recv`](Connection::recv); a message that carries descriptors
    /// (handles) is `InvalidData` here and is discarded: receive it with
    /// `recv`.
    pub fn recv_bytes(&self) -> Result<Vec<u8>, RecvError> {
        self.recv_bytes_until(Until::Forever)
    }

    /// [`recv_bytes`](Connection::recv_bytes) that gives up with
    /// [`RecvError::Timeout`] when no message begins within `timeout`.
    ///
    /// # Errors
    ///
    /// As [`recv_bytes`](Connection::recv_bytes), and [`RecvError::Timeout`].
    pub fn recv_bytes_timeout(&self, timeout: Duration) -> Result<Vec<u8>, RecvError> {
        self.recv_bytes_until(Until::At(deadline_after(timeout)))
    }

    /// [`recv_bytes_timeout`](Connection::recv_bytes_timeout) with a deadline.
    ///
    /// # Errors
    ///
    /// As [`recv_bytes_timeout`](Connection::recv_bytes_timeout).
    pub fn recv_bytes_deadline(&self, deadline: Instant) -> Result<Vec<u8>, RecvError> {
        self.recv_bytes_until(Until::At(deadline))
    }

    fn recv_bytes_until(&self, until: Until) -> Result<Vec<u8>, RecvError> {
        let frame = self.next_frame(until)?;
        Ok(plain(frame)?)
    }

    /// Receives one message into `buf` and returns its length (Python's
    /// `recv_bytes_into`).
    ///
    /// # Errors
    ///
    /// [`RecvError::BufferTooShort`] when the message is longer than `buf`:
    /// the message is kept, and the next receive (of any kind) returns it.
    /// Otherwise as [`recv_bytes`](Connection::recv_bytes).
    ///
    /// # Examples
    ///
    /// ```
    /// use aiop_core::connection::{pipe, RecvError};
    ///
    /// let (a, b) = pipe(true)?;
    /// a.send_bytes(b"twelve bytes")?;
    /// let mut small = [0u8; 4];
    /// assert!(matches!(b.recv_bytes_into(&mut small), Err(RecvError::BufferTooShort { needed: 12 })));
    /// let mut big = [0u8; 64];
    /// let n = b.recv_bytes_into(&mut big)?;
    /// assert_eq!(&big[..n], b"twelve bytes");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize, RecvError> {
        loop {
            match self.try_recv_bytes_into(buf) {
                Err(RecvError::Empty) => self.wait_readable(Until::Forever)?,
                other => return other,
            }
        }
    }

    /// The next frame, waiting for it (without holding a lock) until `until`
    /// unless part of it has arrived.
    fn next_frame(&self, until: Until) -> Result<Frame, RecvError> {
        loop {
            match self.try_frame() {
                Err(RecvError::Empty) => self.wait_readable(until)?,
                other => return other,
            }
        }
    }

    /// Waits until the socket is readable; a frame that has begun is waited
    /// for without a deadline.
    fn wait_readable(&self, until: Until) -> Result<(), RecvError> {
        let deadline = match until {
            Until::At(d) if !lock(&self.recv_lock).partial.is_started() => Some(d),
            _ => None,
        };
        if readable_by(self.sock.as_fd(), deadline)? {
            Ok(())
        } else {
            Err(RecvError::Timeout)
        }
    }

    /// The next frame without waiting: a kept one, or one read from the socket.
    fn try_frame(&self) -> Result<Frame, RecvError> {
        self.check_readable()?;
        let mut st = lock(&self.recv_lock);
        if let Some(f) = st.kept.take() {
            self.has_pending.store(false, Ordering::Release);
            return Ok(f);
        }
        self.read_step(&mut st)
    }

    /// Continues the partial frame; the caller holds `recv_lock`.
    fn read_step(&self, st: &mut RecvState) -> Result<Frame, RecvError> {
        match st.partial.read(self.sock.as_fd(), self.max_len) {
            Ok(Some(frame)) => Ok(frame),
            Ok(None) => Err(RecvError::Closed),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(RecvError::Empty),
            // A peer that closes (or dies) with unread data in its own
            // queue makes ours report a reset once our queue is drained.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Err(RecvError::Closed),
            Err(e) => Err(RecvError::Io(e)),
        }
    }

    /// Whether a message (or end of stream) can be received without
    /// waiting, after waiting up to `timeout` for one (`None`: as long as it
    /// takes; `Some(Duration::ZERO)`: just look). Python's `poll`.
    ///
    /// # Errors
    ///
    /// The error of `poll(2)`.
    pub fn poll(&self, timeout: Option<Duration>) -> io::Result<bool> {
        if self.has_pending.load(Ordering::Acquire) {
            return Ok(true);
        }
        readable_by(self.sock.as_fd(), timeout.map(deadline_after))
    }

    /// Whether a kept message is waiting (for `wait`).
    pub(crate) fn has_pending(&self) -> bool {
        self.has_pending.load(Ordering::Acquire)
    }

    /// Closes this end (Python's `close`); dropping it does the same. The
    /// peer sees end of stream once every copy of this end (sent to other
    /// processes, say) is closed.
    pub fn close(self) {
        drop(self);
    }
}

/// Decodes a received frame as `T`, with its descriptors.
fn decode_frame<T: DeserializeOwned>(frame: Frame) -> Result<T, RecvError> {
    let (refs, body): (Refs, &[u8]) = if frame.fds.is_empty() {
        (Vec::new(), &frame.payload)
    } else {
        postcard::take_from_bytes::<Refs>(&frame.payload)
            .map_err(|_| invalid("a message with descriptors has a malformed header"))?
    };
    let (value, inbound) = transfer::decode::<T>(body, Inbound::new(frame.fds, refs));
    drop(inbound);
    Ok(value?)
}

/// A frame as plain bytes; one that carries descriptors is refused (and its
/// descriptors and slot counts given back).
fn plain(frame: Frame) -> io::Result<Vec<u8>> {
    if frame.fds.is_empty() {
        return Ok(frame.payload);
    }
    if let Ok((refs, _)) = postcard::take_from_bytes::<Refs>(&frame.payload) {
        drop(Inbound::new(frame.fds, refs));
    }
    Err(invalid(
        "this message carries descriptors (aiop handles or sockets): receive it with recv, not as bytes",
    ))
}

impl AsFd for Connection {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("fd", &self.sock)
            .field("unix", &self.unix)
            .field("readable", &self.readable)
            .field("writable", &self.writable)
            .field("max_message_size", &self.max_len)
            .finish_non_exhaustive()
    }
}

/// A connection travels as (descriptor index, readable, writable, maximum).
impl Serialize for Connection {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let index = transfer::push_fd(self.sock.as_fd()).map_err(serde::ser::Error::custom)?;
        (index, self.readable, self.writable, self.max_len as u64).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Connection {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Connection, D::Error> {
        let (index, readable, writable, max) = <(u32, bool, bool, u64)>::deserialize(deserializer)?;
        let fd = transfer::take_fd(index).map_err(serde::de::Error::custom)?;
        let unix = match rustix::net::sockopt::socket_domain(&fd) {
            Ok(AddressFamily::UNIX) => true,
            Ok(AddressFamily::INET | AddressFamily::INET6) => false,
            _ => {
                let why = "a Connection arrived with a descriptor that is not a Unix or TCP socket";
                transfer::note_decode_error(&why);
                return Err(serde::de::Error::custom(why));
            }
        };
        let mut conn = Connection::new(fd, unix, readable, writable);
        conn.set_max_message_size(usize::try_from(max).unwrap_or(usize::MAX));
        Ok(conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn a_connection_is_send_and_sync() {
        assert_send_sync::<Connection>();
    }

    #[test]
    fn handles_over_tcp_are_refused_before_sending() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        let a = Connection::from_tcp_stream(c).unwrap();
        let b = Connection::from_tcp_stream(s).unwrap();
        let (p, _q) = super::super::pipe(true).unwrap();
        let e = a.send(&p).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        a.send(&7u8).unwrap();
        assert_eq!(b.recv::<u8>().unwrap(), 7);
    }

    #[test]
    fn a_message_over_the_senders_limit_is_refused() {
        let (mut a, _b) = super::super::pipe(true).unwrap();
        a.set_max_message_size(16);
        assert_eq!(a.max_message_size(), 16);
        let e = a.send_bytes(&[0; 17]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn a_handle_message_is_not_plain_bytes() {
        let (a, b) = super::super::pipe(true).unwrap();
        let (p, _q) = super::super::pipe(true).unwrap();
        a.send(&p).unwrap();
        let e = b.recv_bytes().unwrap_err();
        assert!(e.to_string().contains("receive it with recv"), "{e}");
    }
}
