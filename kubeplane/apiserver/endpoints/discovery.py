"""Discovery documents: /version, /api, /apis, /apis/<g>, /api/v1, /apis/<g>/<v>, and the
aggregated form (apidiscovery.k8s.io v2 / v2beta1) of /api and /apis.

Pure functions from a list of ResourceInfo (built-ins plus CRD-defined resources, which have
`.crd` set) to plain dicts shaped like kube-apiserver v1.33's JSON, field order included. The
caller serializes and caches them (the registry's generation says when to rebuild).

Orders, as upstream:
- groups in /apis: by the APIService group priority kube-apiserver registers for built-in
  groups (higher first), CRD groups after them (priority 1000); ties by APIService name
  "<version>.<group>" in the APIGroupList and by group name in the aggregated list;
- versions in a group: kube-aware order (v2 > v1 > v1beta2 > v1beta1 > v1alpha1 > others
  alphabetically); the first is the preferred version;
- resources in a version: by path ("pods", "pods/binding", "pods/status", "podtemplates").

Content negotiation (`negotiate_discovery`) follows k8s.io/apiserver's negotiation: the Accept
alternatives are tried by q-value (stable, so in the client's order at equal q), and the first
one we can produce wins: aggregated discovery when it carries g=apidiscovery.k8s.io;v=v2 (or
v2beta1, which kubectl 1.26-1.29 ask for) ;as=APIGroupDiscoveryList, the plain documents for a
bare JSON/YAML alternative; any other `as=` conversion is skipped.
"""
from __future__ import annotations

import base64
import hashlib
import platform
import re
from typing import Any, Iterable

from kubeplane.apiserver.machinery import errors
from kubeplane.apiserver.registry.resources import ALL_VERBS, ResourceInfo

# The API version we serve (schemas are kubernetes-validate's v1.33 definitions).
KUBE_MAJOR = "1"
KUBE_MINOR = "33"
# Build metadata ("+"), not a pre-release ("-"): a pre-release sorts below v1.33.0 and fails
# semver constraints such as Helm's kubeVersion ">=1.19" (k3s reports "v1.33.0+k3s1" likewise).
GIT_VERSION = f"v{KUBE_MAJOR}.{KUBE_MINOR}.0+kubeplane"
BUILD_DATE = "2025-04-23T00:00:00Z"   # v1.33.0's release day; kubeplane has no build stamp

DISCOVERY_GROUP = "apidiscovery.k8s.io"
DISCOVERY_KIND = "APIGroupDiscoveryList"
AGGREGATED_VERSIONS = ("v2", "v2beta1")
JSON = "application/json"
YAML = "application/yaml"

# kube-apiserver's APIService group priorities for built-in groups (DefaultGenericAPIService
# Priorities plus kube-apiserver's own groups); CRD groups register with 1000.
GROUP_PRIORITY: dict[str, int] = {
    "": 18000, "apiregistration.k8s.io": 18000, "apps": 17800, "events.k8s.io": 17750,
    "authentication.k8s.io": 17700, "authorization.k8s.io": 17600, "autoscaling": 17500,
    "batch": 17400, "certificates.k8s.io": 17300, "networking.k8s.io": 17200, "policy": 17100,
    "rbac.authorization.k8s.io": 17000, "storage.k8s.io": 16800, "apiextensions.k8s.io": 16700,
    "admissionregistration.k8s.io": 16700, "scheduling.k8s.io": 16600,
    "coordination.k8s.io": 16500, "node.k8s.io": 16300, "discovery.k8s.io": 16200,
    "flowcontrol.apiserver.k8s.io": 16100, "internal.apiserver.k8s.io": 16000,
    "resource.k8s.io": 15900, "storagemigration.k8s.io": 15800,
}
CRD_GROUP_PRIORITY = 1000

# Upstream's verb order for custom resources (apiextensions-apiserver's discovery controller).
CRD_VERBS = ("delete", "deletecollection", "get", "list", "patch", "create", "update", "watch")

_GET_PATCH_UPDATE = ("get", "patch", "update")

# subresource -> (group, version, kind) of what it returns, or None for "the parent's kind"; verbs.
_SUBRESOURCES: dict[str, tuple[tuple[str, str, str] | None, tuple[str, ...]]] = {
    "status": (None, _GET_PATCH_UPDATE),
    "scale": (("autoscaling", "v1", "Scale"), _GET_PATCH_UPDATE),
    "binding": (("", "v1", "Binding"), ("create",)),
    "eviction": (("policy", "v1", "Eviction"), ("create",)),
    "finalize": (None, ("update",)),
    "ephemeralcontainers": (None, _GET_PATCH_UPDATE),
    "resize": (None, _GET_PATCH_UPDATE),
    "log": (None, ("get",)),
    "exec": (("", "v1", "PodExecOptions"), ("create", "get")),
    "attach": (("", "v1", "PodAttachOptions"), ("create", "get")),
    "portforward": (("", "v1", "PodPortForwardOptions"), ("create", "get")),
    "proxy": (None, ("create", "delete", "get", "patch", "update")),   # kind: <Kind>ProxyOptions
    "token": (("authentication.k8s.io", "v1", "TokenRequest"), ("create",)),
    "approval": (None, _GET_PATCH_UPDATE),
}


