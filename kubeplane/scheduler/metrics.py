"""The scheduler's Prometheus metrics under kube-scheduler's names and labels, in their
own registry, and a small loopback HTTP endpoint serving them (/metrics, /healthz).

Names (pkg/scheduler/metrics): scheduler_schedule_attempts_total{result,profile},
scheduler_scheduling_attempt_duration_seconds{result,profile},
scheduler_scheduling_algorithm_duration_seconds (one decision, binding excluded),
scheduler_pod_scheduling_sli_duration_seconds{attempts} (queue add to bound, the e2e
latency), scheduler_pod_scheduling_attempts, scheduler_pending_pods{queue},
scheduler_queue_incoming_pods_total{queue,event},
scheduler_framework_extension_point_duration_seconds{extension_point,status,profile},
scheduler_preemption_attempts_total, scheduler_preemption_victims,
scheduler_scheduler_cache_size{type}, scheduler_unschedulable_pods{plugin,profile}.
"""
from __future__ import annotations

import asyncio
from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


def _exp(start: float, factor: float, count: int) -> list[float]:
    return [start * factor**i for i in range(count)]


PROFILE = "default-scheduler"


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self._children: dict = {}
        self.attempts = Counter("scheduler_schedule_attempts", "Number of attempts to schedule pods, by the result.",
                                ["result", "profile"], registry=r)
        self.attempt_duration = Histogram(
            "scheduler_scheduling_attempt_duration_seconds",
            "Scheduling attempt latency in seconds (scheduling algorithm + binding)",
            ["result", "profile"], buckets=_exp(0.001, 2, 15), registry=r)
        self.algorithm_duration = Histogram(
            "scheduler_scheduling_algorithm_duration_seconds", "Scheduling algorithm latency in seconds",
            buckets=_exp(0.001, 2, 15), registry=r)
        self.sli_duration = Histogram(
            "scheduler_pod_scheduling_sli_duration_seconds",
            "E2e latency for a pod being scheduled, from the time the pod enters the scheduling queue",
            ["attempts"], buckets=_exp(0.01, 2, 20), registry=r)
        self.pod_attempts = Histogram("scheduler_pod_scheduling_attempts",
                                      "Number of attempts to successfully schedule a pod.",
                                      buckets=_exp(1, 2, 5), registry=r)
        self.pending = Gauge("scheduler_pending_pods", "Number of pending pods, by the queue type.", ["queue"],
                             registry=r)
        self.incoming = Counter("scheduler_queue_incoming_pods", "Number of pods added to scheduling queues by event "
                                "and queue type.", ["queue", "event"], registry=r)
        self.extension = Histogram(
            "scheduler_framework_extension_point_duration_seconds",
            "Latency for running all plugins of a specific extension point.",
            ["extension_point", "status", "profile"], buckets=_exp(0.0001, 2, 12), registry=r)
        self.preemption_attempts = Counter("scheduler_preemption_attempts", "Total preemption attempts in the "
                                           "cluster till now", registry=r)
        self.preemption_victims = Histogram("scheduler_preemption_victims", "Number of selected preemption victims",
                                            buckets=_exp(1, 2, 7), registry=r)
        self.cache_size = Gauge("scheduler_scheduler_cache_size", "Number of nodes, pods, and assumed (bound) pods "
                                "in the scheduler cache.", ["type"], registry=r)
        self.unschedulable = Gauge("scheduler_unschedulable_pods", "The number of unschedulable pods broken down by "
                                   "plugin name.", ["plugin", "profile"], registry=r)

    def child(self, metric, *labels: str):
        """A labelled child, looked up once (labels() costs more than the observation)."""
        key = (id(metric), labels)
        c = self._children.get(key)
        if c is None:
            c = self._children[key] = metric.labels(*labels)
        return c

    def bind_queue(self, counts: dict[str, int], cache_sizes: Callable[[], dict[str, int]],
                   gated: Callable[[], int] = lambda: 0) -> None:
        for q in ("active", "backoff", "unschedulable"):
            self.pending.labels(queue=q).set_function(lambda q=q: counts[q])
        self.pending.labels(queue="gated").set_function(gated)
        for t in ("nodes", "pods", "assumed_pods"):
            self.cache_size.labels(type=t).set_function(lambda t=t: cache_sizes()[t])

    def observe_extension(self, point: str, status: str, seconds: float) -> None:
        child = self._children.get((point, status))
        if child is None:
            child = self._children[(point, status)] = self.extension.labels(point, status, PROFILE)
        child.observe(seconds)

    def text(self) -> bytes:
        return generate_latest(self.registry)


async def serve_metrics(metrics: Metrics, host: str, port: int, healthy: Callable[[], bool]) -> asyncio.Server:
    """A loopback HTTP/1.1 endpoint: GET /metrics, /healthz, /livez, /readyz."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            while (await asyncio.wait_for(reader.readline(), 10)) not in (b"\r\n", b"\n", b""):
                pass
            parts = line.decode("latin-1").split()
            path = parts[1].split("?")[0] if len(parts) > 1 else ""
            if path == "/metrics":
                code, ctype, body = 200, CONTENT_TYPE_LATEST, metrics.text()
            elif path in ("/healthz", "/livez", "/readyz"):
                ok = healthy()
                code, ctype, body = (200 if ok else 500), "text/plain", (b"ok" if ok else b"not ready")
            else:
                code, ctype, body = 404, "text/plain", b"404 page not found\n"
            reason = {200: "OK", 404: "Not Found", 500: "Internal Server Error"}[code]
            writer.write(f"HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                         f"Connection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except (asyncio.TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)
