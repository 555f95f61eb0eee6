//! Length-prefixed frames with descriptors attached (`SCM_RIGHTS`).
//!
//! A frame on a Unix stream socket is an 8-byte header, the little-endian
//! `u32` payload length followed by the little-endian `u32` count of
//! descriptors, and then the payload. The descriptors ride on the header: the
//! sender passes them to the `sendmsg` call that writes the header, and the
//! receiver reads exactly the header with `recvmsg`, which is where the kernel
//! hands them over (a stream read stops at the first segment that carries
//! descriptors). Received descriptors are `CLOEXEC` (`MSG_CMSG_CLOEXEC`).
//!
//! Every length is checked against the caller's maximum before anything is
//! allocated, and every malformed header is `InvalidData`.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use rustix::io::Errno;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

/// The most descriptors one frame can carry (the kernel's `SCM_MAX_FD`).
pub const MAX_FDS: usize = 253;

/// The header of a frame: payload length and descriptor count.
const HEADER: usize = 8;

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Writes all of `buf` with `MSG_NOSIGNAL`, so a vanished peer is `EPIPE`, not a signal.
fn send_all(sock: BorrowedFd<'_>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match rustix::net::send(sock, buf, SendFlags::NOSIGNAL) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Checks that a payload of `len` bytes with `nfds` descriptors fits one
/// frame whose receiver accepts at most `max_len` bytes.
///
/// # Errors
///
/// `InvalidInput`, saying which limit is exceeded.
pub fn check_frame(len: usize, nfds: usize, max_len: usize) -> io::Result<()> {
    let msg = if nfds > MAX_FDS {
        format!("a message carries at most {MAX_FDS} descriptors, got {nfds}")
    } else if len > max_len.min(u32::MAX as usize) {
        format!(
            "a message of {len} bytes is over the limit of {}",
            max_len.min(u32::MAX as usize)
        )
    } else {
        return Ok(());
    };
    Err(io::Error::new(io::ErrorKind::InvalidInput, msg))
}

/// Sends one frame: `parts` concatenated form the payload, `fds` ride along.
///
/// # Errors
///
/// `InvalidInput` when the payload exceeds `u32::MAX` bytes or more than
/// [`MAX_FDS`] descriptors are given; the socket's error otherwise (`EPIPE`
/// when the peer is gone).
pub fn send_frame(sock: &UnixStream, parts: &[&[u8]], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    send_frame_fd(sock.as_fd(), parts, fds)
}

/// [`send_frame`] on any stream socket (descriptors need a Unix one).
pub(crate) fn send_frame_fd(
    sock: BorrowedFd<'_>,
    parts: &[&[u8]],
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    check_frame(total, fds.len(), u32::MAX as usize)?;
    let mut header = [0u8; HEADER];
    header[..4].copy_from_slice(&(total as u32).to_le_bytes());
    header[4..].copy_from_slice(&(fds.len() as u32).to_le_bytes());

    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other("descriptor control buffer too small"));
    }
    // One sendmsg carries the header, the descriptors and as much of the
    // payload as the socket takes; the rest follows with plain sends.
    let mut iov = Vec::with_capacity(parts.len() + 1);
    iov.push(IoSlice::new(&header));
    iov.extend(
        parts
            .iter()
            .filter(|p| !p.is_empty())
            .map(|p| IoSlice::new(p)),
    );
    let mut sent = loop {
        match rustix::net::sendmsg(sock, &iov, &mut control, SendFlags::NOSIGNAL) {
            Ok(n) => break n,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    for chunk in std::iter::once(&header[..]).chain(parts.iter().copied()) {
        if sent >= chunk.len() {
            sent -= chunk.len();
            continue;
        }
        send_all(sock, &chunk[sent..])?;
        sent = 0;
    }
    Ok(())
}

/// One received frame.
#[derive(Debug)]
pub struct Frame {
    /// The payload.
    pub payload: Vec<u8>,
    /// The descriptors that came with it, in the order they were sent.
    pub fds: Vec<OwnedFd>,
}

/// Receives one frame; `Ok(None)` is a clean end of stream before a frame began.
///
/// # Errors
///
/// `InvalidData` when the length exceeds `max_len` (checked before any
/// allocation), when the descriptor count disagrees with what arrived, or when
/// descriptors were truncated; `UnexpectedEof` when the stream ends inside a
/// frame.
pub fn recv_frame(sock: &UnixStream, max_len: usize) -> io::Result<Option<Frame>> {
    recv_frame_fd(sock.as_fd(), max_len, false)
}

/// [`recv_frame`] that fails with `WouldBlock` instead of waiting when no
/// frame has begun (the rest of a begun frame is still read to its end).
pub fn try_recv_frame(sock: &UnixStream, max_len: usize) -> io::Result<Option<Frame>> {
    recv_frame_fd(sock.as_fd(), max_len, true)
}

/// Reads exactly `buf` from a stream socket; `UnexpectedEof` if it ends first.
fn recv_exact(sock: BorrowedFd<'_>, mut buf: &mut [u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match rustix::net::recv(sock, &mut *buf, RecvFlags::empty()) {
            Ok((0, _)) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the stream ended inside a frame",
                ));
            }
            Ok((n, _)) => buf = &mut buf[n..],
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// [`recv_frame`] (or, with `nonblocking`, [`try_recv_frame`]) on any stream socket.
pub(crate) fn recv_frame_fd(
    sock: BorrowedFd<'_>,
    max_len: usize,
    nonblocking: bool,
) -> io::Result<Option<Frame>> {
    let flags = if nonblocking {
        RecvFlags::DONTWAIT
    } else {
        RecvFlags::empty()
    };
    let mut header = [0u8; HEADER];
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = loop {
        match rustix::net::recvmsg(
            sock,
            &mut [IoSliceMut::new(&mut header)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC | flags,
        ) {
            Ok(m) => break m,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    let mut fds = Vec::new();
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = m {
            fds.extend(rights);
        }
    }
    if msg.bytes == 0 {
        return if fds.is_empty() {
            Ok(None)
        } else {
            Err(invalid("descriptors without a frame".into()))
        };
    }
    if msg.flags.contains(ReturnFlags::CTRUNC) {
        return Err(invalid(
            "descriptors were truncated (more than the frame limit)".into(),
        ));
    }
    if msg.bytes < HEADER {
        recv_exact(sock, &mut header[msg.bytes..])?;
    }
    let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    let nfds = u32::from_le_bytes(header[4..].try_into().expect("4 bytes")) as usize;
    if len > max_len {
        return Err(invalid(format!(
            "frame of {len} bytes exceeds the limit of {max_len}"
        )));
    }
    if nfds != fds.len() {
        return Err(invalid(format!(
            "frame announced {nfds} descriptors but {} arrived",
            fds.len()
        )));
    }
    let mut payload = vec![0u8; len];
    recv_exact(sock, &mut payload)?;
    Ok(Some(Frame { payload, fds }))
}

/// A frame being received without waiting: the header bytes, descriptors
/// and payload bytes that have arrived so far.
///
/// [`PartialFrame::read`] takes whatever the socket has and keeps it, so a
/// reader that gives up between two reads (a dropped future, a timeout) loses
/// nothing: the next `read` continues the same frame. The socket's own
/// blocking mode does not matter (every call passes `MSG_DONTWAIT`).
#[derive(Debug, Default)]
pub struct PartialFrame {
    header: [u8; HEADER],
    header_got: usize,
    fds: Vec<OwnedFd>,
    payload: Option<Vec<u8>>,
    payload_got: usize,
}

impl PartialFrame {
    /// An empty reader, before any frame.
    pub fn new() -> PartialFrame {
        PartialFrame::default()
    }

    /// Whether part of a frame has arrived (and the rest is awaited).
    pub fn is_started(&self) -> bool {
        self.header_got > 0
    }

    /// Reads, without waiting, as much of the current frame as the socket
    /// holds. `Ok(Some(frame))`: the frame is complete (and this reader is
    /// empty again); `Ok(None)`: a clean end of stream before a frame began.
    ///
    /// # Errors
    ///
    /// `WouldBlock` when the frame is not complete yet (what arrived is
    /// kept); otherwise as [`recv_frame`], after which the reader is empty
    /// again (and the stream is not to be trusted).
    pub fn read(&mut self, sock: BorrowedFd<'_>, max_len: usize) -> io::Result<Option<Frame>> {
        self.read_with(sock, max_len, RecvFlags::DONTWAIT)
    }

    /// [`read`](PartialFrame::read), but waiting inside the receive calls
    /// (on a socket in blocking mode) until the frame is complete: one
    /// `recvmsg` for the header and one `recv` for the payload, where a
    /// `poll` first would cost a wake-up more.
    ///
    /// # Errors
    ///
    /// As [`read`](PartialFrame::read); `WouldBlock` only on a socket in
    /// non-blocking mode.
    pub fn read_waiting(
        &mut self,
        sock: BorrowedFd<'_>,
        max_len: usize,
    ) -> io::Result<Option<Frame>> {
        self.read_with(sock, max_len, RecvFlags::WAITALL)
    }

    fn read_with(
        &mut self,
        sock: BorrowedFd<'_>,
        max_len: usize,
        mode: RecvFlags,
    ) -> io::Result<Option<Frame>> {
        let got = self.step(sock, max_len, mode);
        match &got {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => *self = PartialFrame::default(),
            Ok(_) => {}
        }
        got
    }

    fn step(
        &mut self,
        sock: BorrowedFd<'_>,
        max_len: usize,
        mode: RecvFlags,
    ) -> io::Result<Option<Frame>> {
        while self.header_got < HEADER {
            let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let msg = match rustix::net::recvmsg(
                sock,
                &mut [IoSliceMut::new(&mut self.header[self.header_got..])],
                &mut control,
                RecvFlags::CMSG_CLOEXEC | mode,
            ) {
                Ok(m) => m,
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            };
            for m in control.drain() {
                if let RecvAncillaryMessage::ScmRights(rights) = m {
                    self.fds.extend(rights);
                }
            }
            if msg.flags.contains(ReturnFlags::CTRUNC) {
                return Err(invalid(
                    "descriptors were truncated (more than the frame limit)".into(),
                ));
            }
            if msg.bytes == 0 {
                return match (self.header_got, self.fds.is_empty()) {
                    (0, true) => Ok(None),
                    (0, false) => Err(invalid("descriptors without a frame".into())),
                    _ => Err(ended_inside()),
                };
            }
            self.header_got += msg.bytes;
        }
        let len = u32::from_le_bytes(self.header[..4].try_into().expect("4 bytes")) as usize;
        if self.payload.is_none() {
            let nfds = u32::from_le_bytes(self.header[4..].try_into().expect("4 bytes")) as usize;
            if len > max_len {
                return Err(invalid(format!(
                    "frame of {len} bytes exceeds the limit of {max_len}"
                )));
            }
            if nfds != self.fds.len() {
                return Err(invalid(format!(
                    "frame announced {nfds} descriptors but {} arrived",
                    self.fds.len()
                )));
            }
            self.payload = Some(vec![0u8; len]);
        }
        let payload = self.payload.as_mut().expect("allocated above");
        while self.payload_got < len {
            match rustix::net::recv(sock, &mut payload[self.payload_got..], mode) {
                Ok((0, _)) => return Err(ended_inside()),
                Ok((n, _)) => self.payload_got += n,
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        let done = std::mem::take(self);
        Ok(Some(Frame {
            payload: done.payload.expect("allocated above"),
            fds: done.fds,
        }))
    }
}

fn ended_inside() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the stream ended inside a frame",
    )
}

/// Encodes one frame (header and payload) into a single buffer, for a
/// sender that may have to finish it later (see [`send_frame_nonblocking`]).
///
/// # Errors
///
/// As [`check_frame`] with no receiver limit.
pub fn encode_frame(parts: &[&[u8]], nfds: usize) -> io::Result<Vec<u8>> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    check_frame(total, nfds, u32::MAX as usize)?;
    let mut frame = Vec::with_capacity(HEADER + total);
    frame.extend_from_slice(&(total as u32).to_le_bytes());
    frame.extend_from_slice(&(nfds as u32).to_le_bytes());
    for p in parts {
        frame.extend_from_slice(p);
    }
    Ok(frame)
}

/// Writes the start of an [encoded](encode_frame) frame without waiting, with
/// `fds` attached to its first byte; returns how many bytes went (at least
/// one: `WouldBlock` means none did, and the descriptors did not go either).
/// The caller writes the rest with [`send_nonblocking`].
///
/// # Errors
///
/// `WouldBlock` when the socket has no room; the socket's error otherwise
/// (`EPIPE` when the peer is gone).
pub fn send_frame_nonblocking(
    sock: BorrowedFd<'_>,
    frame: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<usize> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other("descriptor control buffer too small"));
    }
    loop {
        match rustix::net::sendmsg(
            sock,
            &[IoSlice::new(frame)],
            &mut control,
            SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
        ) {
            Ok(0) if !frame.is_empty() => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => return Ok(n),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Writes as much of `buf` as the socket takes without waiting; returns
/// how many bytes went.
///
/// # Errors
///
/// `WouldBlock` when none went; the socket's error otherwise.
pub fn send_nonblocking(sock: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    loop {
        match rustix::net::send(sock, buf, SendFlags::NOSIGNAL | SendFlags::DONTWAIT) {
            Ok(0) if !buf.is_empty() => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => return Ok(n),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn header(len: u32, nfds: u32) -> [u8; 8] {
        let mut h = [0u8; 8];
        h[..4].copy_from_slice(&len.to_le_bytes());
        h[4..].copy_from_slice(&nfds.to_le_bytes());
        h
    }

    #[test]
    fn round_trip_with_descriptors() {
        let (a, b) = UnixStream::pair().unwrap();
        let memfd = crate::sys::mem::memfd(4096).unwrap();
        send_frame(&a, &[b"hello ", b"world"], &[memfd.as_fd(), memfd.as_fd()]).unwrap();
        send_frame(&a, &[], &[]).unwrap();
        let f = recv_frame(&b, 1024).unwrap().unwrap();
        assert_eq!(f.payload, b"hello world");
        assert_eq!(f.fds.len(), 2);
        let (_, size) = crate::sys::mem::file_identity(&f.fds[0]).unwrap();
        assert_eq!(size, 4096);
        let empty = recv_frame(&b, 1024).unwrap().unwrap();
        assert!(empty.payload.is_empty() && empty.fds.is_empty());
        drop(a);
        assert!(
            recv_frame(&b, 1024).unwrap().is_none(),
            "clean end of stream"
        );
    }

    #[test]
    fn oversized_length_is_rejected_before_allocating() {
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(&header(u32::MAX, 0)).unwrap();
        let e = recv_frame(&b, 1 << 20).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("exceeds the limit"), "{e}");
    }

    #[test]
    fn announced_descriptors_that_did_not_arrive_are_invalid() {
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(&header(0, 3)).unwrap();
        let e = recv_frame(&b, 1024).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(
            e.to_string()
                .contains("announced 3 descriptors but 0 arrived"),
            "{e}"
        );
    }

    #[test]
    fn truncated_frames_are_unexpected_eof() {
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(&header(100, 0)).unwrap();
        a.write_all(&[7; 10]).unwrap();
        drop(a);
        assert_eq!(
            recv_frame(&b, 1024).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );

        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(&[1, 2, 3]).unwrap();
        drop(a);
        assert_eq!(
            recv_frame(&b, 1024).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }

    #[test]
    fn a_header_split_across_writes_is_reassembled() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let h = header(2, 0);
        a.write_all(&h[..3]).unwrap();
        let t = std::thread::spawn(move || {
            a.write_all(&h[3..]).unwrap();
            a.write_all(b"ok").unwrap();
        });
        assert_eq!(recv_frame(&b, 16).unwrap().unwrap().payload, b"ok");
        t.join().unwrap();
    }

    #[test]
    fn frame_limits_are_checked_before_sending() {
        assert!(check_frame(100, MAX_FDS, 100).is_ok());
        let e = check_frame(101, 0, 100).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(
            e.to_string().contains("101 bytes is over the limit of 100"),
            "{e}"
        );
        let e = check_frame(0, MAX_FDS + 1, 100).unwrap_err();
        assert!(
            e.to_string().contains("at most 253 descriptors, got 254"),
            "{e}"
        );
        // No frame can exceed what its u32 length prefix can say.
        assert!(check_frame(u32::MAX as usize + 1, 0, usize::MAX).is_err());
    }

    #[test]
    fn too_many_descriptors_are_refused_by_the_sender() {
        let (a, _b) = UnixStream::pair().unwrap();
        let fds = vec![a.as_fd(); MAX_FDS + 1];
        assert_eq!(
            send_frame(&a, &[], &fds).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn a_vanished_peer_is_broken_pipe_not_a_signal() {
        let (a, b) = UnixStream::pair().unwrap();
        drop(b);
        assert_eq!(
            send_frame(&a, &[b"x"], &[]).unwrap_err().kind(),
            io::ErrorKind::BrokenPipe
        );
    }

    #[test]
    fn a_partial_frame_continues_where_it_stopped() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let memfd = crate::sys::mem::memfd(4096).unwrap();
        let frame = encode_frame(&[b"hello", b" world"], 1).unwrap();
        // The header's first 3 bytes carry the descriptor.
        assert_eq!(
            send_frame_nonblocking(a.as_fd(), &frame[..3], &[memfd.as_fd()]).unwrap(),
            3
        );
        let mut p = PartialFrame::new();
        let e = p.read(b.as_fd(), 64).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert!(p.is_started());
        a.write_all(&frame[3..10]).unwrap();
        assert_eq!(
            p.read(b.as_fd(), 64).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        assert_eq!(
            send_nonblocking(a.as_fd(), &frame[10..]).unwrap(),
            frame.len() - 10
        );
        let f = p.read(b.as_fd(), 64).unwrap().unwrap();
        assert_eq!(f.payload, b"hello world");
        assert_eq!(f.fds.len(), 1);
        assert!(!p.is_started());
        drop(a);
        assert!(p.read(b.as_fd(), 64).unwrap().is_none());
    }

    #[test]
    fn a_partial_frame_checks_the_length_before_allocating() {
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(&header(u32::MAX, 0)).unwrap();
        let mut p = PartialFrame::new();
        assert_eq!(
            p.read(b.as_fd(), 1024).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        assert!(!p.is_started());
        a.write_all(&header(4, 0)).unwrap();
        a.write_all(b"ab").unwrap();
        drop(a);
        assert_eq!(
            p.read(b.as_fd(), 1024).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }
}
