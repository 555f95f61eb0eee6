//! The table's rows: for each workload, where aiop's figure comes from, and
//! the floors, Rust peers and Python anchors set beside it.
//!
//! A source names a system, the id of a record it prints (see
//! [`record`](crate::record)), the field to read and the factor that turns it
//! into the row's unit. docs/benchmarks.md describes what each workload
//! measures on each side.

/// Which way is better for a row's figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Better {
    Lower,
    Higher,
}

/// A row's unit, for printing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    /// Microseconds per operation.
    Us,
    /// Nanoseconds per operation.
    Ns,
    /// Operations (messages, items, acquisitions) per second.
    PerSec,
    /// Gigabytes (10^9 bytes) per second.
    GBps,
    /// A count of threads.
    Threads,
}

impl Unit {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Unit::Us => "µs",
            Unit::Ns => "ns",
            Unit::PerSec => "per s",
            Unit::GBps => "GB/s",
            Unit::Threads => "threads",
        }
    }

    pub(crate) fn better(self) -> Better {
        match self {
            Unit::Us | Unit::Ns | Unit::Threads => Better::Lower,
            Unit::PerSec | Unit::GBps => Better::Higher,
        }
    }
}

/// Where one figure of a row comes from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Source {
    /// The system that prints it (a key of `systems::SYSTEMS`).
    pub(crate) system: &'static str,
    /// The record's id.
    pub(crate) id: &'static str,
    /// The record's field.
    pub(crate) field: &'static str,
    /// Multiplies the field into the row's unit.
    pub(crate) scale: f64,
    /// How the table names it.
    pub(crate) label: &'static str,
}

const fn src(
    system: &'static str,
    id: &'static str,
    field: &'static str,
    scale: f64,
    label: &'static str,
) -> Source {
    Source {
        system,
        id,
        field,
        scale,
        label,
    }
}

const fn aiop(id: &'static str, scale: f64) -> Source {
    src("aiop", id, "value", scale, "aiop")
}

/// One row of the table.
#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) workload: &'static str,
    pub(crate) unit: Unit,
    pub(crate) aiop: Source,
    /// Physical floors: the best of them is the row's floor.
    pub(crate) floors: &'static [Source],
    /// Rust peers and Python anchors: the best of them is the row's best peer.
    pub(crate) peers: &'static [Source],
}

// Floors.
const US: f64 = 1.0;
const NS_FROM_US: f64 = 1e3;
const US_FROM_MS: f64 = 1e3;
const US_FROM_S: f64 = 1e6;
const GB_FROM_MIB: f64 = 1_048_576.0 / 1e9;
const GB_FROM_MB: f64 = 1e-3;

const FUTEX_MUTEX: Source = src(
    "locks",
    "futex_mutex_spin0_uncontended_lock_unlock",
    "median_us",
    NS_FROM_US,
    "futex mutex",
);
const PINGPONG_FLOORS: &[Source] = &[
    src(
        "floor",
        "futex_pingpong_spin20000",
        "median_us",
        US,
        "futex, spinning first",
    ),
    src("floor", "busy_spin_pingpong", "median_us", US, "busy spin"),
];
const FUTEX_NOSPIN: &[Source] = &[src(
    "floor",
    "futex_pingpong_spin0",
    "median_us",
    US,
    "futex, no spinning",
)];
const SOCKET_FLOORS: &[Source] = &[
    src(
        "floor",
        "unix_socketpair_pingpong_8B",
        "median_us",
        US,
        "socketpair, 8 raw bytes",
    ),
    src(
        "floor",
        "pipe_pingpong_8B",
        "median_us",
        US,
        "pipe, 8 raw bytes",
    ),
];

