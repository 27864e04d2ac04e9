"""The simulator: N hollow nodes in one asyncio process, against any API server.

Start-up, per node (at most `register_concurrency` at once, the client's QPS the limit):
its kubelet listener (`kubeplane.sim.kubelet.KubeletServer.add_node`, own loopback
address, shared port), its Node (created with its status; an existing Node is taken
over and its status refreshed), its Lease, its pod watch, its heartbeat timers.

Pod watches. Default: one watch per node, `fieldSelector=spec.nodeName=<node>`, as a
kubelet does (5,000 nodes = 5,000 watches, each a connection: HTTP/1.1 cannot carry two
streams on one). `cheap=True`: one watch of all pods, dispatched by `spec.nodeName`, for
when the API server is not what is measured. Either way the objects are not kept: each
event is read once (`PodLifecycle.observe`) and dropped.

Faults on demand: annotate a Node `kubeplane.io/heartbeat=stop` and it stops renewing
its Lease and posting status (remove the annotation, or set anything else, and it
resumes with a status post and a renewal at once); annotate a pod `kubeplane.io/crash`
with a new value and its containers crash. One watch of the simulator's Nodes (by the
hollow-node label) carries the node faults; a hollow Node deleted by someone is
registered again, as a kubelet would.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from kubeplane.client import NODES, PODS, ApiConnectionError, ApiError, Client, Config, Reflector

from ..kubelet import KubeletServer
from .heartbeat import Heartbeats
from .metrics import SimMetrics, percentiles
from .objects import HOLLOW_LABEL, LEASE_NAMESPACE, MAX_NODES, NodeShape, lease_object, node_object, pod_cidr
from .pods import PodLifecycle, PodState
from .stages import Stages

log = logging.getLogger("kubeplane.sim.nodes")

HEARTBEAT = "kubeplane.io/heartbeat"


@dataclass
class SimOptions:
    count: int = 3
    prefix: str = "hollow-node"
    first: int = 0                          # ordinal of the first node (several simulators: disjoint ranges)
    cheap: bool = False                     # one shared pod watch instead of one per node
    kubelet_address: str = "127.1.0.1"      # node i's kubelet listens on this address + i
    kubelet_port: int = 0                   # shared by all nodes (0: a free one)
    shape: NodeShape = field(default_factory=NodeShape)
    stages: Stages | None = None
    qps: float = 0.0                        # 0: enough for the count (see client_rates)
    burst: int = 0
    lease_interval: float = 10.0
    status_interval: float = 300.0
    register_concurrency: int = 64
    allow_real_commands: bool = False
    seed: int | None = None

    def node_name(self, ordinal: int) -> str:
        return f"{self.prefix}-{ordinal}"

    def client_rates(self) -> tuple[tuple[float, int], tuple[float, int]]:
        """((qps, burst) of the pod/watch client, (qps, burst) of the heartbeat client).
        Heartbeats: count/10 renewals per second plus status posts, doubled for headroom;
        pods: --kube-api-qps if given, else 50 + count/10 (watches start through it too)."""
        hb = max(50.0, 2 * self.count / self.lease_interval + self.count / self.status_interval)
        main = self.qps or (50.0 + self.count / 10)
        return (main, self.burst or int(2 * main)), (hb, int(2 * hb))


class HollowNode:
    __slots__ = ("name", "ordinal", "host", "port", "uid", "lease_rv", "lease_due", "lease_timer", "status_timer",
                 "lease_failures", "stopped", "pods", "reflector", "ip_base", "ips_used", "ip_next")

    def __init__(self, name: str, ordinal: int):
        self.name = name
        self.ordinal = ordinal
        self.host = ""
        self.port = 0
        self.uid: str | None = None
        self.lease_rv: str | None = None
        self.lease_due = 0.0
        self.lease_timer: asyncio.TimerHandle | None = None
        self.status_timer: asyncio.TimerHandle | None = None
        self.lease_failures = 0
        self.stopped = False
        self.pods: dict[tuple[str, str], PodState] = {}
        self.reflector: asyncio.Task[None] | None = None
        self.ip_base = int(pod_cidr(ordinal).network_address)
        self.ips_used: set[int] = set()
        self.ip_next = 2

    # pod IPs: .2 .. .254 of the node's /24, handed out round robin, freed when a pod ends
    def allocate_ip(self) -> str:
        for _ in range(253):
            n, self.ip_next = self.ip_next, 2 + (self.ip_next - 1) % 253
            if n not in self.ips_used:
                self.ips_used.add(n)
                return str(ipaddress.IPv4Address(self.ip_base + n))
        log.warning("node %s: pod CIDR exhausted; reusing addresses", self.name)
        return str(ipaddress.IPv4Address(self.ip_base + 2))

    def claim_ip(self, ip: str) -> str:
        n = int(ipaddress.IPv4Address(ip)) - self.ip_base
        if 0 < n < 255:
            self.ips_used.add(n)
        return ip

    def release_ip(self, ip: str) -> None:
        if ip:
            self.ips_used.discard(int(ipaddress.IPv4Address(ip)) - self.ip_base)


class _NodePods:
    """The reflector sink of one node's pod watch."""

    def __init__(self, sim: "Simulator", node: HollowNode):
        self.sim, self.node = sim, node

    def replace(self, items: list[dict[str, Any]], resource_version: str) -> None:
        self.sim.lifecycle.resync(self.node, items)

    def event(self, etype: str, obj: dict[str, Any]) -> None:
        if etype in ("ADDED", "MODIFIED", "DELETED"):
            self.sim.lifecycle.observe(self.node, etype, obj)


