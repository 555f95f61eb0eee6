//! What a pool task runs, and how its items and outcomes are encoded.
//!
//! A pool function is a *zero-sized* `Fn`: a function item or a closure
//! that captures nothing. The parent sends no function pointer, only the
//! offset (from the anchor, see `sys::call`) of a monomorphised trampoline
//! such as [`run_sync::<One<F, A>>`](run_sync), which knows every type
//! involved and makes its own `F` in the worker. That is what lets a
//! closure (`|x: u64| x * 2`) be a pool function, and an `async fn` too.
//!
//! A task carries a *chunk*: a count (postcard varint) followed by that many
//! postcard arguments. Its reply holds one outcome per item, in order: a tag
//! byte, then the postcard result ([`OK`]) or a message ([`PANICKED`],
//! [`FAILED`]).
//!
//! # Safety
//!
//! Two unsafe steps, both here: making a value of a zero-sized `Copy` type
//! out of nothing ([`conjure`]), and turning a received offset back into a
//! trampoline pointer ([`sync_entry`], [`async_entry`]) — sound for offsets
//! made by [`Entry::sync_of`] / [`Entry::async_of`] in a process running the
//! same executable, which the [`SameImage`] they demand vouches for.
#![allow(unsafe_code)]

use std::future::Future;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::PoolError;
use crate::sys::call::{self, SameImage, panic_message};

/// Outcome tag: the item returned; its postcard result follows.
pub(crate) const OK: u8 = 0;
/// Outcome tag: the item panicked; the message follows (a postcard string).
pub(crate) const PANICKED: u8 = 1;
/// Outcome tag: the item could not run (its argument did not decode, its
/// result did not encode); the message follows.
pub(crate) const FAILED: u8 = 2;

/// A boxed, single-threaded future as the worker's executor runs it.
pub type LocalFuture = Pin<Box<dyn Future<Output = Vec<u8>>>>;

type SyncEntry = fn(&[u8]) -> Vec<u8>;
type AsyncEntry = fn(Vec<u8>) -> LocalFuture;

/// Which trampoline a task runs: its offset, and whether it is async.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    offset: i64,
    is_async: bool,
}

impl Entry {
    /// The entry of a synchronous callee.
    pub fn sync_of<C: Callee>() -> Result<Entry, String> {
        let f: SyncEntry = run_sync::<C>;
        Ok(Entry {
            offset: call::entry_offset(f as usize)?,
            is_async: false,
        })
    }

    /// The entry of an async callee.
    pub fn async_of<C: AsyncCallee>() -> Result<Entry, String> {
        let f: AsyncEntry = run_async::<C>;
        Ok(Entry {
            offset: call::entry_offset(f as usize)?,
            is_async: true,
        })
    }

    /// Whether the task's function is an `async fn` (it needs an executor).
    pub fn is_async(&self) -> bool {
        self.is_async
    }
}

/// The synchronous trampoline of `entry`.
fn sync_entry(image: &SameImage, entry: Entry) -> SyncEntry {
    debug_assert!(!entry.is_async);
    let addr = call::entry_addr(image, entry.offset);
    // SAFETY: `image` proves this process runs the executable whose
    // `Entry::sync_of` made the offset (module docs), so `addr` is the
    // address of a `run_sync::<C>` of this executable, whose type is exactly
    // `SyncEntry`; function pointers and `usize` have the same size.
    unsafe { std::mem::transmute::<usize, SyncEntry>(addr) }
}

/// The async trampoline of `entry`.
fn async_entry(image: &SameImage, entry: Entry) -> AsyncEntry {
    debug_assert!(entry.is_async);
    let addr = call::entry_addr(image, entry.offset);
    // SAFETY: as in `sync_entry`, for an offset made by `Entry::async_of`,
    // whose function has exactly the type `AsyncEntry`.
    unsafe { std::mem::transmute::<usize, AsyncEntry>(addr) }
}

/// Runs a synchronous task's chunk; the reply body.
pub(crate) fn run_sync_task(image: &SameImage, entry: Entry, args: &[u8]) -> Vec<u8> {
    if entry.is_async {
        return failed_all(
            args,
            "this pool's workers run no executor: an async function needs the async pool (aiop::Pool)",
        );
    }
    sync_entry(image, entry)(args)
}

/// Starts an async task's chunk: a future of the reply body.
pub(crate) fn run_async_task(image: &SameImage, entry: Entry, args: Vec<u8>) -> LocalFuture {
    async_entry(image, entry)(args)
}

