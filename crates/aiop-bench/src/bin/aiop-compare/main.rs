//! `aiop-compare`: aiop against the physical floors, the Rust peers and the
//! Python anchors, measured in one run and printed as one table.
//!
//! ```text
//! cargo run --release -p aiop-bench --bin aiop-compare -- [--rounds N] [--quick] [--no-pin]
//!                                                         [--skip SYSTEM,...]
//! ```
//!
//! It builds aiop-bench, the peers under `crates/aiop-bench/peers` (each its
//! own workspace, built into `target/peers`, so that their dependencies never
//! enter aiop's build) and a Python virtual environment under
//! `target/anchor-venv` with the anchors' libraries. Then it runs every
//! system once per round, the systems interleaved (each round starts one
//! system further on), for `--rounds` rounds (default 5), and prints the
//! median of the rounds for each workload and system, with aiop's cost
//! relative to the best floor and to the best peer. A system that cannot be
//! built or run here (no `python3`, a peer that fails to build, a run that
//! fails or hangs) is reported on a line of its own; the others still run.
//!
//! Pinning follows the peers' runner: the parent of a two-process workload
//! on CPU 0 and the child on CPU 1 (`--no-pin` leaves placement to the
//! scheduler). The Python anchors run unpinned: their children would inherit
//! the parent's CPU.
//!
//! The raw output of every run and the table are kept under
//! `target/compare/`. docs/benchmarks.md describes the workloads.
#![deny(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

mod catalog;
mod record;
mod systems;
mod table;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use systems::{Knobs, Paths, SYSTEMS};

/// The command line.
#[derive(Debug)]
struct Args {
    rounds: usize,
    knobs: Knobs,
    skip: Vec<String>,
}

const USAGE: &str = "usage: aiop-compare [--rounds N] [--quick] [--no-pin] [--skip SYSTEM,...]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        rounds: 5,
        knobs: Knobs {
            pin: true,
            quick: false,
        },
        skip: Vec::new(),
    };
    let mut rounds_given = false;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--rounds" => {
                let n = it.next().ok_or("--rounds takes a number")?;
                args.rounds = n
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or(format!("--rounds takes a positive number, not {n:?}"))?;
                rounds_given = true;
            }
            "--quick" => args.knobs.quick = true,
            "--no-pin" => args.knobs.pin = false,
            "--skip" => {
                let list = it.next().ok_or("--skip takes a list of systems")?;
                for name in list.split(',').filter(|s| !s.is_empty()) {
                    if !SYSTEMS.iter().any(|s| s.name == name) {
                        let known: Vec<&str> = SYSTEMS.iter().map(|s| s.name).collect();
                        return Err(format!(
                            "no system {name:?}; the systems are {}",
                            known.join(", ")
                        ));
                    }
                    args.skip.push(name.to_owned());
                }
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if args.knobs.quick && !rounds_given {
        args.rounds = 1;
    }
    Ok(args)
}

/// The machine: CPUs, model, memory, kernel and compiler (read once).
fn machine() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim())
        .to_owned();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = read("/proc/sys/kernel/osrelease").trim().to_owned();
    let mem_gib = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1_048_576.0);
    let rustc = std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!("{cpus} CPUs ({model}), {mem_gib:.0} GiB, Linux {kernel}, {rustc}")
}

