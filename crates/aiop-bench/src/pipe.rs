//! Connections against the socket floor, in the same run.
//!
//! The floor is the anchors' `unix-rtt` (`crates/aiop-bench/peers`):
//! 8-byte messages ping-ponged over a `UnixStream` pair between this process
//! and a forked child, with no framing and no encoding. `pipe/pingpong` does
//! the same round trip with a duplex aiop `Pipe`: a framed, postcard-encoded
//! `u64` each way.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use aiop_core::connection::{Connection, pipe};
use aiop_core::process::{Builder, StartMethod};

use crate::report::{Results, iters, pin_child};
use crate::sync::{fork_raw, reap};

/// Round trips per sample set, as for the futex ping-pongs.
fn rounds() -> usize {
    iters(200) * 100
}

/// `floor/socketpair_pingpong`: 8-byte messages over a `UnixStream` pair
/// between this process and a forked child; round trip in µs.
pub(crate) fn socketpair_pingpong(results: &mut Results) {
    let n = rounds();
    let warm = n / 20;
    let (mut here, mut there) = UnixStream::pair().expect("socketpair");
    let child = fork_raw(move || {
        let mut buf = [0u8; 8];
        for _ in 0..warm + n {
            there.read_exact(&mut buf).expect("child read");
            there.write_all(&buf).expect("child write");
        }
    });
    let mut i = 0u64;
    let mut buf = [0u8; 8];
    results.latency_n("floor/socketpair_pingpong", warm, n, || {
        here.write_all(&i.to_le_bytes()).expect("write");
        here.read_exact(&mut buf).expect("read");
        i += 1;
    });
    reap(child);
}

pub(crate) fn echo_child((conn, rounds): (Connection, u64)) {
    pin_child();
    for _ in 0..rounds {
        let x: u64 = conn.recv().expect("child recv");
        conn.send(&x).expect("child send");
    }
}

/// `pipe/pingpong`: a duplex aiop `Pipe` between this process and a child
/// started by the fork server, `send(&u64)` / `recv::<u64>()` each way;
/// round trip in µs.
pub(crate) fn pipe_pingpong(results: &mut Results) {
    let n = rounds();
    let warm = n / 20;
    let (here, there) = pipe(true).expect("pipe");
    let mut child = Builder::new()
        .start_method(StartMethod::FORK_SERVER)
        .spawn(echo_child, (there, (warm + n) as u64))
        .expect("spawn");
    let mut i = 0u64;
    results.latency_n("pipe/pingpong", warm, n, || {
        here.send(&i).expect("send");
        let back: u64 = here.recv().expect("recv");
        debug_assert_eq!(back, i);
        i += 1;
    });
    child.join().expect("join");
}
