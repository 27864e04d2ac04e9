"""The EndpointSlice controller (upstream's endpointslice-controller): for every Service
with a selector, EndpointSlices of at most `max_endpoints` (100, upstream's
--max-endpoints-per-slice) endpoints each, so one pod's change rewrites one small object
(seed 003: a single Endpoints object of thousands of addresses was rewritten whole on
every change).

Slices carry upstream's labels (`kubernetes.io/service-name`,
`endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io`), a controller
reference to the Service, `generateName: <service>-`, the address type of the Service's
first IP family, and the ports by name as resolved on the pods (a named targetPort may
resolve differently per pod: pods are grouped by their resolved port set, one group's
endpoints never share a slice with another's).

Reconciling keeps churn low, as upstream's reconciler: an endpoint that stays stays in
its slice (updated in place if its conditions changed); gone endpoints are removed; new
ones fill the existing slices' free room before a new slice is made; a slice left empty
is deleted; only changed slices are written. A Service with no endpoints keeps one empty
slice (upstream's placeholder).
"""
from __future__ import annotations

import logging
from typing import Any

from ..client import ENDPOINT_SLICES, PODS, SERVICES, ApiError
from .base import Context, Controller, unwrap
from .endpointutil import (LABEL_MANAGED_BY, LABEL_SERVICE_NAME, MANAGED_BY, conditions, ip_family,
                           matching_pods, pod_ips, pod_ports, service_matcher, target_ref, wants_endpoints)
from .podutil import md
from ..client.selectors import labels_of

log = logging.getLogger("kubeplane.controllers.endpointslice")
MAX_ENDPOINTS = 100
SERVICE_INDEX = "serviceName"


def _service_index(obj: dict[str, Any]) -> list[str]:
    m = md(obj)
    name = (m.get("labels") or {}).get(LABEL_SERVICE_NAME)
    if name and (m.get("labels") or {}).get(LABEL_MANAGED_BY) == MANAGED_BY:
        return [f"{m.get('namespace')}/{name}"]
    return []


def _ports_json(ports: tuple[tuple[str, str, int, str | None], ...]) -> list[dict[str, Any]]:
    out = []
    for name, proto, port, app in ports:
        p: dict[str, Any] = {"name": name, "protocol": proto, "port": port}
        if app:
            p["appProtocol"] = app
        out.append(p)
    return out


def _ports_key(slice_: dict[str, Any]) -> tuple[tuple[str, str, int, str | None], ...]:
    return tuple(sorted(((p.get("name") or "", p.get("protocol") or "TCP", int(p.get("port") or 0),
                          p.get("appProtocol")) for p in slice_.get("ports") or ()), key=lambda t: (t[0], t[1], t[2])))


