//! `Listener` and `client` across real processes.
//!
//! What is proven:
//!
//! * With the right key a child connects and talks over a Unix path, an
//!   abstract name and TCP; `last_accepted` names a TCP peer.
//! * A wrong key fails on both sides with `AuthenticationError`; so does a
//!   key on one side only, either way round, with a message saying so.
//! * A silent client, a client that sends garbage and one that stops inside
//!   a header each cost the listener one failed `accept` (at the handshake
//!   deadline), and the good client behind them is accepted.
//! * A socket path left by a SIGKILLed listener is replaced at bind; a live
//!   listener's path is `AddrInUse`, and so is a path that is not a socket
//!   (which is left alone); a listener removes its path when dropped or
//!   closed, but not a path that another listener has taken over since.

aiop::test_support!();

mod common;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use aiop::blocking::connection::{
    Address, AuthenticationError, Connection, Listener, client, client_timeout, pipe,
};
use aiop::blocking::process::Process;
use common::{GENEROUS, TempDir, park_forever};

fn unique_abstract(tag: &str) -> Address {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Address::Abstract(format!("aiop-test-{tag}-{}-{n}", std::process::id()).into_bytes())
}

/// A child that connects with `key` and doubles numbers until the listener hangs up.
fn doubling_client((address, key): (String, Option<Vec<u8>>)) -> Result<u32, String> {
    let address: Address = address.parse().map_err(|e| format!("{e}"))?;
    let conn =
        client(&address, key.as_deref()).map_err(|e| match AuthenticationError::find(&e) {
            Some(a) => format!("auth: {a}"),
            None => format!("other: {e}"),
        })?;
    let mut n = 0;
    while let Ok(x) = conn.recv::<u64>() {
        conn.send(&(x * 2)).unwrap();
        n += 1;
    }
    Ok(n)
}

fn talk_to_a_child(address: &Address) {
    let listener = Listener::bind(address, Some(b"right key")).unwrap();
    let text = listener.address().to_string();
    let mut child = Process::spawn(doubling_client, (text, Some(b"right key".to_vec()))).unwrap();
    let conn = listener.accept().unwrap();
    for x in [1u64, 20, 300] {
        conn.send(&x).unwrap();
        assert_eq!(conn.recv::<u64>().unwrap(), 2 * x);
    }
    drop(conn);
    assert_eq!(child.join().unwrap(), Ok(3));
}

#[test]
fn the_right_key_connects_over_a_unix_path() {
    let dir = TempDir::new("listener-path");
    talk_to_a_child(&Address::Unix(dir.join("s.sock")));
}

#[test]
fn the_right_key_connects_over_an_abstract_name() {
    talk_to_a_child(&unique_abstract("abstract"));
}

#[test]
fn the_right_key_connects_over_tcp_and_last_accepted_names_the_peer() {
    let listener = Listener::bind(&"127.0.0.1:0".parse().unwrap(), None).unwrap();
    assert_eq!(listener.last_accepted(), None);
    let Address::Tcp(bound) = listener.address().clone() else {
        panic!("a TCP listener has a TCP address")
    };
    assert_ne!(bound.port(), 0, "the chosen port is reported");
    let address = listener.address().clone();
    let peer = std::thread::spawn(move || {
        let conn = client(&address, None).unwrap();
        let local = conn_local_addr(&conn);
        conn.send(&local.to_string()).unwrap();
        local
    });
    let conn = listener.accept().unwrap();
    let said: String = conn.recv().unwrap();
    let local = peer.join().unwrap();
    assert_eq!(said, local.to_string());
    assert_eq!(listener.last_accepted(), Some(Address::Tcp(local)));
    // And a child process over TCP, with a key.
    talk_to_a_child(&"tcp:127.0.0.1:0".parse().unwrap());
}

fn conn_local_addr(conn: &Connection) -> std::net::SocketAddr {
    use std::os::fd::AsFd;
    let fd = conn.as_fd().try_clone_to_owned().unwrap();
    std::net::TcpStream::from(fd).local_addr().unwrap()
}

#[test]
fn a_wrong_key_fails_on_both_sides() {
    let address = unique_abstract("wrong-key");
    let listener = Listener::bind(&address, Some(b"right key")).unwrap();
    let mut child = Process::spawn(
        doubling_client,
        (address.to_string(), Some(b"wrong key".to_vec())),
    )
    .unwrap();
    let e = listener.accept().unwrap_err();
    let auth = AuthenticationError::find(&e).unwrap_or_else(|| panic!("not auth: {e}"));
    assert!(auth.reason().contains("client could not prove"), "{auth}");
    assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied);
    let child_saw = child.join().unwrap().unwrap_err();
    assert!(child_saw.starts_with("auth: "), "{child_saw}");
    assert!(child_saw.contains("rejected the key"), "{child_saw}");
}

