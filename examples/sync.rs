//! Cross-process locks, events, barriers and shared values, and what
//! happens when a process dies holding a lock.
//!
//! Run it with `cargo run --example sync`.

use std::time::Duration;

use aiop::blocking::process::{Process, ProcessError, StartMethod};
use aiop::blocking::shared::{Array, Value};
use aiop::blocking::sync::{Barrier, Event, Lock};
use serde::{Deserialize, Serialize};

/// What each worker gets: its number and the shared objects.
#[derive(Serialize, Deserialize)]
struct Job {
    id: usize,
    counter: Value<u64>,
    hist: Array<u32>,
    start: Barrier,
}

/// Waits for every worker, then counts under the value's lock.
fn worker(job: Job) -> u32 {
    let arrival = job.start.wait().expect("barrier");
    for i in 0..10_000u64 {
        *job.counter.lock().unwrap() += 1;
        if i % 1000 == 0 {
            job.hist.lock().unwrap()[job.id] += 1;
        }
    }
    arrival
}

/// Takes the lock, starts "updating" the protected state, says so, and is
/// killed before it can finish.
fn careless((lock, state, holding): (Lock, Value<u32>, Event)) {
    let _guard = lock.lock().unwrap();
    state.set(1); // 1: an update is half done
    holding.set();
    loop {
        std::thread::park();
    }
}

fn main() -> Result<(), ProcessError> {
    aiop::init();
    let fast = Process::builder().start_method(StartMethod::FORK_SERVER);

    // 1. Four workers meet at a barrier, then count into one shared value.
    let counter = Value::new(0u64).expect("value");
    let hist = Array::<u32>::new(4).expect("array");
    let start = Barrier::new(4).expect("barrier");
    let mut workers: Vec<Process<u32>> = (0..4)
        .map(|id| {
            fast.spawn(
                worker,
                Job {
                    id,
                    counter: counter.clone(),
                    hist: hist.clone(),
                    start: start.clone(),
                },
            )
        })
        .collect::<Result<_, _>>()?;
    let mut arrivals: Vec<u32> = workers
        .iter_mut()
        .map(|w| w.join())
        .collect::<Result<_, _>>()?;
    arrivals.sort_unstable();
    println!("barrier arrival indexes: {arrivals:?}");
    println!(
        "counter after 4 x 10000 locked increments: {}",
        counter.get()
    );
    println!("per-worker marks: {:?}", hist.to_vec());
    assert_eq!(counter.get(), 40_000);

    // 2. A process dies holding a lock: the next acquirer is told, at once.
    let lock = Lock::new().expect("lock");
    let state = Value::new(0u32).expect("value");
    let holding = Event::new().expect("event");
    let mut victim = fast.spawn(careless, (lock.clone(), state.clone(), holding.clone()))?;
    assert!(holding.wait_timeout(Duration::from_secs(10)));
    println!(
        "child {} holds the lock; try_lock here: {:?}",
        victim.pid(),
        lock.try_lock().err()
    );
    victim.kill().expect("kill");
    let _ = victim.join();
    match lock.lock() {
        Ok(_) => println!("unexpected: the lock was free"),
        Err(died) => {
            println!("lock(): {died}");
            let _guard = died.into_inner(); // we hold the lock: repair the state
            if state.get() == 1 {
                println!("repairing the half-done update");
                state.set(0);
            }
        }
    }
    println!(
        "after recovery the lock works normally: {}",
        lock.try_lock().is_ok()
    );
    Ok(())
}
