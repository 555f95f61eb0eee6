//! Arbitrary bytes as the stream a `Connection` receives from: every
//! outcome must be a message, a clean end or an error, never a panic, and no
//! allocation may exceed the connection's limit (run with
//! `-malloc_limit_mb`, as `just fuzz` does).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = aiop_core::connection::__fuzz::frames(data);
});