class _AllPods:
    """The sink of the one shared pod watch (cheap mode): events go to the pod's node."""

    def __init__(self, sim: "Simulator"):
        self.sim = sim

    def _node(self, obj: dict[str, Any]) -> HollowNode | None:
        return self.sim.nodes.get((obj.get("spec") or {}).get("nodeName") or "")

    def replace(self, items: list[dict[str, Any]], resource_version: str) -> None:
        by_node: dict[str, list[dict[str, Any]]] = {n: [] for n in self.sim.nodes}
        for p in items:
            node = self._node(p)
            if node is not None:
                by_node[node.name].append(p)
        for name, pods in by_node.items():
            self.sim.lifecycle.resync(self.sim.nodes[name], pods)

    def event(self, etype: str, obj: dict[str, Any]) -> None:
        node = self._node(obj)
        if node is not None and etype in ("ADDED", "MODIFIED", "DELETED"):
            self.sim.lifecycle.observe(node, etype, obj)


class _OwnNodes:
    """The sink of the watch of the simulator's Nodes: heartbeat faults, re-registration."""

    def __init__(self, sim: "Simulator"):
        self.sim = sim

    def replace(self, items: list[dict[str, Any]], resource_version: str) -> None:
        seen = set()
        for obj in items:
            seen.add((obj.get("metadata") or {}).get("name"))
            self.event("MODIFIED", obj)
        for name, node in self.sim.nodes.items():
            if name not in seen and node.uid is not None:
                self.event("DELETED", {"metadata": {"name": name, "uid": node.uid}})

    def event(self, etype: str, obj: dict[str, Any]) -> None:
        md = obj.get("metadata") or {}
        node = self.sim.nodes.get(md.get("name", ""))
        if node is None:
            return
        if etype == "DELETED":
            if md.get("uid") == node.uid and not self.sim.closing:
                node.uid = None
                log.warning("node %s was deleted; registering it again", node.name)
                self.sim.spawn(self.sim.register(node))
            return
        self.sim.set_stopped(node, (md.get("annotations") or {}).get(HEARTBEAT) == "stop")


