"""The REST verbs on one resource: get, list, watch, create, update, patch, delete,
deletecollection, and the subresources (status, scale, binding, eviction, finalize).

Every write runs the same pipeline (upstream's genericregistry.Store):

    decode -> check kind/apiVersion/name/namespace -> schema (types, unknown fields)
           -> strategy (defaults, status/generation rules) -> validation (422)
           -> managedFields -> (dryRun? stop) -> one guarded store txn

so that an object is either written whole and valid or not at all. Updates read the
current object and write with a mod-revision compare; without a client precondition
they retry on conflict (GuaranteedUpdate).
"""
from __future__ import annotations

import asyncio
import copy
import logging
import random
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import orjson

from ..store import errors as store_errors
from . import codec, errors, watch
from .errors import APIError, Cause
from .http import Request, Response
from .registry import Registry
from .resources import ResourceInfo
from .storage import ObjectStore, decode, key_of, prefix_of
from .strategy import name_errors

log = logging.getLogger("kubeplane.apiserver")

_SERVER_MANAGED = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                   "generation", "selfLink")


# Kinds whose registry sets ReturnDeletedObject upstream: a delete answers the object, not a Status.
_RETURNS_DELETED = {("", "pods"), ("", "services"), ("", "serviceaccounts"), ("storage.k8s.io", "storageclasses")}


_NOW: list = [0, ""]     # (second, its RFC 3339 text): formatted once a second


def now_rfc3339() -> str:
    t = int(time.time())
    if t != _NOW[0]:
        _NOW[0], _NOW[1] = t, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
    return _NOW[1]


@dataclass
class Route:
    info: ResourceInfo
    namespace: str | None
    name: str | None
    subresource: str | None


def _json(status: int, obj: Any, headers: list[tuple[str, str]] | None = None,
          accept: codec.Accept | None = None) -> Response:
    body, ct = codec.encode(obj, accept)
    return Response(status, body, headers, content_type=ct)


def _bool_param(req: Request, name: str) -> bool:
    v = req.param(name)
    return v is not None and v.lower() in ("1", "true", "")


def _dry_run(req: Request) -> bool:
    vals = req.query.get("dryRun") or []
    for v in vals:
        if v != "All":
            raise errors.bad_request(f'dryRun: Unsupported value: "{v}": supported values: "All"')
    return bool(vals)


def _field_validation(req: Request) -> str:
    v = req.param("fieldValidation") or "Warn"   # upstream default when unset: Warn
    if v not in ("Strict", "Warn", "Ignore"):
        raise errors.bad_request(f"fieldValidation: Unsupported value: \"{v}\": supported values: "
                                 '"Ignore", "Strict", "Warn"')
    return v


def _manager(req: Request, default_op: str) -> str:
    m = req.param("fieldManager")
    if m is not None:
        if len(m) > 128:
            raise errors.invalid("", "", "", [Cause("FieldValueTooLong", "fieldManager",
                                                    "Too long: may not be more than 128 bytes")])
        if not m.isprintable():
            raise errors.bad_request("fieldManager: Invalid value: must only contain printable characters")
        return m
    if default_op == "Apply":
        raise errors.bad_request("PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: "
                                 "is required for apply patch")
    ua = req.headers.get("user-agent", "unknown")
    return ua.split("/", 1)[0][:128] or "unknown"


