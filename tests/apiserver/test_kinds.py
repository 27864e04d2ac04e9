"""The cluster-infrastructure kinds (PersistentVolume, ReplicationController, PodTemplate,
ControllerRevision, HPA, PDB, Ingress, IngressClass, NetworkPolicy, StorageClass, CSIDriver,
PriorityClass, RuntimeClass, the webhook configurations) against a real `kubeplane serve`:
discovery names, Priority admission, validation errors (422 with causes), immutable fields,
the scale subresource of a ReplicationController, and the columns `kubectl get` prints.
(Created objects against upstream's recorded ones: test_upstream_shapes.py.)"""
from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from kubeplane.apiserver.machinery import protobuf
from kubectls import kubectl_binary
from server_procs import ServerProc

GOLDEN = Path("/work/shared/upstream-golden")
if not GOLDEN.is_dir():
    GOLDEN = Path(__file__).resolve().parents[3] / "shared" / "upstream-golden"

PC = "/apis/scheduling.k8s.io/v1/priorityclasses"
PB = "application/vnd.kubernetes.protobuf"


def _pod(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec}}


def _causes(r) -> list[tuple[str, str]]:
    return [(c["field"], c["reason"]) for c in r.json["details"]["causes"]]


# --- discovery ---------------------------------------------------------------------------------

@pytest.mark.parametrize("path,name,short,namespaced,subs", [
    ("/api/v1", "persistentvolumes", ["pv"], False, ["status"]),
    ("/api/v1", "replicationcontrollers", ["rc"], True, ["scale", "status"]),
    ("/api/v1", "podtemplates", [], True, []),
    ("/api/v1", "serviceaccounts", ["sa"], True, ["token"]),
    ("/apis/apps/v1", "controllerrevisions", [], True, []),
    ("/apis/autoscaling/v2", "horizontalpodautoscalers", ["hpa"], True, ["status"]),
    ("/apis/policy/v1", "poddisruptionbudgets", ["pdb"], True, ["status"]),
    ("/apis/networking.k8s.io/v1", "ingresses", ["ing"], True, ["status"]),
    ("/apis/networking.k8s.io/v1", "ingressclasses", [], False, []),
    ("/apis/networking.k8s.io/v1", "networkpolicies", ["netpol"], True, []),
    ("/apis/storage.k8s.io/v1", "storageclasses", ["sc"], False, []),
    ("/apis/storage.k8s.io/v1", "csidrivers", [], False, []),
    ("/apis/scheduling.k8s.io/v1", "priorityclasses", ["pc"], False, []),
    ("/apis/node.k8s.io/v1", "runtimeclasses", [], False, []),
    ("/apis/admissionregistration.k8s.io/v1", "validatingwebhookconfigurations", [], False, []),
    ("/apis/admissionregistration.k8s.io/v1", "mutatingwebhookconfigurations", [], False, []),
])
def test_discovery_names(server: ServerProc, path: str, name: str, short: list[str], namespaced: bool,
                         subs: list[str]):
    r = server.call("GET", path)
    assert r.status == 200, r
    by_name = {e["name"]: e for e in r.json["resources"]}
    e = by_name[name]
    assert e.get("shortNames", []) == short and e["namespaced"] is namespaced, e
    assert sorted(n.split("/", 1)[1] for n in by_name if n.startswith(name + "/")) == subs
    if name in ("replicationcontrollers", "horizontalpodautoscalers"):
        assert e["categories"] == ["all"]
    if name == "serviceaccounts":
        assert by_name["serviceaccounts/token"]["verbs"] == ["create"]
        assert by_name["serviceaccounts/token"]["kind"] == "TokenRequest"


# --- PriorityClass and Priority admission --------------------------------------------------------

def test_system_priority_classes_exist_and_stay(server: ServerProc):
    for name, value in (("system-cluster-critical", 2000000000), ("system-node-critical", 2000001000)):
        r = server.call("GET", f"{PC}/{name}")
        assert r.status == 200 and r.json["value"] == value, r
        assert r.json["preemptionPolicy"] == "PreemptLowerPriority" and r.json["description"]
        r = server.call("DELETE", f"{PC}/{name}")
        assert r.status == 403 and r.json["message"] == (
            f'priorityclasses.scheduling.k8s.io "{name}" is forbidden: this is a system priority class and '
            "cannot be deleted"), r