/// Makes the value of a zero-sized function type.
///
/// Fails to compile (when monomorphised) for a type with a size: a closure
/// that captures something cannot be rebuilt in another process.
fn conjure<C: Copy + 'static>() -> C {
    const {
        assert!(
            std::mem::size_of::<C>() == 0,
            "a pool function must capture nothing: pass a function, or a closure without captures"
        )
    };
    // SAFETY: `C` has size zero (checked at compile time above), so it has
    // no bytes that could be invalid; and it is inhabited, since the parent
    // held a value of it to submit the task. A zero-sized `Copy` type has
    // exactly one value, so this is a copy of the parent's value, which
    // `Copy` allows (all pool function bounds require `Copy`).
    //
    // KNOWN GAP: that copy lands in another process. A closure capturing a
    // zero-sized value whose existence vouches for state of the *parent*
    // (a proof token with a private constructor, made after some
    // initialisation) yields a token in the worker, where that state may
    // not exist; code trusting the token without checking would misbehave.
    // Function items and closures that capture nothing, the intended pool
    // functions, carry no such value. The planned fix takes plain functions
    // as `fn` pointers (no conjuring) and async ones through a boxed-future
    // `fn` pointer.
    unsafe { std::mem::zeroed::<C>() }
}

/// A synchronous function of one argument (what `apply` and `map` call).
pub trait Callee: Copy + 'static {
    /// The argument.
    type Arg: DeserializeOwned;
    /// The result.
    type Out: Serialize;
    /// Calls the function.
    fn call(self, arg: Self::Arg) -> Self::Out;
}

/// An async function of one argument.
pub trait AsyncCallee: Copy + 'static {
    /// The argument.
    type Arg: DeserializeOwned;
    /// The result.
    type Out: Serialize;
    /// The future the function returns.
    type Fut: Future<Output = Self::Out> + 'static;
    /// Calls the function.
    fn call(self, arg: Self::Arg) -> Self::Fut;
}

/// `F` called with its argument as is.
#[derive(Debug)]
pub struct One<F, A>(PhantomData<(F, fn(A))>);

/// `F` called with the fields of a tuple as its arguments (`starmap`).
#[derive(Debug)]
pub struct Star<F, Args>(PhantomData<(F, fn(Args))>);

impl<F, A> Clone for One<F, A> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<F, A> Copy for One<F, A> {}
impl<F, A> Clone for Star<F, A> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<F, A> Copy for Star<F, A> {}

impl<F, A, R> Callee for One<F, A>
where
    F: Fn(A) -> R + Copy + 'static,
    A: DeserializeOwned + 'static,
    R: Serialize,
{
    type Arg = A;
    type Out = R;
    fn call(self, arg: A) -> R {
        conjure::<F>()(arg)
    }
}

impl<F, A, Fut> AsyncCallee for One<F, A>
where
    F: Fn(A) -> Fut + Copy + 'static,
    A: DeserializeOwned + 'static,
    Fut: Future + 'static,
    Fut::Output: Serialize,
{
    type Arg = A;
    type Out = Fut::Output;
    type Fut = Fut;
    fn call(self, arg: A) -> Fut {
        conjure::<F>()(arg)
    }
}

