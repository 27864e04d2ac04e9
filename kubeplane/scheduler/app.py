"""`kubeplane scheduler`: the scheduler against any Kubernetes API server.

Wiring (kubeplane.client only; never the API server's or the store's modules):
- informers: Nodes, Pods (all but Succeeded/Failed, as kube-scheduler's field selector),
  and Services, ReplicaSets, StatefulSets for the default topology spread selectors;
- `ClientApi`: binds with `pods/binding`, writes PodScheduled=False and
  status.nominatedNodeName with a strategic merge patch on `pods/status`, preempts with a
  DisruptionTarget condition then a delete with a UID precondition, records events through
  the EventRecorder (component `default-scheduler`) on a second client with its own rate
  limit (kube-scheduler's eventClient);
- leader election on the Lease kube-system/kube-scheduler (`--leader-elect`, default true
  as upstream): only the leader schedules;
- /metrics and /healthz on `--metrics-bind-address` (127.0.0.1:10259; 0 turns it off).
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

from ..client import (NODES, PODS, Client, DeletedFinalStateUnknown, EventRecorder, LeaderElector, Resource,
                      SharedInformerFactory, load_kubeconfig, strip_managed_fields)
from .metrics import Metrics, serve_metrics
from .podinfo import PodInfo
from .scheduler import DEFAULT_SCHEDULER, Scheduler
from ..client.selectors import label_selector

log = logging.getLogger("kubeplane.scheduler")

SERVICES = Resource("", "v1", "services", "Service", True)
REPLICA_SETS = Resource("apps", "v1", "replicasets", "ReplicaSet", True)
STATEFUL_SETS = Resource("apps", "v1", "statefulsets", "StatefulSet", True)
POD_FIELD_SELECTOR = "status.phase!=Succeeded,status.phase!=Failed"


@dataclass
class Options:
    kubeconfig: str | None = None
    context: str | None = None
    qps: float = 50.0
    burst: int = 100
    metrics_bind_address: str = "127.0.0.1:10259"
    leader_elect: bool = True
    lease_namespace: str = "kube-system"
    lease_name: str = "kube-scheduler"
    percentage_of_nodes_to_score: int = 0
    parallel_binds: int = 64
    scheduler_name: str = DEFAULT_SCHEDULER
    scheduled_events: bool = True


def _ref(pod: PodInfo) -> dict[str, Any]:
    obj = pod.pod
    if obj.get("kind") == "Pod":
        return obj
    return {**obj, "kind": "Pod", "apiVersion": "v1"}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class ClientApi:
    """The scheduler's writes through kubeplane.client."""

    def __init__(self, client: Client, recorder: EventRecorder, name: str) -> None:
        self.client = client
        self.recorder = recorder
        self.name = name

    async def bind(self, pod: PodInfo, node: str) -> None:
        body = {"apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        await self.client.create(PODS.path(pod.namespace, pod.name, "binding"), body)

    async def update_status(self, pod: PodInfo, condition: dict[str, Any] | None, nominated: str | None) -> None:
        status: dict[str, Any] = {}
        if condition is not None:
            status["conditions"] = [condition]
        if nominated is not None:
            status["nominatedNodeName"] = nominated or None
        await self.client.patch(PODS.path(pod.namespace, pod.name, "status"), {"status": status},
                                patch_type="strategic")

    async def delete_victim(self, victim: PodInfo, preemptor: PodInfo, node: str) -> None:
        cond = {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler",
                "message": f"{self.name}: preempting to accommodate a higher priority pod",
                "lastTransitionTime": _now()}
        path = PODS.path(victim.namespace, victim.name)
        try:
            await self.client.patch(PODS.path(victim.namespace, victim.name, "status"),
                                    {"status": {"conditions": [cond]}}, patch_type="strategic")
        except Exception as exc:   # the delete below is what matters
            log.info("DisruptionTarget on %s: %s", victim.key, exc)
        await self.client.delete(path, body={"apiVersion": "v1", "kind": "DeleteOptions",
                                             "preconditions": {"uid": victim.uid}})
        self.recorder.event(_ref(victim), "Normal", "Preempted", f"Preempted by pod {preemptor.uid} on node {node}")

    def event(self, pod: PodInfo, type_: str, reason: str, message: str) -> None:
        self.recorder.event(_ref(pod), type_, reason, message)


def _selector_of(obj: dict[str, Any]) -> Any | None:
    spec = obj.get("spec") or {}
    sel = spec.get("selector")
    if obj.get("kind") == "Service" or (isinstance(sel, dict) and "matchLabels" not in sel
                                        and "matchExpressions" not in sel):
        return label_selector({"matchLabels": sel}) if sel else None
    return label_selector(sel) if sel else None


def wire(sched: Scheduler, factory: SharedInformerFactory) -> list[Any]:
    """Register the scheduler's informers and handlers on a factory."""
    def unwrap(obj: Any) -> dict[str, Any]:
        return obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj

    nodes = factory.informer(NODES)
    nodes.add_event_handler(on_add=sched.on_node_add, on_update=sched.on_node_update,
                            on_delete=lambda o: sched.on_node_delete(unwrap(o)))
    pods = factory.informer(PODS, field_selector=POD_FIELD_SELECTOR)
    pods.add_event_handler(on_add=sched.on_pod_add, on_update=sched.on_pod_update,
                           on_delete=lambda o: sched.on_pod_delete(unwrap(o)))
    out = [nodes, pods]
    for res in (SERVICES, REPLICA_SETS, STATEFUL_SETS):
        inf = factory.informer(res)

        def put(obj: dict[str, Any], res: Resource = res) -> None:
            md = obj.get("metadata") or {}
            obj = {**obj, "kind": res.kind}
            sched.set_owner(f"{res.plural}/{md.get('namespace')}/{md.get('name')}", md.get("namespace", ""),
                            _selector_of(obj))

        def drop(obj: Any, res: Resource = res) -> None:
            md = (unwrap(obj).get("metadata") or {})
            sched.set_owner(f"{res.plural}/{md.get('namespace')}/{md.get('name')}", "", None)

        inf.add_event_handler(on_add=put, on_update=lambda old, new, put=put: put(new), on_delete=drop)
        out.append(inf)
    return out


def _tune_gc() -> None:
    """The caches hold every node and pod as dicts that live for long; the cyclic
    collector's full passes over them stall the loop (tens of ms at 30,000 pods). Freeze
    what the initial lists built and collect the young generation less often, as the API
    server does (kubeplane.apiserver.server.apiserver.tune_gc)."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 1000)


def _host_port(text: str) -> tuple[str, int] | None:
    if text in ("", "0"):
        return None
    host, _, port = text.rpartition(":")
    return (host or "127.0.0.1"), int(port)


async def run(opts: Options, ready: asyncio.Event | None = None) -> None:
    cfg = load_kubeconfig(opts.kubeconfig, opts.context)
    cfg.qps = opts.qps
    cfg.burst = opts.burst
    cfg.user_agent = "kubeplane-scheduler/v0.1.0 (kube-scheduler)"
    metrics = Metrics()
    # events go through a client (and rate limit) of their own, as kube-scheduler's
    # eventClient: a burst of events never delays bindings
    async with Client(cfg) as client, Client(cfg) as event_client:
        recorder = EventRecorder(event_client, component=opts.scheduler_name)
        sched = Scheduler(ClientApi(client, recorder, opts.scheduler_name), percentage=opts.percentage_of_nodes_to_score,
                          parallel_binds=opts.parallel_binds, metrics=metrics, name=opts.scheduler_name,
                          send_scheduled_events=opts.scheduled_events)
        factory = SharedInformerFactory(client, resync_period=0.0, transform=strip_managed_fields)
        wire(sched, factory)
        server = None
        addr = _host_port(opts.metrics_bind_address)
        if addr is not None:
            try:
                server = await serve_metrics(metrics, addr[0], addr[1], lambda: True)
                port = server.sockets[0].getsockname()[1]
                print(f"kubeplane scheduler: metrics on http://{addr[0]}:{port}/metrics", flush=True)
            except OSError as exc:
                log.warning("metrics: cannot listen on %s: %s; running without /metrics",
                            opts.metrics_bind_address, exc)
        try:
            await factory.start()
            if not await factory.wait_for_cache_sync(timeout=120):
                raise ConnectionError(f"informer caches did not sync in 120 s: is {cfg.server} reachable, "
                                      "and do these credentials allow listing nodes and pods?")
            print(f"kubeplane scheduler: caches synced ({sched.cache.node_count} nodes, "
                  f"{len(sched.queue.pods)} pending pods), server {cfg.servers[0] if cfg.servers else ''}", flush=True)
            if ready is not None:
                ready.set()
            _tune_gc()
            if opts.leader_elect:
                identity = f"{socket.gethostname()}_{uuid.uuid4()}"
                stop = asyncio.Event()

                async def lead() -> None:
                    print(f"kubeplane scheduler: leading as {identity}", flush=True)
                    await sched.run()

                def lost() -> None:
                    log.error("leader election lost; exiting")
                    stop.set()

                le = LeaderElector(client, namespace=opts.lease_namespace, name=opts.lease_name, identity=identity,
                                   on_started_leading=lead, on_stopped_leading=lost)
                task = asyncio.ensure_future(le.run())
                waiter = asyncio.ensure_future(stop.wait())
                await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
                task.cancel()
                waiter.cancel()
                await asyncio.gather(task, waiter, return_exceptions=True)
                if stop.is_set():
                    raise SystemExit(1)   # upstream exits when it loses the lease; a supervisor restarts it
            else:
                await sched.run()
        finally:
            await factory.stop()
            await recorder.close()
            if server is not None:
                server.close()


def main(opts: Options) -> int:
    from ..runtime import run as run_loop

    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    try:
        run_loop(run(opts))
    except KeyboardInterrupt:
        return 0
    return 0
