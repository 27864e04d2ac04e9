"""The pod garbage collector (upstream's pod-garbage-collector), on a timer like
upstream's (every 20 s; `gc_period`):

- terminated pods (Succeeded/Failed) beyond `--terminated-pod-gc-threshold` (12,500;
  0 turns this off) are deleted, oldest first;
- pods bound to a node that no longer exists are deleted (grace period 0) once the node
  has been missing for the quarantine (40 s as upstream) and a fresh GET confirms it is
  gone (404) — a node merely late in the cache is never taken for deleted. As upstream,
  such a pod that is not yet terminal first gets the `DisruptionTarget` condition
  (reason DeletionByPodGC) and phase Failed;
- pods being deleted that were never scheduled are deleted at once (grace period 0).
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ..client import NODES, PODS, ApiError
from .base import Context, Controller, now_rfc3339, parse_time
from .podutil import md

log = logging.getLogger("kubeplane.controllers.podgc")


class PodGCController(Controller):
    name = "podgc"
    component = "pod-garbage-collector"
    default_workers = 1
    gc_period = 20.0

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.threshold = int(ctx.options.get("terminated_pod_gc_threshold", 12500))
        self.quarantine = float(ctx.options.get("pod_gc_orphan_quarantine", 40.0))
        self.gc_period = float(ctx.options.get("pod_gc_period", self.gc_period))
        self.pods = self.factory.informer(PODS)
        self.nodes = self.factory.informer(NODES)
        self.missing_since: dict[str, float] = {}

    async def run(self) -> None:
        """One pass now and every gc_period (the queue holds the single key "gc")."""
        self.queue.add("gc")
        await super().run()

    async def sync(self, key: str) -> None:
        try:
            await self.gc_terminated()
            await self.gc_orphaned()
            await self.gc_unscheduled_terminating()
        finally:
            # the next pass: the period, or sooner when a missing node's quarantine ends
            now = time.monotonic()
            ends = [t + self.quarantine - now for t in self.missing_since.values()]
            self.queue.add_after("gc", max(0.1, min([self.gc_period, *ends])))

    async def _delete(self, pod: dict[str, Any], grace: int | None = None) -> None:
        body: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": md(pod).get("uid")}}
        if grace is not None:
            body["gracePeriodSeconds"] = grace
        try:
            await self.client.delete(PODS.path(md(pod)["namespace"], md(pod)["name"]), body=body)
        except ApiError as e:
            if e.status not in (404, 409):
                raise

    async def gc_terminated(self) -> None:
        if self.threshold <= 0:
            return
        done = [p for p in self.pods.indexer.list()
                if (p.get("status") or {}).get("phase") in ("Succeeded", "Failed") and not md(p).get("deletionTimestamp")]
        extra = len(done) - self.threshold
        if extra <= 0:
            return
        done.sort(key=lambda p: (parse_time(md(p).get("creationTimestamp")) or 0.0, md(p).get("name") or ""))
        log.info("deleting %d terminated pods over the threshold %d", extra, self.threshold)
        await asyncio.gather(*(self._delete(p) for p in done[:extra]))

    async def gc_orphaned(self) -> None:
        now = time.monotonic()
        on_nodes: dict[str, list[dict[str, Any]]] = {}
        for p in self.pods.indexer.list():
            n = (p.get("spec") or {}).get("nodeName")
            if n and self.nodes.indexer.get(n) is None:
                on_nodes.setdefault(n, []).append(p)
        for n in list(self.missing_since):
            if n not in on_nodes:
                del self.missing_since[n]
        for node, pods in on_nodes.items():
            since = self.missing_since.setdefault(node, now)
            if now - since < self.quarantine:
                continue
            try:
                await self.client.get(NODES.path(None, node))
                continue                         # it exists: our cache was behind
            except ApiError as e:
                if e.status != 404:
                    raise
            for p in pods:
                if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                    cond = {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByPodGC",
                            "message": "PodGC: node no longer exists", "lastTransitionTime": now_rfc3339()}
                    try:
                        await self.client.patch(PODS.path(md(p)["namespace"], md(p)["name"], "status"),
                                                {"status": {"phase": "Failed", "conditions": [cond]}},
                                                patch_type="strategic")
                    except ApiError as e:
                        if e.status != 404:
                            log.info("podgc: marking %s/%s: %s", md(p)["namespace"], md(p)["name"], e)
                await self._delete(p, grace=0)

    async def gc_unscheduled_terminating(self) -> None:
        for p in self.pods.indexer.list():
            if md(p).get("deletionTimestamp") and not (p.get("spec") or {}).get("nodeName"):
                await self._delete(p, grace=0)
