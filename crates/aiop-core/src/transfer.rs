//! Out-of-band descriptor transfer for handles.
//!
//! A handle ([`Segment`], [`Slot`](crate::arena::Slot)) serializes as an index
//! into a table of descriptors that travels beside the serialized bytes (as
//! `SCM_RIGHTS` on a Unix socket). The table only exists while aiop itself
//! serializes or deserializes a message that can carry descriptors: the
//! arguments and result of a spawned process, and (later) connection
//! messages. Serializing a handle anywhere else fails with
//! [`HANDLE_OUTSIDE_TRANSFER`], as Python refuses to pickle a `Lock` into a
//! `Queue`: the bytes alone could never be turned back into the object.
//!
//! The table is thread-local and scoped: aiop's internal encode and decode install it
//! for exactly one `serialize` / `deserialize` call and restore whatever was
//! there before, so transfers nest.

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::shm::Segment;

/// The message of the error returned when a handle is serialized outside a
/// transfer that can carry its descriptor.
pub const HANDLE_OUTSIDE_TRANSFER: &str = "an aiop handle can only be serialized into the arguments or result of a spawned process or a message on a Connection, where its descriptor travels with it";

/// The descriptors of one outgoing message, in table order.
#[derive(Default)]
pub(crate) struct Outbound {
    segments: Vec<Segment>,
}

impl Outbound {
    /// The descriptors to attach to the message.
    pub(crate) fn fds(&self) -> Vec<BorrowedFd<'_>> {
        self.segments.iter().map(|s| s.as_fd()).collect()
    }
}

impl fmt::Debug for Outbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbound")
            .field("fds", &self.segments.len())
            .finish()
    }
}

/// The descriptors of one incoming message, mapped on first use.
#[derive(Debug)]
pub(crate) struct Inbound {
    fds: Vec<Option<OwnedFd>>,
    segments: Vec<Option<Segment>>,
}

impl Inbound {
    pub(crate) fn new(fds: Vec<OwnedFd>) -> Inbound {
        let segments = fds.iter().map(|_| None).collect();
        Inbound {
            fds: fds.into_iter().map(Some).collect(),
            segments,
        }
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
    let (res, scope) = scoped(Scope::In(inbound), || postcard::from_bytes::<T>(bytes));
    let Scope::In(inbound) = scope else {
        unreachable!("inbound scope replaced by outbound")
    };
    let res = res.map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("failed to deserialize: {e}"),
        )
    });
    (res, inbound)
}

/// Called by a handle's `Serialize`: records its segment, returns its index.
pub(crate) fn push_segment(seg: &Segment) -> Result<u32, &'static str> {
    SCOPE.with(|s| match &mut *s.borrow_mut() {
        Some(Scope::Out(out)) => {
            if let Some(i) = out.segments.iter().position(|x| x.key() == seg.key()) {
                return Ok(i as u32);
            }
            out.segments.push(seg.clone());
            Ok((out.segments.len() - 1) as u32)
        }
        _ => Err(HANDLE_OUTSIDE_TRANSFER),
    })
}

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
