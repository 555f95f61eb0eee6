//! Process-owned robust futexes: a sentinel thread and its robust list.
//!
//! The kernel gives robust futexes to *threads*: each thread may register one
//! list of futex words (`set_robust_list(2)`), and when the thread exits, by
//! any means including `SIGKILL`, the kernel walks the list and, for every
//! word whose thread-id bits equal the dying thread's id, sets
//! `FUTEX_OWNER_DIED` and wakes one waiter (if `FUTEX_WAITERS` is set).
//!
//! aiop's locks belong to a *process* (any thread may release them), so each
//! process starts one sentinel thread, `aiop-robust`, that registers the list
//! and then parks until the process ends. A held lock word carries the
//! sentinel's thread id; the process's death is the sentinel's death, and the
//! kernel marks every lock the process held.
//!
//! # Where the list nodes live
//!
//! The kernel finds a word from its list node by one constant offset
//! (`futex_offset` in the list head). A node cannot sit in shared memory next
//! to its word, because every process that uses the lock needs a node of its
//! own. Instead, every mapping of a segment is followed by [`SHADOW_LEN`]
//! bytes of *private* memory (see `sys::mem`), and robust words live only in
//! the last `SHADOW_LEN` bytes of a segment (word 0 of a slot of the arena at
//! a segment's tail), so the node of the word at address `w` is the private
//! memory at `w + SHADOW_LEN`. A node is linked while this process holds any
//! handle to its lock, not only while the lock is held, so taking and
//! releasing a lock costs no list operation at all: the kernel ignores nodes
//! whose word carries another id.
//!
//! After `fork` the child has no sentinel (threads are not copied) but a copy
//! of the list and of every node in it; a `pthread_atfork` handler clears the
//! owner id, and the child's first lock operation starts a new sentinel that
//! registers the same (copied) list.
//!
//! # Safety
//!
//! * [`Linked::new`] computes a node address from a slot's word 0. That is
//!   in bounds because an arena always occupies the last `ARENA_SIZE` bytes of
//!   its segment, `ARENA_SIZE == SHADOW_LEN`, and every mapping reserves the
//!   shadow right after the segment; 8-aligned because slots are 64-byte
//!   aligned; and no other node overlaps it because only word 0 of a slot is
//!   ever robust (a node takes 24 of the slot's 64 shadow bytes).
//! * The node stays valid while the `Linked` lives: `Linked` owns a `Slot`,
//!   which keeps the segment (and so the mapping and its shadow) alive, and
//!   `Drop` unlinks the node before the slot is released.
//! * The list head is a `static`, registered by the sentinel with its exact
//!   size. Links are changed only under [`LIST`]; each change keeps the
//!   forward chain walkable at every instant (the kernel only follows `next`).
#![allow(unsafe_code)]

use std::io;
use std::ptr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicUsize, Ordering};

use crate::arena::Slot;
use crate::sys::mem::SHADOW_LEN;

/// The thread-id bits of a robust futex word.
pub(crate) const TID_MASK: u32 = 0x3fff_ffff;
/// Set by the kernel when the owner died holding the word.
pub(crate) const OWNER_DIED: u32 = 0x4000_0000;
/// Set by waiters: whoever releases must wake one.
pub(crate) const WAITERS: u32 = 0x8000_0000;

/// A list node, in the private shadow of its word. The kernel reads only
/// `next` (`struct robust_list`); the rest is ours.
#[repr(C)]
struct Node {
    next: AtomicPtr<Node>,
    prev: AtomicPtr<Node>,
    /// Handles to this lock held in this process.
    users: AtomicUsize,
}

/// `struct robust_list_head` of `<linux/futex.h>`.
#[repr(C)]
struct Head {
    next: AtomicPtr<Node>,
    futex_offset: isize,
    list_op_pending: AtomicPtr<Node>,
}

static HEAD: Head = Head {
    next: AtomicPtr::new(ptr::null_mut()),
    // The word lies SHADOW_LEN bytes *before* its node.
    futex_offset: -(SHADOW_LEN as isize),
    list_op_pending: AtomicPtr::new(ptr::null_mut()),
};

/// The head, as a node pointer (a list's end marker; only `next` is read
/// through it, and `Head` starts with `next` like `Node`).
fn head() -> *mut Node {
    ptr::addr_of!(HEAD).cast::<Node>().cast_mut()
}

/// The `next` field of `p`, which is a node or the head.
fn next_of<'a>(p: *mut Node) -> &'a AtomicPtr<Node> {
    // SAFETY: `p` is either the static head or a linked node, both of which
    // start with an `AtomicPtr<Node>` (repr(C)) and outlive every use here
    // (nodes are unlinked, under LIST, before their memory can go away).
    unsafe { &*p.cast::<AtomicPtr<Node>>() }
}

/// Serializes changes to the list, and the 0 <-> 1 transitions of `users`.
static LIST: Mutex<()> = Mutex::new(());