class EndpointSliceController(Controller):
    name = "endpointslice"
    component = "endpoint-slice-controller"
    max_endpoints = MAX_ENDPOINTS

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.services = self.factory.informer(SERVICES)
        self.pods = self.factory.informer(PODS)
        self.slices = self.factory.informer(ENDPOINT_SLICES)
        self.slices.add_indexers({SERVICE_INDEX: _service_index})
        self.services.add_event_handler(on_add=self.enqueue, on_update=lambda o, n: self.enqueue(n),
                                        on_delete=lambda o: self.enqueue(unwrap(o)))
        self.pods.add_event_handler(on_add=self._pod, on_update=self._pod_updated,
                                    on_delete=lambda o: self._pod(unwrap(o)))
        self.slices.add_event_handler(on_add=self._slice, on_update=lambda o, n: self._slice(n),
                                      on_delete=lambda o: self._slice(unwrap(o)))
        # our own writes not yet seen in the cache, per Service: slice name -> the
        # resourceVersion written (None: deleted). Upstream's EndpointSliceTracker: a sync
        # from a cache that misses our last writes would create duplicate slices.
        self.written: dict[str, dict[str, int | None]] = {}

    def _pod(self, pod: dict[str, Any]) -> None:
        ns = md(pod).get("namespace") or ""
        labels = labels_of(pod)
        for svc in self.services.indexer.by_index("namespace", ns):
            if wants_endpoints(svc) and service_matcher(svc)(labels):
                self.enqueue(svc)

    def _pod_updated(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        if md(old).get("resourceVersion") == md(new).get("resourceVersion"):
            return
        self._pod(new)
        if labels_of(old) != labels_of(new):
            self._pod(old)

    def _slice(self, s: dict[str, Any]) -> None:
        for key in _service_index(s):
            self.queue.add(key)

    # --- sync ------------------------------------------------------------------------------
    def desired(self, svc: dict[str, Any], pods: list[dict[str, Any]], family: str) -> dict[Any, dict[str, dict]]:
        """{port set: {pod uid: endpoint}} for the Service."""
        pnr = bool((svc.get("spec") or {}).get("publishNotReadyAddresses"))
        out: dict[Any, dict[str, dict]] = {}
        for pod in matching_pods(svc, pods):
            ips = [ip for ip in pod_ips(pod) if ip_family(ip) == family]
            if not ips:
                continue
            ep: dict[str, Any] = {"addresses": ips[:1], "conditions": conditions(pod, pnr), "targetRef": target_ref(pod)}
            node = (pod.get("spec") or {}).get("nodeName")
            if node:
                ep["nodeName"] = node
            out.setdefault(pod_ports(svc, pod), {})[md(pod).get("uid") or ""] = ep
        return out

    async def sync(self, key: str) -> None:
        svc = self.services.indexer.get(key)
        if svc is None:
            self.written.pop(key, None)
            return        # a deleted Service's slices go with it (owner reference, cascading delete)
        if not wants_endpoints(svc) or md(svc).get("deletionTimestamp"):
            return
        ns = md(svc).get("namespace") or ""
        if self._stale(key, ns):
            return            # the slice events we wait for enqueue the Service again
        families = (svc.get("spec") or {}).get("ipFamilies") or ["IPv4"]
        family = families[0]
        want = self.desired(svc, self.pods.indexer.by_index("namespace", ns), family)
        existing = [s for s in self.slices.indexer.by_index(SERVICE_INDEX, key)
                    if s.get("addressType") == family and not md(s).get("deletionTimestamp")]
        plan = self.plan(want, existing)
        written = self.written.setdefault(key, {})
        for s in plan["delete"]:
            try:
                await self.client.delete(ENDPOINT_SLICES.path(ns, md(s)["name"]),
                                         body={"apiVersion": "v1", "kind": "DeleteOptions",
                                               "preconditions": {"uid": md(s).get("uid")}})
                written[md(s)["name"]] = None
            except ApiError as e:
                if e.status not in (404, 409):
                    raise
        for s in plan["update"]:
            s = {**s, "metadata": {**md(s), "labels": self._labels(svc, md(s).get("labels"))}}
            out = await self.client.update(ENDPOINT_SLICES.path(ns, md(s)["name"]), s)
            written[md(out)["name"]] = int(md(out).get("resourceVersion") or 0)
        for ports, eps in plan["create"]:
            body = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"generateName": f"{md(svc)['name']}-", "namespace": ns,
                                 "labels": self._labels(svc, None),
                                 "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": md(svc)["name"],
                                                      "uid": md(svc).get("uid"), "controller": True,
                                                      "blockOwnerDeletion": True}]},
                    "addressType": family, "endpoints": eps, "ports": _ports_json(ports)}
            out = await self.client.create(ENDPOINT_SLICES.path(ns), body)
            written[md(out)["name"]] = int(md(out).get("resourceVersion") or 0)
        if not written:
            self.written.pop(key, None)

    def _stale(self, key: str, ns: str) -> bool:
        """True while the cache misses one of our writes for this Service."""
        written = self.written.get(key)
        if not written:
            return False
        for name, rv in list(written.items()):
            cached = self.slices.indexer.get(f"{ns}/{name}")
            if rv is None:
                seen = cached is None
            else:
                seen = cached is not None and int(md(cached).get("resourceVersion") or 0) >= rv
            if seen:
                del written[name]
        if not written:
            del self.written[key]
            return False
        return True

    @staticmethod
    def _labels(svc: dict[str, Any], current: dict[str, str] | None) -> dict[str, str]:
        labels = {k: v for k, v in (md(svc).get("labels") or {}).items()}
        labels.update({LABEL_SERVICE_NAME: md(svc)["name"], LABEL_MANAGED_BY: MANAGED_BY})
        if (svc.get("spec") or {}).get("clusterIP") == "None":
            labels["service.kubernetes.io/headless"] = ""
        return labels

    def plan(self, want: dict[Any, dict[str, dict]], existing: list[dict[str, Any]]) -> dict[str, list]:
        """What to write: {"create": [(ports, endpoints)], "update": [slice], "delete": [slice]}."""
        cap = self.max_endpoints
        create: list[tuple[Any, list[dict]]] = []
        update: list[dict[str, Any]] = []
        delete: list[dict[str, Any]] = []
        by_ports: dict[Any, list[dict[str, Any]]] = {}
        for s in sorted(existing, key=lambda s: md(s).get("name") or ""):
            by_ports.setdefault(_ports_key(s), []).append(s)
        if not any(want.values()):
            # upstream's placeholder: one empty slice without ports when nothing serves
            keep = None
            for ports, slices in by_ports.items():
                for s in slices:
                    if keep is None and not ports:
                        keep = s
                        if s.get("endpoints"):
                            update.append({**s, "endpoints": []})
                    else:
                        delete.append(s)
            if keep is None:
                create.append(((), []))
            return {"create": create, "update": update, "delete": delete}
        for ports, slices in by_ports.items():
            if ports not in want:
                delete.extend(slices)
        for ports, eps in want.items():
            todo = dict(eps)                         # uid -> endpoint, not placed yet
            slices = by_ports.get(ports, [])
            kept: list[tuple[dict[str, Any], list[dict]]] = []
            for s in slices:
                new_eps = []
                for ep in s.get("endpoints") or ():
                    uid = (ep.get("targetRef") or {}).get("uid") or ""
                    if uid in todo and len(new_eps) < cap:
                        new_eps.append(todo.pop(uid))
                kept.append((s, new_eps))
            rest = list(todo.values())
            for s, new_eps in kept:               # fill free room before making new slices
                room = cap - len(new_eps)
                if room > 0 and rest:
                    new_eps.extend(rest[:room])
                    rest = rest[room:]
            for s, new_eps in kept:
                if not new_eps:
                    delete.append(s)
                elif new_eps != (s.get("endpoints") or []):
                    update.append({**s, "endpoints": new_eps})
            for i in range(0, len(rest), cap):
                create.append((ports, rest[i:i + cap]))
        return {"create": create, "update": update, "delete": delete}
