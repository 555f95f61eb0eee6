//! [`Address`]: where a [`Listener`](super::Listener) listens.

use std::error::Error;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The address of a [`Listener`](super::Listener): a Unix socket path, a
/// name in Linux's abstract socket namespace, or a TCP address (Python's
/// `AF_UNIX` and `AF_INET` families).
///
/// # Text form
///
/// [`Display`](fmt::Display) writes, and [`FromStr`] reads, `unix:PATH`,
/// `@NAME` (abstract) and `tcp:IP:PORT`. Parsing also takes a bare path
/// starting with `/` or `.`, `abstract:NAME`, and a bare `IP:PORT` (IPv6 as
/// `[::1]:PORT`). Host names are not resolved.
///
/// ```
/// use aiop_core::connection::Address;
///
/// let a: Address = "/run/app.sock".parse()?;
/// assert_eq!(a, Address::Unix("/run/app.sock".into()));
/// assert_eq!(a.to_string(), "unix:/run/app.sock");
/// let b: Address = "@app".parse()?;
/// assert_eq!(b, Address::Abstract(b"app".to_vec()));
/// let c: Address = "127.0.0.1:8080".parse()?;
/// assert_eq!(c.to_string(), "tcp:127.0.0.1:8080");
/// for x in [a, b, c] {
///     assert_eq!(x.to_string().parse::<Address>()?, x);
/// }
/// # Ok::<(), aiop_core::connection::ParseAddressError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// A socket file at this path. The listener replaces a stale one and
    /// removes its own when it closes.
    Unix(PathBuf),
    /// A name in the Linux abstract namespace (no file; gone with the
    /// listener). At most 107 bytes.
    Abstract(Vec<u8>),
    /// A TCP address; port 0 binds any free port (see
    /// [`Listener::address`](super::Listener::address)).
    Tcp(SocketAddr),
}

impl From<SocketAddr> for Address {
    fn from(a: SocketAddr) -> Address {
        Address::Tcp(a)
    }
}

impl From<PathBuf> for Address {
    fn from(p: PathBuf) -> Address {
        Address::Unix(p)
    }
}

impl From<&Path> for Address {
    fn from(p: &Path) -> Address {
        Address::Unix(p.to_path_buf())
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(p) => write!(f, "unix:{}", p.display()),
            Address::Abstract(name) => write!(f, "@{}", String::from_utf8_lossy(name)),
            Address::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

/// An address string that is none of the forms [`Address`] reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseAddressError {
    input: String,
}

impl fmt::Display for ParseAddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid address {:?}: expected unix:PATH, a path starting with / or ., @NAME, abstract:NAME, tcp:IP:PORT or IP:PORT",
            self.input
        )
    }
}

impl Error for ParseAddressError {}

impl FromStr for Address {
    type Err = ParseAddressError;

    fn from_str(s: &str) -> Result<Address, ParseAddressError> {
        let err = || ParseAddressError {
            input: s.to_string(),
        };
        let non_empty = |rest: &str| (!rest.is_empty()).then(|| rest.to_string()).ok_or_else(err);
        if let Some(rest) = s.strip_prefix("unix:") {
            return Ok(Address::Unix(non_empty(rest)?.into()));
        }
        if let Some(rest) = s.strip_prefix('@').or_else(|| s.strip_prefix("abstract:")) {
            return Ok(Address::Abstract(non_empty(rest)?.into_bytes()));
        }
        if let Some(rest) = s.strip_prefix("tcp:") {
            return rest.parse().map(Address::Tcp).map_err(|_| err());
        }
        if s.starts_with('/') || s.starts_with('.') {
            return Ok(Address::Unix(s.into()));
        }
        s.parse().map(Address::Tcp).map_err(|_| err())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_parses() {
        let p = |s: &str| s.parse::<Address>();
        assert_eq!(
            p("unix:rel.sock").unwrap(),
            Address::Unix("rel.sock".into())
        );
        assert_eq!(p("./x").unwrap(), Address::Unix("./x".into()));
        assert_eq!(p("abstract:n").unwrap(), Address::Abstract(b"n".to_vec()));
        assert_eq!(
            p("[::1]:9").unwrap(),
            Address::Tcp("[::1]:9".parse().unwrap())
        );
        assert_eq!(p("tcp:127.0.0.1:1").unwrap().to_string(), "tcp:127.0.0.1:1");
    }

    #[test]
    fn bad_forms_are_errors() {
        for s in ["", "unix:", "@", "tcp:localhost:80", "localhost:80", "host"] {
            let e = s.parse::<Address>().unwrap_err();
            assert!(e.to_string().contains("invalid address"), "{s}: {e}");
        }
    }
}
