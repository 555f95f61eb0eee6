#!/usr/bin/env python3
"""Anchor benchmark for aioprocessing / aiomultiprocess (Python side).

Plain asyncio + time.perf_counter; no extra deps beyond the two libraries
under test (uvloop optional via --loop uvloop).

Usage:
  python bench.py                       # all workloads, default asyncio loop
  python bench.py --loop uvloop         # same, parent loop = uvloop
  python bench.py --only queue_pingpong,pipe_pingpong
  python bench.py --summarize results.txt   # medians across repeated runs

This copy belongs to aiop's benchmark (``aiop-compare`` runs it from a
virtual environment it makes under ``target/anchor-venv``). Changes from the
pre-design anchor: ``ANCHOR_WAITERS`` sets the waiters of
``concurrent_waiters`` (default 1000; ``aiop-compare`` asks for 10000, as
aiop's ``async/waiters_10k``), which also reports ``threads_added``.

Each workload runs in its own fresh interpreter (``--one NAME``) with a hard
timeout, so a hang (several of the hazards in item 9 hang by design) cannot
take the whole suite down, and thread counts are not polluted by earlier
workloads.  Every workload prints exactly one JSON line per (sub-)measurement.
"""
import argparse
import asyncio
import json
import math
import multiprocessing as mp
import os
import platform
import statistics
import subprocess
import sys
import threading
import time

PERF = time.perf_counter
PERF_NS = time.perf_counter_ns

# ----------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------


def pct(sorted_vals, p):
    if not sorted_vals:
        return None
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


LOOP_KIND = "asyncio"


def emit(workload, **fields):
    rec = {"workload": workload, "loop": LOOP_KIND}
    rec.update(fields)
    try:
        rec["load1"] = float(open("/proc/loadavg").read().split()[0])
    except OSError:
        pass
    print(json.dumps(rec), flush=True)


def os_threads():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return -1


class ThreadSampler:
    """Samples the OS thread count of this process every `interval` s.

    The sampler thread itself is subtracted from the reported numbers.
    """

    def __init__(self, interval=0.0005):
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            n = os_threads() - 1
            if n > self.peak:
                self.peak = n
            time.sleep(self.interval)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *a):
        self._stop.set()
        self._t.join()


def run_loop(coro):
    if LOOP_KIND == "uvloop":
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


# ----------------------------------------------------------------------------
# child-process bodies (module level so they work under every start method)
# ----------------------------------------------------------------------------


def _noop():
    pass


async def _anoop():
    pass


def double(x):
    return x * 2


async def adouble(x):
    return x * 2


def child_event_pingpong(ev_a, ev_b, n):
    for _ in range(n):
        ev_a.wait()
        ev_a.clear()
        ev_b.set()


def child_queue_echo(q_in, q_out):
    while True:
        x = q_in.get()
        q_out.put(x)
        if x is None:
            break


def child_pipe_echo(conn):
    while True:
        x = conn.recv()
        conn.send(x)
        if x is None:
            break


def child_queue_producer(q, stop, payload):
    put = q.put
    is_set = stop.is_set
    while True:
        for _ in range(64):
            put(payload)
        if is_set():
            break
    put(None)


def child_put_n_after(q, start, n):
    start.wait()
    for i in range(n):
        q.put(i)


# ----------------------------------------------------------------------------
# workloads
# ----------------------------------------------------------------------------

WORKLOADS = {}


def workload(name):
    def deco(fn):
        WORKLOADS[name] = fn
        return fn

    return deco


@workload("thread_hop_baseline")
def w_thread_hop(args):
    """Reference: cost of one asyncio -> ThreadPoolExecutor -> asyncio hop."""
    from concurrent.futures import ThreadPoolExecutor

    async def main():
        loop = asyncio.get_running_loop()
        ex = ThreadPoolExecutor(max_workers=1)
        for _ in range(1000):
            await loop.run_in_executor(ex, _noop)
        lats = []
        deadline = PERF() + args.duration
        while PERF() < deadline:
            t0 = PERF_NS()
            await loop.run_in_executor(ex, _noop)
            lats.append(PERF_NS() - t0)
        ex.shutdown()
        total_s = sum(lats) / 1e9
        emit("thread_hop_baseline", variant="run_in_executor(noop)",
             ops_per_s=round(len(lats) / total_s), **lat_stats_us(lats))

    run_loop(main())


