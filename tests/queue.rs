//! Queues across real processes.
//!
//! What is proven (every wait on another process is a wait on a queue, an
//! `Event` or a join, with [`GENEROUS`] as a hang guard only):
//!
//! * 4 producer and 4 consumer processes move 1,000,000 messages through one
//!   `Queue`: each is delivered exactly once, and each consumer sees each
//!   producer's messages in the order they were put.
//! * A 64 MiB message goes through a 1 MiB ring between processes intact.
//! * `maxsize`: `try_put` on a full queue gives `Full` with the item back,
//!   `put_timeout` gives `Full`; a thread asleep in `put` is released by a
//!   child's `get`.
//! * `close`: a put after close gives the item back, gets drain and then
//!   report `Closed`, and a thread asleep in `get` is woken by a child's
//!   `close`.
//! * `JoinableQueue`: a thread asleep in `join` stays asleep until a child's
//!   last `task_done`; one `task_done` too many is an error.
//! * Crashes: over several rounds, producer and consumer children are
//!   SIGKILLed in the middle of their loops; the survivors carry on, every
//!   message is delivered at most once, and besides the one message each
//!   killed process had in hand none is missing. A producer killed while
//!   streaming large messages through a small ring costs only that message:
//!   the consumer drops its beginning and goes on.
//! * Bad input: an aiop handle inside an item fails to encode with the
//!   transfer error and enqueues nothing; a record received as another type
//!   is `InvalidData` in the child and the queue goes on.
//! * `SimpleQueue` between processes; every queue handle here reaches its
//!   child in the spawn arguments.
aiop::test_support!();

