//! [`Listener`] and [`client`]: connections between unrelated processes.

use std::fmt;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{SocketAddr as UnixSocketAddr, UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use super::address::Address;
use super::auth::{Handshake, Side, drive, handshake};
use super::conn::Connection;
use super::wait::deadline_after;

/// How long [`Listener::accept`] and [`client`] wait for the other side of
/// the handshake by default: 5 seconds.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

enum Socket {
    Unix(UnixListener),
    Tcp(TcpListener),
}

/// A bound socket that accepts [`Connection`]s from [`client`]s: Python's
/// `multiprocessing.connection.Listener`.
///
/// Every accepted connection first goes through a short handshake (see
/// [`accept`](Listener::accept)); with an `authkey`, it is a mutual
/// HMAC-SHA256 challenge.
///
/// A Unix socket path is the listener's: a stale socket file left by a
/// listener that died is replaced at bind, and the file is removed when the
/// listener is closed or dropped (unless another socket has replaced it).
///
/// # Examples
///
/// ```
/// use aiop_core::connection::{client, Address, Listener};
///
/// let listener = Listener::bind(&"@aiop-doc-example".parse::<Address>()?, Some(b"secret"))?;
/// let address = listener.address().clone();
/// let peer = std::thread::spawn(move || -> std::io::Result<u64> {
///     let conn = client(&address, Some(b"secret"))?;
///     conn.send(&41u64)?;
///     Ok(conn.recv::<u64>()?)
/// });
/// let conn = listener.accept()?;
/// let n: u64 = conn.recv()?;
/// conn.send(&(n + 1))?;
/// assert_eq!(peer.join().unwrap()?, 42);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Listener {
    socket: Socket,
    address: Address,
    authkey: Option<Vec<u8>>,
    handshake_timeout: Duration,
    last_accepted: Mutex<Option<Address>>,
    /// The (device, inode) of the socket file this listener created.
    owned_path: Option<(PathBuf, u64, u64)>,
}

impl Listener {
    /// Binds `address` and listens on it; `authkey`, when given, is the
    /// secret every client must prove it holds (and that the listener
    /// proves to them).
    ///
    /// # Errors
    ///
    /// `AddrInUse` when a live listener is bound to the address. A Unix
    /// socket file nobody listens on (connecting to it is refused) is
    /// removed and bound afresh; a path that exists but is not a socket is
    /// left alone (`AddrInUse`). Otherwise the error of `bind(2)` or
    /// `listen(2)`.
    ///
    /// To tell a stale path from a live one, binding connects to it; a live
    /// listener sees that probe as a client that hangs up during the
    /// handshake (one failed `accept`).
    pub fn bind(address: &Address, authkey: Option<&[u8]>) -> io::Result<Listener> {
        let (socket, address, owned_path) = match address {
            Address::Unix(path) => {
                let l = bind_path(path)?;
                let meta = std::fs::symlink_metadata(path)?;
                let id = std::os::unix::fs::MetadataExt::dev(&meta);
                let ino = std::os::unix::fs::MetadataExt::ino(&meta);
                (
                    Socket::Unix(l),
                    address.clone(),
                    Some((path.clone(), id, ino)),
                )
            }
            Address::Abstract(name) => {
                let addr = UnixSocketAddr::from_abstract_name(name)?;
                let l = UnixListener::bind_addr(&addr)?;
                (Socket::Unix(l), address.clone(), None)
            }
            Address::Tcp(a) => {
                let l = TcpListener::bind(a)?;
                let bound = Address::Tcp(l.local_addr()?);
                (Socket::Tcp(l), bound, None)
            }
        };
        // Non-blocking, so `try_accept_handshaking` never waits; `accept`
        // waits with poll(2).
        match &socket {
            Socket::Unix(l) => l.set_nonblocking(true)?,
            Socket::Tcp(l) => l.set_nonblocking(true)?,
        }
        Ok(Listener {
            socket,
            address,
            authkey: authkey.map(<[u8]>::to_vec),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            last_accepted: Mutex::new(None),
            owned_path,
        })
    }

    /// How long [`accept`](Listener::accept) waits for a client's side of
    /// the handshake ([`DEFAULT_HANDSHAKE_TIMEOUT`] unless set).
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// Sets how long [`accept`](Listener::accept) waits for a client's side
    /// of the handshake.
    pub fn set_handshake_timeout(&mut self, timeout: Duration) {
        self.handshake_timeout = timeout;
    }

