"""OpenAPI documents of the served API: /openapi/v2 (Swagger 2.0) and /openapi/v3 (3.0).

Clients read these for more than documentation:
  * kubectl checks server-side field validation by finding, in the group-version's document,
    a PATCH operation whose `x-kubernetes-group-version-kind` is the object's GVK and whose
    parameters include `fieldValidation` (cli-runtime query_param_verifier{,_v3}.go); so
    every operation here carries `x-kubernetes-action` and `x-kubernetes-group-version-kind`;
  * kubectl apply/explain find a kind's schema by the `x-kubernetes-group-version-kind` of
    a definition (a list of {group, kind, version}), and read x-kubernetes-patch-* keys.

Built-in schemas come from kubernetes-validate's definitions, converted once: nullable type
lists become single types, IntOrString is `type: string, format: int-or-string`, Quantity is
`type: string`, refs point at "#/definitions/" (v2) or "#/components/schemas/" (v3). A
custom resource's schema is its version's openAPIV3Schema, named like upstream
(group reversed + version + kind: com.example.stable.v1.CronTab), with apiVersion, kind and
metadata added.

`OpenAPICache` builds each document once per resource-set version and keeps bytes + ETag.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import threading
from typing import Any, Iterable

import orjson

from ..resources import ResourceInfo
from .defs import KUBE_VERSION, definitions

_SRC_REF = "#/$defs/"
V2_REF = "#/definitions/"
V3_REF = "#/components/schemas/"
_META = "io.k8s.apimachinery.pkg.apis.meta.v1."
_INTSTR = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
_QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"

# Types every group-version document needs besides its kinds.
_COMMON = [_META + n for n in ("APIResourceList", "DeleteOptions", "Patch", "Status", "WatchEvent",
                               "ObjectMeta", "ListMeta")]

_SUBRESOURCE_DEF = {
    "scale": ("io.k8s.api.autoscaling.v1.Scale", ("autoscaling", "v1", "Scale")),
    "binding": ("io.k8s.api.core.v1.Binding", ("", "v1", "Binding")),
    "eviction": ("io.k8s.api.policy.v1.Eviction", ("policy", "v1", "Eviction")),
    "token": ("io.k8s.api.authentication.v1.TokenRequest", ("authentication.k8s.io", "v1", "TokenRequest")),
}

PATCH_TYPES = ["application/json-patch+json", "application/merge-patch+json",
               "application/strategic-merge-patch+json", "application/apply-patch+yaml"]
CR_PATCH_TYPES = ["application/json-patch+json", "application/merge-patch+json",
                  "application/apply-patch+yaml"]
_PRODUCES = ["application/json", "application/yaml", "application/vnd.kubernetes.protobuf"]
_PRODUCES_WATCH = _PRODUCES + ["application/json;stream=watch",
                               "application/vnd.kubernetes.protobuf;stream=watch"]


# --- schema conversion ---------------------------------------------------------------------

def _convert(s: Any, ref: str) -> Any:
    """kubernetes-validate JSON Schema -> OpenAPI schema (either version, by `ref` prefix)."""
    if isinstance(s, list):
        return [_convert(x, ref) for x in s]
    if not isinstance(s, dict):
        return s
    out: dict[str, Any] = {}
    for k, v in s.items():
        if k == "$ref" and isinstance(v, str) and v.startswith(_SRC_REF):
            out[k] = ref + v[len(_SRC_REF):]
        elif k == "type" and isinstance(v, list):
            ts = [t for t in v if t != "null"]
            if len(ts) == 1:
                out[k] = ts[0]
            elif ts:
                out[k] = ts[0]
        elif k in ("properties", "patternProperties"):
            out[k] = {pk: _convert(pv, ref) for pk, pv in v.items()}
        elif k in ("enum", "default", "example", "x-kubernetes-group-version-kind",
                   "x-kubernetes-list-map-keys", "required", "x-kubernetes-unions"):
            out[k] = v
        else:
            out[k] = _convert(v, ref)
    return out


@functools.cache
def _builtin_schemas(ref: str) -> dict[str, dict[str, Any]]:
    """All built-in definitions converted for one ref style (built once)."""
    out: dict[str, dict[str, Any]] = {}
    for name, s in definitions().items():
        if name == _INTSTR:
            out[name] = {"description": "IntOrString is a type that can hold an int32 or a string.  "
                         "When used in JSON or YAML marshalling and unmarshalling, it produces or "
                         "consumes the inner type.  This allows you to have, for example, a JSON field "
                         "that can accept a name or number.",
                         "format": "int-or-string", "type": "string"}
            continue
        if name == _QUANTITY:
            out[name] = {"description": s.get("description", "Quantity is a fixed-point representation "
                                              "of a number."), "type": "string"}
            continue
        c = _convert(s, ref)
        if "x-kubernetes-group-version-kind" in s:
            # kubernetes-validate pins apiVersion/kind with an enum; upstream does not
            for k in ("apiVersion", "kind"):
                p = (c.get("properties") or {}).get(k)
                if isinstance(p, dict):
                    p.pop("enum", None)
        out[name] = c
    return out


def _refs(s: Any, prefix: str, acc: set[str]) -> None:
    if isinstance(s, dict):
        for k, v in s.items():
            if k == "$ref" and isinstance(v, str) and v.startswith(prefix):
                acc.add(v[len(prefix):])
            elif k == "properties" and isinstance(v, dict):  # a map: keys may be "default"
                for pv in v.values():
                    _refs(pv, prefix, acc)
            elif k not in ("enum", "default", "example"):
                _refs(v, prefix, acc)
    elif isinstance(s, list):
        for x in s:
            _refs(x, prefix, acc)


def _closure(roots: Iterable[str], schemas: dict[str, dict[str, Any]], prefix: str) -> dict[str, Any]:
    """Schemas reachable from `roots` (by $ref), sorted by name."""
    seen: set[str] = set()
    todo = [r for r in roots if r in schemas]
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        acc: set[str] = set()
        _refs(schemas[n], prefix, acc)
        todo.extend(a for a in acc if a not in seen and a in schemas)
    return {n: schemas[n] for n in sorted(seen)}


def crd_def_name(group: str, version: str, kind: str) -> str:
    """Upstream's definition name of a custom kind: stable.example.com -> com.example.stable."""
    return ".".join(reversed(group.split("."))) + f".{version}.{kind}"


