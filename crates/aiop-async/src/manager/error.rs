//! The errors of managers and proxies.

use std::error::Error;
use std::fmt;
use std::io;

use serde::{Deserialize, Serialize};

/// An error raised on the server by a served object, sent back to the
/// caller with the server's message: Python's `RemoteError`.
///
/// `kind` is a short machine-readable name (the built-in types use the
/// constants below; a custom type picks its own), `message` the text for
/// people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteError {
    kind: String,
    message: String,
}

impl RemoteError {
    /// No object with the proxy's id lives on the server (its last
    /// reference was dropped, or the id was never valid).
    pub const NO_SUCH_OBJECT: &'static str = "NoSuchObject";
    /// The served type has no method of that name.
    pub const NO_SUCH_METHOD: &'static str = "NoSuchMethod";
    /// No type of that name is registered with the server.
    pub const NO_SUCH_TYPE: &'static str = "NoSuchType";
    /// The arguments did not decode as the method's argument type.
    pub const BAD_ARGUMENTS: &'static str = "BadArguments";
    /// The method panicked on the server; the message is the panic's.
    pub const PANICKED: &'static str = "Panicked";
    /// The call was waiting when the server shut down.
    pub const SHUTTING_DOWN: &'static str = "ShuttingDown";
    /// The call was cancelled by its caller before it completed.
    pub const CANCELLED: &'static str = "Cancelled";
    /// The call's deadline passed before it could complete.
    pub const TIMED_OUT: &'static str = "TimedOut";
    /// A lock was released by a caller that does not hold it.
    pub const NOT_OWNER: &'static str = "NotOwner";
    /// An index or a key outside the object (Python's `IndexError` /
    /// `KeyError`).
    pub const OUT_OF_RANGE: &'static str = "OutOfRange";
    /// A value the method cannot accept (Python's `ValueError`), such as a
    /// bounded semaphore released past its bound.
    pub const INVALID_VALUE: &'static str = "InvalidValue";
    /// A barrier was broken (aborted, reset, or a waiter timed out, was
    /// cancelled or died) while the call waited on it, or before (Python's
    /// `BrokenBarrierError`).
    pub const BROKEN_BARRIER: &'static str = "BrokenBarrier";

    /// An error of `kind` with `message`.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> RemoteError {
        RemoteError {
            kind: kind.into(),
            message: message.into(),
        }
    }

    /// The error's kind (one of the constants above for the built-in types).
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The server's message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the error is of `kind`.
    pub fn is(&self, kind: &str) -> bool {
        self.kind == kind
    }
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on the manager: {}", self.kind, self.message)
    }
}

impl Error for RemoteError {}

/// The error of a manager operation or a proxy call.
#[derive(Debug)]
#[non_exhaustive]
pub enum ManagerError {
    /// The served object (or the server) refused the call: its error, with
    /// the server's message.
    Remote(RemoteError),
    /// The connection to the server ended: it shut down, crashed, or the
    /// network failed. Every call waiting on this connection, and every later
    /// one, fails with this error; the text says what ended it.
    ServerGone(String),
    /// Connecting, authenticating, starting the server or writing to it
    /// failed. A refused authkey is an `io::Error` carrying an
    /// [`AuthenticationError`](crate::connection::AuthenticationError).
    Io(io::Error),
    /// An argument did not serialize.
    Encode(String),
    /// A result did not decode as the type the proxy expects.
    Decode(String),
}

impl ManagerError {
    /// The server-side error, if this is one.
    pub fn remote(&self) -> Option<&RemoteError> {
        match self {
            ManagerError::Remote(e) => Some(e),
            _ => None,
        }
    }

    /// Whether the server-side error is of `kind`.
    pub fn is_remote(&self, kind: &str) -> bool {
        self.remote().is_some_and(|e| e.is(kind))
    }

    /// Whether the connection to the server has ended.
    pub fn is_server_gone(&self) -> bool {
        matches!(self, ManagerError::ServerGone(_))
    }
}

impl fmt::Display for ManagerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManagerError::Remote(e) => e.fmt(f),
            ManagerError::ServerGone(why) => write!(f, "the manager is gone: {why}"),
            ManagerError::Io(e) => write!(f, "manager connection: {e}"),
            ManagerError::Encode(e) => write!(f, "an argument did not serialize: {e}"),
            ManagerError::Decode(e) => {
                write!(
                    f,
                    "the manager's result did not decode as the proxy's type: {e}"
                )
            }
        }
    }
}

impl Error for ManagerError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            ManagerError::Remote(e) => Some(e),
            ManagerError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<RemoteError> for ManagerError {
    fn from(e: RemoteError) -> ManagerError {
        ManagerError::Remote(e)
    }
}

impl From<io::Error> for ManagerError {
    fn from(e: io::Error) -> ManagerError {
        ManagerError::Io(e)
    }
}

impl From<ManagerError> for io::Error {
    fn from(e: ManagerError) -> io::Error {
        match e {
            ManagerError::Io(e) => e,
            ManagerError::ServerGone(_) => io::Error::new(io::ErrorKind::ConnectionAborted, e),
            ManagerError::Encode(_) | ManagerError::Decode(_) => {
                io::Error::new(io::ErrorKind::InvalidData, e)
            }
            ManagerError::Remote(_) => io::Error::other(e),
        }
    }
}