class Simulator:
    def __init__(self, config: Config, options: SimOptions):
        if options.count < 0 or options.first < 0 or options.first + options.count > MAX_NODES:
            raise ValueError(f"node ordinals {options.first}..{options.first + options.count - 1} "
                             f"out of range (0..{MAX_NODES - 1})")
        first = ipaddress.IPv4Address(options.kubelet_address)
        if not first.is_loopback or int(first) + options.first + options.count > int(
                ipaddress.IPv4Address("127.255.255.254")):
            raise ValueError(f"--kubelet-address {options.kubelet_address}: the nodes' kubelet addresses must "
                             "be loopback addresses (127.0.0.0/8)")
        self.options = options
        self.stages = options.stages or Stages.default()
        self.rng = random.Random(options.seed)
        (qps, burst), (hb_qps, hb_burst) = options.client_rates()
        self.client = Client(_with(config, qps, burst, options.count + 64, "kubeplane-sim-nodes"))
        self.hb_client = Client(_with(config, hb_qps, hb_burst, 256, "kubeplane-sim-nodes/heartbeat"))
        self.metrics = SimMetrics()
        self.kubelet = KubeletServer(lookup=self._lookup_pod, allow_real_commands=options.allow_real_commands)
        self.nodes: dict[str, HollowNode] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.watch_tasks: list[asyncio.Task[None]] = []
        self.closing = False
        self.started_at = 0.0
        self.ready_at = 0.0
        self.heartbeats: Heartbeats
        self.lifecycle: PodLifecycle

    # --- plumbing ---------------------------------------------------------------------------
    def spawn(self, coro: Awaitable[Any]) -> None:
        t = asyncio.ensure_future(coro)
        self.tasks.add(t)
        t.add_done_callback(self._done)

    def _done(self, t: asyncio.Task[Any]) -> None:
        self.tasks.discard(t)
        if not t.cancelled() and t.exception() is not None:
            log.error("simulator task failed: %r", t.exception(), exc_info=t.exception())

    async def _lookup_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self.client.get(PODS.path(namespace, name))
        except (ApiError, ApiConnectionError):
            return None

    # --- start ------------------------------------------------------------------------------
    async def start(self, progress: Callable[[int], None] | None = None) -> None:
        """Register every node and start its heartbeats and pod watch; returns when all
        are registered (progress(n) is told after each)."""
        self.started_at = time.time()
        self.heartbeats = Heartbeats(self, self.options.lease_interval, self.options.status_interval, self.rng)
        self.lifecycle = PodLifecycle(self, self.stages, self.rng)
        o = self.options
        for i in range(o.first, o.first + o.count):
            name = o.node_name(i)
            self.nodes[name] = HollowNode(name, i)
        await self._ensure_lease_namespace()
        base = ipaddress.IPv4Address(o.kubelet_address)
        port = o.kubelet_port
        for node in self.nodes.values():   # listeners first: binding is quick and local
            host = str(base + (node.ordinal - o.first))
            try:
                node.host, node.port = await self.kubelet.add_node(node.name, host, port)
            except OSError:                 # the shared port is taken at this address: any port
                node.host, node.port = await self.kubelet.add_node(node.name, host, 0)
            port = port or node.port
        if o.cheap:
            self.watch_tasks.append(asyncio.ensure_future(Reflector(self.client, PODS, _AllPods(self)).run()))
        sem = asyncio.Semaphore(o.register_concurrency)
        done = 0

        async def one(node: HollowNode) -> None:
            nonlocal done
            async with sem:
                await self.register(node)
            done += 1
            if progress is not None:
                progress(done)

        await asyncio.gather(*(one(n) for n in self.nodes.values()))
        self.watch_tasks.append(asyncio.ensure_future(
            Reflector(self.client, NODES, _OwnNodes(self), label_selector=f"{HOLLOW_LABEL}=true").run()))
        self.ready_at = time.time()
        self.metrics.nodes.labels("registered").set(len(self.nodes))
        self._count_states()

    async def _ensure_lease_namespace(self) -> None:
        try:
            await self.client.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                            "metadata": {"name": LEASE_NAMESPACE}})
        except ApiError as e:
            if e.status != 409:
                raise

    async def register(self, node: HollowNode) -> None:
        """Create (or take over) the Node, then its Lease; start its watch and heartbeats.
        Retries until it works or the simulator closes: a node that cannot register is
        no node."""
        delay = 0.5
        while not self.closing:
            try:
                await self._register_once(node)
                break
            except (ApiError, ApiConnectionError, KeyError) as e:
                log.warning("node %s: registration failed (%s); retrying in %.1fs", node.name, e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        if self.closing:
            return
        if node.reflector is None and not self.options.cheap:
            node.reflector = asyncio.ensure_future(Reflector(
                self.client, PODS, _NodePods(self, node), field_selector=f"spec.nodeName={node.name}").run())
        self.heartbeats.stop(node)
        if not node.stopped:
            self.heartbeats.start(node)

    async def _register_once(self, node: HollowNode) -> None:
        o = self.options
        obj = node_object(node.name, node.ordinal, o.shape, node.host, node.port, time.time())
        try:
            got = await self.hb_client.create("/api/v1/nodes", obj)
            if not (got.get("status") or {}).get("conditions"):
                # a server that drops status on create: post it (kubelets create with it)
                await self.hb_client.patch(f"/api/v1/nodes/{node.name}/status", {"status": obj["status"]}, "strategic")
        except ApiError as e:
            if e.status != 409:
                raise
            got = await self.hb_client.get(f"/api/v1/nodes/{node.name}")
            node.stopped = ((got["metadata"].get("annotations") or {}).get(HEARTBEAT) == "stop")
            if not node.stopped:
                await self.hb_client.patch(f"/api/v1/nodes/{node.name}/status", {"status": obj["status"]},
                                           "strategic")
        node.uid = got["metadata"]["uid"]
        lease_path = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases"
        if node.stopped:
            return
        try:
            lease = await self.hb_client.create(lease_path, lease_object(node.name, node.uid, time.time()))
        except ApiError as e:
            if e.status != 409:
                raise
            lease = await self.hb_client.update(f"{lease_path}/{node.name}",
                                                lease_object(node.name, node.uid, time.time()))
        node.lease_rv = lease["metadata"]["resourceVersion"]

    # --- faults -----------------------------------------------------------------------------
    def set_stopped(self, node: HollowNode, stopped: bool) -> None:
        if stopped == node.stopped:
            return
        node.stopped = stopped
        if stopped:
            log.info("node %s: heartbeats stopped (annotation %s=stop)", node.name, HEARTBEAT)
            self.heartbeats.stop(node)
        else:
            log.info("node %s: heartbeats resumed", node.name)
            self.heartbeats.stop(node)
            self.spawn(self.heartbeats.post_status(node))
            self.heartbeats.start(node, first_lease=time.time())
        self._count_states()

    def _count_states(self) -> None:
        stopped = sum(1 for n in self.nodes.values() if n.stopped)
        self.metrics.nodes.labels("stopped").set(stopped)
        self.metrics.nodes.labels("heartbeating").set(len(self.nodes) - stopped)

    # --- reporting --------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        m = self.metrics
        return {
            "nodes": len(self.nodes), "stopped": sum(1 for n in self.nodes.values() if n.stopped),
            "pods": self.lifecycle.count if hasattr(self, "lifecycle") else 0,
            "watches": (1 if self.options.cheap else len(self.nodes)) + 1,
            "heartbeats": m.counts["heartbeats"], "late": m.counts["late"], "failed": m.counts["failed"],
            "lag": percentiles(m.lags), "pods_started": m.counts["pods_started"],
            "pod_start_lag": percentiles(m.start_lags),
            "registration_seconds": round(self.ready_at - self.started_at, 3) if self.ready_at else None,
        }

    def summary(self) -> str:
        s = self.stats()
        p99 = s["lag"]["p99"]
        return (f"{s['nodes']} hollow nodes ({s['nodes'] - s['stopped']} heartbeating), {s['pods']} pods, "
                f"{s['pods_started']} started; heartbeats {s['heartbeats']} ok, {s['late']} late, "
                f"{s['failed']} failed, lag p99 {'-' if p99 is None else f'{p99 * 1000:.0f} ms'}")

    # --- stop -------------------------------------------------------------------------------
    async def close(self) -> None:
        self.closing = True
        for node in self.nodes.values():
            if hasattr(self, "heartbeats"):
                self.heartbeats.stop(node)
            if node.reflector is not None:
                node.reflector.cancel()
            for st in list(node.pods.values()):
                if st.timer is not None:
                    st.timer.cancel()
        watches = [n.reflector for n in self.nodes.values() if n.reflector is not None] + self.watch_tasks
        for t in self.watch_tasks:
            t.cancel()
        for t in list(self.tasks):
            t.cancel()
        await asyncio.gather(*watches, *self.tasks, return_exceptions=True)
        await self.kubelet.close()
        await self.client.close()
        await self.hb_client.close()


def _with(config: Config, qps: float, burst: int, connections: int, agent: str) -> Config:
    from dataclasses import replace

    return replace(config, qps=qps, burst=burst, max_connections_per_server=connections, user_agent=agent)
