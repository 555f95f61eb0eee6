//! The handshake a [`Listener`](super::Listener) and a
//! [`client`](super::client) perform before a connection is handed out.
//!
//! Every message is a frame with the connection's header (little-endian
//! `u32` length, `u32` descriptor count, which must be 0) of at most
//! [`MAX_HANDSHAKE`] bytes. Each read and write waits only until the
//! handshake's deadline, so a silent or slow peer costs at most that long.
//!
//! 1. Both sides send a hello at once: [`MAGIC`], the protocol version, a
//!    flag saying whether they hold a key, and (with a key) a 32-byte random
//!    nonce. A different magic or version is `InvalidData`; differing flags
//!    fail both sides with an [`AuthenticationError`] that says who lacks a key.
//! 2. Without keys, that is all. With keys, the client sends its proof
//!    `HMAC-SHA256(key, "aiop client proof" ‖ server nonce ‖ client nonce)`.
//! 3. The server checks it (in constant time): if it is wrong it sends
//!    `failure` and fails; else it sends its own proof,
//!    `HMAC-SHA256(key, "aiop server proof" ‖ client nonce ‖ server nonce)`.
//! 4. The client checks that and answers `welcome` or `failure`; the server
//!    reads the answer. So a wrong key fails on both sides, each side proves
//!    the key to the other with a fresh nonce, and the labels keep one
//!    side's proof from being replayed as the other's.

use std::io;
use std::os::fd::BorrowedFd;
use std::time::Instant;

use hmac::{Hmac, Mac};
use rustix::io::Errno;
use rustix::net::{RecvFlags, SendFlags};
use sha2::Sha256;

use super::error::AuthenticationError;
use super::wait::{readable_by, writable_by};

/// The first bytes of every hello.
pub(crate) const MAGIC: &[u8; 8] = b"aiopconn";
/// The handshake's protocol version.
pub(crate) const VERSION: u8 = 1;
/// The longest handshake message.
pub(crate) const MAX_HANDSHAKE: usize = 256;

const NONCE: usize = 32;
const WELCOME: &[u8] = b"welcome";
const FAILURE: &[u8] = b"failure";
const CLIENT_LABEL: &[u8] = b"aiop client proof";
const SERVER_LABEL: &[u8] = b"aiop server proof";

/// Which side of the handshake this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Server,
    Client,
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("connection handshake: {msg}"),
    )
}

fn timed_out() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "connection handshake: the peer did not answer in time",
    )
}

fn auth(reason: &str) -> io::Error {
    AuthenticationError::new(reason).into_io()
}

/// Runs the handshake on a connected socket; `Ok` means the connection may
/// be used.
pub(crate) fn handshake(
    sock: BorrowedFd<'_>,
    side: Side,
    key: Option<&[u8]>,
    deadline: Instant,
) -> io::Result<()> {
    let mut nonce = [0u8; NONCE];
    if key.is_some() {
        fill_random(&mut nonce)?;
    }
    let mut hello = MAGIC.to_vec();
    hello.extend_from_slice(&[VERSION, key.is_some() as u8]);
    if key.is_some() {
        hello.extend_from_slice(&nonce);
    }
    write_msg(sock, &hello, deadline)?;

    let theirs = read_msg(sock, deadline)?;
    let Some(rest) = theirs.strip_prefix(&MAGIC[..]) else {
        return Err(invalid("the peer is not an aiop connection"));
    };
    let (their_nonce, keyed) = match rest {
        [VERSION, 0] => (None, false),
        [VERSION, 1, nonce @ ..] if nonce.len() == NONCE => (Some(nonce), true),
        [VERSION, ..] => return Err(invalid("malformed hello")),
        _ => return Err(invalid("the peer speaks another protocol version")),
    };
    let (key, their_nonce) = match (side, key, keyed, their_nonce) {
        (_, None, false, _) => return Ok(()),
        (_, Some(key), true, Some(n)) => (key, n),
        (Side::Server, Some(_), _, _) => {
            return Err(auth(
                "the client has no authentication key, but this listener requires one",
            ));
        }
        (Side::Server, None, _, _) => {
            return Err(auth(
                "the client uses an authentication key, but this listener has none",
            ));
        }
        (Side::Client, Some(_), _, _) => {
            return Err(auth(
                "the listener has no authentication key, but one was given",
            ));
        }
        (Side::Client, None, _, _) => {
            return Err(auth(
                "the listener requires an authentication key, but none was given",
            ));
        }
    };
    match side {
        Side::Client => {
            let proof = mac(key, CLIENT_LABEL, their_nonce, &nonce);
            write_msg(sock, &proof, deadline)?;
            let answer = read_msg(sock, deadline)?;
            if answer == FAILURE {
                return Err(auth("the listener rejected the key"));
            }
            if verify(key, SERVER_LABEL, &nonce, their_nonce, &answer) {
                write_msg(sock, WELCOME, deadline)
            } else {
                let _ = write_msg(sock, FAILURE, deadline);
                Err(auth("the listener could not prove that it holds the key"))
            }
        }
        Side::Server => {
            let proof = read_msg(sock, deadline)?;
            if !verify(key, CLIENT_LABEL, &nonce, their_nonce, &proof) {
                let _ = write_msg(sock, FAILURE, deadline);
                return Err(auth("the client could not prove that it holds the key"));
            }
            write_msg(sock, &mac(key, SERVER_LABEL, their_nonce, &nonce), deadline)?;
            match read_msg(sock, deadline)? {
                a if a == WELCOME => Ok(()),
                a if a == FAILURE => Err(auth("the client rejected the listener's proof")),
                _ => Err(invalid("expected welcome or failure")),
            }
        }
    }
}