def _v2_structural(s: Any) -> Any:
    """The v2 form of a CRD schema, as upstream publishes it: no nullable (a nullable field
    loses its type), no allOf/anyOf/oneOf/not, int-or-string without a type."""
    if isinstance(s, list):
        return [_v2_structural(x) for x in s]
    if not isinstance(s, dict):
        return s
    out: dict[str, Any] = {}
    for k, v in s.items():
        if k in ("allOf", "anyOf", "oneOf", "not", "nullable", "x-kubernetes-validations"):
            continue
        if k == "properties" and isinstance(v, dict):
            out[k] = {pk: _v2_structural(pv) for pk, pv in v.items()}
        elif k in ("enum", "default", "example", "required", "x-kubernetes-list-map-keys"):
            out[k] = v
        else:
            out[k] = _v2_structural(v)
    if s.get("nullable") or s.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
    return out


def _custom_schemas(r: ResourceInfo, ref: str) -> dict[str, dict[str, Any]]:
    """The kind and list schemas of one custom resource version."""
    ver = r.crd_version or {}
    raw = copy.deepcopy(((ver.get("schema") or {}).get("openAPIV3Schema")) or
                        {"type": "object", "x-kubernetes-preserve-unknown-fields": True})
    s = _v2_structural(raw) if ref == V2_REF else raw
    props = dict(s.get("properties") or {})
    props["apiVersion"] = {"description": "APIVersion defines the versioned schema of this "
                           "representation of an object.", "type": "string"}
    props["kind"] = {"description": "Kind is a string value representing the REST resource this "
                     "object represents.", "type": "string"}
    meta = {"$ref": ref + _META + "ObjectMeta",
            "description": "Standard object's metadata. More info: https://git.k8s.io/community/"
                           "contributors/devel/sig-architecture/api-conventions.md#metadata"}
    props["metadata"] = meta
    s["properties"] = dict(sorted(props.items()))
    s["type"] = "object"
    gvk = [{"group": r.group, "kind": r.kind, "version": r.version}]
    s["x-kubernetes-group-version-kind"] = gvk
    name = crd_def_name(r.group, r.version, r.kind)
    lst = {
        "description": f"{r.kind}List is a list of {r.kind}",
        "properties": {
            "apiVersion": props["apiVersion"],
            "items": {"description": f"List of {r.plural}. More info: https://git.k8s.io/community/"
                      "contributors/devel/sig-architecture/api-conventions.md",
                      "items": {"$ref": ref + name}, "type": "array"},
            "kind": props["kind"],
            "metadata": {"$ref": ref + _META + "ListMeta", "description": "Standard list metadata."},
        },
        "required": ["items"], "type": "object",
        "x-kubernetes-group-version-kind": [{"group": r.group, "kind": r.list_kind,
                                             "version": r.version}],
    }
    return {name: s, name + "List": lst}