macro_rules! star {
    ($($a:ident),+) => {
        impl<F, R, $($a),+> Callee for Star<F, ($($a,)+)>
        where
            F: Fn($($a),+) -> R + Copy + 'static,
            $($a: DeserializeOwned + 'static,)+
            R: Serialize,
        {
            type Arg = ($($a,)+);
            type Out = R;
            #[allow(non_snake_case)]
            fn call(self, ($($a,)+): Self::Arg) -> R {
                conjure::<F>()($($a),+)
            }
        }

        impl<F, Fut, $($a),+> AsyncCallee for Star<F, ($($a,)+)>
        where
            F: Fn($($a),+) -> Fut + Copy + 'static,
            $($a: DeserializeOwned + 'static,)+
            Fut: Future + 'static,
            Fut::Output: Serialize,
        {
            type Arg = ($($a,)+);
            type Out = Fut::Output;
            type Fut = Fut;
            #[allow(non_snake_case)]
            fn call(self, ($($a,)+): Self::Arg) -> Fut {
                conjure::<F>()($($a),+)
            }
        }
    };
}

star!(A);
star!(A, B);
star!(A, B, C);
star!(A, B, C, D);
star!(A, B, C, D, E);
star!(A, B, C, D, E, G);

/// The entry of `One<F, A>` for a synchronous `F`.
pub(crate) fn one_sync<F, A, R>(_f: F) -> Result<Entry, String>
where
    F: Fn(A) -> R + Copy + 'static,
    A: DeserializeOwned + 'static,
    R: Serialize,
{
    Entry::sync_of::<One<F, A>>()
}

/// Appends a chunk's header: its item count.
pub(crate) fn start_chunk(buf: &mut Vec<u8>, count: usize) {
    let mut tmp = [0u8; 10];
    let used = postcard::to_slice(&(count as u64), &mut tmp)
        .map(|s| s.len())
        .unwrap_or(0);
    buf.extend_from_slice(&tmp[..used]);
}

/// Appends one argument to a chunk; on failure the buffer is as it was.
pub(crate) fn push_arg<A: Serialize>(buf: &mut Vec<u8>, arg: &A) -> Result<(), PoolError> {
    let len = buf.len();
    crate::transfer::plain_encode(|| postcard::to_io(arg, &mut *buf).map(|_| ())).map_err(|e| {
        buf.truncate(len);
        PoolError::Encode(format!(
            "the task's arguments do not serialize: {e} (aiop handles reach pool workers through the pool's initializer)"
        ))
    })
}

/// The items of a chunk, decoded one at a time.
struct Items<'a> {
    rest: &'a [u8],
    left: u64,
}

impl<'a> Items<'a> {
    fn new(args: &'a [u8]) -> Result<Items<'a>, String> {
        let (left, rest) =
            postcard::take_from_bytes::<u64>(args).map_err(|e| format!("a malformed task: {e}"))?;
        Ok(Items { rest, left })
    }

    fn next<A: DeserializeOwned>(&mut self) -> Option<Result<A, String>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        Some(match postcard::take_from_bytes::<A>(self.rest) {
            Ok((a, rest)) => {
                self.rest = rest;
                Ok(a)
            }
            Err(e) => {
                // The rest cannot be found either: fail them all.
                self.rest = &[];
                Err(format!("the worker could not decode the arguments: {e}"))
            }
        })
    }
}

fn push_msg(out: &mut Vec<u8>, tag: u8, msg: &str) {
    out.push(tag);
    // A string always encodes.
    let _ = postcard::to_io(msg, &mut *out);
}

fn push_result<R: Serialize>(out: &mut Vec<u8>, r: &R) {
    let len = out.len();
    out.push(OK);
    if let Err(e) = crate::transfer::plain_encode(|| postcard::to_io(r, &mut *out).map(|_| ())) {
        out.truncate(len);
        push_msg(
            out,
            FAILED,
            &format!("the worker could not encode the result: {e}"),
        );
    }
}

/// Appends an item's outcome: its result, or the message of its panic.
fn push_outcome<R: Serialize>(out: &mut Vec<u8>, outcome: Result<R, String>) {
    match outcome {
        Ok(r) => push_result(out, &r),
        Err(m) => push_msg(out, PANICKED, &m),
    }
}

/// A reply failing every item of `args` with `msg`.
fn failed_all(args: &[u8], msg: &str) -> Vec<u8> {
    let n = Items::new(args).map_or(1, |i| i.left);
    let mut out = Vec::new();
    for _ in 0..n {
        push_msg(&mut out, FAILED, msg);
    }
    out
}

fn run_sync<C: Callee>(args: &[u8]) -> Vec<u8> {
    let mut items = match Items::new(args) {
        Ok(i) => i,
        Err(m) => return failed_all(&[], &m),
    };
    let f = conjure::<C>();
    let mut out = Vec::new();
    while let Some(arg) = items.next::<C::Arg>() {
        match arg {
            Ok(a) => {
                let r = catch_unwind(AssertUnwindSafe(|| f.call(a)));
                push_outcome(&mut out, r.map_err(|p| panic_message(&*p)));
            }
            Err(m) => push_msg(&mut out, FAILED, &m),
        }
    }
    out
}

fn run_async<C: AsyncCallee>(args: Vec<u8>) -> LocalFuture {
    Box::pin(async move {
        let mut items = match Items::new(&args) {
            Ok(i) => i,
            Err(m) => return failed_all(&[], &m),
        };
        let f = conjure::<C>();
        let mut out = Vec::new();
        while let Some(arg) = items.next::<C::Arg>() {
            match arg {
                Ok(a) => {
                    let r = match catch_unwind(AssertUnwindSafe(|| f.call(a))) {
                        Ok(fut) => CatchUnwind { fut }.await,
                        Err(p) => Err(panic_message(&*p)),
                    };
                    push_outcome(&mut out, r);
                }
                Err(m) => push_msg(&mut out, FAILED, &m),
            }
        }
        out
    })
}

/// A future whose panics become an error carrying the message.
struct CatchUnwind<F> {
    fut: F,
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `fut` is structurally pinned: it is never moved out of
        // `self`, and `CatchUnwind` has no `Drop` or `Unpin` impl of its own.
        let fut = unsafe { self.map_unchecked_mut(|s| &mut s.fut) };
        match catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(p) => Poll::Ready(Err(panic_message(&*p))),
        }
    }
}

