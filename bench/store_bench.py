"""The store benchmark: ``python -m bench store`` (``make bench ARGS=store``).

Figures, each with the issue's target where it states one:

* in process (``EmbeddedStore`` in this process, fsync on): puts/s of 1 KiB values by
  64 concurrent writers; latency of a range over 10,000 keys and of a range with limit
  500 (the store holds 30,000 keys, some with two versions); watch delivery in events/s
  while writers commit txns of 100 puts: summed over 10 live prefix watchers (the
  target), for one live watcher (bounded by the commit rate), and for one watcher
  replaying the same events from history;
* remote, through the same client (``EtcdStore``) and the same load, side by side:
  ``kubeplane store serve`` against real etcd 3.4: puts/s, single-key gets/s, ranges
  with limit 500 per second, latency of a 10,000-key range, and compare-and-swap txns/s
  (the API server's update), with the server's CPU per operation; plus puts/s of a
  grpc.aio server that does nothing (``bench.grpc_echo``), the ceiling of any Python
  grpc.aio endpoint on the machine;
* memory: RSS of a fresh process whose ``EmbeddedStore`` holds 100,000 keys of 1 KiB
  (after writing them, and after recovering them from disk), and RSS of the
  ``kubeplane store serve`` and etcd processes holding the same keys.

Throughput figures run for a fixed duration per repetition; remote repetitions
alternate between the two servers so that a change in machine load hits both.  The
median of the repetitions is quoted.  Every server runs on loopback with a temporary
data directory and is killed at the end, also on error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable

import psutil

from kubeplane import runtime
from kubeplane.store.types import Compare, PutOp, RangeOp, prefix_end

from . import procs
from .report import Figure, Target, fmt, table

VALUE_SIZE = 1024
WRITERS = 64  # concurrent client tasks for every throughput figure
TXN_PUTS = 100  # puts per txn when loading data and in the watch figure
RANGE_KEYS = 10_000
RSS_KEYS = 100_000
MiB = 1024 * 1024

GROUPS = ("puts", "range", "watch", "remote", "rss")


def value(i: int, size: int = VALUE_SIZE) -> bytes:
    """A distinct value object of ``size`` bytes (values decoded from requests are)."""
    return b"%08d" % (i % 100_000_000) + b"v" * (size - 8)


def log(msg: str) -> None:
    print(f"[store {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


@dataclass
class Settings:
    reps: int = 3
    duration: float = 2.0  # seconds per throughput sample
    rss_keys: int = RSS_KEYS
    groups: tuple[str, ...] = GROUPS
    workdir: Path = Path(".")


@dataclass
class Results:
    figures: list[Figure] = field(default_factory=list)
    context: dict = field(default_factory=dict)

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        return figure


# --- load drivers ------------------------------------------------------------------------


async def concurrently(coros: list[Awaitable], *, timeout: float) -> None:
    """Run ``coros`` as tasks, all or nothing: the first failure, the timeout or a
    cancellation cancels the others (a TaskGroup), and no task outlives the call."""
    try:
        async with asyncio.timeout(timeout):
            async with asyncio.TaskGroup() as tg:
                for c in coros:
                    tg.create_task(c)
    except ExceptionGroup as group:  # report the first failure itself
        raise group.exceptions[0] from None


async def run_for(duration: float, tasks: int, step: Callable[[int, int], Awaitable]) -> tuple[int, float]:
    """``tasks`` concurrent loops of ``await step(task, i)`` for ``duration`` seconds.

    Returns (operations completed, seconds from start until the last one finished).
    """
    stop = asyncio.Event()
    counts = [0] * tasks

    async def loop(t: int) -> None:
        i = 0
        while not stop.is_set():
            await step(t, i)
            i += 1
        counts[t] = i

    timer = asyncio.get_running_loop().call_later(duration, stop.set)
    t0 = time.perf_counter()
    try:
        await concurrently([loop(t) for t in range(tasks)], timeout=duration + 60)
    finally:
        timer.cancel()
    return sum(counts), time.perf_counter() - t0


async def load_keys(store, prefix: bytes, n: int, *, start: int = 0) -> None:
    """Write ``prefix + %05d`` for ``start <= i < start + n`` in txns of TXN_PUTS puts."""
    sem = asyncio.Semaphore(8)

    async def batch(lo: int) -> None:
        async with sem:
            ops = [PutOp(prefix + b"%05d" % i, value(i)) for i in range(lo, min(lo + TXN_PUTS, start + n))]
            await store.txn((), ops)

    await concurrently([batch(lo) for lo in range(start, start + n, TXN_PUTS)], timeout=120)


async def load_range_data(store) -> tuple[bytes, bytes]:
    """30,000 keys: the 10,000 under ``/bench/range/a/`` are the ones read, with keys
    before and after them; every 5th read key has a second version.  Returns the
    read prefix and its range end."""
    await load_keys(store, b"/bench/range/0/", RANGE_KEYS)
    await load_keys(store, b"/bench/range/a/", RANGE_KEYS)
    await load_keys(store, b"/bench/range/b/", RANGE_KEYS)
    for lo in range(0, RANGE_KEYS, 5 * TXN_PUTS):
        ops = [PutOp(b"/bench/range/a/%05d" % i, value(i + 1)) for i in range(lo, lo + 5 * TXN_PUTS, 5)]
        await store.txn((), ops)
    return b"/bench/range/a/", prefix_end(b"/bench/range/a/")


async def timed(call: Callable[[], Awaitable], times: int) -> list[float]:
    """Latencies (ms) of ``times`` sequential calls, after one warm-up call."""
    await call()
    out = []
    for _ in range(times):
        t0 = time.perf_counter()
        await call()
        out.append((time.perf_counter() - t0) * 1000)
    return out


# --- in process ----------------------------------------------------------------------


def embedded(path: Path):
    from kubeplane.store.mvcc import EmbeddedStore

    shutil.rmtree(path, ignore_errors=True)
    return EmbeddedStore(str(path))


UPDATE_KEYS = 100  # keys per writer in the update figure


async def inproc_puts(s: Settings, rep: int, *, update: bool = False) -> float:
    """Puts/s of WRITERS concurrent writers, each awaiting its put (acknowledged once
    fsync'd) before the next.  Creates new keys, or with ``update`` rewrites
    UPDATE_KEYS existing keys per writer (created beforehand in txns)."""
    path = s.workdir / f"puts-{rep}"
    async with embedded(path) as store:
        if update:
            for t in range(WRITERS):
                await store.txn((), [PutOp(b"/bench/put/%02d/%08d" % (t, i), value(i)) for i in range(UPDATE_KEYS)])

            def step(t: int, i: int):
                return store.put(b"/bench/put/%02d/%08d" % (t, i % UPDATE_KEYS), value(i))

        else:

            def step(t: int, i: int):
                return store.put(b"/bench/put/%02d/%08d" % (t, i), value(i))

        n, seconds = await run_for(s.duration, WRITERS, step)
    shutil.rmtree(path, ignore_errors=True)
    return n / seconds


async def inproc_ranges(s: Settings) -> tuple[list[float], list[float]]:
    async with embedded(s.workdir / "ranges") as store:
        key, end = await load_range_data(store)
        full = await store.range(key, end)
        assert len(full.kvs) == RANGE_KEYS and not full.more, (len(full.kvs), full.more)
        page = await store.range(key, end, limit=500)
        assert len(page.kvs) == 500 and page.more and page.count == RANGE_KEYS
        all_keys = await store.range(b"/bench/", prefix_end(b"/bench/"), count_only=True)
        assert all_keys.count == 3 * RANGE_KEYS
        full_ms = await timed(lambda: store.range(key, end), 5 * s.reps)
        page_ms = await timed(lambda: store.range(key, end, limit=500), 50 * s.reps)
    shutil.rmtree(s.workdir / "ranges", ignore_errors=True)
    return full_ms, page_ms


async def drain_in_order(watcher, total: int) -> float:
    """Read ``total`` events from ``watcher``, checking revision order; returns the
    time (perf_counter) the last one arrived."""
    received, last_rev = 0, 0
    async for resp in watcher:
        for ev in resp.events:
            if ev.kv.mod_revision < last_rev:
                raise AssertionError("watch events out of order")
            last_rev = ev.kv.mod_revision
        received += len(resp.events)
        if received >= total:
            if received > total:
                raise AssertionError(f"{received} events, {total} written")
            return time.perf_counter()
    raise AssertionError(f"watch ended after {received} of {total} events")


async def write_txns(store, prefix: bytes, txns: int, writers: int) -> None:
    """``writers`` tasks commit ``txns`` txns of TXN_PUTS puts (1 KiB values) under prefix."""

    async def write(w: int) -> None:
        for t in range(w, txns, writers):
            base = t * TXN_PUTS
            await store.txn((), [PutOp(prefix + b"%08d" % (base + j), value(base + j)) for j in range(TXN_PUTS)])

    await concurrently([write(w) for w in range(writers)], timeout=120)


async def inproc_fanout(s: Settings, rep: int, *, watchers: int = 10, txns: int = 300, writers: int = 4) -> tuple[float, float]:
    """``watchers`` prefix watchers, each consumed by its own task, while ``writers``
    commit ``txns`` txns of TXN_PUTS puts.  Returns (events/s delivered in total over all
    watchers, puts/s committed), both from the first write to the last event received.
    Delivered events are counted per watcher, as apiserver_watch_events_total counts them."""
    total = txns * TXN_PUTS
    prefix = b"/bench/fanout/"
    async with embedded(s.workdir / f"fanout-{rep}") as store:
        ws = [await store.watch(prefix, prefix_end(prefix)) for _ in range(watchers)]
        consumers = [asyncio.create_task(drain_in_order(w, total)) for w in ws]
        t0 = time.perf_counter()
        await write_txns(store, prefix, txns, writers)
        t_written = time.perf_counter()
        ends = await asyncio.wait_for(asyncio.gather(*consumers), 60)
        for w in ws:
            await w.cancel()
    shutil.rmtree(s.workdir / f"fanout-{rep}", ignore_errors=True)
    return watchers * total / (max(ends) - t0), total / (t_written - t0)


async def inproc_watch(s: Settings, rep: int, *, txns: int = 1000, writers: int = 4) -> tuple[float, float, float]:
    """One prefix watcher while ``writers`` tasks commit ``txns`` txns of TXN_PUTS puts
    each (1 KiB values).  Returns events/s received (from the first write to the last
    event received), puts/s committed by the writers over the same start, and events/s
    delivered to a second watcher that replays the same events from history."""
    total = txns * TXN_PUTS
    prefix = b"/bench/watch/"

    async def receive(watcher, t0: float, writes: Awaitable | None = None) -> tuple[float, float]:
        consumer = asyncio.create_task(drain_in_order(watcher, total))
        try:
            t_written = t0
            if writes is not None:
                await writes
                t_written = time.perf_counter()
            t_end = await asyncio.wait_for(consumer, 60)
        finally:
            consumer.cancel()
            await watcher.cancel()
        return t_end - t0, t_written - t0

    async with embedded(s.workdir / f"watch-{rep}") as store:
        first = (await store.current_revision()) + 1
        watcher = await store.watch(prefix, prefix_end(prefix))
        t0 = time.perf_counter()
        live, written = await receive(watcher, t0, write_txns(store, prefix, txns, writers))
        watcher = await store.watch(prefix, prefix_end(prefix), start_revision=first)
        replay, _ = await receive(watcher, time.perf_counter())
    shutil.rmtree(s.workdir / f"watch-{rep}", ignore_errors=True)
    return total / live, total / written, total / replay


INPROC = "in process"


async def run_puts(s: Settings, res: Results) -> None:
    target = Target(">=", 50_000)
    create = res.add(Figure(INPROC, "put 1 KiB, 64 writers, fsync'd: new keys", "puts/s", target=target))
    update = res.add(Figure(INPROC, "put 1 KiB, 64 writers, fsync'd: updates", "puts/s", target=target))
    for rep in range(s.reps):
        create.samples.append(await inproc_puts(s, rep))
        update.samples.append(await inproc_puts(s, rep, update=True))
        log(
            f"in-process puts rep {rep + 1}/{s.reps}: {fmt(create.samples[-1])} puts/s creating keys, "
            f"{fmt(update.samples[-1])} puts/s updating them"
        )


async def run_range(s: Settings, res: Results) -> None:
    full_ms, page_ms = await inproc_ranges(s)
    res.add(Figure(INPROC, "range 10,000 keys (of 30,000)", "ms", full_ms, Target("<=", 10)))
    res.add(Figure(INPROC, "range limit 500 (of 10,000)", "ms", page_ms, Target("<=", 1)))
    log(f"in-process range: {fmt(statistics.median(full_ms))} ms; limit 500: {fmt(statistics.median(page_ms))} ms")


async def run_watch(s: Settings, res: Results) -> None:
    fanout = res.add(Figure(
        INPROC, "watch delivery, 10 watchers, live, txns of 100 puts: events delivered", "events/s",
        target=Target(">=", 200_000),
    ))
    fanout_commit: list[float] = []
    for rep in range(s.reps):
        delivered, committed = await inproc_fanout(s, rep)
        fanout.samples.append(delivered)
        fanout_commit.append(committed)
        log(f"in-process fan-out rep {rep + 1}/{s.reps}: {fmt(delivered)} events/s delivered to 10 watchers")
    fanout.note = (
        f"summed over the watchers (as apiserver_watch_events_total counts); "
        f"writers committed {fmt(statistics.median(fanout_commit))} puts/s"
    )
    live = res.add(Figure(INPROC, "watch delivery, 1 watcher, live, txns of 100 puts", "events/s"))
    commit: list[float] = []
    catch_up = res.add(Figure(INPROC, "watch delivery, 1 watcher, catching up from history", "events/s"))
    for rep in range(s.reps):
        received, committed, replayed = await inproc_watch(s, rep)
        live.samples.append(received)
        commit.append(committed)
        catch_up.samples.append(replayed)
        log(
            f"in-process watch rep {rep + 1}/{s.reps}: {fmt(received)} events/s received live "
            f"(writers committed {fmt(committed)} puts/s), {fmt(replayed)} events/s catching up"
        )
    live.note = f"bounded by the commit rate: writers committed {fmt(statistics.median(commit))} puts/s"


# --- remote: kubeplane store serve vs etcd ------------------------------------------------


@dataclass
class Remote:
    """One server and its client, with the per-figure samples measured on it."""

    label: str
    server: procs.Server
    figures: tuple[str, ...] = ("put", "get", "range500", "range10k", "txn")
    store: object = None
    samples: dict[str, list[float]] = field(default_factory=dict)
    cpu_per_op: dict[str, list[float]] = field(default_factory=dict)  # server CPU us per op
    cpu_busy: dict[str, list[float]] = field(default_factory=dict)  # server CPU seconds per second
    cas_revs: dict[bytes, int] = field(default_factory=dict)


CAS_KEYS_PER_TASK = 16


def cas_key(t: int, k: int) -> bytes:
    return b"/bench/cas/%02d/%02d" % (t, k)


async def prepare_remote(r: Remote) -> None:
    from kubeplane.store.etcd import EtcdStore

    r.store = EtcdStore([r.server.endpoint], request_timeout=30.0)
    await r.store.start()
    if r.figures == ("put",):
        return
    await load_range_data(r.store)
    ops = [PutOp(cas_key(t, k), value(k)) for t in range(WRITERS) for k in range(CAS_KEYS_PER_TASK)]
    for lo in range(0, len(ops), TXN_PUTS):
        result = await r.store.txn((), ops[lo : lo + TXN_PUTS])
        for op in ops[lo : lo + TXN_PUTS]:
            r.cas_revs[op.key] = result.revision


def remote_steps(r: Remote, rep: int) -> dict[str, Callable[[int, int], Awaitable]]:
    """The operation of each throughput figure, for task t's i-th call."""
    store = r.store
    key, end = b"/bench/range/a/", prefix_end(b"/bench/range/a/")
    rng = random.Random(rep)

    def put(t: int, i: int):
        return store.put(b"/bench/rput/%d/%02d/%08d" % (rep, t, i), value(i))

    def get(t: int, i: int):
        return store.get(key + b"%05d" % rng.randrange(RANGE_KEYS))

    def range500(t: int, i: int):
        return store.range(key, end, limit=500)

    async def cas(t: int, i: int) -> None:
        # The API server's update: write if nobody else did since we read it.
        k = cas_key(t, i % CAS_KEYS_PER_TASK)
        result = await store.txn(
            [Compare.mod_revision(k, "=", r.cas_revs[k])], [PutOp(k, value(i))], [RangeOp(k)]
        )
        if not result.succeeded:
            raise AssertionError(f"txn on {k!r} failed: it is written by this task only")
        r.cas_revs[k] = result.revision

    return {"put": put, "get": get, "range500": range500, "txn": cas}


REMOTE_FIGURES = {  # name: (figure text, unit, target on kubeplane/etcd)
    "put": ("put 1 KiB, 64 clients", "puts/s", Target(">=", 0.7, ">= 0.7x etcd")),
    "get": ("range 1 key (get), 64 clients", "ranges/s", Target(">=", 0.95, "parity (>= 0.95x)")),
    "range500": ("range limit 500, 64 clients", "ranges/s", Target(">=", 0.95, "parity (>= 0.95x)")),
    "range10k": ("range 10,000 keys, 1 client", "ms", Target("<=", 1.05, "parity (<= 1.05x)")),
    "txn": ("txn compare+put 1 KiB, 64 clients", "txns/s", None),
}


async def remote_rep(s: Settings, r: Remote, rep: int) -> None:
    steps = remote_steps(r, rep)
    client = psutil.Process()
    for name, step in steps.items():
        if name not in r.figures:
            continue
        cpu0, me0 = r.server.cpu_seconds(), client.cpu_times()
        n, seconds = await run_for(s.duration, WRITERS, step)
        cpu, me = r.server.cpu_seconds() - cpu0, client.cpu_times()
        r.samples.setdefault(name, []).append(n / seconds)
        r.cpu_per_op.setdefault(name, []).append(cpu / n * 1e6)
        r.cpu_busy.setdefault(name, []).append(cpu / seconds)
        log(
            f"{r.label} {name} rep {rep + 1}: {fmt(n / seconds)}/s, server CPU {cpu / seconds:.0%}, "
            f"client CPU {(me.user + me.system - me0.user - me0.system) / seconds:.0%}"
        )
    if "range10k" in r.figures:
        key, end = b"/bench/range/a/", prefix_end(b"/bench/range/a/")
        cpu0, t0 = r.server.cpu_seconds(), time.perf_counter()
        ms = await timed(lambda: r.store.range(key, end), 3)
        cpu, seconds = r.server.cpu_seconds() - cpu0, time.perf_counter() - t0
        r.samples.setdefault("range10k", []).append(statistics.median(ms))
        r.cpu_per_op.setdefault("range10k", []).append(cpu / (len(ms) + 1) * 1e6)  # + the warm-up call
        r.cpu_busy.setdefault("range10k", []).append(cpu / seconds)


async def run_remote(s: Settings, res: Results) -> None:
    g = "gRPC, EtcdStore client"
    remotes = [
        Remote("kubeplane", procs.kubeplane_server(s.workdir / "kp")),
        Remote("etcd", procs.etcd_server(s.workdir / "etcd")),
        Remote("grpc-echo", procs.echo_server(s.workdir / "echo"), figures=("put",)),
    ]
    try:
        for r in remotes:
            await asyncio.to_thread(r.server.start)
            await prepare_remote(r)
        # Warm up (connections, code paths) before measuring.
        for r in remotes:
            await run_for(0.3, WRITERS, remote_steps(r, -1)["put"])  # every target serves puts
        for rep in range(s.reps):
            for r in remotes if rep % 2 == 0 else reversed(remotes):
                await remote_rep(s, r, rep)
        kp, etcd, echo = remotes
        for name, (text, unit, target) in REMOTE_FIGURES.items():
            notes = {"kubeplane": "", "etcd": "", "grpc-echo": ""}
            for r in (r for r in remotes if name in r.figures):
                cpu, busy = r.cpu_per_op.get(name), r.cpu_busy.get(name)
                if cpu:
                    us = statistics.median(cpu)
                    per_op = f"{fmt(us / 1000)} ms/op" if us >= 10_000 else f"{fmt(us)} us/op"
                    notes[r.label] = f"server CPU {per_op}, {statistics.median(busy):.0%} busy"
            res.add(Figure(g, f"{text}: kubeplane", unit, kp.samples[name], note=notes["kubeplane"]))
            res.add(Figure(g, f"{text}: etcd {res.context['etcd_version']}", unit, etcd.samples[name], note=notes["etcd"]))
            # repetitions are paired (run back to back): one ratio per repetition
            ratios = [a / b for a, b in zip(kp.samples[name], etcd.samples[name])]
            res.add(Figure(g, f"{text}: kubeplane / etcd", "x", ratios, target))
            if name in echo.figures:
                res.add(Figure(
                    g, f"{text}: grpc.aio server doing nothing", unit, echo.samples[name],
                    note=f"{notes['grpc-echo']}; the ceiling of a grpc.aio endpoint (bench/grpc_echo.py)",
                ))
    finally:
        for r in remotes:
            if r.store is not None:
                await r.store.close()
            r.server.stop()


# --- memory --------------------------------------------------------------------------------


def child_rss(*args: str, timeout: float = 180) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "bench.rss_child", *args],
        capture_output=True, text=True, timeout=timeout, cwd=procs.REPO,
    )
    if out.returncode != 0:
        raise RuntimeError(f"rss_child {args[0]} failed: {out.stderr.strip()[-500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


async def server_rss(s: Settings, server: procs.Server) -> tuple[float, float]:
    """Load RSS_KEYS keys into ``server`` (one put each, 64 clients); return (RSS MiB, load s)."""
    from kubeplane.store.etcd import EtcdStore

    n = s.rss_keys
    with server:
        store = EtcdStore([server.endpoint], request_timeout=30.0)
        await store.start()
        try:
            t0 = time.perf_counter()

            async def writer(w: int) -> None:
                for i in range(w, n, WRITERS):
                    await store.put(b"/registry/bench/%08d" % i, value(i))

            await concurrently([writer(w) for w in range(WRITERS)], timeout=240)
            seconds = time.perf_counter() - t0
            count = (await store.range(b"/registry/bench/", b"/registry/bench0", count_only=True)).count
            assert count == n, (count, n)
        finally:
            await store.close()
        await asyncio.sleep(0.5)  # let the server settle (finish snapshots, free buffers)
        return server.rss() / MiB, seconds


async def run_rss(s: Settings, res: Results) -> None:
    g = "memory"
    n = s.rss_keys
    kk = f"{n // 1000}k"
    data = s.workdir / "rss-embedded"
    shutil.rmtree(data, ignore_errors=True)
    target = Target("<=", 250)
    try:
        loaded = await asyncio.to_thread(child_rss, "load", str(data), str(n), str(VALUE_SIZE), str(WRITERS))
        res.add(Figure(
            g, f"EmbeddedStore, {kk} keys of 1 KiB written: RSS", "MiB", [loaded["rss"] / MiB], target,
            note=f"process baseline {fmt(loaded['baseline_rss'] / MiB)} MiB; written in {fmt(loaded['seconds'])} s",
        ))
        reopened = await asyncio.to_thread(child_rss, "open", str(data))
        res.add(Figure(
            g, f"EmbeddedStore, {kk} keys recovered from disk: RSS", "MiB", [reopened["rss"] / MiB], target,
            note=f"recovered in {fmt(reopened['seconds'])} s",
        ))
    finally:
        shutil.rmtree(data, ignore_errors=True)
    log(f"embedded RSS: {fmt(loaded['rss'] / MiB)} MiB written, {fmt(reopened['rss'] / MiB)} MiB recovered")
    for label, server in (
        ("kubeplane store serve", procs.kubeplane_server(s.workdir / "rss-kp")),
        (f"etcd {res.context['etcd_version']}", procs.etcd_server(s.workdir / "rss-etcd")),
    ):
        rss, seconds = await server_rss(s, server)
        res.add(Figure(g, f"{label}, {kk} keys: server RSS", "MiB", [rss], note=f"written in {fmt(seconds)} s"))
        log(f"{label} RSS: {fmt(rss)} MiB")


# --- entry point ---------------------------------------------------------------------------


async def run(s: Settings) -> Results:
    # SIGTERM cancels the run like Ctrl-C does, so every ``finally`` stops its servers.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
    res = Results()
    res.context = {
        "cpus": os.cpu_count(),
        "load_before": load_average(),
        "etcd_version": procs.etcd_version(),
        "python": sys.version.split()[0],
        "reps": s.reps,
        "duration_s": s.duration,
    }
    runners = {"puts": run_puts, "range": run_range, "watch": run_watch, "remote": run_remote, "rss": run_rss}
    for group in s.groups:
        t0 = time.perf_counter()
        try:
            await runners[group](s, res)
        except Exception as exc:  # keep the other groups' figures; report the failure
            log(f"{group} failed: {exc!r}")
            res.add(Figure(group, "(group failed)", "", error=f"{type(exc).__name__}: {exc}"[:300]))
        log(f"{group} took {time.perf_counter() - t0:.0f} s; load average {load_average()}")
    res.context["load_after"] = load_average()
    return res


def profile_puts(s: Settings) -> None:
    """The in-process put figure once under cProfile (main thread only: the WAL
    write + fdatasync run in the I/O thread and show up as waiting)."""
    prof = cProfile.Profile()
    prof.enable()
    rate = runtime.run(inproc_puts(s, 0))
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out).strip_dirs().sort_stats("tottime")
    stats.print_stats(30)
    print(f"{fmt(rate)} puts/s under cProfile (slower than without it)\n{out.getvalue()}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench store", description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=3, help="repetitions per figure (default %(default)s)")
    p.add_argument("--duration", type=float, default=2.0, help="seconds per throughput sample (default %(default)s)")
    p.add_argument("--rss-keys", type=int, default=RSS_KEYS, help="keys for the memory figures (default %(default)s)")
    p.add_argument("--only", default=",".join(GROUPS), help=f"comma-separated groups among {','.join(GROUPS)}")
    p.add_argument("--quick", action="store_true", help="one short repetition, 20k keys for memory (a smoke run)")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    p.add_argument("--profile", action="store_true", help="profile the in-process puts with cProfile, then stop")
    p.add_argument("--strict", action="store_true", help="exit with 1 when a target is missed")
    args = p.parse_args(argv)
    chosen = {g.strip() for g in args.only.split(",") if g.strip()}
    if unknown := chosen - set(GROUPS):
        p.error(f"unknown groups {sorted(unknown)}")
    groups = tuple(g for g in GROUPS if g in chosen)
    s = Settings(reps=args.reps, duration=args.duration, rss_keys=args.rss_keys, groups=groups)
    if args.quick:
        s.reps, s.duration, s.rss_keys = 1, 0.5, 20_000
    with tempfile.TemporaryDirectory(prefix="kubeplane-bench-") as tmp:
        s.workdir = Path(tmp)
        try:
            if args.profile:
                profile_puts(s)
                return 0
            t0 = time.perf_counter()
            res = runtime.run(run(s))
        except (KeyboardInterrupt, asyncio.CancelledError):
            print("store benchmark interrupted; servers stopped", file=sys.stderr)
            return 130
        finally:
            procs.stop_all()
    ctx = res.context
    print(
        f"\nStore benchmark: {ctx['cpus']} CPUs, Python {ctx['python']}, {runtime.loop_name()} event loop "
        f"(KUBEPLANE_LOOP=asyncio for the default loop), etcd {ctx['etcd_version']}; "
        f"{s.reps} repetition(s), {s.duration:g} s per throughput sample; "
        f"load average before {ctx['load_before']}, after {ctx['load_after']}; "
        f"took {time.perf_counter() - t0:.0f} s.\n"
    )
    print(table(res.figures))
    missed = [f for f in res.figures if f.met is False or f.error]
    print(f"\n{len(missed)} figure(s) miss their target or failed." if missed else "\nEvery target is met.")
    if args.json:
        Path(args.json).write_text(json.dumps({"context": ctx, "figures": [f.as_dict() for f in res.figures]}, indent=2))
    if any(f.error for f in res.figures):
        return 1  # a measurement failed
    return 1 if args.strict and missed else 0
