//! Calling a function in another process by its offset in the executable.
//!
//! A parent cannot send a function pointer, but it can send where the
//! function sits relative to [`anchor`], a function of this crate in the same
//! executable. Both processes run the very same file (the child checks the
//! executable's identity before calling anything, and forked children share
//! the parent's image), and ASLR shifts the whole image by one constant, so
//! `anchor + offset` in the child is the same function.
//!
//! Each call carries two offsets: the user's `fn(A) -> R` and the
//! monomorphised [`trampoline::<A, R>`] that knows how to decode `A`, call the
//! function and encode `R`.
//!
//! # Safety
//!
//! [`invoke`] turns received offsets back into function pointers. That is
//! sound only if the offsets were produced by [`offsets`] in a process
//! running the same executable, over a channel only the parent can write (the
//! private socketpair a child is born with, never exposed to anything else).
//! [`invoke`] demands a [`SameImage`], which only an executable-identity
//! check or the fork paths produce.
#![allow(unsafe_code)]

use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::transfer::{self, Inbound, Outbound};

/// What running a call produced.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The function returned; its result is encoded, with its descriptors.
    Returned(Vec<u8>, Outbound),
    /// The function panicked with this message.
    Panicked(String),
    /// The call could not be made (arguments or result failed to (de)serialize).
    Failed(String),
}

/// The type-erased trampoline stored by offset.
type Trampoline = fn(usize, &[u8], Inbound) -> (Outcome, Inbound);

#[inline(never)]
fn anchor() {}

fn anchor_addr() -> isize {
    anchor as fn() as usize as isize
}

/// The base address of the loaded object (the executable or a shared
/// library) that contains `addr`, as the dynamic linker reports it.
fn object_base(addr: usize) -> Option<usize> {
    let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    // SAFETY: dladdr only reads the dynamic linker's tables and writes the
    // `Dl_info` it is given, which lives for the call.
    let found = unsafe { libc::dladdr(addr as *const libc::c_void, info.as_mut_ptr()) };
    if found == 0 {
        return None;
    }
    // SAFETY: dladdr returned non-zero, so it filled in `info` (dladdr(3)).
    let info = unsafe { info.assume_init() };
    Some(info.dli_fbase as usize)
}

/// The (trampoline, function) offsets of `f` relative to the anchor.
///
/// # Errors
///
/// When `f` lives in another loaded object than this crate (a shared
/// library loaded at its own address): its offset would mean nothing in
/// the child.
pub(crate) fn offsets<A, R>(f: fn(A) -> R) -> Result<(i64, i64), String>
where
    A: DeserializeOwned,
    R: Serialize,
{
    let t: Trampoline = trampoline::<A, R>;
    Ok((entry_offset(t as usize)?, entry_offset(f as usize)?))
}

/// The offset of the code at `addr` from the anchor, refused when that code
/// lives in another loaded object (a shared library at its own address).
pub(crate) fn entry_offset(addr: usize) -> Result<i64, String> {
    static ANCHOR_OBJECT: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    // Addresses already found in the anchor's object: `dladdr` walks the
    // loader's tables, too slow for every pool task.
    static CHECKED: std::sync::RwLock<Vec<usize>> = std::sync::RwLock::new(Vec::new());
    let known = CHECKED
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&addr);
    let anchor_object = *ANCHOR_OBJECT.get_or_init(|| object_base(anchor_addr() as usize));
    if known {
        return Ok((addr as isize - anchor_addr()) as i64);
    }
    if object_base(addr) == anchor_object {
        let mut checked = CHECKED.write().unwrap_or_else(|e| e.into_inner());
        if checked.len() < 1024 {
            checked.push(addr);
        }
    } else {
        return Err(
            "the function lives in a shared library, not in the executable with aiop: a child can only be started on a function linked into the program itself"
                .into(),
        );
    }
    Ok((addr as isize - anchor_addr()) as i64)
}

/// The address in this process of the code at `offset` from the anchor,
/// for an offset made by [`entry_offset`] in a process whose image `_image`
/// vouches for. Turning it into a function pointer is the caller's unsafe
/// step.
pub(crate) fn entry_addr(_image: &SameImage, offset: i64) -> usize {
    (anchor_addr() + offset as isize) as usize
}

/// The message of a panic payload (`&str` or `String`), as `std` prints it.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_string()
    }
}