// Peers and anchors shared by several rows.
const ICEORYX_EVENT: Source = src(
    "iceoryx2",
    "pubsub_[u8]8B+event_blocking_wait_pingpong",
    "median_us",
    US,
    "iceoryx2 (event wait)",
);
const IPC_CHANNEL_SYNC: Source = src(
    "ipc-channel",
    "IpcSender<u64>_sync_pingpong",
    "median_us",
    US,
    "ipc-channel",
);
const IPC_CHANNEL_ASYNC: Source = src(
    "ipc-channel",
    "IpcSender<u64>_pingpong_parent_async_IpcStream",
    "median_us",
    US,
    "ipc-channel (async IpcStream)",
);
const IPMPSC_PINGPONG: Source = src(
    "ipmpsc",
    "Sender<u64>_recv_pingpong",
    "median_us",
    US,
    "ipmpsc",
);
const MP_QUEUE_PINGPONG: Source = src(
    "python",
    "queue_pingpong|baseline_sync_mp.Queue",
    "median_us",
    US,
    "mp.Queue",
);
const QUEUE_PEERS: &[Source] = &[
    IPMPSC_PINGPONG,
    IPC_CHANNEL_SYNC,
    src(
        "iceoryx2",
        "pubsub_[u8]8B_busy_poll_pingpong",
        "median_us",
        US,
        "iceoryx2 (busy poll)",
    ),
    ICEORYX_EVENT,
    MP_QUEUE_PINGPONG,
];
/// The peers that sleep in the kernel for every message: the fair company
/// of a run with spinning off.
const QUEUE_PEERS_SLEEPING: &[Source] = &[
    IPMPSC_PINGPONG,
    IPC_CHANNEL_SYNC,
    ICEORYX_EVENT,
    MP_QUEUE_PINGPONG,
];
const SPAWN_FLOOR: &[Source] = &[src(
    "floor",
    "Command(self_noop)+wait",
    "median_us",
    US,
    "exec of itself",
)];
const FORK_FLOOR: &[Source] = &[src(
    "floor",
    "fork+_exit+waitpid",
    "median_us",
    US,
    "fork+_exit+waitpid",
)];
const APPLY_PEERS: &[Source] = &[
    src(
        "procspawn",
        "Pool(1)_spawn+join_task_roundtrip",
        "median_us",
        US,
        "procspawn Pool",
    ),
    src(
        "python-pool",
        "pool_apply|aioprocessing.AioPool(2).coro_apply, one at a time",
        "median_us",
        US,
        "AioPool.coro_apply",
    ),
    src(
        "python-pool",
        "pool_apply|aiomultiprocess.Pool(processes=2).apply(async f), one at a time",
        "median_us",
        US,
        "aiomultiprocess apply",
    ),
];
const MAP_ONE_PEERS: &[Source] = &[
    src(
        "python",
        "pool_map|aioprocessing.AioPool(2).coro_map chunksize=1",
        "items_per_s",
        1.0,
        "AioPool.coro_map chunksize=1",
    ),
    src(
        "python",
        "pool_map|aiomultiprocess.Pool(processes=2).map(async f)",
        "items_per_s",
        1.0,
        "aiomultiprocess map",
    ),
    src(
        "python",
        "pool_map|ProcessPoolExecutor(2) via loop.run_in_executor, 1 task/item",
        "tasks_per_s",
        1.0,
        "ProcessPoolExecutor",
    ),
];
const MANAGER_PEERS: &[Source] = &[src(
    "python-manager",
    "manager_dict|SyncManager().dict() d['k'], one at a time",
    "median_us",
    US,
    "SyncManager dict",
)];
const RING_64: Source = src(
    "floor",
    "shm_spsc_ring_futex_spin0@64",
    "msgs_per_s",
    1.0,
    "shm ring + futex",
);

