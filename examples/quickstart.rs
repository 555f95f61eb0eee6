//! aiop's quickstart: the scenario of aioprocessing's README, in Rust.
//!
//! A worker process, written with ordinary blocking calls, takes a lock,
//! sets an event and puts results on a queue. Two async tasks of the main
//! process run at once: one waits for the event, takes the lock (which the
//! worker holds until it is done) and puts the last item and the `None`
//! that ends the stream; the other collects the results and joins the
//! worker. Nothing blocks the executor and no thread is parked per task.
//!
//! Run it with `cargo run --example quickstart`.

use aiop::process::{Process, ProcessError};
use aiop::queue::Queue;
use aiop::sync::{Event, Lock};
use futures_lite::future;

/// What the worker gets: the shared objects and its input.
type Shared = (Queue<Option<u32>>, Event, Lock, Vec<u32>);

/// Runs in its own process, with plain blocking calls (the `_blocking`
/// twins), exactly as one would use multiprocessing's objects in Python.
fn worker((queue, event, lock, items): Shared) {
    let _held = lock
        .lock_blocking()
        .unwrap_or_else(|died| died.into_inner());
    event.set();
    for item in items {
        queue.put_blocking(Some(item + 5)).expect("queue closed");
    }
    // The lock is released here, when `_held` goes.
}

/// Starts the worker and collects its results until `None`, then joins it.
async fn collect(
    queue: Queue<Option<u32>>,
    event: Event,
    lock: Lock,
) -> Result<Vec<u32>, ProcessError> {
    let mut p = Process::spawn(worker, (queue.clone(), event, lock, vec![1, 2, 3, 4, 5]))?;
    let mut results = Vec::new();
    while let Some(v) = queue.get().await.expect("queue closed") {
        println!("Got result {v}");
        results.push(v);
    }
    p.join().await?;
    println!("worker {} joined", p.pid());
    Ok(results)
}

/// Waits for the worker's event, then for its lock, then ends the stream.
async fn finish(queue: Queue<Option<u32>>, event: Event, lock: Lock) {
    event.wait().await;
    let _held = lock.lock().await.unwrap_or_else(|died| died.into_inner());
    queue.put(Some(78)).await.expect("queue closed");
    queue.put(None).await.expect("queue closed");
}

fn main() -> Result<(), ProcessError> {
    // A spawned worker re-executes this program and takes over here.
    aiop::init();

    let queue = Queue::new(0)?;
    let event = Event::new()?;
    let lock = Lock::new()?;

    // Any executor works (smol, tokio, async-std); `block_on` with `zip`
    // runs both tasks at once without one.
    let (results, ()) = future::block_on(future::zip(
        collect(queue.clone(), event.clone(), lock.clone()),
        finish(queue, event, lock),
    ));
    let results = results?;
    assert_eq!(results, [6, 7, 8, 9, 10, 78]);
    println!("all results: {results:?}");
    Ok(())
}