@workload("lock_uncontended")
def w_lock(args):
    import aioprocessing

    async def main():
        lock = aioprocessing.AioLock()

        async def op_async_with():
            async with lock:
                pass

        async def op_acquire_release():
            await lock.coro_acquire()
            lock.release()

        for variant, op in (("async_with", op_async_with),
                            ("coro_acquire+release", op_acquire_release)):
            for _ in range(500):
                await op()
            lats = []
            deadline = PERF() + args.duration
            while PERF() < deadline:
                t0 = PERF_NS()
                await op()
                lats.append(PERF_NS() - t0)
            total_s = sum(lats) / 1e9
            emit("lock_uncontended", variant=variant,
                 ops_per_s=round(len(lats) / total_s), **lat_stats_us(lats))

        # reference: the raw multiprocessing.Lock used synchronously
        raw = lock._obj
        n = 0
        lats = []
        deadline = PERF() + min(args.duration, 1.0)
        while PERF() < deadline:
            t0 = PERF_NS()
            raw.acquire()
            raw.release()
            lats.append(PERF_NS() - t0)
        total_s = sum(lats) / 1e9
        emit("lock_uncontended", variant="baseline_sync_mp.Lock",
             ops_per_s=round(len(lats) / total_s), **lat_stats_us(lats))

    run_loop(main())


@workload("event_pingpong")
def w_event(args):
    import aioprocessing

    N, WARM = 2000, 100

    async def main():
        a = aioprocessing.AioEvent()
        b = aioprocessing.AioEvent()
        p = mp.Process(target=child_event_pingpong, args=(a, b, N + WARM))
        p.start()
        lats = []
        for i in range(N + WARM):
            t0 = PERF_NS()
            a.set()
            await b.coro_wait()
            b.clear()
            if i >= WARM:
                lats.append(PERF_NS() - t0)
        p.join()
        emit("event_pingpong", variant="AioEvent.coro_wait (child: sync Event)",
             start_method=mp.get_start_method(),
             round_trips_per_s=round(len(lats) / (sum(lats) / 1e9)),
             **lat_stats_us(lats))

    run_loop(main())

    # reference: same ping-pong with the parent blocking synchronously
    a, b = mp.Event(), mp.Event()
    p = mp.Process(target=child_event_pingpong, args=(a, b, N + WARM))
    p.start()
    lats = []
    for i in range(N + WARM):
        t0 = PERF_NS()
        a.set()
        b.wait()
        b.clear()
        if i >= WARM:
            lats.append(PERF_NS() - t0)
    p.join()
    emit("event_pingpong", variant="baseline_sync_mp.Event",
         round_trips_per_s=round(len(lats) / (sum(lats) / 1e9)), **lat_stats_us(lats))


@workload("queue_pingpong")
def w_queue_pingpong(args):
    import aioprocessing

    N, WARM = 5000, 200

    async def main():
        q1 = aioprocessing.AioQueue()
        q2 = aioprocessing.AioQueue()
        p = mp.Process(target=child_queue_echo, args=(q1, q2))
        p.start()
        lats = []
        for i in range(N + WARM):
            t0 = PERF_NS()
            await q1.coro_put(i)
            x = await q2.coro_get()
            if i >= WARM:
                lats.append(PERF_NS() - t0)
            assert x == i
        await q1.coro_put(None)
        await q2.coro_get()
        p.join()
        emit("queue_pingpong", variant="AioQueue coro_put/coro_get, int payload",
             start_method=mp.get_start_method(),
             round_trips_per_s=round(len(lats) / (sum(lats) / 1e9)),
             **lat_stats_us(lats))

    run_loop(main())

    q1, q2 = mp.Queue(), mp.Queue()
    p = mp.Process(target=child_queue_echo, args=(q1, q2))
    p.start()
    lats = []
    for i in range(N + WARM):
        t0 = PERF_NS()
        q1.put(i)
        q2.get()
        if i >= WARM:
            lats.append(PERF_NS() - t0)
    q1.put(None)
    q2.get()
    p.join()
    emit("queue_pingpong", variant="baseline_sync_mp.Queue",
         round_trips_per_s=round(len(lats) / (sum(lats) / 1e9)), **lat_stats_us(lats))


