"""Discovery documents against kube-apiserver v1.33's output (entries copied from real
/api/v1 responses), aggregated discovery, and Accept negotiation with kubectl's headers."""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import threading

import orjson
import pytest

from kubeplane.apiserver.endpoints import discovery as d
from kubeplane.apiserver.machinery.errors import APIError
from kubeplane.apiserver.registry.resources import BUILTIN, ResourceInfo

ALL8 = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


def _crd(group: str, kind: str, plural: str, versions: list[str], storage: str, *,
         scope: str = "Namespaced", subs: tuple[str, ...] = (), short=(), cats=()) -> list[ResourceInfo]:
    crd = {"metadata": {"name": f"{plural}.{group}"},
           "spec": {"group": group, "scope": scope,
                    "names": {"kind": kind, "plural": plural},
                    "versions": [{"name": v, "served": True, "storage": v == storage} for v in versions]}}
    return [ResourceInfo(group, v, kind, plural, kind.lower(), scope == "Namespaced", tuple(short),
                         tuple(cats), subs, crd=crd, crd_version=crd["spec"]["versions"][i])
            for i, v in enumerate(versions)]


WIDGETS = _crd("stable.example.com", "Widget", "widgets", ["v1beta1", "v1", "v2alpha1"], "v1",
               subs=("status", "scale"), short=("wd",), cats=("all", "example"))
GADGETS = _crd("acme.io", "Gadget", "gadgets", ["v1"], "v1", scope="Cluster")
ALL_RESOURCES = BUILTIN + WIDGETS + GADGETS


def _by_name(doc: dict) -> dict[str, dict]:
    return {e["name"]: e for e in doc["resources"]}


# --- legacy documents -------------------------------------------------------------------------