def test_priority_admission(server: ServerProc, ns: str):
    base = f"/api/v1/namespaces/{ns}/pods"
    hi = f"hi-{ns}"
    assert server.call("POST", PC, {"metadata": {"name": hi}, "value": 1000,
                                    "preemptionPolicy": "Never"}).status == 201
    try:
        # no class and no default: priority 0, PreemptLowerPriority
        r = server.call("POST", base, _pod("plain"))
        assert r.status == 201 and r.json["spec"]["priority"] == 0, r
        assert r.json["spec"]["preemptionPolicy"] == "PreemptLowerPriority"
        assert "priorityClassName" not in r.json["spec"]
        # a class: its value and preemption policy
        r = server.call("POST", base, _pod("high", priorityClassName=hi))
        assert r.status == 201 and (r.json["spec"]["priority"], r.json["spec"]["preemptionPolicy"]) == (1000, "Never")
        # a system class
        r = server.call("POST", base, _pod("crit", priorityClassName="system-node-critical"))
        assert r.status == 201 and r.json["spec"]["priority"] == 2000001000, r
        # the same value as the class computes is accepted
        assert server.call("POST", base, _pod("same", priorityClassName=hi, priority=1000)).status == 201
        # an unknown class
        r = server.call("POST", base, _pod("x", priorityClassName="foo"))
        assert r.status == 403, r
        assert r.json == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                          "message": 'pods "x" is forbidden: no PriorityClass with name foo was found',
                          "reason": "Forbidden", "details": {"name": "x", "kind": "pods"}, "code": 403}
        # a priority different from the class's
        r = server.call("POST", base, _pod("y", priorityClassName=hi, priority=7))
        assert r.status == 403 and r.json["message"] == (
            'pods "y" is forbidden: the integer value of priority (7) must not be provided in pod spec; priority '
            "admission controller computed 1000 from the given PriorityClass name"), r
        r = server.call("POST", base, _pod("z", priority=5))
        assert r.status == 403 and "computed 0 from" in r.json["message"], r
        r = server.call("POST", base, _pod("w", priorityClassName=hi, preemptionPolicy="PreemptLowerPriority"))
        assert r.status == 403 and "PreemptionPolicy (PreemptLowerPriority) must not be provided" in r.json["message"]
        # an update that leaves priority out keeps it (and may change the image)
        cur = server.call("GET", f"{base}/high").json
        del cur["spec"]["priority"], cur["spec"]["preemptionPolicy"]
        cur["spec"]["containers"][0]["image"] = "busybox:2"
        r = server.call("PUT", f"{base}/high", cur)
        assert r.status == 200 and r.json["spec"]["priority"] == 1000, r
        # and may not change it
        cur = r.json
        cur["spec"]["priority"] = 1
        assert server.call("PUT", f"{base}/high", cur).status == 422
    finally:
        server.call("DELETE", f"{PC}/{hi}")


def test_global_default_priority_class(server: ServerProc, ns: str):
    first, second = f"d1-{ns}", f"d2-{ns}"
    r = server.call("POST", PC, {"metadata": {"name": first}, "value": 77, "globalDefault": True})
    assert r.status == 201, r
    try:
        r = server.call("POST", PC, {"metadata": {"name": second}, "value": 5, "globalDefault": True})
        assert r.status == 403 and r.json["message"] == (
            f'priorityclasses.scheduling.k8s.io "{second}" is forbidden: PriorityClass {first} is already marked '
            "as default. Only one default can exist"), r
        # a second class may not become the default by update either
        assert server.call("POST", PC, {"metadata": {"name": second}, "value": 5}).status == 201
        cur = server.call("GET", f"{PC}/{second}").json
        cur["globalDefault"] = True
        assert server.call("PUT", f"{PC}/{second}", cur).status == 403
        # the default's own update is fine
        cur = server.call("GET", f"{PC}/{first}").json
        cur["description"] = "the default"
        assert server.call("PUT", f"{PC}/{first}", cur).status == 200
        r = server.call("POST", f"/api/v1/namespaces/{ns}/pods", _pod("p"))
        assert r.status == 201, r
        assert (r.json["spec"]["priority"], r.json["spec"]["priorityClassName"]) == (77, first)
    finally:
        server.call("DELETE", f"{PC}/{first}")
        server.call("DELETE", f"{PC}/{second}")
    r = server.call("POST", f"/api/v1/namespaces/{ns}/pods", _pod("after"))
    assert r.status == 201 and r.json["spec"]["priority"] == 0 and "priorityClassName" not in r.json["spec"]


