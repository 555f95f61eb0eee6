//! The blocking, executor-free core of [aiop](https://docs.rs/aiop): shared
//! memory, futexes, handles and processes.
//!
//! Most users want the `aiop` facade, which re-exports this crate's blocking
//! API next to the async one. This crate knows nothing of async.
//!
//! # What it provides
//!
//! * [`shm::Segment`]: anonymous shared memory (memfd) that cannot leak into
//!   `/dev/shm`, and [`arena::Slot`]: 64-byte shared slots with
//!   cross-process reference counts, on which primitives are built.
//! * [`futex`]: shared futex wait, wake and `futex_waitv`, with relative and
//!   absolute timeouts.
//! * [`process`]: Python's `Process` with the Spawn, ForkServer and Fork start
//!   methods, typed results, panics as errors, daemon children.
//! * [`transfer`]: how a handle crosses into another process with its
//!   descriptor.
//! * [`connection`]: Python's `Pipe`, `Connection`, `wait`, `Listener` and
//!   `Client` (with `authkey`), passing handles and sockets between processes.
//!
//! # Implementation
//!
//! Segments are memfds mapped `MAP_SHARED`; handles travel as (descriptor
//! index, offset) with the descriptors attached as `SCM_RIGHTS`. A child
//! gets one Unix socket (its control socket). The fork server, when used,
//! is one extra process per parent. No thread is started by this crate.
//!
//! # Relationship with Python multiprocessing
//!
//! See the `process` module for the table of names.
#![deny(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unsafe_op_in_unsafe_fn
)]

pub mod arena;
pub mod connection;
pub mod named;
mod object;
pub mod pool;
pub mod process;
pub mod queue;
pub mod shared;
pub mod shm;
pub mod sync;
mod sys;
pub mod transfer;
pub mod wait;

pub use process::init;
pub use sys::fdpass;
pub use sys::futex;

/// Makes a libtest test crate able to spawn processes.
///
/// Invoke it once at the root of every integration-test crate (and in any
/// unit-test module tree) that spawns. It adds a test named
/// `__aiop_child_entry`, through which spawned children enter, and a
/// constructor that only records that path (no code runs before `main`
/// beyond two atomic stores).
///
/// ```ignore
/// aiop_core::test_support!();
///
/// #[test]
/// fn spawns() {
///     fn double(x: u32) -> u32 { x * 2 }
///     assert_eq!(aiop_core::process::Process::spawn(double, 21).unwrap().join().unwrap(), 42);
/// }
/// ```
#[macro_export]
macro_rules! test_support {
    () => {
        #[used]
        #[unsafe(link_section = ".init_array")]
        static __AIOP_TEST_MODE: extern "C" fn() = {
            extern "C" fn __aiop_enable_test_mode() {
                $crate::process::__enable_test_mode(::core::module_path!());
            }
            __aiop_enable_test_mode
        };

        #[test]
        fn __aiop_child_entry() {
            $crate::init();
        }
    };
}
