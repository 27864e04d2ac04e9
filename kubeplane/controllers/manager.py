"""`kubeplane controller-manager`: the controllers against any Kubernetes API server.

Wiring (kubeplane.client only): one Client (kube-controller-manager's QPS/burst 20/30 by
default), a second one for events and a third for leader election, one SharedInformerFactory for every controller,
leader election on the Lease kube-system/kube-controller-manager (`--leader-elect`,
default true as upstream: of two instances one runs the controllers, the other waits;
a leader that loses its lease exits, as upstream, and its supervisor restarts it), and
/metrics and /healthz on `--bind-address` (127.0.0.1:10257).

`--controllers` follows upstream: a comma-separated list where `*` means every
controller that is on by default, `name` turns one on and `-name` turns one off.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from dataclasses import dataclass, field
from typing import Any

from ..client import ApiError, Client, LeaderElector, SharedInformerFactory, load_kubeconfig, strip_managed_fields
from .base import Context, Controller
from .cronjob import CronJobController
from .deployment import DeploymentController
from .endpoints import EndpointsController
from .endpointslice import EndpointSliceController
from .garbagecollector import GarbageCollector
from .nodelifecycle import NodeLifecycleController
from .podgc import PodGCController
from .tainteviction import TaintEvictionController
from .job import JobController
from .metrics import Metrics, serve
from .replicaset import ReplicaSetController, ReplicationControllerController
from .rootca import RootCACertPublisher
from .serviceaccount import ServiceAccountController
from .ttlafterfinished import TTLAfterFinishedController

log = logging.getLogger("kubeplane.controllers")

CONTROLLERS: dict[str, type[Controller]] = {c.name: c for c in (
    ServiceAccountController, RootCACertPublisher, ReplicaSetController, ReplicationControllerController,
    DeploymentController, EndpointSliceController, EndpointsController, JobController, CronJobController, TTLAfterFinishedController,
    PodGCController, NodeLifecycleController, TaintEvictionController, GarbageCollector)}
OFF_BY_DEFAULT: frozenset[str] = frozenset()
LEASE_NAME = "kube-controller-manager"


class OptionError(ValueError):
    """A bad --controllers list (or another option)."""


def enabled_controllers(spec: str) -> list[str]:
    """upstream's IsControllerEnabled over a --controllers value, in registry order."""
    items = [s.strip() for s in spec.split(",") if s.strip()]
    for s in items:
        name = s[1:] if s.startswith("-") else s
        if name != "*" and name not in CONTROLLERS:
            raise OptionError(f'"{name}" is not in the list of known controllers: {", ".join(sorted(CONTROLLERS))}')
    out = []
    for name in CONTROLLERS:
        if f"-{name}" in items:
            continue
        if name in items or ("*" in items and name not in OFF_BY_DEFAULT):
            out.append(name)
    return out


@dataclass
class Options:
    kubeconfig: str | None = None
    context: str | None = None
    controllers: str = "*"
    qps: float = 20.0
    burst: int = 30
    bind_address: str = "127.0.0.1:10257"     # /metrics and /healthz; "0" = off
    leader_elect: bool = True
    lease_namespace: str = "kube-system"
    lease_name: str = LEASE_NAME
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    root_ca_file: str | None = None
    workers: dict[str, int] = field(default_factory=dict)
    terminated_pod_gc_threshold: int = 12500
    pod_gc_orphan_quarantine: float = 40.0
    node_monitor_grace_period: float = 50.0
    node_monitor_period: float = 5.0
    node_eviction_rate: float = 0.1
    secondary_node_eviction_rate: float = 0.01
    unhealthy_zone_threshold: float = 0.55
    large_cluster_size_threshold: int = 50


def _host_port(text: str) -> tuple[str, int] | None:
    if text in ("", "0"):
        return None
    host, _, port = text.rpartition(":")
    return (host or "127.0.0.1"), int(port)