mod common;

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use aiop::blocking::process::{Process, ProcessError};
use aiop::blocking::queue::{
    GetError, JoinableQueue, PutError, Queue, SimpleQueue, TryGetError, TryPutError,
};
use aiop::blocking::shared::RawArray;
use aiop::blocking::sync::{Event, Lock};
use common::{GENEROUS, blocked, until};
use serde::de::{self, DeserializeOwned, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A timeout that is meant to run out.
const SHORT: Duration = Duration::from_millis(20);

/// Bytes that serialize as one byte string (not one element per byte).
#[derive(Clone, PartialEq, Eq)]
struct Blob(Vec<u8>);

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Blob({} bytes)", self.0.len())
    }
}

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Blob, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Blob;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Blob, E> {
                Ok(Blob(v.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Blob, E> {
                Ok(Blob(v))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// `len` bytes of a pattern that depends on `seed` and on every position.
fn pattern(seed: u64, len: usize) -> Blob {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    Blob(
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect(),
    )
}

fn child() -> aiop::blocking::process::Builder {
    Process::builder().daemon(true)
}

fn join_ok<R: DeserializeOwned>(p: &mut Process<R>) -> R {
    p.join_timeout(GENEROUS).expect("the child succeeds")
}

fn kill_and_join<R: DeserializeOwned + fmt::Debug>(p: &mut Process<R>) {
    p.kill().unwrap();
    let err = p.join_timeout(GENEROUS).unwrap_err();
    assert!(matches!(err, ProcessError::Signaled { .. }), "{err}");
}

// ---------------------------------------------------------------------------
// Many producers and consumers

type Msg = (u32, u32);

fn produce((q, id, n): (Queue<Msg>, u32, u32)) {
    for seq in 0..n {
        q.put((id, seq)).unwrap();
    }
}

fn consume(q: Queue<Msg>) -> Vec<Msg> {
    let mut got = Vec::new();
    loop {
        match q.get() {
            Ok(m) => got.push(m),
            Err(GetError::Closed) => return got,
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn four_producers_and_four_consumers_move_a_million_messages_exactly_once_in_order() {
    const PRODUCERS: u32 = 4;
    const EACH: u32 = 250_000;
    let q = Queue::with_capacity(0, 256 * 1024).unwrap();
    let mut consumers: Vec<_> = (0..4)
        .map(|_| child().spawn(consume, q.clone()).unwrap())
        .collect();
    let mut producers: Vec<_> = (0..PRODUCERS)
        .map(|id| child().spawn(produce, (q.clone(), id, EACH)).unwrap())
        .collect();
    for p in &mut producers {
        join_ok(p);
    }
    q.close();
    let mut seen = vec![vec![false; EACH as usize]; PRODUCERS as usize];
    let mut total = 0;
    for c in &mut consumers {
        let got = join_ok(c);
        let mut last = vec![None; PRODUCERS as usize];
        for (id, seq) in got {
            let (i, s) = (id as usize, seq as usize);
            assert!(
                last[i] < Some(seq),
                "producer {id}: {seq} after {:?}",
                last[i]
            );
            last[i] = Some(seq);
            assert!(!seen[i][s], "({id}, {seq}) delivered twice");
            seen[i][s] = true;
            total += 1;
        }
    }
    assert_eq!(total, PRODUCERS * EACH);
    assert!(q.is_empty());
}

// ---------------------------------------------------------------------------
// Large messages

fn put_big((q, seed, len): (Queue<Blob>, u64, usize)) {
    q.put(pattern(seed, len)).unwrap();
}

#[test]
fn a_64_mib_message_goes_through_a_1_mib_ring_intact() {
    const LEN: usize = 64 << 20;
    let q = Queue::with_capacity(0, 1 << 20).unwrap();
    assert_eq!(q.capacity(), 1 << 20);
    let mut p = child().spawn(put_big, (q.clone(), 7, LEN)).unwrap();
    let got = q.get_timeout(GENEROUS).unwrap();
    join_ok(&mut p);
    assert_eq!(got.0.len(), LEN);
    assert!(got == pattern(7, LEN), "the message arrived altered");
    assert!(q.is_empty());
}

// ---------------------------------------------------------------------------
// maxsize and close

fn get_one(q: Queue<u32>) -> u32 {
    q.get().unwrap()
}

#[test]
fn maxsize_blocks_a_put_until_a_child_gets() {
    let q = Queue::new(2).unwrap();
    q.put(1u32).unwrap();
    q.put(2).unwrap();
    assert!(q.is_full());
    assert!(matches!(q.try_put(3), Err(TryPutError::Full(3))));
    let e = q.put_timeout(3, SHORT).unwrap_err();
    assert!(e.is_full());
    assert_eq!(e.into_inner(), 3);
    let q2 = q.clone();
    let putter = blocked(move || q2.put(3));
    let mut p = child().spawn(get_one, q.clone()).unwrap();
    assert_eq!(join_ok(&mut p), 1);
    putter.join().unwrap();
    assert_eq!(q.qsize(), 2);
    assert_eq!(q.get().unwrap(), 2);
    assert_eq!(q.get().unwrap(), 3);
}

fn close_it(q: Queue<u32>) {
    q.close();
}

#[test]
fn close_refuses_puts_drains_gets_and_wakes_a_sleeping_getter() {
    let q = Queue::new(0).unwrap();
    let q2 = q.clone();
    let getter = blocked(move || q2.get());
    let mut p = child().spawn(close_it, q.clone()).unwrap();
    join_ok(&mut p);
    assert!(matches!(getter.join(), Err(GetError::Closed)));
    assert!(q.is_closed());
    match q.put(5) {
        Err(PutError::Closed(5)) => {}
        other => panic!("{other:?}"),
    }

    // Items put before the close are still delivered.
    let q = Queue::new(0).unwrap();
    q.put(1u32).unwrap();
    q.put(2).unwrap();
    let mut p = child().spawn(close_it, q.clone()).unwrap();
    join_ok(&mut p);
    assert!(q.try_put(3).unwrap_err().is_closed());
    assert_eq!(q.get().unwrap(), 1);
    assert_eq!(q.get_timeout(GENEROUS).unwrap(), 2);
    assert!(matches!(q.get(), Err(GetError::Closed)));
    assert!(matches!(q.try_get(), Err(TryGetError::Closed)));
}

// ---------------------------------------------------------------------------
// JoinableQueue

fn work((q, two_done, go): (JoinableQueue<u32>, Event, Event)) -> u32 {
    let mut sum = 0;
    for _ in 0..3 {
        sum += q.get().unwrap();
    }
    q.task_done().unwrap();
    q.task_done().unwrap();
    two_done.set();
    assert!(go.wait_timeout(GENEROUS));
    q.task_done().unwrap();
    sum
}

#[test]
fn join_waits_for_the_last_task_done_of_a_child() {
    let q = JoinableQueue::new(0).unwrap();
    for i in 1..=3u32 {
        q.put(i).unwrap();
    }
    assert_eq!(q.unfinished(), 3);
    let (two_done, go) = (Event::new().unwrap(), Event::new().unwrap());
    let q2 = q.clone();
    let joiner = blocked(move || q2.join());
    let mut p = child()
        .spawn(work, (q.clone(), two_done.clone(), go.clone()))
        .unwrap();
    assert!(two_done.wait_timeout(GENEROUS));
    assert_eq!(q.unfinished(), 1);
    assert!(!q.join_timeout(SHORT));
    go.set();
    joiner.join();
    assert_eq!(join_ok(&mut p), 6);
    assert_eq!(q.unfinished(), 0);
    assert!(q.task_done().is_err());
    assert_eq!(q.unfinished(), 0);
}

// ---------------------------------------------------------------------------
// Crashes

fn produce_counted((q, progress, id, n): (Queue<Msg>, RawArray<u64>, u32, u32)) {
    for seq in 0..n {
        q.put((id, seq)).unwrap();
        progress.set(id as usize, u64::from(seq) + 1);
    }
}

fn forward((q, out): (Queue<Msg>, Queue<Msg>)) {
    loop {
        let m = q.get().unwrap();
        out.put(m).unwrap();
    }
}

#[test]
fn processes_killed_mid_put_and_mid_get_cost_at_most_the_message_in_hand() {
    const ROUNDS: u32 = 3;
    const EACH: u32 = 20_000;
    let q = Queue::with_capacity(100, 16 * 1024).unwrap();
    // Room for every message: nobody drains it until the end.
    let out = Queue::with_capacity(0, 4 << 20).unwrap();
    let progress = RawArray::<u64>::new(2 * ROUNDS as usize).unwrap();
    let mut killed_producers = Vec::new();
    let mut killed_consumers = 0;
    for round in 0..ROUNDS {
        let (a, b) = (2 * round, 2 * round + 1);
        let spawn_c = || child().spawn(forward, (q.clone(), out.clone())).unwrap();
        let (mut c1, mut c2) = (spawn_c(), spawn_c());
        let spawn_p = |id| {
            child()
                .spawn(produce_counted, (q.clone(), progress.clone(), id, EACH))
                .unwrap()
        };
        let (mut pa, mut pb) = (spawn_p(a), spawn_p(b));
        let start = out.qsize();
        until("the children are well under way", || {
            progress.get(a as usize) >= 2000 && out.qsize() >= start + 2000
        });
        kill_and_join(&mut pa);
        kill_and_join(&mut c1);
        killed_producers.push(a);
        killed_consumers += 1;
        join_ok(&mut pb);
        until("the survivor forwards on", || out.qsize() >= start + 4000);
        kill_and_join(&mut c2);
        killed_consumers += 1;
    }
    // Whatever is left, the parent takes (repairing after the last dead consumer).
    let mut got: Vec<Msg> = Vec::new();
    for queue in [&q, &out] {
        loop {
            match queue.try_get() {
                Ok(m) => got.push(m),
                Err(TryGetError::Empty) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(queue.is_empty());
    }
    let mut seen = HashSet::new();
    for m in &got {
        assert!(seen.insert(*m), "{m:?} delivered twice");
    }
    let mut missing = 0;
    for id in 0..2 * ROUNDS {
        let done = progress.get(id as usize) as u32;
        let killed = killed_producers.contains(&id);
        assert!(killed || done == EACH);
        for seq in 0..EACH {
            let present = seen.contains(&(id, seq));
            if seq < done {
                missing += u32::from(!present);
            } else if !(killed && seq == done) {
                assert!(!present, "({id}, {seq}) was never put");
            }
        }
    }
    assert!(
        missing <= killed_consumers,
        "{missing} messages missing, {killed_consumers} consumers killed"
    );
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum Big {
    Blob(u64, Blob),
    End,
}

fn stream_forever((q, started): (Queue<Big>, Event)) {
    started.set();
    for seed in 0.. {
        q.put(Big::Blob(seed, pattern(seed, 300_000))).unwrap();
    }
}

#[test]
fn a_producer_killed_while_streaming_costs_only_its_message() {
    for _ in 0..3 {
        let q = Queue::with_capacity(0, 16 * 1024).unwrap();
        let started = Event::new().unwrap();
        let mut p = child()
            .spawn(stream_forever, (q.clone(), started.clone()))
            .unwrap();
        assert!(started.wait_timeout(GENEROUS));
        // Two whole messages, then the producer dies somewhere in the third
        // (300 KB through 16 KiB: it is streaming nearly all the time).
        for seed in 0..2 {
            assert_eq!(
                q.get_timeout(GENEROUS).unwrap(),
                Big::Blob(seed, pattern(seed, 300_000))
            );
        }
        kill_and_join(&mut p);
        let q2 = q.clone();
        let consumer = std::thread::spawn(move || {
            let mut intact = 0;
            loop {
                match q2.get_timeout(GENEROUS).unwrap() {
                    Big::Blob(seed, b) => {
                        assert!(b == pattern(seed, 300_000), "blob {seed} altered");
                        intact += 1;
                    }
                    Big::End => return intact,
                }
            }
        });
        q.put(Big::End).unwrap();
        let intact = consumer.join().unwrap();
        assert!(intact <= 1, "{intact}");
        assert!(q.is_empty());
    }
}

fn wait_for_partial(q: Queue<Big>) -> String {
    // The dead producer's chunks are all there is: this consumer must see
    // that nobody will finish the message, drop it and report Empty.
    match q.get_timeout(Duration::from_millis(500)) {
        Err(TryGetError::Empty) => "empty".into(),
        Ok(Big::Blob(seed, b)) => format!("blob {seed} of {}", b.0.len()),
        other => format!("{other:?}"),
    }
}

#[test]
fn a_consumer_waiting_for_the_rest_of_a_dead_producers_message_drops_it() {
    let q = Queue::with_capacity(0, 16 * 1024).unwrap();
    let started = Event::new().unwrap();
    let mut p = child()
        .spawn(stream_forever, (q.clone(), started.clone()))
        .unwrap();
    assert!(started.wait_timeout(GENEROUS));
    assert!(matches!(q.get_timeout(GENEROUS), Ok(Big::Blob(0, _))));
    // No consumer now: the producer fills the ring with the next message's
    // chunks and waits for space, holding it open.
    until("the producer sleeps on a full ring", || {
        common::all_threads_in_futex(p.pid())
    });
    kill_and_join(&mut p);
    let mut c = child().spawn(wait_for_partial, q.clone()).unwrap();
    assert_eq!(join_ok(&mut c), "empty");
    q.put(Big::End).unwrap();
    assert_eq!(q.get_timeout(GENEROUS).unwrap(), Big::End);
}

// ---------------------------------------------------------------------------
// Bad input

#[test]
fn a_handle_inside_an_item_fails_to_encode_and_enqueues_nothing() {
    let q = Queue::<(u32, Lock)>::new(0).unwrap();
    let lock = Lock::new().unwrap();
    match q.put((1, lock.clone())) {
        Err(PutError::Encode((1, back), e)) => {
            assert!(back.same_as(&lock));
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
            assert_eq!(
                e.to_string(),
                format!(
                    "cannot encode the queue item: {}",
                    aiop::transfer::HANDLE_OUTSIDE_TRANSFER
                )
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(q.is_empty());
    assert!(matches!(q.try_get(), Err(TryGetError::Empty)));
}

/// An item whose own `Serialize` fails (not an aiop handle).
#[derive(Debug, serde::Deserialize)]
struct RefusesToSerialize;

impl serde::Serialize for RefusesToSerialize {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("refused on purpose"))
    }
}

#[test]
fn an_item_whose_serialize_fails_is_not_blamed_on_a_handle() {
    let q = Queue::<RefusesToSerialize>::new(0).unwrap();
    match q.put(RefusesToSerialize) {
        Err(PutError::Encode(_, e)) => {
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
            assert!(
                !e.to_string()
                    .contains(aiop::transfer::HANDLE_OUTSIDE_TRANSFER),
                "{e}"
            );
            assert!(e.to_string().contains("refused the value"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert!(q.is_empty());
}

/// A queue handle that is sent as a `Queue<(u64, String)>` and received as a
/// `Queue<u8>` (a handle's serde form is its slots, whatever the item type):
/// a child given the wrong type.
enum Retyped {
    Sent(Queue<(u64, String)>),
    Received(Queue<u8>),
}

impl Serialize for Retyped {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Retyped::Sent(q) => q.serialize(s),
            Retyped::Received(q) => q.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Retyped {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Retyped, D::Error> {
        Queue::deserialize(d).map(Retyped::Received)
    }
}

fn get_as_u8(q: Retyped) -> (bool, String) {
    let Retyped::Received(q) = q else {
        unreachable!("a child only receives")
    };
    match q.get() {
        Err(GetError::Decode(e)) => (e.kind() == std::io::ErrorKind::InvalidData, e.to_string()),
        other => (false, format!("{other:?}")),
    }
}

#[test]
fn a_record_of_another_type_is_invalid_data_and_the_queue_goes_on() {
    let q = Queue::<(u64, String)>::new(0).unwrap();
    q.put((u64::MAX, "first".into())).unwrap();
    q.put((2, "second".into())).unwrap();
    let mut p = child().spawn(get_as_u8, Retyped::Sent(q.clone())).unwrap();
    let (invalid, msg) = join_ok(&mut p);
    assert!(invalid, "{msg}");
    assert_eq!(q.get_timeout(GENEROUS).unwrap(), (2, "second".into()));
    assert!(q.is_empty());
}

// ---------------------------------------------------------------------------
// SimpleQueue

fn simple_child(q: SimpleQueue<String>) {
    let s = q.get().unwrap();
    q.put(format!("{s}, world")).unwrap();
}

#[test]
fn a_simple_queue_carries_items_both_ways() {
    let q = SimpleQueue::new().unwrap();
    assert!(q.is_empty());
    q.put("hello".to_string()).unwrap();
    let mut p = child().spawn(simple_child, q.clone()).unwrap();
    join_ok(&mut p);
    assert_eq!(q.get().unwrap(), "hello, world");
    assert!(q.is_empty());
    q.close();
    assert!(q.put("late".into()).is_err());
    assert!(matches!(q.get(), Err(GetError::Closed)));
}
