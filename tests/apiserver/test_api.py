"""REST semantics and bad input, over real HTTP to a `kubeplane serve` child process.

Each test states the upstream behaviour it checks (codes, reasons, messages as
kube-apiserver returns them).
"""
from __future__ import annotations

import http.client
import json
import socket
import time

import orjson
import pytest

from server_procs import ServerProc


@pytest.fixture(scope="module", params=["embedded", "etcd"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """The whole module runs twice: on the embedded store and on a real etcd 3.4 member."""
    base = tmp_path_factory.mktemp(f"api-{request.param}")
    cluster = None
    etcd = None
    if request.param == "etcd":
        import sys
        from pathlib import Path

        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "store"))
        from etcd_procs import ETCD_BIN, EtcdCluster

        if not Path(ETCD_BIN).exists():
            pytest.skip("etcd not installed (Debian etcd-server)")
        cluster = EtcdCluster(base / "etcd").start()
        etcd = cluster.endpoints
    s = ServerProc(base / "data", etcd_servers=etcd).start()
    yield s
    s.stop()
    if cluster is not None:
        cluster.stop()

POD = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "p1", "labels": {"app": "web", "tier": "front"}},
    "spec": {"containers": [{"name": "c", "image": "nginx:1.25", "ports": [{"containerPort": 80}]}]},
}


def pod(name: str, **labels: str) -> dict:
    p = json.loads(json.dumps(POD))
    p["metadata"]["name"] = name
    if labels:
        p["metadata"]["labels"] = labels
    return p


