//! Out-of-band descriptor transfer for handles.
//!
//! A handle ([`Segment`], [`Slot`], and a socket such as a `Connection`) serializes as an index
//! into a table of descriptors that travels beside the serialized bytes (as
//! `SCM_RIGHTS` on a Unix socket). The table only exists while aiop itself
//! serializes or deserializes a message that can carry descriptors: the
//! arguments and result of a spawned process, and [`Connection`](crate::connection::Connection)
//! messages. Serializing a handle anywhere else fails with
//! [`HANDLE_OUTSIDE_TRANSFER`], as Python refuses to pickle a `Lock` into a
//! `Queue`: the bytes alone could never be turned back into the object.
//!
//! The table is thread-local and scoped: aiop's internal encode and decode install it
//! for exactly one `serialize` / `deserialize` call and restore whatever was
//! there before, so transfers nest.
//!
//! # Reference counts in flight
//!
//! A [`Slot`] is reference-counted across processes, and a slot in a message
//! must stay allocated until the receiver holds it. So the sender takes a
//! count for every slot it serializes (it keeps a clone in the `Outbound`),
//! and the message lists those counts beside the bytes. If the message is
//! sent, the counts pass to the receiver (the clones are forgotten); if it is
//! not, dropping the `Outbound` gives them back. The receiver's `Inbound`
//! adopts one listed count for each slot it decodes and gives back, when it
//! is dropped, every count it did not adopt (a message that failed to decode,
//! or a result nobody joined). Only a process that dies with a message in
//! hand can leak a count, and the slot is then freed with its arena.

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::arena::{self, Slot};
use crate::shm::Segment;

/// The message of the error returned when a handle is serialized outside a
/// transfer that can carry its descriptor.
pub const HANDLE_OUTSIDE_TRANSFER: &str = "an aiop handle can only be serialized into the arguments or result of a spawned process or a message on a Connection, where its descriptor travels with it";

/// One entry of an outgoing descriptor table.
enum Attached {
    Segment(Segment),
    /// A duplicate of a socket or other descriptor (see [`push_fd`]).
    Fd(OwnedFd),
}

impl Attached {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Attached::Segment(s) => s.as_fd(),
            Attached::Fd(fd) => fd.as_fd(),
        }
    }
}

/// The slot reference counts a message carries: (descriptor-table index of
/// the segment, slot index) pairs.
pub(crate) type Refs = Vec<(u32, u32)>;

/// The descriptors and in-flight reference counts of one outgoing message.
#[derive(Default)]
pub(crate) struct Outbound {
    /// The descriptor table: segments and plain descriptors share one index space.
    segments: Vec<Attached>,
    /// A count held for each serialized slot, with its segment's table index.
    slots: Vec<(u32, Slot)>,
}

impl Outbound {
    /// The descriptors to attach to the message.
    pub(crate) fn fds(&self) -> Vec<BorrowedFd<'_>> {
        self.segments.iter().map(Attached::as_fd).collect()
    }

    /// The counts the message carries, as (table index, slot index) pairs.
    pub(crate) fn refs(&self) -> Refs {
        self.slots
            .iter()
            .map(|(seg, slot)| (*seg, slot.index()))
            .collect()
    }

    /// The message was sent: its counts now belong to the receiver.
    pub(crate) fn delivered(self) {
        for (_, slot) in self.slots {
            slot.hand_over();
        }
    }

    fn push_segment(&mut self, seg: &Segment) -> u32 {
        let same = |x: &Attached| matches!(x, Attached::Segment(x) if x.key() == seg.key());
        if let Some(i) = self.segments.iter().position(same) {
            return i as u32;
        }
        self.segments.push(Attached::Segment(seg.clone()));
        (self.segments.len() - 1) as u32
    }
}

impl fmt::Debug for Outbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbound")
            .field("fds", &self.segments.len())
            .finish()
    }
}

/// The descriptors of one incoming message, mapped on first use, and the
/// reference counts it carries that have not been adopted yet.
#[derive(Debug)]
pub(crate) struct Inbound {
    fds: Vec<Option<OwnedFd>>,
    segments: Vec<Option<Segment>>,
    refs: Refs,
}

impl Inbound {
    /// An incoming message's descriptors and the counts it says it carries.
    pub(crate) fn new(fds: Vec<OwnedFd>, refs: Refs) -> Inbound {
        let segments = fds.iter().map(|_| None).collect();
        Inbound {
            fds: fds.into_iter().map(Some).collect(),
            segments,
            refs,
        }
    }

