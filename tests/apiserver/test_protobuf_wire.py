"""Protobuf on the wire, against a real `kubeplane serve` over loopback (issue 10).

- Every imperative `kubectl create ...` of issue 10, run by kubectl 1.32 and 1.33 (which
  send protobuf bodies) and by kubectl 1.31 (JSON): each creates its object, and the
  objects read back as JSON are the same apart from uid, timestamps, resourceVersion and
  what the server allocates (cluster IPs, node ports, the token).
- Bad protobuf bodies get upstream's 4xx, never a 500; a protobuf body for a custom
  resource is 415.
"""
from __future__ import annotations

import base64
import copy
import os
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest

from kubeplane.apiserver.machinery import protobuf
from kubectls import kubectl_binary
from server_procs import ServerProc

PB = "application/vnd.kubernetes.protobuf"


def _commands(ns: str, sfx: str, tls: tuple[str, str]) -> list[tuple[str, str, str | None, list[str]]]:
    """(resource, name, namespace, kubectl args) for each imperative create of issue 10 whose
    resource kubeplane serves. `sfx` makes the names of cluster-scoped objects unique per
    kubectl version. `create token` prints a token, not an object: test_kubectl_create_token."""
    n = ["-n", ns]
    return [
        ("namespaces", f"pbw-ns{sfx}", None, ["create", "namespace", f"pbw-ns{sfx}"]),
        ("configmaps", "cm", ns, ["create", "configmap", "cm", "--from-literal=a=1", "--from-literal=b=x y", *n]),
        ("secrets", "generic", ns, ["create", "secret", "generic", "generic", "--from-literal=pw=s3cret", *n]),
        ("secrets", "regcred", ns, ["create", "secret", "docker-registry", "regcred", "--docker-server=r.example",
                                    "--docker-username=u", "--docker-password=p", "--docker-email=e@x", *n]),
        ("secrets", "tls", ns, ["create", "secret", "tls", "tls", f"--cert={tls[0]}", f"--key={tls[1]}", *n]),
        ("deployments", "web", ns, ["create", "deployment", "web", "--image=nginx:1.27", "--replicas=2",
                                    "--port=80", *n]),
        ("jobs", "job", ns, ["create", "job", "job", "--image=busybox", *n, "--", "echo", "hi"]),
        ("cronjobs", "cron", ns, ["create", "cronjob", "cron", "--image=busybox", "--schedule=*/5 * * * *", *n,
                                  "--", "date"]),
        ("serviceaccounts", "sa", ns, ["create", "serviceaccount", "sa", *n]),
        ("roles", "reader", ns, ["create", "role", "reader", "--verb=get,list,watch", "--resource=pods,configmaps",
                                 *n]),
        ("rolebindings", "rb", ns, ["create", "rolebinding", "rb", "--role=reader", "--user=alice",
                                    f"--serviceaccount={ns}:sa", *n]),
        ("clusterroles", f"pbw-cr{sfx}", None, ["create", "clusterrole", f"pbw-cr{sfx}", "--verb=get",
                                                "--resource=nodes", "--non-resource-url=/healthz"]),
        ("clusterrolebindings", f"pbw-crb{sfx}", None, ["create", "clusterrolebinding", f"pbw-crb{sfx}",
                                                        f"--clusterrole=pbw-cr{sfx}", "--group=devs"]),
        ("resourcequotas", "quota", ns, ["create", "quota", "quota", "--hard=pods=10,requests.cpu=2", *n]),
        ("services", "svc-ip", ns, ["create", "service", "clusterip", "svc-ip", "--tcp=80:8080", *n]),
        ("services", "svc-np", ns, ["create", "service", "nodeport", "svc-np", "--tcp=443:8443", *n]),
        ("priorityclasses", f"pbw-pc{sfx}", None, ["create", "priorityclass", f"pbw-pc{sfx}", "--value=1000",
                                                   "--description=batch", "--preemption-policy=Never"]),
        ("poddisruptionbudgets", "pdb", ns, ["create", "poddisruptionbudget", "pdb", "--selector=app=web",
                                             "--min-available=50%", *n]),
        ("ingresses", "ing", ns, ["create", "ingress", "ing", "--class=default", "--rule=a.example/=svc:80",
                                  "--rule=b.example/api*=api:http", "--annotation=team=web", *n]),
    ]