def _kind_def(r: ResourceInfo) -> str:
    if r.crd is not None:
        return crd_def_name(r.group, r.version, r.kind)
    return r.def_name or ""


def _list_def(r: ResourceInfo) -> str:
    return _kind_def(r) + "List"


# --- paths ---------------------------------------------------------------------------------

_PARAM_DOC = {
    "pretty": ("string", "If 'true', then the output is pretty printed."),
    "dryRun": ("string", "When present, indicates that modifications should not be persisted. An "
               "invalid or unrecognized dryRun directive will result in an error response and no "
               "further processing of the request. Valid values are: - All: all dry run stages "
               "will be processed"),
    "fieldManager": ("string", "fieldManager is a name associated with the actor or entity that is "
                     "making these changes. The value must be less than or 128 characters long, and "
                     "only contain printable characters, as defined by "
                     "https://golang.org/pkg/unicode/#IsPrint."),
    "fieldValidation": ("string", "fieldValidation instructs the server on how to handle objects in "
                        "the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid "
                        "values are: - Ignore: This will ignore any unknown fields that are silently "
                        "dropped from the object, and will ignore all but the last duplicate field "
                        "that the decoder encounters. - Warn: This will send a warning via the "
                        "standard warning response header for each unknown field that is dropped from "
                        "the object, and for each duplicate field that is encountered. - Strict: This "
                        "will fail the request with a BadRequest error if any unknown fields would be "
                        "dropped from the object, or if any duplicate fields are present."),
    "force": ("boolean", "Force is going to \"force\" Apply requests. It means user will re-acquire "
              "conflicting fields owned by other people. Force flag must be unset for non-apply "
              "patch requests."),
    "allowWatchBookmarks": ("boolean", "allowWatchBookmarks requests watch events with type "
                            "\"BOOKMARK\"."),
    "continue": ("string", "The continue option should be set when retrieving more results from "
                 "the server."),
    "fieldSelector": ("string", "A selector to restrict the list of returned objects by their "
                      "fields. Defaults to everything."),
    "labelSelector": ("string", "A selector to restrict the list of returned objects by their "
                      "labels. Defaults to everything."),
    "limit": ("integer", "limit is a maximum number of responses to return for a list call."),
    "resourceVersion": ("string", "resourceVersion sets a constraint on what resource versions a "
                        "request may be served from."),
    "resourceVersionMatch": ("string", "resourceVersionMatch determines how resourceVersion is "
                             "applied to list calls."),
    "sendInitialEvents": ("boolean", "`sendInitialEvents=true` may be set together with "
                          "`watch=true`."),
    "timeoutSeconds": ("integer", "Timeout for the list/watch call."),
    "watch": ("boolean", "Watch for changes to the described resources and return them as a "
              "stream of add, update, and remove notifications."),
    "gracePeriodSeconds": ("integer", "The duration in seconds before the object should be deleted."),
    "orphanDependents": ("boolean", "Deprecated: please use the PropagationPolicy."),
    "propagationPolicy": ("string", "Whether and how garbage collection will be performed."),
    "ignoreStoreReadErrorWithClusterBreakingPotential": (
        "boolean", "if set to true, it will trigger an unsafe deletion of the resource in case "
        "the normal deletion flow fails with a corrupt object error."),
}
_LIST_PARAMS = ["allowWatchBookmarks", "continue", "fieldSelector", "labelSelector", "limit",
                "resourceVersion", "resourceVersionMatch", "sendInitialEvents", "timeoutSeconds",
                "watch"]
_WRITE_PARAMS = ["dryRun", "fieldManager", "fieldValidation"]
_PATCH_PARAMS = ["dryRun", "fieldManager", "fieldValidation", "force"]
_DELETE_PARAMS = ["dryRun", "gracePeriodSeconds", "ignoreStoreReadErrorWithClusterBreakingPotential",
                  "orphanDependents", "propagationPolicy"]