/// The sentinel's thread id, 0 while this process has none.
static OWNER: AtomicU32 = AtomicU32::new(0);
/// Serializes starting the sentinel.
static START: Mutex<()> = Mutex::new(());

/// The id that robust words held by this process carry: the sentinel
/// thread's id, starting the sentinel on first use.
///
/// # Errors
///
/// When the sentinel thread cannot be started or the kernel refuses the
/// robust list (a seccomp filter, say).
#[inline]
pub(crate) fn owner() -> io::Result<u32> {
    // Relaxed: the id is only compared and stored into lock words; the
    // sentinel's registration happened before `start` stored it.
    match OWNER.load(Ordering::Relaxed) {
        0 => start(),
        tid => Ok(tid),
    }
}

/// 1 if this process runs a sentinel thread, else 0: the Fork start method
/// does not count it (it is parked and holds no lock).
pub(crate) fn sentinel_threads() -> usize {
    usize::from(OWNER.load(Ordering::Relaxed) != 0)
}

#[cold]
fn start() -> io::Result<u32> {
    let _g = START.lock().unwrap_or_else(|e| e.into_inner());
    let tid = OWNER.load(Ordering::Relaxed);
    if tid != 0 {
        return Ok(tid);
    }
    static ATFORK: std::sync::Once = std::sync::Once::new();
    ATFORK.call_once(|| {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe, as a fork child handler must be.
        unsafe { libc::pthread_atfork(None, None, Some(forget_in_fork_child)) };
    });
    {
        let _l = LIST.lock().unwrap_or_else(|e| e.into_inner());
        // An empty circular list points at itself. Release: the sentinel and
        // the kernel see an initialized head.
        let _ = HEAD.next.compare_exchange(
            ptr::null_mut(),
            head(),
            Ordering::Release,
            Ordering::Relaxed,
        );
    }
    let (tx, rx) = std::sync::mpsc::channel::<io::Result<u32>>();
    std::thread::Builder::new()
        .name("aiop-robust".into())
        .stack_size(16 * 1024)
        .spawn(move || {
            // SAFETY: set_robust_list(2) takes the head's address and
            // exactly `sizeof(struct robust_list_head)`; the head is a static
            // that lives as long as the process. This thread never returns,
            // so the registration lasts until the process dies.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_set_robust_list,
                    ptr::addr_of!(HEAD),
                    std::mem::size_of::<Head>(),
                )
            };
            let res = if r == 0 {
                Ok(rustix::thread::gettid().as_raw_nonzero().get() as u32)
            } else {
                Err(io::Error::last_os_error())
            };
            let ok = res.is_ok();
            let _ = tx.send(res);
            drop(tx);
            if ok {
                loop {
                    std::thread::park();
                }
            }
        })?;
    let tid = rx
        .recv()
        .map_err(|_| io::Error::other("the aiop-robust thread ended before it started"))??;
    OWNER.store(tid, Ordering::Relaxed);
    Ok(tid)
}

/// The size of a memory page of this system.
pub(crate) fn page_size() -> usize {
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf(3) has no preconditions.
        let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
    })
}

extern "C" fn forget_in_fork_child() {
    OWNER.store(0, Ordering::Relaxed);
}

/// A handle's share in the robust-list node of a lock word: while any
/// `Linked` for a slot exists in this process, the slot's word 0 is on the
/// sentinel's list.
pub(crate) struct Linked {
    slot: Slot,
    /// Word 0 of `slot`, resolved once: the lock's hot path should not
    /// walk from the slot to its segment's mapping on every call.
    word: *const AtomicU32,
    node: *mut Node,
}

// SAFETY: `word` and `node` point into a mapping (its shared part and its
// private shadow) that `slot` keeps alive; both are only touched through
// atomics, and list changes are
// serialized by LIST, so the handle can move and be shared between threads.
unsafe impl Send for Linked {}
// SAFETY: as above.
unsafe impl Sync for Linked {}

impl std::fmt::Debug for Linked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Linked").field("slot", &self.slot).finish()
    }
}