# --- small helpers ----------------------------------------------------------------------------

_KUBE_VERSION = re.compile(r"^v([1-9][0-9]*)(?:(alpha|beta)([1-9][0-9]*))?$")
_STABILITY = {None: 2, "beta": 1, "alpha": 0}


def version_sort_key(v: str) -> tuple:
    """Sort key putting versions in kube-aware preference order (k8s.io/apimachinery
    version.CompareKubeAwareVersionStrings, highest first): GA before beta before alpha,
    higher numbers first, then non-kube-like versions alphabetically."""
    m = _KUBE_VERSION.match(v)
    if m is None:
        return (1, 0, 0, 0, v)
    major, stab, minor = int(m.group(1)), m.group(2), int(m.group(3) or 0)
    return (0, -_STABILITY[stab], -major, -minor, "")


def storage_version_hash(group: str, version: str, kind: str) -> str:
    """upstream discovery.StorageVersionHash: base64 of the first 8 bytes of
    sha256("<group>/<version>/<kind>") of the storage version ("/v1/Pod" -> "xPOwRZ+Yhw8=")."""
    digest = hashlib.sha256(f"{group}/{version}/{kind}".encode()).digest()
    return base64.b64encode(digest[:8]).decode("ascii")


def _storage_version(r: ResourceInfo) -> str:
    if r.crd is not None:
        for v in (r.crd.get("spec") or {}).get("versions") or []:
            if v.get("storage"):
                return str(v.get("name") or r.version)
    return r.version


def _verbs(r: ResourceInfo) -> list[str]:
    if r.crd is not None and set(r.verbs) == set(ALL_VERBS):
        return list(CRD_VERBS)
    return list(r.verbs)


def _sub_info(r: ResourceInfo, sub: str) -> tuple[str, str, str, tuple[str, ...]]:
    """(group, version, kind, verbs) of a subresource of r."""
    target, verbs = _SUBRESOURCES.get(sub, (None, _GET_PATCH_UPDATE))
    g, v, k = target if target is not None else (r.group, r.version, r.kind)
    if sub == "proxy":
        k = r.kind + "ProxyOptions"       # NodeProxyOptions, PodProxyOptions, ServiceProxyOptions
    return g, v, k, verbs


def _group_priority(group: str, infos: Iterable[ResourceInfo]) -> int:
    if any(r.crd is None for r in infos):
        return GROUP_PRIORITY.get(group, 0)
    return CRD_GROUP_PRIORITY


def _by_group(resources: Iterable[ResourceInfo]) -> dict[str, dict[str, list[ResourceInfo]]]:
    """group -> version -> resources sorted by plural."""
    out: dict[str, dict[str, list[ResourceInfo]]] = {}
    for r in resources:
        out.setdefault(r.group, {}).setdefault(r.version, []).append(r)
    for versions in out.values():
        for lst in versions.values():
            lst.sort(key=lambda r: r.plural)
    return out


def _sorted_versions(versions: Iterable[str]) -> list[str]:
    return sorted(versions, key=version_sort_key)


def _ordered_groups(tree: dict[str, dict[str, list[ResourceInfo]]], *, aggregated: bool) -> list[str]:
    """Named groups (not core) in upstream's /apis order."""
    def key(g: str) -> tuple:
        infos = [r for lst in tree[g].values() for r in lst]
        tie = g if aggregated else min(f"{v}.{g}" for v in tree[g])
        return (-_group_priority(g, infos), tie)
    return sorted((g for g in tree if g), key=key)


def _not_found() -> errors.APIError:
    # A discovery path under a served group that it does not serve (app.py answers
    # paths outside every served group with plain-text "404 page not found" first).
    return errors.unknown_resource()


# --- /version, /api, /apis, /apis/<g> ---------------------------------------------------------

def _platform() -> str:
    arch = platform.machine().lower()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(arch, arch)
    return f"{platform.system().lower()}/{arch}"


