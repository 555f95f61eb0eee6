//! The async queue against the blocking one and the floor, in the same run.

use aiop_async::queue::Queue;
use aiop_core::process::{Builder, StartMethod};
use futures_lite::future::block_on;

use crate::report::{Results, iters};

/// `async/queue_pingpong`: a `u64` there and back through two queues
/// between this process, awaiting `put` and `get` on
/// `futures_lite::future::block_on`, and a fork-server child using the
/// blocking API; round trip in µs.
pub(crate) fn queue_pingpong(results: &mut Results) {
    let ping = Queue::<u64>::new(0).expect("queue");
    let pong = Queue::<u64>::new(0).expect("queue");
    let n = iters(200) * 100;
    let warm = n / 20;
    let mut child = Builder::new()
        .start_method(StartMethod::FORK_SERVER)
        .spawn(
            crate::queue::pong_child,
            (
                ping.as_blocking().clone(),
                pong.as_blocking().clone(),
                (warm + n) as u64,
                true,
            ),
        )
        .expect("spawn");
    let mut i = 0u64;
    results.latency_n("async/queue_pingpong", warm, n, || {
        block_on(async {
            ping.put(i).await.expect("put");
            i = pong.get().await.expect("get");
        });
    });
    child.join().expect("join");
}
