//! Queues against the anchors' floors, in the same run: a futex ping-pong
//! for the round trip, and a bare single-producer single-consumer ring in
//! shared memory (copy in, copy out, futex wake-ups) for throughput.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use aiop_core::process::{Builder, StartMethod};
use aiop_core::queue::Queue;
use aiop_core::shm::Segment;
use aiop_core::sync::Event;
use serde::de::{self, DeserializeOwned, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::report::{Results, env_usize, iters, pin_child};

/// Bytes that serialize as one byte string, as `serde_bytes` would (a
/// `Vec<u8>` or a `[u8; N]` would otherwise be a sequence of `u8`s).
#[derive(Clone, Copy)]
struct Bytes<B>(B);

/// A large item: its bytes on the heap.
type Blob = Bytes<Vec<u8>>;
/// A 64-byte item, inline (no allocation on either side).
type Bytes64 = Bytes<[u8; 64]>;

impl<B: AsRef<[u8]>> fmt::Debug for Bytes<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bytes({} bytes)", self.0.as_ref().len())
    }
}

impl<B: AsRef<[u8]>> Serialize for Bytes<B> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0.as_ref())
    }
}

impl<'de, B: for<'a> TryFrom<&'a [u8]>> Deserialize<'de> for Bytes<B> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Bytes<B>, D::Error> {
        struct V<B>(std::marker::PhantomData<B>);
        impl<B: for<'a> TryFrom<&'a [u8]>> Visitor<'_> for V<B> {
            type Value = Bytes<B>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Bytes<B>, E> {
                B::try_from(v)
                    .map(Bytes)
                    .map_err(|_| E::invalid_length(v.len(), &self))
            }
        }
        d.deserialize_bytes(V(std::marker::PhantomData))
    }
}

pub(crate) fn pong_child((ping, pong, rounds, spin): (Queue<u64>, Queue<u64>, u64, bool)) {
    pin_child();
    aiop_core::sync::set_spinning(spin);
    for _ in 0..rounds {
        let v = ping.get().expect("get");
        pong.put(v + 1).expect("put");
    }
}

fn pingpong(results: &mut Results, name: &'static str, spin: bool) {
    aiop_core::sync::set_spinning(spin);
    let ping = Queue::new(0).expect("queue");
    let pong = Queue::new(0).expect("queue");
    let n = iters(200) * 100;
    let warm = n / 20;
    let mut child = Builder::new()
        .start_method(StartMethod::FORK_SERVER)
        .spawn(
            pong_child,
            (ping.clone(), pong.clone(), (warm + n) as u64, spin),
        )
        .expect("spawn");
    let mut i = 0u64;
    results.latency_n(name, warm, n, || {
        ping.put(i).expect("put");
        i = pong.get().expect("get");
    });
    child.join().expect("join");
    aiop_core::sync::set_spinning(true);
}

/// `queue/pingpong`: a `u64` there and back through two queues between
/// this process and a fork-server child; round trip in µs.
pub(crate) fn queue_pingpong(results: &mut Results) {
    pingpong(results, "queue/pingpong", true);
}

/// `queue/pingpong_nospin`: the same with spinning off in both processes.
pub(crate) fn queue_pingpong_nospin(results: &mut Results) {
    pingpong(results, "queue/pingpong_nospin", false);
}

fn produce_small((q, go, n): (Queue<Bytes64>, Event, u64)) {
    pin_child();
    let item = Bytes([0x5a; 64]);
    go.wait();
    for _ in 0..n {
        q.put(item).expect("put");
    }
}

fn produce_large((q, go, (n, size)): (Queue<Blob>, Event, (u64, usize))) {
    pin_child();
    let item = Bytes(vec![0x5a; size]);
    go.wait();
    for _ in 0..n {
        q.put(item.clone()).expect("put");
    }
}

/// Starts `produce` in a fork-server child with `(queue, go, args)`, lets it
/// go, takes `n` items on this side; returns the seconds that took.
fn drain<T, A>(produce: fn((Queue<T>, Event, A)), args: A, n: u64) -> f64
where
    T: Serialize + DeserializeOwned,
    A: Serialize + DeserializeOwned,
{
    let q = Queue::new(0).expect("queue");
    let go = Event::new().expect("event");
    let mut child = Builder::new()
        .start_method(StartMethod::FORK_SERVER)
        .spawn(produce, (q.clone(), go.clone(), args))
        .expect("spawn");
    go.set();
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(q.get().expect("get"));
    }
    let secs = t.elapsed().as_secs_f64();
    child.join().expect("join");
    secs
}