def test_priority_class_validation(server: ServerProc, ns: str):
    name = f"v-{ns}"
    r = server.call("POST", PC, {"metadata": {"name": name}, "value": 2000000000})
    assert r.status == 422 and _causes(r) == [("value", "FieldValueForbidden")], r
    assert r.json["details"]["causes"][0]["message"] == \
        "Forbidden: maximum allowed value of a user defined priority is 1000000000"
    r = server.call("POST", PC, {"metadata": {"name": "system-mine"}, "value": 1})
    assert r.status == 422 and _causes(r) == [("metadata.name", "FieldValueForbidden")], r
    r = server.call("POST", PC, {"metadata": {"name": name}, "value": 1, "preemptionPolicy": "Sometimes"})
    assert r.status == 422 and _causes(r) == [("preemptionPolicy", "FieldValueNotSupported")], r
    assert server.call("POST", PC, {"metadata": {"name": name}, "value": 10}).status == 201
    try:
        cur = server.call("GET", f"{PC}/{name}").json
        assert cur["metadata"]["generation"] == 1
        cur["value"] = 11
        r = server.call("PUT", f"{PC}/{name}", cur)
        assert r.status == 422 and r.json["details"]["causes"] == [
            {"reason": "FieldValueForbidden", "message": "Forbidden: may not be changed in an update.",
             "field": "value"}], r
        r = server.call("PATCH", f"{PC}/{name}", {"preemptionPolicy": "Never"},
                        content_type="application/merge-patch+json")
        assert r.status == 422 and _causes(r) == [("preemptionPolicy", "FieldValueInvalid")], r
    finally:
        server.call("DELETE", f"{PC}/{name}")


# --- validation of the other kinds ---------------------------------------------------------------

