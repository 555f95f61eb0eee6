//! Review findings for `aiop::manager`: each test proves one bug (or, where
//! it passes, guards a property not covered by `manager.rs` /
//! `manager_types.rs`). Sequencing is by round trips on one connection (the
//! server handles a connection's requests in order), never by sleeping;
//! `common::GENEROUS` bounds every wait so that a bug fails, not hangs.
aiop::test_support!();

mod common;

use std::time::Duration;

use aiop::manager::{Manager, Proxy, QueueProxy};
use aiop::process::Process;
use common::GENEROUS;
use common::manager::{Request, Wire, raw_client};

fn stats(m: &Manager) -> (u64, u64) {
    m.stats_blocking().unwrap()
}

/// Waits until the server counts `n` clients.
fn clients_become(m: &Manager, n: u64) {
    common::until(&format!("{n} clients"), || stats(m).1 == n);
}

// ---------------------------------------------------------------------------
// Malformed clients: the server must drop the offender and keep serving.

#[test]
fn a_garbage_or_oversized_frame_drops_only_that_client() {
    let m = Manager::start().unwrap();
    let d = m.dict_blocking::<u32, u32>().unwrap();
    d.insert_blocking(&1, &1).unwrap();
    let base = stats(&m).1;

    // Bytes that are no request (variant 200 does not exist).
    let bad = raw_client(&m);
    clients_become(&m, base + 1);
    bad.send_bytes(&[200, 1, 2, 3]).unwrap();
    clients_become(&m, base);
    assert!(
        bad.recv_bytes_timeout(GENEROUS).is_err(),
        "the server closed it"
    );

    // A frame over the server's maximum message size.
    let mut big = raw_client(&m);
    clients_become(&m, base + 1);
    big.set_max_message_size(usize::MAX);
    let _ = big.send_bytes(&vec![0u8; (64 << 20) + 16]);
    clients_become(&m, base);

    // A well-formed request that claims a huge string inside a small frame.
    let liar = raw_client(&m);
    clients_become(&m, base + 1);
    liar.send_bytes(&[0, 1, 0xff, 0xff, 0xff, 0xff, 0x0f])
        .unwrap();
    clients_become(&m, base);

    // Everyone else is still served.
    assert_eq!(d.get_blocking(&1).unwrap(), Some(1));
    m.shutdown_blocking().unwrap();
}

// ---------------------------------------------------------------------------
// A fire-and-forget (id 0) call that waits is never registered, so the end
// of its connection does not interrupt it: it acts after its client died.

fn get_without_reply(q: QueueProxy<u32>) -> usize {
    q.as_proxy()
        .call_no_reply("get", &None::<Duration>)
        .unwrap();
    // A round trip on the same connection: the server has handled the get
    // (it waits on a thread of its own now).
    q.qsize_blocking().unwrap()
}

/// Server threads of this process waiting for a call ("aiop-manager-wait",
/// cut to 15 bytes by the kernel).
fn waiting_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|c| c.trim_end() == "aiop-manager-wa")
        .count()
}

#[test]
fn a_waiting_no_reply_call_is_interrupted_when_its_client_dies() {
    // The server runs on threads of this process, so its waiting threads
    // can be seen.
    let m = Manager::builder().serve_here().unwrap();
    let q = m.queue_blocking::<u32>(0).unwrap();
    let base = stats(&m).1;
    let mut p = Process::spawn(get_without_reply, q.clone()).unwrap();
    assert_eq!(p.join_timeout_blocking(GENEROUS).unwrap(), 0);
    // The child has exited and the server has let go of its connection.
    clients_become(&m, base);
    // Its get must have been interrupted (as a get with a reply is): else
    // it takes the next item put, for a process that no longer exists.
    common::until("the dead client's get ends", || waiting_threads() == 0);
    q.put_blocking(&7).unwrap();
    assert_eq!(q.get_timeout_blocking(GENEROUS).unwrap(), Some(7));
    m.shutdown_blocking().unwrap();
}

// ---------------------------------------------------------------------------
// References in transit.

/// An `Adopt` naming a transit token with another object id consumes the
/// lent reference without adopting it: the lent object then never dies.
#[test]
fn a_mismatched_adopt_does_not_leak_the_lent_reference() {
    let m = Manager::start().unwrap();
    assert_eq!(stats(&m).0, 0);
    let d = m.dict_blocking::<u32, u32>().unwrap();
    // Serializing lends a reference under a token (one `Lend`).
    let json = serde_json::to_string(d.as_proxy()).unwrap();
    let wire: Wire = serde_json::from_str(&json).unwrap();

    let raw = raw_client(&m);
    raw.send(&Request::Adopt {
        object: wire.object + 1_000,
        token: wire.token,
    })
    .unwrap();
    raw.send(&Request::Stats { id: 1 }).unwrap();
    raw.recv_bytes_timeout(GENEROUS).unwrap(); // the Adopt was handled
    drop(raw);

    // The legitimate receiver adopts, then every proxy goes.
    let again: Proxy = serde_json::from_str(&json).unwrap();
    assert_eq!(again.kind(), wire.kind);
    drop(again);
    drop(d);
    common::until("the dict is dropped", || stats(&m).0 == 0);
    m.shutdown_blocking().unwrap();
}

// ---------------------------------------------------------------------------
// Handshakes run on each client's own server thread.

/// A client that connects and never answers the handshake holds up nobody:
/// another client connects and is served while the silent connection is
/// still open. If the server ran handshakes one at a time, the second
/// client's would only start once the server gave up on the silent one
/// (closing it, after its handshake timeout), so the silent socket would be
/// closed by the time the second client is served.
#[test]
fn a_silent_connection_holds_up_no_other_client() {
    use std::io::Read;

    let address: aiop::connection::Address = "127.0.0.1:0".parse().unwrap();
    let m = Manager::builder()
        .address(address)
        .authkey(b"review key".to_vec())
        .start()
        .unwrap();
    let aiop::connection::Address::Tcp(at) = m.address().clone() else {
        panic!("a TCP manager has a TCP address");
    };
    let mut silent = std::net::TcpStream::connect(at).expect("connect");
    let d = m.dict_blocking::<u32, u32>().unwrap();
    d.insert_blocking(&1, &2).unwrap();
    m.publish_blocking("d", &d).unwrap();

    let other = Manager::connect_blocking(m.address(), Some(b"review key")).unwrap();
    let seen = other
        .lookup_blocking::<aiop::manager::DictProxy<u32, u32>>("d")
        .unwrap();
    assert_eq!(seen.unwrap().get_blocking(&1).unwrap(), Some(2));

    // The silent connection is still open: reading finds at most the
    // server's side of the handshake, then nothing yet, not end of stream.
    silent.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match silent.read(&mut buf) {
            Ok(0) => panic!("the server closed the silent connection before serving the other"),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("the silent connection failed: {e}"),
        }
    }
    drop(other);
    m.shutdown_blocking().unwrap();
}
