//! The operating-system layer: everything that talks to the kernel directly.
//!
//! The crate root denies `unsafe_code`; only `mem` (mapping memory), `proc`
//! (fork, `_exit`, `fcntl`), `robust` (the robust-futex list) and `call` (calling a function by its offset in
//! the executable) allow it, each with a `# Safety` section in its docs.

pub(crate) mod call;
pub mod fdpass;
pub mod futex;
pub(crate) mod mem;
pub(crate) mod proc;
pub(crate) mod robust;
