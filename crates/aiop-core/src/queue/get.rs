//! The consumer side: records are decoded in place, chunks of a message
//! larger than half the ring are reassembled, and what dead processes left
//! half-done is dropped.

use std::io;
use std::time::Instant;

use serde::de::DeserializeOwned;

use super::ring::{
    ABORT, CHUNK, Epoch, FULL, LAST, OPEN, POLL, Ring, SKIP, Wait, pad8, read_header,
};

/// Why no item was got.
#[derive(Debug)]
pub(super) enum GetFail {
    Empty,
    /// Another consumer holds the ring (only with `Wait::Now`).
    Busy,
    Closed,
    Decode(io::Error),
}

/// Where the consumer is within the records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// At the start of a message.
    Normal,
    /// Reassembling a message that arrives in chunks.
    Collect,
    /// Dropping the rest of a message whose beginning a dead consumer took.
    Discard,
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, GetFail> {
    let why = match postcard::take_from_bytes::<T>(bytes) {
        Ok((v, [])) => return Ok(v),
        Ok((_, rest)) => format!(
            "{} bytes of the record are left over (was it put as another type?)",
            rest.len()
        ),
        Err(e) => e.to_string(),
    };
    Err(GetFail::Decode(io::Error::new(
        io::ErrorKind::InvalidData,
        format!("cannot decode the queue item: {why}"),
    )))
}

impl Ring {
    /// Gets one item, waiting as `wait` says for the lock and an item. Once
    /// a chunked message has begun, it is finished whatever the deadline
    /// (its chunks are coming, or its producer died and it is dropped).
    pub(super) fn get<T: DeserializeOwned>(&self, wait: Wait) -> Result<T, GetFail> {
        let busy = if matches!(wait, Wait::Now) {
            GetFail::Busy
        } else {
            GetFail::Empty
        };
        let (mut held, died) = self.lock_get(wait).ok_or(busy)?;
        if died {
            held.repair();
        }
        let mut mode = if held.stream_open() {
            Mode::Discard
        } else {
            Mode::Normal
        };
        let mut buf = Vec::new();
        let cap = self.capacity() as u64;
        loop {
            let tail = held.tail();
            let head = self.head();
            if head == tail {
                if mode == Mode::Normal && self.closed() {
                    return Err(GetFail::Closed);
                }
                self.wait_records(tail, mode, wait)?;
                continue;
            }
            let (len, kind) = read_header(&held, tail);
            let len = len as usize;
            let next = tail + 8 + pad8(len) as u64;
            if !(FULL..=SKIP).contains(&kind) || next > head || tail % cap + 8 + len as u64 > cap {
                // Records are only ever committed whole, so this is memory
                // damaged from outside: drop it all rather than wedge.
                held.discard_all();
                return Err(GetFail::Decode(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the queue's ring is corrupt: its contents were dropped",
                )));
            }
            let gets = held.gets();
            match kind {
                SKIP => {
                    let state = if held.stream_open() { OPEN } else { 0 };
                    held.commit(next, gets, state);
                }
                ABORT => {
                    mode = Mode::Normal;
                    buf = Vec::new();
                    held.commit(next, gets, 0);
                }
                FULL => {
                    // Decode in place, then free the record: a consumer that
                    // dies before the commit leaves it for the next one.
                    let item = decode(held.committed(tail + 8, len));
                    held.commit(next, gets + 1, 0);
                    return item;
                }
                _ => {
                    if mode == Mode::Normal {
                        mode = Mode::Collect;
                    }
                    if mode == Mode::Collect {
                        buf.extend_from_slice(held.committed(tail + 8, len));
                    }
                    if kind == CHUNK {
                        held.commit(next, gets, OPEN);
                        continue;
                    }
                    debug_assert_eq!(kind, LAST);
                    held.commit(next, gets + 1, 0);
                    if mode == Mode::Collect {
                        return decode(&buf);
                    }
                    mode = Mode::Normal;
                }
            }
        }
    }

    /// Waits for records past `tail`. In the middle of a message, checks
    /// every [`POLL`] whether its producer died, and then aborts it in the
    /// producer's stead.
    fn wait_records(&self, tail: u64, mode: Mode, wait: Wait) -> Result<(), GetFail> {
        let more = || self.head() != tail;
        if mode == Mode::Normal {
            let ready = || more() || self.closed();
            return if self.wait_for(Epoch::Avail, wait, ready) {
                Ok(())
            } else {
                Err(GetFail::Empty)
            };
        }
        if let (Mode::Discard, Wait::No | Wait::Now) = (mode, wait) {
            // No wait for the rest of a message a dead consumer began, but
            // if its producer is gone too, nobody else will abort it: do it
            // now (without waiting for the producers' lock), so the get
            // sees the `ABORT`, then what follows it, or the close.
            if self.producer_gone()
                && let Some((mut p, _)) = self.lock_put(wait)
            {
                self.recover_put(&mut p);
            }
            return if more() { Ok(()) } else { Err(GetFail::Empty) };
        }
        let poll = Instant::now() + POLL;
        let until = match (mode, wait) {
            (Mode::Discard, Wait::Until(Some(d))) => d.min(poll),
            _ => poll,
        };
        if self.wait_for(Epoch::Avail, Wait::Until(Some(until)), more) {
            return Ok(());
        }
        if self.producer_gone() {
            if let Some((mut p, _)) = self.lock_put(Wait::No) {
                self.recover_put(&mut p);
            }
        } else if mode == Mode::Discard && wait.expired() {
            return Err(GetFail::Empty);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::Kind;
    use crate::queue::ring::write_header;

    /// Leaves what a producer killed after the first chunk of a message
    /// and a consumer killed after taking that chunk leave: both sides'
    /// streams open, nothing past the tail, the producers' lock free.
    fn both_died_mid_stream(ring: &Ring) {
        let (mut p, _) = ring.lock_put(Wait::No).unwrap();
        let head = p.head();
        write_header(&mut p, head, 8, CHUNK);
        let puts = p.puts();
        p.commit(head + 16, puts, OPEN);
        drop(p);
        let (mut c, _) = ring.lock_get(Wait::No).unwrap();
        let gets = c.gets();
        c.commit(head + 16, gets, OPEN);
    }

    #[test]
    fn a_nonblocking_get_drops_a_message_whose_producer_and_consumer_died() {
        for wait in [Wait::No, Wait::Now] {
            let ring = Ring::create(Kind::Queue, 4096, 0).unwrap();
            both_died_mid_stream(&ring);
            ring.close();
            // The queue is closed and holds no item: `Closed`, not `Empty`
            // (an async get would otherwise sleep forever).
            assert!(matches!(ring.get::<u32>(wait), Err(GetFail::Closed)));

            let ring = Ring::create(Kind::Queue, 4096, 0).unwrap();
            both_died_mid_stream(&ring);
            assert!(matches!(ring.get::<u32>(wait), Err(GetFail::Empty)));
            // The dead producer's side was repaired: the message is aborted.
            assert!(!ring.producer_gone());
            assert!(!ring.lock_get(Wait::No).unwrap().0.stream_open());
            ring.put(&7u32, Wait::No).unwrap();
            assert_eq!(ring.get::<u32>(wait).unwrap(), 7);
        }
    }
}