fn keyed(key: &[u8], label: &[u8], a: &[u8], b: &[u8]) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(label);
    m.update(a);
    m.update(b);
    m
}

fn mac(key: &[u8], label: &[u8], a: &[u8], b: &[u8]) -> Vec<u8> {
    keyed(key, label, a, b).finalize().into_bytes().to_vec()
}

/// Checks `proof` in constant time.
fn verify(key: &[u8], label: &[u8], a: &[u8], b: &[u8], proof: &[u8]) -> bool {
    keyed(key, label, a, b).verify_slice(proof).is_ok()
}

fn fill_random(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        match rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Writes one handshake frame, waiting for room only until `deadline`.
fn write_msg(sock: BorrowedFd<'_>, payload: &[u8], deadline: Instant) -> io::Result<()> {
    let mut frame = Vec::with_capacity(8 + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&0u32.to_le_bytes());
    frame.extend_from_slice(payload);
    let mut buf = &frame[..];
    while !buf.is_empty() {
        match rustix::net::send(sock, buf, SendFlags::NOSIGNAL | SendFlags::DONTWAIT) {
            Ok(n) => buf = &buf[n..],
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => {
                if !writable_by(sock, deadline)? {
                    return Err(timed_out());
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Reads one handshake frame, waiting only until `deadline`.
fn read_msg(sock: BorrowedFd<'_>, deadline: Instant) -> io::Result<Vec<u8>> {
    let mut header = [0u8; 8];
    read_exact(sock, &mut header, deadline)?;
    let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    let nfds = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    if len > MAX_HANDSHAKE || nfds != 0 {
        return Err(invalid("the peer sent an oversized or malformed message"));
    }
    let mut payload = vec![0u8; len];
    read_exact(sock, &mut payload, deadline)?;
    Ok(payload)
}

fn read_exact(sock: BorrowedFd<'_>, mut buf: &mut [u8], deadline: Instant) -> io::Result<()> {
    while !buf.is_empty() {
        match rustix::net::recv(sock, &mut *buf, RecvFlags::DONTWAIT) {
            Ok((0, _)) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection handshake: the peer closed the connection",
                ));
            }
            Ok((n, _)) => buf = &mut buf[n..],
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => {
                if !readable_by(sock, Some(deadline))? {
                    return Err(timed_out());
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    fn run(a: Option<&'static [u8]>, b: Option<&'static [u8]>) -> (io::Result<()>, io::Result<()>) {
        let (s, c) = UnixStream::pair().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let t = std::thread::spawn(move || handshake(c.as_fd(), Side::Client, b, deadline));
        let server = handshake(s.as_fd(), Side::Server, a, deadline);
        (server, t.join().unwrap())
    }

    #[test]
    fn equal_keys_and_no_keys_pass() {
        let (s, c) = run(Some(b"k"), Some(b"k"));
        assert!(s.is_ok() && c.is_ok(), "{s:?} {c:?}");
        let (s, c) = run(None, None);
        assert!(s.is_ok() && c.is_ok(), "{s:?} {c:?}");
    }

    #[test]
    fn differing_keys_fail_both_sides() {
        for (a, b) in [
            (Some(&b"k"[..]), Some(&b"j"[..])),
            (Some(&b"k"[..]), None),
            (None, Some(&b"k"[..])),
        ] {
            let (s, c) = run(a, b);
            let s = s.unwrap_err();
            let c = c.unwrap_err();
            assert!(AuthenticationError::find(&s).is_some(), "{s}");
            assert!(AuthenticationError::find(&c).is_some(), "{c}");
        }
    }

    #[test]
    fn a_silent_peer_times_out() {
        let (s, _c) = UnixStream::pair().unwrap();
        let deadline = Instant::now() + Duration::from_millis(50);
        let e = handshake(s.as_fd(), Side::Server, Some(b"k"), deadline).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }
}
