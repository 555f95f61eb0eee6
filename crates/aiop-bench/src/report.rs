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

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

impl Results {
    /// Times `op` `n` times after a warm-up and prints the median and p99 in µs.
    pub(crate) fn latency(&mut self, name: &'static str, n: usize, mut op: impl FnMut()) {
        for _ in 0..env_usize("AIOP_BENCH_WARMUP", 10) {
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

/// Pins this process to the CPU named by `AIOP_BENCH_PIN`, if set.
#[allow(unsafe_code)]
pub(crate) fn pin_from_env() {
    let Ok(cpu) = std::env::var("AIOP_BENCH_PIN") else {
        return;
    };
    let cpu: usize = cpu.parse().expect("AIOP_BENCH_PIN takes a CPU number");
    // SAFETY: `cpu_set_t` is plain data for which all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes one bit inside `set`, for a CPU index it bounds-checks.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is this process.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    assert_eq!(
        r,
        0,
        "sched_setaffinity: {}",
        std::io::Error::last_os_error()
    );
}
