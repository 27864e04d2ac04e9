"""The controller manager's Prometheus metrics and its small HTTP endpoint.

Work queue metrics carry upstream's names (k8s.io/component-base/metrics/prometheus/
workqueue), one series per queue under the label `name` (the controller's name):
workqueue_depth, workqueue_adds_total, workqueue_retries_total,
workqueue_queue_duration_seconds, workqueue_work_duration_seconds (histograms with
upstream's buckets, 1e-8 s to 10 s by powers of ten), workqueue_unfinished_work_seconds
and workqueue_longest_running_processor_seconds. Gauges that depend on time are computed
at scrape time, so they are exact whenever Prometheus looks.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

BUCKETS = tuple(1e-8 * 10 ** i for i in range(10))


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.depth = Gauge("workqueue_depth", "Current depth of workqueue", ["name"], registry=r)
        self.adds = Counter("workqueue_adds_total", "Total number of adds handled by workqueue", ["name"], registry=r)
        self.retries = Counter("workqueue_retries_total", "Total number of retries handled by workqueue", ["name"],
                               registry=r)
        self.queue_duration = Histogram("workqueue_queue_duration_seconds",
                                        "How long in seconds an item stays in workqueue before being requested.",
                                        ["name"], buckets=BUCKETS, registry=r)
        self.work_duration = Histogram("workqueue_work_duration_seconds",
                                       "How long in seconds processing an item from workqueue takes.",
                                       ["name"], buckets=BUCKETS, registry=r)
        self.unfinished = Gauge("workqueue_unfinished_work_seconds",
                                "How many seconds of work has done that is in progress and hasn't been observed by "
                                "work_duration. Large values indicate stuck threads. One can deduce the number of "
                                "stuck threads by observing the rate at which this increases.", ["name"], registry=r)
        self.longest = Gauge("workqueue_longest_running_processor_seconds",
                             "How many seconds has the longest running processor for workqueue been running.",
                             ["name"], registry=r)
        self.leader = Gauge("leader_election_master_status",
                            "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, "
                            "1 indicates master. 'name' is the string used to identify the lease.", ["name"],
                            registry=r)

        self.api_requests = Gauge("kubeplane_controller_manager_api_requests",
                                  "Requests this controller manager sent to the API server (watches included), by "
                                  "client: main (the controllers) or events (the event recorders).", ["client"],
                                  registry=r)

    def count_requests(self, client_name: str, client: Any) -> None:
        """Export a client's request count (kubeplane.client counts per server)."""
        self.api_requests.labels(client_name).set_function(
            lambda: float(sum(s.requests for s in client.balancer.servers)))

    def text(self) -> bytes:
        return generate_latest(self.registry)


async def serve(metrics: Metrics, host: str, port: int, healthy: Callable[[], bool]) -> asyncio.Server:
    """HTTP/1.1 on (host, port): GET /metrics, /healthz, /livez, /readyz; 404 otherwise."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            n = 0
            while (await asyncio.wait_for(reader.readline(), 10)) not in (b"\r\n", b"\n", b""):
                n += 1
                if n > 100:                # a bounded header block
                    return
            parts = line.decode("latin-1").split()
            path = parts[1].split("?")[0] if len(parts) > 1 else ""
            if path == "/metrics":
                code, ctype, body = 200, CONTENT_TYPE_LATEST, metrics.text()
            elif path in ("/healthz", "/livez", "/readyz"):
                ok = healthy()
                code, ctype, body = (200 if ok else 500), "text/plain; charset=utf-8", (b"ok" if ok else b"unhealthy")
            else:
                code, ctype, body = 404, "text/plain; charset=utf-8", b"404 page not found\n"
            reason = {200: "OK", 404: "Not Found", 500: "Internal Server Error"}[code]
            writer.write(f"HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                         f"Connection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except (asyncio.TimeoutError, ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)