    /// The address bound; for TCP port 0, with the port the system chose.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The peer address of the last connection [`accept`](Listener::accept)
    /// returned: `None` before the first one, and for a Unix client whose
    /// socket is not bound to a name (as [`client`]'s are not).
    pub fn last_accepted(&self) -> Option<Address> {
        self.last_accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits for a client, performs the handshake and returns the
    /// connection.
    ///
    /// The handshake (an exchange of hellos, and with an authkey the mutual
    /// challenge) must complete within the
    /// [handshake timeout](Listener::set_handshake_timeout): a client that
    /// stays silent or sends garbage costs at most that long, after which
    /// this call fails and the next `accept` serves the next client.
    ///
    /// # Errors
    ///
    /// An [`AuthenticationError`](super::AuthenticationError) (inside an
    /// `io::Error` of kind `PermissionDenied`) when the keys differ or only
    /// one side has one; `TimedOut` when the client does not complete the
    /// handshake in time; `InvalidData` when it is not an aiop client;
    /// `UnexpectedEof` when it hangs up; the error of `accept(2)`. Each of
    /// these concerns one client only: call `accept` again for the next.
    pub fn accept(&self) -> io::Result<Connection> {
        let mut pending = loop {
            match self.try_accept_handshaking() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    super::wait::readable_by(self.as_fd(), None)?;
                }
                other => break other?,
            }
        };
        let deadline = deadline_after(self.handshake_timeout);
        drive(&mut pending.handshake, pending.fd.as_fd(), deadline)?;
        pending.done = true;
        self.finish_accept(pending)
    }

    /// Accepts a waiting client without waiting and without running the
    /// handshake: the caller drives it with [`Handshaking::advance`] (under
    /// a deadline of its choosing, [`handshake_timeout`](Listener::handshake_timeout)
    /// by convention), then calls [`finish_accept`](Listener::finish_accept).
    /// For an async listener.
    ///
    /// # Errors
    ///
    /// `WouldBlock` when no client is waiting; the error of `accept(2)`.
    pub fn try_accept_handshaking(&self) -> io::Result<Handshaking> {
        let (fd, unix, peer): (OwnedFd, bool, Option<Address>) = match &self.socket {
            Socket::Unix(l) => {
                let (s, addr) = l.accept()?;
                let peer = match (addr.as_pathname(), addr.as_abstract_name()) {
                    (Some(p), _) => Some(Address::Unix(p.to_path_buf())),
                    (None, Some(name)) => Some(Address::Abstract(name.to_vec())),
                    _ => None,
                };
                // The accepted socket must not inherit O_NONBLOCK (it does
                // not on Linux, but say so).
                s.set_nonblocking(false)?;
                (s.into(), true, peer)
            }
            Socket::Tcp(l) => {
                let (s, addr) = l.accept()?;
                s.set_nonblocking(false)?;
                s.set_nodelay(true)?;
                (s.into(), false, Some(Address::Tcp(addr)))
            }
        };
        Ok(Handshaking {
            handshake: Handshake::new(Side::Server, self.authkey.as_deref())?,
            fd,
            unix,
            peer,
            done: false,
        })
    }

    /// Turns an accepted connection whose handshake is complete into a
    /// [`Connection`], and records its peer as [`last_accepted`](Listener::last_accepted).
    ///
    /// # Errors
    ///
    /// `InvalidInput` when the handshake has not completed.
    pub fn finish_accept(&self, accepted: Handshaking) -> io::Result<Connection> {
        let peer = accepted.peer.clone();
        let conn = accepted.into_connection()?;
        *self.last_accepted.lock().unwrap_or_else(|e| e.into_inner()) = peer;
        Ok(conn)
    }

    /// Stops listening: closes the socket and removes its path (Python's
    /// `close`). Dropping the listener does the same.
    pub fn close(self) {
        drop(self);
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // Remove the socket file only if it is still ours.
        if let Some((path, dev, ino)) = &self.owned_path {
            if let Ok(meta) = std::fs::symlink_metadata(path) {
                use std::os::unix::fs::MetadataExt;
                if meta.dev() == *dev && meta.ino() == *ino {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
    }
}

/// Binds a Unix socket path, replacing a stale socket file.
fn bind_path(path: &Path) -> io::Result<UnixListener> {
    match UnixListener::bind(path) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {}
        other => return other,
    }
    let in_use = |why: &str| {
        io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("{}: {why}", path.display()),
        )
    };
    let is_socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    if !is_socket {
        return Err(in_use("the path exists and is not a socket"));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(in_use("a listener is bound to this path")),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            // A socket file nobody listens on: left by a listener that died.
            std::fs::remove_file(path)?;
            UnixListener::bind(path)
        }
        Err(e) => Err(e),
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.socket {
            Socket::Unix(l) => l.as_fd(),
            Socket::Tcp(l) => l.as_fd(),
        }
    }
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("address", &self.address)
            .field("authkey", &self.authkey.as_ref().map(|_| "<set>"))
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

