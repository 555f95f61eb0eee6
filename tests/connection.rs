//! `Connection`, `pipe`, descriptor passing and `wait`, across real processes.
//!
//! What is proven:
//!
//! * Typed messages cross processes, with the child's end passed in its
//!   spawn arguments; the child sees end of stream when the parent closes.
//! * A peer's death is `RecvError::Closed`: a parent thread asleep in `recv`
//!   wakes with it when the child is SIGKILLed; after a clean close the
//!   messages sent before it arrive, then `Closed`, again and again.
//! * `recv_bytes_into` with a short buffer is `BufferTooShort` and keeps the
//!   message (poll and `wait` see it; the next receive gets it).
//! * A length prefix of 4 GiB, or one byte over a set limit, is
//!   `InvalidData` (it is refused before allocating: the 4 GiB case could not
//!   pass otherwise without an allocation failure); bytes that are not a
//!   valid `T` are `InvalidData`; a frame cut short is `UnexpectedEof`,
//!   which is not `Closed`.
//! * Two threads sending 256 KiB frames at once never interleave.
//! * A `Lock`, an `Event` and a `Value` sent to a running child through a
//!   connection work there; so do a `UnixStream`, a `TcpStream` (through
//!   `send_fd`) and a `Connection` sent through a connection.
//! * `wait` returns the readable connections and an ended process, and
//!   nothing when nothing is ready.
//! * One-way pipes refuse the wrong direction.

aiop::test_support!();

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use aiop::blocking::connection::{Connection, Fd, RecvError, pipe, wait};
use aiop::blocking::process::Process;
use aiop::blocking::shared::Value;
use aiop::blocking::sync::{Event, Lock};
use common::{GENEROUS, blocked_in, park_forever};
use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Msg {
    Word(String),
    Numbers(Vec<u64>),
}

fn echo_upper(conn: Connection) -> u32 {
    let mut n = 0;
    loop {
        match conn.recv::<Msg>() {
            Ok(Msg::Word(w)) => conn.send(&Msg::Word(w.to_uppercase())).unwrap(),
            Ok(Msg::Numbers(v)) => conn
                .send(&Msg::Numbers(v.iter().map(|x| x * 2).collect()))
                .unwrap(),
            Err(RecvError::Closed) => return n,
            Err(e) => panic!("child recv: {e}"),
        }
        n += 1;
    }
}

#[test]
fn typed_messages_cross_processes_with_the_end_in_spawn_arguments() {
    let (mine, theirs) = pipe(true).unwrap();
    let mut child = Process::spawn(echo_upper, theirs).unwrap();
    mine.send(&Msg::Word("hello".into())).unwrap();
    assert_eq!(mine.recv::<Msg>().unwrap(), Msg::Word("HELLO".into()));
    mine.send(&Msg::Numbers(vec![1, 2, 3])).unwrap();
    assert_eq!(mine.recv::<Msg>().unwrap(), Msg::Numbers(vec![2, 4, 6]));
    mine.close();
    assert_eq!(
        child.join().unwrap(),
        2,
        "the child saw end of stream after two"
    );
}

fn ready_then_park(conn: Connection) {
    conn.send(&"ready").unwrap();
    park_forever()
}

#[test]
fn a_peer_killed_while_we_block_in_recv_is_closed() {
    let (mine, theirs) = pipe(true).unwrap();
    // A daemon: should the test fail half-way, the child ends with this
    // test binary instead of parking forever.
    let mut child = Process::builder()
        .daemon(true)
        .spawn(ready_then_park, theirs)
        .unwrap();
    assert_eq!(mine.recv::<String>().unwrap(), "ready");
    let mine = Arc::new(mine);
    let m = mine.clone();
    // A blocking receive sleeps in poll(2) between non-blocking reads.
    let waiting = blocked_in(
        &[libc::SYS_recvmsg, libc::SYS_poll, libc::SYS_ppoll],
        move || m.recv::<String>(),
    );
    child.kill().unwrap();
    let got = waiting.join();
    assert!(matches!(got, Err(RecvError::Closed)), "{got:?}");
    assert!(child.join().is_err(), "the child was killed");
    let err = std::io::Error::from(mine.recv::<String>().unwrap_err());
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
}

