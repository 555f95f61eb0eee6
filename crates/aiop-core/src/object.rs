//! The header every shared object carries, and where objects live.
//!
//! An object is a [`Slot`]: in a shared arena for small anonymous objects,
//! or slot 0 of the arena at the tail of a segment of its own (named
//! objects, and objects with a payload such as a `Value`'s data, which sits
//! at the start of that segment). The slot's last two words are the header:
//!
//! ```text
//! word 14  magic "aiob"
//! word 15  version (high 16 bits) | kind (low 16 bits)
//! ```
//!
//! Opening a name or receiving a handle checks the header, so a named
//! object of another kind, or memory that is no aiop object at all, is an
//! error and never undefined behaviour.

use std::io;
use std::sync::atomic::Ordering;

use crate::arena::{self, ARENA_SIZE, Slot};
use crate::named;
use crate::shm::Segment;

const MAGIC: u32 = u32::from_le_bytes(*b"aiob");
const VERSION: u32 = 1;
const MAGIC_WORD: usize = 14;
const KIND_WORD: usize = 15;

/// What a shared object is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub(crate) enum Kind {
    Lock = 1,
    RLock = 2,
    Semaphore = 3,
    BoundedSemaphore = 4,
    Event = 5,
    Condition = 6,
    Barrier = 7,
    Value = 8,
    Array = 9,
    SharedMemory = 10,
    ShareableList = 11,
    Queue = 12,
    SimpleQueue = 13,
    JoinableQueue = 14,
}

impl Kind {
    fn from_u16(v: u16) -> Option<Kind> {
        use Kind::*;
        [
            Lock,
            RLock,
            Semaphore,
            BoundedSemaphore,
            Event,
            Condition,
            Barrier,
            Value,
            Array,
            SharedMemory,
            ShareableList,
            Queue,
            SimpleQueue,
            JoinableQueue,
        ]
        .into_iter()
        .find(|k| *k as u16 == v)
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Lock => "a Lock",
            Kind::RLock => "an RLock",
            Kind::Semaphore => "a Semaphore",
            Kind::BoundedSemaphore => "a BoundedSemaphore",
            Kind::Event => "an Event",
            Kind::Condition => "a Condition",
            Kind::Barrier => "a Barrier",
            Kind::Value => "a Value",
            Kind::Array => "an Array",
            Kind::SharedMemory => "a SharedMemory",
            Kind::ShareableList => "a ShareableList",
            Kind::Queue => "a Queue",
            Kind::SimpleQueue => "a SimpleQueue",
            Kind::JoinableQueue => "a JoinableQueue",
        }
    }
}

/// Writes the header: the object is initialized and may be opened.
pub(crate) fn stamp(slot: &Slot, kind: Kind) {
    slot.word(KIND_WORD)
        .store(VERSION << 16 | kind as u32, Ordering::Relaxed);
    // Release: whoever sees the magic sees the object's initial state.
    slot.word(MAGIC_WORD).store(MAGIC, Ordering::Release);
}

/// An `InvalidData` error about a shared object's header or layout. When a
/// handle is being received, the message is also noted for the transfer's
/// error (postcard would drop it).
pub(crate) fn invalid_data(msg: impl Into<String>) -> io::Error {
    let msg = msg.into();
    crate::transfer::note_decode_error(&msg);
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Checks that `slot` holds an initialized object of kind `kind`.
pub(crate) fn check(slot: &Slot, kind: Kind) -> io::Result<()> {
    let bad = |msg: String| Err(invalid_data(msg));
    // Acquire: pairs with `stamp`.
    if slot.word(MAGIC_WORD).load(Ordering::Acquire) != MAGIC {
        return bad(format!(
            "not an aiop object (expected {}): no header",
            kind.name()
        ));
    }
    let w = slot.word(KIND_WORD).load(Ordering::Relaxed);
    if w >> 16 != VERSION {
        return bad(format!(
            "{} of an unknown layout version {}",
            kind.name(),
            w >> 16
        ));
    }
    match Kind::from_u16(w as u16) {
        Some(k) if k == kind => Ok(()),
        Some(k) => bad(format!("the object is {}, not {}", k.name(), kind.name())),
        None => bad(format!(
            "not an aiop object (expected {}): unknown kind {}",
            kind.name(),
            w as u16
        )),
    }
}

/// Rounds a payload up to whole pages of this system (so that the file,
/// whose arena ends it, is whole pages too: robust-list nodes live in the
/// private memory right after the file's last page).
fn payload_span(payload: usize) -> io::Result<usize> {
    payload
        .checked_next_multiple_of(crate::sys::robust::page_size())
        .and_then(|p| p.checked_add(ARENA_SIZE))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "object too large"))
}

/// A new object with `payload` bytes of its own (at offset 0 of the slot's
/// segment), anonymous or named. Returns its slot 0, zeroed, not yet stamped.
pub(crate) fn new_with_payload(payload: usize, name: Option<&str>) -> io::Result<Slot> {
    let len = payload_span(payload)?;
    let seg = match name {
        Some(n) => named::create(n, len)?,
        None => Segment::new(len)?,
    };
    arena::format(&seg);
    Slot::first_of_new(&seg)
}

/// A new small object: a shared arena slot, or a named segment of its own.
pub(crate) fn new_small(name: Option<&str>) -> io::Result<Slot> {
    match name {
        None => Slot::new(),
        Some(_) => new_with_payload(0, name),
    }
}

/// Opens the named object `name`, which must be of kind `kind`.
pub(crate) fn open_named(name: &str, kind: Kind) -> io::Result<Slot> {
    let seg = named::open(name)?;
    let slot = Slot::open(&seg, 0)?;
    check(&slot, kind)?;
    Ok(slot)
}

/// The payload of an object made by [`new_with_payload`]: its segment and
/// length in bytes (the bytes before the arena).
pub(crate) fn payload_len(slot: &Slot) -> usize {
    slot.segment().len() - ARENA_SIZE
}
