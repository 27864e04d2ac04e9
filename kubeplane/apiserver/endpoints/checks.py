"""The checks of the write pipeline: kind and apiVersion, schema (types, unknown fields by
fieldValidation), semantic validation, namespace lifecycle, immutable fields."""
from __future__ import annotations

import copy
from typing import Any

import orjson

from ..machinery import codec, errors
from ..machinery.errors import APIError, Cause
from ..registry.patch import go_value
from ..registry.resources import ResourceInfo
from ..registry.schema import validate
from ..registry.schema.crd import CRDSchema, validate_crd
from ..registry.schema.defs import SchemaNode
from ..registry.storage import key_of
from ..registry.strategy import ephemeral_update_errors, name_errors
from .common import _json_type


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
    shown = go_value(value) if strategic else orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    body = f"Invalid value: {orjson.dumps(shown).decode()}: {detail}"
    return APIError(422, "Invalid", f' "" is invalid: patch: {body}',
                    {"causes": [{"reason": "FieldValueInvalid", "message": body, "field": "patch"}]})


def decode_typed(req: Any, def_name: str, kind: str, version: str = "v1", *,
                 protobuf: bool = True) -> dict[str, Any]:
    """A request body that is not a stored object (DeleteOptions, Scale, Binding, Eviction),
    decoded and type-checked against its definition the way Go's decoder would: anything
    but an object of the right field types is a 400 here, so the handlers may index it.
    `protobuf`: whether a protobuf body is taken (not for a custom resource's scale)."""
    body = codec.decode_body(req.headers.get("content-type", ""), req.body,
                             protobuf_kind=kind if protobuf else None)
    if codec.media_type(req.headers.get("content-type", "")) == codec.PROTOBUF and body.get("kind") != kind:
        raise errors.bad_request(f"the kind in the data ({body.get('kind')}) does not match the expected kind "
                                 f"({kind})")
    if not isinstance(body, dict):
        raise errors.bad_request(f'{kind} in version "{version}" cannot be handled as a {kind}: json: cannot '
                                 f"unmarshal {_json_type(body)} into Go value of type {_go_struct(def_name)}")
    findings = validate.check(body, def_name)
    if findings.type_errors:
        raise validate.decode_error(kind, version, findings.type_errors[0])
    return body


def _go_struct(def_name: str) -> str:
    parts = def_name.split(".")
    return f"{parts[-2]}.{parts[-1]}"


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


class Checks:
    """Mixin of RESTHandlers (handlers.py): needs .objects, .registry, .spawn and the other mixins."""

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
        if list(obj)[:3] != ["kind", "apiVersion", "metadata"]:
            # upstream's field order (Go's struct order: TypeMeta, ObjectMeta, then the rest)
            obj = {"kind": kind, "apiVersion": info.group_version, "metadata": md, **obj}
        return obj

    def _schema_check(self, info: ResourceInfo, obj: dict[str, Any], mode: str,
                      warnings: list[str], defaults: bool = True,
                      dups: codec.Duplicates | None = None) -> None:
        """Types (400 for built-ins, 422 for custom resources), then unknown fields and the
        body's repeated keys (`dups`) by fieldValidation: Strict -> 400 listing them in
        document order, Warn -> Warning headers, Ignore -> unknown fields dropped."""
        unknown: list[str] = []
        if info.crd is not None:
            schema = self._crd_schema(info)
            if schema is not None:
                pruned, unknown = schema.prune(obj)
                if pruned is not obj:
                    obj.clear()
                    obj.update(pruned)
                if defaults:
                    schema.apply_defaults(obj)
        elif info.def_name is not None:
            findings = validate.check(obj, info.def_name)
            if findings.type_errors:
                raise validate.decode_error(info.kind, info.version, findings.type_errors[0])
            unknown = findings.unknown
            for parent, key in findings.unknown_at:
                parent.pop(key, None)
        if mode == "Ignore" or not (unknown or (dups is not None and dups.paths)):
            return
        if mode == "Strict":
            parts = dups.strict(unknown) if dups is not None else [f'unknown field "{u}"' for u in unknown]
            raise errors.bad_request("strict decoding error: " + ", ".join(parts))
        warnings.extend(dups.merged(unknown) if dups is not None else [f'unknown field "{u}"' for u in unknown])

    def _crd_schema(self, info: ResourceInfo):
        cache = getattr(info, "_schema", None)
        if cache is None:
            s = ((info.crd_version or {}).get("schema") or {}).get("openAPIV3Schema")
            cache = CRDSchema(s) if s else False
            info._schema = cache  # type: ignore[attr-defined]
        return cache or None

    def _schema_node(self, info: ResourceInfo):
        if info.crd is not None:
            s = self._crd_schema(info)
            return s.schema_node() if s is not None else None
        return SchemaNode.for_definition(info.def_name) if info.def_name else None

    def _validate(self, info: ResourceInfo, obj: dict[str, Any], old: dict[str, Any] | None = None, *,
                  subresource: str | None = None) -> None:
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
            causes += validate_crd(obj)
        if old is not None:
            if subresource == "ephemeralcontainers":     # nothing else changed (writes._finish_update)
                causes += ephemeral_update_errors(old, obj)
            else:
                causes += _immutable_errors(info, old, obj) + strategy.validate_update(old, obj)
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

