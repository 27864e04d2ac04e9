"""The simulator's own /metrics (Prometheus text) and /debug/stats (JSON), served over
HTTP by aiohttp on the simulator's event loop.

Heartbeat lag is the time from when a Lease renewal was due to when the API server
answered it; a renewal is *late* when that exceeds LATE_AFTER seconds (the node still
holds its 40 s Lease, but the margin is going). The last 100,000 lags are kept for
exact percentiles in /debug/stats; the histogram carries them for Prometheus.
"""
from __future__ import annotations

import collections
import logging
from typing import Any, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

log = logging.getLogger("kubeplane.sim.nodes")

LATE_AFTER = 1.0
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class SimMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.nodes = Gauge("kubeplane_sim_nodes", "Hollow nodes by state (registered, heartbeating, stopped)",
                           ["state"], registry=r)
        self.heartbeats = Counter("kubeplane_sim_heartbeats", "Lease renewals by result (ok, failed)",
                                  ["result"], registry=r)
        self.heartbeats_late = Counter("kubeplane_sim_heartbeats_late",
                                       f"Lease renewals answered more than {LATE_AFTER:g} s after they were due",
                                       registry=r)
        self.heartbeat_lag = Histogram("kubeplane_sim_heartbeat_lag_seconds",
                                       "From a Lease renewal's due time to the API server's answer",
                                       buckets=LAG_BUCKETS, registry=r)
        self.node_status = Counter("kubeplane_sim_node_status_updates", "Node status posts by result",
                                   ["result"], registry=r)
        self.pods_started = Counter("kubeplane_sim_pods_started", "Pods reported Running", registry=r)
        self.pod_start_lag = Histogram("kubeplane_sim_pod_start_lag_seconds",
                                       "From a pod's planned start to the API server's answer to its Running status",
                                       buckets=LAG_BUCKETS, registry=r)
        self.pods_finished = Counter("kubeplane_sim_pods_finished", "Pods ended Succeeded or Failed",
                                     ["phase"], registry=r)
        self.pods_deleted = Counter("kubeplane_sim_pods_deleted",
                                    "Pods whose graceful deletion the simulator finished", registry=r)
        self.restarts = Counter("kubeplane_sim_container_restarts", "Container restarts (crashes, exits)",
                                registry=r)
        self.pods = Gauge("kubeplane_sim_pods", "Pods bound to hollow nodes, known to the simulator", registry=r)
        self.write_errors = Counter("kubeplane_sim_pod_write_errors", "Pod writes that failed", ["op"], registry=r)
        self.lags: collections.deque[float] = collections.deque(maxlen=100_000)
        self.start_lags: collections.deque[float] = collections.deque(maxlen=100_000)
        self.counts = collections.Counter[str]()

    def heartbeat(self, lag: float, ok: bool) -> None:
        if ok:
            self.heartbeats.labels("ok").inc()
            self.heartbeat_lag.observe(lag)
            self.lags.append(lag)
            self.counts["heartbeats"] += 1
            if lag > LATE_AFTER:
                self.heartbeats_late.inc()
                self.counts["late"] += 1
        else:
            self.heartbeats.labels("failed").inc()
            self.counts["failed"] += 1

    def pod_started(self, lag: float) -> None:
        self.pods_started.inc()
        self.pod_start_lag.observe(lag)
        self.start_lags.append(lag)
        self.counts["pods_started"] += 1


def percentiles(values: Any, qs: tuple[float, ...] = (50, 99)) -> dict[str, float | None]:
    data = sorted(values)
    out: dict[str, float | None] = {}
    for q in qs:
        out[f"p{q:g}"] = data[min(len(data) - 1, int(len(data) * q / 100))] if data else None
    return out


async def serve_metrics(address: str, metrics: SimMetrics, stats: Callable[[], dict[str, Any]]
                        ) -> web.AppRunner | None:
    """Serve /metrics, /healthz and /debug/stats at HOST:PORT ("0": off). Returns the
    runner (None when off); raises OSError when the address is taken."""
    if address in ("0", ""):
        return None
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"

    async def metrics_h(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def health_h(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def stats_h(_: web.Request) -> web.Response:
        return web.json_response(stats())

    app = web.Application()
    app.router.add_get("/metrics", metrics_h)
    app.router.add_get("/healthz", health_h)
    app.router.add_get("/debug/stats", stats_h)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, int(port))
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


def bound_port(runner: web.AppRunner | None) -> int | None:
    if runner is None:
        return None
    for site in runner.sites:
        srv = getattr(site, "_server", None)
        if srv is not None and srv.sockets:
            return srv.sockets[0].getsockname()[1]
    return None