/// Every row, in the table's order.
pub(crate) const ROWS: &[Row] = &[
    Row {
        workload: "lock: uncontended lock + unlock",
        unit: Unit::Ns,
        aiop: aiop("lock/uncontended", 1.0),
        floors: &[FUTEX_MUTEX],
        peers: &[
            src(
                "locks",
                "raw_sync_pthread_mutex_uncontended_lock_unlock",
                "median_us",
                NS_FROM_US,
                "raw_sync (pthread)",
            ),
            src(
                "locks",
                "flock_std_File_lock_uncontended_lock_unlock",
                "median_us",
                NS_FROM_US,
                "flock",
            ),
            src(
                "python",
                "lock_uncontended|baseline_sync_mp.Lock",
                "median_us",
                NS_FROM_US,
                "mp.Lock",
            ),
        ],
    },
    Row {
        workload: "lock: uncontended, async",
        unit: Unit::Ns,
        aiop: aiop("async/lock_uncontended", 1.0),
        floors: &[FUTEX_MUTEX],
        peers: &[
            src(
                "python",
                "lock_uncontended|async_with",
                "median_us",
                NS_FROM_US,
                "AioLock async with",
            ),
            src(
                "python",
                "lock_uncontended|coro_acquire+release",
                "median_us",
                NS_FROM_US,
                "AioLock.coro_acquire",
            ),
        ],
    },
    Row {
        workload: "lock: contended by 2 processes (acquisitions)",
        unit: Unit::PerSec,
        aiop: aiop("lock/contended_2proc", 1.0),
        floors: &[
            src(
                "locks",
                "futex_mutex_spin0_contended_2proc_acquisitions@0",
                "msgs_per_s",
                1.0,
                "futex mutex",
            ),
            src(
                "locks",
                "futex_mutex_spin200_contended_2proc_acquisitions@0",
                "msgs_per_s",
                1.0,
                "futex mutex, spinning",
            ),
        ],
        peers: &[
            src(
                "locks",
                "raw_sync_pthread_mutex_contended_2proc_acquisitions@0",
                "msgs_per_s",
                1.0,
                "raw_sync (pthread)",
            ),
            src(
                "locks",
                "flock_std_File_lock_contended_2proc_acquisitions@0",
                "msgs_per_s",
                1.0,
                "flock",
            ),
        ],
    },
    Row {
        workload: "event ping-pong",
        unit: Unit::Us,
        aiop: aiop("event/pingpong", 1.0),
        floors: PINGPONG_FLOORS,
        peers: &[
            ICEORYX_EVENT,
            src(
                "python",
                "event_pingpong|baseline_sync_mp.Event",
                "median_us",
                US,
                "mp.Event",
            ),
        ],
    },
    Row {
        workload: "event ping-pong, no spinning",
        unit: Unit::Us,
        aiop: aiop("event/pingpong_nospin", 1.0),
        floors: FUTEX_NOSPIN,
        peers: &[
            ICEORYX_EVENT,
            src(
                "python",
                "event_pingpong|baseline_sync_mp.Event",
                "median_us",
                US,
                "mp.Event",
            ),
        ],
    },
    Row {
        workload: "event ping-pong, async",
        unit: Unit::Us,
        aiop: aiop("async/event_pingpong", 1.0),
        floors: PINGPONG_FLOORS,
        peers: &[src(
            "python",
            "event_pingpong|AioEvent.coro_wait (child: sync Event)",
            "median_us",
            US,
            "AioEvent.coro_wait",
        )],
    },
    Row {
        workload: "queue ping-pong",
        unit: Unit::Us,
        aiop: aiop("queue/pingpong", 1.0),
        floors: PINGPONG_FLOORS,
        peers: QUEUE_PEERS,
    },
    Row {
        workload: "queue ping-pong, no spinning",
        unit: Unit::Us,
        aiop: aiop("queue/pingpong_nospin", 1.0),
        floors: FUTEX_NOSPIN,
        peers: QUEUE_PEERS_SLEEPING,
    },
    Row {
        workload: "queue ping-pong, async",
        unit: Unit::Us,
        aiop: aiop("async/queue_pingpong", 1.0),
        floors: PINGPONG_FLOORS,
        peers: &[
            IPC_CHANNEL_ASYNC,
            src(
                "python",
                "queue_pingpong|AioQueue coro_put/coro_get, int payload",
                "median_us",
                US,
                "AioQueue",
            ),
        ],
    },
    Row {
        workload: "pipe ping-pong",
        unit: Unit::Us,
        aiop: aiop("pipe/pingpong", 1.0),
        floors: SOCKET_FLOORS,
        peers: &[
            IPC_CHANNEL_SYNC,
            src(
                "python",
                "pipe_pingpong|baseline_sync_mp.Pipe",
                "median_us",
                US,
                "mp.Pipe",
            ),
        ],
    },
    Row {
        workload: "pipe ping-pong, async",
        unit: Unit::Us,
        aiop: aiop("async/pipe_pingpong", 1.0),
        floors: SOCKET_FLOORS,
        peers: &[
            src(
                "interprocess",
                "tokio_Stream_8B_pingpong_parent_async_child_sync",
                "median_us",
                US,
                "interprocess (tokio)",
            ),
            IPC_CHANNEL_ASYNC,
            src(
                "python",
                "pipe_pingpong|AioPipe coro_send/coro_recv, int payload",
                "median_us",
                US,
                "AioPipe",
            ),
        ],
    },
    Row {
        workload: "queue throughput, 64 B messages",
        unit: Unit::PerSec,
        aiop: aiop("queue/throughput_64B", 1e6),
        floors: &[
            RING_64,
            src(
                "floor",
                "unix_socketpair_stream@64",
                "msgs_per_s",
                1.0,
                "socketpair stream",
            ),
        ],
        peers: &[
            src(
                "iceoryx2",
                "pubsub_[u8]_copy_in_out_busy_poll_oneway@64",
                "msgs_per_s",
                1.0,
                "iceoryx2 (busy poll)",
            ),
            src(
                "ipmpsc",
                "send_Bytes_zero_copy_recv_copy_out_oneway@64",
                "msgs_per_s",
                1.0,
                "ipmpsc",
            ),
            src(
                "ipc-channel",
                "IpcBytesSender_oneway@64",
                "msgs_per_s",
                1.0,
                "ipc-channel bytes",
            ),
            src(
                "ipc-channel",
                "IpcSender<ByteBuf>_serde_oneway@64",
                "msgs_per_s",
                1.0,
                "ipc-channel serde",
            ),
            src(
                "interprocess",
                "tokio_Stream_oneway_async_writer@64",
                "msgs_per_s",
                1.0,
                "interprocess (tokio)",
            ),
            src(
                "python",
                "queue_throughput|baseline_sync_mp.Queue.get|64",
                "msgs_per_s",
                1.0,
                "mp.Queue",
            ),
            src(
                "python",
                "queue_throughput|AioQueue.coro_get|64",
                "msgs_per_s",
                1.0,
                "AioQueue",
            ),
        ],
    },
    Row {
        workload: "queue throughput, 64 KiB messages",
        unit: Unit::GBps,
        aiop: aiop("queue/throughput_64KiB", 1.0),
        floors: &[
            src(
                "floor",
                "shm_spsc_ring_futex_spin0@65536",
                "MiB_per_s",
                GB_FROM_MIB,
                "shm ring + futex",
            ),
            src(
                "floor",
                "unix_socketpair_stream@65536",
                "MiB_per_s",
                GB_FROM_MIB,
                "socketpair stream",
            ),
        ],
        peers: &[
            src(
                "iceoryx2",
                "pubsub_[u8]_copy_in_out_busy_poll_oneway@65536",
                "MiB_per_s",
                GB_FROM_MIB,
                "iceoryx2 (busy poll)",
            ),
            src(
                "ipmpsc",
                "send_Bytes_zero_copy_recv_copy_out_oneway@65536",
                "MiB_per_s",
                GB_FROM_MIB,
                "ipmpsc",
            ),
            src(
                "ipc-channel",
                "IpcBytesSender_oneway@65536",
                "MiB_per_s",
                GB_FROM_MIB,
                "ipc-channel bytes",
            ),
            src(
                "ipc-channel",
                "IpcSender<ByteBuf>_serde_oneway@65536",
                "MiB_per_s",
                GB_FROM_MIB,
                "ipc-channel serde",
            ),
            src(
                "interprocess",
                "tokio_Stream_oneway_async_writer@65536",
                "MiB_per_s",
                GB_FROM_MIB,
                "interprocess (tokio)",
            ),
            src(
                "python",
                "queue_throughput|baseline_sync_mp.Queue.get|65536",
                "MB_per_s",
                GB_FROM_MB,
                "mp.Queue",
            ),
            src(
                "python",
                "queue_throughput|AioQueue.coro_get|65536",
                "MB_per_s",
                GB_FROM_MB,
                "AioQueue",
            ),
        ],
    },
    Row {
        workload: "spawn + join, Spawn (re-exec)",
        unit: Unit::Us,
        aiop: aiop("spawn_join/spawn", 1.0),
        floors: SPAWN_FLOOR,
        peers: &[
            src("procspawn", "spawn+join_noop", "median_us", US, "procspawn"),
            src(
                "python",
                "process_spawn|aioprocessing.AioProcess start+coro_join|spawn",
                "median_ms",
                US_FROM_MS,
                "AioProcess spawn",
            ),
            src(
                "python",
                "process_spawn|aiomultiprocess.Process(async noop) start+join|spawn",
                "median_ms",
                US_FROM_MS,
                "aiomultiprocess Process",
            ),
        ],
    },
    Row {
        workload: "spawn + join, ForkServer",
        unit: Unit::Us,
        aiop: aiop("spawn_join/forkserver", 1.0),
        floors: FORK_FLOOR,
        peers: &[src(
            "python",
            "process_spawn|aioprocessing.AioProcess start+coro_join|forkserver",
            "median_ms",
            US_FROM_MS,
            "AioProcess forkserver",
        )],
    },
    Row {
        workload: "spawn + join, Fork",
        unit: Unit::Us,
        aiop: aiop("spawn_join/fork", 1.0),
        floors: FORK_FLOOR,
        peers: &[src(
            "python",
            "process_spawn|aioprocessing.AioProcess start+coro_join|fork",
            "median_ms",
            US_FROM_MS,
            "AioProcess fork",
        )],
    },
    Row {
        workload: "pool: apply round trip",
        unit: Unit::Us,
        aiop: aiop("pool/apply_rtt", 1.0),
        floors: PINGPONG_FLOORS,
        peers: APPLY_PEERS,
    },
    Row {
        workload: "pool: apply round trip, async",
        unit: Unit::Us,
        aiop: aiop("async/pool_apply_rtt", 1.0),
        floors: PINGPONG_FLOORS,
        peers: APPLY_PEERS,
    },
    Row {
        workload: "pool: map, one item per task (items)",
        unit: Unit::PerSec,
        aiop: aiop("pool/map_chunk1", 1e6),
        floors: &[RING_64],
        peers: MAP_ONE_PEERS,
    },
    Row {
        workload: "pool: map, one item per task, async (items)",
        unit: Unit::PerSec,
        aiop: aiop("async/pool_map_chunk1", 1e6),
        floors: &[RING_64],
        peers: MAP_ONE_PEERS,
    },
    Row {
        workload: "pool: map, automatic chunks (items)",
        unit: Unit::PerSec,
        aiop: aiop("pool/map_auto", 1e6),
        floors: &[],
        peers: &[src(
            "python",
            "pool_map|aioprocessing.AioPool(2).coro_map default chunksize",
            "items_per_s",
            1.0,
            "AioPool.coro_map",
        )],
    },
    Row {
        workload: "pool: start 2 workers to the first result",
        unit: Unit::Us,
        aiop: aiop("pool/start", 1.0),
        floors: SPAWN_FLOOR,
        peers: &[
            src(
                "python-pool",
                "pool_start|aioprocessing.AioPool(2) to first coro_apply result|fork",
                "median_us",
                US,
                "AioPool fork",
            ),
            src(
                "python-pool",
                "pool_start|aioprocessing.AioPool(2) to first coro_apply result|spawn",
                "median_us",
                US,
                "AioPool spawn",
            ),
            src(
                "python-pool",
                "pool_start|aiomultiprocess.Pool(processes=2) to first apply result|spawn",
                "median_us",
                US,
                "aiomultiprocess Pool",
            ),
        ],
    },
    Row {
        workload: "manager: dict get round trip",
        unit: Unit::Us,
        aiop: aiop("manager/dict_get", 1.0),
        floors: SOCKET_FLOORS,
        peers: MANAGER_PEERS,
    },
    Row {
        workload: "manager: dict get round trip, async",
        unit: Unit::Us,
        aiop: aiop("async/manager_dict_get", 1.0),
        floors: SOCKET_FLOORS,
        peers: MANAGER_PEERS,
    },
    Row {
        workload: "10k parked waiters: all served",
        unit: Unit::Us,
        aiop: aiop("async/waiters_10k", 1.0),
        floors: &[],
        peers: &[
            src(
                "python",
                "concurrent_waiters|aioprocessing",
                "total_s",
                US_FROM_S,
                "AioQueue.coro_get",
            ),
            src(
                "python",
                "concurrent_waiters|thread_per_waiter_reference",
                "total_s",
                US_FROM_S,
                "a thread per waiter",
            ),
        ],
    },
    Row {
        workload: "10k parked waiters: threads added",
        unit: Unit::Threads,
        aiop: aiop("async/waiters_10k_threads", 1.0),
        floors: &[],
        peers: &[
            src(
                "python",
                "concurrent_waiters|aioprocessing",
                "threads_added",
                1.0,
                "AioQueue.coro_get",
            ),
            src(
                "python",
                "concurrent_waiters|thread_per_waiter_reference",
                "threads_added",
                1.0,
                "a thread per waiter",
            ),
        ],
    },
];