def test_core_resource_list_matches_upstream_entries():
    doc = d.api_resource_list("", "v1", BUILTIN)
    assert list(doc) == ["kind", "groupVersion", "resources"]   # no apiVersion for core, as upstream
    assert doc["kind"] == "APIResourceList" and doc["groupVersion"] == "v1"
    names = [e["name"] for e in doc["resources"]]
    assert names == sorted(names)
    got = _by_name(doc)
    # Verbatim from kube-apiserver's GET /api/v1 (field order included).
    upstream = [
        b'{"name":"pods","singularName":"pod","namespaced":true,"kind":"Pod","verbs":["create","delete","deletecollection","get","list","patch","update","watch"],"shortNames":["po"],"categories":["all"],"storageVersionHash":"xPOwRZ+Yhw8="}',
        b'{"name":"pods/attach","singularName":"","namespaced":true,"kind":"PodAttachOptions","verbs":["create","get"]}',
        b'{"name":"pods/binding","singularName":"","namespaced":true,"kind":"Binding","verbs":["create"]}',
        b'{"name":"pods/ephemeralcontainers","singularName":"","namespaced":true,"kind":"Pod","verbs":["get","patch","update"]}',
        b'{"name":"pods/eviction","singularName":"","namespaced":true,"group":"policy","version":"v1","kind":"Eviction","verbs":["create"]}',
        b'{"name":"pods/exec","singularName":"","namespaced":true,"kind":"PodExecOptions","verbs":["create","get"]}',
        b'{"name":"pods/log","singularName":"","namespaced":true,"kind":"Pod","verbs":["get"]}',
        b'{"name":"pods/portforward","singularName":"","namespaced":true,"kind":"PodPortForwardOptions","verbs":["create","get"]}',
        b'{"name":"pods/proxy","singularName":"","namespaced":true,"kind":"PodProxyOptions","verbs":["create","delete","get","patch","update"]}',
        b'{"name":"pods/status","singularName":"","namespaced":true,"kind":"Pod","verbs":["get","patch","update"]}',
        b'{"name":"namespaces","singularName":"namespace","namespaced":false,"kind":"Namespace","verbs":["create","delete","get","list","patch","update","watch"],"shortNames":["ns"],"storageVersionHash":"Q3oi5N2YM8M="}',
        b'{"name":"namespaces/finalize","singularName":"","namespaced":false,"kind":"Namespace","verbs":["update"]}',
        b'{"name":"namespaces/status","singularName":"","namespaced":false,"kind":"Namespace","verbs":["get","patch","update"]}',
        b'{"name":"configmaps","singularName":"configmap","namespaced":true,"kind":"ConfigMap","verbs":["create","delete","deletecollection","get","list","patch","update","watch"],"shortNames":["cm"],"storageVersionHash":"qFsyl6wFWjQ="}',
        b'{"name":"endpoints","singularName":"endpoints","namespaced":true,"kind":"Endpoints","verbs":["create","delete","deletecollection","get","list","patch","update","watch"],"shortNames":["ep"],"storageVersionHash":"fWeeMqaN/OA="}',
        b'{"name":"nodes","singularName":"node","namespaced":false,"kind":"Node","verbs":["create","delete","deletecollection","get","list","patch","update","watch"],"shortNames":["no"],"storageVersionHash":"XwShjMxG9Fs="}',
        b'{"name":"nodes/proxy","singularName":"","namespaced":false,"kind":"NodeProxyOptions","verbs":["create","delete","get","patch","update"]}',
        b'{"name":"secrets","singularName":"secret","namespaced":true,"kind":"Secret","verbs":["create","delete","deletecollection","get","list","patch","update","watch"],"storageVersionHash":"S6u1pOWzb84="}',
        b'{"name":"services","singularName":"service","namespaced":true,"kind":"Service","verbs":["create","delete","deletecollection","get","list","patch","update","watch"],"shortNames":["svc"],"categories":["all"],"storageVersionHash":"0/CO1lhkEBI="}',
        b'{"name":"services/proxy","singularName":"","namespaced":true,"kind":"ServiceProxyOptions","verbs":["create","delete","get","patch","update"]}',
        b'{"name":"resourcequotas","singularName":"resourcequota","namespaced":true,"kind":"ResourceQuota","verbs":["create","delete","deletecollection","get","list","patch","update","watch"],"shortNames":["quota"],"storageVersionHash":"8uhSgffRX6w="}',
        b'{"name":"serviceaccounts","singularName":"serviceaccount","namespaced":true,"kind":"ServiceAccount","verbs":["create","delete","deletecollection","get","list","patch","update","watch"],"shortNames":["sa"],"storageVersionHash":"pbx9ZvyFpBE="}',
    ]
    for raw in upstream:
        want = orjson.loads(raw)
        assert orjson.dumps(got[want["name"]]) == raw, want["name"]


def test_apps_resource_list_scale_subresource():
    doc = d.api_resource_list("apps", "v1", BUILTIN)
    assert list(doc)[:3] == ["kind", "apiVersion", "groupVersion"]
    assert doc["apiVersion"] == "v1" and doc["groupVersion"] == "apps/v1"
    got = _by_name(doc)
    assert got["deployments/scale"] == {"name": "deployments/scale", "singularName": "",
                                        "namespaced": True, "group": "autoscaling",
                                        "version": "v1", "kind": "Scale",
                                        "verbs": ["get", "patch", "update"]}
    assert got["deployments"]["storageVersionHash"] == "8aSe+NMegvE="
    assert got["deployments/status"]["kind"] == "Deployment"
    assert "daemonsets/scale" not in got
    assert {"replicasets/scale", "statefulsets/scale"} <= set(got)


def test_crd_status_subresource_and_resource_lists():
    doc = d.api_resource_list("apiextensions.k8s.io", "v1", BUILTIN)
    got = _by_name(doc)
    assert got["customresourcedefinitions"]["shortNames"] == ["crd", "crds"]
    assert got["customresourcedefinitions"]["categories"] == ["api-extensions"]
    assert got["customresourcedefinitions/status"]["verbs"] == ["get", "patch", "update"]
    # A custom resource: upstream's CRD verb order; hash of the storage version (v1) for every
    # served version.
    for v in ("v1", "v1beta1"):
        w = _by_name(d.api_resource_list("stable.example.com", v, ALL_RESOURCES))
        assert w["widgets"]["verbs"] == list(d.CRD_VERBS)
        assert w["widgets"]["storageVersionHash"] == d.storage_version_hash(
            "stable.example.com", "v1", "Widget")
        assert w["widgets/scale"]["group"] == "autoscaling"
        assert w["widgets/status"]["kind"] == "Widget" and "group" not in w["widgets/status"]