_GROUPS = {"deployments": "apis/apps/v1", "jobs": "apis/batch/v1", "cronjobs": "apis/batch/v1",
           "roles": "apis/rbac.authorization.k8s.io/v1", "rolebindings": "apis/rbac.authorization.k8s.io/v1",
           "clusterroles": "apis/rbac.authorization.k8s.io/v1",
           "clusterrolebindings": "apis/rbac.authorization.k8s.io/v1",
           "priorityclasses": "apis/scheduling.k8s.io/v1", "poddisruptionbudgets": "apis/policy/v1",
           "ingresses": "apis/networking.k8s.io/v1"}


def _path(resource: str, name: str, ns: str | None) -> str:
    base = "/" + _GROUPS.get(resource, "api/v1")
    return f"{base}/namespaces/{ns}/{resource}/{name}" if ns else f"{base}/{resource}/{name}"


def _normalized(obj: dict[str, Any], ns: str, sfx: str) -> dict[str, Any]:
    """The object without what differs by nature between two creates (uid, timestamps,
    resourceVersion, allocated IPs and ports; the uid where the object repeats it, as a
    Job's selector does) and with the version's names made common."""
    o = copy.deepcopy(obj)
    md = o["metadata"]
    for k in ("uid", "creationTimestamp", "resourceVersion"):
        md.pop(k, None)
    for mf in md.get("managedFields") or []:
        mf.pop("time", None)
    spec = o.get("spec") or {}
    for k in ("clusterIP", "clusterIPs"):
        spec.pop(k, None)
    for p in spec.get("ports") or []:
        if isinstance(p, dict):
            p.pop("nodePort", None)
    text = orjson.dumps(o).decode().replace(ns, "NS").replace(obj["metadata"]["uid"], "UID")
    if sfx:
        text = text.replace(sfx, "")
    return orjson.loads(text)


@pytest.fixture(scope="module")
def tls_pair(tmp_path_factory) -> tuple[str, str]:
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / "k.pem"),
                    "-out", str(d / "c.pem"), "-days", "1", "-subj", "/CN=pbw"], check=True, capture_output=True)
    return str(d / "c.pem"), str(d / "k.pem")


def _run_creates(server: ServerProc, version: str, tls: tuple[str, str], home: Path) -> dict[str, Any]:
    """Run every create with one kubectl version in its own namespace; the objects read back."""
    binary = kubectl_binary(version)
    sfx = "-" + version.replace(".", "-")
    ns = "pbw" + sfx
    r = server.call("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    assert r.status == 201, r
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "KUBECONFIG": server.kubeconfig}
    out: dict[str, Any] = {}
    for resource, name, where, args in _commands(ns, sfx, tls):
        res = subprocess.run([binary, *args], capture_output=True, text=True, env=env, timeout=60)
        assert res.returncode == 0, (version, args, res.stderr)
        assert res.stdout.endswith(" created\n"), (version, args, res.stdout)
        got = server.call("GET", _path(resource, name, where))
        assert got.status == 200, (version, resource, got)
        out[f"{resource}/{name.replace(sfx, '')}"] = _normalized(got.json, ns, sfx)
    return out


@pytest.fixture(scope="module")
def created(server: ServerProc, tls_pair, tmp_path_factory) -> dict[str, dict[str, Any]]:
    if kubectl_binary("1.31") is None:
        pytest.skip("kubectl 1.31 not installed")
    return {v: _run_creates(server, v, tls_pair, tmp_path_factory.mktemp(f"home-{v}"))
            for v in ("1.31", "1.32", "1.33") if kubectl_binary(v) is not None}


@pytest.mark.parametrize("version", ["1.32", "1.33"])
def test_kubectl_protobuf_creates_equal_json_creates(created, version: str):
    if version not in created:
        pytest.skip(f"kubectl {version} not installed")
    want, got = created["1.31"], created[version]
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key] == want[key], key