class RESTHandlers:
    """Serves every resource in `registry` from `store` (an ObjectStore)."""

    def __init__(self, objects: ObjectStore, registry: Registry):
        self.objects = objects
        self.registry = registry
        self.namespace_deleter: Callable[[str], Awaitable[None]] | None = None
        self.crd_deleter: Callable[[dict[str, Any]], Awaitable[None]] | None = None
        self.background: set[asyncio.Task] = set()

    def spawn(self, coro: Awaitable[None]) -> None:
        t = asyncio.ensure_future(coro)
        self.background.add(t)
        t.add_done_callback(self.background.discard)

    # --- dispatch ---------------------------------------------------------------------
    async def serve(self, req: Request, route: Route) -> Response | None:
        m = req.method
        sub = route.subresource
        info = route.info
        if sub is not None and sub not in info.subresources:
            raise errors.not_found(info.group, f"{info.plural}/{sub}" if False else info.plural, route.name or "")
        if route.name is None:
            if m in ("GET", "HEAD"):
                if _bool_param(req, "watch"):
                    return await self.watch(req, route)
                return await self.list(req, route)
            if m == "POST":
                return await self.create(req, route)
            if m == "DELETE":
                return await self.delete_collection(req, route)
            raise errors.method_not_allowed()
        if m in ("GET", "HEAD"):
            if sub == "scale":
                return await self.get_scale(req, route)
            if sub in ("binding", "eviction"):
                raise errors.method_not_allowed()
            return await self.get(req, route)
        if m == "POST":
            if sub == "binding":
                return await self.bind(req, route)
            if sub == "eviction":
                return await self.evict(req, route)
            raise errors.method_not_allowed()
        if m == "PUT":
            if sub == "scale":
                return await self.update_scale(req, route)
            return await self.update(req, route)
        if m == "PATCH":
            if sub == "scale":
                return await self.patch_scale(req, route)
            return await self.patch(req, route)
        if m == "DELETE":
            if sub is not None:
                raise errors.method_not_allowed()
            return await self.delete(req, route)
        raise errors.method_not_allowed()

    # --- reads --------------------------------------------------------------------------
    async def get(self, req: Request, route: Route) -> Response:
        accept = codec.negotiate(req.headers.get("accept", ""))
        rv = req.param("resourceVersion") or ""
        obj = await self.objects.get(route.info, route.namespace, route.name or "", _read_revision(rv, req))
        self._read_defaults(route.info, obj)
        if accept.table:
            from .tables import make_table

            table = make_table(route.info, [obj], {"resourceVersion": obj["metadata"].get("resourceVersion", "")},
                               include_object=req.param("includeObject") or "Metadata", now=time.time())
            return _json(200, table)
        if accept.metadata:
            return _json(200, _partial(obj))
        return _json(200, obj, accept=accept)

    def _read_defaults(self, info: ResourceInfo, obj: dict[str, Any]) -> None:
        if info.crd is not None:
            schema = self._crd_schema(info)
            if schema is not None:
                schema.apply_defaults(obj)

    async def list(self, req: Request, route: Route) -> Response:
        from .selectors import FieldSelector, LabelSelector, field_set

        info = route.info
        accept = codec.negotiate(req.headers.get("accept", ""))
        lsel = LabelSelector.parse(req.param("labelSelector") or "")
        fsel = FieldSelector.for_resource(req.param("fieldSelector") or "", info)
        limit = _int_param(req, "limit", 0)
        cont = req.param("continue") or ""
        rv = req.param("resourceVersion") or ""
        match = req.param("resourceVersionMatch") or ""
        if match and match not in ("NotOlderThan", "Exact"):
            raise errors.bad_request(f'resourceVersionMatch: Unsupported value: "{match}": supported values: '
                                     '"Exact", "NotOlderThan"')
        if match and not rv:
            raise errors.bad_request("resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless "
                                     "resourceVersion is provided")
        if cont and rv and rv != "0":
            raise errors.bad_request("specifying resource version is not allowed when using continue")
        prefix = prefix_of(info, route.namespace)
        start = None
        revision = 0
        if cont:
            revision, start = _decode_continue(cont, prefix)
        elif rv and match == "Exact":
            revision = _parse_rv(rv)
        # Store-direct reads: RV=0 and NotOlderThan are served at the current revision,
        # which is never older than asked (issue 4 serves them from the watch cache).
        if rv and rv != "0" and match != "Exact" and not cont:
            want = _parse_rv(rv)
            cur = await self.objects.current_revision()
            if want > cur:
                raise errors.APIError(504, "Timeout", f"Too large resource version: {want}, current: {cur}",
                                      {"causes": [{"reason": "ResourceVersionTooLarge",
                                                   "message": "Too large resource version"}], "retryAfterSeconds": 1})
        filtering = not (lsel.empty and fsel.empty)
        items: list[dict[str, Any]] = []
        next_key: bytes | None = None
        remaining: int | None = None
        read_rev = revision
        # page through the store until `limit` matches (or the end)
        while True:
            want = (limit - len(items)) if limit else 0
            batch = max(want, 100) if (limit and filtering) else want
            try:
                kvs, read_rev2, more, rest = await self.objects.list(info, route.namespace, revision=read_rev,
                                                                     limit=batch, start=start)
            except APIError as e:
                if e.reason == "Expired" and cont:
                    raise _continue_expired(start or prefix, prefix) from None
                raise
            read_rev = read_rev or read_rev2
            last_key = None
            for kv in kvs:
                last_key = kv.key
                obj = decode(kv)
                if filtering:
                    md = obj.get("metadata") or {}
                    if not lsel.matches(md.get("labels")):
                        continue
                    if not fsel.empty and not fsel.matches(field_set(info, obj)):
                        continue
                items.append(obj)
                if limit and len(items) >= limit:
                    break
            if limit and len(items) >= limit:
                more = more or (last_key is not None and last_key != (kvs[-1].key if kvs else None))
                if more:
                    next_key = last_key
                    if not filtering:
                        remaining = rest
                break
            if not more or not kvs:
                break
            start = kvs[-1].key + b"\0"
        if info.crd is not None:
            for obj in items:
                self._read_defaults(info, obj)
        meta: dict[str, Any] = {"resourceVersion": str(read_rev)}
        if next_key is not None:
            meta["continue"] = _encode_continue(read_rev, next_key, prefix)
            if remaining is not None and remaining > 0:
                meta["remainingItemCount"] = remaining
        if accept.table:
            from .tables import make_table

            return _json(200, make_table(info, items, meta, include_object=req.param("includeObject") or "Metadata",
                                         now=time.time()))
        if accept.metadata:
            return _json(200, {"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                               "metadata": meta, "items": [_partial(o) for o in items]})
        out = {"kind": info.list_kind, "apiVersion": info.group_version, "metadata": meta, "items": items}
        return _json(200, out, accept=accept)

    async def watch(self, req: Request, route: Route) -> None:
        return await watch.serve_watch(self, req, route)

    # --- create -----------------------------------------------------------------------
    def _check_kind(self, info: ResourceInfo, obj: Any, *, body_kind: str | None = None) -> dict[str, Any]:
        if not isinstance(obj, dict):
            raise errors.bad_request(f"{info.kind} in version \"{info.version}\" cannot be handled as a "
                                     f"{info.kind}: json: cannot unmarshal {_json_type(obj)} into Go value of "
                                     f"type struct {{ APIVersion string \"json:\\\"apiVersion,omitempty\\\"\"; "
                                     f"Kind string \"json:\\\"kind,omitempty\\\"\" }}")
        kind = body_kind or info.kind
        k = obj.get("kind")
        av = obj.get("apiVersion")
        if k is not None and k != "" and k != kind:
            raise errors.bad_request(f"the kind in the data ({k!s}) does not match the expected kind ({kind})")
            # (upstream text differs slightly between codecs; the reason is what clients use)
        if av is not None and av != "" and av != info.group_version:
            raise errors.bad_request(f"the API version in the data ({av}) does not match the expected API "
                                     f"version ({info.group_version})")
        obj["kind"] = kind
        obj["apiVersion"] = info.group_version
        md = obj.get("metadata")
        if md is None:
            md = obj["metadata"] = {}
        if not isinstance(md, dict):
            raise errors.bad_request(f"{info.kind} in version \"{info.version}\" cannot be handled as a {info.kind}: "
                                     f"json: cannot unmarshal {_json_type(md)} into Go struct field "
                                     f"{info.kind}.metadata of type v1.ObjectMeta")
        return obj

    def _schema_check(self, info: ResourceInfo, obj: dict[str, Any], mode: str,
                      warnings: list[str], defaults: bool = True) -> None:
        """Types (400 for built-ins, 422 for custom resources) and unknown fields by
        fieldValidation: Strict -> 400, Warn -> Warning headers, Ignore -> dropped."""
        if info.crd is not None:
            schema = self._crd_schema(info)
            if schema is None:
                return
            pruned, unknown = schema.prune(obj)
            if unknown:
                if mode == "Strict":
                    raise errors.bad_request("strict decoding error: " + ", ".join(
                        f'unknown field "{u}"' for u in unknown))
                if mode == "Warn":
                    warnings.extend(f'unknown field "{u}"' for u in unknown)
            if pruned is not obj:
                obj.clear()
                obj.update(pruned)
            if defaults:
                schema.apply_defaults(obj)
            return
        if info.def_name is None:
            return
        from .schema import validate

        findings = validate.check(obj, info.def_name)
        if findings.type_errors:
            raise validate.decode_error(info.kind, info.version, findings.type_errors[0])
        if findings.unknown:
            if mode == "Strict":
                raise validate.strict_error(findings)
            if mode == "Warn":
                warnings.extend(validate.warnings(findings))
            _drop_paths(obj, findings.unknown)

    def _crd_schema(self, info: ResourceInfo):
        cache = getattr(info, "_schema", None)
        if cache is None:
            from .schema.crd import CRDSchema

            s = ((info.crd_version or {}).get("schema") or {}).get("openAPIV3Schema")
            cache = CRDSchema(s) if s else False
            info._schema = cache  # type: ignore[attr-defined]
        return cache or None

    def _validate(self, info: ResourceInfo, obj: dict[str, Any], old: dict[str, Any] | None = None) -> None:
        strategy = self.registry.strategy(info)
        md = obj["metadata"]
        name = md.get("name") or ""
        causes: list[Cause] = []
        if not name:
            causes.append(Cause("FieldValueRequired", "metadata.name", "Required value: name or generateName is required"))
        else:
            causes += name_errors(info.kind, name)
        if info.namespaced and not md.get("namespace"):
            causes.append(Cause("FieldValueRequired", "metadata.namespace", "Required value"))
        causes += strategy.validate(obj)
        if info.crd is not None:
            schema = self._crd_schema(info)
            if schema is not None:
                causes += schema.validate(obj)
        if info.plural == "customresourcedefinitions" and info.group == "apiextensions.k8s.io":
            from .schema.crd import validate_crd

            causes += validate_crd(obj)
        if old is not None:
            causes += _immutable_errors(info, old, obj)
        if causes:
            raise errors.invalid(info.group, info.kind, name, causes)

    async def _check_namespace(self, info: ResourceInfo, namespace: str | None, name: str) -> None:
        if not info.namespaced:
            return
        ns_info = self.registry.get("", "v1", "namespaces")
        kv = await self.objects.get_kv(key_of(ns_info, None, namespace or ""))
        if kv is None:
            raise errors.not_found("", "namespaces", namespace or "")
        ns = orjson.loads(kv.value)
        if (ns.get("status") or {}).get("phase") == "Terminating" or (ns.get("metadata") or {}).get("deletionTimestamp"):
            raise errors.APIError(403, "Forbidden",
                                  f'{info.qualified} "{name}" is forbidden: unable to create new content in namespace '
                                  f"{namespace} because it is being terminated",
                                  {"name": name, "group": info.group, "kind": info.plural,
                                   "causes": [{"reason": "NamespaceTerminating",
                                               "message": f"namespace {namespace} is being terminated",
                                               "field": "metadata.namespace"}]})

    async def create(self, req: Request, route: Route) -> Response:
        info = route.info
        dry = _dry_run(req)
        mode = _field_validation(req)
        manager = _manager(req, "Update")
        obj = codec.decode_body(req.headers.get("content-type", ""), req.body)
        obj = self._check_kind(info, obj)
        warnings: list[str] = []
        self._schema_check(info, obj, mode, warnings)
        obj = await self.prepare_create(info, route.namespace, obj, manager)
        result = await self.store_create(info, obj, dry)
        return _json(201, result, _warning_headers(warnings))

    async def prepare_create(self, info: ResourceInfo, namespace: str | None, obj: dict[str, Any],
                             manager: str, *, operation: str = "Update") -> dict[str, Any]:
        md = obj["metadata"]
        if md.get("resourceVersion"):
            raise errors.bad_request("resourceVersion should not be set on objects to be created")
        if info.namespaced:
            ns = md.get("namespace")
            if ns and namespace and ns != namespace:
                raise errors.bad_request("the namespace of the provided object does not match the namespace "
                                         "sent on the request")
            md["namespace"] = namespace or ns
        else:
            md.pop("namespace", None)
        if not md.get("name") and md.get("generateName"):
            gen = md["generateName"]
            if isinstance(gen, str):
                md["name"] = gen[:63 - 5] + _random_suffix()
        for f in _SERVER_MANAGED:
            md.pop(f, None)
        md["uid"] = str(uuid.uuid4())
        md["creationTimestamp"] = now_rfc3339()
        strategy = self.registry.strategy(info)
        if strategy.has_status and info.plural not in ("pods", "namespaces", "services", "persistentvolumeclaims"):
            obj.pop("status", None)
        strategy.apply_defaults(obj, True)
        if strategy.tracks_generation:
            md["generation"] = 1
        if info.plural == "customresourcedefinitions" and info.group == "apiextensions.k8s.io":
            from .schema.crd import crd_defaults

            obj.update(crd_defaults(obj))
            fins = md.setdefault("finalizers", [])
            if "customresourcecleanup.apiextensions.k8s.io" not in fins:
                fins.append("customresourcecleanup.apiextensions.k8s.io")
        self._validate(info, obj)
        await self._check_namespace(info, md.get("namespace"), md["name"])
        if operation == "Update":
            from .fieldmanager import update_managed_fields

            md.pop("managedFields", None)
            obj = update_managed_fields(None, obj, manager, "Update", "", info.group_version, now_rfc3339(),
                                        schema=self._schema_node(info),
                                        reset_fields=self._reset_fields(info, None, obj, obj))
        return obj

    def _reset_fields(self, info: ResourceInfo, subresource: str | None, old: dict[str, Any] | None = None,
                      new: dict[str, Any] | None = None) -> list[str]:
        """Top-level fields a write may not change (and whose ownership is not tracked):
        status on the main resource, everything but status on /status."""
        if "status" not in info.subresources:
            return []
        if subresource != "status":
            return ["status"]
        keys = set(old or {}) | set(new or {})
        return sorted(k for k in keys if k not in ("status", "apiVersion", "kind"))

    async def store_create(self, info: ResourceInfo, obj: dict[str, Any], dry: bool) -> dict[str, Any]:
        md = obj["metadata"]
        if dry:
            kv = await self.objects.get_kv(key_of(info, md.get("namespace"), md["name"]))
            if kv is not None:
                raise errors.already_exists(info.group, info.plural, md["name"])
            return obj
        for attempt in range(3 if md.get("generateName") else 1):
            try:
                created = await self.objects.create(info, md.get("namespace"), md["name"], obj)
                break
            except APIError as e:
                if e.reason == "AlreadyExists" and md.get("generateName") and attempt < 2:
                    md["name"] = md["generateName"][:58] + _random_suffix()
                    continue
                raise
        if info.plural == "customresourcedefinitions" and info.group == "apiextensions.k8s.io":
            self.registry.set_crd(created)
        return created

    # --- update / patch ----------------------------------------------------------------
    async def update(self, req: Request, route: Route) -> Response:
        info = route.info
        dry = _dry_run(req)
        mode = _field_validation(req)
        manager = _manager(req, "Update")
        body = codec.decode_body(req.headers.get("content-type", ""), req.body)
        body = self._check_kind(info, body)
        bmd = body["metadata"]
        if bmd.get("name") and bmd["name"] != route.name:
            raise errors.bad_request(f"the name of the object ({bmd['name']}) does not match the name on the "
                                     f"URL ({route.name})")
        if info.namespaced and bmd.get("namespace") and bmd["namespace"] != route.namespace:
            raise errors.bad_request("the namespace of the provided object does not match the namespace sent "
                                     "on the request")
        warnings: list[str] = []
        self._schema_check(info, body, mode, warnings)
        precondition = bmd.get("resourceVersion") or ""
        if precondition:
            _parse_rv(precondition, field="metadata.resourceVersion")

        def mutate(current: dict[str, Any]) -> dict[str, Any]:
            return copy.deepcopy(body)

        obj, status = await self.guaranteed_update(info, route, mutate, manager, dry,
                                                   precondition=precondition or None, op="Update")
        return _json(status, obj, _warning_headers(warnings))

    async def patch(self, req: Request, route: Route) -> Response:
        from . import patch as patchmod

        info = route.info
        dry = _dry_run(req)
        mode = _field_validation(req)
        ct = codec.media_type(req.headers.get("content-type", ""))
        is_apply = ct == codec.APPLY_PATCH
        if ct == codec.STRATEGIC_PATCH and info.crd is not None:
            # upstream: negotiation.NewUnsupportedMediaTypeError(the CR handler's patch types)
            raise errors.APIError(415, "UnsupportedMediaType",
                                  "the body of the request was in an unknown format - accepted media types "
                                  "include: application/json-patch+json, application/merge-patch+json, "
                                  "application/apply-patch+yaml")
        manager = _manager(req, "Apply" if is_apply else "Update")
        force = _bool_param(req, "force")
        if req.param("force") is not None and not is_apply:
            raise errors.bad_request("force: Forbidden: may not be specified for non-apply patch")
        patch_body = codec.decode_body(req.headers.get("content-type", ""), req.body, patch=True)
        if ct == codec.JSON_PATCH:
            if not isinstance(patch_body, list):
                raise errors.bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
        elif not isinstance(patch_body, dict):
            raise errors.bad_request(f"json: cannot unmarshal {_json_type(patch_body)} into Go value of type "
                                     "map[string]interface {}")
        warnings: list[str] = []
        schema_node = self._schema_node(info)
        precondition: str | None = None
        if isinstance(patch_body, dict):
            pmd = patch_body.get("metadata")
            if isinstance(pmd, dict) and pmd.get("resourceVersion"):
                precondition = str(pmd["resourceVersion"])
        if is_apply:
            applied = self._check_kind(info, copy.deepcopy(patch_body))
            amd = applied["metadata"]
            if amd.get("name") and amd["name"] != route.name:
                raise errors.bad_request(f"the name of the object ({amd['name']}) does not match the name on "
                                         f"the URL ({route.name})")
            amd.setdefault("name", route.name)
            if info.namespaced:
                if amd.get("namespace") and amd["namespace"] != route.namespace:
                    raise errors.bad_request("the namespace of the provided object does not match the namespace "
                                             "sent on the request")
                amd["namespace"] = route.namespace
            # an apply configuration is not defaulted: the applier owns only what it sent
            # (upstream defaults the merged result, after the field manager)
            self._schema_check(info, applied, mode, warnings, defaults=False)

        def mutate(current: dict[str, Any]) -> dict[str, Any]:
            if ct == codec.JSON_PATCH:
                new = patchmod.json_patch(current, patch_body)
            elif ct == codec.MERGE_PATCH:
                new = patchmod.json_merge_patch(current, patch_body)
            elif ct == codec.STRATEGIC_PATCH:
                new = patchmod.strategic_merge_patch(current, patch_body, schema_node)
            else:
                raise AssertionError(ct)
            if not isinstance(new, dict):
                raise errors.bad_request("the patch produced a value that is not an object")
            new = self._check_kind(info, new)
            try:
                self._schema_check(info, new, mode, warnings)
            except APIError as e:
                raise _patch_decode_error(e, patch_body if ct == codec.STRATEGIC_PATCH else new,
                                          strategic=ct == codec.STRATEGIC_PATCH) from None
            return new

        if is_apply:
            obj, status = await self.apply(req, route, applied, manager, force, dry, schema_node)
        else:
            # (the patch functions copy the object they patch: no copy needed for them)
            obj, status = await self.guaranteed_update(info, route, mutate, manager, dry,
                                                       precondition=precondition, op="Update", patching=True,
                                                       copy_current=False)
        return _json(status, obj, _warning_headers(warnings))

    def _schema_node(self, info: ResourceInfo):
        from .schema.defs import SchemaNode

        if info.crd is not None:
            s = self._crd_schema(info)
            return s.schema_node() if s is not None else None
        return SchemaNode.for_definition(info.def_name) if info.def_name else None

    async def apply(self, req: Request, route: Route, applied: dict[str, Any], manager: str, force: bool,
                    dry: bool, schema_node) -> tuple[dict[str, Any], int]:
        from . import fieldmanager

        info = route.info
        sub = route.subresource
        for _ in range(8):
            kv = await self.objects.get_kv(key_of(info, route.namespace, route.name or ""))
            if kv is None:
                if sub is not None:
                    raise errors.not_found(info.group, info.plural, route.name or "")
                new = fieldmanager.apply(None, copy.deepcopy(applied), manager, force, schema_node,
                                         info.group_version, now_rfc3339(),
                                         ignore_fields=self._reset_fields(info, None, None, applied))
                self._read_defaults(info, new)
                mf = new["metadata"].get("managedFields")
                new = await self.prepare_create(info, route.namespace, new, manager, operation="Apply")
                if mf is not None:
                    new["metadata"]["managedFields"] = mf
                return await self.store_create(info, new, dry), 201
            current = decode(kv)
            new = fieldmanager.apply(copy.deepcopy(current), copy.deepcopy(applied), manager, force, schema_node,
                                     info.group_version, now_rfc3339(),
                                     ignore_fields=self._reset_fields(info, sub, current, applied),
                                     subresource=sub or "")
            self._read_defaults(info, new)
            try:
                return await self._finish_update(info, route, current, kv.mod_revision, new, dry,
                                                 manage=None), 200
            except APIError as e:
                if e.reason == "Conflict" and "modified" in e.message:
                    continue
                raise
        raise errors.conflict(info.group, info.plural, route.name or "", errors.OPTIMISTIC_LOCK)

    async def guaranteed_update(self, info: ResourceInfo, route: Route,
                                mutate: Callable[[dict[str, Any]], dict[str, Any]], manager: str, dry: bool, *,
                                precondition: str | None, op: str, patching: bool = False,
                                copy_current: bool = True) -> tuple[dict[str, Any], int]:
        """Read, mutate, write with a mod-revision compare; retry on a lost race unless
        the client gave a resourceVersion precondition (then: 409 Conflict). `mutate` gets
        a copy of the stored object, or the object itself with copy_current=False (for a
        mutate that leaves its argument alone and returns a new object)."""
        for _ in range(16):
            kv = await self.objects.get_kv(key_of(info, route.namespace, route.name or ""))
            if kv is None:
                raise errors.not_found(info.group, info.plural, route.name or "")
            current = decode(kv)
            self._read_defaults(info, current)
            if precondition is not None and precondition != str(kv.mod_revision):
                raise errors.conflict(info.group, info.plural, route.name or "", errors.OPTIMISTIC_LOCK)
            new = mutate(codec.json_copy(current) if copy_current else current)   # (decoded JSON)
            try:
                obj = await self._finish_update(info, route, current, kv.mod_revision, new, dry,
                                                manage=(manager, op))
                return obj, 200
            except APIError as e:
                if precondition is None and e.reason == "Conflict" and errors.OPTIMISTIC_LOCK in e.message:
                    continue
                raise
        raise errors.conflict(info.group, info.plural, route.name or "", errors.OPTIMISTIC_LOCK)

    async def _finish_update(self, info: ResourceInfo, route: Route, current: dict[str, Any], rev: int,
                             new: dict[str, Any], dry: bool, manage: tuple[str, str] | None) -> dict[str, Any]:
        """Apply the update rules (immutable metadata, status/spec split, generation,
        finalizers), validate, record managed fields and write."""
        strategy = self.registry.strategy(info)
        sub = route.subresource
        md = new.setdefault("metadata", {})
        if not isinstance(md, dict):
            raise errors.bad_request("metadata must be an object")
        cmd = current["metadata"]
        for f in _SERVER_MANAGED:
            if f in cmd:
                md[f] = cmd[f]
            else:
                md.pop(f, None)
        md["name"] = cmd["name"]
        if info.namespaced:
            md["namespace"] = cmd["namespace"]
        if sub == "status":
            # only status changes through /status (upstream ResetObjectMetaForStatus)
            status = new.get("status")
            keep_md = md
            new = copy.deepcopy(current)
            if status is None:
                new.pop("status", None)
            else:
                new["status"] = status
            if "managedFields" in keep_md:
                new["metadata"]["managedFields"] = keep_md["managedFields"]
            md = new["metadata"]
        elif strategy.has_status and info.plural != "namespaces" and sub != "binding":
            # (a binding sets the PodScheduled condition along with spec.nodeName)
            if "status" in current:
                new["status"] = current["status"]
            else:
                new.pop("status", None)
        if info.plural == "namespaces" and sub is None:
            new["status"] = current.get("status", {"phase": "Active"})
        if sub != "finalize" and info.plural == "namespaces":
            new.setdefault("spec", current.get("spec", {}))
            if sub is None:
                new["spec"] = current.get("spec", {})
        strategy.apply_defaults(new, False)
        if strategy.tracks_generation and sub is None and strategy.spec_changed(current, new):
            md["generation"] = int(cmd.get("generation") or 1) + 1
        if info.plural == "customresourcedefinitions" and info.group == "apiextensions.k8s.io":
            new["status"] = current.get("status", {})
        self._validate(info, new, current)
        if md.get("deletionTimestamp") and not cmd.get("deletionTimestamp"):
            md.pop("deletionTimestamp", None)
        # a terminating object may lose finalizers but not gain new ones
        if cmd.get("deletionTimestamp"):
            added = set(md.get("finalizers") or []) - set(cmd.get("finalizers") or [])
            if added:
                raise errors.invalid(info.group, info.kind, cmd["name"], [Cause(
                    "FieldValueForbidden", "metadata.finalizers",
                    f"Forbidden: no new finalizers can be added if the object is being deleted, found new "
                    f"finalizers []string{{{', '.join(repr(a).replace(chr(39), chr(34)) for a in sorted(added))}}}")])
        if manage is not None:
            from .fieldmanager import update_managed_fields

            new_md = new["metadata"]
            if "managedFields" not in new_md and "managedFields" in cmd:
                new_md["managedFields"] = cmd["managedFields"]
            new = update_managed_fields(current, new, manage[0], manage[1], sub or "", info.group_version,
                                        now_rfc3339(), schema=self._schema_node(info),
                                        reset_fields=self._reset_fields(info, sub, current, new))
        md = new["metadata"]
        md["resourceVersion"] = str(rev)
        if _same(current, new):
            return current          # no-op: nothing written, resourceVersion unchanged
        if cmd.get("deletionTimestamp") and not md.get("finalizers"):
            # the last finalizer is gone: the object goes away now
            if not dry:
                await self.objects.delete(info, route.namespace, cmd["name"], rev)
                await self._after_delete(info, current)
            return new
        if dry:
            return new
        result = await self.objects.update(info, route.namespace, cmd["name"], new, rev)
        if info.plural == "customresourcedefinitions" and info.group == "apiextensions.k8s.io":
            self.registry.set_crd(result)
        return result

    # --- delete -------------------------------------------------------------------------
    def _delete_options(self, req: Request) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        if req.body.strip():
            body = codec.decode_body(req.headers.get("content-type", ""), req.body)
            if not isinstance(body, dict):
                raise errors.bad_request("DeleteOptions must be an object")
            opts = body
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
        opts = self._delete_options(req)
        obj, status = await self.delete_one(route.info, route.namespace, route.name or "", opts)
        return _json(status, obj)

    async def delete_one(self, info: ResourceInfo, namespace: str | None, name: str,
                         opts: dict[str, Any]) -> tuple[dict[str, Any], int]:
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
                finalizers = finalizers or ["kubernetes"]
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
                nmd["finalizers"] = finalizers
                if info.plural == "namespaces" and info.group == "":
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
        from .selectors import FieldSelector, LabelSelector, field_set

        info = route.info
        if "deletecollection" not in info.verbs:
            raise errors.method_not_allowed()
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
                           "metadata": {"resourceVersion": str(rev)}, "items": deleted})

    # --- subresources -------------------------------------------------------------------
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
            from .selectors import LabelSelector

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
        return _json(200, self._scale_of(route.info, obj))

    async def update_scale(self, req: Request, route: Route) -> Response:
        body = codec.decode_body(req.headers.get("content-type", ""), req.body)
        if not isinstance(body, dict) or not isinstance(body.get("spec"), dict):
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
        from . import patch as patchmod

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
            replicas = ((new or {}).get("spec") or {}).get("replicas", 0) if isinstance(new, dict) else None
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
        return _json(200, self._scale_of(info, obj))

    async def _set_replicas(self, req: Request, route: Route, replicas: int, pre: str | None) -> Response:
        info = route.info
        spec_path, _, _ = self._scale_paths(info)
        manager = _manager(req, "Update")

        def mutate(cur: dict[str, Any]) -> dict[str, Any]:
            _set_path(cur, spec_path, replicas)
            return cur

        r = Route(info, route.namespace, route.name, None)
        obj, _ = await self.guaranteed_update(info, r, mutate, manager, _dry_run(req), precondition=pre, op="Update")
        return _json(200, self._scale_of(info, obj))

    async def bind(self, req: Request, route: Route) -> Response:
        body = codec.decode_body(req.headers.get("content-type", ""), req.body)
        if not isinstance(body, dict):
            raise errors.bad_request("Binding must be an object")
        target = body.get("target") or {}
        node = target.get("name") if isinstance(target, dict) else None
        if not node:
            raise errors.invalid("", "Binding", route.name or "", [Cause("FieldValueRequired", "target.name",
                                                                         "Required value")])
        name = route.name or ""

        def mutate(cur: dict[str, Any]) -> dict[str, Any]:
            spec = cur.setdefault("spec", {})
            if cur["metadata"].get("deletionTimestamp"):
                raise errors.conflict("", "pods", name, "pod is being deleted, cannot be assigned to a host")
            if spec.get("nodeName"):
                raise errors.conflict("", "pods", name,
                                      f"pod {name} is already assigned to node \"{spec['nodeName']}\"")
            spec["nodeName"] = node
            conds = (cur.setdefault("status", {})).setdefault("conditions", [])
            conds[:] = [c for c in conds if c.get("type") != "PodScheduled"]
            conds.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                          "lastTransitionTime": now_rfc3339()})
            return cur

        r = Route(route.info, route.namespace, name, "binding")
        pre = ((body.get("metadata") or {}).get("resourceVersion")) or None
        await self.guaranteed_update(route.info, r, mutate, _manager(req, "Update"), _dry_run(req),
                                     precondition=pre, op="Update")
        return _json(201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})

    async def evict(self, req: Request, route: Route) -> Response:
        body = codec.decode_body(req.headers.get("content-type", ""), req.body)
        opts = (body.get("deleteOptions") or {}) if isinstance(body, dict) else {}
        await self.delete_one(route.info, route.namespace, route.name or "", opts)
        return _json(201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})


