//! `ShareableList`: a fixed-length list of scalars and strings in shared
//! memory.
//!
//! # Layout
//!
//! The payload of the object segment starts with a table of one entry per
//! position, then each position's storage, back to back:
//!
//! ```text
//! 0            entry 0: offset u64 | capacity u64 | format u64
//! 24           entry 1 ...
//! 24 * len     storage of position 0 (capacity bytes), of position 1, ...
//! ```
//!
//! `offset` is where the position's storage starts (right after the one
//! before it), `capacity` its size in bytes (a multiple of 8, at least 8);
//! both are fixed at creation. `format` is the position's current item:
//! its kind in the low 8 bits, and for a str or bytes item its length in
//! bytes above them. Scalars take the first 8 bytes of the storage
//! (native-endian `i64`, `f64` bits, 0 or 1 for a bool).
//!
//! The header slot holds the robust lock (words 0-3), which every read and
//! write of an item holds, and the length (`word64` 6, words 12-13).
//! Every table entry is checked when a list is opened or received; the
//! offsets and capacities are then kept in the handle, so only the format
//! word is read from shared memory afterwards, and checked again on every
//! read. All bytes are copied through the atomic copies of
//! `SharedMemory`: no access is a data race even if another program writes
//! the memory without the lock.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::memory;
use crate::arena::Slot;
use crate::object::{self, Kind};
use crate::sync::lock::RawLock;
use crate::sync::{Lock, LockGuard, OwnerDied};

/// `word64` 6 of the header slot (words 12 and 13): the number of items.
const LEN: usize = 6;
/// Bytes of a table entry: offset, capacity, format.
const ENTRY: usize = 24;
/// Storage is counted in words of this many bytes (Python's alignment).
const ALIGN: usize = 8;
/// The longest str or bytes item: its length shares a word with the kind.
const MAX_ITEM: usize = (u64::MAX >> 8) as usize;

const INT: u64 = 1;
const FLOAT: u64 = 2;
const BOOL: u64 = 3;
const STR: u64 = 4;
const BYTES: u64 = 5;
const NONE: u64 = 6;

/// One item of a [`ShareableList`]: the types Python's `ShareableList`
/// holds.
///
/// Items compare by variant and value: unlike Python, `Int(1)`,
/// `Float(1.0)` and `Bool(true)` are three different items.
///
/// # Examples
///
/// ```
/// use aiop_core::shared::Item;
///
/// assert_eq!(Item::from(3), Item::Int(3));
/// assert_eq!(Item::from("text"), Item::Str("text".into()));
/// assert_eq!(Item::from(&b"raw"[..]), Item::Bytes(b"raw".to_vec()));
/// assert_eq!(Item::from(None::<f64>), Item::None);
/// assert_ne!(Item::Int(1), Item::Bool(true));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Item {
    /// An integer (Python's `int`, within 64 bits).
    Int(i64),
    /// A float.
    Float(f64),
    /// A bool.
    Bool(bool),
    /// A string, stored as UTF-8.
    Str(String),
    /// A byte string.
    Bytes(Vec<u8>),
    /// Python's `None`.
    None,
}

impl Item {
    /// The bytes of storage the item needs.
    fn stored_len(&self) -> usize {
        match self {
            Item::Str(s) => s.len(),
            Item::Bytes(b) => b.len(),
            Item::None => 0,
            _ => 8,
        }
    }

    /// The format word and the stored bytes.
    fn encode(&self) -> (u64, std::borrow::Cow<'_, [u8]>) {
        use std::borrow::Cow;
        match self {
            Item::Int(v) => (INT, Cow::Owned(v.to_ne_bytes().to_vec())),
            Item::Float(v) => (FLOAT, Cow::Owned(v.to_bits().to_ne_bytes().to_vec())),
            Item::Bool(v) => (BOOL, Cow::Owned(u64::from(*v).to_ne_bytes().to_vec())),
            Item::Str(s) => (STR | (s.len() as u64) << 8, Cow::Borrowed(s.as_bytes())),
            Item::Bytes(b) => (BYTES | (b.len() as u64) << 8, Cow::Borrowed(b)),
            Item::None => (NONE, Cow::Borrowed(&[])),
        }
    }
}