def test_all_category():
    have = {r.plural for r in BUILTIN if "all" in r.categories}
    assert have == {"pods", "services", "deployments", "replicasets", "statefulsets",
                    "daemonsets", "jobs", "cronjobs"}
    listed = set()
    for g, v in {(r.group, r.version) for r in BUILTIN}:
        for e in d.api_resource_list(g, v, BUILTIN)["resources"]:
            if "all" in e.get("categories", ()):
                listed.add(e["name"])
    assert listed == have


def test_unknown_group_version_is_404():
    for call in (lambda: d.api_resource_list("apps", "v1beta1", BUILTIN),
                 lambda: d.api_resource_list("nope", "v1", BUILTIN),
                 lambda: d.api_group("nope", BUILTIN),
                 lambda: d.api_group("", BUILTIN)):
        with pytest.raises(APIError) as e:
            call()
        assert e.value.code == 404 and e.value.reason == "NotFound"
        assert e.value.message == "the server could not find the requested resource"


def test_group_list_order_and_preferred_versions():
    doc = d.api_group_list(ALL_RESOURCES)
    assert doc["kind"] == "APIGroupList" and doc["apiVersion"] == "v1"
    names = [g["name"] for g in doc["groups"]]
    # kube-apiserver's priorities: apps 17800, events 17750, batch 17400, rbac 17000,
    # apiextensions 16700, coordination 16500, discovery 16200, flowcontrol 16100; CRD groups (1000) last.
    assert names == ["apps", "events.k8s.io", "batch", "rbac.authorization.k8s.io",
                     "apiextensions.k8s.io", "coordination.k8s.io", "discovery.k8s.io",
                     "flowcontrol.apiserver.k8s.io", "acme.io", "stable.example.com"]
    widgets = doc["groups"][-1]
    assert [v["version"] for v in widgets["versions"]] == ["v1", "v1beta1", "v2alpha1"]
    assert widgets["preferredVersion"] == {"groupVersion": "stable.example.com/v1", "version": "v1"}
    g = d.api_group("stable.example.com", ALL_RESOURCES)
    assert g["kind"] == "APIGroup" and g["apiVersion"] == "v1"
    assert g["versions"] == widgets["versions"] and g["preferredVersion"] == widgets["preferredVersion"]


def test_kube_aware_version_order():
    # The example from k8s.io/apimachinery's CompareKubeAwareVersionStrings docs.
    want = ["v10", "v2", "v1", "v11beta2", "v10beta3", "v3beta1", "v12alpha1", "v11alpha2",
            "foo1", "foo10"]
    assert sorted(reversed(want), key=d.version_sort_key) == want