/// The aiop-bench names the table needs, as prefixes for its command line.
pub(crate) fn aiop_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = ROWS.iter().map(|r| r.aiop.id).collect();
    names.sort_unstable();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Format, parse};
    use crate::systems::SYSTEMS;

    #[test]
    fn every_source_names_a_system_and_every_row_a_unique_workload() {
        for row in ROWS {
            assert_eq!(row.aiop.system, "aiop", "{}", row.workload);
            for s in row.floors.iter().chain(row.peers) {
                assert!(
                    SYSTEMS.iter().any(|system| system.name == s.system),
                    "{}: no system {:?}",
                    row.workload,
                    s.system
                );
            }
            let same = ROWS.iter().filter(|r| r.workload == row.workload).count();
            assert_eq!(same, 1, "{} is named twice", row.workload);
        }
    }

    #[test]
    fn the_manager_rows_read_aiop_bench_and_the_manager_anchor() {
        let rows: Vec<&Row> = ROWS
            .iter()
            .filter(|r| r.workload.starts_with("manager: dict get round trip"))
            .collect();
        assert_eq!(rows.len(), 2);
        // What manager_dict.py prints.
        let anchor = parse(
            Format::Python,
            r#"{"workload": "manager_dict", "loop": "none", "variant": "SyncManager().dict() d['k'], one at a time", "start_method": "fork", "pinned": true, "n": 20000, "median_us": 40.92, "p99_us": 93.03}"#,
        )
        .expect("a record");
        // What aiop-bench prints.
        let blocking = parse(
            Format::Aiop,
            r#"{"name":"manager/dict_get","unit":"us","value":51.53,"p99":228.39,"n":20000}"#,
        )
        .expect("a record");
        let awaited = parse(
            Format::Aiop,
            r#"{"name":"async/manager_dict_get","unit":"us","value":62.66,"p99":146.18,"n":20000}"#,
        )
        .expect("a record");
        for (row, aiop) in rows.iter().zip([&blocking, &awaited]) {
            assert_eq!(row.aiop.id, aiop.id);
            assert!(aiop.fields.contains_key(row.aiop.field));
            let python = row.peers.iter().find(|s| s.system == "python-manager");
            let python = python.expect("the SyncManager anchor");
            assert_eq!(python.id, anchor.id);
            assert_eq!(anchor.fields[python.field], 40.92);
        }
        assert!(aiop_names().contains(&"manager/dict_get"));
        assert!(aiop_names().contains(&"async/manager_dict_get"));
    }
}
