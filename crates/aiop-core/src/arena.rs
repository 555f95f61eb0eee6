//! Shared arenas of small slots with cross-process reference counts.
//!
//! A lock or an event is a few words; giving each its own memfd would spend a
//! descriptor, a mapping and a page on it. Instead, small objects live in
//! 64-byte [`Slot`]s carved out of 64 KiB arena segments, so a thousand
//! primitives cost a handful of descriptors.
//!
//! # Layout of an arena
//!
//! An arena is the last 64 KiB of a segment: the whole of a plain arena
//! segment, or the tail of an object segment whose payload comes first
//! (a named lock, a `Value`'s data). Offsets below are from the arena's start.
//!
//! ```text
//! 0      magic u64 | version u32 | slot size u32 | slot count u32 | ...
//! 64     reference counts: [u32; SLOTS]
//! 3968   slots: [[u8; 64]; SLOTS]      (64-byte aligned: one cache line each)
//! ```
//!
//! Sitting at the tail puts every slot within the 64 KiB that precede a
//! mapping's private shadow, where robust locks keep their list nodes
//! (`sys::robust`).
//!
//! A slot is free when its count is zero. Allocation claims a free slot with a
//! compare-and-swap from 0 to 1 and then zeroes it; every [`Slot`] value (in
//! any process) holds one count, and a handle in flight to another process
//! holds one too, which the receiver adopts. When the count drops to zero the
//! slot can be claimed again by any process that allocates from that arena.
//!
//! A process that dies holding counts never gives them back: its slots stay
//! allocated until every process has dropped the arena, when the kernel frees
//! the whole segment. Nothing leaks past the life of the processes.

use std::fmt;
use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::shm::Segment;
use crate::transfer;

/// Gives back one count of slot `index` of `seg` (a count a message carried
/// that nobody adopted). Does nothing unless `seg` is an arena.
pub(crate) fn release(seg: &Segment, index: u32) {
    if is_arena(seg) && (index as usize) < SLOTS {
        // Release, as `Slot::drop`.
        count(seg, index as usize).fetch_sub(1, Ordering::Release);
    }
}

/// Bytes in one slot.
pub const SLOT_SIZE: usize = 64;
pub(crate) const ARENA_SIZE: usize = 64 * 1024;
const MAGIC: u64 = u64::from_le_bytes(*b"aiopAREN");
const VERSION: u32 = 1;
const COUNTS_OFFSET: usize = 64;
const SLOTS: usize = 962;
const SLOTS_OFFSET: usize = 3968;
const _: () = assert!(COUNTS_OFFSET + SLOTS * 4 <= SLOTS_OFFSET);
const _: () = assert!(SLOTS_OFFSET % SLOT_SIZE == 0);
const _: () = assert!(SLOTS_OFFSET + SLOTS * SLOT_SIZE <= ARENA_SIZE);
// Robust words in slots find their private list nodes one shadow away.
const _: () = assert!(ARENA_SIZE == crate::sys::mem::SHADOW_LEN);

/// The arenas this process allocates from.
static ARENAS: Mutex<Vec<Segment>> = Mutex::new(Vec::new());

/// Where the arena of `seg` starts: its last `ARENA_SIZE` bytes.
fn base(seg: &Segment) -> usize {
    seg.len().saturating_sub(ARENA_SIZE)
}

fn count(seg: &Segment, index: usize) -> &AtomicU32 {
    seg.atomic_u32(base(seg) + COUNTS_OFFSET + index * 4)
}

fn new_arena() -> io::Result<Segment> {
    let seg = Segment::new(ARENA_SIZE)?;
    format(&seg);
    Ok(seg)
}

/// Writes an empty arena into the last `ARENA_SIZE` bytes of a fresh,
/// zero-filled segment of at least that size.
pub(crate) fn format(seg: &Segment) {
    let b = base(seg);
    seg.atomic_u32(b + 8).store(VERSION, Ordering::Relaxed);
    seg.atomic_u32(b + 12)
        .store(SLOT_SIZE as u32, Ordering::Relaxed);
    seg.atomic_u32(b + 16)
        .store(SLOTS as u32, Ordering::Relaxed);
    // Release: a process that sees the magic also sees the fields above.
    seg.atomic_u64(b).store(MAGIC, Ordering::Release);
}