# --- helpers ------------------------------------------------------------------------------

def _random_suffix() -> str:
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    return "".join(secrets.choice(alphabet) for _ in range(5))


def _go_value(v: Any) -> str:
    """Go's `%+v` of a decoded JSON value: map[k:v ...] with sorted keys, [a b], <nil>,
    floats in shortest form with an exponent below 1e-4 and from 1e6 on."""
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{_go_value(v[k])}" for k in sorted(v)) + "]"
    if isinstance(v, list):
        return "[" + " ".join(_go_value(x) for x in v) + "]"
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v == v and v not in (float("inf"), float("-inf")):
        if v == 0:
            return "0"
        from decimal import Decimal

        sign, digits, exp = Decimal(repr(v)).normalize().as_tuple()
        ds = "".join(map(str, digits))
        e10 = len(ds) + int(exp) - 1
        if e10 < -4 or e10 >= 6:
            mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
            return f"{'-' if sign else ''}{mant}e{'-' if e10 < 0 else '+'}{abs(e10):02d}"
        return f"{v:.{max(0, len(ds) - e10 - 1)}f}"
    return str(v)


def _patch_decode_error(e: APIError, value: Any, *, strategic: bool) -> APIError:
    """Upstream's patch handler reports a patched object it cannot decode (a type error, or
    unknown fields under fieldValidation=Strict) as 422 Invalid on the field `patch`, the
    value being the patch map (strategic merge, Go's %+v) or the patched JSON; kubectl edit
    relies on the 422 to reopen the editor. Other errors pass through."""
    if e.code != 400:
        return e
    detail = e.message
    head = detail.find(" cannot be handled as a ")
    if head != -1 and " in version " in detail[:head]:
        detail = detail.split(": ", 1)[1] if ": " in detail else detail
    shown = _go_value(value) if strategic else orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    body = f"Invalid value: {orjson.dumps(shown).decode()}: {detail}"
    return APIError(422, "Invalid", f' "" is invalid: patch: {body}',
                    {"causes": [{"reason": "FieldValueInvalid", "message": body, "field": "patch"}]})