def cm(name: str, **data: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


# --- create / get / defaults ---------------------------------------------------------------

def test_create_sets_server_fields_and_pod_defaults(server, ns):
    r = server.call("POST", f"/api/v1/namespaces/{ns}/pods", pod("p1"))
    assert r.status == 201, r
    o = r.json
    md = o["metadata"]
    assert md["namespace"] == ns and len(md["uid"]) == 36 and md["creationTimestamp"].endswith("Z")
    assert int(md["resourceVersion"]) > 0
    spec = o["spec"]
    assert spec["restartPolicy"] == "Always" and spec["dnsPolicy"] == "ClusterFirst"
    assert spec["schedulerName"] == "default-scheduler" and spec["terminationGracePeriodSeconds"] == 30
    assert spec["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert spec["containers"][0]["ports"][0]["protocol"] == "TCP"
    assert o["status"]["phase"] == "Pending" and o["status"]["qosClass"] == "BestEffort"
    g = server.call("GET", f"/api/v1/namespaces/{ns}/pods/p1")
    assert g.status == 200 and g.json == o
    # managedFields record the creator
    assert md["managedFields"][0]["operation"] == "Update"


def test_already_exists_and_not_found(server, ns):
    assert server.call("POST", f"/api/v1/namespaces/{ns}/configmaps", cm("a")).status == 201
    r = server.call("POST", f"/api/v1/namespaces/{ns}/configmaps", cm("a"))
    assert r.status == 409 and r.json["reason"] == "AlreadyExists"
    assert r.json["message"] == 'configmaps "a" already exists'
    r = server.call("GET", f"/api/v1/namespaces/{ns}/configmaps/nope")
    assert r.status == 404 and r.json["reason"] == "NotFound"
    assert r.json["message"] == 'configmaps "nope" not found'
    assert r.json["details"] == {"name": "nope", "kind": "configmaps"}
    r = server.call("GET", "/apis/apps/v1/namespaces/x/deployments/nope")
    assert r.json["message"] == 'deployments.apps "nope" not found'


def test_generate_name(server, ns):
    body = {"metadata": {"generateName": "job-"}, "data": {"k": "v"}}
    names = {server.call("POST", f"/api/v1/namespaces/{ns}/configmaps", body).json["metadata"]["name"]
             for _ in range(3)}
    assert len(names) == 3 and all(n.startswith("job-") and len(n) == 9 for n in names)


def test_optimistic_concurrency_conflict(server, ns):
    o = server.call("POST", f"/api/v1/namespaces/{ns}/configmaps", cm("c", a="1")).json
    o["data"]["a"] = "2"
    r1 = server.call("PUT", f"/api/v1/namespaces/{ns}/configmaps/c", o)
    assert r1.status == 200 and r1.json["data"]["a"] == "2"
    assert int(r1.json["metadata"]["resourceVersion"]) > int(o["metadata"]["resourceVersion"])
    o["data"]["a"] = "3"      # still carries the old resourceVersion
    r2 = server.call("PUT", f"/api/v1/namespaces/{ns}/configmaps/c", o)
    assert r2.status == 409 and r2.json["reason"] == "Conflict"
    assert r2.json["message"] == ('Operation cannot be fulfilled on configmaps "c": the object has been modified; '
                                  "please apply your changes to the latest version and try again")
    assert server.call("GET", f"/api/v1/namespaces/{ns}/configmaps/c").json["data"]["a"] == "2"


def test_noop_update_keeps_resource_version(server, ns):
    o = server.call("POST", f"/api/v1/namespaces/{ns}/configmaps", cm("n", a="1")).json
    r = server.call("PUT", f"/api/v1/namespaces/{ns}/configmaps/n", o)
    assert r.status == 200 and r.json["metadata"]["resourceVersion"] == o["metadata"]["resourceVersion"]


def test_generation_bumps_only_on_spec_change(server, ns):
    d = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
         "spec": {"selector": {"matchLabels": {"app": "d"}},
                  "template": {"metadata": {"labels": {"app": "d"}},
                               "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}
    o = server.call("POST", f"/apis/apps/v1/namespaces/{ns}/deployments", d).json
    assert o["metadata"]["generation"] == 1 and o["spec"]["replicas"] == 1
    r = server.call("PATCH", f"/apis/apps/v1/namespaces/{ns}/deployments/d", {"metadata": {"labels": {"x": "y"}}},
                    content_type="application/merge-patch+json")
    assert r.json["metadata"]["generation"] == 1
    r = server.call("PATCH", f"/apis/apps/v1/namespaces/{ns}/deployments/d", {"spec": {"replicas": 3}},
                    content_type="application/merge-patch+json")
    assert r.json["metadata"]["generation"] == 2 and r.json["spec"]["replicas"] == 3
    # status is not writable through the main resource, only through /status
    r = server.call("PATCH", f"/apis/apps/v1/namespaces/{ns}/deployments/d", {"status": {"replicas": 7}},
                    content_type="application/merge-patch+json")
    assert "replicas" not in r.json.get("status", {})
    r = server.call("PATCH", f"/apis/apps/v1/namespaces/{ns}/deployments/d/status", {"status": {"replicas": 7}},
                    content_type="application/merge-patch+json")
    assert r.status == 200 and r.json["status"]["replicas"] == 7 and r.json["metadata"]["generation"] == 2
    sc = server.call("GET", f"/apis/apps/v1/namespaces/{ns}/deployments/d/scale").json
    assert sc["kind"] == "Scale" and sc["spec"]["replicas"] == 3 and sc["status"]["replicas"] == 7
    assert sc["status"]["selector"] == "app=d"
    sc["spec"]["replicas"] = 5
    r = server.call("PUT", f"/apis/apps/v1/namespaces/{ns}/deployments/d/scale", sc)
    assert r.status == 200 and r.json["spec"]["replicas"] == 5


# --- validation and bad input ------------------------------------------------------------------

def test_invalid_object_422_with_causes(server, ns):
    bad = pod("BadName")
    bad["spec"]["containers"][0].pop("image")
    r = server.call("POST", f"/api/v1/namespaces/{ns}/pods", bad)
    assert r.status == 422 and r.json["reason"] == "Invalid"
    fields = {c["field"] for c in r.json["details"]["causes"]}
    assert {"metadata.name", "spec.containers[0].image"} <= fields
    assert r.json["message"].startswith('Pod "BadName" is invalid: [')
    assert server.call("GET", f"/api/v1/namespaces/{ns}/pods/BadName").status == 404


def test_wrong_types_are_400_not_stored(server, ns):
    bad = pod("typed")
    bad["spec"]["containers"] = "nginx"
    r = server.call("POST", f"/api/v1/namespaces/{ns}/pods", bad)
    assert r.status == 400 and r.json["reason"] == "BadRequest"
    assert r.json["message"].startswith('Pod in version "v1" cannot be handled as a Pod:')
    assert server.call("GET", f"/api/v1/namespaces/{ns}/pods/typed").status == 404


def test_field_validation_modes(server, ns):
    body = cm("fv", a="1")
    body["bogus"] = 1
    r = server.call("POST", f"/api/v1/namespaces/{ns}/configmaps?fieldValidation=Strict", body)
    assert r.status == 400 and 'unknown field "bogus"' in r.json["message"]
    assert r.json["message"].startswith("strict decoding error:")
    r = server.call("POST", f"/api/v1/namespaces/{ns}/configmaps?fieldValidation=Warn", body)
    assert r.status == 201 and "bogus" not in r.json
    assert any('unknown field \\"bogus\\"' in w for w in r.warnings), r.warnings
    body["metadata"]["name"] = "fv2"
    r = server.call("POST", f"/api/v1/namespaces/{ns}/configmaps?fieldValidation=Ignore", body)
    assert r.status == 201 and not r.warnings
    r = server.call("POST", f"/api/v1/namespaces/{ns}/configmaps?fieldValidation=Bogus", body)
    assert r.status == 400


@pytest.mark.parametrize("raw,ctype", [
    (b"{not json", "application/json"),
    (b"[1,2,3]", "application/json"),
    (b'"just a string"', "application/json"),
    (b"a: [unclosed", "application/yaml"),
    (b"- a\n- b\n", "application/yaml"),
    (b"[" * 5000 + b"]" * 5000, "application/json"),
    (b"a:\n" + b"".join(b"  " * i + b"- \n" for i in range(1, 3000)), "application/yaml"),
])
def test_malformed_bodies_are_4xx(server, ns, raw, ctype):
    r = server.call("POST", f"/api/v1/namespaces/{ns}/configmaps", raw=raw, content_type=ctype)
    assert 400 <= r.status < 500, r
    assert r.json["kind"] == "Status" and r.json["code"] == r.status


def test_yaml_alias_bomb_rejected(server, ns):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i-1}"] * 10) + "]")
    r = server.call("POST", f"/api/v1/namespaces/{ns}/configmaps", raw="\n".join(lines).encode(),
                    content_type="application/yaml")
    assert r.status == 400 and "alias" in r.json["message"]


def test_yaml_body_accepted(server, ns):
    raw = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fromyaml\ndata:\n  k: v\n"
    r = server.call("POST", f"/api/v1/namespaces/{ns}/configmaps", raw=raw, content_type="application/yaml")
    assert r.status == 201 and r.json["data"] == {"k": "v"}


def test_huge_label_value_is_invalid(server, ns):
    body = cm("lbl")
    body["metadata"]["labels"] = {"k": "v" * 100_000}
    r = server.call("POST", f"/api/v1/namespaces/{ns}/configmaps", body)
    assert r.status == 422 and r.json["details"]["causes"][0]["field"] == "metadata.labels"
    assert len(r.body) < 20_000     # the value is not echoed whole


def test_body_over_3mib_is_413(server, ns):
    body = cm("big", a="x" * (3 * 1024 * 1024 + 10))
    r = server.call("POST", f"/api/v1/namespaces/{ns}/configmaps", body)
    assert r.status == 413 and r.json["reason"] == "RequestEntityTooLarge"


def test_bad_protobuf_body_is_400_and_protobuf_accept_is_served(server, ns):
    # (test_protobuf_wire.py covers protobuf in depth)
    r = server.call("POST", f"/api/v1/namespaces/{ns}/configmaps", raw=b"k8s\x00\n\x02v1",
                    content_type="application/vnd.kubernetes.protobuf", headers={"Accept": "application/json"})
    assert r.status == 400 and r.json["reason"] == "BadRequest"
    r = server.call("GET", f"/api/v1/namespaces/{ns}/configmaps",
                    headers={"Accept": "application/vnd.kubernetes.protobuf"})
    assert r.status == 200 and r.headers["content-type"] == "application/vnd.kubernetes.protobuf"
    r = server.call("GET", f"/api/v1/namespaces/{ns}/configmaps", headers={"Accept": "text/html"})
    assert r.status == 406 and r.json["reason"] == "NotAcceptable"
    r = server.call("GET", f"/api/v1/namespaces/{ns}/configmaps",
                    headers={"Accept": "application/vnd.kubernetes.protobuf, application/json"})
    assert r.status == 200


def test_method_not_allowed_and_unknown_paths(server, ns):
    r = server.call("PUT", f"/api/v1/namespaces/{ns}/configmaps", cm("x"))
    assert r.status == 405 and r.json["reason"] == "MethodNotAllowed"
    assert server.call("GET", "/api/v1/nopes").status == 404
    assert server.call("GET", "/apis/nope.example.com/v1").status == 404


def test_name_and_namespace_mismatch(server, ns):
    server.call("POST", f"/api/v1/namespaces/{ns}/configmaps", cm("m"))
    r = server.call("PUT", f"/api/v1/namespaces/{ns}/configmaps/m", cm("other"))
    assert r.status == 400 and "does not match the name on the URL" in r.json["message"]
    body = cm("m2")
    body["metadata"]["namespace"] = "elsewhere"
    r = server.call("POST", f"/api/v1/namespaces/{ns}/configmaps", body)
    assert r.status == 400 and "does not match the namespace" in r.json["message"]


def test_unauthenticated_https_is_401(server):
    import ssl
    import urllib.request

    ctx = ssl.create_default_context(cafile=server.kubeconfig.replace("kubeconfig", "pki/ca.crt"))
    try:
        urllib.request.urlopen(server.https_url + "/api/v1/namespaces", context=ctx, timeout=10)
        raise AssertionError("expected 401")
    except urllib.error.HTTPError as e:
        assert e.code == 401
        assert json.loads(e.read())["reason"] == "Unauthorized"


def test_malformed_http_does_not_kill_server(server):
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=5) as s:
        s.sendall(b"GARBAGE \x00\x01 / HTTP/9\r\n\r\n")
        data = s.recv(4096)
        assert data.startswith(b"HTTP/1.1 400")
    assert server.call("GET", "/version").status == 200


# --- namespaces, finalizers, deletion ---------------------------------------------------------

def test_namespace_lifecycle(server):
    r = server.call("POST", "/api/v1/namespaces/missing-ns/configmaps", cm("x"))
    assert r.status == 404 and r.json["message"] == 'namespaces "missing-ns" not found'
    assert server.call("POST", "/api/v1/namespaces", {"metadata": {"name": "doomed"}}).status == 201
    fin = cm("held")
    fin["metadata"]["finalizers"] = ["example.com/hold"]
    assert server.call("POST", "/api/v1/namespaces/doomed/configmaps", fin).status == 201
    assert server.call("POST", "/api/v1/namespaces/doomed/configmaps", cm("free")).status == 201
    r = server.call("DELETE", "/api/v1/namespaces/doomed")
    assert r.status == 200 and r.json["status"]["phase"] == "Terminating"
    # the namespace controller's finalizer is in spec, as upstream; metadata has none
    assert r.json["spec"]["finalizers"] == ["kubernetes"] and "finalizers" not in r.json["metadata"]
    r = server.call("POST", "/api/v1/namespaces/doomed/configmaps", cm("late"))
    assert r.status == 403 and "because it is being terminated" in r.json["message"]
    deadline = time.time() + 10
    while time.time() < deadline and server.call("GET", "/api/v1/namespaces/doomed/configmaps/free").status != 404:
        time.sleep(0.1)
    assert server.call("GET", "/api/v1/namespaces/doomed/configmaps/free").status == 404
    # the namespace's contents are deleted one by one: `held` may be marked just after
    # `free` is gone (the order within a namespace is no contract, upstream's neither)
    while time.time() < deadline:
        held = server.call("GET", "/api/v1/namespaces/doomed/configmaps/held").json
        if held["metadata"].get("deletionTimestamp"):
            break
        time.sleep(0.1)
    assert held["metadata"]["deletionTimestamp"]
    held["metadata"]["finalizers"] = []
    assert server.call("PUT", "/api/v1/namespaces/doomed/configmaps/held", held).status == 200
    while time.time() < deadline and server.call("GET", "/api/v1/namespaces/doomed").status != 404:
        time.sleep(0.1)
    assert server.call("GET", "/api/v1/namespaces/doomed").status == 404


def test_system_namespaces_exist(server):
    names = {i["metadata"]["name"] for i in server.call("GET", "/api/v1/namespaces").json["items"]}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names
    svc = server.call("GET", "/api/v1/namespaces/default/services/kubernetes").json
    assert svc["spec"]["clusterIP"] == "10.96.0.1" and svc["spec"]["ports"][0]["port"] == 443
    ep = server.call("GET", "/api/v1/namespaces/default/endpoints/kubernetes").json
    port = int(server.https_url.rsplit(":", 1)[1])
    assert ep["subsets"] == [{"addresses": [{"ip": "127.0.0.1"}],
                              "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]


def test_finalizers_and_delete_preconditions(server, ns):
    body = cm("f")
    body["metadata"]["finalizers"] = ["example.com/x"]
    o = server.call("POST", f"/api/v1/namespaces/{ns}/configmaps", body).json
    r = server.call("DELETE", f"/api/v1/namespaces/{ns}/configmaps/f",
                    {"preconditions": {"uid": "not-the-uid"}})
    assert r.status == 409 and "Precondition failed: UID in precondition" in r.json["message"]
    r = server.call("DELETE", f"/api/v1/namespaces/{ns}/configmaps/f", {"preconditions": {"uid": o["metadata"]["uid"]}})
    assert r.status == 200 and r.json["metadata"]["deletionTimestamp"]
    assert server.call("GET", f"/api/v1/namespaces/{ns}/configmaps/f").status == 200
    r = server.call("PATCH", f"/api/v1/namespaces/{ns}/configmaps/f", {"metadata": {"finalizers": ["example.com/new", "example.com/x"]}},
                    content_type="application/merge-patch+json")
    assert r.status == 422   # no new finalizers while terminating
    r = server.call("PATCH", f"/api/v1/namespaces/{ns}/configmaps/f", {"metadata": {"finalizers": None}},
                    content_type="application/merge-patch+json")
    assert r.status == 200
    assert server.call("GET", f"/api/v1/namespaces/{ns}/configmaps/f").status == 404


def test_json_patch_test_failure_is_422_with_cause(server, ns):
    o = server.call("POST", f"/api/v1/namespaces/{ns}/configmaps", cm("jp", a="1")).json
    ops = [{"op": "test", "path": "/metadata/resourceVersion", "value": "1"},
           {"op": "replace", "path": "/data/a", "value": "2"}]
    r = server.call("PATCH", f"/api/v1/namespaces/{ns}/configmaps/jp", ops, content_type="application/json-patch+json")
    assert r.status == 422 and r.json["reason"] == "Invalid"
    assert r.json["message"] == "the server rejected our request due to an error in our request"
    # no causes: kubectl against a real cluster prints exactly "The request is invalid: the server
    # rejected our request due to an error in our request" (kubernetes-client/javascript#2095)
    assert not r.json.get("details", {}).get("causes")
    ops[0]["value"] = o["metadata"]["resourceVersion"]
    r = server.call("PATCH", f"/api/v1/namespaces/{ns}/configmaps/jp", ops, content_type="application/json-patch+json")
    assert r.status == 200 and r.json["data"] == {"a": "2"}


def test_delete_returns_status_and_dry_run_changes_nothing(server, ns):
    server.call("POST", f"/api/v1/namespaces/{ns}/configmaps", cm("d"))
    r = server.call("DELETE", f"/api/v1/namespaces/{ns}/configmaps/d?dryRun=All")
    assert r.status == 200
    assert server.call("GET", f"/api/v1/namespaces/{ns}/configmaps/d").status == 200
    r = server.call("POST", f"/api/v1/namespaces/{ns}/configmaps?dryRun=All", cm("dry"))
    assert r.status == 201 and r.json["metadata"]["uid"]
    assert server.call("GET", f"/api/v1/namespaces/{ns}/configmaps/dry").status == 404
    r = server.call("DELETE", f"/api/v1/namespaces/{ns}/configmaps/d")
    assert r.status == 200 and r.json["status"] == "Success" and r.json["details"]["name"] == "d"
    assert server.call("GET", f"/api/v1/namespaces/{ns}/configmaps/d").status == 404


def test_owner_references_background_deletion(server, ns):
    owner = server.call("POST", f"/api/v1/namespaces/{ns}/configmaps", cm("owner")).json
    dep = cm("dependent")
    dep["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                                           "uid": owner["metadata"]["uid"]}]
    assert server.call("POST", f"/api/v1/namespaces/{ns}/configmaps", dep).status == 201
    assert server.call("DELETE", f"/api/v1/namespaces/{ns}/configmaps/owner").status == 200
    deadline = time.time() + 5
    while time.time() < deadline and server.call("GET", f"/api/v1/namespaces/{ns}/configmaps/dependent").status != 404:
        time.sleep(0.05)
    assert server.call("GET", f"/api/v1/namespaces/{ns}/configmaps/dependent").status == 404


def test_delete_collection_with_selector(server, ns):
    for i in range(4):
        body = cm(f"dc{i}")
        body["metadata"]["labels"] = {"grp": "a" if i < 3 else "b"}
        server.call("POST", f"/api/v1/namespaces/{ns}/configmaps", body)
    r = server.call("DELETE", f"/api/v1/namespaces/{ns}/configmaps?labelSelector=grp%3Da")
    assert r.status == 200 and len(r.json["items"]) == 3
    left = server.call("GET", f"/api/v1/namespaces/{ns}/configmaps?labelSelector=grp").json["items"]
    assert [o["metadata"]["name"] for o in left] == ["dc3"]


# --- selectors, pagination ----------------------------------------------------------------------

def test_label_and_field_selectors(server, ns):
    for name, labels in [("a", {"app": "web", "tier": "front"}), ("b", {"app": "web", "tier": "back"}),
                         ("c", {"app": "db"})]:
        assert server.call("POST", f"/api/v1/namespaces/{ns}/pods", pod(name, **labels)).status == 201

    def names(q: str) -> list[str]:
        r = server.call("GET", f"/api/v1/namespaces/{ns}/pods?{q}")
        assert r.status == 200, r
        return sorted(o["metadata"]["name"] for o in r.json["items"])

    assert names("labelSelector=app%3Dweb") == ["a", "b"]
    assert names("labelSelector=app%3D%3Dweb,tier!%3Dfront") == ["b"]
    assert names("labelSelector=tier%20in%20(front,back)") == ["a", "b"]
    assert names("labelSelector=tier%20notin%20(front)") == ["b", "c"]
    assert names("labelSelector=!tier") == ["c"]
    assert names("labelSelector=tier") == ["a", "b"]
    assert names("fieldSelector=metadata.name%3Db") == ["b"]
    assert names("fieldSelector=metadata.name!%3Db") == ["a", "c"]
    r = server.call("POST", f"/api/v1/namespaces/{ns}/pods/a/binding",
                    {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "a"},
                     "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"}})
    assert r.status == 201, r
    assert names("fieldSelector=spec.nodeName%3Dnode-1") == ["a"]
    assert names("fieldSelector=status.phase%3DPending") == ["a", "b", "c"]
    r = server.call("POST", f"/api/v1/namespaces/{ns}/pods/a/binding",
                    {"metadata": {"name": "a"}, "target": {"kind": "Node", "name": "node-2"}})
    assert r.status == 409
    r = server.call("GET", f"/api/v1/namespaces/{ns}/pods?fieldSelector=spec.bogus%3Dx")
    assert r.status == 400 and r.json["reason"] == "BadRequest"
    r = server.call("GET", f"/api/v1/namespaces/{ns}/pods?labelSelector=a%3D%3D%3Db")
    assert r.status == 400


def test_pagination_is_one_snapshot(server, ns):
    for i in range(7):
        server.call("POST", f"/api/v1/namespaces/{ns}/configmaps", cm(f"pg{i}"))
    r = server.call("GET", f"/api/v1/namespaces/{ns}/configmaps?limit=3").json
    rv = r["metadata"]["resourceVersion"]
    assert len(r["items"]) == 3 and r["metadata"]["remainingItemCount"] == 4
    seen = [o["metadata"]["name"] for o in r["items"]]
    server.call("POST", f"/api/v1/namespaces/{ns}/configmaps", cm("pg9-added-later"))
    server.call("DELETE", f"/api/v1/namespaces/{ns}/configmaps/pg6")
    while r["metadata"].get("continue"):
        r = server.call("GET", f"/api/v1/namespaces/{ns}/configmaps?limit=3&continue={r['metadata']['continue']}").json
        assert r["metadata"]["resourceVersion"] == rv
        seen += [o["metadata"]["name"] for o in r["items"]]
    assert seen == [f"pg{i}" for i in range(7)]
    r = server.call("GET", f"/api/v1/namespaces/{ns}/configmaps?limit=3&continue=garbage")
    assert r.status == 400


# --- watch -----------------------------------------------------------------------------------------

def _watch_lines(server, path: str, n: int, timeout: float = 10.0) -> list[dict]:
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=timeout)
    conn.request("GET", path)
    r = conn.getresponse()
    assert r.status == 200
    out = []
    buf = b""
    deadline = time.time() + timeout
    while len(out) < n and time.time() < deadline:
        chunk = r.read1(65536) if hasattr(r, "read1") else r.read(1)
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line.strip():
                out.append(orjson.loads(line))
    conn.close()
    return out


def test_watch_from_resource_version_and_selectors(server, ns):
    o = server.call("POST", f"/api/v1/namespaces/{ns}/configmaps", cm("w1", a="1")).json
    rv = o["metadata"]["resourceVersion"]
    server.call("PATCH", f"/api/v1/namespaces/{ns}/configmaps/w1", {"data": {"a": "2"}},
                content_type="application/merge-patch+json")
    server.call("POST", f"/api/v1/namespaces/{ns}/configmaps", cm("w2"))
    server.call("DELETE", f"/api/v1/namespaces/{ns}/configmaps/w1")
    evs = _watch_lines(server, f"/api/v1/namespaces/{ns}/configmaps?watch=1&resourceVersion={rv}", 3)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in evs] == [
        ("MODIFIED", "w1"), ("ADDED", "w2"), ("DELETED", "w1")]
    assert evs[0]["object"]["data"] == {"a": "2"}
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in evs]
    assert rvs == sorted(rvs) and rvs[0] > int(rv)
    # without a resourceVersion: the current state as ADDED first
    evs = _watch_lines(server, f"/api/v1/namespaces/{ns}/configmaps?watch=true&fieldSelector=metadata.name%3Dw2", 1)
    assert evs[0]["type"] == "ADDED" and evs[0]["object"]["metadata"]["name"] == "w2"


