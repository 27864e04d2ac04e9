"""create, update, patch (merge, strategic, JSON, apply): the write pipeline of
handlers.py's docstring, ending in one guarded store txn."""
from __future__ import annotations

import copy
import uuid
from typing import Any, Callable

from ..machinery import codec, errors
from ..registry import fieldmanager
from ..registry import patch as patchmod
from ..machinery.errors import APIError, Cause
from ..registry.fieldmanager import update_managed_fields
from ..transport.http import Request, Response
from ..registry.resources import ResourceInfo
from ..registry.schema.crd import crd_defaults
from ..registry.storage import decode, key_of
from .checks import _patch_decode_error, _same
from .common import (
    Route,
    _SERVER_MANAGED,
    _body_duplicates,
    _bool_param,
    _created,
    _dry_run,
    _field_validation,
    _json,
    _json_type,
    _manager,
    _accept,
    _parse_rv,
    _pb_kind,
    _random_suffix,
    _warning_headers,
    now_rfc3339,
)


_NAME_GENERATION_ATTEMPTS = 8     # upstream's maxNameGenerationCreateAttempts


def _rv_set_on_create(rv: Any) -> bool:
    """Whether a create's metadata.resourceVersion is refused: upstream's etcd3 store
    refuses only a value that parses as a non-zero unsigned 64-bit number
    (strconv.ParseUint); "v1", "-1", "0" and the empty string pass and are overwritten."""
    if not isinstance(rv, str) or not rv.isascii() or not rv.isdigit():
        return False
    n = int(rv)
    return 0 < n < 1 << 64


