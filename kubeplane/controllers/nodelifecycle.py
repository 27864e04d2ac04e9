"""The node lifecycle controller (upstream's node-lifecycle-controller), taint-based.

Every `monitor_period` (5 s) each node's health is judged from what this controller saw
last: its Lease in kube-node-lease renewed, or its Ready condition's heartbeat changed —
the time of the observation is this controller's own clock (as upstream's probe
timestamps), so clock skew between kubelet and controller does not matter, and a
controller that just started gives every node a full grace period. A node heard from
longer ago than `grace` (`--node-monitor-grace-period`, 50 s since upstream 1.32) gets
every condition Unknown ("Kubelet stopped posting node status.", reason
NodeStatusUnknown; NodeStatusNeverUpdated if it never posted any).

Taints: Ready Unknown -> `node.kubernetes.io/unreachable`, Ready False ->
`node.kubernetes.io/not-ready`, each with NoSchedule at once and NoExecute through a
per-zone rate limiter (zone = topology.kubernetes.io/zone): `--node-eviction-rate` (0.1
nodes/s) in a Normal zone; in a PartiallyDisrupted zone (more than 2 and at least
`--unhealthy-zone-threshold` (55%) of its nodes not ready) `--secondary-node-eviction-rate`
(0.01/s) if the zone has more than `--large-cluster-size-threshold` (50) nodes, else
none; a FullDisruption zone (no ready node) the normal rate — unless every zone is fully
disrupted: then the controller assumes it is itself cut off, taints nothing and removes
the NoExecute taints it set (upstream's behaviour). A node Ready again loses the taints.
The NoExecute taints are what the taint eviction controller (tainteviction.py) acts on.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from ..client import LEASES, NODES, ApiError, TokenBucket
from .base import Context, Controller, now_rfc3339
from .podutil import md

log = logging.getLogger("kubeplane.controllers.nodelifecycle")
UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"
ZONE_LABEL = "topology.kubernetes.io/zone"
CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")


def ready_status(node: dict[str, Any]) -> str | None:
    for c in (node.get("status") or {}).get("conditions") or ():
        if c.get("type") == "Ready":
            return c.get("status")
    return None


def zone_of(node: dict[str, Any]) -> str:
    return (md(node).get("labels") or {}).get(ZONE_LABEL, "")


def zone_state(ready: int, not_ready: int, threshold: float) -> str:
    """upstream's ComputeZoneState."""
    if ready == 0 and not_ready > 0:
        return "FullDisruption"
    if not_ready > 2 and not_ready / (ready + not_ready) >= threshold:
        return "PartialDisruption"
    return "Normal"


