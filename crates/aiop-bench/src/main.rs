//! aiop's benchmark binary.
//!
//! `cargo run --release -p aiop-bench -- [NAME_PREFIX ...]` runs every
//! benchmark whose name starts with one of the prefixes (all of them without
//! arguments) and prints one JSON object per line:
//!
//! ```text
//! {"name":"spawn_join/spawn","unit":"us","value":812.4,"p99":1410.2,"n":200}
//! ```
//!
//! `value` is the median for latencies and the rate for throughputs; `p99`
//! is given where it applies. Names are stable. Each benchmark of aiop is
//! followed by `ratio/...` lines that compare it with the physical floor
//! measured in the same run, since only same-run ratios mean anything on a
//! noisy machine.
//!
//! Knobs: `AIOP_BENCH_ITERS` (samples per latency benchmark, default 200;
//! ping-pongs take 100 times as many), `AIOP_BENCH_WARMUP` (default 10),
//! `AIOP_BENCH_DUR_MS` (each side of a contended run, default 1000),
//! `AIOP_BENCH_PIN=N` (pin the benchmark to CPU `N`, and the second process
//! of a two-process benchmark to the next CPU, as the anchors' `PIN=1` pins
//! parent and child to CPUs 0 and 1; of a pool, only a one-worker pool's
//! worker is pinned), `AIOP_BENCH_POOL_ITEMS` (items of a `pool/map_auto`
//! run, default 4,000,000; `pool/map_chunk1` takes a fiftieth) and
//! `AIOP_BENCH_POOL_RUNS` (timed runs per map benchmark, default 5).
#![deny(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

mod asyncs;
mod floor;
mod manager;
mod pipe;
mod pool;
mod queue;
mod report;
mod spawn;
mod sync;

use report::Results;