def _throughput(args, size, maxsize, use_aio):
    import aioprocessing

    payload = b"x" * size
    if use_aio:
        q = aioprocessing.AioQueue(maxsize)
    else:
        q = mp.Queue(maxsize)
    stop = mp.Event()
    p = mp.Process(target=child_queue_producer, args=(q, stop, payload))

    async def consume_aio():
        get = q.coro_get
        first = await get()
        assert first == payload
        t0 = PERF()
        deadline = t0 + args.duration
        n = 0
        while True:
            x = await get()
            n += 1
            if (n & 63) == 0 and PERF() >= deadline:
                break
        t1 = PERF()
        stop.set()
        while await get() is not None:
            pass
        return n, t1 - t0

    def consume_sync():
        get = q.get
        first = get()
        assert first == payload
        t0 = PERF()
        deadline = t0 + args.duration
        n = 0
        while True:
            x = get()
            n += 1
            if (n & 63) == 0 and PERF() >= deadline:
                break
        t1 = PERF()
        stop.set()
        while get() is not None:
            pass
        return n, t1 - t0

    p.start()
    if use_aio:
        n, dt = run_loop(consume_aio())
    else:
        n, dt = consume_sync()
    p.join()
    variant = ("AioQueue.coro_get" if use_aio else "baseline_sync_mp.Queue.get")
    emit("queue_throughput", variant=variant, payload_bytes=size, queue_maxsize=maxsize,
         messages=n, seconds=round(dt, 3), msgs_per_s=round(n / dt),
         MB_per_s=round(n * size / dt / 1e6, 2))


@workload("queue_throughput")
def w_queue_throughput(args):
    _throughput(args, 64, 10000, True)
    _throughput(args, 64 * 1024, 256, True)
    _throughput(args, 64, 10000, False)
    _throughput(args, 64 * 1024, 256, False)


@workload("pipe_pingpong")
def w_pipe(args):
    import aioprocessing

    N, WARM = 5000, 200

    async def main():
        parent, child = aioprocessing.AioPipe()
        p = mp.Process(target=child_pipe_echo, args=(child._obj,))
        p.start()
        lats = []
        for i in range(N + WARM):
            t0 = PERF_NS()
            await parent.coro_send(i)
            x = await parent.coro_recv()
            if i >= WARM:
                lats.append(PERF_NS() - t0)
            assert x == i
        await parent.coro_send(None)
        await parent.coro_recv()
        p.join()
        emit("pipe_pingpong", variant="AioPipe coro_send/coro_recv, int payload",
             start_method=mp.get_start_method(),
             round_trips_per_s=round(len(lats) / (sum(lats) / 1e9)),
             **lat_stats_us(lats))

    run_loop(main())

    parent, child = mp.Pipe()
    p = mp.Process(target=child_pipe_echo, args=(child,))
    p.start()
    lats = []
    for i in range(N + WARM):
        t0 = PERF_NS()
        parent.send(i)
        parent.recv()
        if i >= WARM:
            lats.append(PERF_NS() - t0)
    parent.send(None)
    parent.recv()
    p.join()
    emit("pipe_pingpong", variant="baseline_sync_mp.Pipe",
         round_trips_per_s=round(len(lats) / (sum(lats) / 1e9)), **lat_stats_us(lats))