/// Whether the last `ARENA_SIZE` bytes of `seg` are an arena.
pub(crate) fn is_arena(seg: &Segment) -> bool {
    let b = base(seg);
    seg.len() >= ARENA_SIZE
        && seg.len() % 8 == 0
        && seg.atomic_u64(b).load(Ordering::Acquire) == MAGIC
        && seg.atomic_u32(b + 8).load(Ordering::Relaxed) == VERSION
        && seg.atomic_u32(b + 12).load(Ordering::Relaxed) == SLOT_SIZE as u32
        && seg.atomic_u32(b + 16).load(Ordering::Relaxed) == SLOTS as u32
}

/// Claims a free slot of `seg`, if it has one.
fn claim(seg: &Segment) -> Option<usize> {
    (0..SLOTS).find(|&i| {
        let c = count(seg, i);
        // A plain load first skips taken slots without a locked instruction.
        // Acquire on the exchange: whatever the last holder wrote before its
        // Release decrement happens-before our zeroing below.
        c.load(Ordering::Relaxed) == 0
            && c.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    })
}

/// A 64-byte slot of shared memory with a cross-process reference count.
///
/// The slot is zeroed when allocated. It stays allocated while any `Slot`
/// handle to it exists in any process; cloning a handle and sending it to a
/// spawned process each take a count. Its contents are sixteen 32-bit words,
/// usable as atomics and as futex words ([`crate::futex`]).
///
/// # Examples
///
/// ```
/// use std::sync::atomic::Ordering;
/// let slot = aiop_core::arena::Slot::new()?;
/// slot.word(0).fetch_add(1, Ordering::Relaxed);
/// let other = slot.clone();
/// assert_eq!(other.word(0).load(Ordering::Relaxed), 1);
/// assert_eq!(slot.ref_count(), 2);
/// # std::io::Result::Ok(())
/// ```
pub struct Slot {
    seg: Segment,
    index: u32,
}

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slot")
            .field("segment", &self.seg)
            .field("index", &self.index)
            .finish()
    }
}

impl Slot {
    /// Allocates a zeroed slot, creating a new arena when every arena of this
    /// process is full.
    ///
    /// # Errors
    ///
    /// The kernel's error when a new arena segment cannot be created.
    pub fn new() -> io::Result<Slot> {
        let mut arenas = ARENAS.lock().unwrap_or_else(|e| e.into_inner());
        for seg in arenas.iter() {
            if let Some(i) = claim(seg) {
                return Ok(Slot::claimed(seg.clone(), i));
            }
        }
        let seg = new_arena()?;
        let i = claim(&seg).expect("a new arena has free slots");
        arenas.push(seg.clone());
        Ok(Slot::claimed(seg, i))
    }

    fn claimed(seg: Segment, index: usize) -> Slot {
        let slot = Slot {
            seg,
            index: index as u32,
        };
        for w in 0..SLOT_SIZE / 4 {
            slot.word(w).store(0, Ordering::Relaxed);
        }
        slot
    }

    /// Claims slot 0 of the arena at the tail of `seg` (just formatted by
    /// the caller, who created the segment): an object segment's own slot.
    pub(crate) fn first_of_new(seg: &Segment) -> io::Result<Slot> {
        match claim(seg) {
            Some(0) => Ok(Slot::claimed(seg.clone(), 0)),
            _ => Err(io::Error::other(
                "a new object segment had its slot 0 taken",
            )),
        }
    }