/// Decodes a reply of `n` items into their results.
pub(crate) fn parse_reply<R: DeserializeOwned>(body: &[u8], n: usize) -> Vec<Result<R, PoolError>> {
    let mut out = Vec::with_capacity(n);
    let mut rest = body;
    while out.len() < n {
        let Some((&tag, after)) = rest.split_first() else {
            break;
        };
        let item = match tag {
            OK => postcard::take_from_bytes::<R>(after)
                .map(|(r, tail)| (Ok(r), tail))
                .map_err(|e| format!("the result does not decode: {e}")),
            PANICKED | FAILED => postcard::take_from_bytes::<String>(after)
                .map(|(m, tail)| {
                    let e = if tag == PANICKED {
                        PoolError::TaskPanicked(m)
                    } else {
                        PoolError::Failed(m)
                    };
                    (Err(e), tail)
                })
                .map_err(|e| format!("a malformed reply: {e}")),
            t => Err(format!("a malformed reply (tag {t})")),
        };
        match item {
            Ok((r, tail)) => {
                out.push(r);
                rest = tail;
            }
            Err(m) => {
                out.push(Err(PoolError::Decode(m)));
                // Nothing after a malformed record can be found.
                rest = &[];
            }
        }
    }
    while out.len() < n {
        out.push(Err(PoolError::Decode(
            "the worker's reply holds fewer results than the task had items".into(),
        )));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> SameImage {
        SameImage::forked()
    }

    fn chunk<A: Serialize>(items: &[A]) -> Vec<u8> {
        let mut buf = Vec::new();
        start_chunk(&mut buf, items.len());
        for a in items {
            push_arg(&mut buf, a).unwrap();
        }
        buf
    }

    #[test]
    fn a_chunk_runs_item_by_item_and_a_panic_stays_in_its_item() {
        let f = |x: u32| {
            assert!(x != 3, "three is right out");
            x * 2
        };
        let entry = one_sync(f).unwrap();
        let body = run_sync_task(&image(), entry, &chunk(&[1u32, 2, 3, 4]));
        let got = parse_reply::<u32>(&body, 4);
        assert_eq!(got[0].as_ref().unwrap(), &2);
        assert_eq!(got[1].as_ref().unwrap(), &4);
        match &got[2] {
            Err(PoolError::TaskPanicked(m)) => assert_eq!(m, "three is right out"),
            other => panic!("{other:?}"),
        }
        assert_eq!(got[3].as_ref().unwrap(), &8);
    }

    #[test]
    fn arguments_of_the_wrong_type_fail_every_item_clearly() {
        fn wants_string(s: String) -> usize {
            s.len()
        }
        let entry = one_sync(wants_string).unwrap();
        let body = run_sync_task(&image(), entry, &chunk(&[u64::MAX, 7]));
        for r in parse_reply::<usize>(&body, 2) {
            match r {
                Err(PoolError::Failed(m)) => assert!(m.contains("decode"), "{m}"),
                other => panic!("{other:?}"),
            }
        }
        // A reply cut short is an error for the missing items, not a panic.
        let short = parse_reply::<u32>(&[OK], 2);
        assert!(matches!(short[0], Err(PoolError::Decode(_))));
        assert!(matches!(short[1], Err(PoolError::Decode(_))));
    }

    #[test]
    fn starmap_spreads_a_tuple_over_the_arguments() {
        fn add3(a: u8, b: u16, c: u32) -> u64 {
            u64::from(a) + u64::from(b) + u64::from(c)
        }
        fn star_entry<F: Fn(u8, u16, u32) -> u64 + Copy + 'static>(_: F) -> Entry {
            Entry::sync_of::<Star<F, (u8, u16, u32)>>().unwrap()
        }
        let body = run_sync_task(&image(), star_entry(add3), &chunk(&[(1u8, 2u16, 3u32)]));
        assert_eq!(parse_reply::<u64>(&body, 1)[0].as_ref().unwrap(), &6);
    }
}