def test_version_and_api_versions():
    v = d.version_info()
    assert (v["major"], v["minor"]) == ("1", "33")
    m = re.match(r"^v(\d+)\.(\d+)\.(\d+)(\+[0-9A-Za-z.-]+)?$", v["gitVersion"])
    assert m and (m.group(1), m.group(2)) == ("1", "33")
    for k in ("gitCommit", "gitTreeState", "buildDate", "goVersion", "compiler", "platform",
              "emulationMajor", "emulationMinor", "minCompatibilityMajor", "minCompatibilityMinor"):
        assert isinstance(v[k], str), k
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", v["buildDate"])
    assert "/" in v["platform"]
    assert d.api_versions("10.0.0.1:6443") == {
        "kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "10.0.0.1:6443"}]}


# --- aggregated -------------------------------------------------------------------------------

def test_aggregated_core():
    doc = d.aggregated(BUILTIN, legacy_core=True, version="v2")
    assert list(doc) == ["kind", "apiVersion", "metadata", "items"]
    assert (doc["kind"], doc["apiVersion"], doc["metadata"]) == (
        "APIGroupDiscoveryList", "apidiscovery.k8s.io/v2", {})
    [core] = doc["items"]
    assert "name" not in core["metadata"]
    [v1] = core["versions"]
    assert v1["version"] == "v1" and v1["freshness"] == "Current"
    res = {r["resource"]: r for r in v1["resources"]}
    assert [r["resource"] for r in v1["resources"]] == sorted(res)
    assert res["pods"] == {
        "resource": "pods",
        "responseKind": {"group": "", "version": "v1", "kind": "Pod"},
        "scope": "Namespaced",
        "singularResource": "pod",
        "verbs": ALL8,
        "shortNames": ["po"],
        "categories": ["all"],
        "subresources": [
            {"subresource": "attach", "responseKind": {"group": "", "version": "v1", "kind": "PodAttachOptions"},
             "verbs": ["create", "get"]},
            {"subresource": "binding", "responseKind": {"group": "", "version": "v1", "kind": "Binding"},
             "verbs": ["create"]},
            {"subresource": "ephemeralcontainers", "responseKind": {"group": "", "version": "v1", "kind": "Pod"},
             "verbs": ["get", "patch", "update"]},
            {"subresource": "eviction",
             "responseKind": {"group": "policy", "version": "v1", "kind": "Eviction"},
             "verbs": ["create"]},
            {"subresource": "exec", "responseKind": {"group": "", "version": "v1", "kind": "PodExecOptions"},
             "verbs": ["create", "get"]},
            {"subresource": "log", "responseKind": {"group": "", "version": "v1", "kind": "Pod"}, "verbs": ["get"]},
            {"subresource": "portforward",
             "responseKind": {"group": "", "version": "v1", "kind": "PodPortForwardOptions"},
             "verbs": ["create", "get"]},
            {"subresource": "proxy", "responseKind": {"group": "", "version": "v1", "kind": "PodProxyOptions"},
             "verbs": ["create", "delete", "get", "patch", "update"]},
            {"subresource": "status", "responseKind": {"group": "", "version": "v1", "kind": "Pod"},
             "verbs": ["get", "patch", "update"]},
        ],
    }
    assert res["namespaces"]["scope"] == "Cluster"
    assert {"subresource": "finalize",
            "responseKind": {"group": "", "version": "v1", "kind": "Namespace"},
            "verbs": ["update"]} in res["namespaces"]["subresources"]
    assert "subresources" not in res["configmaps"] and "categories" not in res["configmaps"]
    assert "shortNames" not in res["secrets"]


def test_aggregated_groups_v2beta1_and_crds():
    doc = d.aggregated(ALL_RESOURCES, legacy_core=False, version="v2beta1")
    assert doc["apiVersion"] == "apidiscovery.k8s.io/v2beta1"
    names = [i["metadata"]["name"] for i in doc["items"]]
    assert "" not in names
    assert names == ["apps", "events.k8s.io", "batch", "rbac.authorization.k8s.io",
                     "apiextensions.k8s.io", "coordination.k8s.io", "discovery.k8s.io",
                     "flowcontrol.apiserver.k8s.io", "acme.io", "stable.example.com"]
    apps = doc["items"][0]
    deploy = next(r for r in apps["versions"][0]["resources"] if r["resource"] == "deployments")
    assert deploy["subresources"] == [
        {"subresource": "scale",
         "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
         "verbs": ["get", "patch", "update"]},
        {"subresource": "status",
         "responseKind": {"group": "apps", "version": "v1", "kind": "Deployment"},
         "verbs": ["get", "patch", "update"]}]
    widgets = doc["items"][-1]
    assert [v["version"] for v in widgets["versions"]] == ["v1", "v1beta1", "v2alpha1"]
    w = widgets["versions"][1]["resources"][0]
    assert w["responseKind"] == {"group": "stable.example.com", "version": "v1beta1", "kind": "Widget"}
    assert w["verbs"] == list(d.CRD_VERBS)
    assert w["shortNames"] == ["wd"] and w["categories"] == ["all", "example"]
    gadget = doc["items"][-2]["versions"][0]["resources"][0]
    assert gadget["scope"] == "Cluster" and "subresources" not in gadget
    # v2 differs only in apiVersion.
    v2 = d.aggregated(ALL_RESOURCES, legacy_core=False, version="v2")
    assert v2["items"] == doc["items"]
    with pytest.raises(ValueError):
        d.aggregated(BUILTIN, legacy_core=False, version="v1")


def test_aggregated_is_deterministic_and_etag():
    a = orjson.dumps(d.aggregated(ALL_RESOURCES, False, "v2"))
    b = orjson.dumps(d.aggregated(list(reversed(ALL_RESOURCES)), False, "v2"))
    assert a == b
    tag = d.etag(a)
    assert tag == '"' + hashlib.sha512(a).hexdigest().upper() + '"'
    assert re.fullmatch(r'"[0-9A-F]{128}"', tag)
    assert d.etag(orjson.dumps(d.aggregated(BUILTIN, False, "v2"))) != tag
    assert d.not_modified(tag, tag)
    assert d.not_modified(f'"x", W/{tag}', tag)
    assert d.not_modified("*", tag)
    assert not d.not_modified(None, tag) and not d.not_modified("", tag)
    assert not d.not_modified(tag.strip('"'), tag)   # unquoted is not the same tag
    assert d.AGGREGATED_HEADERS == {"Vary": "Accept", "Cache-Control": "public"}


# --- negotiation ------------------------------------------------------------------------------

V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
V2B1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
# client-go's discovery Accept: v0.30+ (kubectl 1.30-1.33) and v0.26-v0.29 (kubectl 1.27-1.29,
# as seen in `kubectl -v=10` logs).
KUBECTL_133 = f"{V2},{V2B1},application/json"
KUBECTL_127 = f"{V2B1},application/json"


@pytest.mark.parametrize("accept,want", [
    (KUBECTL_133, ("v2", V2)),
    (KUBECTL_127, ("v2beta1", V2B1)),
    ("application/json, */*", (None, "application/json")),       # kubectl's legacy discovery
    ("application/json", (None, "application/json")),
    ("*/*", (None, "application/json")),
    ("", (None, "application/json")),
    (None, (None, "application/json")),
    # Parameter order does not matter; the answer is upstream's canonical g;v;as.
    ("application/json;as=APIGroupDiscoveryList;v=v2;g=apidiscovery.k8s.io", ("v2", V2)),
    # q-values beat order; equal q keeps the client's order.
    (f"application/json;q=0.5,{V2};q=0.9", ("v2", V2)),
    (f"{V2};q=0.4,application/json", (None, "application/json")),
    (f"{V2B1},{V2}", ("v2beta1", V2B1)),
    (f"{V2};q=0,application/json", (None, "application/json")),
    # What we cannot produce is skipped: protobuf, other conversions, unknown discovery versions.
    ("application/vnd.kubernetes.protobuf;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
     f"{V2},application/json", ("v2", V2)),
    ("application/json;as=Table;v=v1;g=meta.k8s.io,application/json", (None, "application/json")),
    ("application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList,application/json",
     (None, "application/json")),
    # YAML is served too.
    ("application/yaml;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
     ("v2", "application/yaml;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")),
    ("application/yaml", (None, "application/yaml")),
])
def test_negotiate(accept, want):
    assert d.negotiate_discovery(accept) == want


@pytest.mark.parametrize("accept", [
    "application/vnd.kubernetes.protobuf",
    "text/html",
    "application/json;as=Table;v=v1;g=meta.k8s.io",
    "garbage",
    f"{V2};q=0",
])
def test_negotiate_not_acceptable(accept):
    with pytest.raises(APIError) as e:
        d.negotiate_discovery(accept)
    assert e.value.code == 406 and e.value.reason == "NotAcceptable"


# --- kubectl end to end (skipped where no kubectl binary is installed) ------------------------

_KUBECTLS = {v: f"/usr/lib/google-cloud-sdk/bin/kubectl.{v}" for v in ("1.27", "1.29", "1.30", "1.33")}
_KUBECTLS = {v: p for v, p in _KUBECTLS.items() if os.access(p, os.X_OK)}
if not _KUBECTLS and shutil.which("kubectl"):
    _KUBECTLS = {"path": shutil.which("kubectl")}


@pytest.fixture
def discovery_server(tmp_path):
    """A throwaway HTTPS server (stdlib) answering the discovery paths with this module's
    documents, over the PKI and kubeconfig from certs.py; it records (path, Accept)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from kubeplane.apiserver.transport import certs

    pki = certs.ensure_pki(str(tmp_path / "pki"), [])
    seen: list[tuple[str, str, int]] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def _send(self, code: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(code)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = self.path.split("?")[0].rstrip("/")
            accept = self.headers.get("Accept", "")
            if self.headers.get("Authorization") != f"Bearer {pki.token}":
                seen.append((path, accept, 401))
                return self._send(401, b"{}", {"Content-Type": "application/json"})
            code, headers = 200, {}
            try:
                ct = "application/json"
                parts = path.split("/")
                if path == "/version":
                    doc = d.version_info()
                elif path in ("/api", "/apis"):
                    form, ct = d.negotiate_discovery(accept)
                    if form:
                        doc = d.aggregated(ALL_RESOURCES, path == "/api", form)
                        tag = d.etag(orjson.dumps(doc))
                        headers = {"ETag": tag, **d.AGGREGATED_HEADERS}
                        if d.not_modified(self.headers.get("If-None-Match"), tag):
                            seen.append((path, accept, 304))
                            return self._send(304, b"", headers)
                    else:
                        doc = d.api_versions() if path == "/api" else d.api_group_list(ALL_RESOURCES)
                elif path == "/api/v1":
                    doc = d.api_resource_list("", "v1", ALL_RESOURCES)
                elif len(parts) == 4 and parts[1] == "apis":
                    doc = d.api_resource_list(parts[2], parts[3], ALL_RESOURCES)
                elif len(parts) == 3 and parts[1] == "apis":
                    doc = d.api_group(parts[2], ALL_RESOURCES)
                else:
                    raise APIError(404, "NotFound", "the server could not find the requested resource")
            except APIError as e:
                doc, ct, code = e.status(), "application/json", e.code
            seen.append((path, accept, code))
            self._send(code, orjson.dumps(doc), {"Content-Type": ct, **headers})

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.socket = pki.ssl_context().wrap_socket(srv.socket, server_side=True)
    kubeconfig = str(tmp_path / "kubeconfig")
    certs.write_kubeconfig(kubeconfig, f"https://127.0.0.1:{srv.server_address[1]}", pki)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield kubeconfig, seen
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.mark.skipif(not _KUBECTLS, reason="no kubectl binary")
@pytest.mark.parametrize("version", sorted(_KUBECTLS))
def test_kubectl_uses_aggregated_discovery(discovery_server, tmp_path, version):
    kubeconfig, seen = discovery_server
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path / "home"),
           "KUBECONFIG": kubeconfig}

    def kubectl(*args: str) -> str:
        out = subprocess.run([_KUBECTLS[version], *args], env=env, capture_output=True,
                             text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        return out.stdout

    names = set(kubectl("api-resources", "--categories=all", "-o", "name").split())
    assert names == {"pods", "services", "deployments.apps", "replicasets.apps",
                     "statefulsets.apps", "daemonsets.apps", "jobs.batch", "cronjobs.batch",
                     "widgets.stable.example.com"}
    # One request each for /api and /apis, answered with aggregated discovery; no per-group
    # fallback requests.
    paths = [(p, code) for p, _, code in seen]
    assert paths == [("/api", 200), ("/apis", 200)]
    want = "v=v2beta1" if version in ("1.27", "1.28", "1.29") else "v=v2"
    assert all(want in accept.split(",")[0] for _, accept, _ in seen), seen
    # Second run: kubectl's disk cache revalidates with If-None-Match and gets 304.
    seen.clear()
    assert "statefulsets" in kubectl("api-resources")
    assert [code for _, _, code in seen if code == 304]
    # /version and the plain documents.
    v = orjson.loads(kubectl("version", "-o", "json"))
    assert v["serverVersion"]["gitVersion"] == d.GIT_VERSION
    assert orjson.loads(kubectl("get", "--raw", "/api/v1")) == d.api_resource_list("", "v1", ALL_RESOURCES)
