//! Arbitrary bytes as the peer's side of the connection handshake, against
//! both a listener and a client holding a key: every outcome must be an
//! error (no input can know the random nonces), never a panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = aiop_core::connection::__fuzz::handshake_both(data);
});
