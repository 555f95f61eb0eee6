//! Many I/O-bound async tasks in each worker process: the aiomultiprocess
//! model.
//!
//! This program starts a small TCP server on a thread of its own that
//! answers each connection after 20 ms, like a slow remote service. A pool
//! of 2 worker processes, each running up to 32 async tasks at once
//! (`child_concurrency(32)`), then maps the async function `fetch` over 200
//! requests: each task connects to the server with async-io, sends its
//! request and reads the answer. While one task waits for its answer, its
//! worker runs the others, so the 200 requests, which would take at least
//! 4 s one after the other, overlap: 64 are in flight at a time. The
//! program prints how long they took, how many requests the server saw at
//! once, and how many tasks each worker ran, then closes and joins the pool
//! and stops the server.
//!
//! Run it with `cargo run --example async_workers`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aiop::{AsyncFn, Pool};
use async_io::Async;
use futures_lite::{AsyncReadExt, AsyncWriteExt, StreamExt};
use serde::{Deserialize, Serialize};

const WORKERS: usize = 2;
const TASKS_PER_WORKER: usize = 32;
const REQUESTS: u32 = 200;
/// How long the server takes to answer.
const DELAY: Duration = Duration::from_millis(20);

/// A task's argument: where to connect, and what to ask.
#[derive(Debug, Serialize, Deserialize)]
struct Request {
    server: SocketAddr,
    id: u32,
}

/// A task's result: the answer, and which worker fetched it.
#[derive(Debug, Serialize, Deserialize)]
struct Reply {
    id: u32,
    pid: u32,
    body: String,
}

/// The pool function: an `async fn`, run in a worker process on its
/// executor, next to up to 31 others. Errors travel back as text
/// (`io::Error` does not serialize).
async fn fetch(request: Request) -> Result<Reply, String> {
    let body = get(request.server, &format!("GET /item/{}", request.id))
        .await
        .map_err(|e| format!("request {}: {e}", request.id))?;
    Ok(Reply {
        id: request.id,
        pid: std::process::id(),
        body,
    })
}

/// Sends one line and reads the answer to the end of the connection.
async fn get(server: SocketAddr, line: &str) -> std::io::Result<String> {
    let mut stream = Async::<TcpStream>::connect(server).await?;
    stream.write_all(format!("{line}\n").as_bytes()).await?;
    let mut body = String::new();
    stream.read_to_string(&mut body).await?;
    Ok(body)
}

/// The slow remote: a TCP server on a thread of this process.
struct Server {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    /// The most connections it served at once.
    peak: Arc<AtomicUsize>,
    thread: JoinHandle<std::io::Result<usize>>,
}

impl Server {
    fn start() -> std::io::Result<Server> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let address = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicUsize::new(0));
        let thread = std::thread::spawn({
            let (stop, peak) = (stop.clone(), peak.clone());
            move || serve(listener, &stop, &peak)
        });
        Ok(Server {
            address,
            stop,
            peak,
            thread,
        })
    }

    /// Stops accepting, waits for every answer to go out; returns how many
    /// requests it answered and the most it served at once.
    fn stop(self) -> std::io::Result<(usize, usize)> {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accepting thread; it sees the flag and returns.
        drop(TcpStream::connect(self.address)?);
        let served = self.thread.join().expect("the server thread panicked")?;
        Ok((served, self.peak.load(Ordering::SeqCst)))
    }
}

/// Accepts until told to stop, answering each connection on a thread of
/// its own after [`DELAY`].
fn serve(listener: TcpListener, stop: &AtomicBool, peak: &AtomicUsize) -> std::io::Result<usize> {
    let active = AtomicUsize::new(0);
    let served = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for stream in listener.incoming() {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let stream = stream?;
            let (active, served) = (&active, &served);
            s.spawn(move || {
                let now = active.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                let mut line = String::new();
                if BufReader::new(&stream).read_line(&mut line).is_ok() {
                    std::thread::sleep(DELAY);
                    if write!(&stream, "answer to {}", line.trim_end()).is_ok() {
                        served.fetch_add(1, Ordering::SeqCst);
                    }
                }
                active.fetch_sub(1, Ordering::SeqCst);
            });
        }
        Ok::<(), std::io::Error>(())
    })?;
    // The scope has joined every connection's thread.
    Ok(served.load(Ordering::SeqCst))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A pool worker re-executes this program and takes over here.
    aiop::init();

    let server = Server::start()?;
    println!("a server on {} answers after {DELAY:?}", server.address);

    let (replies, elapsed, pids) = async_io::block_on(async {
        let pool = Pool::builder()
            .processes(WORKERS)
            .child_concurrency(TASKS_PER_WORKER)
            .build()?;
        let pids = pool.pids();
        println!("{WORKERS} workers {pids:?}, each running up to {TASKS_PER_WORKER} tasks at once");

        let requests = (0..REQUESTS).map(|id| Request {
            server: server.address,
            id,
        });
        let started = Instant::now();
        // Results in request order; each item is the pool's Result around
        // fetch's own.
        let replies: Vec<_> = pool.map(AsyncFn(fetch), requests).collect().await;
        let elapsed = started.elapsed();

        pool.close();
        pool.join().await?;
        Ok::<_, aiop::pool::PoolError>((replies, elapsed, pids))
    })?;

    let mut by_worker: BTreeMap<u32, usize> = BTreeMap::new();
    for (id, reply) in (0..REQUESTS).zip(replies) {
        let reply = reply??;
        assert_eq!(reply.id, id, "map keeps the order of its input");
        assert_eq!(reply.body, format!("answer to GET /item/{id}"));
        assert!(pids.contains(&reply.pid), "a reply from a pool worker");
        *by_worker.entry(reply.pid).or_default() += 1;
    }

    let (served, peak) = server.stop()?;
    assert_eq!(served, REQUESTS as usize);
    let serial = DELAY * REQUESTS;
    let ideal = DELAY * REQUESTS.div_ceil((WORKERS * TASKS_PER_WORKER) as u32);
    println!(
        "{REQUESTS} requests in {:.0} ms: one at a time they take at least {:.1} s, \
         {} at a time at least {:.0} ms",
        elapsed.as_secs_f64() * 1e3,
        serial.as_secs_f64(),
        WORKERS * TASKS_PER_WORKER,
        ideal.as_secs_f64() * 1e3,
    );
    println!("the server answered up to {peak} requests at once");
    println!("tasks run by each worker pid: {by_worker:?}");
    Ok(())
}
