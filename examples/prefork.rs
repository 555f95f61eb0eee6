//! A prefork server: the parent accepts TCP connections and hands each
//! accepted socket to one of its worker processes through a `Connection`;
//! the worker answers the client directly.
//!
//! The program plays the clients too (a few threads), checks every answer,
//! shuts the workers down and prints a summary, so it ends on its own.
//!
//! Run it with `cargo run --example prefork`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

use aiop::blocking::connection::{Connection, Fd, pipe};
use aiop::blocking::process::Process;

const WORKERS: usize = 3;
const CLIENTS: usize = 4;
const REQUESTS_PER_CLIENT: usize = 5;

/// What a worker is told: serve this socket, or stop.
type Order = Option<Fd<TcpStream>>;

/// A worker: answers one line on each socket it is handed, until told to stop.
/// Returns how many clients it served.
fn worker(orders: Connection) -> usize {
    let pid = std::process::id();
    let mut served = 0;
    while let Ok(Some(socket)) = orders.recv::<Order>() {
        let socket = socket.into_inner();
        let mut line = String::new();
        if BufReader::new(&socket).read_line(&mut line).is_ok() {
            let _ = writeln!(&socket, "worker {pid} says: {}", line.trim_end());
            served += 1;
        }
    }
    served
}

/// A client: connects, says something, checks the answer; returns the
/// pids of the workers that answered.
fn client(address: SocketAddr, id: usize) -> Vec<u32> {
    (0..REQUESTS_PER_CLIENT)
        .map(|i| {
            let mut stream = TcpStream::connect(address).expect("connect");
            let hello = format!("hello from client {id}, request {i}");
            writeln!(stream, "{hello}").expect("send");
            let mut answer = String::new();
            BufReader::new(&stream)
                .read_line(&mut answer)
                .expect("answer");
            let (who, said) = answer
                .trim_end()
                .split_once(" says: ")
                .expect("a well-formed answer");
            assert_eq!(said, hello, "the worker echoes the request");
            who.strip_prefix("worker ")
                .and_then(|pid| pid.parse().ok())
                .expect("the answer names the worker's pid")
        })
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    aiop::init();

    // Start the workers, each with the far end of its own pipe.
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (orders, theirs) = pipe(true)?;
        let process = Process::spawn(worker, theirs)?;
        workers.push((process, orders));
    }
    let pids: Vec<u32> = workers.iter().map(|(p, _)| p.pid()).collect();
    println!("started workers {pids:?}");

    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    println!("listening on {address}");
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| std::thread::spawn(move || client(address, id)))
        .collect();

    // Accept every client connection and hand it on, round-robin. The
    // socket's descriptor travels to the worker; ours is closed at once.
    for n in 0..CLIENTS * REQUESTS_PER_CLIENT {
        let (socket, _) = listener.accept()?;
        let (_, orders) = &workers[n % WORKERS];
        orders.send(&Some(Fd::new(&socket)))?;
    }

    let mut answered_by: BTreeMap<u32, usize> = BTreeMap::new();
    for c in clients {
        for pid in c.join().expect("a client thread failed") {
            *answered_by.entry(pid).or_default() += 1;
        }
    }

    // Shut the workers down: each is told to stop and says how many it served.
    let mut served = BTreeMap::new();
    for (mut process, orders) in workers {
        orders.send(&None::<Fd<TcpStream>>)?;
        served.insert(process.pid(), process.join()?);
    }

    println!("answers by worker pid: {answered_by:?}");
    println!("served by worker pid:  {served:?}");
    assert_eq!(
        answered_by, served,
        "every answer came from the worker that served it"
    );
    assert!(answered_by.keys().all(|pid| pids.contains(pid)));
    assert_eq!(
        served.values().sum::<usize>(),
        CLIENTS * REQUESTS_PER_CLIENT
    );
    println!(
        "{} requests from {CLIENTS} clients served by {WORKERS} workers; all workers stopped",
        CLIENTS * REQUESTS_PER_CLIENT
    );
    Ok(())
}