def _json_type(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if v is None:
        return "null"
    return "object"


def _int_param(req: Request, name: str, default: int) -> int:
    v = req.param(name)
    if v is None or v == "":
        return default
    try:
        n = int(v)
    except ValueError:
        raise errors.bad_request(f"{name}: Invalid value: \"{v}\": must be an integer") from None
    if n < 0 and name == "limit":
        raise errors.bad_request(f"limit: Invalid value: {n}: must be greater than or equal to 0")
    return n


def _parse_rv(rv: str, field: str = "resourceVersion") -> int:
    try:
        n = int(rv)
        if n < 0:
            raise ValueError
        return n
    except ValueError:
        raise errors.bad_request(f'invalid resource version "{rv}"' if field == "resourceVersion"
                                 else f"{field}: Invalid value: \"{rv}\": must be a valid resource version") from None


def _read_revision(rv: str, req: Request) -> int:
    """GET with resourceVersion: "" or "0" read the latest; N reads the latest too unless
    resourceVersionMatch=Exact (N is then a snapshot revision)."""
    if rv and rv != "0":
        n = _parse_rv(rv)
        if req.param("resourceVersionMatch") == "Exact":
            return n
    return 0


def _encode_continue(rev: int, last_key: bytes, prefix: bytes) -> str:
    import base64

    start = last_key[len(prefix):].decode() + "\x00"
    raw = orjson.dumps({"v": "meta.k8s.io/v1", "rv": rev, "start": start})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=") if False else base64.urlsafe_b64encode(raw).decode()


def _continue_expired(start: bytes, prefix: bytes) -> APIError:
    """410 Expired for a continue token whose revision was compacted, with a fresh token
    (rv -1: "continue from the latest revision", an inconsistent but complete remainder)."""
    import base64

    raw = orjson.dumps({"v": "meta.k8s.io/v1", "rv": -1, "start": start[len(prefix):].decode()})
    return errors.expired(
        "The provided continue parameter is too old to display a consistent list result. You can start a new "
        "list without the continue parameter, or use the continue token in this response to retrieve the "
        "remainder of the results. Continuing with the provided token results in an inconsistent list - objects "
        "that were created, modified, or deleted between the time the first chunk was returned and now may show "
        "up in the list.", base64.urlsafe_b64encode(raw).decode())


def _decode_continue(token: str, prefix: bytes) -> tuple[int, bytes]:
    import base64
    import binascii

    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = orjson.loads(raw)
        if data.get("v") != "meta.k8s.io/v1":
            raise ValueError
        rev = int(data["rv"])
        start = data["start"]
        if not isinstance(start, str) or ".." in start.split("/") or start.startswith("/"):
            raise ValueError
    except (binascii.Error, ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise errors.bad_request("continue key is not valid: incorrect encoded start resourceVersion "
                                 "(version meta.k8s.io/v1)") from None
    if rev <= 0:
        rev = 0
    return rev, prefix + start.encode()


def _partial(obj: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata", {})}


def _warning_headers(warnings: list[str]) -> list[tuple[str, str]]:
    out = []
    for w in warnings[:32]:
        out.append(("Warning", '299 - "' + w.replace("\\", "\\\\").replace('"', '\\"') + '"'))
    return out


def _drop_paths(obj: dict[str, Any], paths: list[str]) -> None:
    """Remove unknown fields (given as "spec.foo" / "spec.containers[0].bar") in place."""
    import re

    for p in paths:
        parts = re.findall(r"[^.\[\]]+|\[\d+\]", p)
        cur: Any = obj
        for part in parts[:-1]:
            if part.startswith("["):
                i = int(part[1:-1])
                cur = cur[i] if isinstance(cur, list) and i < len(cur) else None
            else:
                cur = cur.get(part) if isinstance(cur, dict) else None
            if cur is None:
                break
        if isinstance(cur, dict) and parts and not parts[-1].startswith("["):
            cur.pop(parts[-1], None)


def _immutable_errors(info: ResourceInfo, old: dict[str, Any], new: dict[str, Any]) -> list[Cause]:
    out = []
    if info.plural == "pods" and info.group == "":
        os_, ns_ = old.get("spec") or {}, new.get("spec") or {}
        # upstream: only image, activeDeadlineSeconds, tolerations (additions), schedulingGates may change
        def strip(s: dict[str, Any]) -> dict[str, Any]:
            s = copy.deepcopy(s)
            for c in (s.get("containers") or []) + (s.get("initContainers") or []):
                if isinstance(c, dict):
                    c.pop("image", None)
            for k in ("activeDeadlineSeconds", "tolerations", "schedulingGates", "nodeName"):
                s.pop(k, None)
            return s
        if os_ != ns_ and strip(os_) != strip(ns_):
            out.append(Cause("FieldValueForbidden", "spec",
                             "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
                             "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
                             "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
                             "(allow it to be set to 1 if it was previously negative)"))
        if os_.get("nodeName") and os_.get("nodeName") != ns_.get("nodeName"):
            out.append(Cause("FieldValueForbidden", "spec.nodeName", "Forbidden: field is immutable"))
    elif info.group == "apps" and info.plural in ("deployments", "replicasets", "statefulsets", "daemonsets"):
        if (old.get("spec") or {}).get("selector") != (new.get("spec") or {}).get("selector"):
            out.append(Cause("FieldValueInvalid", "spec.selector",
                             f"Invalid value: {_go_selector((new.get('spec') or {}).get('selector'))}: field is immutable"))
    elif info.plural in ("configmaps", "secrets") and info.group == "" and old.get("immutable"):
        if old.get("data") != new.get("data") or old.get("binaryData") != new.get("binaryData"):
            out.append(Cause("FieldValueForbidden", "data", "Forbidden: field is immutable when `immutable` is set"))
    elif info.plural == "services" and info.group == "":
        oc = (old.get("spec") or {}).get("clusterIP")
        nc = (new.get("spec") or {}).get("clusterIP")
        if oc and nc and oc != nc:
            out.append(Cause("FieldValueInvalid", "spec.clusterIPs[0]",
                             f'Invalid value: []string{{"{nc}"}}: may not change once set'))
    elif info.plural == "customresourcedefinitions":
        if (old.get("spec") or {}).get("group") != (new.get("spec") or {}).get("group"):
            out.append(Cause("FieldValueInvalid", "spec.group", "Invalid value: field is immutable"))
    return out


def _go_selector(sel: Any) -> str:
    return "v1.LabelSelector{...}" if sel else "nil"


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal apart from managedFields timestamps (a no-op update writes nothing)."""
    if a == b:
        return True
    am, bm = a.get("metadata") or {}, b.get("metadata") or {}
    if am.get("managedFields") is None or bm.get("managedFields") is None:
        return False
    strip = lambda mf: [{k: v for k, v in e.items() if k != "time"} for e in mf]  # noqa: E731
    if strip(am["managedFields"]) != strip(bm["managedFields"]):
        return False
    a2 = {**a, "metadata": {k: v for k, v in am.items() if k != "managedFields"}}
    b2 = {**b, "metadata": {k: v for k, v in bm.items() if k != "managedFields"}}
    return a2 == b2


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


_ = (random, store_errors)
