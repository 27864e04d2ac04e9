"""The garbage collector's absent-owner rule (upstream's garbagecollector
attemptToDelete), for dependents whose owners are gone.

Who owns cascading deletion (docs/controllers.md): the API server deletes dependents
right after their owner (background), and runs the foregroundDeletion and orphan
finalizers, in its own process. This controller covers what that cannot: dependents
whose owners went while the cascade could not run (the server stopped between the
owner's delete and the cascade, owners deleted while kubeplane was down, a restore).

Rule, as upstream: for an object with ownerReferences, each owner is looked up (the
informer cache first, then a live GET by name, since a cache may lag a create); an owner
is absent when the GET answers 404 or an object with another uid. All owners absent:
the dependent is deleted (background, with a uid precondition). Some absent: the
dangling references are removed with a strategic merge patch. An owner of a kind this
controller does not watch and cannot resolve counts as present: in doubt, nothing is
deleted.
"""
from __future__ import annotations

import logging
from typing import Any

from ..client import (CONFIGMAPS, CRON_JOBS, DAEMON_SETS, DEPLOYMENTS, ENDPOINT_SLICES, ENDPOINTS, JOBS,
                      PERSISTENT_VOLUME_CLAIMS, POD_DISRUPTION_BUDGETS, PODS, REPLICA_SETS, SECRETS, SERVICE_ACCOUNTS,
                      SERVICES, STATEFUL_SETS, ApiError, Resource, meta_key)
from .base import Context, Controller, unwrap
from .podutil import md

log = logging.getLogger("kubeplane.controllers.garbagecollector")

WATCHED: tuple[Resource, ...] = (PODS, REPLICA_SETS, DEPLOYMENTS, STATEFUL_SETS, DAEMON_SETS, JOBS, CRON_JOBS,
                                 CONFIGMAPS, SECRETS, SERVICES, ENDPOINTS, ENDPOINT_SLICES, PERSISTENT_VOLUME_CLAIMS,
                                 SERVICE_ACCOUNTS, POD_DISRUPTION_BUDGETS)


class GarbageCollector(Controller):
    name = "garbagecollector"
    component = "garbage-collector-controller"
    default_workers = 5                       # upstream's --concurrent-gc-syncs is 20
    requires = ()
    optional = WATCHED                        # watched where served (the manager checks discovery)

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        served = ctx.served if ctx.served is not None else set(WATCHED)
        self.resources = [r for r in WATCHED if r in served]
        self.by_kind: dict[tuple[str, str], Resource] = {(r.api_version, r.kind): r for r in self.resources}
        self.by_plural = {r.plural + "." + r.group: r for r in self.resources}
        self.informers = {}
        self.dependents: dict[str, set[str]] = {}      # owner uid -> queue keys of its dependents
        for res in self.resources:
            inf = self.factory.informer(res)
            self.informers[res] = inf
            inf.add_event_handler(on_add=lambda o, r=res: self._seen(r, o),
                                  on_update=lambda old, new, r=res: self._seen(r, new, old),
                                  on_delete=lambda o, r=res: self._gone(r, unwrap(o)))

    @staticmethod
    def _qkey(res: Resource, obj: dict[str, Any]) -> str:
        return f"{res.plural}.{res.group}|{meta_key(obj)}"

    def _seen(self, res: Resource, obj: dict[str, Any], old: dict[str, Any] | None = None) -> None:
        refs = md(obj).get("ownerReferences") or ()
        key = self._qkey(res, obj)
        if old is not None:
            for r in md(old).get("ownerReferences") or ():
                if r not in refs:
                    self.dependents.get(r.get("uid"), set()).discard(key)
        if not refs:
            return
        for r in refs:
            self.dependents.setdefault(r.get("uid") or "", set()).add(key)
        if old is None or (md(old).get("ownerReferences") or ()) != refs:
            self.queue.add(key)

    def _gone(self, res: Resource, obj: dict[str, Any]) -> None:
        key = self._qkey(res, obj)
        for r in md(obj).get("ownerReferences") or ():
            deps = self.dependents.get(r.get("uid") or "")
            if deps is not None:
                deps.discard(key)
                if not deps:
                    del self.dependents[r.get("uid") or ""]
        for dep in sorted(self.dependents.get(md(obj).get("uid") or "", ())):
            self.queue.add(dep)

    # --- sync ------------------------------------------------------------------------------
    async def _owner_absent(self, ns: str | None, ref: dict[str, Any]) -> bool:
        res = self.by_kind.get((ref.get("apiVersion") or "", ref.get("kind") or ""))
        if res is None:
            return False                      # a kind we cannot resolve: assume present
        name = ref.get("name") or ""
        cached = self.informers[res].indexer.get(f"{ns}/{name}" if res.namespaced and ns else name)
        if cached is not None and md(cached).get("uid") == ref.get("uid"):
            return False
        try:
            live = await self.client.get(res.path(ns if res.namespaced else None, name))
        except ApiError as e:
            if e.status == 404:
                return True
            raise
        return md(live).get("uid") != ref.get("uid")

    async def sync(self, key: str) -> None:
        plural, _, okey = key.partition("|")
        res = self.by_plural.get(plural)
        if res is None:
            return
        obj = self.informers[res].indexer.get(okey)
        if obj is None or md(obj).get("deletionTimestamp"):
            return
        refs = md(obj).get("ownerReferences") or []
        if not refs:
            return
        ns = md(obj).get("namespace")
        absent = [r for r in refs if await self._owner_absent(ns, r)]
        if not absent:
            return
        path = res.path(ns if res.namespaced else None, md(obj).get("name"))
        try:
            if len(absent) == len(refs):
                log.info("deleting %s %s: its owners are gone", res.kind, okey)
                await self.client.delete(path, body={"apiVersion": "v1", "kind": "DeleteOptions",
                                                     "propagationPolicy": "Background",
                                                     "preconditions": {"uid": md(obj).get("uid")}})
            else:
                patch = {"metadata": {"ownerReferences": [{"$patch": "delete", "uid": r.get("uid")} for r in absent],
                                      "uid": md(obj).get("uid")}}
                await self.client.patch(path, patch, patch_type="strategic")
        except ApiError as e:
            if e.status not in (404, 409):
                raise