/// The load average now (it changes over a run).
fn load() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!("load {}", load.join(" "))
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("aiop-compare: {e}");
            std::process::exit(2);
        }
    };
    let paths = Paths::new();
    let started = Instant::now();
    let machine = machine();
    println!("# aiop-compare on {machine}, {}", load());
    println!(
        "# {} round(s){}{}",
        args.rounds,
        if args.knobs.pin {
            ", pinned: parent CPU 0, child CPU 1 (Python unpinned but the manager anchor)"
        } else {
            ", unpinned"
        },
        if args.knobs.quick {
            ", --quick (short runs: a smoke test, not figures to quote)"
        } else {
            ""
        }
    );

    // Build everything first, so that no build runs beside a measurement.
    let mut status: BTreeMap<&str, String> = BTreeMap::new();
    let mut ready = Vec::new();
    for system in SYSTEMS {
        if args.skip.iter().any(|s| s == system.name) {
            status.insert(system.name, "skipped (--skip)".into());
            continue;
        }
        let t = Instant::now();
        match systems::build(system, &paths) {
            Ok(()) => {
                println!(
                    "# built {:<13} in {:>5.1} s: {}",
                    system.name,
                    t.elapsed().as_secs_f64(),
                    system.what
                );
                ready.push(system);
            }
            Err(e) => {
                println!("# MISSING {}: {e}", system.name);
                status.insert(system.name, format!("not available: {e}"));
            }
        }
    }
    if !ready.iter().any(|s| s.name == "aiop") && !args.skip.iter().any(|s| s == "aiop") {
        eprintln!("aiop-compare: aiop-bench did not build; nothing to compare");
        std::process::exit(1);
    }

    let out_dir = paths.out_dir();
    let _ = std::fs::create_dir_all(&out_dir);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut raw = String::new();
    let _ = writeln!(raw, "# {machine}, {}", load());
    let mut samples = table::Samples::default();
    let mut failures: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    // The longest run (the Python anchors) takes about 45 s here.
    let limit = Duration::from_secs(300);
    for round in 0..args.rounds {
        for k in 0..ready.len() {
            let system = ready[(round + k) % ready.len()];
            let t = Instant::now();
            let run = systems::run(systems::command(system, &paths, &args.knobs), limit);
            let _ = writeln!(raw, "# round {} system {}", round + 1, system.name);
            let mut records = 0;
            for line in &run.lines {
                let _ = writeln!(raw, "{line}");
                if let Some(r) = record::parse(system.format(), line) {
                    samples.add(system.name, &r);
                    records += 1;
                }
            }
            println!(
                "# round {}/{}: {:<13} {:>3} figures in {:>5.1} s{}",
                round + 1,
                args.rounds,
                system.name,
                records,
                t.elapsed().as_secs_f64(),
                run.failure
                    .as_ref()
                    .map_or(String::new(), |f| format!(" (FAILED: {f})"))
            );
            if let Some(f) = run.failure {
                failures
                    .entry(system.name)
                    .or_default()
                    .push(format!("round {}: {f}", round + 1));
            }
        }
    }
    for system in &ready {
        let note = match failures.get(system.name) {
            Some(f) => format!("ran, with failures: {}", f.join("; ")),
            None => format!("ran {} round(s)", args.rounds),
        };
        status.insert(system.name, note);
    }

    let table = table::render(catalog::ROWS, &samples, args.rounds);
    let mut report = String::new();
    let _ = writeln!(report, "Measured on {machine}, {} at the end.", load());
    let _ = writeln!(
        report,
        "Median of {} round(s); aiop's range over the rounds in parentheses. \
         ↓ lower is better, ↑ higher is better. `aiop ÷ x` is aiop's cost over x's \
         (time over time, or x's rate over aiop's): below 1, aiop is faster; \
         1/N means aiop takes an N-th of x's time.\n",
        args.rounds
    );
    report.push_str(&table);
    let _ = writeln!(report, "\nSystems:\n");
    for system in SYSTEMS {
        let _ = writeln!(
            report,
            "- {}: {} — {}",
            system.name,
            status.get(system.name).map_or("?", String::as_str),
            system.what
        );
    }
    println!();
    print!("{report}");
    let raw_path = out_dir.join(format!("raw-{stamp}.txt"));
    let table_path = out_dir.join(format!("table-{stamp}.md"));
    let _ = std::fs::write(&raw_path, raw);
    let _ = std::fs::write(&table_path, &report);
    println!(
        "\n# {:.0} s in all; raw output in {}, the table in {}",
        started.elapsed().as_secs_f64(),
        raw_path.display(),
        table_path.display()
    );
}
