//! Start + join of a child that does nothing, per start method.

use aiop_core::process::{Builder, StartMethod};

use crate::report::{Results, iters};

fn noop(_: ()) {}

fn spawn_join(results: &mut Results, name: &'static str, method: StartMethod) {
    let builder = Builder::new().start_method(method);
    results.latency(name, iters(200), || {
        builder
            .spawn(noop, ())
            .expect("spawn")
            .join()
            .expect("join");
    });
}

/// `spawn_join/spawn`: re-execute the benchmark binary and run `noop`.
pub(crate) fn spawn(results: &mut Results) {
    spawn_join(results, "spawn_join/spawn", StartMethod::SPAWN);
}

/// `spawn_join/forkserver`: fork from the fork server (started in the warm-up).
pub(crate) fn forkserver(results: &mut Results) {
    spawn_join(results, "spawn_join/forkserver", StartMethod::FORK_SERVER);
}

/// `spawn_join/fork`: fork this (single-threaded) benchmark process.
pub(crate) fn fork(results: &mut Results) {
    // SAFETY: the benchmark process runs no other thread and the child only
    // runs `noop`.
    #[allow(unsafe_code)]
    let method = unsafe { StartMethod::fork() };
    spawn_join(results, "spawn_join/fork", method);
}