def test_watch_list_ends_with_annotated_bookmark(server, ns):
    server.call("POST", f"/api/v1/namespaces/{ns}/configmaps", cm("wl"))
    evs = _watch_lines(server, f"/api/v1/namespaces/{ns}/configmaps?watch=1&sendInitialEvents=true"
                               f"&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan", 2)
    assert evs[0]["type"] == "ADDED"
    assert evs[1]["type"] == "BOOKMARK"
    assert evs[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_watch_timeout_seconds_ends_stream(server, ns):
    t0 = time.time()
    evs = _watch_lines(server, f"/api/v1/namespaces/{ns}/configmaps?watch=1&resourceVersion=1&timeoutSeconds=1", 1000,
                       timeout=10)
    assert time.time() - t0 < 5
    assert all(e["type"] in ("ADDED", "MODIFIED", "DELETED", "ERROR") for e in evs)


# --- discovery and health -------------------------------------------------------------------

def test_discovery_and_version(server):
    v = server.call("GET", "/version").json
    assert v["major"] == "1" and v["gitVersion"].startswith("v1.")
    api = server.call("GET", "/api").json
    assert api["versions"] == ["v1"]
    r = server.call("GET", "/apis", headers={
        "Accept": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"})
    assert r.headers["content-type"] == "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    groups = {g["metadata"]["name"] for g in r.json["items"]}
    assert {"apps", "batch", "coordination.k8s.io", "discovery.k8s.io", "events.k8s.io",
            "rbac.authorization.k8s.io", "apiextensions.k8s.io"} <= groups
    r2 = server.call("GET", "/apis", headers={"Accept": r.headers["content-type"], "If-None-Match": r.headers["etag"]})
    assert r2.status == 304
    rl = server.call("GET", "/api/v1").json
    pods = next(x for x in rl["resources"] if x["name"] == "pods")
    assert pods["shortNames"] == ["po"] and "all" in pods["categories"]
    assert server.call("GET", "/api/").status == 200      # kr8s-style trailing slash
    assert server.call("GET", "/healthz").body == b"ok"
    r = server.call("GET", "/readyz?verbose")
    assert r.status == 200 and b"[+]etcd ok" in r.body


def test_crd_serves_resource_at_once_and_deleting_it_removes_objects(server):
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "widgets.example.com"},
           "spec": {"group": "example.com", "scope": "Namespaced",
                    "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
                    "versions": [{"name": "v1", "served": True, "storage": True,
                                  "subresources": {"status": {}},
                                  "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                                      "spec": {"type": "object", "properties": {
                                          "size": {"type": "integer", "minimum": 1, "default": 3},
                                          "color": {"type": "string", "enum": ["red", "blue"]}}},
                                      "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}}}]}}
    r = server.call("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    assert r.status == 201, r
    assert server.call("POST", "/api/v1/namespaces", {"metadata": {"name": "crdns"}}).status in (201, 409)
    w = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"color": "red"}}
    r = server.call("POST", "/apis/example.com/v1/namespaces/crdns/widgets", w)
    assert r.status == 201, r
    assert r.json["spec"]["size"] == 3     # schema default
    bad = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "bad"},
           "spec": {"color": "green", "size": 0}}
    r = server.call("POST", "/apis/example.com/v1/namespaces/crdns/widgets", bad)
    assert r.status == 422 and {c["field"] for c in r.json["details"]["causes"]} == {"spec.color", "spec.size"}
    r = server.call("DELETE", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com")
    assert r.status == 200
    deadline = time.time() + 10
    while time.time() < deadline and server.call(
            "GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com").status != 404:
        time.sleep(0.1)
    assert server.call("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com").status == 404
    assert server.call("GET", "/apis/example.com/v1/namespaces/crdns/widgets/w").status == 404
    # recreating the CRD does not bring the old objects back
    assert server.call("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd).status == 201
    assert server.call("GET", "/apis/example.com/v1/namespaces/crdns/widgets").json["items"] == []
    server.call("DELETE", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com")


# --- fuzz: random damage never yields a 500 ---------------------------------------------------

_DEPLOY = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "fz", "labels": {"a": "b"}},
           "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "fz"}},
                    "template": {"metadata": {"labels": {"app": "fz"}},
                                 "spec": {"containers": [{"name": "c", "image": "nginx",
                                                          "ports": [{"containerPort": 80}],
                                                          "env": [{"name": "A", "value": "1"}]}]}}}}