class ControllerManager:
    """Builds the enabled controllers on one factory and runs them."""

    def __init__(self, opts: Options):
        self.opts = opts
        self.names = enabled_controllers(opts.controllers)
        self.metrics = Metrics()
        self.controllers: list[Controller] = []
        self.leading = asyncio.Event()
        self.port: int | None = None

    def _root_ca(self, cfg: Any) -> bytes:
        if self.opts.root_ca_file:
            with open(self.opts.root_ca_file, "rb") as f:
                return f.read()
        if cfg.ca_data:
            return bytes(cfg.ca_data)
        if cfg.ca_file:
            with open(cfg.ca_file, "rb") as f:
                return f.read()
        return b""

    async def run(self, ready: asyncio.Event | None = None) -> None:
        cfg = load_kubeconfig(self.opts.kubeconfig, self.opts.context)
        cfg.qps, cfg.burst = self.opts.qps, self.opts.burst
        cfg.user_agent = "kubeplane-controller-manager/v0.1.0 (kube-controller-manager)"
        root_ca = self._root_ca(cfg)
        names = [n for n in self.names if n != RootCACertPublisher.name or root_ca]
        if len(names) != len(self.names):
            log.warning("no cluster CA (kubeconfig certificate-authority or --root-ca-file): "
                        "root-ca-cert-publisher does not run")
        server = None
        addr = _host_port(self.opts.bind_address)
        if addr is not None:
            server = await serve(self.metrics, addr[0], addr[1], lambda: True)
            self.port = server.sockets[0].getsockname()[1]
            print(f"kubeplane controller-manager: metrics on http://{addr[0]}:{self.port}/metrics", flush=True)
        try:
            # three clients, as kube-controller-manager: the controllers', the event
            # recorders' and leader election's own, so a burst of pod creates queued behind
            # the QPS limit never delays a lease renewal (the leader would step down)
            async with Client(cfg) as client, Client(cfg) as event_client, Client(cfg) as le_client:
                self.metrics.count_requests("main", client)
                self.metrics.count_requests("events", event_client)
                if not self.opts.leader_elect:
                    await self._run_controllers(client, event_client, root_ca, names, ready)
                    return
                identity = f"{socket.gethostname()}_{uuid.uuid4()}"
                lost = asyncio.Event()
                gauge = self.metrics.leader.labels(self.opts.lease_name)
                gauge.set(0)

                async def lead() -> None:
                    gauge.set(1)
                    print(f"kubeplane controller-manager: leading as {identity}", flush=True)
                    await self._run_controllers(client, event_client, root_ca, names, ready)

                def stopped() -> None:
                    gauge.set(0)
                    lost.set()

                le = LeaderElector(le_client, namespace=self.opts.lease_namespace, name=self.opts.lease_name,
                                   identity=identity, lease_duration=self.opts.lease_duration,
                                   renew_deadline=self.opts.renew_deadline, retry_period=self.opts.retry_period,
                                   on_started_leading=lead, on_stopped_leading=stopped)
                print(f"kubeplane controller-manager: waiting for the lease {self.opts.lease_namespace}/"
                      f"{self.opts.lease_name} as {identity}", flush=True)
                task = asyncio.ensure_future(le.run())
                waiter = asyncio.ensure_future(lost.wait())
                try:
                    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    task.cancel()
                    waiter.cancel()
                    await asyncio.gather(task, waiter, return_exceptions=True)
                if lost.is_set():
                    raise SystemExit("kubeplane controller-manager: leader election lost")
        finally:
            if server is not None:
                server.close()

    async def _served(self, client: Client, names: list[str]) -> tuple[list[str], set[Any]]:
        """The names whose required resources the server lists in discovery (as upstream,
        a controller for a resource that is not served does not start), and which of the
        controllers' optional resources are served."""
        cache: dict[str, set[str]] = {}
        served: set[Any] = set()
        for n in names:
            for res in CONTROLLERS[n].optional:
                if res.prefix not in cache:
                    try:
                        doc = await client.get(res.prefix)
                        cache[res.prefix] = {r.get("name") for r in doc.get("resources") or ()}
                    except ApiError:
                        cache[res.prefix] = set()
                if res.plural in cache[res.prefix]:
                    served.add(res)
        out = []
        for n in names:
            ok = True
            for res in CONTROLLERS[n].requires:
                gv = res.prefix
                if gv not in cache:
                    try:
                        doc = await client.get(gv)
                        cache[gv] = {r.get("name") for r in doc.get("resources") or ()}
                    except ApiError:
                        cache[gv] = set()
                if res.plural not in cache[gv]:
                    ok = False
                    log.warning("%s: the server does not serve %s; %s controller not started", n, res, n)
            if ok:
                out.append(n)
        return out, served

    async def _run_controllers(self, client: Client, event_client: Client, root_ca: bytes, names: list[str],
                               ready: asyncio.Event | None) -> None:
        names, served = await self._served(client, names)
        factory = SharedInformerFactory(client, resync_period=0.0, transform=strip_managed_fields)
        ctx = Context(client=client, factory=factory, metrics=self.metrics, event_client=event_client,
                      root_ca=root_ca, workers=self.opts.workers, served=served,
                      options={"terminated_pod_gc_threshold": self.opts.terminated_pod_gc_threshold,
                               "pod_gc_orphan_quarantine": self.opts.pod_gc_orphan_quarantine,
                               **{k: getattr(self.opts, k) for k in (
                                   "node_monitor_grace_period", "node_monitor_period", "node_eviction_rate",
                                   "secondary_node_eviction_rate", "unhealthy_zone_threshold",
                                   "large_cluster_size_threshold")}})
        self.controllers = [CONTROLLERS[n](ctx) for n in names]
        try:
            await factory.start()
            if not await factory.wait_for_cache_sync(timeout=120):
                raise RuntimeError("informer caches did not sync in 120 s")
            print(f"kubeplane controller-manager: caches synced; running {', '.join(names)}", flush=True)
            if ready is not None:
                ready.set()
            self.leading.set()
            await asyncio.gather(*(c.run() for c in self.controllers))
        finally:
            await factory.stop()


async def run_until_signalled(cm: ControllerManager) -> None:
    """Run until SIGTERM/SIGINT; then cancel, so a leader releases its Lease on the way
    out and the next instance (e.g. after `kubeplane serve` restarts) leads at once
    instead of after the lease duration."""
    import signal

    task = asyncio.ensure_future(cm.run())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        print("kubeplane controller-manager: stopped", flush=True)


def main(opts: Options) -> int:
    from ..runtime import run as run_loop

    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    try:
        run_loop(run_until_signalled(ControllerManager(opts)))
    except KeyboardInterrupt:
        return 0
    return 0