@pytest.mark.parametrize("version", ["1.31", "1.32", "1.33"])
def test_kubectl_create_token(server: ServerProc, ns: str, tmp_path: Path, version: str):
    """`kubectl create token` (a TokenRequest, protobuf from 1.32 on): a token for the account."""
    binary = kubectl_binary(version)
    if binary is None:
        pytest.skip(f"kubectl {version} not installed")
    assert server.call("POST", f"/api/v1/namespaces/{ns}/serviceaccounts", {"metadata": {"name": "sa"}}).status == 201
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "KUBECONFIG": server.kubeconfig}
    res = subprocess.run([binary, "create", "token", "sa", "-n", ns, "--duration=15m", "--audience=a",
                          "--audience=b"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 0, res.stderr
    payload = res.stdout.strip().split(".")[1]
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["sub"] == f"system:serviceaccount:{ns}:sa" and claims["aud"] == ["a", "b"], claims
    assert claims["exp"] - claims["iat"] == 900


def test_protobuf_create_update_and_subresources(server: ServerProc, ns: str):
    """create, update, /status and /scale with protobuf bodies over plain HTTP."""
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "pb", "labels": {"a": "b"}},
          "data": {"k": "v"}}
    r = server.call("POST", f"/api/v1/namespaces/{ns}/configmaps", raw=protobuf.encode(cm), content_type=PB)
    assert r.status == 201, r
    created = r.json if r.headers["content-type"].startswith("application/json") else protobuf.decode(r.body)[2]
    assert created["data"] == {"k": "v"} and created["metadata"]["labels"] == {"a": "b"}
    upd = dict(created, data={"k": "w"})
    r = server.call("PUT", f"/api/v1/namespaces/{ns}/configmaps/pb", raw=protobuf.encode(upd), content_type=PB,
                    headers={"Accept": "application/json"})
    assert r.status == 200 and r.json["data"] == {"k": "w"}, r
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
           "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "d"}},
                    "template": {"metadata": {"labels": {"app": "d"}},
                                 "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}
    r = server.call("POST", f"/apis/apps/v1/namespaces/{ns}/deployments", raw=protobuf.encode(dep),
                    content_type=PB, headers={"Accept": "application/json"})
    assert r.status == 201, r
    scale = {"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "d", "namespace": ns},
             "spec": {"replicas": 3}}
    r = server.call("PUT", f"/apis/apps/v1/namespaces/{ns}/deployments/d/scale", raw=protobuf.encode(scale),
                    content_type=PB, headers={"Accept": "application/json"})
    assert r.status == 200 and r.json["spec"]["replicas"] == 3, r
    cur = server.call("GET", f"/apis/apps/v1/namespaces/{ns}/deployments/d").json
    cur["status"] = {"observedGeneration": 1, "replicas": 3}
    r = server.call("PUT", f"/apis/apps/v1/namespaces/{ns}/deployments/d/status", raw=protobuf.encode(cur),
                    content_type=PB, headers={"Accept": "application/json"})
    assert r.status == 200 and r.json["status"]["replicas"] == 3, r
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    assert server.call("POST", f"/api/v1/namespaces/{ns}/pods", raw=protobuf.encode(pod), content_type=PB,
                       headers={"Accept": "application/json"}).status == 201
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"},
               "target": {"kind": "Node", "name": "n1"}}
    r = server.call("POST", f"/api/v1/namespaces/{ns}/pods/p/binding", raw=protobuf.encode(binding),
                    content_type=PB, headers={"Accept": "application/json"})
    assert r.status == 201, r
    assert server.call("GET", f"/api/v1/namespaces/{ns}/pods/p").json["spec"]["nodeName"] == "n1"


def _bad_bodies() -> dict[str, bytes]:
    good = protobuf.encode({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bad"},
                            "data": {"k": "v" * 100}})
    return {
        "wrong magic": b"k9s\x00" + good[4:],
        "json-looking": b'{"kind":"ConfigMap"}',
        "truncated": good[:-20],
        "cut envelope": good[:6],
        "magic only": good[:4],
        "random": bytes(range(256)) * 3,
        "unknown kind": protobuf.MAGIC + protobuf._envelope("v1", "NoSuchKind", b""),
        "no kind": protobuf.MAGIC + protobuf._envelope("v1", "", b""),
    }