class Writes:
    """Mixin of RESTHandlers (handlers.py): needs .objects, .registry, .spawn and the other mixins."""

    async def create(self, req: Request, route: Route) -> Response:
        info = route.info
        accept = _accept(req, info)
        dry = _dry_run(req)
        mode = _field_validation(req)
        manager = _manager(req, "Update")
        obj = codec.decode_body(req.headers.get("content-type", ""), req.body, protobuf_kind=_pb_kind(info))
        dups = _body_duplicates(req, mode, obj)
        obj = self._check_kind(info, obj)
        warnings: list[str] = []
        self._schema_check(info, obj, mode, warnings, dups=dups)
        named = bool(obj["metadata"].get("name"))
        obj = await self.prepare_create(info, route.namespace, obj, manager)
        result = await self.store_create(info, obj, dry, generated=not named)
        if dry:
            return _json(201, result, _warning_headers(warnings), accept=accept)
        return _created(info, result, _warning_headers(warnings), accept)

    async def prepare_create(self, info: ResourceInfo, namespace: str | None, obj: dict[str, Any],
                             manager: str, *, operation: str = "Update") -> dict[str, Any]:
        md = obj["metadata"]
        if _rv_set_on_create(md.get("resourceVersion")):
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
            obj.update(crd_defaults(obj))
            fins = md.setdefault("finalizers", [])
            if "customresourcecleanup.apiextensions.k8s.io" not in fins:
                fins.append("customresourcecleanup.apiextensions.k8s.io")
        await self.priority.admit_create(info, obj)
        self._validate(info, obj)
        await self._check_namespace(info, md.get("namespace"), md["name"])
        if operation == "Update":
            md.pop("managedFields", None)
            obj = update_managed_fields(None, obj, manager, "Update", "", info.group_version, now_rfc3339(),
                                        schema=self._schema_node(info),
                                        reset_fields=self._reset_fields(info, None, obj, obj))
        # after the managed fields: upstream compares with an empty object that has these
        # zero values too, so a create owns none of them
        strategy.fill_zero_fields(obj)
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

    async def store_create(self, info: ResourceInfo, obj: dict[str, Any], dry: bool, *,
                           generated: bool = False) -> dict[str, Any]:
        """Write a prepared object. `generated`: its name came from generateName (a name
        the client gave is never replaced: upstream uses generateName only when name is
        empty); a generated name that exists already is drawn again, up to 8 times as
        upstream, then 409 AlreadyExists with retryAfterSeconds."""
        md = obj["metadata"]
        if dry:
            kv = await self.objects.get_kv(key_of(info, md.get("namespace"), md["name"]))
            if kv is not None:
                raise errors.already_exists(info.group, info.plural, md["name"])
            return obj
        attempts = _NAME_GENERATION_ATTEMPTS if generated else 1
        for attempt in range(attempts):
            try:
                created = await self.objects.create(info, md.get("namespace"), md["name"], obj)
                break
            except APIError as e:
                if e.reason != "AlreadyExists" or not generated:
                    raise
                if attempt == attempts - 1:
                    raise errors.generate_name_conflict(info.group, info.plural, md["name"]) from None
                md["name"] = md["generateName"][:63 - 5] + _random_suffix()
        if info.plural == "customresourcedefinitions" and info.group == "apiextensions.k8s.io":
            self.registry.set_crd(created)
        return created

    async def update(self, req: Request, route: Route) -> Response:
        info = route.info
        accept = _accept(req, info)
        dry = _dry_run(req)
        mode = _field_validation(req)
        manager = _manager(req, "Update")
        body = codec.decode_body(req.headers.get("content-type", ""), req.body, protobuf_kind=_pb_kind(info))
        dups = _body_duplicates(req, mode, body)
        body = self._check_kind(info, body)
        bmd = body["metadata"]
        if bmd.get("name") and bmd["name"] != route.name:
            raise errors.bad_request(f"the name of the object ({bmd['name']}) does not match the name on the "
                                     f"URL ({route.name})")
        if info.namespaced and bmd.get("namespace") and bmd["namespace"] != route.namespace:
            raise errors.bad_request("the namespace of the provided object does not match the namespace sent "
                                     "on the request")
        warnings: list[str] = []
        self._schema_check(info, body, mode, warnings, dups=dups)
        precondition = bmd.get("resourceVersion") or ""
        if precondition:
            _parse_rv(precondition, field="metadata.resourceVersion")

        def mutate(current: dict[str, Any]) -> dict[str, Any]:
            return copy.deepcopy(body)

        obj, status = await self.guaranteed_update(info, route, mutate, manager, dry,
                                                   precondition=precondition or None, op="Update")
        return _json(status, obj, _warning_headers(warnings), accept=accept)

    async def patch(self, req: Request, route: Route) -> Response:
        info = route.info
        accept = _accept(req, info)
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
        dups = _body_duplicates(req, mode, patch_body)
        if dups is not None:
            dups = dups.patch("json patch duplicate field" if ct == codec.JSON_PATCH else "duplicate field")
        elif is_apply and mode != "Ignore":
            ydups = codec.yaml_duplicates(req.body)
            if ydups is not None:       # upstream checks an apply configuration's YAML on its own
                if mode == "Strict":
                    raise errors.bad_request("error strict decoding YAML: error converting YAML to JSON: "
                                             + ydups.strict([])[0])
                warnings.extend(ydups.paths)
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
                self._schema_check(info, new, mode, warnings, dups=dups)
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
        return _json(status, obj, _warning_headers(warnings), accept=accept)

    async def apply(self, req: Request, route: Route, applied: dict[str, Any], manager: str, force: bool,
                    dry: bool, schema_node) -> tuple[dict[str, Any], int]:
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
        elif sub == "ephemeralcontainers":
            # only spec.ephemeralContainers changes (upstream dropNonEphemeralContainerUpdates)
            spec = new.get("spec")
            eph = spec.get("ephemeralContainers") if isinstance(spec, dict) else None
            keep_mf = md.get("managedFields")
            new = copy.deepcopy(current)
            cspec = new.setdefault("spec", {})
            if eph is None:
                cspec.pop("ephemeralContainers", None)
            else:
                cspec["ephemeralContainers"] = eph
            if keep_mf is not None:
                new["metadata"]["managedFields"] = keep_mf
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
        # before the generation and managed-fields comparisons, as upstream compares decoded
        # (zero-filled) objects: leaving out an always-written field changes nothing
        strategy.fill_zero_fields(new)
        if strategy.tracks_generation and sub is None and strategy.spec_changed(current, new):
            md["generation"] = int(cmd.get("generation") or 1) + 1
        if info.plural == "customresourcedefinitions" and info.group == "apiextensions.k8s.io":
            new["status"] = current.get("status", {})
        await self.priority.admit_update(info, new, current, sub)
        self._validate(info, new, current, subresource=sub)
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
        if cmd.get("deletionTimestamp") and not md.get("finalizers") and not (
                info.plural == "namespaces" and info.group == "" and (new.get("spec") or {}).get("finalizers")):
            # the last finalizer is gone (for a namespace also spec.finalizers): it goes now
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