@workload("concurrent_waiters")
def w_waiters(args):
    import aioprocessing
    from concurrent.futures import ThreadPoolExecutor

    W = int(os.environ.get("ANCHOR_WAITERS", "1000"))

    async def run(variant):
        q = aioprocessing.AioQueue()
        start = mp.Event()
        p = mp.Process(target=child_put_n_after, args=(q, start, W))
        p.start()
        threads_before = os_threads()
        loop = asyncio.get_running_loop()
        with ThreadSampler() as ts:
            if variant == "aioprocessing":
                tasks = [asyncio.ensure_future(q.coro_get()) for _ in range(W)]
                ex = None
            else:  # reference: one OS thread per waiter
                ex = ThreadPoolExecutor(max_workers=W)
                tasks = [loop.run_in_executor(ex, q._obj.get) for _ in range(W)]
            await asyncio.sleep(0.2)  # let every waiter get parked
            threads_parked = os_threads() - 1
            t0 = PERF()
            start.set()
            res = await asyncio.gather(*tasks)
            t1 = PERF()
        assert sorted(res) == list(range(W))
        p.join()
        if ex:
            ex.shutdown()
        emit("concurrent_waiters", variant=variant, waiters=W,
             executor_workers=(q.pool_workers if ex is None else W),
             total_s=round(t1 - t0, 4), items_per_s=round(W / (t1 - t0)),
             threads_before=threads_before, threads_while_parked=threads_parked,
             threads_added=threads_parked - threads_before,
             peak_threads=ts.peak)

    run_loop(run("aioprocessing"))
    run_loop(run("thread_per_waiter_reference"))


