//! A tour of aiop's processes: typed results, start methods, shared memory,
//! panics, signals and daemons.
//!
//! Run it with `cargo run --example processes`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use aiop::arena::Slot;
use aiop::blocking::process::{self, Process, ProcessError, StartMethod};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Chunk {
    first: u64,
    last: u64,
}

/// CPU work for a child: the sum of the squares in a range.
fn sum_of_squares(c: Chunk) -> u64 {
    (c.first..=c.last).map(|x| x * x).sum()
}

/// A child that counts into a shared slot, with a futex wake for anyone waiting.
fn count_into(slot: Slot) -> String {
    for _ in 0..1000 {
        slot.word(0).fetch_add(1, Ordering::Relaxed);
    }
    aiop::futex::wake_all(slot.word(0)).expect("wake");
    format!(
        "{} (pid {}) counted to 1000",
        process::current_process().name(),
        std::process::id()
    )
}

/// A child that never finishes on its own.
fn sleep_forever(_: ()) {
    loop {
        std::thread::park();
    }
}

fn main() -> Result<(), ProcessError> {
    // A spawned child re-executes this program; this is where it takes over.
    aiop::init();

    println!(
        "{} (pid {}) on {} CPUs",
        process::current_process().name(),
        std::process::id(),
        process::cpu_count()
    );

    // 1. Split a sum over four children, one per chunk, and add their typed results.
    let n = 2_000_000u64;
    let per = n / 4;
    let mut workers: Vec<Process<u64>> = (0..4)
        .map(|i| {
            Process::spawn(
                sum_of_squares,
                Chunk {
                    first: i * per + 1,
                    last: (i + 1) * per,
                },
            )
        })
        .collect::<Result<_, _>>()?;
    let total: u64 = workers
        .iter_mut()
        .map(|p| p.join())
        .sum::<Result<u64, _>>()?;
    assert_eq!(total, (1..=n).map(|x| x * x).sum::<u64>());
    println!(
        "sum of squares up to {n}: {total} (from {} children)",
        workers.len()
    );

    // 2. The fork server: a small server forks each child, much faster than re-executing.
    let fast = Process::builder().start_method(StartMethod::FORK_SERVER);
    let mut p = fast.spawn(sum_of_squares, Chunk { first: 1, last: 10 })?;
    println!("forkserver child {} returned {}", p.pid(), p.join()?);

    // 3. Shared memory: a slot handle travels in the arguments with its descriptor.
    let slot = Slot::new().expect("slot");
    let mut counters: Vec<Process<String>> = (0..3)
        .map(|_| fast.spawn(count_into, slot.clone()))
        .collect::<Result<_, _>>()?;
    for c in &mut counters {
        println!("  {}", c.join()?);
    }
    println!(
        "the parent reads {} from the shared slot",
        slot.word(0).load(Ordering::Relaxed)
    );

    // 4. A panic in a child comes back as an error with its message.
    let mut p = Process::spawn(
        |x: i32| -> i32 {
            if x < 0 {
                panic!("negative input {x}")
            } else {
                x
            }
        },
        -3,
    )?;
    match p.join() {
        Err(e) => println!("child failed: {e} (exit code {:?})", p.exitcode()),
        Ok(v) => println!("unexpected: {v}"),
    }

    // 5. A child that would run forever: a join with a timeout, then kill.
    let mut sleeper = Process::builder()
        .name("sleeper")
        .daemon(true)
        .spawn(sleep_forever, ())?;
    if let Err(e) = sleeper.join_timeout(Duration::from_millis(200)) {
        println!("{}: {e}; alive: {}", sleeper.name(), sleeper.is_alive());
    }
    println!(
        "active children: {:?}",
        process::active_children()
            .iter()
            .map(|c| c.name().to_string())
            .collect::<Vec<_>>()
    );
    sleeper.kill().expect("kill");
    let _ = sleeper.join();
    println!(
        "{} exit code after kill: {:?}",
        sleeper.name(),
        sleeper.exitcode()
    );
    Ok(())
}