#[test]
fn a_key_on_one_side_only_fails_clearly_on_both() {
    for (server, client_key, server_says, client_says) in [
        (
            Some(&b"k"[..]),
            None,
            "client has no authentication key",
            "requires an authentication key",
        ),
        (
            None,
            Some(&b"k"[..]),
            "listener has none",
            "listener has no authentication key",
        ),
    ] {
        let listener = Listener::bind(&unique_abstract("one-key"), server).unwrap();
        let address = listener.address().clone();
        let peer = std::thread::spawn(move || client(&address, client_key).map(drop));
        let e = listener.accept().unwrap_err();
        let a = AuthenticationError::find(&e).unwrap_or_else(|| panic!("not auth: {e}"));
        assert!(a.reason().contains(server_says), "{a}");
        let e = peer.join().unwrap().unwrap_err();
        let a = AuthenticationError::find(&e).unwrap_or_else(|| panic!("not auth: {e}"));
        assert!(a.reason().contains(client_says), "{a}");
    }
}

#[test]
fn bad_clients_cost_one_accept_each_and_the_good_one_gets_through() {
    let dir = TempDir::new("bad-clients");
    let path = dir.join("s.sock");
    let mut listener = Listener::bind(&Address::Unix(path.clone()), Some(b"key")).unwrap();
    listener.set_handshake_timeout(Duration::from_millis(200));
    assert_eq!(listener.handshake_timeout(), Duration::from_millis(200));

    // Connected in this order, so accepted in this order.
    let silent = UnixStream::connect(&path).unwrap();
    let mut garbage = UnixStream::connect(&path).unwrap();
    garbage.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut half = UnixStream::connect(&path).unwrap();
    half.write_all(&[8, 0, 0]).unwrap();
    let address = Address::Unix(path.clone());
    let good = std::thread::spawn(move || {
        let conn = client_timeout(&address, Some(b"key"), GENEROUS).unwrap();
        conn.send(&"good").unwrap();
        conn
    });

    let e = listener.accept().unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "silent: {e}");
    let e = listener.accept().unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "garbage: {e}");
    let e = listener.accept().unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "half a header: {e}");
    let conn = listener.accept().unwrap();
    assert_eq!(conn.recv::<String>().unwrap(), "good");
    drop((silent, garbage, half, good.join().unwrap()));
}

fn bind_then_park((path, conn): (String, Connection)) {
    let _listener = Listener::bind(&Address::Unix(path.into()), None).unwrap();
    conn.send(&"bound").unwrap();
    park_forever()
}

#[test]
fn a_stale_socket_path_is_replaced() {
    let dir = TempDir::new("stale");
    let path = dir.join("s.sock");
    let (mine, theirs) = pipe(true).unwrap();
    let mut child =
        Process::spawn(bind_then_park, (path.to_str().unwrap().to_string(), theirs)).unwrap();
    assert_eq!(mine.recv::<String>().unwrap(), "bound");
    child.kill().unwrap();
    assert!(child.join().is_err(), "the child was killed");
    assert!(path.exists(), "a killed listener leaves its socket file");

    let listener = Listener::bind(&Address::Unix(path.clone()), None).unwrap();
    let address = listener.address().clone();
    let peer = std::thread::spawn(move || client(&address, None).unwrap().send(&1u8));
    assert_eq!(listener.accept().unwrap().recv::<u8>().unwrap(), 1);
    peer.join().unwrap().unwrap();
}

#[test]
fn a_live_listeners_path_and_a_non_socket_are_addr_in_use() {
    let dir = TempDir::new("in-use");
    let path = dir.join("s.sock");
    let live = Listener::bind(&Address::Unix(path.clone()), None).unwrap();
    let e = Listener::bind(&Address::Unix(path.clone()), None).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
    assert!(path.exists());
    drop(live);

    let file = dir.join("plain");
    std::fs::write(&file, b"keep me").unwrap();
    let e = Listener::bind(&Address::Unix(file.clone()), None).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");

    let name = unique_abstract("in-use");
    let _first = Listener::bind(&name, None).unwrap();
    let e = Listener::bind(&name, None).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
}

#[test]
fn the_path_is_removed_on_drop_and_close_but_not_when_taken_over() {
    let dir = TempDir::new("cleanup");
    let path = dir.join("s.sock");
    let exists = |p: &Path| p.symlink_metadata().is_ok();
    let l = Listener::bind(&Address::Unix(path.clone()), None).unwrap();
    assert!(exists(&path));
    drop(l);
    assert!(!exists(&path), "dropped");
    let l = Listener::bind(&Address::Unix(path.clone()), None).unwrap();
    l.close();
    assert!(!exists(&path), "closed");

    let old = Listener::bind(&Address::Unix(path.clone()), None).unwrap();
    std::fs::remove_file(&path).unwrap();
    let new = Listener::bind(&Address::Unix(path.clone()), None).unwrap();
    drop(old);
    assert!(exists(&path), "the old listener leaves the new one's path");
    drop(new);
    assert!(!exists(&path));
}