def _camel_group(group: str) -> str:
    if not group:
        return "Core"
    g = group[: -len(".k8s.io")] if group.endswith(".k8s.io") else group
    return "".join(p[:1].upper() + p[1:] for p in g.replace("-", ".").split("."))


def _tag(group: str, version: str) -> str:
    c = _camel_group(group)
    return f"{c[:1].lower()}{c[1:]}_{version}"


class _Op:
    """One operation, rendered for v2 or v3."""

    def __init__(self, method: str, action: str, op_id: str, desc: str, gvk: tuple[str, str, str],
                 tag: str, query: list[str], body: str | None, resp: str, codes: tuple[str, ...],
                 consumes: list[str] | None = None, watch: bool = False):
        self.method, self.action, self.op_id, self.desc = method, action, op_id, desc
        self.gvk, self.tag, self.query, self.body, self.resp = gvk, tag, query, body, resp
        self.codes, self.consumes, self.watch = codes, consumes, watch

    def _ext(self) -> dict[str, Any]:
        g, v, k = self.gvk
        return {"x-kubernetes-action": self.action,
                "x-kubernetes-group-version-kind": {"group": g, "kind": k, "version": v}}

    def v2(self) -> dict[str, Any]:
        params: list[dict[str, Any]] = []
        if self.body:
            params.append({"in": "body", "name": "body", "required": self.method != "delete",
                           "schema": {"$ref": V2_REF + self.body}})
        for q in self.query:
            t, d = _PARAM_DOC[q]
            params.append({"description": d, "in": "query", "name": q, "type": t, "uniqueItems": True})
        op: dict[str, Any] = {"consumes": self.consumes or ["*/*"], "description": self.desc,
                              "operationId": self.op_id}
        if params:
            op["parameters"] = params
        op["produces"] = _PRODUCES_WATCH if self.watch else _PRODUCES
        op["responses"] = {c: {"description": _CODE_TEXT[c], "schema": {"$ref": V2_REF + self.resp}}
                           for c in self.codes}
        op["responses"]["401"] = {"description": "Unauthorized"}
        op["schemes"] = ["https"]
        op["tags"] = [self.tag]
        op.update(self._ext())
        return op

    def v3(self) -> dict[str, Any]:
        op: dict[str, Any] = {"description": self.desc, "operationId": self.op_id}
        params = []
        for q in self.query:
            t, d = _PARAM_DOC[q]
            params.append({"description": d, "in": "query", "name": q,
                           "schema": {"type": t, "uniqueItems": True}})
        if params:
            op["parameters"] = params
        if self.body:
            types = self.consumes or ["application/json", "application/yaml"]
            op["requestBody"] = {"content": {t: {"schema": {"$ref": V3_REF + self.body}} for t in types},
                                 "required": self.method != "delete"}
        produces = _PRODUCES_WATCH if self.watch else _PRODUCES
        op["responses"] = {c: {"content": {t: {"schema": {"$ref": V3_REF + self.resp}} for t in produces},
                               "description": _CODE_TEXT[c]} for c in self.codes}
        op["responses"]["401"] = {"description": "Unauthorized"}
        op["tags"] = [self.tag]
        op.update(self._ext())
        return op


_CODE_TEXT = {"200": "OK", "201": "Created", "202": "Accepted"}


def _path_param(name: str, desc: str) -> tuple[str, str, str]:
    return (name, desc, "path")