fn send_three_and_close(conn: Connection) {
    for i in 0..3u32 {
        conn.send(&i).unwrap();
    }
    conn.close();
}

#[test]
fn after_a_clean_close_the_messages_arrive_then_closed() {
    let (mine, theirs) = pipe(true).unwrap();
    let mut child = Process::spawn(send_three_and_close, theirs).unwrap();
    child.join().unwrap();
    for i in 0..3u32 {
        assert_eq!(mine.recv::<u32>().unwrap(), i);
    }
    for _ in 0..2 {
        assert!(mine.recv::<u32>().unwrap_err().is_closed());
        assert!(mine.recv_bytes().unwrap_err().is_closed());
    }
    assert!(
        mine.poll(Some(Duration::ZERO)).unwrap(),
        "end of stream polls ready"
    );
}

#[test]
fn a_short_buffer_is_an_error_that_keeps_the_message() {
    let (a, b) = pipe(true).unwrap();
    a.send_bytes(b"0123456789").unwrap();
    a.send_bytes(b"next").unwrap();
    let mut small = [0u8; 4];
    match b.recv_bytes_into(&mut small) {
        Err(RecvError::BufferTooShort { needed }) => assert_eq!(needed, 10),
        other => panic!("expected BufferTooShort, got {other:?}"),
    }
    assert!(
        b.poll(Some(Duration::ZERO)).unwrap(),
        "the kept message polls ready"
    );
    // Even with the socket drained of that message, wait sees it.
    assert_eq!(wait(&[&b], Some(Duration::ZERO)).unwrap(), [0]);
    let mut big = [0u8; 32];
    let n = b.recv_bytes_into(&mut big).unwrap();
    assert_eq!(&big[..n], b"0123456789");
    // The kept message is also what any other receive gets.
    a.send_bytes(b"again, too long").unwrap();
    assert_eq!(b.recv_bytes().unwrap(), b"next");
    assert!(b.recv_bytes_into(&mut small).is_err());
    assert_eq!(b.recv_bytes().unwrap(), b"again, too long");
}

fn raw_pair() -> (UnixStream, Connection) {
    let (raw, theirs) = UnixStream::pair().unwrap();
    (raw, Connection::from_unix_stream(theirs))
}

fn header(len: u32, nfds: u32) -> Vec<u8> {
    let mut h = len.to_le_bytes().to_vec();
    h.extend_from_slice(&nfds.to_le_bytes());
    h
}

#[test]
fn an_oversized_length_prefix_is_refused_without_allocating() {
    let (mut raw, conn) = raw_pair();
    raw.write_all(&header(u32::MAX, 0)).unwrap();
    match conn.recv_bytes() {
        Err(RecvError::Io(e)) => {
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
            assert!(e.to_string().contains("exceeds the limit"), "{e}");
        }
        other => panic!("expected InvalidData, got {other:?}"),
    }

    let (mut raw, mut conn) = raw_pair();
    conn.set_max_message_size(1024);
    raw.write_all(&header(1025, 0)).unwrap();
    let e = std::io::Error::from(conn.recv::<Vec<u8>>().unwrap_err());
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    // Exactly the limit is fine.
    let (mut raw, mut conn) = raw_pair();
    conn.set_max_message_size(4);
    raw.write_all(&header(4, 0)).unwrap();
    raw.write_all(b"four").unwrap();
    assert_eq!(conn.recv_bytes().unwrap(), b"four");
}