_SVC = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "fz"},
        "spec": {"selector": {"app": "fz"}, "ports": [{"port": 80, "targetPort": 8080}]}}
_JUNK = [None, 0, -1, 1.5, True, "", "x" * 300, [], [1, "a"], {}, {"k": [None]}, 2**70]


def _damage(rng, obj):
    """Replace one random node of a JSON value with junk."""
    import copy

    obj = copy.deepcopy(obj)
    paths = []

    def walk(v, path):
        paths.append(path)
        if isinstance(v, dict):
            for k, x in v.items():
                walk(x, path + [k])
        elif isinstance(v, list):
            for i, x in enumerate(v):
                walk(x, path + [i])

    walk(obj, [])
    path = rng.choice(paths[1:])
    cur = obj
    for p in path[:-1]:
        cur = cur[p]
    cur[path[-1]] = rng.choice(_JUNK)
    return obj


def test_random_damage_is_never_a_500(server, ns):
    import random

    rng = random.Random(int(__import__("os").environ.get("KP_FUZZ_SEED", "1234")))
    bases = [(f"/apis/apps/v1/namespaces/{ns}/deployments", _DEPLOY),
             (f"/api/v1/namespaces/{ns}/services", _SVC), (f"/api/v1/namespaces/{ns}/pods", POD)]
    statuses = set()
    for i in range(int(__import__("os").environ.get("KP_FUZZ_N", "150"))):
        coll, base = bases[i % len(bases)]
        bad = _damage(rng, base)
        if isinstance(bad.get("metadata"), dict) and isinstance(bad["metadata"].get("name"), str):
            bad["metadata"]["name"] = f"fz{i}"
        r = server.call("POST", coll, raw=json.dumps(bad).encode())
        statuses.add(r.status)
        assert r.status < 500, (bad, r)
        if r.status != 201:
            assert r.json["kind"] == "Status"
        # the same damage as a merge patch and as an update of a good object
        good = json.loads(json.dumps(base))
        good["metadata"]["name"] = f"ok{i}"
        assert server.call("POST", coll, good).status == 201
        before = server.call("GET", f"{coll}/ok{i}").json
        damage = json.dumps({k: v for k, v in bad.items() if k != "metadata"}).encode()
        p = server.call("PATCH", f"{coll}/ok{i}", raw=damage, content_type="application/merge-patch+json")
        assert p.status < 500, (bad, p)
        p2 = server.call("PATCH", f"{coll}/ok{i}", raw=damage, content_type="application/strategic-merge-patch+json")
        assert p2.status < 500, (bad, p2)
        if p.status >= 400 and p2.status >= 400:
            assert server.call("GET", f"{coll}/ok{i}").json == before   # nothing half-applied
    assert statuses & {400, 422} and 201 in statuses