def _paths_for(r: ResourceInfo) -> list[tuple[str, list[tuple[str, str, str]], list[_Op]]]:
    """(path, path-level parameters, operations) for one resource."""
    g, v = r.group, r.version
    gvk = (g, v, r.kind)
    base = f"/apis/{g}/{v}" if g else f"/api/{v}"
    cg = _camel_group(g) + v[:1].upper() + v[1:]
    tag = _tag(g, v)
    ns = "Namespaced" if r.namespaced else ""
    kd, ld = _kind_def(r), _list_def(r)
    verbs = set(r.verbs)
    status = _META + "Status"
    patch_types = CR_PATCH_TYPES if r.crd is not None else PATCH_TYPES
    pretty = ("pretty", "If 'true', then the output is pretty printed.", "query")
    nsp = _path_param("namespace", "object name and auth scope, such as for teams and projects")
    namep = _path_param("name", f"name of the {r.kind}")
    coll = f"{base}/namespaces/{{namespace}}/{r.plural}" if r.namespaced else f"{base}/{r.plural}"
    item = f"{coll}/{{name}}"
    scope = [nsp] if r.namespaced else []
    out: list[tuple[str, list[tuple[str, str, str]], list[_Op]]] = []

    ops: list[_Op] = []
    if "list" in verbs:
        ops.append(_Op("get", "list", f"list{cg}{ns}{r.kind}", f"list or watch objects of kind {r.kind}",
                       gvk, tag, _LIST_PARAMS, None, ld, ("200",), watch=True))
    if "create" in verbs:
        ops.append(_Op("post", "post", f"create{cg}{ns}{r.kind}", f"create a {r.kind}", gvk, tag,
                       _WRITE_PARAMS, kd, kd, ("200", "201", "202"), ["*/*"]))
    if "deletecollection" in verbs:
        ops.append(_Op("delete", "deletecollection", f"delete{cg}Collection{ns}{r.kind}",
                       f"delete collection of {r.kind}", gvk, tag,
                       ["continue", "dryRun", "fieldSelector", "gracePeriodSeconds",
                        "ignoreStoreReadErrorWithClusterBreakingPotential", "labelSelector", "limit",
                        "orphanDependents", "propagationPolicy", "resourceVersion",
                        "resourceVersionMatch", "sendInitialEvents", "timeoutSeconds"],
                       _META + "DeleteOptions", status, ("200",), ["*/*"]))
    if ops:
        out.append((coll, scope + [pretty], ops))

    ops = []
    if "get" in verbs:
        ops.append(_Op("get", "get", f"read{cg}{ns}{r.kind}", f"read the specified {r.kind}", gvk, tag,
                       [], None, kd, ("200",)))
    if "update" in verbs:
        ops.append(_Op("put", "put", f"replace{cg}{ns}{r.kind}", f"replace the specified {r.kind}", gvk,
                       tag, _WRITE_PARAMS, kd, kd, ("200", "201"), ["*/*"]))
    if "patch" in verbs:
        ops.append(_Op("patch", "patch", f"patch{cg}{ns}{r.kind}", f"partially update the specified {r.kind}",
                       gvk, tag, _PATCH_PARAMS, _META + "Patch", kd, ("200", "201"), patch_types))
    if "delete" in verbs:
        ops.append(_Op("delete", "delete", f"delete{cg}{ns}{r.kind}", f"delete a {r.kind}", gvk, tag,
                       _DELETE_PARAMS, _META + "DeleteOptions", status, ("200", "202"), ["*/*"]))
    if ops:
        out.append((item, [namep] + scope + [pretty], ops))

    for sub in r.subresources:
        cap = sub[:1].upper() + sub[1:]
        path = f"{item}/{sub}"
        params = [_path_param("name", f"name of the {_SUBRESOURCE_DEF.get(sub, ('', ('', '', r.kind)))[1][2]}")] \
            + scope + [pretty]
        if sub in ("status", "ephemeralcontainers"):
            ops = [
                _Op("get", "get", f"read{cg}{ns}{r.kind}{cap}", f"read {sub} of the specified {r.kind}",
                    gvk, tag, [], None, kd, ("200",)),
                _Op("put", "put", f"replace{cg}{ns}{r.kind}{cap}", f"replace {sub} of the specified {r.kind}",
                    gvk, tag, _WRITE_PARAMS, kd, kd, ("200", "201"), ["*/*"]),
                _Op("patch", "patch", f"patch{cg}{ns}{r.kind}{cap}",
                    f"partially update {sub} of the specified {r.kind}", gvk, tag, _PATCH_PARAMS,
                    _META + "Patch", kd, ("200", "201"), patch_types),
            ]
        elif sub == "scale":
            sdef, sgvk = _SUBRESOURCE_DEF["scale"]
            ops = [
                _Op("get", "get", f"read{cg}{ns}{r.kind}Scale", f"read scale of the specified {r.kind}",
                    sgvk, tag, [], None, sdef, ("200",)),
                _Op("put", "put", f"replace{cg}{ns}{r.kind}Scale", f"replace scale of the specified {r.kind}",
                    sgvk, tag, _WRITE_PARAMS, sdef, sdef, ("200", "201"), ["*/*"]),
                _Op("patch", "patch", f"patch{cg}{ns}{r.kind}Scale",
                    f"partially update scale of the specified {r.kind}", sgvk, tag, _PATCH_PARAMS,
                    _META + "Patch", sdef, ("200", "201"), patch_types),
            ]
        elif sub in ("binding", "eviction", "token"):
            sdef, sgvk = _SUBRESOURCE_DEF[sub]
            ops = [_Op("post", "post", f"create{cg}{ns}{r.kind}{cap}", f"create {sub} of a {r.kind}",
                       sgvk, tag, _WRITE_PARAMS, sdef, sdef, ("200", "201", "202"), ["*/*"])]
        elif sub == "finalize":
            ops = [_Op("put", "put", f"replace{cg}{ns}{r.kind}{cap}", f"replace {sub} of the specified {r.kind}",
                       gvk, tag, _WRITE_PARAMS, kd, kd, ("200", "201"), ["*/*"])]
        else:
            continue
        out.append((path, params, ops))

    if r.namespaced and "list" in verbs:
        out.append((f"{base}/{r.plural}", [pretty],
                    [_Op("get", "list", f"list{cg}{r.kind}ForAllNamespaces",
                         f"list or watch objects of kind {r.kind}", gvk, tag, _LIST_PARAMS, None, ld,
                         ("200",), watch=True)]))
    if "watch" in verbs:
        wev = _META + "WatchEvent"
        wcoll = f"{base}/watch/namespaces/{{namespace}}/{r.plural}" if r.namespaced else f"{base}/watch/{r.plural}"
        out.append((wcoll, scope + [pretty],
                    [_Op("get", "watchlist", f"watch{cg}{ns}{r.kind}List",
                         f"watch individual changes to a list of {r.kind}. deprecated: use the 'watch' "
                         "parameter with a list operation instead.", gvk, tag, _LIST_PARAMS, None, wev,
                         ("200",), watch=True)]))
        out.append((f"{wcoll}/{{name}}", [namep] + scope + [pretty],
                    [_Op("get", "watch", f"watch{cg}{ns}{r.kind}",
                         f"watch changes to an object of kind {r.kind}. deprecated: use the 'watch' "
                         "parameter with a list operation instead, filtered to a single item with the "
                         "'fieldSelector' parameter.", gvk, tag, _LIST_PARAMS, None, wev, ("200",),
                         watch=True)]))
        if r.namespaced:
            out.append((f"{base}/watch/{r.plural}", [pretty],
                        [_Op("get", "watchlist", f"watch{cg}{r.kind}ListForAllNamespaces",
                             f"watch individual changes to a list of {r.kind}. deprecated: use the "
                             "'watch' parameter with a list operation instead.", gvk, tag, _LIST_PARAMS,
                             None, wev, ("200",), watch=True)]))
    return out