/// `queue/throughput_64B`: one producer process, this process consuming
/// 64-byte items; millions of messages per second.
pub(crate) fn throughput_64b(results: &mut Results) {
    let n = env_usize("AIOP_BENCH_MSGS", 5_000_000) as u64;
    let secs = drain(produce_small, n, n);
    results.value(
        "queue/throughput_64B",
        "Mmsg/s",
        n as f64 / secs / 1e6,
        None,
    );
}

/// `queue/throughput_64KiB`: the same with 64 KiB items; GB/s of payload.
pub(crate) fn throughput_64kib(results: &mut Results) {
    const SIZE: usize = 64 << 10;
    let n = env_usize("AIOP_BENCH_MSGS", 5_000_000) as u64 / 100;
    let secs = drain(produce_large, (n, SIZE), n);
    let gbs = (n as usize * SIZE) as f64 / secs / 1e9;
    results.value("queue/throughput_64KiB", "GB/s", gbs, None);
}

/// The anchors' SPSC ring (`floor shm-tput`): slots of `size` bytes in
/// 2 MiB of shared memory, a producer and a consumer index, futex wake-ups
/// counted by waiter words. Returns messages per second.
#[allow(unsafe_code)]
fn floor_ring(size: usize, n: u64) -> f64 {
    let slots = ((2usize << 20) / size).max(2) as u64;
    let hdr = 4096;
    let seg = Segment::new(hdr + slots as usize * size).expect("segment");
    let (head, tail) = (seg.atomic_u64(0), seg.atomic_u64(128));
    let (head_w, tail_w) = (seg.atomic_u32(64), seg.atomic_u32(192));
    let (head_s, tail_s) = (seg.atomic_u32(256), seg.atomic_u32(320));
    let data = seg.as_ptr().wrapping_add(hdr);
    let slot = |i: u64| data.wrapping_add((i % slots) as usize * size);
    let pid = crate::sync::fork_raw(|| {
        let mut out = vec![0u8; size];
        for i in 0..n {
            wait_until(tail, tail_w, tail_s, |t| t > i);
            // SAFETY: slot `i` lies in the segment, and the producer wrote
            // it before publishing `tail > i` (Release/Acquire), and will
            // not write it again until `head` passes it.
            unsafe { std::ptr::copy_nonoverlapping(slot(i), out.as_mut_ptr(), size) };
            std::hint::black_box(&out);
            head.store(i + 1, Ordering::SeqCst);
            wake(head_w, head_s);
        }
    });
    let msg = vec![0x5au8; size];
    let t = Instant::now();
    for i in 0..n {
        wait_until(head, head_w, head_s, |h| i - h < slots);
        // SAFETY: slot `i` lies in the segment, and the consumer is done
        // with it (`head` passed its previous use) until `tail` passes `i`.
        unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), slot(i), size) };
        tail.store(i + 1, Ordering::SeqCst);
        wake(tail_w, tail_s);
    }
    crate::sync::reap(pid);
    n as f64 / t.elapsed().as_secs_f64()
}

/// The floor's wait: a futex wait on an epoch word `w` (the anchors wait on
/// the index itself, which is 32-bit there) with a sleeper count `s`.
fn wait_until(word: &AtomicU64, w: &AtomicU32, s: &AtomicU32, ok: impl Fn(u64) -> bool) {
    loop {
        if ok(word.load(Ordering::Acquire)) {
            return;
        }
        s.fetch_add(1, Ordering::SeqCst);
        let seen = w.load(Ordering::SeqCst);
        if !ok(word.load(Ordering::SeqCst)) {
            let _ = aiop_core::futex::wait(w, seen, aiop_core::futex::Timeout::Never);
        }
        s.fetch_sub(1, Ordering::SeqCst);
    }
}

fn wake(w: &AtomicU32, s: &AtomicU32) {
    if s.load(Ordering::SeqCst) > 0 {
        w.fetch_add(1, Ordering::SeqCst);
        let _ = aiop_core::futex::wake_all(w);
    }
}

/// `floor/ring_throughput_64B`: the bare ring with 64-byte messages; Mmsg/s.
pub(crate) fn floor_ring_64b(results: &mut Results) {
    let n = env_usize("AIOP_BENCH_MSGS", 5_000_000) as u64;
    let rate = floor_ring(64, n);
    results.value("floor/ring_throughput_64B", "Mmsg/s", rate / 1e6, None);
}

/// `floor/ring_throughput_64KiB`: the bare ring with 64 KiB messages; GB/s.
pub(crate) fn floor_ring_64kib(results: &mut Results) {
    let n = env_usize("AIOP_BENCH_MSGS", 5_000_000) as u64 / 100;
    let rate = floor_ring(64 << 10, n);
    results.value(
        "floor/ring_throughput_64KiB",
        "GB/s",
        rate * (64 << 10) as f64 / 1e9,
        None,
    );
}