#[test]
fn a_malformed_payload_is_invalid_data() {
    let (a, b) = pipe(true).unwrap();
    a.send_bytes(&[0xff, 0xff, 0xff]).unwrap(); // a string longer than the message
    a.send_bytes(&[0x80]).unwrap(); // a cut-off varint
    a.send_bytes(&[2, 0xc3, 0x28]).unwrap(); // not UTF-8
    a.send_bytes(&[0xff; 11]).unwrap(); // a varint past 64 bits
    for _ in 0..3 {
        match b.recv::<String>() {
            Err(RecvError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::InvalidData),
            other => panic!("expected InvalidData, got {other:?}"),
        }
    }
    assert!(
        matches!(b.recv::<u64>(), Err(RecvError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData)
    );
    // The connection is still in step: the next good message arrives.
    a.send(&"fine").unwrap();
    assert_eq!(b.recv::<String>().unwrap(), "fine");

    // A frame announcing descriptors that did not come.
    let (mut raw, conn) = raw_pair();
    raw.write_all(&header(0, 2)).unwrap();
    assert!(
        matches!(conn.recv_bytes(), Err(RecvError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData)
    );

    // A frame cut short by the end of the stream is not a clean close.
    let (mut raw, conn) = raw_pair();
    raw.write_all(&header(100, 0)).unwrap();
    raw.write_all(&[1; 10]).unwrap();
    drop(raw);
    match conn.recv_bytes() {
        Err(RecvError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof),
        other => panic!("expected a truncated-frame error, got {other:?}"),
    }
}

#[test]
fn concurrent_senders_never_interleave() {
    const FRAMES: u32 = 40;
    const LEN: usize = 256 << 10; // well over a socket buffer
    let (a, b) = pipe(true).unwrap();
    let a = Arc::new(a);
    let senders: Vec<_> = (0..2u8)
        .map(|t| {
            let a = a.clone();
            std::thread::spawn(move || {
                for seq in 0..FRAMES {
                    let mut frame = vec![t.wrapping_mul(31).wrapping_add(seq as u8); LEN];
                    frame[0] = t;
                    frame[1..5].copy_from_slice(&seq.to_le_bytes());
                    a.send_bytes(&frame).unwrap();
                }
            })
        })
        .collect();
    let mut next = [0u32; 2];
    for _ in 0..2 * FRAMES {
        let f = b.recv_bytes().unwrap();
        assert_eq!(f.len(), LEN);
        let t = f[0];
        let seq = u32::from_le_bytes(f[1..5].try_into().unwrap());
        assert_eq!(seq, next[t as usize], "thread {t}'s frames arrive in order");
        next[t as usize] += 1;
        let fill = t.wrapping_mul(31).wrapping_add(seq as u8);
        assert!(
            f[5..].iter().all(|&x| x == fill),
            "frame {t}/{seq} is whole"
        );
    }
    for s in senders {
        s.join().unwrap();
    }
    assert_eq!(next, [FRAMES, FRAMES]);
}

fn use_handles(conn: Connection) -> bool {
    let (lock, event, value): (Lock, Event, Value<u64>) = conn.recv().unwrap();
    // The parent holds the lock: we cannot take it.
    let busy = lock.try_lock().is_err();
    conn.send(&busy).unwrap();
    let _: String = conn.recv().unwrap(); // the parent released it
    let guard = lock.lock().unwrap();
    value.set(42);
    drop(guard);
    event.set();
    busy
}

#[test]
fn handles_sent_to_a_running_child_work_there() {
    let (mine, theirs) = pipe(true).unwrap();
    let mut child = Process::spawn(use_handles, theirs).unwrap();
    let lock = Lock::new().unwrap();
    let event = Event::new().unwrap();
    let value = Value::new(0u64).unwrap();
    let guard = lock.lock().unwrap();
    mine.send(&(&lock, &event, &value)).unwrap();
    assert!(
        mine.recv::<bool>().unwrap(),
        "the child saw the parent's lock held"
    );
    drop(guard);
    mine.send(&"go").unwrap();
    assert!(event.wait_timeout(GENEROUS), "the child set the event");
    assert_eq!(value.get(), 42);
    assert!(child.join().unwrap());
}

fn use_sockets(conn: Connection) -> String {
    let mut unix: UnixStream = conn.recv::<Fd<UnixStream>>().unwrap().into_inner();
    let tcp = TcpStream::from(conn.recv_fd().unwrap());
    let inner: Connection = conn.recv().unwrap();
    unix.write_all(b"unix").unwrap();
    (&tcp).write_all(b"tcp!").unwrap();
    inner.send(&"through the passed connection").unwrap();
    let reply: String = inner.recv().unwrap();
    reply
}

#[test]
fn a_unix_stream_a_tcp_stream_and_a_connection_work_in_a_child() {
    let (mine, theirs) = pipe(true).unwrap();
    let mut child = Process::spawn(use_sockets, theirs).unwrap();

    let (mut unix_here, unix_there) = UnixStream::pair().unwrap();
    let tcp_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_there = TcpStream::connect(tcp_listener.local_addr().unwrap()).unwrap();
    let (mut tcp_here, _) = tcp_listener.accept().unwrap();
    let (inner_here, inner_there) = pipe(true).unwrap();

    mine.send(&Fd::new(unix_there)).unwrap();
    mine.send_fd(&tcp_there).unwrap();
    mine.send(&inner_there).unwrap();
    // The child holds its own copies now.
    drop((tcp_there, inner_there));

    let mut buf = [0u8; 4];
    unix_here.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"unix");
    tcp_here.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"tcp!");
    assert_eq!(
        inner_here.recv::<String>().unwrap(),
        "through the passed connection"
    );
    inner_here.send(&"and back").unwrap();
    assert_eq!(child.join().unwrap(), "and back");
}