def _param_v2(p: tuple[str, str, str]) -> dict[str, Any]:
    name, desc, where = p
    d: dict[str, Any] = {"description": desc, "in": where, "name": name, "type": "string",
                         "uniqueItems": True}
    if where == "path":
        d["required"] = True
    return d


def _param_v3(p: tuple[str, str, str]) -> dict[str, Any]:
    name, desc, where = p
    d: dict[str, Any] = {"description": desc, "in": where, "name": name}
    if where == "path":
        d["required"] = True
    d["schema"] = {"type": "string", "uniqueItems": True}
    return d


def _roots(resources: Iterable[ResourceInfo]) -> list[str]:
    roots = list(_COMMON)
    for r in resources:
        if r.crd is None and r.def_name:
            roots += [r.def_name, r.def_name + "List"]
        for sub in r.subresources:
            if sub in _SUBRESOURCE_DEF:
                roots.append(_SUBRESOURCE_DEF[sub][0])
    return roots


def _schemas(resources: list[ResourceInfo], ref: str) -> dict[str, Any]:
    builtin = _builtin_schemas(ref)
    out = _closure(_roots(resources), builtin, ref)
    for r in resources:
        if r.crd is not None:
            out.update(_custom_schemas(r, ref))
    return dict(sorted(out.items()))


_INFO = {"title": "Kubernetes", "version": KUBE_VERSION}


def openapi_v2(resources: Iterable[ResourceInfo]) -> bytes:
    """The Swagger 2.0 document of all `resources` (built-in and custom)."""
    rs = list(resources)
    paths: dict[str, Any] = {}
    for r in rs:
        for path, params, ops in _paths_for(r):
            item: dict[str, Any] = {op.method: op.v2() for op in ops}
            item["parameters"] = [_param_v2(p) for p in params]
            paths[path] = item
    doc = {"definitions": _schemas(rs, V2_REF), "info": _INFO, "paths": dict(sorted(paths.items())),
           "security": [{"BearerToken": []}],
           "securityDefinitions": {"BearerToken": {"description": "Bearer Token authentication",
                                                   "in": "header", "name": "authorization",
                                                   "type": "apiKey"}},
           "swagger": "2.0"}
    return orjson.dumps(doc)


