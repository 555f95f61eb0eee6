#!/usr/bin/env python3
"""Python anchors for aiop-bench's pool round trip and pool start.

The round trip of one task through a warm two-worker pool, awaited one at a
time (aiop-bench's ``pool/apply_rtt``):

* ``aioprocessing.AioPool(2).coro_apply(inc, (x,))``
* ``aiomultiprocess.Pool(2).apply(ainc, (x,))``

and the time from creating such a pool to its first result (aiop-bench's
``pool/start``), for AioPool with the fork and spawn contexts and for
aiomultiprocess (spawn).

Prints one JSON line per measurement, as ``bench.py`` beside it
does: median and p99 in microseconds. Needs aioprocessing 2.0.1 and
aiomultiprocess 0.9.1 (``aiop-compare`` installs them into a venv).

Usage: pool_apply.py [--iters 2000] [--amp-iters 100] [--start-reps 5]
"""
import argparse
import asyncio
import json
import math
import multiprocessing as mp
import statistics
import time

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
    rec = {"workload": workload, "loop": "asyncio"}
    rec.update(fields)
    try:
        with open("/proc/loadavg") as f:
            rec["load1"] = float(f.read().split()[0])
    except OSError:
        pass
    print(json.dumps(rec), flush=True)


# Pool functions: module level, so that spawned workers find them.


def inc(x):
    return x + 1


async def ainc(x):
    return x + 1


async def aioprocessing_rtt(n, warm):
    import aioprocessing

    pool = aioprocessing.AioPool(2)
    for i in range(warm):
        assert await pool.coro_apply(inc, (i,)) == i + 1
    lats = []
    for i in range(n):
        t0 = PERF_NS()
        r = await pool.coro_apply(inc, (i,))
        lats.append(PERF_NS() - t0)
        assert r == i + 1
    pool.close()
    await pool.coro_join()
    emit("pool_apply", variant="aioprocessing.AioPool(2).coro_apply, one at a time",
         start_method=mp.get_start_method(), **lat_stats_us(lats))


async def aiomultiprocess_rtt(n, warm):
    import aiomultiprocess

    async with aiomultiprocess.Pool(processes=2) as pool:
        for i in range(warm):
            assert await pool.apply(ainc, (i,)) == i + 1
        lats = []
        for i in range(n):
            t0 = PERF_NS()
            r = await pool.apply(ainc, (i,))
            lats.append(PERF_NS() - t0)
            assert r == i + 1
    emit("pool_apply", variant="aiomultiprocess.Pool(processes=2).apply(async f), one at a time",
         start_method=aiomultiprocess.core.get_context().get_start_method(),
         **lat_stats_us(lats))


async def aioprocessing_start(reps, method):
    import aioprocessing

    ctx = mp.get_context(method)
    lats = []
    for _ in range(reps + 1):  # the first one warms the page cache (and a fork server)
        t0 = PERF_NS()
        pool = aioprocessing.AioPool(2, context=ctx)
        assert await pool.coro_apply(inc, (1,)) == 2
        lats.append(PERF_NS() - t0)
        pool.terminate()
        pool.join()
    emit("pool_start", variant="aioprocessing.AioPool(2) to first coro_apply result",
         start_method=method, **lat_stats_us(lats[1:]))


async def aiomultiprocess_start(reps):
    import aiomultiprocess

    lats = []
    for _ in range(reps + 1):
        t0 = PERF_NS()
        pool = aiomultiprocess.Pool(processes=2)
        assert await pool.apply(ainc, (1,)) == 2
        lats.append(PERF_NS() - t0)
        pool.terminate()
        await pool.join()
    emit("pool_start", variant="aiomultiprocess.Pool(processes=2) to first apply result",
         start_method=aiomultiprocess.core.get_context().get_start_method(),
         **lat_stats_us(lats[1:]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iters", type=int, default=2000,
                    help="AioPool round trips timed (default 2000)")
    ap.add_argument("--amp-iters", type=int, default=100,
                    help="aiomultiprocess round trips timed (default 100; each takes ~10 ms)")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--start-reps", type=int, default=5,
                    help="pool starts timed per variant (0: none)")
    args = ap.parse_args()
    asyncio.run(aioprocessing_rtt(args.iters, args.warmup))
    asyncio.run(aiomultiprocess_rtt(args.amp_iters, min(args.warmup, 5)))
    if args.start_reps > 0:
        asyncio.run(aioprocessing_start(args.start_reps, "fork"))
        asyncio.run(aioprocessing_start(args.start_reps, "spawn"))
        asyncio.run(aiomultiprocess_start(args.start_reps))


if __name__ == "__main__":
    main()
