//! Samples to medians and percentiles, printed as JSON lines.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The results of this run, kept for the same-run ratios.
#[derive(Debug, Default)]
pub(crate) struct Results {
    medians: HashMap<&'static str, f64>,
}

/// Samples per latency benchmark (`AIOP_BENCH_ITERS`, default `default`).
pub(crate) fn iters(default: usize) -> usize {
    env_usize("AIOP_BENCH_ITERS", default)
}

pub(crate) fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

impl Results {
    /// Times `op` `n` times after a warm-up and prints the median and p99 in µs.
    pub(crate) fn latency(&mut self, name: &'static str, n: usize, op: impl FnMut()) {
        self.latency_n(name, env_usize("AIOP_BENCH_WARMUP", 10), n, op);
    }

    /// [`latency`](Self::latency) with an explicit number of warm-up calls.
    pub(crate) fn latency_n(
        &mut self,
        name: &'static str,
        warmup: usize,
        n: usize,
        mut op: impl FnMut(),
    ) {
        for _ in 0..warmup {
            op();
        }
        let mut samples: Vec<Duration> = (0..n)
            .map(|_| {
                let t = Instant::now();
                op();
                t.elapsed()
            })
            .collect();
        samples.sort_unstable();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let median = us(samples[samples.len() / 2]);
        let p99 = us(samples[(samples.len() * 99 / 100).min(samples.len() - 1)]);
        self.medians.insert(name, median);
        println!(
            "{{\"name\":\"{name}\",\"unit\":\"us\",\"value\":{median:.2},\"p99\":{p99:.2},\"n\":{}}}",
            samples.len()
        );
    }

    /// Prints a figure measured some other way (a rate, a per-call cost).
    pub(crate) fn value(&mut self, name: &'static str, unit: &str, value: f64, p99: Option<f64>) {
        self.medians.insert(name, value);
        match p99 {
            Some(p) => println!(
                "{{\"name\":\"{name}\",\"unit\":\"{unit}\",\"value\":{value:.2},\"p99\":{p:.2}}}"
            ),
            None => println!("{{\"name\":\"{name}\",\"unit\":\"{unit}\",\"value\":{value:.2}}}"),
        }
    }

    /// Prints `num / den` of two medians measured in this run, if both ran.
    pub(crate) fn ratio(&self, name: &str, num: &str, den: &str) {
        if let (Some(a), Some(b)) = (self.medians.get(num), self.medians.get(den)) {
            println!(
                "{{\"name\":\"{name}\",\"unit\":\"x\",\"value\":{:.3}}}",
                a / b
            );
        }
    }
}

/// In the child of a two-process benchmark: pins it to the CPU after the
/// parent's when `AIOP_BENCH_PIN` is set (as the anchors' `PIN=1` puts the
/// parent on CPU 0 and the child on CPU 1), so that each has a core.
pub(crate) fn pin_child() {
    if let Some(cpu) = pin_env() {
        set_affinity(&[(cpu + 1) % online_cpus()]);
    }
}

/// Pins this process to the CPU named by `AIOP_BENCH_PIN`, if set.
pub(crate) fn pin_from_env() {
    if let Some(cpu) = pin_env() {
        set_affinity(&[cpu]);
    }
}

/// In a worker of a pool of several processes: undoes the pinning it
/// inherited from the benchmark (`AIOP_BENCH_PIN`), so that the workers
/// spread over the machine's CPUs as the scheduler places them instead of
/// sharing the parent's one.
pub(crate) fn unpin_inherited() {
    if pin_env().is_some() {
        let all: Vec<usize> = (0..online_cpus()).collect();
        set_affinity(&all);
    }
}

fn pin_env() -> Option<usize> {
    let cpu = std::env::var("AIOP_BENCH_PIN").ok()?;
    Some(cpu.parse().expect("AIOP_BENCH_PIN takes a CPU number"))
}

/// The machine's CPUs (not this possibly pinned process's).
#[allow(unsafe_code)]
fn online_cpus() -> usize {
    // SAFETY: sysconf only reads a system setting.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    (online.max(1) as usize).min(libc::CPU_SETSIZE as usize)
}

/// Restricts this process to `cpus` (each below `online_cpus()`).
#[allow(unsafe_code)]
fn set_affinity(cpus: &[usize]) {
    // SAFETY: `cpu_set_t` is plain data for which all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        // SAFETY: CPU_SET writes one bit inside `set`, for a CPU index it bounds-checks.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is this process.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    assert_eq!(
        r,
        0,
        "sched_setaffinity: {}",
        std::io::Error::last_os_error()
    );
}
