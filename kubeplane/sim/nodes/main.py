"""`kubeplane sim nodes`: options, progress while nodes register, the summary lines.

    kubeplane sim nodes --kubeconfig data/kubeconfig --count 1000 [--cheap]

Prints a progress bar (rich) while nodes register, then one line saying the nodes are
simulated and where their kubelets and the simulator's /metrics are, then a summary line
every `--summary-interval` seconds and at exit. Runs until SIGINT/SIGTERM.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time

from kubeplane.client import load_kubeconfig

from .metrics import bound_port, serve_metrics
from .objects import MAX_NODES, NodeShape
from .simulator import SimOptions, Simulator
from .stages import Stages

log = logging.getLogger("kubeplane.sim.nodes")


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kubeconfig", default=None,
                   help="the API server and credentials (default $KUBECONFIG, else ~/.kube/config)")
    p.add_argument("--context", default=None, help="kubeconfig context (default: its current-context)")
    p.add_argument("--count", type=_count, default=10, help="how many hollow nodes (default %(default)s)")
    p.add_argument("--name-prefix", default="hollow-node", help="nodes are PREFIX-0, PREFIX-1, ... (default %(default)s)")
    p.add_argument("--first", type=_count, default=0, help="ordinal of the first node (default %(default)s)")
    p.add_argument("--cheap", action="store_true",
                   help="one shared pod watch instead of one per node (when the API server is not under test)")
    p.add_argument("--kubelet-address", default="127.1.0.1",
                   help="loopback address of the first node's kubelet; node i gets this + i (default %(default)s)")
    p.add_argument("--kubelet-port", type=int, default=0,
                   help="the kubelet port of every node (default 0: a free one, shared)")
    p.add_argument("--metrics-bind-address", default="127.0.0.1:10255", metavar="HOST:PORT",
                   help="serve /metrics, /healthz and /debug/stats here (default %(default)s; 0 = off)")
    p.add_argument("--stages", default=None, metavar="FILE",
                   help="pod timings and outcomes (default: the package's stages.yaml; docs/sim.md)")
    p.add_argument("--node-cpu", default="32", help="CPU capacity per node (default %(default)s)")
    p.add_argument("--node-memory", default="256Gi", help="memory capacity per node (default %(default)s)")
    p.add_argument("--node-pods", type=_count, default=110, help="pod capacity per node (default %(default)s)")
    p.add_argument("--zones", type=_count, default=3, help="spread nodes over this many zones (default %(default)s)")
    p.add_argument("--kube-api-qps", type=float, default=0.0,
                   help="pod and watch client QPS (default 0: 50 + count/10); heartbeats have their own client")
    p.add_argument("--kube-api-burst", type=int, default=0, help="its burst (default 0: twice the QPS)")
    p.add_argument("--allow-real-commands", action="store_true",
                   help="let pods annotated kubeplane.io/exec-real-commands=true run real commands on this host")
    p.add_argument("--summary-interval", type=float, default=60.0,
                   help="seconds between summary lines (default %(default)s; 0 = only at exit)")
    p.add_argument("--progress", default="auto", choices=("auto", "always", "never"),
                   help="the progress bar while nodes register (default: when stdout is a terminal)")


def _count(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= v <= MAX_NODES:
        raise argparse.ArgumentTypeError(f"{v} is out of range (0..{MAX_NODES})")
    return v


def options_from(args: argparse.Namespace) -> SimOptions:
    return SimOptions(count=args.count, prefix=args.name_prefix, first=args.first, cheap=args.cheap,
                      kubelet_address=args.kubelet_address, kubelet_port=args.kubelet_port,
                      shape=NodeShape(cpu=args.node_cpu, memory=args.node_memory, pods=args.node_pods,
                                      zones=args.zones),
                      stages=Stages.load(args.stages), qps=args.kube_api_qps, burst=args.kube_api_burst,
                      allow_real_commands=args.allow_real_commands)


async def run(args: argparse.Namespace) -> int:
    opts = options_from(args)
    config = load_kubeconfig(args.kubeconfig, args.context)
    sim = Simulator(config, opts)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = None
    try:
        try:
            runner = await serve_metrics(args.metrics_bind_address, sim.metrics, sim.stats)
        except OSError as e:
            print(f"kubeplane sim: cannot serve metrics on {args.metrics_bind_address} ({e.strerror}); "
                  "going on without them", file=sys.stderr, flush=True)
        show = args.progress == "always" or (args.progress == "auto" and sys.stdout.isatty())
        t0 = time.monotonic()
        starting = asyncio.ensure_future(_start(sim, opts.count, show))
        waiter = asyncio.ensure_future(stop.wait())
        await asyncio.wait({starting, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            return 130
        waiter.cancel()
        starting.result()
        port = bound_port(runner)
        first = next(iter(sim.nodes.values()), None)
        where = (f"kubelets on {first.host}..{list(sim.nodes.values())[-1].host} port {first.port}"
                 if first else "no kubelets")
        print(f"kubeplane sim: {opts.count} hollow nodes registered in {time.monotonic() - t0:.1f}s "
              f"(simulated: no containers run; label kubeplane.io/hollow-node=true), {where}, "
              f"{'one shared pod watch' if opts.cheap else 'one pod watch per node'}"
              + (f", metrics http://127.0.0.1:{port}/metrics" if port else ""), flush=True)
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), args.summary_interval if args.summary_interval > 0 else None)
            except asyncio.TimeoutError:
                print(f"kubeplane sim: {sim.summary()}", flush=True)
        print(f"kubeplane sim: stopping: {sim.summary()}", flush=True)
        return 0
    finally:
        await sim.close()
        if runner is not None:
            await runner.cleanup()


async def _start(sim: Simulator, count: int, show: bool) -> None:
    if not show:
        await sim.start()
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("registering hollow nodes"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), transient=True) as bar:
        task = bar.add_task("nodes", total=count)
        await sim.start(lambda n: bar.update(task, completed=n))


def main(args: argparse.Namespace) -> int:
    return asyncio.run(run(args))