@pytest.mark.parametrize("case", sorted(_bad_bodies()))
def test_bad_protobuf_bodies_are_400(server: ServerProc, ns: str, case: str):
    r = server.call("POST", f"/api/v1/namespaces/{ns}/configmaps", raw=_bad_bodies()[case], content_type=PB,
                    headers={"Accept": "application/json"})
    assert r.status == 400, r
    st = r.json
    assert st["kind"] == "Status" and st["reason"] == "BadRequest" and st["code"] == 400
    assert st["message"].startswith("the object provided is unrecognized (must be of type ConfigMap): "), st


def test_protobuf_body_of_the_wrong_kind_or_version_is_400(server: ServerProc, ns: str):
    secret = protobuf.encode({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}})
    r = server.call("POST", f"/api/v1/namespaces/{ns}/configmaps", raw=secret, content_type=PB,
                    headers={"Accept": "application/json"})
    assert r.status == 400 and r.json["message"] == \
        "the kind in the data (Secret) does not match the expected kind (ConfigMap)", r
    dep = protobuf.encode({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}})
    r = server.call("POST", f"/apis/batch/v1/namespaces/{ns}/jobs", raw=dep, content_type=PB,
                    headers={"Accept": "application/json"})
    assert r.status == 400, r
    scale = protobuf.encode({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "d"}})
    r = server.call("PUT", f"/apis/apps/v1/namespaces/{ns}/deployments/d/scale", raw=scale, content_type=PB,
                    headers={"Accept": "application/json"})
    assert r.status == 400, r


def test_oversize_protobuf_body_is_413(server: ServerProc, ns: str):
    big = protobuf.encode({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"},
                           "data": {"k": "x" * (3 * 1024 * 1024 + 10)}})
    r = server.call("POST", f"/api/v1/namespaces/{ns}/configmaps", raw=big, content_type=PB,
                    headers={"Accept": "application/json"})
    assert r.status == 413 and r.json["reason"] == "RequestEntityTooLarge", r


def test_protobuf_body_for_a_custom_resource_is_415(server: ServerProc, ns: str):
    group = f"{ns}.example.com"
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": f"gadgets.{group}"},
           "spec": {"group": group, "scope": "Namespaced",
                    "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget", "listKind": "GadgetList"},
                    "versions": [{"name": "v1", "served": True, "storage": True,
                                  "schema": {"openAPIV3Schema": {"type": "object",
                                                                 "x-kubernetes-preserve-unknown-fields": True}}}]}}
    assert server.call("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd).status == 201
    try:
        body = protobuf.MAGIC + protobuf._envelope(f"{group}/v1", "Gadget", b"")
        r = server.call("POST", f"/apis/{group}/v1/namespaces/{ns}/gadgets", raw=body, content_type=PB,
                        headers={"Accept": "application/json"})
        assert r.status == 415, r
        assert r.json["message"] == ("the body of the request was in an unknown format - accepted media types "
                                     "include: application/json, application/yaml"), r
    finally:
        server.call("DELETE", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gadgets.{group}")


# --- responses ---------------------------------------------------------------------------------

GOLDEN = Path(__file__).resolve().parents[3] / "shared" / "upstream-golden"
if not GOLDEN.is_dir():
    GOLDEN = Path("/work/shared/upstream-golden")
needs_golden = pytest.mark.skipif(not GOLDEN.is_dir(), reason="no upstream-golden directory")


def _keys(v: Any, path: str = "") -> set[str]:
    """Every key path of a JSON value (list items merged): its structure."""
    out: set[str] = set()
    if isinstance(v, dict):
        for k, x in v.items():
            out.add(f"{path}.{k}")
            out |= _keys(x, f"{path}.{k}")
    elif isinstance(v, list):
        for x in v:
            out |= _keys(x, path + "[]")
    return out


def _pb(server: ServerProc, method: str, path: str, body: Any = None, accept: str = PB):
    raw = protobuf.encode(body) if body is not None else None
    return server.call(method, path, raw=raw, content_type=PB, headers={"Accept": accept})


def _cm(name: str, **labels: str) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name}
    if labels:          # (an empty map is no map in protobuf: JSON would keep "labels": {})
        md["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": md, "data": {"k": name}}


@needs_golden
@pytest.mark.parametrize("rv", ["", "0"], ids=["store", "cache"])
def test_protobuf_get_equals_json_get_and_has_upstreams_shape(server: ServerProc, ns: str, rv: str):
    golden_json = orjson.loads((GOLDEN / "get-ConfigMap.json").read_bytes())
    same = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {k: golden_json["metadata"][k] for k in ("name", "labels", "annotations")},
            "data": golden_json["data"], "binaryData": golden_json["binaryData"]}
    assert server.call("POST", f"/api/v1/namespaces/{ns}/configmaps", same).status == 201
    q = f"?resourceVersion={rv}" if rv else ""
    j = server.call("GET", f"/api/v1/namespaces/{ns}/configmaps/cm{q}")
    for _ in range(2):        # the second read of the cache reuses the version's protobuf
        r = server.call("GET", f"/api/v1/namespaces/{ns}/configmaps/cm{q}", headers={"Accept": PB})
        assert r.status == 200 and r.headers["content-type"] == PB, r
        assert r.body.startswith(protobuf.MAGIC)
        api_version, kind, obj = protobuf.decode(r.body)
        assert (api_version, kind) == ("v1", "ConfigMap") and obj == j.json
    golden = protobuf.decode((GOLDEN / "get-ConfigMap.pb").read_bytes())[2]
    assert _keys(obj) == _keys(golden)
    # the envelope's head: magic, typeMeta {v1, ConfigMap}, then raw's tag
    assert r.body[:22] == (GOLDEN / "get-ConfigMap.pb").read_bytes()[:22]


