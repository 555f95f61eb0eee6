//! The error types of connections: [`RecvError`] and [`AuthenticationError`].

use std::error::Error;
use std::fmt;
use std::io;

/// Why a receive on a [`Connection`](super::Connection) gave no message.
///
/// Converts into [`io::Error`] with `?` (see the variants for the kinds), so
/// code that does not care which one it was can stay in `io::Result`.
#[derive(Debug)]
#[non_exhaustive]
pub enum RecvError {
    /// The other end is closed and every message it sent has been received:
    /// Python's `EOFError`. Also what a peer that died (even `SIGKILL`ed)
    /// looks like. As an `io::Error`: `UnexpectedEof`.
    Closed,
    /// A `_timeout` or `_deadline` receive ran out of time before a message
    /// began to arrive; nothing was consumed. As an `io::Error`: `TimedOut`.
    Timeout,
    /// A `try_` receive found no complete message. Nothing was lost: the
    /// part of a message that has arrived stays in the connection, and the
    /// next receive continues it. As an `io::Error`: `WouldBlock`.
    Empty,
    /// [`recv_bytes_into`](super::Connection::recv_bytes_into) was given a
    /// buffer shorter than the message (Python's `BufferTooShort`). The
    /// message is kept: the next receive of any kind returns it. As an
    /// `io::Error`: `InvalidInput`.
    BufferTooShort {
        /// The length of the kept message.
        needed: usize,
    },
    /// Anything else: the socket's error, `InvalidData` for a malformed,
    /// oversized or undecodable message, `UnexpectedEof` for a stream that
    /// ended inside a message, `Unsupported` for receiving on the write-only
    /// end of a one-way pipe.
    Io(io::Error),
}

impl RecvError {
    /// Whether this is [`RecvError::Closed`] (end of stream).
    pub fn is_closed(&self) -> bool {
        matches!(self, RecvError::Closed)
    }

    /// Whether this is [`RecvError::Empty`] (a `try_` receive found nothing).
    pub fn is_empty(&self) -> bool {
        matches!(self, RecvError::Empty)
    }

    /// Whether this is [`RecvError::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, RecvError::Timeout)
    }
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Closed => f.write_str("the connection is closed (end of stream)"),
            RecvError::Timeout => f.write_str("timed out waiting for a message"),
            RecvError::Empty => f.write_str("no complete message has arrived yet"),
            RecvError::BufferTooShort { needed } => write!(
                f,
                "the buffer is too short for the message of {needed} bytes (the message is kept)"
            ),
            RecvError::Io(e) => e.fmt(f),
        }
    }
}

impl Error for RecvError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            RecvError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for RecvError {
    fn from(e: io::Error) -> RecvError {
        RecvError::Io(e)
    }
}

impl From<RecvError> for io::Error {
    fn from(e: RecvError) -> io::Error {
        let kind = match e {
            RecvError::Io(e) => return e,
            RecvError::Closed => io::ErrorKind::UnexpectedEof,
            RecvError::Timeout => io::ErrorKind::TimedOut,
            RecvError::Empty => io::ErrorKind::WouldBlock,
            RecvError::BufferTooShort { .. } => io::ErrorKind::InvalidInput,
        };
        io::Error::new(kind, e)
    }
}

/// The authentication handshake of a [`Listener`](super::Listener) and a
/// [`client`](super::client) failed: the keys differ, or only one side has
/// one (Python's `AuthenticationError`).
///
/// It reaches the caller inside an [`io::Error`] of kind `PermissionDenied`;
/// [`AuthenticationError::find`] gets it out:
///
/// ```
/// use aiop_core::connection::{AuthenticationError, Address, Listener, client};
///
/// let address: Address = "127.0.0.1:0".parse()?;
/// let listener = Listener::bind(&address, Some(b"right"))?;
/// let address = listener.address().clone();
/// let server = std::thread::spawn(move || listener.accept().map(drop));
/// let err = client(&address, Some(b"wrong")).unwrap_err();
/// assert!(AuthenticationError::find(&err).is_some(), "{err}");
/// let err = server.join().unwrap().unwrap_err();
/// assert!(AuthenticationError::find(&err).is_some(), "{err}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticationError {
    reason: String,
}

impl AuthenticationError {
    pub(crate) fn new(reason: impl Into<String>) -> AuthenticationError {
        AuthenticationError {
            reason: reason.into(),
        }
    }

    /// What went wrong, in words.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The `AuthenticationError` inside `err`, if that is what it is.
    pub fn find(err: &io::Error) -> Option<&AuthenticationError> {
        err.get_ref()?.downcast_ref()
    }

    pub(crate) fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::PermissionDenied, self)
    }
}

impl fmt::Display for AuthenticationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "authentication failed: {}", self.reason)
    }
}

impl Error for AuthenticationError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recv_errors_become_io_errors_of_the_documented_kinds() {
        let kind = |e: RecvError| io::Error::from(e).kind();
        assert_eq!(kind(RecvError::Closed), io::ErrorKind::UnexpectedEof);
        assert_eq!(kind(RecvError::Timeout), io::ErrorKind::TimedOut);
        assert_eq!(
            kind(RecvError::BufferTooShort { needed: 3 }),
            io::ErrorKind::InvalidInput
        );
        let e = io::Error::new(io::ErrorKind::InvalidData, "bad");
        assert_eq!(kind(RecvError::Io(e)), io::ErrorKind::InvalidData);
        assert_eq!(kind(RecvError::Empty), io::ErrorKind::WouldBlock);
        assert!(RecvError::Closed.is_closed() && RecvError::Timeout.is_timeout());
        assert!(RecvError::Empty.is_empty());
    }

    #[test]
    fn an_authentication_error_is_found_inside_its_io_error() {
        let e = AuthenticationError::new("keys differ").into_io();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(
            AuthenticationError::find(&e).unwrap().reason(),
            "keys differ"
        );
        assert_eq!(e.to_string(), "authentication failed: keys differ");
        assert!(AuthenticationError::find(&io::Error::other("x")).is_none());
    }
}
