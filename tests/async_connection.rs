//! Async `Connection`, `Listener`/`client` and `wait`, across real
//! processes, on every executor.
//!
//! What is proven:
//!
//! * Typed values and bytes cross to and from a child (the child uses the
//!   blocking core connection it received in its spawn arguments).
//! * A child's death is `RecvError::Closed` for a task awaiting `recv`.
//! * Receive futures dropped at arbitrary points (thousands of times while
//!   a child streams numbered messages, some larger than a socket buffer)
//!   lose nothing and duplicate nothing.
//! * Send futures dropped midway leave no half frame: every message that
//!   was committed arrives whole, in order, after a later send or flush.
//! * Many tasks sending large frames at once never interleave.
//! * Listener/client with the right key; a wrong key fails on both sides
//!   with `AuthenticationError`; a silent client neither blocks the
//!   executor (a ticker task keeps running while accept waits) nor the next
//!   client after the handshake timeout.
//! * `wait` returns ready connections and an ended process's sentinel.

aiop::test_support!();

mod common;

use std::time::Duration;

use aiop_async::connection::{
    Address, AuthenticationError, Connection, Listener, RecvError, client, pipe, wait,
};
use aiop_async::process::Process;
use aiop_core::connection::Connection as CoreConnection;
use common::executor_tests;
use futures_lite::future;

/// Polls `fut` at most a couple of times, then drops it.
async fn poll_briefly<F: std::future::Future>(fut: F) -> Option<F::Output> {
    future::or(async { Some(fut.await) }, async {
        future::yield_now().await;
        None
    })
    .await
}

fn echo(conn: CoreConnection) -> u32 {
    let mut n = 0;
    while let Ok(v) = conn.recv::<(u32, String)>() {
        conn.send(&(v.0 + 1, v.1.to_uppercase())).unwrap();
        let b = conn.recv_bytes().unwrap();
        conn.send_bytes(&b.iter().rev().copied().collect::<Vec<u8>>())
            .unwrap();
        n += 1;
    }
    n
}

fn stream_numbers((conn, count): (CoreConnection, u32)) {
    for i in 0..count {
        // Every 7th message is larger than a socket buffer.
        let pad = if i % 7 == 0 { 300_000 } else { i as usize % 50 };
        conn.send(&(i, vec![i as u8; pad])).unwrap();
    }
}

fn read_all(conn: CoreConnection) -> Vec<(u32, usize)> {
    let mut got = Vec::new();
    loop {
        match conn.recv::<(u32, Vec<u8>)>() {
            Ok((i, v)) => {
                assert!(v.iter().all(|&b| b == i as u8), "message {i} is corrupted");
                got.push((i, v.len()));
            }
            Err(RecvError::Closed) => return got,
            Err(e) => panic!("the stream is corrupted: {e}"),
        }
    }
}

fn die(conn: CoreConnection) {
    conn.send(&1u8).unwrap();
    std::process::abort();
}

