//! A manager that worker processes find by its address: word counts in a
//! served dict, the lines to count on a served queue.
//!
//! The main process starts a manager listening on TCP 127.0.0.1 (port 0:
//! the system picks a free port) with an authkey of its own choosing. It
//! creates a dict of word counts, a queue of jobs and a lock on the manager
//! and publishes them under names. The workers are given nothing but the
//! manager's address, as a string, and the authkey, as a program on
//! another machine would be: each connects, looks the three objects up by
//! name, and takes lines of text from the queue until it gets `None`. For
//! each line it adds its words' counts into the dict, holding the lock over
//! each read and write so that no two workers lose each other's updates.
//!
//! The main process puts the jobs and one `None` per worker, joins the
//! workers, checks the dict against its own count and prints it, and shuts
//! the manager down. Which worker takes which line varies from run to run;
//! the counts do not.
//!
//! This is Python's pattern of a `BaseManager` subclass with
//! `register('get_queue', callable=...)` on the server side and
//! `register('get_queue')` + `connect()` on the client side: in aiop the
//! server side calls `publish` and the client side `lookup`.
//!
//! Run it with `cargo run --example manager`.

use std::collections::BTreeMap;

use aiop::connection::Address;
use aiop::manager::{DictProxy, LockProxy, Manager, ManagerError, QueueProxy};
use aiop::process::Process;

/// The lines to count: "The House That Jack Built", each line a job.
const RHYME: &[&str] = &[
    "this is the house that jack built",
    "this is the malt that lay in the house that jack built",
    "this is the rat that ate the malt that lay in the house that jack built",
    "this is the cat that killed the rat that ate the malt that lay in the house that jack built",
    "this is the dog that worried the cat that killed the rat that ate the malt that lay in \
     the house that jack built",
    "this is the cow with the crumpled horn that tossed the dog that worried the cat that \
     killed the rat that ate the malt that lay in the house that jack built",
];
/// The rhyme is put on the queue this many times, so that the workers'
/// updates of the same words interleave.
const VERSES: usize = 5;
const WORKERS: usize = 3;

/// The names the shared objects are published under.
const COUNTS: &str = "counts";
const JOBS: &str = "jobs";
const LOCK: &str = "lock";

/// The served objects' types, as the main process creates them and the
/// workers look them up. A job is a line of text; `None` means "stop".
type Counts = DictProxy<String, u64>;
type Jobs = QueueProxy<Option<String>>;

/// Runs in a worker process. It gets the manager's address as a string and
/// the authkey, and returns how many lines and words it counted. Its errors
/// come back as text, since a process's result is serialized.
fn worker((address, authkey): (String, Vec<u8>)) -> Result<(u64, u64), String> {
    count_words(&address, &authkey).map_err(|e| format!("worker {}: {e}", std::process::id()))
}

fn count_words(address: &str, authkey: &[u8]) -> Result<(u64, u64), Box<dyn std::error::Error>> {
    // Connect by address, as `BaseManager(address, authkey).connect()`.
    // (`Manager::connect(..).await` is the async form, and every blocking
    // call below has an async twin without the `_blocking`.)
    let address: Address = address.parse()?;
    let manager = Manager::connect_blocking(&address, Some(authkey))?;

    // Find the shared objects by name. `lookup` checks the served object's
    // type against the proxy type asked for.
    let counts: Counts = lookup(&manager, COUNTS)?;
    let jobs: Jobs = lookup(&manager, JOBS)?;
    let lock: LockProxy = lookup(&manager, LOCK)?;

    let (mut lines, mut words) = (0, 0);
    while let Some(line) = jobs.get_blocking()? {
        // Count the line here first, so that each word of it costs one
        // read and one write on the server.
        let mut mine: BTreeMap<&str, u64> = BTreeMap::new();
        for word in line.split_whitespace() {
            *mine.entry(word).or_default() += 1;
            words += 1;
        }
        // A read and a write are two calls: without the lock, two workers
        // could both read 7 and both write 8. The guard releases the lock
        // when it goes out of scope.
        let _held = lock.lock_blocking()?;
        for (word, n) in mine {
            let word = word.to_string();
            // Python's `d.setdefault(word, 0)`: the count so far, or 0
            // (and the word is in the dict from now on).
            let before = counts.setdefault_blocking(&word, &0)?;
            counts.insert_blocking(&word, &(before + n))?;
        }
        lines += 1;
    }
    Ok((lines, words))
}

/// The object published as `name`, or an error saying it is not there.
fn lookup<P: aiop::manager::ProxyType>(manager: &Manager, name: &str) -> Result<P, String> {
    manager
        .lookup_blocking::<P>(name)
        .map_err(|e: ManagerError| format!("looking up {name:?}: {e}"))?
        .ok_or_else(|| format!("the manager has nothing published as {name:?}"))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A spawned worker (and the manager's server process) re-executes this
    // program and takes over here.
    aiop::init();

    // The manager's server runs in a process of its own. Port 0 picks a
    // free port; `manager.address()` says which one it got.
    let authkey = b"the house that jack built".to_vec();
    let manager = Manager::builder()
        .address(Address::Tcp("127.0.0.1:0".parse()?))
        .authkey(authkey.clone())
        .start()?;
    let address = manager.address().to_string();
    println!("manager listening on {address}");

    // The shared objects, published by name: they live on the server at
    // least as long as their names.
    let counts: Counts = manager.dict_blocking()?;
    let jobs: Jobs = manager.queue_blocking(0)?;
    let lock = manager.lock_blocking()?;
    manager.publish_blocking(COUNTS, &counts)?;
    manager.publish_blocking(JOBS, &jobs)?;
    manager.publish_blocking(LOCK, &lock)?;

    // The workers get the address and the key, and nothing else.
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        workers.push(Process::spawn(worker, (address.clone(), authkey.clone()))?);
    }
    let pids: Vec<u32> = workers.iter().map(Process::pid).collect();
    println!("started {WORKERS} workers {pids:?}");

    // The jobs, then one `None` per worker; and our own count, to check.
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for _ in 0..VERSES {
        for line in RHYME {
            jobs.put_blocking(&Some(line.to_string()))?;
            for word in line.split_whitespace() {
                *expected.entry(word.to_string()).or_default() += 1;
            }
        }
    }
    for _ in 0..WORKERS {
        jobs.put_blocking(&None)?;
    }

    // Join the workers; a worker's error (`?` on its result) ends the program.
    let (mut lines, mut words) = (0, 0);
    for mut w in workers {
        let (l, n) = w.join_blocking()??;
        lines += l;
        words += n;
    }
    println!("the workers counted {words} words in {lines} lines");

    // Everything the workers wrote is in the dict.
    let mut items = counts.items_blocking()?;
    let got: BTreeMap<String, u64> = items.iter().cloned().collect();
    assert_eq!(got, expected, "the dict holds every update");
    assert_eq!(words, expected.values().sum::<u64>());
    items.sort_by(|(a, m), (b, n)| n.cmp(m).then_with(|| a.cmp(b)));
    println!("{} distinct words, most frequent first:", items.len());
    for row in items.chunks(5) {
        let row: Vec<String> = row.iter().map(|(w, n)| format!("{w:>9} {n:>3}")).collect();
        println!("  {}", row.join("  "));
    }

    // Stop the server (Python's `manager.shutdown()`) and wait for its process.
    manager.shutdown_blocking()?;
    println!("manager shut down");
    Ok(())
}
