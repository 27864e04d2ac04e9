"""delete and deletecollection: preconditions, finalizers, graceful pod deletion,
propagation to dependents (ownerReferences)."""
from __future__ import annotations

import copy
from typing import Any

from ..machinery import codec, errors
from ..machinery.errors import APIError, Cause
from ..transport.http import Request, Response
from ..registry.strategy_kinds import SYSTEM_PRIORITY_CLASSES
from ..registry.resources import ResourceInfo
from ..registry.selectors import FieldSelector, LabelSelector, field_set
from ..registry.storage import decode, key_of
from .checks import decode_typed
from .common import Route, _RETURNS_DELETED, _accept, _dry_run, _int_param, _json, log, now_rfc3339


_DELETE_OPTIONS = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"


class Deletes:
    """Mixin of RESTHandlers (handlers.py): needs .objects, .registry, .spawn and the other mixins."""

    def _delete_options(self, req: Request) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        if req.body.strip():
            opts = decode_typed(req, _DELETE_OPTIONS, "DeleteOptions")
        for name in ("gracePeriodSeconds",):
            v = req.param(name)
            if v is not None:
                opts[name] = _int_param(req, name, 0)
        v = req.param("propagationPolicy")
        if v is not None:
            opts["propagationPolicy"] = v
        v = req.param("orphanDependents")
        if v is not None:
            opts["orphanDependents"] = v.lower() == "true"
        pp = opts.get("propagationPolicy")
        if pp is not None and pp not in ("Orphan", "Background", "Foreground"):
            raise errors.invalid("", "DeleteOptions", "", [Cause(
                "FieldValueNotSupported", "propagationPolicy",
                f'Unsupported value: "{pp}": supported values: "Foreground", "Background", "Orphan", "nil"')])
        gp = opts.get("gracePeriodSeconds")
        if gp is not None and not isinstance(gp, int):
            raise errors.bad_request("gracePeriodSeconds must be an integer")
        if _dry_run(req):
            opts["dryRun"] = ["All"]
        return opts

    async def delete(self, req: Request, route: Route) -> Response:
        accept = _accept(req, route.info)
        opts = self._delete_options(req)
        obj, status = await self.delete_one(route.info, route.namespace, route.name or "", opts)
        return _json(status, obj, accept=accept)

    async def delete_one(self, info: ResourceInfo, namespace: str | None, name: str,
                         opts: dict[str, Any]) -> tuple[dict[str, Any], int]:
        if info.group == "scheduling.k8s.io" and name in SYSTEM_PRIORITY_CLASSES:
            raise errors.APIError(403, "Forbidden", f'{info.qualified} "{name}" is forbidden: this is a system '
                                  "priority class and cannot be deleted", {"name": name, "group": info.group,
                                                                           "kind": info.plural})
        dry = bool(opts.get("dryRun"))
        pre = opts.get("preconditions") or {}
        for _ in range(16):
            kv = await self.objects.get_kv(key_of(info, namespace, name))
            if kv is None:
                raise errors.not_found(info.group, info.plural, name)
            obj = decode(kv)
            md = obj["metadata"]
            if pre.get("uid") and pre["uid"] != md.get("uid"):
                raise errors.conflict(info.group, info.plural, name,
                                      f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: "
                                      f"{md.get('uid')}")
            if pre.get("resourceVersion") and str(pre["resourceVersion"]) != md["resourceVersion"]:
                raise errors.conflict(info.group, info.plural, name,
                                      f"Precondition failed: ResourceVersion in precondition: "
                                      f"{pre['resourceVersion']}, ResourceVersion in object meta: {md['resourceVersion']}")
            policy = opts.get("propagationPolicy")
            if policy is None and opts.get("orphanDependents") is True:
                policy = "Orphan"
            finalizers = list(md.get("finalizers") or [])
            graceful = self._grace_period(info, obj, opts)
            if info.plural == "namespaces" and info.group == "":
                if name in ("default", "kube-system", "kube-public"):
                    raise errors.forbidden("", "namespaces", name, "this namespace may not be deleted")
            if policy == "Foreground" and "foregroundDeletion" not in finalizers:
                finalizers.append("foregroundDeletion")
            if policy == "Orphan" and "orphan" not in finalizers:
                finalizers.append("orphan")
            needs_wait = bool(finalizers) or (info.plural == "namespaces" and info.group == "") or graceful
            if needs_wait:
                if md.get("deletionTimestamp") and finalizers == list(md.get("finalizers") or []) and not graceful:
                    return obj, 202 if policy == "Foreground" else 200   # already terminating
                new = copy.deepcopy(obj)
                nmd = new["metadata"]
                nmd.setdefault("deletionTimestamp", now_rfc3339())
                nmd["deletionGracePeriodSeconds"] = graceful or 0
                if finalizers:
                    nmd["finalizers"] = finalizers
                else:
                    nmd.pop("finalizers", None)
                if info.plural == "namespaces" and info.group == "":
                    # the namespace controller's finalizer lives in spec.finalizers (upstream)
                    spec = new.setdefault("spec", {})
                    if "kubernetes" not in (spec.get("finalizers") or []):
                        spec["finalizers"] = [*(spec.get("finalizers") or []), "kubernetes"]
                    new["status"] = {**(new.get("status") or {}), "phase": "Terminating"}
                if dry:
                    return new, 200
                try:
                    res = await self.objects.update(info, namespace, name, new, kv.mod_revision)
                except APIError as e:
                    if e.reason == "Conflict" and not pre.get("resourceVersion"):
                        continue
                    raise
                await self._after_mark_deleting(info, res)
                return res, 202 if policy == "Foreground" else 200
            if dry:
                return obj, 200
            try:
                await self.objects.delete(info, namespace, name, kv.mod_revision)
            except APIError as e:
                if e.reason == "Conflict" and not pre.get("resourceVersion"):
                    continue
                raise
            await self._after_delete(info, obj)
            if (info.group, info.plural) in _RETURNS_DELETED:
                return obj, 200
            details = {"name": name, "group": info.group, "kind": info.plural, "uid": md.get("uid")}
            if not info.group:
                del details["group"]    # StatusDetails.group is omitempty upstream
            return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                    "details": details}, 200
        raise errors.conflict(info.group, info.plural, name, errors.OPTIMISTIC_LOCK)

    def _grace_period(self, info: ResourceInfo, obj: dict[str, Any], opts: dict[str, Any]) -> int:
        """Pods bound to a node wait for their kubelet (graceful deletion); others go at once."""
        if not (info.plural == "pods" and info.group == ""):
            return 0
        spec = obj.get("spec") or {}
        if not spec.get("nodeName"):
            return 0
        phase = (obj.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            return 0
        gp = opts.get("gracePeriodSeconds")
        if gp is None:
            gp = spec.get("terminationGracePeriodSeconds", 30)
        return max(int(gp), 0)

    async def _after_mark_deleting(self, info: ResourceInfo, obj: dict[str, Any]) -> None:
        md = obj["metadata"]
        if info.plural == "namespaces" and info.group == "" and self.namespace_deleter is not None:
            self.spawn(self.namespace_deleter(md["name"]))
        elif info.plural == "customresourcedefinitions" and self.crd_deleter is not None:
            self.spawn(self.crd_deleter(obj))
        elif "foregroundDeletion" in (md.get("finalizers") or []) or "orphan" in (md.get("finalizers") or []):
            self.spawn(self._collect_dependents(info, obj))

    async def _after_delete(self, info: ResourceInfo, obj: dict[str, Any]) -> None:
        if info.plural == "customresourcedefinitions" and info.group == "apiextensions.k8s.io":
            if self.caches is not None:
                for crd_info in self.registry.crd_resources(obj["metadata"]["name"])[:1]:
                    self.caches.drop(crd_info)
            self.registry.remove_crd(obj["metadata"]["name"])
        # Background propagation: dependents go after their owner (garbage collector).
        self.spawn(self._delete_dependents(obj, orphan=False))

    async def _dependents(self, owner: dict[str, Any]) -> list[tuple[ResourceInfo, dict[str, Any]]]:
        uid = owner["metadata"].get("uid")
        ns = owner["metadata"].get("namespace")
        out = []
        seen: set[str] = set()
        for info in self.registry.resources():
            if info.key_prefix in seen or (ns and not info.namespaced):
                continue
            seen.add(info.key_prefix)
            start = None
            while True:
                kvs, _, more, _ = await self.objects.list(info, ns, limit=1000, start=start)
                for kv in kvs:
                    if uid.encode() in kv.value:
                        o = decode(kv)
                        if any(r.get("uid") == uid for r in (o["metadata"].get("ownerReferences") or [])):
                            out.append((info, o))
                if not more or not kvs:
                    break
                start = kvs[-1].key + b"\0"
        return out

    async def _delete_dependents(self, owner: dict[str, Any], orphan: bool) -> None:
        try:
            for info, dep in await self._dependents(owner):
                md = dep["metadata"]
                try:
                    if orphan:
                        uid = owner["metadata"]["uid"]

                        def drop(cur: dict[str, Any], uid=uid) -> dict[str, Any]:
                            cur["metadata"]["ownerReferences"] = [
                                r for r in cur["metadata"].get("ownerReferences") or [] if r.get("uid") != uid] or None
                            if cur["metadata"]["ownerReferences"] is None:
                                del cur["metadata"]["ownerReferences"]
                            return cur

                        await self.guaranteed_update(info, Route(info, md.get("namespace"), md["name"], None),
                                                     drop, "garbage-collector", False, precondition=None, op="Update")
                    else:
                        await self.delete_one(info, md.get("namespace"), md["name"],
                                              {"propagationPolicy": "Background"})
                except APIError:
                    pass
        except Exception:  # background work: log, never crash the server
            log.exception("garbage collection of dependents of %s failed", owner["metadata"].get("name"))

    async def _collect_dependents(self, info: ResourceInfo, obj: dict[str, Any]) -> None:
        md = obj["metadata"]
        fins = md.get("finalizers") or []
        await self._delete_dependents(obj, orphan="orphan" in fins)

        def done(cur: dict[str, Any]) -> dict[str, Any]:
            cur["metadata"]["finalizers"] = [f for f in cur["metadata"].get("finalizers") or []
                                             if f not in ("orphan", "foregroundDeletion")]
            return cur

        try:
            await self.guaranteed_update(info, Route(info, md.get("namespace"), md["name"], None), done,
                                         "garbage-collector", False, precondition=None, op="Update")
        except APIError:
            pass

    async def delete_collection(self, req: Request, route: Route) -> Response:
        info = route.info
        if "deletecollection" not in info.verbs:
            raise errors.method_not_allowed()
        accept = _accept(req, info)
        opts = self._delete_options(req)
        lsel = LabelSelector.parse(req.param("labelSelector") or "")
        fsel = FieldSelector.for_resource(req.param("fieldSelector") or "", info)
        kvs, rev, _, _ = await self.objects.list(info, route.namespace)
        deleted = []
        for kv in kvs:
            obj = decode(kv)
            md = obj["metadata"]
            if not lsel.matches(md.get("labels")) or (not fsel.empty and not fsel.matches(field_set(info, obj))):
                continue
            try:
                res, _ = await self.delete_one(info, md.get("namespace"), md["name"], opts)
            except APIError as e:
                if e.code == 404:
                    continue
                raise
            deleted.append(obj if res.get("kind") == "Status" else res)
        return _json(200, {"kind": info.list_kind, "apiVersion": info.group_version,
                           "metadata": {"resourceVersion": str(rev)}, "items": deleted}, accept=accept)

