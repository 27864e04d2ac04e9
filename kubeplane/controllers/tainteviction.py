"""The taint eviction controller (upstream's taint-eviction-controller, formerly the
NoExecuteTaintManager): a pod on a node with NoExecute taints it does not tolerate is
deleted; one that tolerates them all for a while (tolerationSeconds) is deleted when the
shortest of those runs out, counted from each taint's timeAdded; one that tolerates them
forever stays. Before the delete the pod gets the DisruptionTarget condition (reason
DeletionByTaintManager), and an event `TaintManagerEviction` "Marking for deletion Pod
NS/NAME" is recorded, as upstream."""
from __future__ import annotations

import time
from typing import Any

from ..client import NODES, PODS, ApiError, Indexer
from ..client.selectors import tolerates
from .base import Context, Controller, now_rfc3339, parse_time
from .podutil import md


def eviction_time(pod: dict[str, Any], taints: list[dict[str, Any]], now: float) -> float | None:
    """When the pod must go (now for an untolerated taint), None if never."""
    no_exec = [t for t in taints if t.get("effect") == "NoExecute"]
    if not no_exec:
        return None
    tols = (pod.get("spec") or {}).get("tolerations") or ()
    when: float | None = None
    for taint in no_exec:
        matching = [t for t in tols if tolerates(t, taint)]
        if not matching:
            return now
        secs = [t.get("tolerationSeconds") for t in matching]
        if any(s is None for s in secs):
            continue                                   # tolerated forever
        added = parse_time(taint.get("timeAdded")) or now
        t = added + max(0, min(int(s) for s in secs))
        when = t if when is None else min(when, t)
    return when


class TaintEvictionController(Controller):
    name = "taint-eviction-controller"
    component = "taint-eviction-controller"

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.nodes = self.factory.informer(NODES)
        self.pods = self.factory.informer(PODS)
        self.pods.add_indexers({Indexer.NODE_NAME: _node_name})
        self.nodes.add_event_handler(on_add=self._node, on_update=lambda o, n: self._node(n) if
                                     (o.get("spec") or {}).get("taints") != (n.get("spec") or {}).get("taints") else None)
        self.pods.add_event_handler(on_add=self._pod, on_update=lambda o, n: self._pod(n))

    def _node(self, node: dict[str, Any]) -> None:
        if any(t.get("effect") == "NoExecute" for t in (node.get("spec") or {}).get("taints") or ()):
            for p in self.pods.indexer.by_index(Indexer.NODE_NAME, md(node)["name"]):
                self.enqueue(p)

    def _pod(self, pod: dict[str, Any]) -> None:
        n = (pod.get("spec") or {}).get("nodeName")
        if n and not md(pod).get("deletionTimestamp"):
            node = self.nodes.indexer.get(n)
            if node is not None and any(t.get("effect") == "NoExecute" for t in (node.get("spec") or {}).get("taints") or ()):
                self.enqueue(pod)

    async def sync(self, key: str) -> None:
        pod = self.pods.indexer.get(key)
        if pod is None or md(pod).get("deletionTimestamp"):
            return
        node = self.nodes.indexer.get((pod.get("spec") or {}).get("nodeName") or "")
        if node is None:
            return
        now = time.time()
        when = eviction_time(pod, (node.get("spec") or {}).get("taints") or [], now)
        if when is None:
            return
        if when > now:
            self.enqueue_after(key, when - now + 0.05)
            return
        ns, name = md(pod)["namespace"], md(pod)["name"]
        self.recorder.event(pod, "Normal", "TaintManagerEviction", f"Marking for deletion Pod {ns}/{name}")
        cond = {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
                "message": "Taint manager: deleting due to NoExecute taint", "lastTransitionTime": now_rfc3339()}
        try:
            await self.client.patch(PODS.path(ns, name, "status"), {"status": {"conditions": [cond]}},
                                    patch_type="strategic")
            await self.client.delete(PODS.path(ns, name), body={"apiVersion": "v1", "kind": "DeleteOptions",
                                                                 "preconditions": {"uid": md(pod).get("uid")}})
        except ApiError as e:
            if e.status not in (404, 409):
                raise


def _node_name(obj: dict[str, Any]) -> list[str]:
    return [(obj.get("spec") or {}).get("nodeName") or ""]