fn exit_when_told(conn: Connection) {
    let _: Result<u8, _> = conn.recv();
}

#[test]
fn wait_returns_the_readable_connections_and_an_ended_process() {
    let (a1, b1) = pipe(true).unwrap();
    let (a2, b2) = pipe(true).unwrap();
    let (ctl, theirs) = pipe(true).unwrap();
    let mut child = Process::spawn(exit_when_told, theirs).unwrap();
    assert!(
        wait(&[&b1, &b2, &child], Some(Duration::ZERO))
            .unwrap()
            .is_empty()
    );

    a2.send(&1u8).unwrap();
    assert_eq!(wait(&[&b1, &b2, &child], Some(GENEROUS)).unwrap(), [1]);
    a1.send(&1u8).unwrap();
    assert_eq!(wait(&[&b1, &b2, &child], Some(GENEROUS)).unwrap(), [0, 1]);
    b1.recv::<u8>().unwrap();
    b2.recv::<u8>().unwrap();

    ctl.send(&0u8).unwrap();
    assert_eq!(wait(&[&b1, &b2, &child], None).unwrap(), [2]);
    // The sentinel itself works too.
    let sentinel = child.sentinel();
    assert_eq!(wait(&[&b1, &sentinel], Some(GENEROUS)).unwrap(), [1]);
    child.join().unwrap();
}

#[test]
fn one_way_pipes_refuse_the_wrong_direction() {
    let (reader, writer) = pipe(false).unwrap();
    assert!(reader.readable() && !reader.writable());
    assert!(writer.writable() && !writer.readable());
    let e = reader.send(&1u8).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::Unsupported);
    assert!(e.to_string().contains("read-only"), "{e}");
    match writer.recv::<u8>() {
        Err(RecvError::Io(e)) => {
            assert_eq!(e.kind(), std::io::ErrorKind::Unsupported);
            assert!(e.to_string().contains("write-only"), "{e}");
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
    writer.send(&7u8).unwrap();
    assert_eq!(reader.recv::<u8>().unwrap(), 7);
    drop(writer);
    assert!(reader.recv::<u8>().unwrap_err().is_closed());
}

#[test]
fn recv_timeout_expires_and_consumes_nothing() {
    let (a, b) = pipe(true).unwrap();
    assert!(
        b.recv_timeout::<u8>(Duration::from_millis(1))
            .unwrap_err()
            .is_timeout()
    );
    assert!(
        b.recv_bytes_timeout(Duration::ZERO)
            .unwrap_err()
            .is_timeout()
    );
    a.send(&5u8).unwrap();
    assert_eq!(b.recv_timeout::<u8>(GENEROUS).unwrap(), 5);
}