    /// Takes over the count the message carries for slot `slot` of the
    /// segment at table index `seg`.
    fn adopt(&mut self, seg: u32, slot: u32) -> io::Result<Segment> {
        let i = self
            .refs
            .iter()
            .position(|&r| r == (seg, slot))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a slot handle arrived without the reference count it needs",
                )
            })?;
        self.refs.swap_remove(i);
        self.segment(seg)
    }

    fn segment(&mut self, index: u32) -> io::Result<Segment> {
        let i = index as usize;
        if let Some(Some(seg)) = self.segments.get(i) {
            return Ok(seg.clone());
        }
        let fd = self.fds.get_mut(i).and_then(Option::take).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "handle refers to descriptor {index}, but the message carried {}",
                    self.fds.len()
                ),
            )
        })?;
        let seg = Segment::from_fd(fd)?;
        self.segments[i] = Some(seg.clone());
        Ok(seg)
    }
}

enum Scope {
    Out(Outbound),
    In(Inbound),
}

thread_local! {
    static SCOPE: RefCell<Option<Scope>> = const { RefCell::new(None) };
    /// Why a handle refused to deserialize during the current [`decode`]:
    /// postcard keeps nothing of a `serde::de::Error::custom` message.
    static DECODE_ERROR: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Records why a handle being decoded is refused (the object is of another
/// kind, say), so that [`decode`] can report it. Does nothing outside a
/// decode; the first refusal of a decode is the one reported.
pub(crate) fn note_decode_error(why: &dyn fmt::Display) {
    let decoding = SCOPE.with(|s| matches!(s.try_borrow().as_deref(), Ok(Some(Scope::In(_)))));
    if decoding {
        DECODE_ERROR.with(|e| {
            e.borrow_mut().get_or_insert_with(|| why.to_string());
        });
    }
}

/// Runs `f` with `scope` installed, then takes it back and restores the
/// previous scope (also when `f` panics).
fn scoped<T>(scope: Scope, f: impl FnOnce() -> T) -> (T, Scope) {
    struct Restore(Option<Scope>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            SCOPE.with(|s| *s.borrow_mut() = prev);
        }
    }
    let guard = Restore(SCOPE.with(|s| s.borrow_mut().replace(scope)));
    let out = f();
    let ours = SCOPE
        .with(|s| s.borrow_mut().take())
        .expect("transfer scope present");
    drop(guard);
    (out, ours)
}

/// Appends `value` to `buf` as postcard, adding the descriptors its handles need to `out`.
pub(crate) fn encode<T: Serialize + ?Sized>(
    value: &T,
    buf: &mut Vec<u8>,
    out: &mut Outbound,
) -> io::Result<()> {
    let (res, scope) = scoped(Scope::Out(std::mem::take(out)), || {
        postcard::to_io(value, &mut *buf).map(|_| ())
    });
    let Scope::Out(o) = scope else {
        unreachable!("outbound scope replaced by inbound")
    };
    *out = o;
    res.map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("failed to serialize: {e}"),
        )
    })
}

/// Decodes `bytes` as postcard, resolving handles against `inbound`.
pub(crate) fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    inbound: Inbound,
) -> (io::Result<T>, Inbound) {
    let outer = DECODE_ERROR.with(|e| e.borrow_mut().take());
    let (res, scope) = scoped(Scope::In(inbound), || postcard::from_bytes::<T>(bytes));
    let noted = DECODE_ERROR.with(|e| std::mem::replace(&mut *e.borrow_mut(), outer));
    let Scope::In(inbound) = scope else {
        unreachable!("inbound scope replaced by outbound")
    };
    let res = res.map_err(|e| {
        let why = match (e, noted) {
            (postcard::Error::SerdeDeCustom, Some(why)) => why,
            (e, _) => e.to_string(),
        };
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("failed to deserialize: {why}"),
        )
    });
    (res, inbound)
}

thread_local! {
    /// Set when a handle refused to serialize outside a transfer: postcard
    /// keeps nothing of a `serde::ser::Error::custom` message.
    static ENCODE_REFUSED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The refusal of a handle serialized outside a transfer, noted for
/// [`plain_encode`].
fn outside_transfer() -> &'static str {
    ENCODE_REFUSED.with(|r| r.set(true));
    HANDLE_OUTSIDE_TRANSFER
}

