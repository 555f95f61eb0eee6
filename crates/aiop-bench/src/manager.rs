//! Managers: the round trip of one call on a served object, a dict's `get`
//! of a key it holds, blocking and awaited.
//!
//! A manager's server runs in a process of its own (`Manager::start`, the
//! default Spawn start method) and this process calls it over a Unix socket
//! in the abstract namespace: each `get` is a request out and a reply back,
//! as a `pipe/pingpong` round trip is a message each way, plus the encoding
//! of the call, the server's dispatch to the object (a thread per client,
//! the dict behind a mutex) and the reply's match to its caller. Hence the
//! ratio of `manager/dict_get` to `pipe/pingpong`, measured in the same run.

use aiop_async::manager::{DictProxy, Manager};
use futures_lite::future::block_on;

use crate::report::{Results, iters, pin_child, pin_from_env};

/// A manager of the default kind, its server placed as the child of a
/// two-process benchmark: with `AIOP_BENCH_PIN` set, this process moves to
/// the next CPU while the server process starts there (Spawn re-executes
/// from this process, so the server inherits its CPU, and so do the
/// server's threads), then comes back to its own.
fn start_manager() -> Manager {
    pin_child();
    let manager = Manager::start();
    pin_from_env();
    manager.expect("starting the manager")
}

/// A served `{"k": 1}`, as the Python anchor's `d = m.dict(); d['k'] = 1`.
fn dict_k1(manager: &Manager) -> (DictProxy<String, u64>, String) {
    let d = manager.dict_blocking::<String, u64>().expect("dict");
    let key = "k".to_string();
    d.insert_blocking(&key, &1).expect("insert");
    (d, key)
}

/// Round trips per run: as many as a ping-pong's.
fn rounds() -> usize {
    iters(200) * 100
}

/// `manager/dict_get`: `DictProxy::get_blocking` of a key the dict holds,
/// one at a time, the server in a process of its own; round trip in µs.
/// Both sides spin before they sleep (the benchmark's setting, which the
/// server process takes along).
pub(crate) fn dict_get(results: &mut Results) {
    dict_gets(results, "manager/dict_get");
}

/// `manager/dict_get_nospin`: the same with spinning turned off in both
/// processes (`aiop::sync::set_spinning(false)`): every message wakes a
/// sleeping thread, as in Python's manager.
pub(crate) fn dict_get_nospin(results: &mut Results) {
    aiop_core::sync::set_spinning(false);
    dict_gets(results, "manager/dict_get_nospin");
    aiop_core::sync::set_spinning(true);
}

fn dict_gets(results: &mut Results, name: &'static str) {
    let manager = start_manager();
    let (d, key) = dict_k1(&manager);
    let n = rounds();
    results.latency_n(name, n / 20, n, || {
        let v = d.get_blocking(&key).expect("get");
        debug_assert_eq!(v, Some(1));
        std::hint::black_box(v);
    });
    drop(d);
    manager.shutdown_blocking().expect("shutdown");
}

/// `async/manager_dict_get`: the same with `get(&key).await` on
/// `futures_lite::future::block_on`; round trip in µs.
pub(crate) fn async_dict_get(results: &mut Results) {
    let manager = start_manager();
    let (d, key) = dict_k1(&manager);
    let n = rounds();
    results.latency_n("async/manager_dict_get", n / 20, n, || {
        let v = block_on(d.get(&key)).expect("get");
        debug_assert_eq!(v, Some(1));
        std::hint::black_box(v);
    });
    drop(d);
    manager.shutdown_blocking().expect("shutdown");
}
