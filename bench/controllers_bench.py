"""``python -m bench controllers``: a Deployment of many replicas on hollow nodes.

1. start ``kubeplane serve --hollow-nodes N`` (API server, scheduler, controller manager
   and N simulated nodes, each its own process over loopback) and wait for N Ready nodes;
2. create one Deployment of R replicas and measure the time until it is Available with
   every replica available (status.availableReplicas == R), with a progress bar of the
   available count;
3. report the controller manager's API requests per pod during the rollout (its
   ``kubeplane_controller_manager_api_requests`` gauge: the controllers' client and the
   event recorders' client separately), and its CPU seconds and peak RSS.
Rounds repeat steps 2-3 with a fresh Deployment in a fresh namespace; medians are quoted.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
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

from .procs import REPO, free_port

console = Console()


def _call(port: int, method: str, path: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read() or b"{}")


def _cm_requests(metrics_port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("kubeplane_controller_manager_api_requests{"):
            client = line.split('client="', 1)[1].split('"', 1)[0]
            out[client] = float(line.rsplit(" ", 1)[1])
    return out


def _cm_process(server: subprocess.Popen) -> psutil.Process | None:
    for child in psutil.Process(server.pid).children(recursive=True):
        if "controller-manager" in " ".join(child.cmdline()):
            return child
    return None


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench controllers", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--replicas", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds a rollout may take")
    args = ap.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="kp-bench-ctrl-"))
    cm_port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kubeplane.cli", "serve", "--data-dir", str(base / "data"), "--secure-port", "0",
         "--http-listen", "127.0.0.1:0", "--hollow-nodes", str(args.nodes), "--scheduler-metrics-bind-address", "0",
         "--hollow-nodes-metrics-bind-address", "0", "--controller-manager-bind-address", f"127.0.0.1:{cm_port}"],
        stdout=subprocess.PIPE, stderr=open(base / "server.log", "ab"), cwd=REPO, stdin=subprocess.DEVNULL)
    try:
        port = 0
        assert proc.stdout is not None
        deadline = time.time() + 60
        while time.time() < deadline and not port:
            line = proc.stdout.readline().decode()
            if not line:
                raise RuntimeError(f"kubeplane serve exited; see {base / 'server.log'}")
            if line.startswith("kubeplane: plain HTTP"):
                port = int(line.split()[-1])
        # drain the children's lines in the background so no pipe fills up
        subprocess.Popen(["cat"], stdin=proc.stdout, stdout=subprocess.DEVNULL)
        with console.status(f"waiting for {args.nodes} Ready hollow nodes"):
            deadline = time.time() + 300
            while time.time() < deadline:
                nodes = _call(port, "GET", "/api/v1/nodes").get("items") or []
                ready = [n for n in nodes if any(c.get("type") == "Ready" and c.get("status") == "True"
                                                 for c in (n.get("status") or {}).get("conditions") or ())]
                if len(ready) >= args.nodes:
                    break
                time.sleep(1)
            else:
                raise RuntimeError("the hollow nodes did not become Ready")
            while True:
                try:
                    _cm_requests(cm_port)
                    break
                except OSError:
                    time.sleep(0.5)
        cm = _cm_process(proc)
        results = []
        for rnd in range(args.rounds):
            ns = f"bench-{rnd}"
            _call(port, "POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
            time.sleep(1.0)
            before = _cm_requests(cm_port)
            cpu0 = sum(cm.cpu_times()[:2]) if cm else 0.0
            peak = 0
            body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "big"},
                    "spec": {"replicas": args.replicas, "selector": {"matchLabels": {"app": "big"}},
                             "template": {"metadata": {"labels": {"app": "big"}},
                                          "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9"}]}}}}
            t0 = time.monotonic()
            _call(port, "POST", f"/apis/apps/v1/namespaces/{ns}/deployments", body)
            with Progress(TextColumn(f"round {rnd + 1}: available"), BarColumn(), MofNCompleteColumn(),
                          TimeElapsedColumn(), console=console) as bar:
                task = bar.add_task("available", total=args.replicas)
                while time.monotonic() - t0 < args.timeout:
                    st = _call(port, "GET", f"/apis/apps/v1/namespaces/{ns}/deployments/big").get("status") or {}
                    if cm:
                        try:
                            peak = max(peak, cm.memory_info().rss)
                        except psutil.NoSuchProcess:
                            raise RuntimeError("the controller manager exited during the rollout; see "
                                               f"{base / 'server.log'}") from None
                    bar.update(task, completed=st.get("availableReplicas") or 0)
                    avail = any(c.get("type") == "Available" and c.get("status") == "True"
                                for c in st.get("conditions") or ())
                    if avail and st.get("availableReplicas") == args.replicas:
                        break
                    time.sleep(0.25)
                else:
                    raise RuntimeError(f"not Available within {args.timeout}s")
            took = time.monotonic() - t0
            after = _cm_requests(cm_port)
            cpu = (sum(cm.cpu_times()[:2]) - cpu0) if cm else float("nan")
            results.append({"seconds": took,
                            "main_per_pod": (after.get("main", 0) - before.get("main", 0)) / args.replicas,
                            "events_per_pod": (after.get("events", 0) - before.get("events", 0)) / args.replicas,
                            "cpu": cpu, "rss_mb": peak / 2**20})
        table = Table(title=f"Deployment of {args.replicas} replicas on {args.nodes} hollow nodes "
                            f"(median of {len(results)} round(s))")
        for col in ("time to Available (s)", "controller API calls/pod", "event API calls/pod",
                    "controller-manager CPU (s)", "controller-manager peak RSS (MB)"):
            table.add_column(col, justify="right")
        med = {k: statistics.median(r[k] for r in results) for k in results[0]}
        table.add_row(f"{med['seconds']:.1f}", f"{med['main_per_pod']:.2f}", f"{med['events_per_pod']:.2f}",
                      f"{med['cpu']:.1f}", f"{med['rss_mb']:.0f}")
        console.print(table)
        return 0
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(base, ignore_errors=True)
