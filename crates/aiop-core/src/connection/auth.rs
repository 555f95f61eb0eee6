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

/// Where the handshake is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Writing `out`, then reading the peer's hello.
    Hello,
    /// Client: wrote its proof, reads the server's proof (or `failure`).
    ServerProof,
    /// Server: reads the client's proof.
    ClientProof,
    /// Server: wrote its proof, reads `welcome` or `failure`.
    Answer,
    /// Writing `out`, then failing with the stored error.
    Failing,
    /// Writing `out`, then done.
    Finishing,
    Done,
}

/// The handshake as a state machine that never waits: [`Handshake::advance`]
/// reads and writes what the socket allows, and the caller waits for the
/// socket to be readable or writable ([`Handshake::wants_write`]) in its own
/// way (a `poll(2)` with a deadline, or an async reactor).
pub(crate) struct Handshake {
    side: Side,
    key: Option<Vec<u8>>,
    nonce: [u8; NONCE],
    their_nonce: Vec<u8>,
    step: Step,
    /// A frame being written, and how much of it went.
    out: Vec<u8>,
    sent: usize,
    /// The frame being read.
    input: Vec<u8>,
    /// The error to report once `out` (a `failure`) is written.
    failure: Option<io::Error>,
}

impl Handshake {
    pub(crate) fn new(side: Side, key: Option<&[u8]>) -> io::Result<Handshake> {
        let mut nonce = [0u8; NONCE];
        if key.is_some() {
            fill_random(&mut nonce)?;
        }
        let mut hello = MAGIC.to_vec();
        hello.extend_from_slice(&[VERSION, key.is_some() as u8]);
        if key.is_some() {
            hello.extend_from_slice(&nonce);
        }
        Ok(Handshake {
            side,
            key: key.map(<[u8]>::to_vec),
            nonce,
            their_nonce: Vec::new(),
            step: Step::Hello,
            out: frame(&hello),
            sent: 0,
            input: Vec::new(),
            failure: None,
        })
    }

    /// Whether the handshake waits for room to write (else for input).
    pub(crate) fn wants_write(&self) -> bool {
        self.sent < self.out.len()
    }

    /// Does what the socket allows without waiting: `Ok(())` when the
    /// handshake is complete, `WouldBlock` when it must wait for the socket
    /// (see [`wants_write`](Handshake::wants_write)); any other error ends it.
    pub(crate) fn advance(&mut self, sock: BorrowedFd<'_>) -> io::Result<()> {
        loop {
            while self.sent < self.out.len() {
                match rustix::net::send(
                    sock,
                    &self.out[self.sent..],
                    SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
                ) {
                    Ok(n) => self.sent += n,
                    Err(Errno::INTR) => continue,
                    Err(e) => {
                        // A failure notice that cannot be written still fails
                        // with the reason.
                        return Err(self.failure.take().unwrap_or_else(|| e.into()));
                    }
                }
            }
            match self.step {
                Step::Done => return Ok(()),
                Step::Finishing => {
                    self.step = Step::Done;
                    return Ok(());
                }
                Step::Failing => {
                    self.step = Step::Done;
                    return Err(self.failure.take().unwrap_or_else(|| auth("failed")));
                }
                _ => {}
            }
            let msg = self.read_msg(sock)?;
            self.on_message(msg)?;
        }
    }

    fn write(&mut self, payload: &[u8], then: Step) {
        self.out = frame(payload);
        self.sent = 0;
        self.step = then;
    }

    fn fail_after_notice(&mut self, err: io::Error) {
        self.failure = Some(err);
        self.write(FAILURE, Step::Failing);
    }

    /// Reacts to one whole message from the peer.
    fn on_message(&mut self, msg: Vec<u8>) -> io::Result<()> {
        match self.step {
            Step::Hello => self.on_hello(&msg),
            Step::ServerProof => {
                if msg == FAILURE {
                    return Err(auth("the listener rejected the key"));
                }
                let key = self.key.clone().expect("keyed");
                if verify(&key, SERVER_LABEL, &self.nonce, &self.their_nonce, &msg) {
                    self.write(WELCOME, Step::Finishing);
                } else {
                    self.fail_after_notice(auth(
                        "the listener could not prove that it holds the key",
                    ));
                }
                Ok(())
            }
            Step::ClientProof => {
                let key = self.key.clone().expect("keyed");
                if !verify(&key, CLIENT_LABEL, &self.nonce, &self.their_nonce, &msg) {
                    self.fail_after_notice(auth(
                        "the client could not prove that it holds the key",
                    ));
                    return Ok(());
                }
                let proof = mac(&key, SERVER_LABEL, &self.their_nonce, &self.nonce);
                self.write(&proof, Step::Answer);
                Ok(())
            }
            Step::Answer => match msg {
                a if a == WELCOME => {
                    self.step = Step::Done;
                    Ok(())
                }
                a if a == FAILURE => Err(auth("the client rejected the listener's proof")),
                _ => Err(invalid("expected welcome or failure")),
            },
            Step::Failing | Step::Finishing | Step::Done => Ok(()),
        }
    }

