//! What parent and child say to each other on the control socket.
//!
//! 1. Parent to child, once: a [`Start`] frame. Its payload is the postcard
//!    header followed by the initializer's arguments and then the function's
//!    arguments (lengths in the header); the descriptors of every handle in
//!    either set of arguments ride on the frame.
//! 2. Child to parent, once, when the function is done: a reply frame whose
//!    first payload byte is a tag ([`REPLY_OK`], [`REPLY_PANIC`],
//!    [`REPLY_FAILED`]) followed, for a result, by the slot reference counts
//!    it carries and the postcard result, or else by a UTF-8 message.
//!
//! The fork server speaks the same frames on its own sockets (see
//! `forkserver.rs`).

use serde::{Deserialize, Serialize};

use crate::transfer::Refs;

/// Bumped whenever the layout of [`Start`] changes.
pub(crate) const PROTOCOL: u32 = 1;
/// The largest control frame a child accepts (arguments) or a parent accepts
/// (a result). Large data belongs in shared memory, not in arguments.
pub(crate) const MAX_FRAME: usize = 1 << 30;

pub(crate) const REPLY_OK: u8 = 0;
pub(crate) const REPLY_PANIC: u8 = 1;
pub(crate) const REPLY_FAILED: u8 = 2;

pub(crate) use crate::sys::call::ExeId;

/// A function to call: offsets from `sys::call::offsets` and the length of
/// its encoded arguments in the payload.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) struct Call {
    pub(crate) trampoline: i64,
    pub(crate) function: i64,
    pub(crate) args_len: u64,
}

/// What the child is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Role {
    /// Run `call` (after `init`, if any) and reply.
    Call,
    /// Serve fork requests on the control socket until it closes.
    ForkServer,
}

/// The first frame a child reads.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Start {
    pub(crate) protocol: u32,
    pub(crate) exe: ExeId,
    pub(crate) role: Role,
    pub(crate) name: String,
    pub(crate) ident: Vec<u32>,
    pub(crate) daemon: bool,
    pub(crate) parent_pid: u32,
    pub(crate) parent_name: String,
    pub(crate) parent_ident: Vec<u32>,
    pub(crate) init: Option<Call>,
    pub(crate) call: Option<Call>,
    /// A second frame follows, carrying the parent's stdout, to install
    /// as the child's (test mode: the child starts with stdout on
    /// `/dev/null` so that the test harness's banner in the child is lost).
    pub(crate) stdout_attached: bool,
    /// The slot reference counts the arguments carry (see `transfer`).
    pub(crate) refs: Refs,
}

/// Splits a reply payload into its tag, the counts a result carries and the
/// rest. Only `REPLY_OK` replies carry counts.
pub(crate) fn split_reply(payload: &[u8]) -> Option<(u8, Refs, &[u8])> {
    let (&tag, rest) = payload.split_first()?;
    if tag != REPLY_OK {
        return Some((tag, Vec::new(), rest));
    }
    let (refs, body) = postcard::take_from_bytes::<Refs>(rest).ok()?;
    Some((tag, refs, body))
}