    /// A new handle to slot `index` of the arena at the tail of `seg`, a
    /// segment opened from elsewhere (by name).
    ///
    /// # Errors
    ///
    /// `InvalidData` when `seg` holds no arena or the slot is free (the
    /// object it held is gone).
    pub(crate) fn open(seg: &Segment, index: u32) -> io::Result<Slot> {
        if !is_arena(seg) || index as usize >= SLOTS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not an aiop object: the shared memory holds no aiop arena",
            ));
        }
        let c = count(seg, index as usize);
        let mut n = c.load(Ordering::Relaxed);
        loop {
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "not an aiop object: its slot is free",
                ));
            }
            // Acquire: see the slot's contents as its creator wrote them.
            match c.compare_exchange_weak(n, n + 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => {
                    return Ok(Slot {
                        seg: seg.clone(),
                        index,
                    });
                }
                Err(cur) => n = cur,
            }
        }
    }

    fn offset(&self) -> usize {
        base(&self.seg) + SLOTS_OFFSET + self.index as usize * SLOT_SIZE
    }

    /// Drops this handle but leaves its count behind, for the receiver of
    /// a message that carried it (the segment's mapping goes with the
    /// handle as usual; forgetting the handle would leak the mapping).
    pub(crate) fn hand_over(self) {
        // Relaxed, as `Clone`: the count is live; the `Drop` that follows
        // takes it back down by one.
        count(&self.seg, self.index as usize).fetch_add(1, Ordering::Relaxed);
    }

    /// The segment the slot lives in.
    pub(crate) fn segment(&self) -> &Segment {
        &self.seg
    }

    /// The 32-bit word `i` (0..16) of the slot.
    ///
    /// # Panics
    ///
    /// If `i >= 16`.
    pub fn word(&self, i: usize) -> &AtomicU32 {
        assert!(
            i < SLOT_SIZE / 4,
            "slot word {i} out of range (a slot has 16)"
        );
        self.seg.atomic_u32(self.offset() + i * 4)
    }

    /// The 64-bit word `i` (0..8) of the slot, overlapping words `2i` and `2i+1`.
    ///
    /// # Panics
    ///
    /// If `i >= 8`.
    pub fn word64(&self, i: usize) -> &AtomicU64 {
        assert!(
            i < SLOT_SIZE / 8,
            "slot word64 {i} out of range (a slot has 8)"
        );
        self.seg.atomic_u64(self.offset() + i * 8)
    }

    /// The number of handles to this slot in all processes, plus handles in flight.
    pub fn ref_count(&self) -> u32 {
        count(&self.seg, self.index as usize).load(Ordering::Acquire)
    }

    /// The byte offset of word `i` in the slot's segment.
    pub(crate) fn word_offset(&self, i: usize) -> usize {
        assert!(
            i < SLOT_SIZE / 4,
            "slot word {i} out of range (a slot has 16)"
        );
        self.offset() + i * 4
    }

    pub(crate) fn index(&self) -> u32 {
        self.index
    }

    /// Whether both handles refer to the same slot.
    pub fn same_as(&self, other: &Slot) -> bool {
        self.index == other.index && self.seg.same_as(&other.seg)
    }
}

impl Clone for Slot {
    fn clone(&self) -> Slot {
        // Relaxed, as `Arc::clone`: the new handle is derived from a live one,
        // so the count cannot be zero here.
        count(&self.seg, self.index as usize).fetch_add(1, Ordering::Relaxed);
        Slot {
            seg: self.seg.clone(),
            index: self.index,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // Release: our writes to the slot happen-before the next claimer's
        // Acquire compare-and-swap.
        count(&self.seg, self.index as usize).fetch_sub(1, Ordering::Release);
    }
}

impl Serialize for Slot {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Outside a transfer this fails before any count is taken; inside,
        // the message holds a count of its own (see `transfer`).
        let seg = transfer::push_slot(self, &self.seg).map_err(serde::ser::Error::custom)?;
        (seg, self.index).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Slot {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Slot, D::Error> {
        let (seg, index) = <(u32, u32)>::deserialize(deserializer)?;
        // Adopt the count the sender took for the message.
        let seg = transfer::adopt_slot(seg, index).map_err(serde::de::Error::custom)?;
        if !is_arena(&seg) || index as usize >= SLOTS {
            return Err(serde::de::Error::custom(
                "received a slot handle that is not in an aiop arena",
            ));
        }
        Ok(Slot { seg, index })
    }
}