/// The kind and length of a format word, if it is valid for a position of
/// `capacity` bytes.
fn decode(format: u64, capacity: usize) -> Option<(u64, usize)> {
    let kind = format & 0xff;
    let len = usize::try_from(format >> 8).ok()?;
    match kind {
        INT | FLOAT | BOOL | NONE if len == 0 => Some((kind, 0)),
        STR | BYTES if len <= capacity => Some((kind, len)),
        _ => None,
    }
}

impl From<i64> for Item {
    fn from(v: i64) -> Item {
        Item::Int(v)
    }
}

impl From<i32> for Item {
    fn from(v: i32) -> Item {
        Item::Int(v.into())
    }
}

impl From<f64> for Item {
    fn from(v: f64) -> Item {
        Item::Float(v)
    }
}

impl From<bool> for Item {
    fn from(v: bool) -> Item {
        Item::Bool(v)
    }
}

impl From<String> for Item {
    fn from(v: String) -> Item {
        Item::Str(v)
    }
}

impl From<&str> for Item {
    fn from(v: &str) -> Item {
        Item::Str(v.to_owned())
    }
}

impl From<Vec<u8>> for Item {
    fn from(v: Vec<u8>) -> Item {
        Item::Bytes(v)
    }
}

impl From<&[u8]> for Item {
    fn from(v: &[u8]) -> Item {
        Item::Bytes(v.to_vec())
    }
}

impl<T: Into<Item>> From<Option<T>> for Item {
    fn from(v: Option<T>) -> Item {
        v.map_or(Item::None, Into::into)
    }
}

/// [`ShareableList::set`] was given a str or bytes item longer than the
/// position's storage. The item is handed back; the list is unchanged.
pub struct TooLongError {
    item: Item,
    index: usize,
    capacity: usize,
}

impl TooLongError {
    /// The item that did not fit.
    pub fn into_inner(self) -> Item {
        self.item
    }

    /// The position it was meant for.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The bytes of storage the position has.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

impl fmt::Debug for TooLongError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TooLongError")
            .field("len", &self.item.stored_len())
            .field("index", &self.index)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for TooLongError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "an item of {} bytes does not fit position {} of the shareable list, which holds {} bytes",
            self.item.stored_len(),
            self.index,
            self.capacity
        )
    }
}

impl std::error::Error for TooLongError {}

/// Where a position's storage is, fixed at creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Position {
    offset: usize,
    capacity: usize,
}

/// A fixed-length list of ints, floats, bools, strs, bytes and `None`s
/// shared between processes: Python's
/// `multiprocessing.shared_memory.ShareableList`.
///
/// Each position gets fixed storage when the list is created: 8 bytes for a
/// scalar or `None`, and for a str or bytes item its length rounded up to a
/// multiple of 8 (at least 8). A position may later hold an item of any
/// type that fits that storage ([`set`](Self::set) refuses a str or bytes
/// item that is too long, as Python does).
///
/// Every read and write of an item holds the list's robust lock, so no
/// process ever sees a half-written item. If a process dies holding it, the
/// next access takes the lock over silently; the item that process was
/// writing may be half-written (a str read back then has its broken UTF-8
/// replaced by U+FFFD).
///
/// A handle is cheap to clone and travels to a spawned process in its
/// arguments; a list can also be created by name for programs that did not
/// spawn each other (see [`crate::named`]; the name goes away with the
/// creator's last handle, as for [`SharedMemory`](super::SharedMemory)).
///
/// # Examples
///
/// ```
/// use aiop_core::shared::{Item, ShareableList};
///
/// let list = ShareableList::new(&[Item::Int(1), "hello".into(), Item::None])?;
/// assert_eq!(list.get(1), Item::Str("hello".into()));
/// list.set(2, 2.5).unwrap();
/// // A str position has room for its first value, rounded up to 8 bytes.
/// assert_eq!(list.capacity(1), 8);
/// assert!(list.set(1, "far too long for it").is_err());
/// list.set(1, 42).unwrap(); // another type that fits
/// assert_eq!(list.to_vec(), [Item::Int(1), Item::Int(42), Item::Float(2.5)]);
/// # std::io::Result::Ok(())
/// ```
#[derive(Clone)]
pub struct ShareableList {
    slot: Slot,
    lock: Lock,
    positions: Arc<[Position]>,
    name: Option<Arc<str>>,
}

