#!/usr/bin/env python3
"""Python anchor for aiop-bench's manager round trip.

The round trip of one call on a managed dict (aiop-bench's
``manager/dict_get`` and ``async/manager_dict_get``): a
``multiprocessing.managers.SyncManager`` started in its own process,
``d = m.dict(); d['k'] = 1``, then ``d['k']`` one at a time, each a request
to the manager's server and its reply.

Prints one JSON line, as ``bench.py`` beside it does: median and p99 in
microseconds. Needs only the standard library (``aiop-compare`` runs it
from its virtual environment anyway).

Usage: [PIN=1] manager_dict.py [--iters 20000] [--warmup 1000]
"""
import argparse
import json
import math
import multiprocessing as mp
import os
import statistics
import time
from multiprocessing.managers import SyncManager

PERF_NS = time.perf_counter_ns


def pct(sorted_vals, p):
    k = max(0, min(len(sorted_vals) - 1, math.ceil(p / 100.0 * len(sorted_vals)) - 1))
    return sorted_vals[k]


def lat_stats_us(ns_list):
    """median / p99 / mean / min / max in microseconds from ns samples."""
    s = sorted(ns_list)
    return {
        "n": len(s),
        "median_us": round(statistics.median(s) / 1e3, 2),
        "p99_us": round(pct(s, 99) / 1e3, 2),
        "mean_us": round(statistics.fmean(s) / 1e3, 2),
        "min_us": round(s[0] / 1e3, 2),
        "max_us": round(s[-1] / 1e3, 2),
    }


def emit(workload, **fields):
    rec = {"workload": workload, "loop": "none"}
    rec.update(fields)
    try:
        with open("/proc/loadavg") as f:
            rec["load1"] = float(f.read().split()[0])
    except OSError:
        pass
    print(json.dumps(rec), flush=True)


def pinned():
    """``PIN=1`` (as aiop-compare passes the peers, and as aiop-bench's
    ``AIOP_BENCH_PIN=0``): this process on CPU 0, the manager's server on
    CPU 1, so that each has a core and every hand-over crosses CPUs. Unpinned,
    the scheduler often puts both on one CPU, which changes the figure."""
    return os.environ.get("PIN") == "1" and os.cpu_count() >= 2


def server_init(cpu):
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def dict_get(n, warm):
    pin = pinned()
    if pin:
        os.sched_setaffinity(0, {0})
    m = SyncManager()
    m.start(server_init, (1 if pin else None,))
    try:
        d = m.dict()
        d["k"] = 1
        for _ in range(warm):
            assert d["k"] == 1
        lats = []
        for _ in range(n):
            t0 = PERF_NS()
            v = d["k"]
            lats.append(PERF_NS() - t0)
            assert v == 1
    finally:
        m.shutdown()
    emit("manager_dict", variant="SyncManager().dict() d['k'], one at a time",
         start_method=mp.get_start_method(), pinned=pin, **lat_stats_us(lats))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iters", type=int, default=20000,
                    help="round trips timed (default 20000, as aiop-bench's ping-pongs)")
    ap.add_argument("--warmup", type=int, default=1000)
    args = ap.parse_args()
    dict_get(args.iters, args.warmup)


if __name__ == "__main__":
    main()
