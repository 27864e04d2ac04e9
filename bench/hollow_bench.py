"""``python -m bench hollow``: how many hollow nodes one simulator process keeps Ready.

1. start ``kubeplane serve --hollow-nodes 0 --scheduler=false`` (the API server alone);
2. start ``kubeplane sim nodes --count N`` (``--cheap``: one shared pod watch instead of
   one per node) in its own process over HTTPS with the admin kubeconfig, and wait until
   every node is registered (progress from the simulator's /debug/stats);
3. let one lease period pass, then measure a steady-state window (``--window`` s):
   the simulator's CPU (% of one core, from psutil) and peak RSS, the API server's CPU,
   Lease renewals done vs due (N x window / 10.2 s), late (> 1 s) and failed ones, and
   the heartbeat lag p50/p99 (due time to the API server's answer, exact, from the
   simulator's /debug/stats window);
4. create P pods bound round robin to the nodes (spec.nodeName set, as after scheduling;
   ``kubeplane.io/start-seconds: 0``) over plain HTTP, 64 in flight, and report pods
   started per second: from the first create to the simulator's P-th Running status,
   with the pod start lag p99 (planned start to the answer to its status write).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .procs import REPO

console = Console()
wide = Console(width=max(console.width, 180))          # the results table, also when piped


def _start_server(base: Path) -> tuple[subprocess.Popen, int, str]:
    argv = [sys.executable, "-m", "kubeplane.cli", "serve", "--data-dir", str(base / "data"), "--secure-port", "0",
            "--http-listen", "127.0.0.1:0", "--scheduler=false", "--hollow-nodes", "0"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=open(base / "server.log", "ab"), cwd=REPO,
                            stdin=subprocess.DEVNULL)
    http_port, kubeconfig = 0, ""
    deadline = time.time() + 60
    assert proc.stdout is not None
    while time.time() < deadline:
        line = proc.stdout.readline().decode()
        if not line:
            raise RuntimeError(f"kubeplane serve exited; see {base / 'server.log'}")
        if line.startswith("kubeplane: plain HTTP"):
            http_port = int(line.split()[-1])
        elif line.startswith("export KUBECONFIG="):
            kubeconfig = line.strip().split("=", 1)[1]
            break
    return proc, http_port, kubeconfig


def _stats(url: str, reset: bool = False) -> dict:
    with urllib.request.urlopen(url + ("?reset=true" if reset else ""), timeout=10) as r:
        return json.loads(r.read())


def _start_sim(base: Path, kubeconfig: str, nodes: int, cheap: bool) -> subprocess.Popen:
    argv = [sys.executable, "-m", "kubeplane.cli", "sim", "nodes", "--kubeconfig", kubeconfig, "--count", str(nodes),
            "--metrics-bind-address", "127.0.0.1:0", "--summary-interval", "0", "--progress", "never",
            "--kubelet-address", "127.8.0.1", *(["--cheap"] if cheap else [])]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=open(base / "sim.log", "ab"), cwd=REPO,
                            stdin=subprocess.DEVNULL)
    return proc


def _wait_registered(proc: subprocess.Popen, base: Path, nodes: int) -> tuple[str, float]:
    """Follow the simulator's registration on a progress bar (it prints where its metrics
    are before it registers anything); its stats URL and the time registration took."""
    import selectors

    sel = selectors.DefaultSelector()
    assert proc.stdout is not None
    sel.register(proc.stdout, selectors.EVENT_READ)
    t0 = time.monotonic()
    url = ""
    with Progress(TextColumn("registering hollow nodes"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("nodes", total=nodes)
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the simulator exited; see {base / 'sim.log'}")
            if sel.select(1.0):
                line = proc.stdout.readline().decode()
                if line.startswith("kubeplane sim: metrics on "):
                    url = line.split()[-1].replace("/metrics", "/debug/stats")
                elif "hollow nodes registered" in line:
                    break
            if url:
                try:
                    bar.update(task, completed=_stats(url)["registered"])
                except OSError:
                    pass
            if time.monotonic() - t0 > 60 + nodes / 5:
                raise RuntimeError("registration took too long")
    sel.close()
    return url, time.monotonic() - t0


def _window(url: str, sim: psutil.Process, server: psutil.Process, seconds: float) -> dict:
    _stats(url, reset=True)
    sim.cpu_percent(None)
    server.cpu_percent(None)
    rss = sim.memory_info().rss
    t0 = time.monotonic()
    with Progress(TextColumn("steady state"), BarColumn(), TimeElapsedColumn(), console=console,
                  transient=True) as bar:
        task = bar.add_task("window", total=seconds)
        while time.monotonic() - t0 < seconds:
            time.sleep(1.0)
            rss = max(rss, sim.memory_info().rss)
            bar.update(task, completed=time.monotonic() - t0)
    elapsed = time.monotonic() - t0
    s = _stats(url)
    return {"sim_cpu_pct": sim.cpu_percent(None), "server_cpu_pct": server.cpu_percent(None),
            "sim_rss_mb": rss / 2**20, "elapsed": elapsed, **s}


async def _pods(http_port: int, nodes: int, pods: int, url: str) -> dict:
    from kubeplane.client import PODS, Client, Config

    cfg = Config(servers=[f"http://127.0.0.1:{http_port}"])
    cfg.qps, cfg.burst, cfg.max_connections_per_server = 1e6, 1_000_000, 64
    before = _stats(url, reset=True)["pods_started"]
    assert before == 0
    t0 = time.monotonic()
    created = 0
    async with Client(cfg) as c:
        sem = asyncio.Semaphore(64)

        async def one(i: int) -> None:
            nonlocal created
            async with sem:
                await c.create(PODS.path("default"), {
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": f"bench-{i}", "annotations": {"kubeplane.io/start-seconds": "0"}},
                    "spec": {"nodeName": f"hollow-node-{i % nodes}", "containers": [{"name": "c", "image": "nginx"}]}})
                created += 1

        with Progress(TextColumn("pods started"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=True) as bar:
            task = bar.add_task("pods", total=pods)
            creating = asyncio.gather(*(one(i) for i in range(pods)))
            created_at = None
            while True:
                await asyncio.sleep(0.5)
                if creating.done() and created_at is None:
                    creating.result()
                    created_at = time.monotonic() - t0
                s = _stats(url)
                bar.update(task, completed=s["pods_started"])
                if s["pods_started"] >= pods:
                    break
                if time.monotonic() - t0 > 60 + pods / 5:
                    raise RuntimeError(f"only {s['pods_started']} of {pods} pods started")
    elapsed = time.monotonic() - t0
    return {"pods": pods, "seconds": elapsed, "started_per_s": pods / elapsed,
            "created_per_s": pods / (created_at or elapsed), "start_lag": s["pod_start_lag"]}


def run_one(nodes: int, cheap: bool, window: float, pods: int, keep: bool) -> dict:
    base = Path(tempfile.mkdtemp(prefix="kubeplane-hollow-bench-"))
    server = sim = None
    try:
        server, http_port, kubeconfig = _start_server(base)
        sim = _start_sim(base, kubeconfig, nodes, cheap)
        url, reg = _wait_registered(sim, base, nodes)
        console.print(f"{nodes} nodes registered in {reg:.1f} s ({nodes / reg:.0f}/s)"
                      f"{' (cheap mode)' if cheap else ''}; waiting one lease period")
        time.sleep(12)
        w = _window(url, psutil.Process(sim.pid), psutil.Process(server.pid), window)
        p = asyncio.run(_pods(http_port, nodes, pods, url)) if pods else None
        return {"nodes": nodes, "cheap": cheap, "registration_s": reg, "window": w, "pods": p}
    finally:
        for proc in (sim, server):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
        else:
            console.print(f"kept {base}")


def _table(results: list[dict]) -> Table:
    t = Table(title="hollow nodes: one simulator process (python -m bench hollow)")
    for col in ("nodes", "watches", "register/s", "sim CPU %", "sim RSS MB", "server CPU %", "renewals done/due",
                "late", "failed", "lag p50 ms", "lag p99 ms", "pods/s started", "pod start p99 ms"):
        t.add_column(col, justify="right")
    for r in results:
        w, p = r["window"], r["pods"]
        due = r["nodes"] * w["elapsed"] / 10.2
        t.add_row(f"{r['nodes']:,}", "1 shared" if r["cheap"] else "1 per node",
                  f"{r['nodes'] / r['registration_s']:.0f}", f"{w['sim_cpu_pct']:.0f}", f"{w['sim_rss_mb']:.0f}",
                  f"{w['server_cpu_pct']:.0f}", f"{w['heartbeats']:,} / {due:,.0f}", str(w["late"]), str(w["failed"]),
                  f"{(w['lag']['p50'] or 0) * 1000:.0f}", f"{(w['lag']['p99'] or 0) * 1000:.0f}",
                  f"{p['started_per_s']:.0f}" if p else "-",
                  f"{(p['start_lag']['p99'] or 0) * 1000:.0f}" if p else "-")
    return t


def timer_costs(n: int = 5000) -> dict[str, dict[str, float]]:
    """What planning n nodes' next heartbeat costs: a sleeping task per node vs a
    `loop.call_at` handle per node (the simulator's choice), on asyncio and uvloop:
    bytes per node (tracemalloc) and CPU per wake-up."""
    import gc
    import tracemalloc

    import uvloop

    async def memory(way: str) -> float:
        loop = asyncio.get_running_loop()

        async def node(i: int) -> None:
            while True:
                await asyncio.sleep(10 + i * 0.002)

        gc.collect()
        tracemalloc.start()
        a = tracemalloc.get_traced_memory()[0]
        held = ([asyncio.ensure_future(node(i)) for i in range(n)] if way == "tasks"
                else [loop.call_at(loop.time() + 10 + i * 0.002, lambda: None) for i in range(n)])
        await asyncio.sleep(0.3)
        b = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        for h in held:
            h.cancel()
        if way == "tasks":
            await asyncio.gather(*held, return_exceptions=True)
        return (b - a) / n

    async def wake(way: str) -> float:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        count = 0

        def fired() -> None:
            nonlocal count
            count += 1
            if count == n:
                done.set_result(None)

        async def node() -> None:
            await asyncio.sleep(0.01)
            fired()

        t0 = time.process_time()
        if way == "tasks":
            held = [asyncio.ensure_future(node()) for _ in range(n)]
        else:
            held = [loop.call_later(0.01, fired) for _ in range(n)]
        await done
        del held
        return (time.process_time() - t0) / n * 1e6

    out = {}
    for name, runner in (("asyncio", asyncio.run), ("uvloop", uvloop.run)):
        for way in ("tasks", "timers"):
            out[f"{name} {way}"] = {"bytes_per_node": runner(memory(way)), "us_per_wake": runner(wake(way))}
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench hollow", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=5000, help="hollow nodes (default %(default)s)")
    ap.add_argument("--cheap", action="store_true", help="one shared pod watch instead of one per node")
    ap.add_argument("--both", action="store_true", help="run per-node watches, then the cheap mode")
    ap.add_argument("--window", type=float, default=60.0, help="steady-state seconds measured (default %(default)s)")
    ap.add_argument("--pods", type=int, default=2000, help="pods started at the end (default %(default)s; 0 = none)")
    ap.add_argument("--json", default=None, metavar="FILE", help="also write the results here")
    ap.add_argument("--keep", action="store_true", help="keep the data dir and logs")
    ap.add_argument("--timers", action="store_true",
                    help="only compare a sleeping task per node with a loop.call_at handle per node")
    args = ap.parse_args(argv)
    if args.timers:
        t = Table(title=f"planning the next heartbeat of {args.nodes:,} nodes")
        for col in ("loop, way", "bytes per node", "CPU per wake-up (us)"):
            t.add_column(col, justify="right")
        for k, v in timer_costs(args.nodes).items():
            t.add_row(k, f"{v['bytes_per_node']:.0f}", f"{v['us_per_wake']:.1f}")
        wide.print(t)
        return 0
    modes = [False, True] if args.both else [args.cheap]
    results = [run_one(args.nodes, cheap, args.window, args.pods, args.keep) for cheap in modes]
    wide.print(_table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0