impl fmt::Debug for ShareableList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShareableList")
            .field("name", &self.name())
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl ShareableList {
    /// Creates an anonymous list holding `items`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` when the items are too large to store; the kernel's
    /// error when the memory cannot be allocated.
    pub fn new(items: &[Item]) -> io::Result<ShareableList> {
        Self::create(None, items)
    }

    /// Creates a list holding `items` that other programs can open by
    /// `name` (Python's `ShareableList(items, name=name)`).
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new); `InvalidInput` for an invalid name;
    /// `AlreadyExists` when the name is taken (also by a stale object,
    /// which the message says).
    pub fn create_named(name: &str, items: &[Item]) -> io::Result<ShareableList> {
        Self::create(Some(name), items)
    }

    /// Opens a list another program created by name (Python's
    /// `ShareableList(name=name)`).
    ///
    /// # Errors
    ///
    /// `NotFound` when no object has that name; `InvalidData` when it is
    /// not a `ShareableList` or its table is damaged.
    pub fn open_named(name: &str) -> io::Result<ShareableList> {
        let slot = object::open_named(name, Kind::ShareableList)?;
        Self::from_slot(slot, Some(name.into()))
    }

    fn create(name: Option<&str>, items: &[Item]) -> io::Result<ShareableList> {
        let too_large = || io::Error::new(io::ErrorKind::InvalidInput, "shareable list too large");
        let mut positions = Vec::with_capacity(items.len());
        let mut end = items.len().checked_mul(ENTRY).ok_or_else(too_large)?;
        for item in items {
            let len = item.stored_len();
            if len > MAX_ITEM {
                return Err(too_large());
            }
            let capacity = len
                .max(ALIGN)
                .checked_next_multiple_of(ALIGN)
                .ok_or_else(too_large)?;
            positions.push(Position {
                offset: end,
                capacity,
            });
            end = end.checked_add(capacity).ok_or_else(too_large)?;
        }
        let slot = object::new_with_payload(end, name)?;
        let seg = slot.segment();
        for (i, (pos, item)) in positions.iter().zip(items).enumerate() {
            let (format, bytes) = item.encode();
            // Relaxed: published by the Release of `stamp` below.
            seg.atomic_u64(i * ENTRY)
                .store(pos.offset as u64, Ordering::Relaxed);
            seg.atomic_u64(i * ENTRY + 8)
                .store(pos.capacity as u64, Ordering::Relaxed);
            seg.atomic_u64(i * ENTRY + 16)
                .store(format, Ordering::Relaxed);
            memory::store(seg, pos.offset, &bytes);
        }
        slot.word64(LEN)
            .store(items.len() as u64, Ordering::Relaxed);
        object::stamp(&slot, Kind::ShareableList);
        Self::assemble(slot, positions.into(), name.map(Arc::from))
    }

    /// Checks a received or opened object's header and table.
    fn from_slot(slot: Slot, name: Option<Arc<str>>) -> io::Result<ShareableList> {
        object::check(&slot, Kind::ShareableList)?;
        let len = slot.word64(LEN).load(Ordering::Relaxed);
        let seg = slot.segment();
        // Relaxed: the Acquire of `check` made the creator's table visible;
        // a format word that changes meanwhile is valid before and after.
        let positions = check_table(len, object::payload_len(&slot), |at| {
            seg.atomic_u64(at).load(Ordering::Relaxed)
        })?;
        Self::assemble(slot, positions.into(), name)
    }

    fn assemble(
        slot: Slot,
        positions: Arc<[Position]>,
        name: Option<Arc<str>>,
    ) -> io::Result<ShareableList> {
        let lock = Lock::from_raw(RawLock::new(slot.clone())?);
        Ok(ShareableList {
            slot,
            lock,
            positions,
            name,
        })
    }

    /// The name given at creation or opening, `None` when anonymous.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Removes the name (Python's `shm.unlink()`), as
    /// [`SharedMemory::unlink`](super::SharedMemory::unlink).
    ///
    /// # Errors
    ///
    /// As [`SharedMemory::unlink`](super::SharedMemory::unlink).
    pub fn unlink(&self) -> io::Result<()> {
        memory::unlink(self.name(), self.slot.segment())
    }

    /// The number of items.
    pub fn len(&self) -> usize {
        self.positions.len()
    }

    /// Whether the list has no items.
    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    /// The bytes of storage position `i` has: the longest str or bytes item
    /// it can hold.
    ///
    /// # Panics
    ///
    /// If `i >= len`.
    pub fn capacity(&self, i: usize) -> usize {
        self.position(i).capacity
    }

    fn position(&self, i: usize) -> Position {
        match self.positions.get(i) {
            Some(p) => *p,
            None => panic!(
                "index {i} out of range for a shareable list of length {}",
                self.len()
            ),
        }
    }

    fn locked(&self) -> LockGuard<'_> {
        self.lock.lock().unwrap_or_else(OwnerDied::into_inner)
    }

    fn format_word(&self, i: usize) -> &AtomicU64 {
        self.slot.segment().atomic_u64(i * ENTRY + 16)
    }

    /// Reads item `i`; the caller holds the lock.
    fn read(&self, i: usize, _locked: &LockGuard<'_>) -> Item {
        let pos = self.position(i);
        // Relaxed: the lock orders it with the writer's.
        let format = self.format_word(i).load(Ordering::Relaxed);
        let Some((kind, len)) = decode(format, pos.capacity) else {
            panic!(
                "position {i} of the shareable list holds an invalid format {format:#x}: another program overwrote its memory"
            )
        };
        let mut bytes = vec![0u8; if kind == STR || kind == BYTES { len } else { 8 }];
        memory::load(self.slot.segment(), pos.offset, &mut bytes);
        let word = || u64::from_ne_bytes(bytes[..8].try_into().expect("eight bytes"));
        match kind {
            INT => Item::Int(word() as i64),
            FLOAT => Item::Float(f64::from_bits(word())),
            BOOL => Item::Bool(word() != 0),
            STR => Item::Str(
                String::from_utf8(bytes)
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
            ),
            BYTES => Item::Bytes(bytes),
            _ => Item::None,
        }
    }

    /// Reads item `i` under the lock (Python's `list[i]`).
    ///
    /// # Panics
    ///
    /// If `i >= len`, or if another program overwrote the list's memory
    /// with a format no `ShareableList` writes.
    pub fn get(&self, i: usize) -> Item {
        let guard = self.locked();
        self.read(i, &guard)
    }

    /// Writes item `i` under the lock (Python's `list[i] = item`). The
    /// item may be of another type than the one there before.
    ///
    /// # Errors
    ///
    /// [`TooLongError`] (with the item) when a str or bytes item is longer
    /// than the position's [`capacity`](Self::capacity); the old item
    /// stays.
    ///
    /// # Panics
    ///
    /// If `i >= len`.
    pub fn set(&self, i: usize, item: impl Into<Item>) -> Result<(), TooLongError> {
        let item = item.into();
        let pos = self.position(i);
        if item.stored_len() > pos.capacity {
            return Err(TooLongError {
                item,
                index: i,
                capacity: pos.capacity,
            });
        }
        let (format, bytes) = item.encode();
        let _guard = self.locked();
        memory::store(self.slot.segment(), pos.offset, &bytes);
        // Relaxed: the lock orders it with readers.
        self.format_word(i).store(format, Ordering::Relaxed);
        Ok(())
    }

    /// Copies every item out, under the lock held once (a consistent
    /// snapshot).
    ///
    /// # Panics
    ///
    /// As [`get`](Self::get).
    pub fn to_vec(&self) -> Vec<Item> {
        let guard = self.locked();
        (0..self.len()).map(|i| self.read(i, &guard)).collect()
    }

    /// How many items equal `item` (Python's `count`), in one snapshot.
    ///
    /// # Panics
    ///
    /// As [`get`](Self::get).
    pub fn count(&self, item: &Item) -> usize {
        self.to_vec().iter().filter(|x| *x == item).count()
    }

    /// The first position holding an item equal to `item` (Python's
    /// `index`, which raises `ValueError` where this gives `None`).
    ///
    /// # Panics
    ///
    /// As [`get`](Self::get).
    pub fn index(&self, item: &Item) -> Option<usize> {
        self.to_vec().iter().position(|x| x == item)
    }
}