@needs_golden
def test_protobuf_list_equals_json_list(server: ServerProc, ns: str):
    for i in range(3):
        assert server.call("POST", f"/api/v1/namespaces/{ns}/configmaps", _cm(f"c{i}")).status == 201
    for q in ("", "?resourceVersion=0", "?limit=2"):
        j = server.call("GET", f"/api/v1/namespaces/{ns}/configmaps{q}").json
        r = server.call("GET", f"/api/v1/namespaces/{ns}/configmaps{q}", headers={"Accept": PB})
        assert r.status == 200 and r.headers["content-type"] == PB, r
        api_version, kind, obj = protobuf.decode(r.body)
        assert (api_version, kind) == ("v1", "ConfigMapList")
        assert obj == j, q
    golden = protobuf.decode((GOLDEN / "list-ConfigMap.pb").read_bytes())[2]
    assert set(golden) == set(obj) and set(golden["metadata"]) <= {"resourceVersion", "continue",
                                                                    "remainingItemCount"}


def test_long_protobuf_list_is_written_in_pieces_and_equals_json(server: ServerProc, ns: str):
    for i in range(520):
        assert server.call("POST", f"/api/v1/namespaces/{ns}/configmaps", _cm(f"m{i:03d}")).status == 201
    for q in ("", "?resourceVersion=0"):
        j = server.call("GET", f"/api/v1/namespaces/{ns}/configmaps{q}").json
        r = server.call("GET", f"/api/v1/namespaces/{ns}/configmaps{q}", headers={"Accept": PB})
        assert r.status == 200 and r.headers.get("transfer-encoding") == "chunked", r.headers
        assert protobuf.decode(r.body)[2] == j


def test_protobuf_write_responses(server: ServerProc, ns: str):
    base = f"/api/v1/namespaces/{ns}/configmaps"
    r = _pb(server, "POST", base, _cm("w"))
    assert r.status == 201 and r.headers["content-type"] == PB, r
    created = protobuf.decode(r.body)[2]
    assert created == server.call("GET", f"{base}/w").json
    r = _pb(server, "PUT", f"{base}/w", dict(created, data={"k": "2"}))
    assert r.status == 200 and protobuf.decode(r.body)[2]["data"] == {"k": "2"}
    r = server.call("PATCH", f"{base}/w", {"data": {"k": "3"}}, content_type="application/merge-patch+json",
                    headers={"Accept": PB})
    assert r.status == 200 and protobuf.decode(r.body)[2]["data"] == {"k": "3"}
    r = server.call("DELETE", f"{base}/w", headers={"Accept": PB})
    assert r.status == 200 and r.headers["content-type"] == PB
    assert protobuf.decode(r.body)[:2] == ("v1", "Status")
    # a JSON-only client still gets JSON
    r = server.call("POST", base, _cm("j"))
    assert r.status == 201 and r.headers["content-type"] == "application/json" and r.json["kind"] == "ConfigMap"