fn trampoline<A, R>(fn_addr: usize, args: &[u8], inbound: Inbound) -> (Outcome, Inbound)
where
    A: DeserializeOwned,
    R: Serialize,
{
    // SAFETY: `fn_addr` is `anchor + offset` where the offset was computed by
    // `offsets::<A, R>` from a `fn(A) -> R` in this same executable (module
    // docs); this trampoline was selected by that same call, so `A` and `R`
    // are the function's own types. Function pointers and `usize` have the
    // same size on every supported target.
    let f: fn(A) -> R = unsafe { std::mem::transmute::<usize, fn(A) -> R>(fn_addr) };
    let (args, inbound) = transfer::decode::<A>(args, inbound);
    let args = match args {
        Ok(a) => a,
        Err(e) => {
            return (
                Outcome::Failed(format!("the child could not decode its arguments: {e}")),
                inbound,
            );
        }
    };
    let outcome = match catch_unwind(AssertUnwindSafe(|| f(args))) {
        Ok(r) => {
            let mut buf = Vec::new();
            let mut out = Outbound::default();
            match transfer::encode(&r, &mut buf, &mut out) {
                Ok(()) => Outcome::Returned(buf, out),
                Err(e) => Outcome::Failed(format!("the child could not encode its result: {e}")),
            }
        }
        Err(p) => Outcome::Panicked(panic_message(&*p)),
    };
    (outcome, inbound)
}

/// Proof that offsets received from a parent are valid in this process: the
/// parent runs the same executable file, or this process is a fork of it.
#[derive(Clone, Debug)]
pub(crate) struct SameImage(());

impl SameImage {
    /// Checks that this process runs the executable the parent identified.
    pub(crate) fn check(parent: &ExeId) -> Result<SameImage, String> {
        match ExeId::current() {
            Ok(id) if id == *parent => Ok(SameImage(())),
            Ok(_) => Err("the executable changed since the parent started (was it rebuilt?); refusing to run".into()),
            Err(e) => Err(format!("the child could not identify its executable: {e}")),
        }
    }

    /// A forked process shares its parent's image by construction.
    pub(crate) fn forked() -> SameImage {
        SameImage(())
    }
}

/// The identity of an executable file: what makes a function offset valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct ExeId {
    dev: u64,
    ino: u64,
    size: i64,
    mtime: i64,
    mtime_nsec: i64,
}

impl ExeId {
    /// This process's executable, read once per process image.
    pub(crate) fn current() -> std::io::Result<ExeId> {
        static ID: std::sync::OnceLock<ExeId> = std::sync::OnceLock::new();
        if let Some(id) = ID.get() {
            return Ok(*id);
        }
        let st = rustix::fs::stat("/proc/self/exe")?;
        let id = ExeId {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size,
            mtime: st.st_mtime,
            mtime_nsec: st.st_mtime_nsec as i64,
        };
        Ok(*ID.get_or_init(|| id))
    }
}

/// Calls the function at `fn_off` through the trampoline at `tramp_off`,
/// offsets received from a parent whose image `_image` vouches for.
pub(crate) fn invoke(
    _image: &SameImage,
    tramp_off: i64,
    fn_off: i64,
    args: &[u8],
    inbound: Inbound,
) -> (Outcome, Inbound) {
    let base = anchor_addr();
    // SAFETY: `SameImage` proves the parent ran this executable (or that we
    // are its fork), and the parent computed both offsets with `offsets`
    // (module docs), so `base + tramp_off` is the address of a
    // `trampoline::<A, R>` instance of this executable, whose type is exactly
    // `Trampoline`.
    let t: Trampoline =
        unsafe { std::mem::transmute::<usize, Trampoline>((base + tramp_off as isize) as usize) };
    t((base + fn_off as isize) as usize, args, inbound)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn double(x: u32) -> u32 {
        x * 2
    }

    #[test]
    fn functions_of_the_executable_are_accepted_and_shared_library_ones_refused() {
        assert!(offsets(double).is_ok());
        let here = object_base(anchor_addr() as usize);
        assert!(here.is_some());
        assert_eq!(object_base(double as fn(u32) -> u32 as usize), here);
        // A function of the C library lives in libc.so, loaded elsewhere.
        let getpid = libc::getpid as unsafe extern "C" fn() -> libc::pid_t as usize;
        assert_ne!(object_base(getpid), here);
    }
}