/// Checks a list's table of `len` entries in a payload of `payload_len`
/// bytes, reading its `u64`s with `read(byte offset)`; returns the
/// positions. Reads only inside the payload, and never panics.
///
/// # Errors
///
/// `InvalidData` for any table a `ShareableList` would not write.
fn check_table(
    len: u64,
    payload_len: usize,
    read: impl Fn(usize) -> u64,
) -> io::Result<Vec<Position>> {
    let bad = |why: String| {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not a valid ShareableList: {why}"),
        ))
    };
    let Some(mut end) = usize::try_from(len)
        .ok()
        .and_then(|n| n.checked_mul(ENTRY))
        .filter(|t| *t <= payload_len)
    else {
        return bad(format!(
            "a table of {len} items does not fit {payload_len} bytes"
        ));
    };
    let n = end / ENTRY;
    let mut positions = Vec::with_capacity(n);
    for i in 0..n {
        let offset = read(i * ENTRY);
        let capacity = read(i * ENTRY + 8);
        let format = read(i * ENTRY + 16);
        if offset != end as u64 {
            return bad(format!(
                "item {i} is stored at {offset}, not after the item before it ({end})"
            ));
        }
        let Some(capacity) = usize::try_from(capacity)
            .ok()
            .filter(|c| *c >= ALIGN && c % ALIGN == 0)
        else {
            return bad(format!(
                "item {i} has storage of {capacity} bytes, not a positive multiple of 8"
            ));
        };
        let Some(next) = end.checked_add(capacity).filter(|e| *e <= payload_len) else {
            return bad(format!(
                "item {i} passes the end of the list's {payload_len} bytes"
            ));
        };
        if decode(format, capacity).is_none() {
            return bad(format!(
                "item {i} has an invalid format {format:#x} for {capacity} bytes"
            ));
        }
        positions.push(Position {
            offset: end,
            capacity,
        });
        end = next;
    }
    Ok(positions)
}

