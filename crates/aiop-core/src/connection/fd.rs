//! [`Fd`]: any descriptor-backed value, made serializable through a connection.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::transfer;

/// A descriptor-backed value (a `UnixStream`, a `TcpStream`, a `File`, an
/// `OwnedFd`, ...) that travels through a [`Connection`](super::Connection)
/// or a spawned process's arguments with its descriptor attached as
/// `SCM_RIGHTS`, and arrives usable: the prefork pattern of handing accepted
/// sockets to workers.
///
/// Serializing duplicates the descriptor into the message (the sender keeps
/// its own); deserializing builds `T` from the received descriptor, which is
/// `CLOEXEC`. Like every handle, it serializes only inside such a transfer:
/// anywhere else it fails with
/// [`HANDLE_OUTSIDE_TRANSFER`](crate::transfer::HANDLE_OUTSIDE_TRANSFER).
///
/// `Fd<BorrowedFd<'_>>` sends without giving up ownership; receive it as
/// `Fd<OwnedFd>` (or any `T: From<OwnedFd>`).
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use std::os::unix::net::UnixStream;
/// use aiop_core::connection::{pipe, Fd};
///
/// let (a, b) = pipe(true)?;
/// let (mut mine, theirs) = UnixStream::pair()?;
/// a.send(&Fd::new(theirs))?;
/// let mut got: UnixStream = b.recv::<Fd<UnixStream>>()?.into_inner();
/// got.write_all(b"hi")?;
/// let mut buf = [0u8; 2];
/// mine.read_exact(&mut buf)?;
/// assert_eq!(&buf, b"hi");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Fd<T>(T);

impl<T> Fd<T> {
    /// Wraps `value` for sending.
    pub fn new(value: T) -> Fd<T> {
        Fd(value)
    }

    /// The wrapped value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for Fd<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for Fd<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: AsFd> AsFd for Fd<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl<T: fmt::Debug> fmt::Debug for Fd<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Fd").field(&self.0).finish()
    }
}

impl<T: AsFd> Serialize for Fd<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let index = transfer::push_fd(self.0.as_fd()).map_err(serde::ser::Error::custom)?;
        serializer.serialize_u32(index)
    }
}

impl<'de, T: From<OwnedFd>> Deserialize<'de> for Fd<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Fd<T>, D::Error> {
        let index = u32::deserialize(deserializer)?;
        let fd = transfer::take_fd(index).map_err(serde::de::Error::custom)?;
        Ok(Fd(T::from(fd)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_a_transfer_it_refuses_to_serialize() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let e = postcard::to_allocvec(&Fd::new(a)).unwrap_err();
        assert!(!e.to_string().is_empty());
        // And bytes alone never turn back into a descriptor.
        assert!(postcard::from_bytes::<Fd<OwnedFd>>(&[0]).is_err());
    }
}