def version_info(git_commit: str = "", build_date: str = BUILD_DATE) -> dict[str, Any]:
    """GET /version: k8s.io/apimachinery version.Info as v1.33 fills it."""
    return {
        "major": KUBE_MAJOR,
        "minor": KUBE_MINOR,
        "emulationMajor": KUBE_MAJOR,
        "emulationMinor": KUBE_MINOR,
        "minCompatibilityMajor": KUBE_MAJOR,
        "minCompatibilityMinor": str(int(KUBE_MINOR) - 1),
        "gitVersion": GIT_VERSION,
        "gitCommit": git_commit,
        "gitTreeState": "clean",
        "buildDate": build_date,
        "goVersion": "kubeplane (python)",
        "compiler": platform.python_implementation().lower(),
        "platform": _platform(),
    }


def api_versions(server_address: str = "127.0.0.1:6443") -> dict[str, Any]:
    """GET /api (legacy form): APIVersions. Upstream writes it without apiVersion."""
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                            "serverAddress": server_address}]}


def _group_dict(group: str, versions: Iterable[str]) -> dict[str, Any]:
    vs = [{"groupVersion": f"{group}/{v}", "version": v} for v in _sorted_versions(versions)]
    return {"name": group, "versions": vs, "preferredVersion": vs[0]}


def api_group_list(resources: Iterable[ResourceInfo]) -> dict[str, Any]:
    """GET /apis (legacy form): APIGroupList of the named groups."""
    tree = _by_group(resources)
    return {"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [_group_dict(g, tree[g]) for g in _ordered_groups(tree, aggregated=False)]}


def api_group(group: str, resources: Iterable[ResourceInfo]) -> dict[str, Any]:
    """GET /apis/<group>: APIGroup. Raises APIError 404 for a group not served."""
    versions = {r.version for r in resources if r.group == group}
    if not group or not versions:
        raise _not_found()
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_dict(group, versions)}


# --- /api/v1, /apis/<g>/<v> -------------------------------------------------------------------

def _resource_entry(r: ResourceInfo) -> dict[str, Any]:
    e: dict[str, Any] = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                         "kind": r.kind, "verbs": _verbs(r)}
    if r.short_names:
        e["shortNames"] = list(r.short_names)
    if r.categories:
        e["categories"] = list(r.categories)
    e["storageVersionHash"] = storage_version_hash(r.group, _storage_version(r), r.kind)
    return e


def _subresource_entry(r: ResourceInfo, sub: str) -> dict[str, Any]:
    g, v, k, verbs = _sub_info(r, sub)
    e: dict[str, Any] = {"name": f"{r.plural}/{sub}", "singularName": "",
                         "namespaced": r.namespaced}
    if (g, v) != (r.group, r.version):
        e["group"] = g
        e["version"] = v
    e["kind"] = k
    e["verbs"] = list(verbs)
    return e


def api_resource_list(group: str, version: str, resources: Iterable[ResourceInfo]) -> dict[str, Any]:
    """GET /api/v1 (group "") or /apis/<group>/<version>: APIResourceList, subresources as
    their own "<plural>/<sub>" entries. Raises APIError 404 for a group/version not served."""
    infos = [r for r in resources if r.group == group and r.version == version]
    if not infos:
        raise _not_found()
    entries = []
    for r in infos:
        entries.append(_resource_entry(r))
        entries.extend(_subresource_entry(r, s) for s in r.subresources)
    entries.sort(key=lambda e: e["name"])
    head: dict[str, Any] = {"kind": "APIResourceList"}
    if group:
        head["apiVersion"] = "v1"   # upstream leaves it out for the legacy core list
    return {**head, "groupVersion": f"{group}/{version}" if group else version,
            "resources": entries}


# --- aggregated discovery ---------------------------------------------------------------------

def _gvk(group: str, version: str, kind: str) -> dict[str, str]:
    return {"group": group, "version": version, "kind": kind}


def _aggregated_resource(r: ResourceInfo) -> dict[str, Any]:
    e: dict[str, Any] = {
        "resource": r.plural,
        "responseKind": _gvk(r.group, r.version, r.kind),
        "scope": "Namespaced" if r.namespaced else "Cluster",
        "singularResource": r.singular,
        "verbs": _verbs(r),
    }
    if r.short_names:
        e["shortNames"] = list(r.short_names)
    if r.categories:
        e["categories"] = list(r.categories)
    if r.subresources:
        subs = []
        for s in sorted(r.subresources):
            g, v, k, verbs = _sub_info(r, s)
            subs.append({"subresource": s, "responseKind": _gvk(g, v, k), "verbs": list(verbs)})
        e["subresources"] = subs
    return e