/// A benchmark: its stable name and the function that measures it.
type Bench = (&'static str, fn(&mut Results));

const BENCHES: &[Bench] = &[
    ("floor/fork_waitpid", floor::fork_waitpid),
    ("floor/exec_true", floor::exec_true),
    ("floor/exec_self", floor::exec_self),
    ("spawn_join/spawn", spawn::spawn),
    ("spawn_join/forkserver", spawn::forkserver),
    ("spawn_join/fork", spawn::fork),
    ("floor/futex_pingpong", sync::futex_pingpong),
    ("floor/spin_pingpong", sync::spin_pingpong),
    ("event/pingpong", sync::event_pingpong),
    ("event/pingpong_nospin", sync::event_pingpong_nospin),
    ("async/event_pingpong", asyncs::event_pingpong),
    ("floor/lock_uncontended", sync::floor_lock_uncontended),
    ("lock/uncontended", sync::lock_uncontended),
    ("async/lock_uncontended", asyncs::lock_uncontended),
    ("floor/lock_contended_2proc", sync::floor_lock_contended),
    ("lock/contended_2proc", sync::lock_contended),
    ("floor/socketpair_pingpong", pipe::socketpair_pingpong),
    ("pipe/pingpong", pipe::pipe_pingpong),
    ("async/pipe_pingpong", asyncs::pipe_pingpong),
    ("queue/pingpong", queue::queue_pingpong),
    ("queue/pingpong_nospin", queue::queue_pingpong_nospin),
    ("async/queue_pingpong", asyncs::queue_pingpong),
    ("async/waiters_10k", asyncs::waiters_10k),
    ("floor/ring_throughput_64B", queue::floor_ring_64b),
    ("queue/throughput_64B", queue::throughput_64b),
    ("floor/ring_throughput_64KiB", queue::floor_ring_64kib),
    ("queue/throughput_64KiB", queue::throughput_64kib),
    ("pool/apply_rtt", pool::apply_rtt),
    ("pool/apply_rtt_2proc", pool::apply_rtt_2proc),
    ("pool/map_chunk1", pool::map_chunk1),
    ("pool/map_auto", pool::map_auto),
    ("pool/start", pool::start),
    ("async/pool_apply_rtt", pool::async_apply_rtt),
    ("async/pool_map_chunk1", pool::async_map_chunk1),
    ("manager/dict_get", manager::dict_get),
    ("async/manager_dict_get", manager::async_dict_get),
    ("manager/dict_get_nospin", manager::dict_get_nospin),
];

/// Ratios printed when both sides ran: (name, numerator, denominator).
const RATIOS: &[(&str, &str, &str)] = &[
    (
        "ratio/async/lock_uncontended:lock/uncontended",
        "async/lock_uncontended",
        "lock/uncontended",
    ),
    (
        "ratio/spawn_join/spawn:floor/exec_self",
        "spawn_join/spawn",
        "floor/exec_self",
    ),
    (
        "ratio/spawn_join/forkserver:floor/fork_waitpid",
        "spawn_join/forkserver",
        "floor/fork_waitpid",
    ),
    (
        "ratio/spawn_join/fork:floor/fork_waitpid",
        "spawn_join/fork",
        "floor/fork_waitpid",
    ),
    (
        "ratio/event/pingpong:floor/futex_pingpong",
        "event/pingpong",
        "floor/futex_pingpong",
    ),
    (
        "ratio/event/pingpong_nospin:floor/futex_pingpong",
        "event/pingpong_nospin",
        "floor/futex_pingpong",
    ),
    (
        "ratio/async/event_pingpong:event/pingpong",
        "async/event_pingpong",
        "event/pingpong",
    ),
    (
        "ratio/async/pipe_pingpong:pipe/pingpong",
        "async/pipe_pingpong",
        "pipe/pingpong",
    ),
    (
        "ratio/lock/uncontended:floor/lock_uncontended",
        "lock/uncontended",
        "floor/lock_uncontended",
    ),
    (
        "ratio/lock/contended_2proc:floor/lock_contended_2proc",
        "lock/contended_2proc",
        "floor/lock_contended_2proc",
    ),
    (
        "ratio/pipe/pingpong:floor/socketpair_pingpong",
        "pipe/pingpong",
        "floor/socketpair_pingpong",
    ),
    (
        "ratio/queue/pingpong:floor/futex_pingpong",
        "queue/pingpong",
        "floor/futex_pingpong",
    ),
    (
        "ratio/queue/pingpong_nospin:floor/futex_pingpong",
        "queue/pingpong_nospin",
        "floor/futex_pingpong",
    ),
    (
        "ratio/async/queue_pingpong:queue/pingpong",
        "async/queue_pingpong",
        "queue/pingpong",
    ),
    (
        "ratio/async/queue_pingpong:floor/futex_pingpong",
        "async/queue_pingpong",
        "floor/futex_pingpong",
    ),
    (
        "ratio/queue/throughput_64B:floor/ring_throughput_64B",
        "queue/throughput_64B",
        "floor/ring_throughput_64B",
    ),
    (
        "ratio/queue/throughput_64KiB:floor/ring_throughput_64KiB",
        "queue/throughput_64KiB",
        "floor/ring_throughput_64KiB",
    ),
    // The async pool's round trip against the blocking one: what awaiting
    // (and the worker's executor) adds.
    (
        "ratio/async/pool_apply_rtt:pool/apply_rtt",
        "async/pool_apply_rtt",
        "pool/apply_rtt",
    ),
    // A pool round trip crosses two queues, the task's and the reply's, as a
    // queue ping-pong does: the ratio is what the pool adds to those hops.
    (
        "ratio/pool/apply_rtt:queue/pingpong",
        "pool/apply_rtt",
        "queue/pingpong",
    ),
    (
        "ratio/pool/apply_rtt_2proc:pool/apply_rtt",
        "pool/apply_rtt_2proc",
        "pool/apply_rtt",
    ),
    // Each item of a one-item-per-task map is a task message out and a reply
    // back through the pool's one result queue: the queue's streaming rate
    // bounds it (and a worker takes its next task only once idle).
    (
        "ratio/pool/map_chunk1:queue/throughput_64B",
        "pool/map_chunk1",
        "queue/throughput_64B",
    ),
    // What the automatic chunk size gains over one item per task.
    (
        "ratio/pool/map_auto:pool/map_chunk1",
        "pool/map_auto",
        "pool/map_chunk1",
    ),
    // Starting a pool is two Spawn starts side by side, then one task (and
    // no join: tearing the pool down is not timed).
    (
        "ratio/pool/start:spawn_join/spawn",
        "pool/start",
        "spawn_join/spawn",
    ),
    // A manager call is a request and a reply over a Unix socket, as a
    // pipe round trip is a message each way: the ratio is what the call's
    // encoding and the server's dispatch add.
    (
        "ratio/manager/dict_get:pipe/pingpong",
        "manager/dict_get",
        "pipe/pingpong",
    ),
    (
        "ratio/async/manager_dict_get:manager/dict_get",
        "async/manager_dict_get",
        "manager/dict_get",
    ),
];

fn main() {
    aiop_core::init();
    floor::exit_if_noop_child();
    report::pin_from_env();
    // Spinning on, aiop's default on a machine of several CPUs, which the
    // pinning above would turn off for this process: every benchmark then
    // starts from the same setting whichever ran before it (those that
    // measure without spinning turn it off and back on).
    aiop_core::sync::set_spinning(true);
    let prefixes: Vec<String> = std::env::args().skip(1).collect();
    let selected =
        |name: &str| prefixes.is_empty() || prefixes.iter().any(|p| name.starts_with(p.as_str()));
    let mut results = Results::default();
    for (name, bench) in BENCHES {
        if selected(name) {
            bench(&mut results);
        }
    }
    for (name, num, den) in RATIOS {
        results.ratio(name, num, den);
    }
}
