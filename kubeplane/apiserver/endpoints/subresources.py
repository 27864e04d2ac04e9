"""The scale, binding and eviction subresources (status goes through writes.py)."""
from __future__ import annotations

from typing import Any

from ..machinery import codec, errors
from ..registry import patch as patchmod
from ..machinery.errors import Cause
from ..transport.http import Request, Response
from ..registry.resources import ResourceInfo
from ..registry.selectors import LabelSelector
from ..registry.schema import validate
from .checks import _patch_decode_error, decode_typed
from .common import Route, _accept, _dry_run, _json, _json_type, _manager, now_rfc3339

_SCALE = "io.k8s.api.autoscaling.v1.Scale"


def _get_path(obj: dict[str, Any], path: str) -> Any:
    cur: Any = obj
    for part in path.strip(".").split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def _set_path(obj: dict[str, Any], path: str, value: Any) -> None:
    parts = path.strip(".").split(".")
    cur = obj
    for part in parts[:-1]:
        nxt = cur.get(part)
        if not isinstance(nxt, dict):
            nxt = cur[part] = {}
        cur = nxt
    cur[parts[-1]] = value


class Subresources:
    """Mixin of RESTHandlers (handlers.py): needs .objects, .registry, .spawn and the other mixins."""

    def _scale_paths(self, info: ResourceInfo) -> tuple[str, str, str | None]:
        if info.crd is not None:
            sc = ((info.crd_version or {}).get("subresources") or {}).get("scale") or {}
            return (sc.get("specReplicasPath", ".spec.replicas"), sc.get("statusReplicasPath", ".status.replicas"),
                    sc.get("labelSelectorPath"))
        return ".spec.replicas", ".status.replicas", None

    def _scale_of(self, info: ResourceInfo, obj: dict[str, Any]) -> dict[str, Any]:
        spec_path, status_path, sel_path = self._scale_paths(info)
        md = obj["metadata"]
        selector = ""
        if sel_path:
            v = _get_path(obj, sel_path)
            selector = v if isinstance(v, str) else ""
        else:
            sel = (obj.get("spec") or {}).get("selector")
            if isinstance(sel, dict):
                selector = str(LabelSelector.from_dict(sel))
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {"name": md["name"], "namespace": md.get("namespace"), "uid": md.get("uid"),
                             "resourceVersion": md.get("resourceVersion"),
                             "creationTimestamp": md.get("creationTimestamp")},
                "spec": {"replicas": _get_path(obj, spec_path) or 0},
                "status": {"replicas": _get_path(obj, status_path) or 0, **({"selector": selector} if selector else {})}}

    async def get_scale(self, req: Request, route: Route) -> Response:
        obj = await self.objects.get(route.info, route.namespace, route.name or "")
        return _json(200, self._scale_of(route.info, obj), accept=_accept(req, route.info))

    async def update_scale(self, req: Request, route: Route) -> Response:
        _accept(req, route.info)      # a 406 before anything is written
        body = decode_typed(req, _SCALE, "Scale", protobuf=route.info.crd is None)
        if not isinstance(body.get("spec"), dict):
            raise errors.bad_request("Scale body must be an object with spec")
        replicas = body["spec"].get("replicas", 0)
        if not isinstance(replicas, int) or replicas < 0:
            raise errors.invalid("autoscaling", "Scale", route.name or "", [Cause(
                "FieldValueInvalid", "spec.replicas", f"Invalid value: {replicas}: must be greater than or equal to 0")])
        pre = (body.get("metadata") or {}).get("resourceVersion") or None
        return await self._set_replicas(req, route, replicas, pre)

    async def patch_scale(self, req: Request, route: Route) -> Response:
        """PATCH .../scale: the patch applies to the Scale view of the object (as upstream's
        scale subresource does), and the answer is the resulting Scale, not the parent."""
        _accept(req, route.info)      # a 406 before anything is written

        info = route.info
        ct = codec.media_type(req.headers.get("content-type", ""))
        if ct == codec.APPLY_PATCH:
            raise errors.APIError(415, "UnsupportedMediaType",
                                  "server-side apply is not supported on the scale subresource")
        patch_body = codec.decode_body(req.headers.get("content-type", ""), req.body, patch=True)
        if ct == codec.JSON_PATCH and not isinstance(patch_body, list):
            raise errors.bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
        if ct != codec.JSON_PATCH and not isinstance(patch_body, dict):
            raise errors.bad_request(f"json: cannot unmarshal {_json_type(patch_body)} into Go value of type "
                                     "map[string]interface {}")
        spec_path, _, _ = self._scale_paths(info)

        def mutate(cur: dict[str, Any]) -> dict[str, Any]:
            scale = self._scale_of(info, cur)
            if ct == codec.JSON_PATCH:
                new = patchmod.json_patch(scale, patch_body)
            else:  # merge and strategic patches are the same on a Scale (no lists)
                new = patchmod.json_merge_patch(scale, patch_body)
            if not isinstance(new, dict):
                raise errors.bad_request("the patch produced a value that is not an object")
            findings = validate.check(new, _SCALE)
            if findings.type_errors:    # the patched Scale must decode, as upstream's would
                raise _patch_decode_error(validate.decode_error("Scale", "v1", findings.type_errors[0]), new,
                                          strategic=False)
            replicas = (new.get("spec") or {}).get("replicas", 0)
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise errors.invalid("autoscaling", "Scale", route.name or "", [Cause(
                    "FieldValueInvalid", "spec.replicas",
                    f"Invalid value: {replicas}: must be greater than or equal to 0")])
            pre = str((new.get("metadata") or {}).get("resourceVersion") or "")
            if pre and pre != cur["metadata"].get("resourceVersion"):
                raise errors.conflict(info.group, info.plural, route.name or "", errors.OPTIMISTIC_LOCK)
            _set_path(cur, spec_path, replicas)
            return cur

        r = Route(info, route.namespace, route.name, None)
        obj, _ = await self.guaranteed_update(info, r, mutate, _manager(req, "Update"), _dry_run(req),
                                              precondition=None, op="Update", patching=True)
        return _json(200, self._scale_of(info, obj), accept=_accept(req, info))

    async def _set_replicas(self, req: Request, route: Route, replicas: int, pre: str | None) -> Response:
        info = route.info
        spec_path, _, _ = self._scale_paths(info)
        manager = _manager(req, "Update")

        def mutate(cur: dict[str, Any]) -> dict[str, Any]:
            _set_path(cur, spec_path, replicas)
            return cur

        r = Route(info, route.namespace, route.name, None)
        obj, _ = await self.guaranteed_update(info, r, mutate, manager, _dry_run(req), precondition=pre, op="Update")
        return _json(200, self._scale_of(info, obj), accept=_accept(req, info))

    async def bind(self, req: Request, route: Route) -> Response:
        accept = _accept(req, route.info)
        body = decode_typed(req, "io.k8s.api.core.v1.Binding", "Binding")
        target = body.get("target") or {}
        node = target.get("name") if isinstance(target, dict) else None
        if not node:
            raise errors.invalid("", "Binding", route.name or "", [Cause("FieldValueRequired", "target.name",
                                                                         "Required value")])
        name = route.name or ""
        meta = body.get("metadata") or {}
        want_uid = meta.get("uid") if isinstance(meta, dict) else None
        annotations = meta.get("annotations") if isinstance(meta, dict) else None

        def mutate(cur: dict[str, Any]) -> dict[str, Any]:
            # upstream's BindingREST.setPodHostAndAnnotations
            spec = cur.setdefault("spec", {})
            if want_uid and want_uid != cur["metadata"].get("uid"):
                raise errors.conflict("", "pods", name, f"Precondition failed: UID in precondition: {want_uid}, "
                                                        f"UID in object meta: {cur['metadata'].get('uid', '')}")
            if cur["metadata"].get("deletionTimestamp"):
                raise errors.conflict("", "pods", name, "pod is being deleted, cannot be assigned to a host")
            if spec.get("nodeName"):
                raise errors.conflict("", "pods", name,
                                      f"pod {name} is already assigned to node \"{spec['nodeName']}\"")
            if spec.get("schedulingGates"):
                raise errors.conflict("", "pods", name, f"pod {name} has non-empty .spec.schedulingGates")
            spec["nodeName"] = node
            if isinstance(annotations, dict) and annotations:
                cur["metadata"].setdefault("annotations", {}).update(annotations)
            conds = (cur.setdefault("status", {})).setdefault("conditions", [])
            conds[:] = [c for c in conds if c.get("type") != "PodScheduled"]
            conds.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                          "lastTransitionTime": now_rfc3339()})
            return cur

        r = Route(route.info, route.namespace, name, "binding")
        pre = ((body.get("metadata") or {}).get("resourceVersion")) or None
        await self.guaranteed_update(route.info, r, mutate, _manager(req, "Update"), _dry_run(req),
                                     precondition=pre, op="Update")
        return _json(201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201},
                     accept=accept)

    async def evict(self, req: Request, route: Route) -> Response:
        accept = _accept(req, route.info)
        body = decode_typed(req, "io.k8s.api.policy.v1.Eviction", "Eviction")
        opts = body.get("deleteOptions") or {}
        await self.delete_one(route.info, route.namespace, route.name or "", opts)
        return _json(201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201},
                     accept=accept)

