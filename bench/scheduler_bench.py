"""``python -m bench scheduler``: the scheduler at scale, end to end, on this machine.

1. start ``kubeplane serve --scheduler=false`` (the API server alone);
2. create N Nodes (mixed sizes, 10 zones; status set through /status as a kubelet does)
   and P pending pods through the API, concurrently over plain HTTP;
3. start ``kubeplane scheduler`` as its own process (HTTPS, the admin kubeconfig, its
   own client QPS limit from --qps) and measure until every pod is bound:
   - pods bound per second, end to end: from the scheduler's caches synced to the last
     binding it saw succeed (its scheduler_schedule_attempts_total{result="scheduled"});
   - decisions per second with binding excluded: decisions / the summed
     scheduler_scheduling_algorithm_duration_seconds (the loop's CPU time per decision);
   - p99 of scheduler_scheduling_attempt_duration_seconds (decide + bind) and of
     scheduler_pod_scheduling_sli_duration_seconds (queued to bound: with every pod pending
     at once, mostly time waiting in the queue), interpolated in the buckets as Prometheus'
     histogram_quantile;
   - the scheduler's peak RSS (sampled every 0.5 s), and both processes' CPU while binding.
Before that, the decision rate in process (no API): the same nodes and pods decided and
assumed in a Scheduler's cache (`--decide-only` stops there).
"""
from __future__ import annotations

import argparse
import asyncio
import math
import random
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

from .procs import REPO, free_port

console = Console()


def _start_server(base: Path) -> tuple[subprocess.Popen, int, str]:
    argv = [sys.executable, "-m", "kubeplane.cli", "serve", "--data-dir", str(base / "data"), "--secure-port", "0",
            "--http-listen", "127.0.0.1:0", "--scheduler=false", "--controller-manager=false", "--hollow-nodes", "0", "--max-requests-inflight", "800",
            "--max-mutating-requests-inflight", "400"]
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


def _node(i: int, rng: random.Random) -> tuple[dict, dict]:
    cpu, mem = rng.choice([(4, 16), (8, 32), (16, 64), (32, 128)])
    alloc = {"cpu": str(cpu), "memory": f"{mem}Gi", "pods": "110", "ephemeral-storage": "100Gi"}
    labels = {"kubernetes.io/hostname": f"node-{i}", "topology.kubernetes.io/zone": f"zone-{i % 10}"}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": f"node-{i}", "labels": labels}}, alloc


def _pod(i: int) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"pod-{i}", "labels": {"app": f"app-{i % 50}"}},
            "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9",
                                     "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}}


async def _load(http_port: int, nodes: int, pods: int, progress: Progress) -> None:
    from kubeplane.client import NODES, PODS, Client, Config

    cfg = Config(servers=[f"http://127.0.0.1:{http_port}"])
    cfg.qps, cfg.burst = 1e6, 1_000_000
    rng = random.Random(1)
    async with Client(cfg) as c:
        async def run(count: int, what: str, one) -> None:
            task = progress.add_task(what, total=count)
            it = iter(range(count))

            async def worker() -> None:
                for i in it:
                    await one(i)
                    progress.advance(task)

            await asyncio.gather(*(worker() for _ in range(48)))

        async def make_node(i: int) -> None:
            node, alloc = _node(i, rng)
            await c.create(NODES.path(), node)
            await c.patch(NODES.path(None, node["metadata"]["name"], "status"),
                          {"status": {"capacity": alloc, "allocatable": alloc,
                                      "conditions": [{"type": "Ready", "status": "True"}]}}, patch_type="merge")

        await run(nodes, "create nodes", make_node)
        await run(pods, "create pending pods", lambda i: c.create(PODS.path("default"), _pod(i)))


def _scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def _value(m: dict, name: str, **labels: str) -> float:
    return sum(v for lab, v in m.get(name, ()) if all(lab.get(k) == x for k, x in labels.items()))


def _quantile(m: dict, name: str, q: float, **labels: str) -> float:
    """histogram_quantile over the cumulative buckets (linear inside a bucket)."""
    buckets = sorted(((float(lab["le"]), v) for lab, v in m.get(name + "_bucket", ())
                      if all(lab.get(k) == x for k, x in labels.items())), key=lambda b: b[0])
    if not buckets or buckets[-1][1] == 0:
        return math.nan
    total = buckets[-1][1]
    rank = q * total
    prev_le, prev_c = 0.0, 0.0
    for le, c in buckets:
        if c >= rank:
            if math.isinf(le):
                return prev_le
            return prev_le + (le - prev_le) * ((rank - prev_c) / max(c - prev_c, 1e-9))
        prev_le, prev_c = le, c
    return prev_le


