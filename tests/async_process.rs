//! Async `Process::join` across real processes, on every executor.
//!
//! What is proven:
//!
//! * An async join of a child returning 8 MiB completes (the reply is read
//!   while the child runs, so neither side deadlocks).
//! * Join futures dropped midway (thousands of times, while the reply
//!   streams in) lose nothing: a later join gets the whole result.
//! * `join_timeout` times out on a running child, which a later join still
//!   gets; a task awaiting join leaves other tasks running on the same
//!   (current-thread) executor.
//! * A child's panic comes back as `ProcessError::Panicked`; `join_blocking`
//!   and the other core methods work through the async handle.

aiop::test_support!();

mod common;

use std::time::Duration;

use aiop_async::connection::{Connection, pipe};
use aiop_async::process::{Process, ProcessError};
use aiop_core::connection::Connection as CoreConnection;
use common::executor_tests;
use futures_lite::future;

fn big(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

fn wait_then(conn: CoreConnection) -> u64 {
    let v: u64 = conn.recv().unwrap();
    v * 2
}

fn boom(_: ()) {
    panic!("boom in the child");
}

executor_tests! {
    async fn join_gets_an_8_mib_result() {
        let mut p = Process::spawn(big, 8 << 20).unwrap();
        let got = p.join().await.unwrap();
        assert_eq!(got, big(8 << 20));
        assert_eq!(p.exitcode(), Some(0));
        assert!(matches!(p.join().await, Err(ProcessError::AlreadyJoined)));
    }

    async fn dropped_joins_lose_nothing() {
        let mut p = Process::spawn(big, 4 << 20).unwrap();
        let mut dropped = 0u32;
        let got = loop {
            let r = future::or(async { Some(p.join().await) }, async {
                future::yield_now().await;
                None
            })
            .await;
            match r {
                Some(r) => break r.unwrap(),
                None => dropped += 1,
            }
        };
        assert!(dropped > 0);
        assert_eq!(got, big(4 << 20));
    }

    async fn timeouts_and_other_tasks() {
        let (ours, theirs): (Connection, Connection) = pipe(true).unwrap();
        let mut p = Process::spawn(wait_then, theirs.into_core()).unwrap();
        assert!(p.is_alive());
        assert!(matches!(p.join_timeout(Duration::from_millis(50)).await, Err(ProcessError::Timeout)));
        // While one task awaits join, another (on the same executor) runs
        // and is what lets the child finish.
        let (r, ()) = future::zip(p.join(), async { ours.send(&21u64).await.unwrap() }).await;
        assert_eq!(r.unwrap(), 42);
        assert!(!p.is_alive());
    }

    async fn a_panic_comes_back() {
        let mut p = Process::spawn(boom, ()).unwrap();
        match p.join().await {
            Err(ProcessError::Panicked(m)) => assert!(m.contains("boom"), "{m}"),
            other => panic!("{other:?}"),
        }
        p.close().unwrap();
    }
}

#[test]
fn join_blocking_works_through_the_async_handle() {
    let mut p = Process::spawn(big, 1000).unwrap();
    assert!(p.pid() > 0 && !p.name().is_empty());
    assert_eq!(p.join_blocking().unwrap(), big(1000));
}