executor_tests! {
    async fn values_and_bytes_cross_to_a_child() {
        let (ours, theirs) = pipe(true).unwrap();
        let mut child = Process::spawn(echo, theirs.into_core()).unwrap();
        for i in 0..20u32 {
            ours.send(&(i, format!("word{i}"))).await.unwrap();
            let (n, w): (u32, String) = ours.recv().await.unwrap();
            assert_eq!((n, w), (i + 1, format!("WORD{i}")));
            ours.send_bytes(b"abc").await.unwrap();
            let mut buf = [0u8; 8];
            let len = ours.recv_bytes_into(&mut buf).await.unwrap();
            assert_eq!(&buf[..len], b"cba");
        }
        drop(ours);
        assert_eq!(child.join().await.unwrap(), 20);
    }

    async fn a_dead_child_is_end_of_stream() {
        let (ours, theirs) = pipe(true).unwrap();
        let mut child = Process::spawn(die, theirs.into_core()).unwrap();
        assert_eq!(ours.recv::<u8>().await.unwrap(), 1);
        assert!(matches!(ours.recv::<u8>().await, Err(RecvError::Closed)));
        assert!(child.join().await.is_err());
    }

    async fn cancelled_receives_lose_and_duplicate_nothing() {
        const COUNT: u32 = 300;
        let (ours, theirs) = pipe(true).unwrap();
        let mut child = Process::spawn(stream_numbers, (theirs.into_core(), COUNT)).unwrap();
        let mut next = 0;
        let mut cancelled = 0u32;
        while next < COUNT {
            match poll_briefly(ours.recv::<(u32, Vec<u8>)>()).await {
                None => cancelled += 1,
                Some(r) => {
                    let (i, v) = r.unwrap();
                    assert_eq!(i, next, "lost or duplicated a message");
                    assert!(v.iter().all(|&b| b == i as u8));
                    next += 1;
                }
            }
        }
        assert!(cancelled > 0);
        child.join().await.unwrap();
        assert!(ours.recv::<u8>().await.unwrap_err().is_closed());
    }

    async fn cancelled_sends_leave_no_half_frame() {
        let (ours, theirs) = pipe(true).unwrap();
        let mut child = Process::spawn(read_all, theirs.into_core()).unwrap();
        let mut committed = Vec::new();
        for i in 0..200u32 {
            let pad = if i % 5 == 0 { 400_000 } else { 10 };
            let msg = (i, vec![i as u8; pad]);
            // A completed send's message must arrive; a dropped one arrives
            // whole or not at all.
            if let Some(r) = poll_briefly(ours.send(&msg)).await {
                r.unwrap();
                committed.push((i, pad));
            }
        }
        ours.flush().await.unwrap();
        drop(ours);
        let got = child.join().await.unwrap();
        // Messages whose send was dropped before its first byte went may
        // or may not be there; every one that arrived is whole and in order.
        let mut last = None;
        for &(i, len) in &got {
            assert!(last.is_none_or(|l| l < i));
            last = Some(i);
            assert_eq!(len, if i % 5 == 0 { 400_000 } else { 10 });
        }
        for c in &committed {
            assert!(got.contains(c), "committed message {c:?} is missing");
        }
    }

    async fn concurrent_senders_never_interleave() {
        let (ours, theirs) = pipe(true).unwrap();
        let mut child = Process::spawn(read_all, theirs.into_core()).unwrap();
        let ours = std::sync::Arc::new(ours);
        let sends = (0..16u32).map(|t| {
            let c = ours.clone();
            async move {
                for k in 0..4u32 {
                    let i = t * 4 + k;
                    c.send(&(i, vec![i as u8; 200_000])).await.unwrap();
                }
            }
        });
        let mut all = Box::pin(future::ready(())) as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
        for s in sends {
            all = Box::pin(async move { future::zip(all, s).await; });
        }
        all.await;
        drop(ours);
        let mut got = child.join().await.unwrap();
        got.sort();
        assert_eq!(got, (0..64u32).map(|i| (i, 200_000)).collect::<Vec<_>>());
    }

    async fn listener_and_client_with_keys() {
        let name = format!("@aiop-async-listener-{}", std::process::id());
        let listener = Listener::bind(&name.parse::<Address>().unwrap(), Some(b"right")).unwrap();
        let address = listener.address().clone();
        let (server, peer) = future::zip(listener.accept(), client(&address, Some(b"right"))).await;
        let (server, peer) = (server.unwrap(), peer.unwrap());
        server.send(&41u64).await.unwrap();
        peer.send(&(peer.recv::<u64>().await.unwrap() + 1)).await.unwrap();
        assert_eq!(server.recv::<u64>().await.unwrap(), 42);

        let (server, peer) = future::zip(listener.accept(), client(&address, Some(b"wrong"))).await;
        let (s, p) = (server.unwrap_err(), peer.unwrap_err());
        assert!(AuthenticationError::find(&s).is_some(), "{s}");
        assert!(AuthenticationError::find(&p).is_some(), "{p}");
    }

    async fn a_silent_client_blocks_neither_the_executor_nor_the_next_client() {
        let address: Address = "127.0.0.1:0".parse().unwrap();
        let mut core = aiop_core::connection::Listener::bind(&address, None).unwrap();
        core.set_handshake_timeout(Duration::from_millis(300));
        let listener = Listener::new(core).unwrap();
        let address = listener.address().clone();
        let Address::Tcp(sa) = address.clone() else { unreachable!() };
        let silent = std::net::TcpStream::connect(sa).unwrap();
        let ticks = std::sync::atomic::AtomicU32::new(0);
        let ticker = async {
            loop {
                ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                future::yield_now().await;
            }
        };
        let first = future::or(listener.accept(), ticker).await;
        assert_eq!(first.unwrap_err().kind(), std::io::ErrorKind::TimedOut);
        assert!(ticks.load(std::sync::atomic::Ordering::Relaxed) > 1, "the executor kept running other tasks");
        let (server, peer) = future::zip(listener.accept(), client(&address, None)).await;
        server.unwrap().send(&5u8).await.unwrap();
        assert_eq!(peer.unwrap().recv::<u8>().await.unwrap(), 5);
        drop(silent);
    }

    async fn wait_sees_connections_and_sentinels() {
        fn quick(x: u8) -> u8 { x }
        let (a1, b1) = pipe(true).unwrap();
        let (a2, b2) = pipe(true).unwrap();
        assert!(wait(&[&b1, &b2], Some(Duration::ZERO)).await.unwrap().is_empty());
        let (r, ()) = future::zip(wait(&[&b1, &b2], None), async { a2.send(&1u8).await.unwrap() }).await;
        assert_eq!(r.unwrap(), [1]);
        let mut p = Process::spawn(quick, 3).unwrap();
        let ready = wait(&[&b1, &p], None).await.unwrap();
        assert_eq!(ready, [1]);
        assert_eq!(p.join().await.unwrap(), 3);
        assert!(wait(&[&b1], Some(Duration::from_millis(20))).await.unwrap().is_empty());
        drop((a1, b2));
    }
}

#[test]
fn an_async_connection_serializes_like_a_core_one() {
    future::block_on(async {
        let (a, b) = pipe(true).unwrap();
        let (c, d) = pipe(true).unwrap();
        a.send(&c).await.unwrap();
        let got: Connection = b.recv().await.unwrap();
        drop(c);
        got.send(&9u8).await.unwrap();
        assert_eq!(d.recv::<u8>().await.unwrap(), 9);
        d.send(&8u8).await.unwrap();
        assert_eq!(got.recv_blocking::<u8>().unwrap(), 8);
    });
}
