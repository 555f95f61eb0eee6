// Shared helpers for the peer benchmarks (included with `include!`).
// Env knobs: ITERS (ping-pong iterations, default 20000), WARMUP (default 1000),
// DUR_MS (throughput duration, default 1000), PIN=1 (pin parent->cpu0, child->cpu1).
#[allow(dead_code)]
pub mod bc {
    use std::time::{Duration, Instant};

    pub fn env_usize(k: &str, d: usize) -> usize {
        std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d)
    }
    pub fn iters() -> usize { env_usize("ITERS", 20_000) }
    pub fn warmup() -> usize { env_usize("WARMUP", 1_000) }
    pub fn dur() -> Duration { Duration::from_millis(env_usize("DUR_MS", 1000) as u64) }

    /// Pin the calling process to `cpu` if PIN=1.
    pub fn maybe_pin(cpu: usize) {
        if std::env::var("PIN").map(|v| v == "1").unwrap_or(false) {
            unsafe {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut set);
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
            }
        }
    }

    pub fn report_latency(peer: &str, case: &str, samples: &mut Vec<u64>) {
        samples.sort_unstable();
        let n = samples.len();
        let pct = |p: f64| samples[((n as f64 * p) as usize).min(n - 1)] as f64 / 1000.0;
        let mean = samples.iter().sum::<u64>() as f64 / n as f64 / 1000.0;
        println!(
            "RESULT peer={peer} case={case} kind=rtt n={n} min_us={:.3} median_us={:.3} p90_us={:.3} p99_us={:.3} p999_us={:.3} mean_us={:.3}",
            samples[0] as f64 / 1000.0, pct(0.5), pct(0.9), pct(0.99), pct(0.999), mean
        );
    }

    pub fn report_tput(peer: &str, case: &str, msg_size: usize, msgs: u64, elapsed: Duration) {
        let s = elapsed.as_secs_f64();
        let mps = msgs as f64 / s;
        let mib = mps * msg_size as f64 / (1024.0 * 1024.0);
        println!(
            "RESULT peer={peer} case={case} kind=tput msg_bytes={msg_size} msgs={msgs} secs={s:.3} msgs_per_s={mps:.0} MiB_per_s={mib:.1}"
        );
    }

    /// Ping-pong driver: `f` performs one round trip; returns per-iteration ns samples.
    pub fn pingpong<F: FnMut(u64)>(mut f: F) -> Vec<u64> {
        for i in 0..warmup() { f(i as u64); }
        let n = iters();
        let mut v = Vec::with_capacity(n);
        for i in 0..n {
            let t = Instant::now();
            f(i as u64);
            v.push(t.elapsed().as_nanos() as u64);
        }
        v
    }
}