impl Linked {
    /// Puts word 0 of `slot` on this process's robust list (if no other
    /// handle did already) and starts the sentinel if needed.
    pub(crate) fn new(slot: Slot) -> io::Result<Linked> {
        // The node must lie in the private part of the reservation, which
        // starts at the end of the file's last *page*: in a segment whose
        // length is not a multiple of the page size (a foreign named file,
        // or 4 KiB-rounded objects on a 16/64 KiB-page system), the bytes
        // after the file's end up to that page's end are the file's shared
        // page, and a node there would be shared with every other process.
        let len = slot.segment().len();
        let node_at = slot.word_offset(0) + SHADOW_LEN;
        if node_at < len.next_multiple_of(page_size())
            || node_at + std::mem::size_of::<Node>() > len + SHADOW_LEN
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "a lock in a segment of {len} bytes (not a multiple of the \
                     {} byte page) cannot be robust",
                    page_size()
                ),
            ));
        }
        owner()?;
        let word: *const AtomicU32 = slot.word(0);
        // See the module's Safety section: the node is in this mapping's
        // private shadow, 8-aligned, and exclusively word 0's.
        let node = word
            .cast::<u8>()
            .wrapping_add(SHADOW_LEN)
            .cast::<Node>()
            .cast_mut();
        let linked = Linked { slot, word, node };
        let _l = LIST.lock().unwrap_or_else(|e| e.into_inner());
        let n = linked.node();
        if n.users.fetch_add(1, Ordering::Relaxed) == 0 {
            // Link at the front: first point the node at the old first
            // entry, then publish it, so that the chain is whole throughout.
            let first = HEAD.next.load(Ordering::Relaxed);
            n.next.store(first, Ordering::Relaxed);
            n.prev.store(head(), Ordering::Relaxed);
            if first != head() {
                // SAFETY: `first` is a linked node (see `next_of`).
                unsafe { &*first }.prev.store(node, Ordering::Relaxed);
            }
            HEAD.next.store(node, Ordering::Release);
        }
        Ok(linked)
    }

    fn node(&self) -> &Node {
        // SAFETY: see the module's Safety section; the slot held by `self`
        // keeps the shadow mapped.
        unsafe { &*self.node }
    }

    /// The slot whose word 0 is robust.
    pub(crate) fn slot(&self) -> &Slot {
        &self.slot
    }

    /// The robust word.
    #[inline]
    pub(crate) fn word(&self) -> &AtomicU32 {
        // SAFETY: `word` is `self.slot.word(0)`, resolved in `new`; the slot
        // held by `self` keeps the mapping, and so the word, alive.
        unsafe { &*self.word }
    }
}

impl Clone for Linked {
    fn clone(&self) -> Linked {
        // Relaxed: this handle is live, so the node is linked and stays so.
        self.node().users.fetch_add(1, Ordering::Relaxed);
        Linked {
            slot: self.slot.clone(),
            word: self.word,
            node: self.node,
        }
    }
}

impl Drop for Linked {
    fn drop(&mut self) {
        let _l = LIST.lock().unwrap_or_else(|e| e.into_inner());
        let n = self.node();
        if n.users.fetch_sub(1, Ordering::Relaxed) != 1 {
            return;
        }
        // The last handle of this process: if the process still holds the
        // lock (a guard was leaked), nobody here can ever release it, so
        // hand it on as the kernel would at our death.
        let me = OWNER.load(Ordering::Relaxed);
        let word = self.word();
        let mut w = word.load(Ordering::Relaxed);
        while me != 0 && w & TID_MASK == me {
            match word.compare_exchange(
                w,
                (w & WAITERS) | OWNER_DIED,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    if w & WAITERS != 0 {
                        let _ = crate::futex::wake(word, 1);
                    }
                    break;
                }
                Err(cur) => w = cur,
            }
        }
        // Unlink: the predecessor skips us first, so a walk never reaches a
        // node that is about to go away.
        let prev = n.prev.load(Ordering::Relaxed);
        let next = n.next.load(Ordering::Relaxed);
        next_of(prev).store(next, Ordering::Release);
        if next != head() {
            // SAFETY: `next` is a linked node.
            unsafe { &*next }.prev.store(prev, Ordering::Relaxed);
        }
        // `next` is left as it was: a kernel walk at this process's death
        // (another thread being killed while this one unlinks) may be
        // standing on this node and must be able to go on.
        n.prev.store(ptr::null_mut(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shm::Segment;
    use crate::sys::mem::{self, Mapping};

    /// A segment whose length is not a multiple of the page size (a named
    /// file made by another program, say) has a partial last page that is
    /// the *file's*: a node computed as `word + SHADOW_LEN` can land there,
    /// in memory shared with every process that maps the file. Such a lock
    /// must be refused, never linked through shared memory.
    #[test]
    fn node_never_lands_in_the_shared_part_of_a_partial_page() {
        let len = crate::arena::ARENA_SIZE + 8;
        let fd = mem::memfd(len).unwrap();
        let dup = fd.try_clone().unwrap();
        let seg = Segment::from_fd(fd).unwrap();
        crate::arena::format(&seg);
        let slot = Slot::first_of_new(&seg).unwrap();
        let node_offset = slot.word_offset(0) + SHADOW_LEN;
        // A second mapping of the same file: what another process sees.
        let other = Mapping::map(&dup, len).unwrap();
        match Linked::new(slot) {
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::InvalidData),
            Ok(linked) => {
                // SAFETY: `node_offset` + the node lies inside `other`'s
                // reservation (file pages, then the shadow).
                let seen = unsafe { &*other.as_ptr().wrapping_add(node_offset).cast::<Node>() };
                let users = seen.users.load(Ordering::Relaxed);
                drop(linked);
                assert_eq!(users, 0, "the robust-list node is in shared memory");
            }
        }
    }
}