/// Connects to the [`Listener`] at `address` and performs the handshake:
/// Python's `multiprocessing.connection.Client`. The handshake must complete
/// within [`DEFAULT_HANDSHAKE_TIMEOUT`].
///
/// # Errors
///
/// An [`AuthenticationError`](super::AuthenticationError) (inside an
/// `io::Error` of kind `PermissionDenied`) when the keys differ or only one
/// side has one; `TimedOut` when the listener does not answer the handshake
/// in time; the error of `connect(2)` (`ConnectionRefused`, `NotFound`).
pub fn client(address: &Address, authkey: Option<&[u8]>) -> io::Result<Connection> {
    client_timeout(address, authkey, DEFAULT_HANDSHAKE_TIMEOUT)
}

/// [`client`] with a handshake timeout (which also bounds a TCP connect).
///
/// # Errors
///
/// As [`client`].
pub fn client_timeout(
    address: &Address,
    authkey: Option<&[u8]>,
    timeout: Duration,
) -> io::Result<Connection> {
    let deadline = deadline_after(timeout);
    let (fd, unix): (OwnedFd, bool) = match address {
        Address::Unix(path) => (UnixStream::connect(path)?.into(), true),
        Address::Abstract(name) => {
            let addr = UnixSocketAddr::from_abstract_name(name)?;
            (UnixStream::connect_addr(&addr)?.into(), true)
        }
        Address::Tcp(a) => {
            let s = TcpStream::connect_timeout(a, timeout.max(Duration::from_millis(1)))?;
            s.set_nodelay(true)?;
            (s.into(), false)
        }
    };
    handshake(fd.as_fd(), Side::Client, authkey, deadline)?;
    Ok(Connection::new(fd, unix, true, true))
}

/// A connected socket whose handshake is under way, driven without waiting
/// by [`advance`](Handshaking::advance): made by
/// [`Listener::try_accept_handshaking`] or [`Handshaking::client`], for
/// callers that wait in their own way (an async listener and client).
pub struct Handshaking {
    handshake: Handshake,
    fd: OwnedFd,
    unix: bool,
    peer: Option<Address>,
    done: bool,
}

impl Handshaking {
    /// The client side of the handshake on a connected socket (a Unix or
    /// TCP stream socket), with `authkey` if given.
    ///
    /// # Errors
    ///
    /// The error of reading random bytes for the nonce, or of looking up
    /// the socket's family.
    pub fn client(socket: OwnedFd, authkey: Option<&[u8]>) -> io::Result<Handshaking> {
        let unix =
            rustix::net::sockopt::socket_domain(&socket)? == rustix::net::AddressFamily::UNIX;
        Ok(Handshaking {
            handshake: Handshake::new(Side::Client, authkey)?,
            fd: socket,
            unix,
            peer: None,
            done: false,
        })
    }

    /// Reads and writes what the socket allows without waiting: `Ok(())`
    /// once the handshake is complete.
    ///
    /// # Errors
    ///
    /// `WouldBlock` when it must wait: for the socket to be writable if
    /// [`wants_write`](Handshaking::wants_write), else readable. Otherwise
    /// the handshake failed, as [`Listener::accept`] and [`client`] say.
    pub fn advance(&mut self) -> io::Result<()> {
        if self.done {
            return Ok(());
        }
        self.handshake.advance(self.fd.as_fd())?;
        self.done = true;
        Ok(())
    }

    /// Whether the handshake waits for room to write (else for input).
    pub fn wants_write(&self) -> bool {
        self.handshake.wants_write()
    }

    /// The peer's address, for an accepted connection (see
    /// [`Listener::last_accepted`]).
    pub fn peer(&self) -> Option<&Address> {
        self.peer.as_ref()
    }

    /// The connection, once the handshake is complete.
    ///
    /// # Errors
    ///
    /// `InvalidInput` when it is not.
    pub fn into_connection(self) -> io::Result<Connection> {
        if !self.done {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the connection handshake has not completed",
            ));
        }
        Ok(Connection::new(self.fd, self.unix, true, true))
    }
}

impl AsFd for Handshaking {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl fmt::Debug for Handshaking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handshaking")
            .field("fd", &self.fd)
            .field("peer", &self.peer)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}
