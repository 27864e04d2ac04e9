"""Heartbeats: each hollow node renews its Lease every 10 s (plus up to 4% jitter, as the
kubelet's JitterUntil) and posts its status every 5 minutes and when it changes.

No task sleeps per node: every next renewal is a `loop.call_at` entry on the event
loop's own timer heap (one TimerHandle per node, about 100 bytes), and each renewal, when
due, is a short task doing one PUT. The next one is planned from when this one was due,
not from when it finished, so a slow answer shows up as lag instead of stretching the
period; a node never has two renewals in flight.

Renewals go through their own client (the kubelet's separate heartbeat client), so a
burst of pod writes never queues a Lease behind it in the rate limiter.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import TYPE_CHECKING

from kubeplane.client import ApiConnectionError, ApiError

from .objects import LEASE_NAMESPACE, lease_object, node_status

if TYPE_CHECKING:
    from .simulator import HollowNode, Simulator

log = logging.getLogger("kubeplane.sim.nodes")

JITTER = 0.04


class Heartbeats:
    def __init__(self, sim: "Simulator", lease_interval: float = 10.0, status_interval: float = 300.0,
                 rng: random.Random | None = None):
        self.sim = sim
        self.lease_interval = lease_interval
        self.status_interval = status_interval
        self.rng = rng or random.Random()
        self.loop = asyncio.get_running_loop()

    # --- planning ---------------------------------------------------------------------------
    def start(self, node: "HollowNode", first_lease: float | None = None) -> None:
        """Plan the node's next renewal (by default one period from now) and its next
        status post (spread over the first period so nodes registered together do not
        post together five minutes later)."""
        now = time.time()
        self._plan_lease(node, now + self.lease_interval if first_lease is None else first_lease)
        self._plan_status(node, now + self.status_interval * self.rng.uniform(0.5, 1.0))

    def stop(self, node: "HollowNode") -> None:
        for h in (node.lease_timer, node.status_timer):
            if h is not None:
                h.cancel()
        node.lease_timer = node.status_timer = None

    def _plan_lease(self, node: "HollowNode", due: float) -> None:
        node.lease_due = due
        node.lease_timer = self.loop.call_at(self._loop_time(due), self._lease_due, node, due)

    def _plan_status(self, node: "HollowNode", due: float) -> None:
        node.status_timer = self.loop.call_at(self._loop_time(due), self._status_due, node)

    def _loop_time(self, wall: float) -> float:
        return self.loop.time() + (wall - time.time())

    def _lease_due(self, node: "HollowNode", due: float) -> None:
        node.lease_timer = None
        if not node.stopped:
            self.sim.spawn(self.renew(node, due))

    def _status_due(self, node: "HollowNode") -> None:
        node.status_timer = None
        if not node.stopped:
            self.sim.spawn(self.post_status(node, periodic=True))

    # --- the writes -------------------------------------------------------------------------
    async def renew(self, node: "HollowNode", due: float) -> None:
        """PUT the Lease with a new renewTime, optimistic on the last resourceVersion seen;
        on a conflict (someone else wrote it) read it and try once more; when it is gone,
        create it."""
        client = self.sim.hb_client
        path = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases/{node.name}"
        ok = False
        try:
            for _ in range(2):
                try:
                    got = await client.update(path, lease_object(node.name, node.uid, time.time(), node.lease_rv))
                    node.lease_rv = got["metadata"]["resourceVersion"]
                    ok = True
                    break
                except ApiError as e:
                    if e.status == 409:
                        cur = await client.get(path)
                        node.lease_rv = cur["metadata"]["resourceVersion"]
                    elif e.status == 404:
                        got = await client.create(f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases",
                                                  lease_object(node.name, node.uid, time.time()))
                        node.lease_rv = got["metadata"]["resourceVersion"]
                        ok = True
                        break
                    else:
                        raise
        except (ApiError, ApiConnectionError, KeyError) as e:
            log.warning("node %s: lease renewal failed: %s", node.name, e)
        self.sim.metrics.heartbeat(time.time() - due, ok)
        if node.stopped or self.sim.closing:
            return
        nxt = due + self.lease_interval * (1 + self.rng.uniform(0, JITTER))
        if not ok:      # retry soon, as the kubelet's lease controller backs off from 200 ms up to 7 s
            nxt = time.time() + min(7.0, 0.2 * 2 ** min(node.lease_failures, 5))
            node.lease_failures += 1
        else:
            node.lease_failures = 0
        self._plan_lease(node, max(nxt, time.time()))

    async def post_status(self, node: "HollowNode", periodic: bool = False) -> bool:
        """A strategic merge patch of the node's status: conditions (by type), addresses,
        kubelet endpoint, nodeInfo, with a fresh lastHeartbeatTime."""
        ok = False
        try:
            await self.sim.hb_client.patch(
                f"/api/v1/nodes/{node.name}/status",
                {"status": node_status(node.name, node.ordinal, self.sim.options.shape, node.host, node.port,
                                       time.time(), ready=not node.stopped)}, "strategic")
            ok = True
        except (ApiError, ApiConnectionError) as e:
            log.warning("node %s: status update failed: %s", node.name, e)
        self.sim.metrics.node_status.labels("ok" if ok else "failed").inc()
        if periodic and not node.stopped and not self.sim.closing:
            self._plan_status(node, time.time() + self.status_interval * (1 + self.rng.uniform(0, JITTER)))
        return ok