    fn on_hello(&mut self, theirs: &[u8]) -> io::Result<()> {
        let Some(rest) = theirs.strip_prefix(&MAGIC[..]) else {
            return Err(invalid("the peer is not an aiop connection"));
        };
        let (their_nonce, keyed) = match rest {
            [VERSION, 0] => (None, false),
            [VERSION, 1, nonce @ ..] if nonce.len() == NONCE => (Some(nonce), true),
            [VERSION, ..] => return Err(invalid("malformed hello")),
            _ => return Err(invalid("the peer speaks another protocol version")),
        };
        let (key, their_nonce) = match (self.side, self.key.clone(), keyed, their_nonce) {
            (_, None, false, _) => {
                self.step = Step::Done;
                return Ok(());
            }
            (_, Some(key), true, Some(n)) => (key, n.to_vec()),
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
        self.their_nonce = their_nonce;
        match self.side {
            Side::Client => {
                let proof = mac(&key, CLIENT_LABEL, &self.their_nonce, &self.nonce);
                self.write(&proof, Step::ServerProof);
            }
            Side::Server => self.step = Step::ClientProof,
        }
        Ok(())
    }

    /// Reads one whole handshake frame without waiting (keeping what arrived).
    fn read_msg(&mut self, sock: BorrowedFd<'_>) -> io::Result<Vec<u8>> {
        loop {
            let want = if self.input.len() < 8 {
                8
            } else {
                let len = u32::from_le_bytes(self.input[..4].try_into().expect("4 bytes")) as usize;
                let nfds = u32::from_le_bytes(self.input[4..8].try_into().expect("4 bytes"));
                if len > MAX_HANDSHAKE || nfds != 0 {
                    return Err(invalid("the peer sent an oversized or malformed message"));
                }
                8 + len
            };
            if self.input.len() == want && want > 8 {
                let msg = self.input[8..].to_vec();
                self.input.clear();
                return Ok(msg);
            }
            if self.input.len() == want {
                // A header announcing an empty payload.
                let len = u32::from_le_bytes(self.input[..4].try_into().expect("4 bytes"));
                if len == 0 {
                    self.input.clear();
                    return Ok(Vec::new());
                }
            }
            let mut buf = [0u8; MAX_HANDSHAKE + 8];
            let room = want.max(8) - self.input.len();
            match rustix::net::recv(sock, &mut buf[..room], RecvFlags::DONTWAIT) {
                Ok((0, _)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection handshake: the peer closed the connection",
                    ));
                }
                Ok((n, _)) => self.input.extend_from_slice(&buf[..n]),
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&0u32.to_le_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// Runs the handshake on a connected socket, waiting with `poll(2)` until
/// `deadline`; `Ok` means the connection may be used.
pub(crate) fn handshake(
    sock: BorrowedFd<'_>,
    side: Side,
    key: Option<&[u8]>,
    deadline: Instant,
) -> io::Result<()> {
    drive(&mut Handshake::new(side, key)?, sock, deadline)
}

/// Drives `hs` to its end, waiting with `poll(2)` until `deadline`.
pub(crate) fn drive(hs: &mut Handshake, sock: BorrowedFd<'_>, deadline: Instant) -> io::Result<()> {
    loop {
        match hs.advance(sock) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let ready = if hs.wants_write() {
                    writable_by(sock, Some(deadline))?
                } else {
                    readable_by(sock, Some(deadline))?
                };
                if !ready {
                    return Err(timed_out());
                }
            }
            other => return other,
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

/// Fills `buf` with random bytes from the kernel (`getrandom(2)`): for
/// authkeys (Python's `os.urandom(32)`) and handshake nonces.
///
/// # Errors
///
/// The error of `getrandom(2)`.
pub fn fill_random(buf: &mut [u8]) -> io::Result<()> {
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
