//! The producer side: an item is encoded straight into the ring, as one
//! record when it fits in half the ring, else streamed through it in chunks.

use std::io;

use postcard::ser_flavors::Flavor;
use serde::Serialize;

use crate::transfer::plain_encode;

use super::ring::{
    ABORT, CHUNK, Epoch, FULL, LAST, OPEN, PutHeld, Ring, SKIP, Wait, pad8, write_header,
};

/// Why an item was not put.
#[derive(Debug)]
pub(super) enum PutFail {
    Full,
    /// Another producer holds the ring (only with `Wait::Now`).
    Busy,
    Closed,
    Encode(io::Error),
}

/// Bytes kept free behind every chunk of an unfinished message, for the
/// `ABORT` record that whoever gives up on it writes.
const RESERVE: usize = 8;

fn encode_error(why: String) -> PutFail {
    PutFail::Encode(io::Error::new(
        io::ErrorKind::InvalidData,
        format!("cannot encode the queue item: {why}"),
    ))
}

impl Ring {
    /// Puts one item, waiting as `wait` says for the lock, `maxsize` and space.
    pub(super) fn put<T: Serialize + ?Sized>(&self, item: &T, wait: Wait) -> Result<(), PutFail> {
        // Fails on anything that cannot be encoded before the ring is touched.
        let size =
            plain_encode(|| postcard::experimental::serialized_size(item)).map_err(encode_error)?;
        let busy = if matches!(wait, Wait::Now) {
            PutFail::Busy
        } else {
            PutFail::Full
        };
        let (mut held, died) = self.lock_put(wait).ok_or(busy)?;
        if died || held.stream_open() {
            self.recover_put(&mut held);
        }
        if self.closed() {
            return Err(PutFail::Closed);
        }
        let max = self.maxsize();
        if max > 0 {
            let puts = held.puts();
            // Items in the queue: our puts (nobody else's move while we
            // hold the lock) minus the gets, read SeqCst for the wait.
            let room = || self.closed() || puts.saturating_sub(self.gets()) < max;
            if !self.wait_for(Epoch::Space, wait, room) {
                return Err(PutFail::Full);
            }
            if self.closed() {
                return Err(PutFail::Closed);
            }
        }
        let record = 8 + pad8(size);
        if record <= self.capacity() / 2 {
            let pos = self.reserve(&mut held, record, wait, true)?;
            let region = held.region(pos, record);
            let n = plain_encode(|| postcard::to_slice(item, &mut region[8..]).map(|b| b.len()))
                .map_err(encode_error)?;
            region[..4].copy_from_slice(&(n as u32).to_le_bytes());
            region[4..8].copy_from_slice(&FULL.to_le_bytes());
            let puts = held.puts() + 1;
            held.commit(pos + 8 + pad8(n) as u64, puts, 0);
            Ok(())
        } else {
            let mut s = Stream {
                ring: self,
                held: &mut held,
                wait,
                remaining: size,
                pos: 0,
                len: 0,
                room: 0,
                started: false,
                fail: None,
            };
            match plain_encode(|| postcard::serialize_with_flavor(item, Out(&mut s))) {
                Ok(()) => {
                    s.finish();
                    Ok(())
                }
                Err(e) => {
                    s.abort();
                    Err(s.fail.take().unwrap_or_else(|| encode_error(e)))
                }
            }
        }
    }

    /// Waits until `need` contiguous bytes are free at `head` (first
    /// skipping the ring's end with a `SKIP` record when it is too near);
    /// returns their position. `check_closed`: give up when the queue closes.
    fn reserve(
        &self,
        held: &mut PutHeld<'_>,
        need: usize,
        wait: Wait,
        check_closed: bool,
    ) -> Result<u64, PutFail> {
        let cap = self.capacity();
        loop {
            let head = held.head();
            let to_end = cap - (head % cap as u64) as usize;
            let total = if to_end >= need { need } else { to_end + need };
            let closed = || check_closed && self.closed();
            let fits = || closed() || head + total as u64 <= self.tail() + cap as u64;
            if !self.wait_for(Epoch::Space, wait, fits) {
                return Err(PutFail::Full);
            }
            if closed() {
                return Err(PutFail::Closed);
            }
            if to_end >= need {
                return Ok(head);
            }
            write_header(held, head, (to_end - 8) as u32, SKIP);
            let (puts, state) = (held.puts(), if held.stream_open() { OPEN } else { 0 });
            held.commit(head + to_end as u64, puts, state);
        }
    }
}

/// A message on its way through the ring in chunks.
struct Stream<'a, 'r> {
    ring: &'r Ring,
    held: &'a mut PutHeld<'r>,
    wait: Wait,
    /// Bytes still expected (from the size pass).
    remaining: usize,
    /// The current chunk: its record's position, bytes written, room.
    pos: u64,
    len: usize,
    room: usize,
    /// Whether a chunk was committed (the message is open in the ring).
    started: bool,
    fail: Option<PutFail>,
}

impl Stream<'_, '_> {
    /// Commits the current chunk, if any, and reserves the next.
    fn next_chunk(&mut self) -> Result<(), ()> {
        if self.room > 0 {
            write_header(self.held, self.pos, self.len as u32, CHUNK);
            let puts = self.held.puts();
            self.held
                .commit(self.pos + 8 + pad8(self.len) as u64, puts, OPEN);
            self.started = true;
        }
        let target = self.remaining.clamp(8, self.ring.capacity() / 4);
        let need = 8 + pad8(target) + RESERVE;
        // The async layer's attempt does not wait to start a message, but
        // once one is in the ring, it is finished (a withdrawal would only
        // make the retry stream it again).
        let wait = match self.wait {
            Wait::Now if self.started => Wait::Until(None),
            w => w,
        };
        match self.ring.reserve(self.held, need, wait, !self.started) {
            Ok(pos) => {
                (self.pos, self.len, self.room) = (pos, 0, target);
                Ok(())
            }
            Err(e) => {
                self.fail = Some(e);
                Err(())
            }
        }
    }

    fn write(&mut self, mut data: &[u8]) -> Result<(), ()> {
        while !data.is_empty() {
            if self.len == self.room {
                self.next_chunk()?;
            }
            let n = (self.room - self.len).min(data.len());
            let at = self.pos + 8 + self.len as u64;
            self.held.region(at, n).copy_from_slice(&data[..n]);
            self.len += n;
            self.remaining = self.remaining.saturating_sub(n);
            data = &data[n..];
        }
        Ok(())
    }

    fn finish(&mut self) {
        let puts = self.held.puts() + 1;
        write_header(self.held, self.pos, self.len as u32, LAST);
        self.held
            .commit(self.pos + 8 + pad8(self.len) as u64, puts, 0);
    }

    /// Gives up: consumers drop what they got of the message.
    fn abort(&mut self) {
        if self.started {
            let (head, puts) = (self.held.head(), self.held.puts());
            write_header(self.held, head, 0, ABORT);
            self.held.commit(head + 8, puts, 0);
        }
    }
}

/// postcard's output into a [`Stream`].
struct Out<'s, 'a, 'r>(&'s mut Stream<'a, 'r>);

impl Flavor for Out<'_, '_, '_> {
    type Output = ();

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0
            .write(data)
            .map_err(|()| postcard::Error::SerializeBufferFull)
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.try_extend(&[data])
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}