@needs_golden
def test_protobuf_error_status(server: ServerProc, ns: str):
    r = server.call("GET", f"/api/v1/namespaces/{ns}/configmaps/missing",
                    headers={"Accept": f"{PB}, application/json"})
    assert r.status == 404 and r.headers["content-type"] == PB, r
    api_version, kind, st = protobuf.decode(r.body)
    assert (api_version, kind) == ("v1", "Status") and st["reason"] == "NotFound" and st["code"] == 404
    golden = protobuf.decode((GOLDEN / "err-404-named-pb.pb").read_bytes())[2]
    assert _keys(st) == _keys(golden)
    assert st["message"] == 'configmaps "missing" not found'


def test_accept_negotiation(server: ServerProc, ns: str):
    base = f"/api/v1/namespaces/{ns}/configmaps"
    assert server.call("GET", base, headers={"Accept": PB}).headers["content-type"] == PB
    assert server.call("GET", base, headers={"Accept": f"{PB}, application/json"}).headers["content-type"] == PB
    assert server.call("GET", base, headers={"Accept": f"application/json, {PB}"}).headers["content-type"] == \
        "application/json"
    # protobuf Tables and metadata are not offered: the next alternative is taken
    meta = (f"{PB};as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,"
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json")
    r = server.call("GET", base, headers={"Accept": meta})
    assert r.status == 200 and r.json["kind"] == "PartialObjectMetadataList"
    r = server.call("GET", base, headers={"Accept": "text/html"})
    assert r.status == 406 and r.json["message"].endswith(
        "application/json, application/yaml, application/vnd.kubernetes.protobuf")


def test_custom_resources_fall_back_to_json(server: ServerProc, ns: str):
    group = f"{ns}.example.com"
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": f"gizmos.{group}"},
           "spec": {"group": group, "scope": "Namespaced",
                    "names": {"plural": "gizmos", "singular": "gizmo", "kind": "Gizmo", "listKind": "GizmoList"},
                    "versions": [{"name": "v1", "served": True, "storage": True,
                                  "schema": {"openAPIV3Schema": {"type": "object",
                                                                 "x-kubernetes-preserve-unknown-fields": True}}}]}}
    assert server.call("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd).status == 201
    try:
        base = f"/apis/{group}/v1/namespaces/{ns}/gizmos"
        r = server.call("POST", base, {"apiVersion": f"{group}/v1", "kind": "Gizmo", "metadata": {"name": "g"}},
                        headers={"Accept": f"{PB}, application/json"})
        assert r.status == 201 and r.headers["content-type"] == "application/json", r
        for path in (base, f"{base}/g"):
            r = server.call("GET", path, headers={"Accept": f"{PB}, application/json"})
            assert r.status == 200 and r.headers["content-type"] == "application/json", r
            r = server.call("GET", path, headers={"Accept": PB})
            assert r.status == 406 and r.json["reason"] == "NotAcceptable", r
    finally:
        server.call("DELETE", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gizmos.{group}")


def test_kinds_without_a_message_negotiate_like_custom_resources(server: ServerProc, ns: str):
    """apiextensions.k8s.io's kinds are not in the codec's table: a protobuf-preferring client
    gets JSON (never a 500 from the encoder, which the fuzz test once found on a
    deletecollection of CRDs), a protobuf-only one 406, a protobuf body 415."""
    base = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    for method in ("GET", "DELETE"):
        r = server.call(method, f"{base}?labelSelector=nothing-{ns}%3Dx", headers={"Accept": f"{PB}, application/json"})
        assert r.status == 200 and r.headers["content-type"] == "application/json", r
        assert r.json["kind"] == "CustomResourceDefinitionList", r.json
        r = server.call(method, f"{base}?labelSelector=nothing-{ns}%3Dx", headers={"Accept": PB})
        assert r.status == 406 and r.json["reason"] == "NotAcceptable", r
    r = server.call("POST", base, raw=b"k8s\x00", content_type=PB)
    assert r.status == 415, r


# --- watch -------------------------------------------------------------------------------------

def _watch_json(server: ServerProc, path: str) -> list[dict[str, Any]]:
    r = server.call("GET", path)
    assert r.status == 200 and r.headers["content-type"] == "application/json", r
    return [orjson.loads(line) for line in r.body.splitlines() if line]


def _watch_pb(server: ServerProc, path: str) -> list[dict[str, Any]]:
    r = server.call("GET", path, headers={"Accept": f"{PB}, application/json"})
    assert r.status == 200 and r.headers["content-type"] == protobuf.STREAM_CONTENT_TYPE, r
    events = protobuf.decode_watch(r.body)
    for e in events:
        if e["type"] == "BOOKMARK":   # (Go writes a zero creationTimestamp as null; kubeplane's JSON
            md = e["object"]["metadata"]   # bookmark leaves it out)
            if md.get("creationTimestamp") is None:
                md.pop("creationTimestamp", None)
    return events


@pytest.mark.parametrize("query", ["", "&labelSelector=keep%3Dyes", "&allowWatchBookmarks=true"],
                         ids=["all", "selector", "bookmarks"])
def test_protobuf_watch_delivers_the_json_watchs_events(server: ServerProc, ns: str, query: str):
    _compare_watches(server, ns, query)


def test_protobuf_watch_without_the_cache(tmp_path):
    """The store path of a watch (--watch-cache=false) frames the same events."""
    s = ServerProc(tmp_path / "data", extra=["--watch-cache=false"]).start()
    try:
        assert s.call("POST", "/api/v1/namespaces", {"metadata": {"name": "nocache"}}).status == 201
        _compare_watches(s, "nocache", "&labelSelector=keep%3Dyes")
    finally:
        s.stop()


def _compare_watches(server: ServerProc, ns: str, query: str) -> None:
    base = f"/api/v1/namespaces/{ns}/configmaps"
    server.call("POST", base, _cm("before", keep="yes"))
    start = server.call("GET", base).json["metadata"]["resourceVersion"]
    server.call("POST", base, _cm("a", keep="yes"))
    server.call("PATCH", f"{base}/a", {"data": {"k": "2"}}, content_type="application/merge-patch+json")
    server.call("PATCH", f"{base}/a", {"metadata": {"labels": {"keep": "no"}}},
                content_type="application/merge-patch+json")      # stops matching the selector
    server.call("POST", base, _cm("b", keep="yes"))
    server.call("DELETE", f"{base}/b")
    for rv in (start, "0"):       # changes since a revision; the state as ADDED, then live
        path = f"{base}?watch=1&resourceVersion={rv}&timeoutSeconds=1{query}"
        want, got = _watch_json(server, path), _watch_pb(server, path)
        assert [e["type"] for e in got] == [e["type"] for e in want] and got == want, rv
        assert got and all(e["object"]["metadata"].get("resourceVersion") for e in got)


@needs_golden
def test_protobuf_watch_frames_have_upstreams_shape(server: ServerProc, ns: str):
    base = f"/api/v1/namespaces/{ns}/configmaps"
    start = server.call("GET", base).json["metadata"]["resourceVersion"]
    server.call("POST", base, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "watched"},
                               "data": {"w": "1"}})
    server.call("DELETE", f"{base}/watched")
    r = server.call("GET", f"{base}?watch=1&resourceVersion={start}&timeoutSeconds=1", headers={"Accept": PB})
    ours = list(protobuf.iter_watch_frames(r.body))
    theirs = list(protobuf.iter_watch_frames((GOLDEN / "watch-ConfigMap.pb").read_bytes()))
    assert [t for t, _ in ours] == [t for t, _ in theirs] == ["ADDED", "DELETED"]
    for (_, a), (_, b) in zip(ours, theirs):
        assert protobuf.decode(a)[:2] == protobuf.decode(b)[:2] == ("v1", "ConfigMap")
        assert _keys(protobuf.decode(a)[2]) == _keys(protobuf.decode(b)[2])