def _aggregated_group(name: str, versions: dict[str, list[ResourceInfo]]) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name} if name else {}
    meta["creationTimestamp"] = None   # how Go's ObjectMeta serializes at v1.33
    return {"metadata": meta, "versions": [
        {"version": v, "resources": [_aggregated_resource(r) for r in versions[v]],
         "freshness": "Current"}
        for v in _sorted_versions(versions)]}


def aggregated(resources: Iterable[ResourceInfo], legacy_core: bool,
               version: str = "v2") -> dict[str, Any]:
    """APIGroupDiscoveryList for GET /api (legacy_core=True: the core group only) or GET /apis
    (legacy_core=False: every named group), as apidiscovery.k8s.io/<version>."""
    if version not in AGGREGATED_VERSIONS:
        raise ValueError(f"aggregated discovery version {version!r}")
    tree = _by_group(resources)
    if legacy_core:
        items = [_aggregated_group("", tree[""])] if "" in tree else []
    else:
        items = [_aggregated_group(g, tree[g]) for g in _ordered_groups(tree, aggregated=True)]
    return {"kind": DISCOVERY_KIND, "apiVersion": f"{DISCOVERY_GROUP}/{version}",
            "metadata": {}, "items": items}


# --- negotiation and caching ------------------------------------------------------------------

def _parse_accept(header: str) -> list[tuple[str, str, dict[str, str]]]:
    """Accept alternatives as (type, subtype, params) in preference order: q descending, then
    concrete types before wildcards, then the client's order. q=0 alternatives are dropped."""
    alts = []
    for i, raw in enumerate(header.split(",")):
        parts = [p.strip() for p in raw.split(";")]
        typ, _, sub = parts[0].lower().partition("/")
        if not typ or not sub:
            continue
        params: dict[str, str] = {}
        q = 1.0
        for p in parts[1:]:
            k, eq, v = p.partition("=")
            k, v = k.strip().lower(), v.strip().strip('"')
            if not eq or not k:
                continue
            if k == "q":
                try:
                    q = float(v)
                except ValueError:
                    q = 0.0
            else:
                params[k] = v
        if q <= 0:
            continue
        alts.append((-q, typ == "*", sub == "*", i, typ, sub, params))
    alts.sort()
    return [(typ, sub, params) for *_, typ, sub, params in alts]


def _media_type_for(typ: str, sub: str) -> str | None:
    if (typ, sub) in (("application", "json"), ("application", "*"), ("*", "*")):
        return JSON
    if (typ, sub) in (("application", "yaml"), ("application", "x-yaml"), ("text", "yaml")):
        return YAML
    return None   # protobuf, cbor, text/html ...: not served here


def negotiate_discovery(accept_header: str | None) -> tuple[str | None, str]:
    """Which form of /api or /apis to serve for an Accept header: ("v2" | "v2beta1", content
    type) for aggregated discovery, (None, "application/json" | "application/yaml") for the
    plain APIVersions/APIGroupList. The content type is exactly kube-apiserver's, e.g.
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList" (kubectl 1.27
    compares it as a string). Raises APIError 406 when nothing acceptable is offered."""
    if not accept_header or not accept_header.strip():
        return None, JSON
    for typ, sub, params in _parse_accept(accept_header):
        media = _media_type_for(typ, sub)
        if media is None:
            continue
        if params.get("sv") or params.get("stream", "watch") not in ("", "watch"):
            continue   # no server-version override; the only stream schema is watch
        g, v, kind = params.get("g"), params.get("v"), params.get("as")
        if g is None and v is None and kind is None:
            return None, media
        if g == DISCOVERY_GROUP and kind == DISCOVERY_KIND and v in AGGREGATED_VERSIONS:
            return v, f"{media};g={DISCOVERY_GROUP};v={v};as={DISCOVERY_KIND}"
        # any other conversion (Table, PartialObjectMetadata, ...) is not offered here
    raise errors.not_acceptable("application/json, application/yaml")


def etag(doc_bytes: bytes) -> str:
    """The ETag header value for a serialized aggregated document: upstream's calculateETag,
    SHA-512 in upper-case hex, quoted."""
    return '"' + hashlib.sha512(doc_bytes).hexdigest().upper() + '"'


def not_modified(if_none_match: str | None, tag: str) -> bool:
    """True when an If-None-Match header names `tag` (answer 304 without a body). Besides
    upstream's exact comparison, lists, weak tags (W/"...") and "*" are understood."""
    if not if_none_match:
        return False
    for t in if_none_match.split(","):
        t = t.strip()
        if t == "*" or t == tag or (t.startswith("W/") and t[2:] == tag):
            return True
    return False


# Headers upstream sends with every aggregated discovery response (and its 304).
AGGREGATED_HEADERS = {"Vary": "Accept", "Cache-Control": "public"}