impl Serialize for ShareableList {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (&self.slot, self.name()).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ShareableList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ShareableList, D::Error> {
        let (slot, name) = <(Slot, Option<String>)>::deserialize(deserializer)?;
        ShareableList::from_slot(slot, name.map(Arc::from)).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A good table: [Int(5), Str("hello, world"), None] in 24 * 3 + 8 + 16 + 8 bytes.
    fn good() -> (Vec<u64>, usize) {
        let t = vec![72, 8, INT, 80, 16, STR | 12 << 8, 96, 8, NONE];
        (t, 104)
    }

    /// Runs `check_table` over `table`; a read past the table (or past the
    /// payload) fails the test instead of reading garbage.
    fn check(len: u64, table: &[u64], payload_len: usize) -> io::Result<Vec<Position>> {
        check_table(len, payload_len, |at| {
            assert!(
                at % 8 == 0 && at + 8 <= payload_len,
                "read at {at} out of bounds"
            );
            table.get(at / 8).copied().unwrap_or(0)
        })
    }

    fn invalid(len: u64, table: &[u64], payload_len: usize) {
        let err = check(len, table, payload_len).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    }

    #[test]
    fn a_good_table_gives_its_positions() {
        let (t, n) = good();
        let p = check(3, &t, n).unwrap();
        assert_eq!(
            p,
            [
                Position {
                    offset: 72,
                    capacity: 8
                },
                Position {
                    offset: 80,
                    capacity: 16
                },
                Position {
                    offset: 96,
                    capacity: 8
                },
            ]
        );
        assert!(check(0, &[], 0).unwrap().is_empty());
    }

