"""The Endpoints controller (upstream's endpoint-controller): one core/v1 Endpoints
object per Service with a selector, named after it, for the clients that still read
Endpoints. Subsets group addresses by the ports they serve (a named targetPort may
resolve differently per pod); ready pods go to `addresses`, pods that are not ready and
not terminating to `notReadyAddresses` (with publishNotReadyAddresses every pod is
ready). A deleted Service's Endpoints object is deleted. As upstream, at most 1000 addresses are kept (ready first) and the object is
then annotated `endpoints.kubernetes.io/over-capacity: truncated`: EndpointSlices are
the scalable API."""
from __future__ import annotations

from typing import Any

from ..client import ENDPOINTS, PODS, SERVICES, ApiError
from .base import Context, Controller, unwrap
from .endpointutil import (conditions, matching_pods, pod_ips, pod_ports, service_matcher, target_ref,
                           wants_endpoints)
from .podutil import md
from ..client.selectors import labels_of

MAX_ADDRESSES = 1000
OVER_CAPACITY = "endpoints.kubernetes.io/over-capacity"


class EndpointsController(Controller):
    name = "endpoint"
    component = "endpoint-controller"

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.services = self.factory.informer(SERVICES)
        self.pods = self.factory.informer(PODS)
        self.endpoints = self.factory.informer(ENDPOINTS)
        self.services.add_event_handler(on_add=self.enqueue, on_update=lambda o, n: self.enqueue(n),
                                        on_delete=lambda o: self.enqueue(unwrap(o)))
        self.pods.add_event_handler(on_add=self._pod, on_update=self._pod_updated,
                                    on_delete=lambda o: self._pod(unwrap(o)))
        self.endpoints.add_event_handler(on_update=lambda o, n: self.enqueue(n))

    def _pod(self, pod: dict[str, Any]) -> None:
        labels = labels_of(pod)
        for svc in self.services.indexer.by_index("namespace", md(pod).get("namespace") or ""):
            if wants_endpoints(svc) and service_matcher(svc)(labels):
                self.enqueue(svc)

    def _pod_updated(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        if md(old).get("resourceVersion") != md(new).get("resourceVersion"):
            self._pod(new)
            if labels_of(old) != labels_of(new):
                self._pod(old)

    def subsets(self, svc: dict[str, Any], pods: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
        pnr = bool((svc.get("spec") or {}).get("publishNotReadyAddresses"))
        groups: dict[Any, tuple[list[dict], list[dict]]] = {}
        for pod in matching_pods(svc, pods):
            cond = conditions(pod, pnr)
            if cond["terminating"] and not pnr:
                continue
            addr: dict[str, Any] = {"ip": pod_ips(pod)[0], "targetRef": target_ref(pod)}
            if (pod.get("spec") or {}).get("nodeName"):
                addr["nodeName"] = pod["spec"]["nodeName"]
            ready, not_ready = groups.setdefault(pod_ports(svc, pod), ([], []))
            (ready if cond["ready"] or pnr else not_ready).append(addr)
        out, total, truncated = [], 0, False
        for ports, (ready, not_ready) in sorted(groups.items(), key=lambda kv: kv[0]):
            ready.sort(key=lambda a: a["ip"])
            not_ready.sort(key=lambda a: a["ip"])
            room = MAX_ADDRESSES - total
            if len(ready) + len(not_ready) > room:
                truncated = True
                ready = ready[:room]
                not_ready = not_ready[:max(0, room - len(ready))]
            total += len(ready) + len(not_ready)
            sub: dict[str, Any] = {}
            if ready:
                sub["addresses"] = ready
            if not_ready:
                sub["notReadyAddresses"] = not_ready
            if ports:
                sub["ports"] = [{"name": n, "port": p, "protocol": proto, **({"appProtocol": a} if a else {})}
                                for n, proto, p, a in ports]
            if ready or not_ready:
                out.append(sub)
        return out, truncated

    async def sync(self, key: str) -> None:
        svc = self.services.indexer.get(key)
        if svc is None:
            # the Service is gone: so is its Endpoints object (upstream deletes it too)
            cur = self.endpoints.indexer.get(key)
            if cur is not None:
                try:
                    await self.client.delete(ENDPOINTS.path(md(cur)["namespace"], md(cur)["name"]),
                                             body={"apiVersion": "v1", "kind": "DeleteOptions",
                                                   "preconditions": {"uid": md(cur).get("uid")}})
                except ApiError as e:
                    if e.status not in (404, 409):
                        raise
            return
        if not wants_endpoints(svc) or md(svc).get("deletionTimestamp"):
            return
        ns, name = md(svc)["namespace"], md(svc)["name"]
        subsets, truncated = self.subsets(svc, self.pods.indexer.by_index("namespace", ns))
        labels = dict(md(svc).get("labels") or {})
        if (svc.get("spec") or {}).get("clusterIP") == "None":
            labels["service.kubernetes.io/headless"] = ""
        cur = self.endpoints.indexer.get(key)
        ann = dict((md(cur).get("annotations") or {}) if cur else {})
        if truncated:
            ann[OVER_CAPACITY] = "truncated"
        else:
            ann.pop(OVER_CAPACITY, None)
        if cur is not None and (cur.get("subsets") or []) == subsets and (md(cur).get("labels") or {}) == labels \
                and (md(cur).get("annotations") or {}) == ann:
            return
        body = {"apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": name, "namespace": ns, "labels": labels or None, "annotations": ann or None},
                "subsets": subsets or None}
        # a 409 (cache behind) raises: the key is retried with backoff from a fresher cache
        if cur is None:
            await self.client.create(ENDPOINTS.path(ns), body)
        else:
            body["metadata"]["resourceVersion"] = md(cur).get("resourceVersion")
            await self.client.update(ENDPOINTS.path(ns, name), body)