def test_crd_status_scale_printer_columns_selectable_fields(server):
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "gadgets.example.org"},
           "spec": {"group": "example.org", "scope": "Namespaced",
                    "names": {"plural": "gadgets", "kind": "Gadget", "categories": ["all"]},
                    "versions": [{"name": "v1", "served": True, "storage": True,
                                  "subresources": {"status": {}, "scale": {
                                      "specReplicasPath": ".spec.count", "statusReplicasPath": ".status.count",
                                      "labelSelectorPath": ".status.selector"}},
                                  "additionalPrinterColumns": [
                                      {"name": "Color", "type": "string", "jsonPath": ".spec.color"},
                                      {"name": "Count", "type": "integer", "jsonPath": ".spec.count"}],
                                  "selectableFields": [{"jsonPath": ".spec.color"}],
                                  "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                                      "spec": {"type": "object", "properties": {
                                          "color": {"type": "string"}, "count": {"type": "integer"}}},
                                      "status": {"type": "object", "properties": {
                                          "count": {"type": "integer"}, "selector": {"type": "string"}}}}}}}]}}
    assert server.call("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd).status == 201
    base = "/apis/example.org/v1/namespaces/default/gadgets"
    for name, color in [("g1", "red"), ("g2", "blue")]:
        r = server.call("POST", base, {"apiVersion": "example.org/v1", "kind": "Gadget", "metadata": {"name": name},
                                       "spec": {"color": color, "count": 1}, "status": {"count": 9}})
        assert r.status == 201 and "status" not in r.json    # status is reset on create
    r = server.call("PUT", f"{base}/g1/status", {**server.call("GET", f"{base}/g1").json,
                                                 "status": {"count": 4, "selector": "app=g1"}})
    assert r.status == 200 and r.json["status"] == {"count": 4, "selector": "app=g1"}
    sc = server.call("GET", f"{base}/g1/scale").json
    assert sc["spec"]["replicas"] == 1 and sc["status"] == {"replicas": 4, "selector": "app=g1"}
    sc["spec"]["replicas"] = 6
    assert server.call("PUT", f"{base}/g1/scale", sc).status == 200
    assert server.call("GET", f"{base}/g1").json["spec"]["count"] == 6
    t = server.call("GET", base, headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}).json
    # upstream adds Age only when a CRD has no printer columns of its own
    assert [c["name"] for c in t["columnDefinitions"]] == ["Name", "Color", "Count"]
    assert [r["cells"][:3] for r in t["rows"]] == [["g1", "red", 6], ["g2", "blue", 1]]
    r = server.call("GET", f"{base}?fieldSelector=spec.color%3Dblue")
    assert r.status == 200 and [o["metadata"]["name"] for o in r.json["items"]] == ["g2"]
    assert server.call("GET", f"{base}?fieldSelector=spec.count%3D1").status == 400
    server.call("DELETE", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gadgets.example.org")


# --- every built-in resource: create, get, list, status, delete -------------------------------

_TEMPLATE = {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
_SAMPLES = {
    ("", "pods"): {"spec": {"containers": [{"name": "c", "image": "nginx"}]}},
    ("", "nodes"): {"spec": {"podCIDR": "10.244.1.0/24"}},
    ("", "services"): {"spec": {"ports": [{"port": 80}]}},
    ("", "endpoints"): {"subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]},
    ("", "configmaps"): {"data": {"k": "v"}},
    ("", "secrets"): {"stringData": {"k": "v"}},
    ("", "serviceaccounts"): {},
    ("", "events"): {"involvedObject": {"kind": "Pod", "name": "p", "namespace": "NS"}, "reason": "Test",
                     "message": "hello", "type": "Normal"},
    ("", "persistentvolumeclaims"): {"spec": {"accessModes": ["ReadWriteOnce"],
                                              "resources": {"requests": {"storage": "1Gi"}}}},
    ("", "limitranges"): {"spec": {"limits": [{"type": "Container", "default": {"cpu": "100m"}}]}},
    ("", "resourcequotas"): {"spec": {"hard": {"pods": "10"}}},
    ("apps", "deployments"): {"spec": {"selector": {"matchLabels": {"app": "x"}}, "template": _TEMPLATE}},
    ("apps", "replicasets"): {"spec": {"selector": {"matchLabels": {"app": "x"}}, "template": _TEMPLATE}},
    ("apps", "statefulsets"): {"spec": {"selector": {"matchLabels": {"app": "x"}}, "serviceName": "x",
                                        "template": _TEMPLATE}},
    ("apps", "daemonsets"): {"spec": {"selector": {"matchLabels": {"app": "x"}}, "template": _TEMPLATE}},
    ("batch", "jobs"): {"spec": {"template": {"spec": {"restartPolicy": "Never",
                                                       "containers": [{"name": "c", "image": "busybox"}]}}}},
    ("batch", "cronjobs"): {"spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": {"spec": {
        "restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "busybox"}]}}}}}},
    ("coordination.k8s.io", "leases"): {"spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40,
                                                 "renewTime": "2026-01-01T00:00:00.000000Z"}},
    ("discovery.k8s.io", "endpointslices"): {"addressType": "IPv4",
                                             "endpoints": [{"addresses": ["10.0.0.2"]}], "ports": [{"port": 80}]},
    ("events.k8s.io", "events"): {"eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "test/x",
                                  "reportingInstance": "x-1", "action": "Tested", "reason": "Test", "type": "Normal",
                                  "regarding": {"kind": "Pod", "name": "p"}},
    ("rbac.authorization.k8s.io", "roles"): {"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]},
    ("rbac.authorization.k8s.io", "rolebindings"): {
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
        "subjects": [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}]},
    ("rbac.authorization.k8s.io", "clusterroles"): {"rules": [{"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]},
    ("rbac.authorization.k8s.io", "clusterrolebindings"): {
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "r"},
        "subjects": [{"kind": "Group", "name": "devs", "apiGroup": "rbac.authorization.k8s.io"}]},
}


@pytest.mark.parametrize("group,plural", sorted(_SAMPLES), ids=lambda x: x or "core")
def test_every_builtin_resource_round_trips(server, ns, group, plural):
    from kubeplane.apiserver.registry.resources import BUILTIN

    info = next(r for r in BUILTIN if r.group == group and r.plural == plural)
    base = "/api/v1" if not group else f"/apis/{group}/{info.version}"
    coll = f"{base}/namespaces/{ns}/{plural}" if info.namespaced else f"{base}/{plural}"
    name = f"rt-{ns}"[:60] if not info.namespaced else "rt"
    body = json.loads(json.dumps(_SAMPLES[(group, plural)]).replace('"NS"', json.dumps(ns)))
    body.update({"apiVersion": info.group_version, "kind": info.kind, "metadata": {"name": name}})
    r = server.call("POST", coll + "?fieldValidation=Strict", body)
    assert r.status == 201, r
    assert r.json["kind"] == info.kind and r.json["apiVersion"] == info.group_version
    g = server.call("GET", f"{coll}/{name}")
    assert g.status == 200 and g.json["metadata"]["uid"] == r.json["metadata"]["uid"]
    lst = server.call("GET", coll).json
    assert lst["kind"] == info.list_kind and name in [o["metadata"]["name"] for o in lst["items"]]
    t = server.call("GET", coll, headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}).json
    # (events' first column is LAST SEEN, so find the row by its object's name)
    assert t["kind"] == "Table" and any(row["object"]["metadata"]["name"] == name for row in t["rows"])
    if "status" in info.subresources:
        st = server.call("GET", f"{coll}/{name}/status")
        assert st.status == 200 and st.json["metadata"]["name"] == name
    d = server.call("DELETE", f"{coll}/{name}")
    assert d.status == 200, d
    deadline = time.time() + 5
    while time.time() < deadline and server.call("GET", f"{coll}/{name}").status != 404:
        time.sleep(0.05)
    assert server.call("GET", f"{coll}/{name}").status == 404


def test_pod_eviction_and_node_status(server, ns):
    assert server.call("POST", f"/api/v1/namespaces/{ns}/pods", pod("ev")).status == 201
    r = server.call("POST", f"/api/v1/namespaces/{ns}/pods/ev/eviction",
                    {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "ev", "namespace": ns}})
    assert r.status == 201 and r.json["status"] == "Success"
    assert server.call("GET", f"/api/v1/namespaces/{ns}/pods/ev").status == 404
    node = f"node-{ns}"[:60]
    assert server.call("POST", "/api/v1/nodes", {"metadata": {"name": node}}).status == 201
    n = server.call("GET", f"/api/v1/nodes/{node}").json
    n["status"] = {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                   "message": "ok", "lastHeartbeatTime": "2026-01-01T00:00:00Z",
                                   "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
    r = server.call("PUT", f"/api/v1/nodes/{node}/status", n)
    assert r.status == 200 and r.json["status"]["conditions"][0]["type"] == "Ready"
    t = server.call("GET", f"/api/v1/nodes/{node}", headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}).json
    assert t["rows"][0]["cells"][:2] == [node, "Ready"]
    assert server.call("DELETE", f"/api/v1/nodes/{node}").status == 200


def test_long_list_is_streamed_whole(server, ns):
    """Lists longer than 500 objects are written in pieces (chunked): the client still
    gets one valid list with every object, in key order."""
    import concurrent.futures

    names = [f"s{i:04d}" for i in range(620)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert set(pool.map(lambda n: server.call("POST", f"/api/v1/namespaces/{ns}/configmaps", cm(n)).status,
                            names)) == {201}
    # consistent first: resourceVersion=0 may lag the last writes (it is "any" version)
    for q in ("", "?resourceVersion=0", "?limit=600"):
        r = server.call("GET", f"/api/v1/namespaces/{ns}/configmaps{q}")
        assert r.status == 200
        got = [o["metadata"]["name"] for o in r.json["items"]]
        assert got == (names if q != "?limit=600" else names[:600]), q


def test_node_create_keeps_its_status(server, ns):
    """Upstream's node strategy: "Nodes allow *all* fields, including status, to be set on
    create" (a kubelet registers its Node with capacity and conditions); a pod's other
    status-bearing peers (e.g. Deployments) drop it."""
    node = f"cap-{ns}"[:60]
    status = {"capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
              "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}
    r = server.call("POST", "/api/v1/nodes", {"metadata": {"name": node}, "status": status})
    try:
        assert r.status == 201, r
        got = server.call("GET", f"/api/v1/nodes/{node}").json["status"]
        assert got["capacity"] == status["capacity"] and got["allocatable"] == status["allocatable"], got
    finally:
        server.call("DELETE", f"/api/v1/nodes/{node}")
    d = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "st"},
         "spec": {"selector": {"matchLabels": {"a": "b"}},
                  "template": {"metadata": {"labels": {"a": "b"}},
                               "spec": {"containers": [{"name": "c", "image": "i"}]}}},
         "status": {"replicas": 7}}
    r = server.call("POST", f"/apis/apps/v1/namespaces/{ns}/deployments", d)
    assert r.status == 201 and "replicas" not in r.json["status"], r.json["status"]


def test_crd_with_a_null_spec_is_invalid_not_a_500(server):
    """`spec: null` is Go's zero spec: 422 naming the missing fields (the fuzz test found a 500)."""
    body = b"apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: x.y.z\nspec: null\n"
    r = server.call("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", raw=body,
                    content_type="application/yaml")
    assert r.status == 422 and r.json["reason"] == "Invalid", r
    assert any(c["field"] == "spec.group" for c in r.json["details"]["causes"]), r.json