@pytest.mark.parametrize("group_version,plural,body,causes", [
    ("policy/v1", "poddisruptionbudgets", {"spec": {"minAvailable": 1, "maxUnavailable": 1}},
     [("spec", "FieldValueInvalid")]),
    ("policy/v1", "poddisruptionbudgets", {"spec": {"minAvailable": "120%"}},
     [("spec.minAvailable", "FieldValueInvalid")]),
    ("networking.k8s.io/v1", "ingresses", {"spec": {"rules": [{"http": {"paths": [
        {"path": "/", "backend": {"service": {"name": "s", "port": {"number": 80}}}}]}}]}},
     [("spec.rules[0].http.paths[0].pathType", "FieldValueRequired")]),
    ("networking.k8s.io/v1", "ingresses", {"spec": {}}, [("spec", "FieldValueInvalid")]),
    ("networking.k8s.io/v1", "ingresses", {"spec": {"defaultBackend": {"service": {"name": "s"}}}},
     [("spec.defaultBackend.service.port", "FieldValueRequired")]),
    ("autoscaling/v2", "horizontalpodautoscalers", {"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "d"},
                                                             "minReplicas": 3, "maxReplicas": 2}},
     [("spec.maxReplicas", "FieldValueInvalid")]),
    ("v1", "replicationcontrollers", {"spec": {"selector": {"a": "b"}, "template": {
        "metadata": {"labels": {"a": "c"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}},
     [("spec.template.metadata.labels", "FieldValueInvalid")]),
    ("v1", "podtemplates", {"template": {"spec": {"containers": []}}},
     [("template.spec.containers", "FieldValueRequired")]),
    ("apps/v1", "controllerrevisions", {"revision": -1}, [("revision", "FieldValueInvalid")]),
])
def test_namespaced_validation(server: ServerProc, ns: str, group_version: str, plural: str, body: dict,
                               causes: list):
    base = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    r = server.call("POST", f"{base}/namespaces/{ns}/{plural}", {"metadata": {"name": "bad"}, **body})
    assert r.status == 422 and r.json["reason"] == "Invalid", r
    assert _causes(r) == causes, r.json


@pytest.mark.parametrize("group_version,plural,body,causes", [
    ("v1", "persistentvolumes", {"spec": {}}, [("spec.accessModes", "FieldValueRequired"),
                                               ("spec.capacity", "FieldValueRequired"),
                                               ("spec", "FieldValueRequired")]),
    ("storage.k8s.io/v1", "storageclasses", {"provisioner": "", "volumeBindingMode": "Later"},
     [("provisioner", "FieldValueRequired"), ("volumeBindingMode", "FieldValueNotSupported")]),
    ("node.k8s.io/v1", "runtimeclasses", {"handler": "Not_A_Label"}, [("handler", "FieldValueInvalid")]),
    ("networking.k8s.io/v1", "ingressclasses", {"spec": {}}, [("spec.controller", "FieldValueRequired")]),
    ("admissionregistration.k8s.io/v1", "validatingwebhookconfigurations", {"webhooks": [{
        "name": "short", "clientConfig": {"url": "http://x"}, "admissionReviewVersions": ["v1"]}]},
     [("webhooks[0].name", "FieldValueInvalid"), ("webhooks[0].clientConfig.url", "FieldValueInvalid"),
      ("webhooks[0].sideEffects", "FieldValueRequired")]),
])
def test_cluster_scoped_validation(server: ServerProc, group_version: str, plural: str, body: dict, causes: list):
    base = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    r = server.call("POST", f"{base}/{plural}", {"metadata": {"name": "bad-object"}, **body})
    assert r.status == 422 and r.json["reason"] == "Invalid", r
    assert _causes(r) == causes, r.json


def test_immutable_fields(server: ServerProc, ns: str):
    rc = "/apis/node.k8s.io/v1/runtimeclasses"
    sc = "/apis/storage.k8s.io/v1/storageclasses"
    assert server.call("POST", rc, {"metadata": {"name": f"rt-{ns}"}, "handler": "runc"}).status == 201
    assert server.call("POST", sc, {"metadata": {"name": f"sc-{ns}"}, "provisioner": "a.example/p"}).status == 201
    try:
        r = server.call("PATCH", f"{rc}/rt-{ns}", {"handler": "crun"}, content_type="application/merge-patch+json")
        assert r.status == 422 and r.json["details"]["causes"] == [
            {"reason": "FieldValueInvalid", "message": 'Invalid value: "crun": field is immutable',
             "field": "handler"}], r
        r = server.call("PATCH", f"{sc}/sc-{ns}", {"provisioner": "b.example/p", "parameters": {"a": "b"}},
                        content_type="application/merge-patch+json")
        assert r.status == 422 and _causes(r) == [("parameters", "FieldValueForbidden"),
                                                  ("provisioner", "FieldValueForbidden")], r
        r = server.call("PATCH", f"{sc}/sc-{ns}", {"allowVolumeExpansion": True},
                        content_type="application/merge-patch+json")
        assert r.status == 200 and r.json["allowVolumeExpansion"] is True, r
    finally:
        server.call("DELETE", f"{rc}/rt-{ns}")
        server.call("DELETE", f"{sc}/sc-{ns}")


def test_replication_controller_scale_and_status(server: ServerProc, ns: str):
    base = f"/api/v1/namespaces/{ns}/replicationcontrollers"
    body = {"metadata": {"name": "rc"}, "spec": {"template": {"metadata": {"labels": {"app": "rc"}},
                                                              "spec": {"containers": [{"name": "c", "image": "i"}]}}}}
    r = server.call("POST", base, body)
    assert r.status == 201, r
    assert r.json["spec"]["selector"] == {"app": "rc"} and r.json["metadata"]["labels"] == {"app": "rc"}
    assert r.json["spec"]["replicas"] == 1 and r.json["status"] == {"replicas": 0}
    r = server.call("GET", f"{base}/rc/scale")
    assert r.status == 200 and r.json["status"] == {"replicas": 0, "selector": "app=rc"}, r
    r = server.call("PATCH", f"{base}/rc/scale", {"spec": {"replicas": 4}},
                    content_type="application/merge-patch+json")
    assert r.status == 200 and r.json["spec"]["replicas"] == 4, r
    cur = server.call("GET", f"{base}/rc").json
    cur["status"] = {"replicas": 4, "readyReplicas": 2}
    r = server.call("PUT", f"{base}/rc/status", cur)
    assert r.status == 200 and r.json["status"]["readyReplicas"] == 2 and r.json["spec"]["replicas"] == 4, r
    cur = r.json
    cur["status"] = {"replicas": 0}          # the main resource keeps status
    r = server.call("PUT", f"{base}/rc", cur)
    assert r.status == 200 and r.json["status"]["readyReplicas"] == 2, r


def test_defaults_of_minimal_objects(server: ServerProc, ns: str):
    """SetDefaults_* of the kinds the golden recording does not exercise."""
    r = server.call("POST", f"/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers", {
        "metadata": {"name": "h"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "d"}, "maxReplicas": 3,
                                            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}})
    assert r.status == 201, r
    spec = r.json["spec"]
    assert spec["minReplicas"] == 1
    assert spec["metrics"] == [{"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "Utilization", "averageUtilization": 80}}}]
    assert spec["behavior"]["scaleUp"] == {"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
        {"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}]}
    assert spec["behavior"]["scaleDown"] == {"stabilizationWindowSeconds": 60, "selectPolicy": "Max", "policies": [
        {"type": "Percent", "value": 100, "periodSeconds": 15}]}
    r = server.call("POST", f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies", {
        "metadata": {"name": "np"}, "spec": {"podSelector": {}, "egress": [{"ports": [{"port": 53}]}]}})
    assert r.status == 201, r
    assert r.json["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert r.json["spec"]["egress"][0]["ports"] == [{"protocol": "TCP", "port": 53}]
    mw = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
    r = server.call("POST", mw, {"metadata": {"name": f"mw-{ns}"}, "webhooks": [{
        "name": "m.example.com", "clientConfig": {"service": {"namespace": "default", "name": "s"}},
        "sideEffects": "None", "admissionReviewVersions": ["v1"], "rules": [
            {"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]}]})
    assert r.status == 201, r
    server.call("DELETE", f"{mw}/mw-{ns}")
    hook = r.json["webhooks"][0]
    assert (hook["failurePolicy"], hook["matchPolicy"], hook["reinvocationPolicy"], hook["timeoutSeconds"]) == \
        ("Fail", "Equivalent", "Never", 10)
    assert hook["clientConfig"]["service"]["port"] == 443 and hook["rules"][0]["scope"] == "*"
    assert hook["namespaceSelector"] == {} and hook["objectSelector"] == {}


# --- protobuf ----------------------------------------------------------------------------------

_NEW_KINDS = ("PersistentVolume", "ReplicationController", "PodTemplate", "ControllerRevision",
              "HorizontalPodAutoscaler", "PodDisruptionBudget", "Ingress", "IngressClass", "NetworkPolicy",
              "StorageClass", "CSIDriver", "PriorityClass", "RuntimeClass", "ValidatingWebhookConfiguration")


@pytest.mark.parametrize("kind", _NEW_KINDS)
def test_protobuf_round_trip_of_served_objects(server: ServerProc, ns: str, kind: str):
    """The golden object sent as a protobuf body, read back as protobuf and as JSON: the same
    object either way, and the same as a JSON create makes."""
    if not (GOLDEN / f"create-{kind}.json").is_file():
        pytest.skip("upstream golden files not present")
    obj = json.loads((GOLDEN / f"create-{kind}.json").read_text())
    obj.pop("status", None)
    name = f"pb-{ns}"[:50]
    obj["metadata"] = {"name": name, **({"labels": obj["metadata"]["labels"]} if "labels" in obj["metadata"] else {})}
    av = obj["apiVersion"]
    base = "/api/v1" if av == "v1" else f"/apis/{av}"
    plural = next(e["name"] for e in server.call("GET", base).json["resources"] if e["kind"] == kind)
    coll = f"{base}/namespaces/{ns}/{plural}" if "namespace" in json.loads(
        (GOLDEN / f"create-{kind}.json").read_text())["metadata"] else f"{base}/{plural}"
    r = server.call("POST", coll, raw=protobuf.encode(obj), content_type=PB, headers={"Accept": PB})
    assert r.status == 201 and r.headers["content-type"] == PB, r
    try:
        created = protobuf.decode(r.body)[2]
        as_json = server.call("GET", f"{coll}/{name}").json
        as_pb = protobuf.decode(server.call("GET", f"{coll}/{name}", headers={"Accept": PB}).body)[2]
        assert as_pb == as_json == created
        json_copy = dict(obj, metadata={**obj["metadata"], "name": name + "-j"})
        r = server.call("POST", coll, json_copy)
        assert r.status == 201, r
        strip = ("uid", "resourceVersion", "creationTimestamp", "managedFields", "name")

        def common(o: dict[str, Any]) -> dict[str, Any]:
            return {**o, "metadata": {k: v for k, v in o["metadata"].items() if k not in strip}}
        assert common(r.json) == common(created)
    finally:
        server.call("DELETE", f"{coll}/{name}")
        server.call("DELETE", f"{coll}/{name}-j")


# --- kubectl get columns -------------------------------------------------------------------------

_HEADERS = {
    "persistentvolumes": "NAME CAPACITY ACCESS MODES RECLAIM POLICY STATUS CLAIM STORAGECLASS REASON AGE",
    "replicationcontrollers": "NAME DESIRED CURRENT READY AGE",
    "podtemplates": "NAME CONTAINERS IMAGES POD LABELS",
    "controllerrevisions": "NAME CONTROLLER REVISION AGE",
    "horizontalpodautoscalers": "NAME REFERENCE TARGETS MINPODS MAXPODS REPLICAS AGE",
    "poddisruptionbudgets": "NAME MIN AVAILABLE MAX UNAVAILABLE ALLOWED DISRUPTIONS AGE",
    "ingresses": "NAME CLASS HOSTS ADDRESS PORTS AGE",
    "ingressclasses": "NAME CONTROLLER PARAMETERS AGE",
    "networkpolicies": "NAME POD-SELECTOR AGE",
    "storageclasses": "NAME PROVISIONER RECLAIMPOLICY VOLUMEBINDINGMODE ALLOWVOLUMEEXPANSION AGE",
    "csidrivers": "NAME ATTACHREQUIRED PODINFOONMOUNT STORAGECAPACITY TOKENREQUESTS REQUIRESREPUBLISH MODES AGE",
    "priorityclasses": "NAME VALUE GLOBAL-DEFAULT AGE",
    "runtimeclasses": "NAME HANDLER AGE",
    "validatingwebhookconfigurations": "NAME WEBHOOKS AGE",
}
# the first cells of each golden object's row (the rest is the age)
_ROWS = {
    "persistentvolumes": "pv-g 1Gi RWO Retain Pending",
    "replicationcontrollers": "rc 1 0 0",
    "podtemplates": "pt c i <none>",
    "controllerrevisions": "cr <none> 1",
    "horizontalpodautoscalers": "hpa Deployment/dep <unknown>/50% 1 5 0",
    "poddisruptionbudgets": "pdb 1 N/A 0",
    "ingresses": "ing <none> a.example 80",
    "ingressclasses": "ic-g example.com/ic <none>",
    "networkpolicies": "np <none>",
    "storageclasses": "sc-g example.com/p Delete Immediate false",
    "csidrivers": "csi.example.com true false false <unset> false Persistent",
    "priorityclasses": "pc-g 1000 false",
    "runtimeclasses": "rc-g runc",
    "validatingwebhookconfigurations": "vw-g 1",
}


def test_kubectl_get_prints_upstreams_columns(server: ServerProc, ns: str, tmp_path: Path):
    binary = kubectl_binary("1.33") or kubectl_binary("1.31")
    if binary is None:
        pytest.skip("no kubectl installed")
    if not GOLDEN.is_dir():
        pytest.skip("upstream golden files not present")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "KUBECONFIG": server.kubeconfig}
    docs = []
    for f in sorted(GOLDEN.glob("create-*.json")):
        obj = json.loads(f.read_text())
        plural = next((p for p in _HEADERS
                       if p in (obj["kind"].lower() + "s", obj["kind"].lower() + "es",
                                obj["kind"].lower()[:-1] + "ies")), None)
        if plural is None:
            continue
        o = copy.deepcopy(obj)
        o.pop("status", None)
        o["metadata"] = {k: v for k, v in o["metadata"].items() if k in ("name", "labels")}
        docs.append((plural, o))
    assert sorted(p for p, _ in docs) == sorted(_HEADERS)
    cluster = []
    try:
        for plural, o in docs:
            res = subprocess.run([binary, "create", "-n", ns, "-f", "-"], input=json.dumps(o), capture_output=True,
                                 text=True, env=env, timeout=60)
            if "AlreadyExists" in res.stderr:        # a cluster-scoped object of an earlier test
                subprocess.run([binary, "delete", plural, o["metadata"]["name"]], env=env, capture_output=True,
                               timeout=60)
                res = subprocess.run([binary, "create", "-n", ns, "-f", "-"], input=json.dumps(o),
                                     capture_output=True, text=True, env=env, timeout=60)
            assert res.returncode == 0, (plural, res.stderr)
            cluster.append((plural, o["metadata"]["name"]))
            out = subprocess.run([binary, "get", plural, o["metadata"]["name"], "-n", ns], capture_output=True,
                                 text=True, env=env, timeout=60)
            assert out.returncode == 0, (plural, out.stderr)
            header, row = out.stdout.splitlines()[:2]
            assert " ".join(header.split()) == _HEADERS[plural], (plural, header)
            assert " ".join(row.split()).startswith(_ROWS[plural]), (plural, row)
    finally:
        for plural, name in cluster:
            subprocess.run([binary, "delete", plural, name, "-n", ns, "--wait=false"], env=env, capture_output=True,
                           timeout=60)
