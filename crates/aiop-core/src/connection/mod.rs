//! Connections: typed messages, descriptors and handles between processes.
//!
//! * [`pipe`] makes a pair of connected [`Connection`]s, two-way or one-way.
//! * A [`Connection`] sends and receives typed messages (postcard) and byte
//!   messages; on a Unix socket a message may carry aiop handles and
//!   descriptors ([`Fd`]), which arrive usable in the receiving process.
//! * [`wait`] blocks until any of several connections, listeners or
//!   processes is ready.
//! * [`Listener`] and [`client`] connect unrelated processes over a Unix
//!   socket path, the Linux abstract namespace or TCP ([`Address`]), with an
//!   optional mutual HMAC-SHA256 authentication ([`AuthenticationError`]).
//!
//! # Relationship with Python multiprocessing
//!
//! | Python | aiop |
//! |---|---|
//! | `Pipe(duplex=True)` | [`pipe(true)`](pipe) |
//! | `Pipe(duplex=False)` → `(reader, writer)` | [`pipe(false)`](pipe) → `(reader, writer)` |
//! | `Connection.send(obj)` / `recv()` | [`Connection::send`] / [`Connection::recv`] (serde types, not pickles) |
//! | `send_bytes(buf, offset, size)` | [`Connection::send_bytes`]`(&buf[offset..offset + size])` |
//! | `recv_bytes()` / `recv_bytes_into(buf)` | [`Connection::recv_bytes`] / [`Connection::recv_bytes_into`] |
//! | `recv_bytes(maxlength)` | [`Connection::set_max_message_size`] |
//! | `poll(timeout)` | [`Connection::poll`] |
//! | `close()`, `readable`, `writable`, `fileno()` | [`Connection::close`], [`Connection::readable`], [`Connection::writable`], [`AsFd`](std::os::fd::AsFd) |
//! | `EOFError` | [`RecvError::Closed`] |
//! | `BufferTooShort` | [`RecvError::BufferTooShort`] (the message stays in the connection) |
//! | `connection.wait(objects, timeout)` | [`wait`]`(&[&a, &b, &process], timeout)` → indexes of the ready ones |
//! | `Listener(address, family, backlog, authkey)` | [`Listener::bind`]`(&address, authkey)` |
//! | `Listener.accept()`, `last_accepted`, `address`, `close()` | [`Listener::accept`], [`Listener::last_accepted`], [`Listener::address`], [`Listener::close`] |
//! | `Client(address, family, authkey)` | [`client`]`(&address, authkey)` |
//! | `AuthenticationError` | [`AuthenticationError`] (inside an `io::Error`) |
//! | `reduction.send_handle` / `recv_handle` | [`Connection::send_fd`] / [`Connection::recv_fd`], or [`Fd`] inside any message |
//!
//! Differences: EOF is an error value rather than an exception type;
//! [`wait`] returns indexes; a one-way pipe is a socket pair too (so
//! descriptors can travel both ways of the pair's life); the handshake runs
//! on every listener connection (without a key it is one exchange of hellos),
//! with a deadline, so a stuck client cannot hold up `accept`.
//!
//! # Implementation
//!
//! A connection is one stream socket (a `socketpair` for [`pipe`], an
//! accepted or connected socket otherwise) and two mutexes: one held for
//! each outgoing frame, one for each incoming frame. Frames are those of
//! [`fdpass`](crate::fdpass). Handles travel as indexes into the frame's
//! descriptor table, as in a spawned process's arguments (see
//! [`transfer`](crate::transfer)). No thread is started.

use std::io;
use std::os::unix::net::UnixStream;

mod address;
mod auth;
mod conn;
mod error;
mod fd;
mod listener;
mod wait;

pub use address::{Address, ParseAddressError};
pub use auth::fill_random;
pub use conn::{Connection, DEFAULT_MAX_MESSAGE, Encoded};
pub use error::{AuthenticationError, RecvError};
pub use fd::Fd;
pub use listener::{DEFAULT_HANDSHAKE_TIMEOUT, Handshaking, Listener, client, client_timeout};
pub use wait::{Waitable, wait};

/// A connected pair of [`Connection`]s (Python's `Pipe`).
///
/// With `duplex`, both ends send and receive. Without, the pair is
/// `(reader, writer)`: the first end only receives and the second only
/// sends; using an end the wrong way is an `Unsupported` error.
///
/// # Errors
///
/// The error of `socketpair(2)` (out of descriptors, say).
///
/// # Examples
///
/// ```
/// let (reader, writer) = aiop_core::connection::pipe(false)?;
/// writer.send(&vec![1u8, 2, 3])?;
/// assert_eq!(reader.recv::<Vec<u8>>()?, [1, 2, 3]);
/// assert_eq!(reader.send(&0u8).unwrap_err().kind(), std::io::ErrorKind::Unsupported);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn pipe(duplex: bool) -> io::Result<(Connection, Connection)> {
    let (a, b) = UnixStream::pair()?;
    if duplex {
        return Ok((
            Connection::from_unix_stream(a),
            Connection::from_unix_stream(b),
        ));
    }
    a.shutdown(std::net::Shutdown::Write)?;
    b.shutdown(std::net::Shutdown::Read)?;
    Ok((
        Connection::new(a.into(), true, true, false),
        Connection::new(b.into(), true, false, true),
    ))
}

/// The entry points of the fuzz targets (in `fuzz/` at the repository root)
/// and of the test that replays their corpus. Not a public API.
#[doc(hidden)]
pub mod __fuzz {
    use std::io::Write;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;
    use std::time::{Duration, Instant};

    use super::auth::{Side, handshake};
    use super::{Connection, RecvError};

    /// The limit the frame target receives with: anything longer must be
    /// refused before it is allocated.
    pub const MAX_MESSAGE: usize = 1 << 20;

    /// Feeds `data` (at most 64 KiB of it) as the byte stream of a
    /// connection and receives until the stream ends or is refused,
    /// alternating byte and typed receives. Returns how many messages
    /// arrived and how the stream ended.
    pub fn frames(data: &[u8]) -> (usize, Result<(), RecvError>) {
        let data = &data[..data.len().min(64 << 10)];
        let (mut w, r) = UnixStream::pair().expect("socketpair");
        w.write_all(data).expect("a socket buffer holds 64 KiB");
        drop(w);
        let mut conn = Connection::from_unix_stream(r);
        conn.set_max_message_size(MAX_MESSAGE);
        let mut n = 0;
        loop {
            let got = if n % 2 == 0 {
                conn.recv_bytes().map(drop)
            } else {
                conn.recv::<(u64, String, Option<Vec<u8>>)>().map(drop)
            };
            match got {
                Ok(()) => n += 1,
                Err(RecvError::Closed) => return (n, Ok(())),
                Err(e) => return (n, Err(e)),
            }
        }
    }

    /// Plays `data` as the peer's side of the handshake, once against a
    /// listener and once against a client, both with a key; returns both
    /// outcomes.
    pub fn handshake_both(data: &[u8]) -> [std::io::Result<()>; 2] {
        [Side::Server, Side::Client].map(|side| {
            let (mut peer, ours) = UnixStream::pair().expect("socketpair");
            let data = &data[..data.len().min(64 << 10)];
            peer.write_all(data).expect("a socket buffer holds 64 KiB");
            peer.shutdown(std::net::Shutdown::Write).expect("shutdown");
            let deadline = Instant::now() + Duration::from_secs(5);
            handshake(ours.as_fd(), side, Some(b"fuzz key"), deadline)
        })
    }
}