def run_once(nodes: int, pods: int, qps: float, parallel_binds: int, events: bool) -> dict:
    base = Path(tempfile.mkdtemp(prefix="kp-sched-bench-"))
    server = sched = None
    try:
        server, http_port, kubeconfig = _start_server(base)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=True) as progress:
            t0 = time.perf_counter()
            asyncio.run(_load(http_port, nodes, pods, progress))
            load_s = time.perf_counter() - t0
        console.print(f"created {nodes} nodes and {pods} pending pods in {load_s:.1f} s")
        mport = free_port()
        argv = [sys.executable, "-m", "kubeplane.cli", "scheduler", "--kubeconfig", kubeconfig,
                "--leader-elect=false", "--metrics-bind-address", f"127.0.0.1:{mport}",
                "--kube-api-qps", str(qps), "--kube-api-burst", str(int(qps)),
                "--parallel-binds", str(parallel_binds), "--scheduled-events", "true" if events else "false"]
        sched = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=open(base / "scheduler.log", "ab"), cwd=REPO,
                                 stdin=subprocess.DEVNULL)
        ps = psutil.Process(sched.pid)
        assert sched.stdout is not None
        t_start = time.perf_counter()
        synced = None
        while True:
            line = sched.stdout.readline().decode()
            if not line:
                raise RuntimeError(f"scheduler exited; see {base / 'scheduler.log'}")
            if "caches synced" in line:
                synced = time.perf_counter()
                break
        rss_peak = 0
        last_change, last_count = synced, 0.0
        server_ps = psutil.Process(server.pid)
        cpu0 = (sum(ps.cpu_times()[:2]), sum(server_ps.cpu_times()[:2]))
        with Progress(TextColumn("bind pods"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=True) as progress:
            task = progress.add_task("bind", total=pods)
            while True:
                time.sleep(0.5)
                rss_peak = max(rss_peak, ps.memory_info().rss)
                m = _scrape(mport)
                done = _value(m, "scheduler_schedule_attempts_total", result="scheduled")
                progress.update(task, completed=done)
                if done != last_count:
                    last_change, last_count = time.perf_counter(), done
                if done >= pods or time.perf_counter() - last_change > 60:
                    break
        cpu1 = (sum(ps.cpu_times()[:2]), sum(server_ps.cpu_times()[:2]))
        m = _scrape(mport)
        bound = _value(m, "scheduler_schedule_attempts_total", result="scheduled")
        # the moment of the last binding: between the last two samples; take the sample
        elapsed = last_change - synced
        decisions = _value(m, "scheduler_scheduling_algorithm_duration_seconds_count")
        decide_s = _value(m, "scheduler_scheduling_algorithm_duration_seconds_sum")
        return {
            "nodes": nodes, "pods": pods, "bound": int(bound), "startup_s": synced - t_start,
            "bind_s": elapsed, "bound_per_s": bound / elapsed if elapsed > 0 else math.nan,
            "decisions_per_s": decisions / decide_s if decide_s else math.nan,
            "attempt_p99_s": _quantile(m, "scheduler_scheduling_attempt_duration_seconds", 0.99, result="scheduled"),
            "attempt_p50_s": _quantile(m, "scheduler_scheduling_attempt_duration_seconds", 0.50, result="scheduled"),
            "algorithm_p99_s": _quantile(m, "scheduler_scheduling_algorithm_duration_seconds", 0.99),
            "e2e_p99_s": _quantile(m, "scheduler_pod_scheduling_sli_duration_seconds", 0.99),
            "rss_mb": rss_peak / 2**20, "load_s": load_s,
            "scheduler_cpu": (cpu1[0] - cpu0[0]) / elapsed, "server_cpu": (cpu1[1] - cpu0[1]) / elapsed,
            "unschedulable": int(_value(m, "scheduler_schedule_attempts_total", result="unschedulable")),
        }
    finally:
        for p in (sched, server):
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        shutil.rmtree(base, ignore_errors=True)


def decide_only(nodes: int, pods: int, repeats: int = 3) -> dict:
    """Decisions per second in process, no API at all: the same nodes and pods in a
    Scheduler's cache, each pod decided and assumed (the cycle without binding)."""
    from dataclasses import replace

    from kubeplane.scheduler.podinfo import pod_info
    from kubeplane.scheduler.scheduler import Scheduler

    rates = []
    for r in range(repeats):
        sched = Scheduler(api=None, seed=r)  # type: ignore[arg-type] - never binds here
        rng = random.Random(1)
        for i in range(nodes):
            node, alloc = _node(i, rng)
            node["status"] = {"allocatable": alloc, "capacity": alloc}
            sched.cache.set_node(node)
        infos = []
        for i in range(pods):
            p = _pod(i)
            p["metadata"]["namespace"] = "default"
            infos.append(pod_info(p))
        t0 = time.perf_counter()
        for info in infos:
            res = sched.profile.schedule(info)
            sched.cache.assume(replace(info, node_name=res.node), res.node)
        rates.append(pods / (time.perf_counter() - t0))
    rates.sort()
    return {"decide_only_per_s": rates[len(rates) // 2], "runs": rates}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench scheduler", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=5000)
    ap.add_argument("--pods", type=int, default=30000)
    ap.add_argument("--qps", type=float, default=5000.0, help="the scheduler's client QPS/burst (default %(default)s)")
    ap.add_argument("--parallel-binds", type=int, default=64)
    ap.add_argument("--events", choices=("true", "false"), default="true",
                    help="a Scheduled event per pod, as upstream (default %(default)s)")
    ap.add_argument("--runs", type=int, default=1, help="repeat and report medians (default %(default)s)")
    ap.add_argument("--decide-only", action="store_true", help="only the in-process decision rate (no server)")
    args = ap.parse_args(argv)
    d = decide_only(args.nodes, args.pods)
    console.print(f"decisions per second in process, no API ({args.nodes} nodes, {args.pods} pods, median of 3): "
                  f"{d['decide_only_per_s']:.0f}  (runs: {', '.join(f'{x:.0f}' for x in d['runs'])})")
    if args.decide_only:
        return 0
    results = []
    for i in range(args.runs):
        console.print(f"[bold]run {i + 1}/{args.runs}[/]: {args.nodes} nodes, {args.pods} pods")
        r = run_once(args.nodes, args.pods, args.qps, args.parallel_binds, args.events == "true")
        results.append(r)
        console.print(r)

    def med(k: str) -> float:
        vals = sorted(r[k] for r in results)
        return vals[len(vals) // 2]

    console.print(f"\n[bold]scheduler, {args.nodes} nodes, {args.pods} pending pods, events={args.events}, "
                  f"median of {len(results)}[/]")
    console.print(f"  pods bound per second, end to end   {med('bound_per_s'):8.0f}   (target >= 500)")
    console.print(f"  decisions per second, no binding    {med('decisions_per_s'):8.0f}   (in the running scheduler: "
                  "decisions / summed algorithm time)")
    console.print(f"  decisions per second, in process    {d['decide_only_per_s']:8.0f}   (no API at all)")
    console.print(f"  attempt p50 / p99 (decide + bind)   {med('attempt_p50_s') * 1000:8.1f} / "
                  f"{med('attempt_p99_s') * 1000:.1f} ms")
    console.print(f"  algorithm p99 (decide only)         {med('algorithm_p99_s') * 1000:8.1f} ms")
    console.print(f"  e2e p99 (queued -> bound)           {med('e2e_p99_s'):8.1f} s")
    console.print(f"  CPU while binding: scheduler / API   {med('scheduler_cpu'):8.2f} / {med('server_cpu'):.2f} cores")
    console.print(f"  CPU per bound pod: scheduler / API   {med('scheduler_cpu') / med('bound_per_s') * 1000:8.2f} / "
                  f"{med('server_cpu') / med('bound_per_s') * 1000:.2f} ms")
    console.print(f"  scheduler RSS peak                  {med('rss_mb'):8.0f} MB")
    console.print(f"  scheduler start to caches synced    {med('startup_s'):8.1f} s")
    bad = [r for r in results if r["bound"] < r["pods"]]
    if bad:
        console.print(f"[red]{len(bad)} run(s) did not bind every pod[/]")
        return 1
    return 0