class NodeLifecycleController(Controller):
    name = "nodelifecycle"
    component = "node-controller"
    default_workers = 1

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        o = ctx.options
        self.grace = float(o.get("node_monitor_grace_period", 50.0))
        self.period = float(o.get("node_monitor_period", 5.0))
        self.rate = float(o.get("node_eviction_rate", 0.1))
        self.secondary_rate = float(o.get("secondary_node_eviction_rate", 0.01))
        self.unhealthy_threshold = float(o.get("unhealthy_zone_threshold", 0.55))
        self.large_cluster = int(o.get("large_cluster_size_threshold", 50))
        self.nodes = self.factory.informer(NODES)
        self.leases = self.factory.informer(LEASES, namespace="kube-node-lease")
        self.heard: dict[str, float] = {}            # node -> when we last saw it alive (monotonic)
        self.buckets: dict[str, TokenBucket] = {}
        self.nodes.add_event_handler(on_add=self._node_seen, on_update=self._node_updated,
                                     on_delete=lambda o: self.heard.pop(md(getattr(o, "obj", o)).get("name"), None))
        self.leases.add_event_handler(on_add=self._lease, on_update=self._lease_updated)

    def _node_seen(self, node: dict[str, Any]) -> None:
        self.heard.setdefault(md(node)["name"], time.monotonic())

    @staticmethod
    def _heartbeat(node: dict[str, Any]) -> Any:
        for c in (node.get("status") or {}).get("conditions") or ():
            if c.get("type") == "Ready":
                return c.get("lastHeartbeatTime")
        return None

    def _node_updated(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        if self._heartbeat(old) != self._heartbeat(new) and ready_status(new) != "Unknown":
            self.heard[md(new)["name"]] = time.monotonic()

    def _lease(self, lease: dict[str, Any]) -> None:
        self.heard.setdefault(md(lease)["name"], time.monotonic())

    def _lease_updated(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        if (old.get("spec") or {}).get("renewTime") != (new.get("spec") or {}).get("renewTime"):
            self.heard[md(new)["name"]] = time.monotonic()

    async def run(self) -> None:
        self.queue.add("monitor")
        await super().run()

    def _bucket(self, zone: str, rate: float) -> TokenBucket | None:
        if rate <= 0:
            return None
        b = self.buckets.get(zone)
        if b is None or b.qps != rate:
            b = self.buckets[zone] = TokenBucket(rate, 1)
        return b

    async def sync(self, key: str) -> None:
        try:
            await self.monitor()
        finally:
            self.queue.add_after("monitor", self.period)

    async def monitor(self) -> None:
        now = time.monotonic()
        nodes = self.nodes.indexer.list()
        for node in nodes:
            name = md(node)["name"]
            seen = self.heard.setdefault(name, now)
            if now - seen > self.grace and ready_status(node) != "Unknown":
                await self._mark_unknown(node)
        # zones from the (possibly just updated) cache plus our own marks
        zones: dict[str, list[int]] = {}
        for node in self.nodes.indexer.list():
            st = ready_status(node)
            z = zones.setdefault(zone_of(node), [0, 0])
            z[0 if st == "True" else 1] += 1
        states = {z: zone_state(r, nr, self.unhealthy_threshold) for z, (r, nr) in zones.items()}
        all_down = bool(states) and all(s == "FullDisruption" for s in states.values())
        for node in self.nodes.indexer.list():
            await self._taints(node, states.get(zone_of(node), "Normal"), sum(zones.get(zone_of(node), [0, 0])),
                               all_down)

    async def _mark_unknown(self, node: dict[str, Any]) -> None:
        name = md(node)["name"]
        conds = [dict(c) for c in (node.get("status") or {}).get("conditions") or ()]
        now = now_rfc3339()
        have = {c.get("type") for c in conds}
        for t in CONDITIONS:
            if t not in have:
                conds.append({"type": t, "status": "Unknown", "reason": "NodeStatusNeverUpdated",
                              "message": "Kubelet never posted node status.", "lastHeartbeatTime": now,
                              "lastTransitionTime": now})
        for c in conds:
            if c.get("type") in CONDITIONS and c.get("status") != "Unknown":
                c.update(status="Unknown", reason="NodeStatusUnknown", message="Kubelet stopped posting node status.",
                         lastTransitionTime=now)
        log.info("node %s: not heard from for more than %.0fs: Ready=Unknown", name, self.grace)
        try:
            await self.client.patch(NODES.path(None, name, "status"), {"status": {"conditions": conds}},
                                    patch_type="strategic")
            self.recorder.event({**node, "apiVersion": "v1", "kind": "Node"},
                                "Normal", "NodeNotReady", f"Node {name} status is now: NodeNotReady")
        except ApiError as e:
            if e.status != 404:
                raise

    async def _taints(self, node: dict[str, Any], state: str, zone_size: int, all_down: bool) -> None:
        st = ready_status(node)
        want_key = UNREACHABLE if st == "Unknown" else NOT_READY if st == "False" else None
        taints = [dict(t) for t in (node.get("spec") or {}).get("taints") or ()]
        ours = {(t.get("key"), t.get("effect")) for t in taints if t.get("key") in (UNREACHABLE, NOT_READY)}
        want: set[tuple[str, str]] = set()
        if want_key is not None:
            want.add((want_key, "NoSchedule"))
            if (want_key, "NoExecute") in ours:
                want.add((want_key, "NoExecute"))
            elif not all_down:
                rate = self.rate if state in ("Normal", "FullDisruption") else \
                    (self.secondary_rate if zone_size > self.large_cluster else 0.0)
                bucket = self._bucket(zone_of(node), rate)
                if bucket is not None and bucket.try_take():
                    want.add((want_key, "NoExecute"))
            if all_down:
                want.discard((want_key, "NoExecute"))
        if want == ours:
            return
        kept = [t for t in taints if t.get("key") not in (UNREACHABLE, NOT_READY)]
        now = now_rfc3339()
        for key, effect in sorted(want):
            old = next((t for t in taints if t.get("key") == key and t.get("effect") == effect), None)
            kept.append(old or ({"key": key, "effect": effect, "timeAdded": now} if effect == "NoExecute"
                                else {"key": key, "effect": effect}))
        body = dict(node)
        body["spec"] = {**(node.get("spec") or {}), "taints": kept or None}
        try:
            await self.client.update(NODES.path(None, md(node)["name"]), body)
        except ApiError as e:
            if e.status not in (404, 409):       # 409: the next pass reads a fresher node
                raise