def group_versions(resources: Iterable[ResourceInfo]) -> list[tuple[str, str]]:
    seen: dict[tuple[str, str], None] = {}
    for r in resources:
        seen[(r.group, r.version)] = None
    return list(seen)


def gv_path(group: str, version: str) -> str:
    """The v3 index key: "api/v1" or "apis/apps/v1"."""
    return f"apis/{group}/{version}" if group else f"api/{version}"


def openapi_v3_group_version(group: str, version: str, resources: Iterable[ResourceInfo]) -> bytes:
    """The OpenAPI 3.0 document of one group-version (paths and the schemas they reach)."""
    rs = [r for r in resources if r.group == group and r.version == version]
    paths: dict[str, Any] = {}
    for r in rs:
        for path, params, ops in _paths_for(r):
            item: dict[str, Any] = {op.method: op.v3() for op in ops}
            item["parameters"] = [_param_v3(p) for p in params]
            paths[path] = item
    doc = {"components": {"schemas": _schemas(rs, V3_REF),
                          "securitySchemes": {"BearerToken": {"description": "Bearer Token authentication",
                                                              "in": "header", "name": "authorization",
                                                              "type": "apiKey"}}},
           "info": _INFO, "openapi": "3.0.0", "paths": dict(sorted(paths.items())),
           "security": [{"BearerToken": []}]}
    return orjson.dumps(doc)


def etag(data: bytes) -> str:
    """Upstream's hash of a document: uppercase hex SHA-512 (also the v3 index's ?hash=)."""
    return hashlib.sha512(data).hexdigest().upper()


def openapi_v3_index(resources: Iterable[ResourceInfo],
                     docs: dict[str, bytes] | None = None) -> bytes:
    """`{"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=..."}, ...}}`.
    `docs` (index key -> document bytes) saves rebuilding documents already built."""
    rs = list(resources)
    out: dict[str, Any] = {}
    for g, v in group_versions(rs):
        key = gv_path(g, v)
        data = docs[key] if docs and key in docs else openapi_v3_group_version(g, v, rs)
        out[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={etag(data)}"}
    return orjson.dumps({"paths": dict(sorted(out.items()))})


class OpenAPICache:
    """Documents built on first use and kept until the resource set changes.

    Call `refresh(resources, version)` whenever the registry's resource version counter may
    have moved (cheap when it did not); `v2()`, `v3_index()`, `v3(key)` return
    (bytes, etag) or None for an unknown group-version key ("api/v1", "apis/apps/v1")."""

    def __init__(self, resources: Iterable[ResourceInfo], version: int = 0):
        self._lock = threading.Lock()
        self._reset(list(resources), version)

    def _reset(self, resources: list[ResourceInfo], version: int) -> None:
        self.resources = resources
        self.version = version
        self._v2: tuple[bytes, str] | None = None
        self._v3: dict[str, tuple[bytes, str]] = {}
        self._index: tuple[bytes, str] | None = None
        self._gvs = {gv_path(g, v): (g, v) for g, v in group_versions(resources)}

    def refresh(self, resources: Iterable[ResourceInfo], version: int) -> None:
        if version != self.version:
            with self._lock:
                if version != self.version:
                    self._reset(list(resources), version)

    def v2(self) -> tuple[bytes, str]:
        if self._v2 is None:
            data = openapi_v2(self.resources)
            self._v2 = (data, etag(data))
        return self._v2

    def v3(self, key: str) -> tuple[bytes, str] | None:
        key = key.strip("/")
        got = self._v3.get(key)
        if got is None:
            gv = self._gvs.get(key)
            if gv is None:
                return None
            data = openapi_v3_group_version(gv[0], gv[1], self.resources)
            got = self._v3[key] = (data, etag(data))
        return got

    def v3_index(self) -> tuple[bytes, str]:
        if self._index is None:
            docs = {}
            for key in self._gvs:
                got = self.v3(key)
                if got is not None:
                    docs[key] = got[0]
            data = openapi_v3_index(self.resources, docs)
            self._index = (data, etag(data))
        return self._index