/// Runs a plain (descriptor-less) postcard encoding, such as a queue item's,
/// and words its failure: [`HANDLE_OUTSIDE_TRANSFER`] when an aiop handle
/// refused, the postcard error otherwise.
pub(crate) fn plain_encode<R>(f: impl FnOnce() -> Result<R, postcard::Error>) -> Result<R, String> {
    ENCODE_REFUSED.with(|r| r.set(false));
    let res = f();
    let refused = ENCODE_REFUSED.with(|r| r.replace(false));
    res.map_err(|e| match e {
        postcard::Error::SerdeSerCustom if refused => HANDLE_OUTSIDE_TRANSFER.to_string(),
        postcard::Error::SerdeSerCustom => {
            "a Serialize implementation refused the value".to_string()
        }
        e => e.to_string(),
    })
}

/// Called by a handle's `Serialize`: records its segment, returns its index.
pub(crate) fn push_segment(seg: &Segment) -> Result<u32, &'static str> {
    SCOPE.with(|s| match &mut *s.borrow_mut() {
        Some(Scope::Out(out)) => Ok(out.push_segment(seg)),
        _ => Err(outside_transfer()),
    })
}

/// Called by `Slot`'s `Serialize`: records its segment and takes the count
/// the message will carry; returns the segment's index.
pub(crate) fn push_slot(slot: &Slot, seg: &Segment) -> Result<u32, &'static str> {
    SCOPE.with(|s| match &mut *s.borrow_mut() {
        Some(Scope::Out(out)) => {
            let i = out.push_segment(seg);
            out.slots.push((i, slot.clone()));
            Ok(i)
        }
        _ => Err(outside_transfer()),
    })
}

/// Called by `Slot`'s `Deserialize`: the segment at `seg`, adopting the
/// count the message carries for its slot `slot`.
pub(crate) fn adopt_slot(seg: u32, slot: u32) -> Result<Segment, String> {
    SCOPE.with(|s| match &mut *s.borrow_mut() {
        Some(Scope::In(inb)) => inb.adopt(seg, slot).map_err(|e| e.to_string()),
        _ => Err(HANDLE_OUTSIDE_DECODE.to_string()),
    })
}

/// Called by the `Serialize` of a type that travels as a plain descriptor (a
/// socket, a `Connection`): attaches a duplicate of `fd` to the message and
/// returns its index. Reference counts are not involved.
pub(crate) fn push_fd(fd: BorrowedFd<'_>) -> Result<u32, String> {
    SCOPE.with(|s| match &mut *s.borrow_mut() {
        Some(Scope::Out(out)) => {
            let dup = fd
                .try_clone_to_owned()
                .map_err(|e| format!("could not duplicate a descriptor to send: {e}"))?;
            out.segments.push(Attached::Fd(dup));
            Ok((out.segments.len() - 1) as u32)
        }
        _ => Err(outside_transfer().to_string()),
    })
}

/// Called by the `Deserialize` of a type that travels as a plain descriptor:
/// takes the descriptor at `index` of the message (each index can be taken once).
pub(crate) fn take_fd(index: u32) -> Result<OwnedFd, String> {
    SCOPE.with(|s| match &mut *s.borrow_mut() {
        Some(Scope::In(inb)) => inb
            .fds
            .get_mut(index as usize)
            .and_then(Option::take)
            .ok_or_else(|| {
                format!(
                    "a message refers to descriptor {index}, which it did not carry or which was already taken"
                )
            }),
        _ => Err(HANDLE_OUTSIDE_DECODE.to_string()),
    })
}

const HANDLE_OUTSIDE_DECODE: &str =
    "an aiop handle can only be deserialized from a message that carried its descriptor";

/// Called by a handle's `Deserialize`: the segment at `index` of the message.
pub(crate) fn segment_at(index: u32) -> Result<Segment, String> {
    SCOPE.with(|s| match &mut *s.borrow_mut() {
        Some(Scope::In(inb)) => inb.segment(index).map_err(|e| e.to_string()),
        _ => Err(
            "an aiop handle can only be deserialized from a message that carried its descriptor"
                .to_string(),
        ),
    })
}

impl Drop for Inbound {
    /// Gives back the counts of slots the message carried but nobody decoded.
    fn drop(&mut self) {
        for (seg, slot) in std::mem::take(&mut self.refs) {
            if let Ok(segment) = self.segment(seg) {
                arena::release(&segment, slot);
            }
        }
    }
}