@workload("pool_map")
def w_pool(args):
    import aioprocessing
    import aiomultiprocess
    from concurrent.futures import ProcessPoolExecutor

    N = 100_000
    NT = 10_000

    async def aiop():
        t0 = PERF()
        pool = aioprocessing.AioPool(2)
        await pool.coro_map(double, range(10))  # warm workers
        t1 = PERF()
        ts = PERF()
        res = await pool.coro_map(double, range(N))
        te = PERF()
        assert res[-1] == (N - 1) * 2
        # chunksize=1 (one IPC message per item) for contrast
        NS = 20_000
        ts2 = PERF()
        res2 = await pool.coro_map(double, range(NS), chunksize=1)
        te2 = PERF()
        pool.close()
        await pool.coro_join()
        emit("pool_map", variant="aioprocessing.AioPool(2).coro_map default chunksize",
             n=N, chunksize_default=(N // (2 * 4) + (1 if N % 8 else 0)),
             seconds=round(te - ts, 4), items_per_s=round(N / (te - ts)),
             pool_start_s=round(t1 - t0, 4), start_method=mp.get_start_method())
        emit("pool_map", variant="aioprocessing.AioPool(2).coro_map chunksize=1",
             n=NS, seconds=round(te2 - ts2, 4), items_per_s=round(NS / (te2 - ts2)))

    async def aiomp():
        t0 = PERF()
        async with aiomultiprocess.Pool(processes=2) as pool:
            await pool.map(adouble, range(10))  # warm workers
            t1 = PERF()
            ts = PERF()
            res = await pool.map(adouble, range(N))
            te = PERF()
        assert res[-1] == (N - 1) * 2
        emit("pool_map", variant="aiomultiprocess.Pool(processes=2).map(async f)",
             n=N, seconds=round(te - ts, 4), items_per_s=round(N / (te - ts)),
             pool_start_s=round(t1 - t0, 4),
             start_method=aiomultiprocess.core.get_context().get_start_method())

    async def ppe():
        loop = asyncio.get_running_loop()
        t0 = PERF()
        with ProcessPoolExecutor(max_workers=2) as ex:
            await asyncio.gather(*[loop.run_in_executor(ex, double, i) for i in range(10)])
            t1 = PERF()
            ts = PERF()
            res = await asyncio.gather(*[loop.run_in_executor(ex, double, i) for i in range(NT)])
            te = PERF()
        assert res[-1] == (NT - 1) * 2
        emit("pool_map", variant="ProcessPoolExecutor(2) via loop.run_in_executor, 1 task/item",
             n=NT, seconds=round(te - ts, 4), tasks_per_s=round(NT / (te - ts)),
             pool_start_s=round(t1 - t0, 4), start_method=mp.get_start_method())

    run_loop(aiop())
    run_loop(aiomp())
    run_loop(ppe())


@workload("process_spawn")
def w_spawn(args):
    import aioprocessing

    REPS = 50

    async def main():
        for method in ("fork", "spawn", "forkserver"):
            ctx = mp.get_context(method)
            # one warm-up (forkserver starts its server here)
            p = aioprocessing.AioProcess(target=_noop, context=ctx)
            p.start()
            await p.coro_join()
            lats = []
            for _ in range(REPS):
                t0 = PERF_NS()
                p = aioprocessing.AioProcess(target=_noop, context=ctx)
                p.start()
                await p.coro_join()
                lats.append(PERF_NS() - t0)
                assert p.exitcode == 0
            st = lat_stats_us(lats)
            emit("process_spawn", variant="aioprocessing.AioProcess start+coro_join",
                 start_method=method, median_ms=round(st["median_us"] / 1e3, 3),
                 p99_ms=round(st["p99_us"] / 1e3, 3), min_ms=round(st["min_us"] / 1e3, 3), n=REPS)

        import aiomultiprocess

        p = aiomultiprocess.Process(target=_anoop)  # starts the Manager once
        p.start()
        await p.join()
        lats = []
        for _ in range(20):
            t0 = PERF_NS()
            p = aiomultiprocess.Process(target=_anoop)
            p.start()
            await p.join()
            lats.append(PERF_NS() - t0)
        st = lat_stats_us(lats)
        emit("process_spawn", variant="aiomultiprocess.Process(async noop) start+join",
             start_method=aiomultiprocess.core.get_context().get_start_method(),
             median_ms=round(st["median_us"] / 1e3, 3), p99_ms=round(st["p99_us"] / 1e3, 3),
             min_ms=round(st["min_us"] / 1e3, 3), n=20)

    run_loop(main())


# --- item 9: cancellation hazards -------------------------------------------
# Each hazard runs in its own interpreter (see driver) because several of them
# leave executor threads blocked forever, which also blocks interpreter exit.


def _collect_loop_errors(loop, sink):
    def handler(loop, ctx):
        exc = ctx.get("exception")
        sink.append(f"{ctx.get('message')}: {type(exc).__name__ if exc else ''}")

    loop.set_exception_handler(handler)


@workload("cancel_lock")
def w_cancel_lock(args):
    """Holder = main thread (sync acquire). A task awaits coro_acquire, is
    cancelled, then the holder releases.  Can anyone acquire within 1 s?"""
    import aioprocessing

    async def main():
        errs = []
        _collect_loop_errors(asyncio.get_running_loop(), errs)
        lock = aioprocessing.AioLock()
        lock.acquire()  # holder (sync, main thread)
        t = asyncio.ensure_future(lock.coro_acquire())
        await asyncio.sleep(0.1)
        t.cancel()
        try:
            await t
            cancelled = False
        except asyncio.CancelledError:
            cancelled = True
        lock.release()  # holder releases
        await asyncio.sleep(0.1)
        # another acquirer: main thread, 1 s timeout
        got_main = lock._obj.acquire(timeout=1.0)
        if got_main:
            lock._obj.release()
        # and another *process*
        res = mp.Value("i", -1)
        p = mp.Process(target=_try_acquire_in_child, args=(lock._obj, res))
        p.start()
        p.join()
        names = [th.name for th in threading.enumerate()]
        emit("cancel_lock", task_cancelled=cancelled,
             another_acquire_in_parent_within_1s=bool(got_main),
             another_acquire_in_child_process_within_1s=bool(res.value == 1),
             lock_stuck=not got_main,
             threads=names, loop_exception_handler_calls=errs,
             explanation=("the executor thread running multiprocessing.Lock.acquire() "
                          "cannot be interrupted; it acquires the lock after the "
                          "holder releases, the result lands in a cancelled future "
                          "and nothing ever releases it"))
        os._exit(0)  # executor thread owns the lock; avoid atexit join games

    run_loop(main())


def _try_acquire_in_child(raw_lock, res):
    ok = raw_lock.acquire(timeout=1.0)
    res.value = 1 if ok else 0
    if ok:
        raw_lock.release()


@workload("cancel_lock_wait_for")
def w_cancel_lock_wait_for(args):
    """Same hazard through the everyday idiom asyncio.wait_for(coro_acquire(), t)."""
    import aioprocessing

    async def main():
        errs = []
        _collect_loop_errors(asyncio.get_running_loop(), errs)
        lock = aioprocessing.AioLock()
        lock.acquire()
        try:
            await asyncio.wait_for(lock.coro_acquire(), 0.2)
            timed_out = False
        except asyncio.TimeoutError:
            timed_out = True
        lock.release()
        await asyncio.sleep(0.1)
        got = lock._obj.acquire(timeout=1.0)
        emit("cancel_lock_wait_for", wait_for_timed_out=timed_out,
             another_acquire_within_1s=bool(got), lock_stuck=not got,
             loop_exception_handler_calls=errs)
        os._exit(0)

    run_loop(main())


@workload("lock_two_tasks_deadlock")
def w_lock_deadlock(args):
    """Not cancellation, but the same root cause: two tasks in one process
    contending on one AioLock via `async with`.  The holder's release() runs
    on the lock's single executor thread, which is busy blocking in the
    other task's acquire() -> event loop freezes."""
    import aioprocessing

    progress = {"released": False}

    def watchdog():
        time.sleep(3.0)
        if not progress["released"]:
            emit("lock_two_tasks_deadlock", deadlocked=True,
                 detail=("holder's lock.release() (run_in_thread on pool_workers=1 "
                         "executor) blocked behind waiter's acquire(); event loop "
                         "thread stuck for >3 s"),
                 main_thread_stack_top=_main_stack_top())
            os._exit(0)

    async def holder(lock, ready):
        async with lock:
            ready.set()
            await asyncio.sleep(0.2)
        progress["released"] = True

    async def waiter(lock, ready):
        await ready.wait()
        async with lock:
            pass

    async def main():
        lock = aioprocessing.AioLock()
        ready = asyncio.Event()
        await asyncio.gather(holder(lock, ready), waiter(lock, ready))
        emit("lock_two_tasks_deadlock", deadlocked=False)
        os._exit(0)

    threading.Thread(target=watchdog, daemon=True).start()
    run_loop(main())


def _main_stack_top():
    import traceback

    frame = sys._current_frames().get(threading.main_thread().ident)
    if frame is None:
        return None
    st = traceback.extract_stack(frame)
    return [f"{os.path.basename(f.filename)}:{f.lineno}:{f.name}" for f in st[-4:]]


@workload("cancel_queue_get")
def w_cancel_queue(args):
    import aioprocessing

    async def main():
        q = aioprocessing.AioQueue()
        # (a) cancel a pending coro_get on an empty queue
        t = asyncio.ensure_future(q.coro_get())
        await asyncio.sleep(0.1)
        t.cancel()
        try:
            await t
        except asyncio.CancelledError:
            pass
        # one item arrives from another process (a real producer)
        p = mp.Process(target=q._obj.put, args=("item-1",))
        p.start()
        p.join()
        try:
            got = await asyncio.wait_for(q.coro_get(), 1.0)
            step_a = f"got {got!r}"
        except asyncio.TimeoutError:
            step_a = "timed out after 1 s"
        await asyncio.sleep(0.1)
        qsize_a = q.qsize()
        # (b) the timed-out get of step (a) is itself an orphan now: it eats the
        # next item too.  Put item-2 and item-3, then a fresh coro_get.
        q._obj.put("item-2")
        q._obj.put("item-3")
        await asyncio.sleep(0.2)
        try:
            got_b = await asyncio.wait_for(q.coro_get(), 1.0)
            step_b = f"got {got_b!r}"
        except asyncio.TimeoutError:
            step_b = "timed out after 1 s"
        emit("cancel_queue_get", pool_workers=q.pool_workers,
             a_cancelled_get__put_item1__new_coro_get=step_a,
             a_item_lost=step_a.startswith("timed out"), a_qsize_after=qsize_a,
             b_put_item2_item3__new_coro_get=step_b,
             explanation=("the orphaned executor thread blocked in Queue.get() "
                          "receives the next item and its result is discarded with "
                          "the cancelled future; every timed-out coro_get (wait_for) "
                          "creates another such orphan"))
        os._exit(0)

    run_loop(main())


@workload("queue_same_process_starvation")
def w_queue_starve(args):
    """Not cancellation but same root cause: an AioQueue's coro_get/coro_put
    share one ThreadPoolExecutor of cpu_count() workers.  With >= cpu_count()
    consumer tasks parked in coro_get, a producer task in the same process
    cannot run coro_put."""
    import aioprocessing

    async def main():
        q = aioprocessing.AioQueue()
        consumers = [asyncio.ensure_future(q.coro_get()) for _ in range(q.pool_workers)]
        await asyncio.sleep(0.1)
        try:
            await asyncio.wait_for(q.coro_put("x"), 2.0)
            put = "completed"
        except asyncio.TimeoutError:
            put = "timed out after 2 s (all executor workers parked in get)"
        # with sync put the consumers would be served:
        q._obj.put("y")
        await asyncio.sleep(0.2)
        served = sum(1 for c in consumers if c.done())
        emit("queue_same_process_starvation", pool_workers=q.pool_workers,
             consumer_tasks=len(consumers), coro_put_from_same_process=put,
             consumers_served_after_one_sync_put=served)
        os._exit(0)

    run_loop(main())


@workload("cancel_pipe_recv")
def w_cancel_pipe(args):
    import aioprocessing

    async def main():
        a, b = aioprocessing.AioPipe()
        t = asyncio.ensure_future(a.coro_recv())
        await asyncio.sleep(0.1)
        t.cancel()
        try:
            await t
        except asyncio.CancelledError:
            pass
        b._obj.send("msg-1")
        try:
            got = await asyncio.wait_for(a.coro_recv(), 1.0)
            res = f"got {got!r}"
            lost = False
        except asyncio.TimeoutError:
            res = "timed out after 1 s"
            lost = True
        emit("cancel_pipe_recv", cancelled_recv_then_send_one_then_new_coro_recv=res,
             message_lost=lost)
        os._exit(0)

    run_loop(main())


@workload("cancel_exit_hang")
def w_exit_hang(args):
    """After cancelling a pending coro_get, does the interpreter exit normally?
    (ThreadPoolExecutor joins its workers at interpreter shutdown.)"""
    code = r"""
import asyncio, aioprocessing
async def main():
    q = aioprocessing.AioQueue()
    t = asyncio.ensure_future(q.coro_get())
    await asyncio.sleep(0.1)
    t.cancel()
    try:
        await t
    except asyncio.CancelledError:
        pass
asyncio.run(main())
print("main returned", flush=True)
"""
    t0 = PERF()
    try:
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=5)
        outcome = f"exited rc={r.returncode} in {PERF() - t0:.2f}s"
        hung = False
    except subprocess.TimeoutExpired as e:
        outcome = ("main() returned but interpreter did not exit within 5 s "
                   "(killed)") if e.stdout and b"main returned" in (
            e.stdout if isinstance(e.stdout, bytes) else e.stdout.encode()) else \
            "did not exit within 5 s (killed)"
        hung = True
    emit("cancel_exit_hang", interpreter_exit=outcome, hung=hung)