    #[test]
    fn corrupted_tables_are_invalid_data() {
        let (t, n) = good();
        // Lengths that do not fit, overflow or are truncated.
        invalid(4, &t, n);
        invalid(u64::MAX, &t, n);
        invalid(u64::MAX / 24 + 1, &t, n);
        invalid(3, &t, 71);
        // The payload ends inside the storage.
        invalid(3, &t, 103);
        let corrupt = |word: usize, v: u64| {
            let mut t = t.clone();
            t[word] = v;
            t
        };
        // Offsets that overlap, leave gaps or point anywhere.
        invalid(3, &corrupt(0, 64), n);
        invalid(3, &corrupt(3, 88), n);
        invalid(3, &corrupt(6, u64::MAX), n);
        // Capacities that are zero, unaligned, or run past the end.
        invalid(3, &corrupt(1, 0), n);
        invalid(3, &corrupt(4, 12), n);
        invalid(3, &corrupt(7, 16), n);
        invalid(3, &corrupt(4, !7), n);
        // Formats of unknown kinds, too long, or scalars with a length.
        invalid(3, &corrupt(2, 0), n);
        invalid(3, &corrupt(2, 7), n);
        invalid(3, &corrupt(2, 0xff), n);
        invalid(3, &corrupt(5, STR | 17 << 8), n);
        invalid(3, &corrupt(5, BYTES | u64::MAX << 8), n);
        invalid(3, &corrupt(8, NONE | 1 << 8), n);
        // The same table but with room to spare is fine.
        assert_eq!(check(3, &t, 4096).unwrap().len(), 3);
    }

    #[test]
    fn garbage_never_panics() {
        // Deterministic pseudo-random tables: each is Ok or InvalidData.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let (good, _) = good();
        for round in 0..20_000 {
            let mut t = good.clone();
            for _ in 0..=round % 3 {
                let w = (next() % 9) as usize;
                t[w] = match next() % 4 {
                    0 => next(),
                    1 => next() % 128,
                    2 => t[w] ^ 1 << (next() % 64),
                    _ => ((next() % 64) << 8) | (next() % 8),
                };
            }
            let len = if round % 7 == 0 { next() % 8 } else { 3 };
            let payload = [0, 72, 103, 104, 4096][round % 5];
            match check(len, &t, payload) {
                Ok(p) => assert!(p.iter().all(|p| p.offset + p.capacity <= payload)),
                Err(e) => assert_eq!(e.kind(), io::ErrorKind::InvalidData),
            }
        }
    }

    #[test]
    fn a_list_whose_table_was_overwritten_is_refused() {
        let list = ShareableList::new(&[Item::Int(1), "hello".into()]).unwrap();
        let seg = list.slot.segment();
        assert!(ShareableList::from_slot(list.slot.clone(), None).is_ok());
        for (at, v) in [(8, 9), (24, 7), (40, 4 | 99 << 8), (16, 0x1234)] {
            let old = seg.atomic_u64(at).swap(v, Ordering::Relaxed);
            let err = ShareableList::from_slot(list.slot.clone(), None).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
            seg.atomic_u64(at).store(old, Ordering::Relaxed);
        }
        list.slot.word64(LEN).store(1 << 40, Ordering::Relaxed);
        let err = ShareableList::from_slot(list.slot.clone(), None).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        list.slot.word64(LEN).store(2, Ordering::Relaxed);
        assert_eq!(list.to_vec(), [Item::Int(1), Item::Str("hello".into())]);
    }

    #[test]
    fn an_empty_list_works() {
        let list = ShareableList::new(&[]).unwrap();
        assert!(list.is_empty());
        assert!(list.to_vec().is_empty());
        assert_eq!(list.index(&Item::None), None);
    }

    #[test]
    fn capacities_round_up_to_eight() {
        let list = ShareableList::new(&[
            "".into(),
            "12345678".into(),
            "123456789".into(),
            vec![0u8; 17].into(),
            Item::None,
            true.into(),
        ])
        .unwrap();
        let caps: Vec<usize> = (0..list.len()).map(|i| list.capacity(i)).collect();
        assert_eq!(caps, [8, 8, 16, 24, 8, 8]);
    }

    #[test]
    fn a_str_with_nul_bytes_and_non_ascii_round_trips() {
        let s = "a\0b\0é\0\0";
        let list = ShareableList::new(&[s.into(), vec![0u8, 0, 1, 0].into()]).unwrap();
        assert_eq!(list.get(0), Item::Str(s.into()));
        assert_eq!(list.get(1), Item::Bytes(vec![0, 0, 1, 0]));
    }
}