# ----------------------------------------------------------------------------
# driver
# ----------------------------------------------------------------------------

ORDER = [
    "thread_hop_baseline",
    "lock_uncontended",
    "event_pingpong",
    "queue_pingpong",
    "queue_throughput",
    "pipe_pingpong",
    "concurrent_waiters",
    "pool_map",
    "process_spawn",
    "cancel_lock",
    "cancel_lock_wait_for",
    "lock_two_tasks_deadlock",
    "cancel_queue_get",
    "queue_same_process_starvation",
    "cancel_pipe_recv",
    "cancel_exit_hang",
]


def meta():
    import importlib.metadata as md

    def ver(p):
        try:
            return md.version(p)
        except Exception:
            return None

    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "kernel": platform.release(),
        "cpu": cpu,
        "nproc": os.cpu_count(),
        "loadavg": open("/proc/loadavg").read().split()[:3],
        "aioprocessing": ver("aioprocessing"),
        "aiomultiprocess": ver("aiomultiprocess"),
        "uvloop": ver("uvloop"),
        "default_start_method": mp.get_start_method(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def drive(args):
    names = ORDER if not args.only else args.only.split(",")
    print(json.dumps({"workload": "_meta", "loop": args.loop, **meta()}), flush=True)
    for name in names:
        cmd = [sys.executable, os.path.abspath(__file__), "--one", name,
               "--loop", args.loop, "--duration", str(args.duration)]
        t0 = PERF()
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
            out = r.stdout
            for line in out.splitlines():
                if line.startswith("{"):
                    print(line, flush=True)
            if r.returncode != 0:
                print(json.dumps({"workload": name, "loop": args.loop,
                                  "error": f"rc={r.returncode}",
                                  "stderr_tail": r.stderr[-1500:]}), flush=True)
        except subprocess.TimeoutExpired as e:
            so = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            for line in so.splitlines():
                if line.startswith("{"):
                    print(line, flush=True)
            print(json.dumps({"workload": name, "loop": args.loop,
                              "error": f"timeout after {args.timeout}s"}), flush=True)
        if args.verbose:
            print(f"# {name}: {PERF() - t0:.1f}s", file=sys.stderr, flush=True)
    print(json.dumps({"workload": "_meta_end", "loadavg":
                      open("/proc/loadavg").read().split()[:3]}), flush=True)


# keys that are measurements (aggregated by median across runs)
METRIC_KEYS = ("median_us", "p99_us", "mean_us", "ops_per_s", "round_trips_per_s",
               "msgs_per_s", "MB_per_s", "items_per_s", "tasks_per_s", "total_s",
               "peak_threads", "threads_while_parked", "median_ms", "p99_ms",
               "pool_start_s", "seconds")


def summarize(path):
    groups = {}
    order = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            rec = json.loads(line)
            if rec["workload"].startswith("_meta"):
                continue
            key = (rec["workload"], rec.get("loop"), rec.get("variant"),
                   rec.get("payload_bytes"), rec.get("start_method"))
            if key not in groups:
                groups[key] = []
                order.append(key)
            groups[key].append(rec)
    for key in order:
        recs = groups[key]
        out = {"workload": key[0], "loop": key[1], "variant": key[2], "runs": len(recs)}
        if key[3] is not None:
            out["payload_bytes"] = key[3]
        if key[4] is not None:
            out["start_method"] = key[4]
        for k in METRIC_KEYS:
            vals = [r[k] for r in recs if isinstance(r.get(k), (int, float))]
            if vals:
                out[k] = statistics.median(vals)
                if len(vals) > 1:
                    out[k + "_range"] = [min(vals), max(vals)]
        if "error" in recs[0] or not any(k in out for k in METRIC_KEYS):
            # non-numeric (hazard) records: show the distinct outcomes
            skip = {"workload", "loop", "threads", "explanation", "detail"}
            outcomes = []
            for r in recs:
                o = {k: v for k, v in r.items() if k not in skip}
                if o not in outcomes:
                    outcomes.append(o)
            out["outcomes"] = outcomes
        print(json.dumps(out))


def main():
    global LOOP_KIND
    ap = argparse.ArgumentParser()
    ap.add_argument("--one", help="run a single workload in this process")
    ap.add_argument("--only", help="comma-separated workload names (driver mode)")
    ap.add_argument("--loop", default="asyncio", choices=["asyncio", "uvloop"])
    ap.add_argument("--duration", type=float, default=2.0,
                    help="seconds for time-bounded workloads")
    ap.add_argument("--timeout", type=float, default=180.0,
                    help="per-workload hard timeout (driver mode)")
    ap.add_argument("--summarize", metavar="RESULTS_FILE")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    LOOP_KIND = args.loop
    if args.summarize:
        summarize(args.summarize)
    elif args.one:
        WORKLOADS[args.one](args)
    else:
        drive(args)


if __name__ == "__main__":
    main()
