"""The Python Kubernetes clients, unchanged, against `kubeplane serve` over HTTPS with the
kubeconfig the server writes: the official `kubernetes` client (typed APIs, dynamic client,
watch), kr8s (async) and lightkube (sync and async, server-side apply).

Expectations are upstream kube-apiserver's: status codes and reasons of errors, Status
bodies, defaulting (clusterIP, replicas), subresources (scale, status, binding), watch
event sequences with selectors and resume from a resourceVersion.
"""
from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from typing import Any, Iterator

import pytest

kubernetes = pytest.importorskip("kubernetes")
from kubernetes import client as k8s  # noqa: E402
from kubernetes import config as k8s_config  # noqa: E402
from kubernetes import watch as k8s_watch  # noqa: E402

pytestmark = pytest.mark.timeout(60)

WATCH_TIMEOUT = 10   # seconds; every watch below is bounded by this server-side timeout


@pytest.fixture(scope="module")
def api(server) -> Iterator[k8s.ApiClient]:
    c = k8s_config.new_client_from_config(config_file=server.kubeconfig, persist_config=False)
    assert c.configuration.host.startswith("https://")
    yield c
    c.close()


def _uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def _events(w: k8s_watch.Watch, stream, want: int, deadline_s: float = WATCH_TIMEOUT,
            out: list | None = None) -> list[tuple[str, dict]]:
    """Collect `want` events (type, raw object) from a watch stream into `out`, then stop it."""
    out = [] if out is None else out
    end = time.monotonic() + deadline_s
    for ev in stream:
        out.append((ev["type"], ev["raw_object"]))
        if len(out) >= want or time.monotonic() > end:
            w.stop()
            break
    return out


def _in_thread(fn) -> threading.Thread:
    t = threading.Thread(target=fn, daemon=True)
    t.start()
    return t


def _wait_for(pred, timeout: float = 10.0, what: str = "condition") -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# =========================================================================================
# kubernetes: typed APIs
# =========================================================================================

def test_configmap_crud_and_errors(api, ns):
    v1 = k8s.CoreV1Api(api)
    body = k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="cm1", labels={"app": "a"}), data={"k": "v"})
    cm = v1.create_namespaced_config_map(ns, body)
    assert cm.metadata.name == "cm1" and cm.metadata.namespace == ns
    assert cm.metadata.uid and cm.metadata.resource_version and cm.metadata.creation_timestamp
    assert cm.data == {"k": "v"}

    # AlreadyExists: 409 with the upstream message and details
    with pytest.raises(k8s.ApiException) as ei:
        v1.create_namespaced_config_map(ns, body)
    assert ei.value.status == 409 and ei.value.reason == "Conflict"
    st = json.loads(ei.value.body)
    assert st["reason"] == "AlreadyExists" and st["message"] == 'configmaps "cm1" already exists'
    assert st["details"] == {"name": "cm1", "kind": "configmaps"}

    got = v1.read_namespaced_config_map("cm1", ns)
    assert got.metadata.resource_version == cm.metadata.resource_version and got.data == {"k": "v"}

    v1.create_namespaced_config_map(ns, {"metadata": {"name": "cm2", "labels": {"app": "b"}}})
    lst = v1.list_namespaced_config_map(ns, label_selector="app=a")
    assert [i.metadata.name for i in lst.items] == ["cm1"]
    assert int(lst.metadata.resource_version) >= int(cm.metadata.resource_version)
    lst = v1.list_namespaced_config_map(ns, label_selector="app in (a,b)")
    assert sorted(i.metadata.name for i in lst.items) == ["cm1", "cm2"]
    lst = v1.list_namespaced_config_map(ns, field_selector="metadata.name=cm2")
    assert [i.metadata.name for i in lst.items] == ["cm2"]

    # strategic merge patch (the client's default for a dict body) merges maps
    p = v1.patch_namespaced_config_map("cm1", ns, {"data": {"k2": "v2"}, "metadata": {"labels": {"x": "y"}}})
    assert p.data == {"k": "v", "k2": "v2"} and p.metadata.labels == {"app": "a", "x": "y"}
    assert int(p.metadata.resource_version) > int(cm.metadata.resource_version)
    # JSON patch (a list body)
    p2 = v1.patch_namespaced_config_map("cm1", ns, [{"op": "remove", "path": "/data/k"}])
    assert p2.data == {"k2": "v2"}

    # replace with a stale resourceVersion: 409 Conflict
    stale = got
    stale.data = {"z": "1"}
    with pytest.raises(k8s.ApiException) as ei:
        v1.replace_namespaced_config_map("cm1", ns, stale)
    assert ei.value.status == 409
    assert "the object has been modified; please apply your changes to the latest version and try again" \
        in ei.value.body
    fresh = v1.read_namespaced_config_map("cm1", ns)
    fresh.data = {"z": "1"}
    rep = v1.replace_namespaced_config_map("cm1", ns, fresh)
    assert rep.data == {"z": "1"} and rep.metadata.uid == cm.metadata.uid

    # delete answers a Status for kinds without graceful deletion (the client types it `object`)
    st = v1.delete_namespaced_config_map("cm1", ns)
    assert st == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                  "details": {"name": "cm1", "kind": "configmaps", "uid": cm.metadata.uid}}
    with pytest.raises(k8s.ApiException) as ei:
        v1.read_namespaced_config_map("cm1", ns)
    assert ei.value.status == 404 and ei.value.reason == "Not Found"
    assert '"reason":"NotFound"' in ei.value.body.replace(" ", "")
    with pytest.raises(k8s.ApiException) as ei:
        v1.delete_namespaced_config_map("cm1", ns)
    assert ei.value.status == 404


def test_pods_binding_and_field_selectors(api, ns):
    v1 = k8s.CoreV1Api(api)
    pod = {"metadata": {"name": "p1", "labels": {"run": "p"}},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    created = v1.create_namespaced_pod(ns, pod)
    # upstream defaults
    assert created.spec.restart_policy == "Always" and created.spec.dns_policy == "ClusterFirst"
    assert created.spec.containers[0].image_pull_policy == "Always"    # no tag: :latest
    assert created.spec.containers[0].termination_message_path == "/dev/termination-log"
    assert created.status.phase == "Pending" and created.spec.node_name is None
    v1.create_namespaced_pod(ns, {**pod, "metadata": {"name": "p2"}})

    w = k8s_watch.Watch()
    got: list = []

    def watch_node() -> None:
        got.extend(_events(w, w.stream(v1.list_namespaced_pod, ns, field_selector="spec.nodeName=node-a",
                                       resource_version=created.metadata.resource_version,
                                       timeout_seconds=WATCH_TIMEOUT), 1))
    t = _in_thread(watch_node)

    # Binding answers a Status (201), which the typed client cannot read as a V1Binding
    # (kubernetes-client/python#825): read the raw response instead.
    r = v1.create_namespaced_binding(ns, {"metadata": {"name": "p1"}, "target": {"kind": "Node", "name": "node-a"}},
                                     _preload_content=False)
    assert r.status == 201
    assert json.loads(r.data)["status"] == "Success"
    bound = v1.read_namespaced_pod("p1", ns)
    assert bound.spec.node_name == "node-a"
    assert [c.type for c in bound.status.conditions or []] == ["PodScheduled"]

    # binding an already bound pod: 409
    with pytest.raises(k8s.ApiException) as ei:
        v1.create_namespaced_binding(ns, {"metadata": {"name": "p1"}, "target": {"kind": "Node", "name": "node-b"}},
                                     _preload_content=False)
    assert ei.value.status == 409

    sel = v1.list_namespaced_pod(ns, field_selector="spec.nodeName=node-a")
    assert [p.metadata.name for p in sel.items] == ["p1"]
    sel = v1.list_namespaced_pod(ns, field_selector="spec.nodeName=")
    assert [p.metadata.name for p in sel.items] == ["p2"]
    sel = v1.list_pod_for_all_namespaces(field_selector=f"spec.nodeName=node-a,metadata.namespace={ns}")
    assert [p.metadata.name for p in sel.items] == ["p1"]
    sel = v1.list_namespaced_pod(ns, field_selector="status.phase=Pending")
    assert len(sel.items) == 2
    with pytest.raises(k8s.ApiException) as ei:
        v1.list_namespaced_pod(ns, field_selector="spec.unknown=1")
    assert ei.value.status == 400

    t.join(WATCH_TIMEOUT + 2)
    # the pod starts matching the selector: the watch sees it ADDED (upstream cacher semantics)
    assert [(typ, o["metadata"]["name"], o["spec"]["nodeName"]) for typ, o in got] == [("ADDED", "p1", "node-a")]

    # graceful deletion of a bound pod sets deletionTimestamp; gracePeriodSeconds=0 removes it
    st = v1.delete_namespaced_pod("p2", ns, grace_period_seconds=0)
    assert st.metadata.name == "p2"
    with pytest.raises(k8s.ApiException) as ei:
        v1.read_namespaced_pod("p2", ns)
    assert ei.value.status == 404


def test_services(api, ns):
    v1 = k8s.CoreV1Api(api)
    svc = v1.create_namespaced_service(ns, {"metadata": {"name": "web"},
                                            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})
    assert svc.spec.type == "ClusterIP" and svc.spec.cluster_ip and svc.spec.cluster_ips == [svc.spec.cluster_ip]
    assert svc.spec.ports[0].protocol == "TCP" and svc.spec.ports[0].target_port == 80
    assert svc.spec.session_affinity == "None"
    p = v1.patch_namespaced_service("web", ns, {"spec": {"ports": [{"port": 80, "targetPort": 8080}]}})
    assert [(q.port, q.target_port) for q in p.spec.ports] == [(80, 8080)]
    assert p.spec.cluster_ip == svc.spec.cluster_ip
    # clusterIP is immutable
    with pytest.raises(k8s.ApiException) as ei:
        v1.patch_namespaced_service("web", ns, {"spec": {"clusterIP": "10.96.0.99"}})
    assert ei.value.status == 422
    assert json.loads(ei.value.body)["details"]["causes"] == [{
        "reason": "FieldValueInvalid", "field": "spec.clusterIPs[0]",
        "message": 'Invalid value: []string{"10.96.0.99"}: may not change once set'}]
    lst = v1.list_namespaced_service(ns, field_selector="spec.type=ClusterIP")
    assert [s.metadata.name for s in lst.items] == ["web"]
    # services are ReturnDeletedObject upstream: the delete answers the Service itself
    gone = v1.delete_namespaced_service("web", ns)
    assert gone.kind == "Service" and gone.metadata.uid == svc.metadata.uid
    with pytest.raises(k8s.ApiException) as ei:
        v1.read_namespaced_service("web", ns)
    assert ei.value.status == 404


def _deployment(name: str, replicas: int = 1) -> dict:
    return {"metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}}}


def test_deployments_scale_and_status(api, ns):
    apps = k8s.AppsV1Api(api)
    d = apps.create_namespaced_deployment(ns, _deployment("web", 2))
    assert d.metadata.generation == 1
    assert d.spec.strategy.type == "RollingUpdate"
    assert d.spec.revision_history_limit == 10 and d.spec.progress_deadline_seconds == 600

    sc = apps.read_namespaced_deployment_scale("web", ns)
    assert sc.kind == "Scale" and sc.api_version == "autoscaling/v1"
    assert sc.spec.replicas == 2 and sc.status.selector == "app=web"
    sc2 = apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 5}})
    assert sc2.spec.replicas == 5
    d2 = apps.read_namespaced_deployment("web", ns)
    assert d2.spec.replicas == 5 and d2.metadata.generation == 2
    sc2.spec.replicas = 3
    assert apps.replace_namespaced_deployment_scale("web", ns, sc2).spec.replicas == 3

    # status: only the status subresource writes status; it does not bump generation
    st = apps.patch_namespaced_deployment_status("web", ns, {"status": {"replicas": 3, "readyReplicas": 1,
                                                                       "observedGeneration": 3}})
    assert st.status.ready_replicas == 1 and st.metadata.generation == 3 and st.spec.replicas == 3
    ignored = apps.patch_namespaced_deployment("web", ns, {"status": {"readyReplicas": 2}})
    assert ignored.status.ready_replicas == 1
    cur = apps.read_namespaced_deployment_status("web", ns)
    cur.status.available_replicas = 1
    cur.spec.replicas = 9    # ignored by the status subresource
    rep = apps.replace_namespaced_deployment_status("web", ns, cur)
    assert rep.status.available_replicas == 1 and rep.spec.replicas == 3

    # a selector that does not match the template labels is rejected (422)
    bad = _deployment("bad")
    bad["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    with pytest.raises(k8s.ApiException) as ei:
        apps.create_namespaced_deployment(ns, bad)
    assert ei.value.status == 422 and "`selector` does not match template `labels`" in ei.value.body
    lst = apps.list_namespaced_deployment(ns)
    assert [x.metadata.name for x in lst.items] == ["web"]
    apps.delete_namespaced_deployment("web", ns)
    with pytest.raises(k8s.ApiException) as ei:
        apps.read_namespaced_deployment_scale("web", ns)
    assert ei.value.status == 404


# --- a CRD for the custom-object clients ---------------------------------------------------

GROUP = "kp.example.com"


def _crd_body(plural: str, kind: str) -> dict:
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP, "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind, "listKind": kind + "List"},
            "versions": [{
                "name": "v1", "served": True, "storage": True,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {"type": "object", "properties": {
                            "size": {"type": "integer", "minimum": 1, "default": 1},
                            "color": {"type": "string"}}},
                        "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
                    }}},
            }],
        },
    }


def _ensure_crd(api_client: k8s.ApiClient, plural: str, kind: str) -> None:
    ext = k8s.ApiextensionsV1Api(api_client)
    try:
        ext.create_custom_resource_definition(_crd_body(plural, kind))
    except k8s.ApiException as e:
        if e.status != 409:
            raise

    def established() -> bool:
        crd = ext.read_custom_resource_definition(f"{plural}.{GROUP}")
        return any(c.type == "Established" and c.status == "True" for c in (crd.status.conditions or []))
    _wait_for(established, what="CRD Established")


@pytest.fixture(scope="module")
def widgets(api) -> str:
    _ensure_crd(api, "widgets", "Widget")
    return "widgets"


def test_custom_objects(api, ns, widgets):
    co = k8s.CustomObjectsApi(api)
    obj = co.create_namespaced_custom_object(GROUP, "v1", ns, widgets, {
        "apiVersion": f"{GROUP}/v1", "kind": "Widget", "metadata": {"name": "w1", "labels": {"t": "a"}},
        "spec": {"color": "red", "junk": 1}})
    assert obj["spec"] == {"color": "red", "size": 1}    # pruned and defaulted
    assert obj["metadata"]["generation"] == 1
    with pytest.raises(k8s.ApiException) as ei:
        co.create_namespaced_custom_object(GROUP, "v1", ns, widgets, {
            "apiVersion": f"{GROUP}/v1", "kind": "Widget", "metadata": {"name": "w1"}})
    assert ei.value.status == 409
    with pytest.raises(k8s.ApiException) as ei:
        co.create_namespaced_custom_object(GROUP, "v1", ns, widgets, {
            "apiVersion": f"{GROUP}/v1", "kind": "Widget", "metadata": {"name": "w0"}, "spec": {"size": 0}})
    assert ei.value.status == 422 and "spec.size" in ei.value.body

    got = co.get_namespaced_custom_object(GROUP, "v1", ns, widgets, "w1")
    assert got["metadata"]["uid"] == obj["metadata"]["uid"]
    co.create_namespaced_custom_object(GROUP, "v1", ns, widgets, {
        "apiVersion": f"{GROUP}/v1", "kind": "Widget", "metadata": {"name": "w2", "labels": {"t": "b"}}})
    lst = co.list_namespaced_custom_object(GROUP, "v1", ns, widgets, label_selector="t=b")
    assert lst["kind"] == "WidgetList" and [i["metadata"]["name"] for i in lst["items"]] == ["w2"]
    allns = co.list_cluster_custom_object(GROUP, "v1", widgets, label_selector="t")
    assert {i["metadata"]["name"] for i in allns["items"] if i["metadata"]["namespace"] == ns} == {"w1", "w2"}

    # merge patch (the client sends application/merge-patch+json for custom objects)
    p = co.patch_namespaced_custom_object(GROUP, "v1", ns, widgets, "w1", {"spec": {"size": 3, "color": None}})
    assert p["spec"] == {"size": 3} and p["metadata"]["generation"] == 2
    s = co.patch_namespaced_custom_object_status(GROUP, "v1", ns, widgets, "w1", {"status": {"phase": "Ready"}})
    assert s["status"] == {"phase": "Ready"} and s["metadata"]["generation"] == 2
    got = co.get_namespaced_custom_object(GROUP, "v1", ns, widgets, "w1")
    got["spec"]["size"] = 4
    got["status"] = {"phase": "ignored"}
    r = co.replace_namespaced_custom_object(GROUP, "v1", ns, widgets, "w1", got)
    assert r["spec"]["size"] == 4 and r["status"] == {"phase": "Ready"}

    co.delete_namespaced_custom_object(GROUP, "v1", ns, widgets, "w1")
    with pytest.raises(k8s.ApiException) as ei:
        co.get_namespaced_custom_object(GROUP, "v1", ns, widgets, "w1")
    assert ei.value.status == 404 and f'widgets.{GROUP} \\"w1\\" not found' in ei.value.body.replace('\\\\', '\\')


def test_dynamic_client(api, ns, widgets):
    from kubernetes.dynamic import DynamicClient
    from kubernetes.dynamic.exceptions import ConflictError, NotFoundError

    dyn = DynamicClient(api)
    cms = dyn.resources.get(api_version="v1", kind="ConfigMap")
    assert cms.namespaced and cms.name == "configmaps"
    created = cms.create(namespace=ns, body={"metadata": {"name": "d1"}, "data": {"a": "1"}})
    assert created.metadata.name == "d1" and created.data.a == "1"
    with pytest.raises(ConflictError):
        cms.create(namespace=ns, body={"metadata": {"name": "d1"}})
    got = cms.get(namespace=ns, name="d1")
    assert got.metadata.uid == created.metadata.uid
    patched = cms.patch(namespace=ns, name="d1", body={"data": {"b": "2"}},
                        content_type="application/merge-patch+json")
    assert dict(patched.data) == {"a": "1", "b": "2"}
    lst = cms.get(namespace=ns)
    assert lst.kind == "ConfigMapList" and [i.metadata.name for i in lst.items] == ["d1"]

    deps = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    deps.create(namespace=ns, body=_deployment("dd", 1))
    scale = deps.subresources["scale"]
    assert scale.get(namespace=ns, name="dd").spec.replicas == 1

    wid = dyn.resources.get(api_version=f"{GROUP}/v1", kind="Widget")
    assert wid.name == "widgets" and "status" in wid.subresources
    w = wid.create(namespace=ns, body={"apiVersion": f"{GROUP}/v1", "kind": "Widget", "metadata": {"name": "dw"},
                             "spec": {}})
    assert w.spec.size == 1
    wid.status.patch(namespace=ns, name="dw", body={"status": {"phase": "P"}},
                     content_type="application/merge-patch+json")
    assert wid.get(namespace=ns, name="dw").status.phase == "P"
    wid.delete(namespace=ns, name="dw")
    with pytest.raises(NotFoundError):
        wid.get(namespace=ns, name="dw")
    cms.delete(namespace=ns, name="d1")
    with pytest.raises(NotFoundError):
        cms.get(namespace=ns, name="d1")

    # server-side apply through the dynamic client, then through the typed client's apply-patch
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa", "namespace": ns}, "data": {"a": "1"}}
    r = cms.server_side_apply(body=body, namespace=ns, field_manager="dyn")
    assert dict(r.data) == {"a": "1"}
    assert [(m.manager, m.operation) for m in r.metadata.managedFields] == [("dyn", "Apply")]
    r2 = k8s.CoreV1Api(api).patch_namespaced_config_map(
        "ssa", ns, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"b": "2"}},
        field_manager="typed", _content_type="application/apply-patch+yaml")
    assert r2.data == {"a": "1", "b": "2"}    # "a" stays: "dyn" still owns it
    with pytest.raises(ConflictError):
        cms.server_side_apply(body={**body, "data": {"b": "3"}}, namespace=ns, field_manager="dyn")


def test_watch_stream_resume_and_selectors(api, ns):
    v1 = k8s.CoreV1Api(api)
    first = v1.create_namespaced_config_map(ns, {"metadata": {"name": "w1", "labels": {"tier": "a"}}})
    rv0 = first.metadata.resource_version

    # without a resourceVersion: the current state as ADDED, then changes
    w = k8s_watch.Watch()
    got: list = []
    t = _in_thread(lambda: _events(w, w.stream(v1.list_namespaced_config_map, ns, timeout_seconds=WATCH_TIMEOUT),
                                   3, out=got))
    _wait_for(lambda: got, what="initial ADDED")
    v1.create_namespaced_config_map(ns, {"metadata": {"name": "w2", "labels": {"tier": "b"}}})
    v1.patch_namespaced_config_map("w1", ns, {"data": {"x": "1"}})
    t.join(WATCH_TIMEOUT + 2)
    assert [(e, o["metadata"]["name"]) for e, o in got] == [("ADDED", "w1"), ("ADDED", "w2"), ("MODIFIED", "w1")]
    assert got[2][1]["data"] == {"x": "1"}
    # Watch.stream keeps the last seen resourceVersion for resuming
    assert w.resource_version == got[2][1]["metadata"]["resourceVersion"]
    rv_mod = w.resource_version

    v1.delete_namespaced_config_map("w2", ns)
    v1.create_namespaced_config_map(ns, {"metadata": {"name": "w3", "labels": {"tier": "a"}}})

    # resume from rv0: every change after it, in order, nothing from before
    w2 = k8s_watch.Watch()
    ev = _events(w2, w2.stream(v1.list_namespaced_config_map, ns, resource_version=rv0,
                               timeout_seconds=WATCH_TIMEOUT), 4)
    assert [(e, o["metadata"]["name"]) for e, o in ev] == [
        ("ADDED", "w2"), ("MODIFIED", "w1"), ("DELETED", "w2"), ("ADDED", "w3")]
    rvs = [int(o["metadata"]["resourceVersion"]) for _, o in ev]
    assert rvs == sorted(rvs) and rvs[0] > int(rv0)

    # resume from the MODIFIED with a label selector: only tier=a
    w3 = k8s_watch.Watch()
    ev = _events(w3, w3.stream(v1.list_namespaced_config_map, ns, resource_version=rv_mod, label_selector="tier=a",
                               timeout_seconds=WATCH_TIMEOUT), 1)
    assert [(e, o["metadata"]["name"]) for e, o in ev] == [("ADDED", "w3")]

    # a label change moves an object out of a selector's view: DELETED for that watcher, carrying
    # the previous content at the change's resourceVersion (upstream's cacheWatcher)
    w4 = k8s_watch.Watch()
    got4: list = []
    t = _in_thread(lambda: got4.extend(_events(w4, w4.stream(
        v1.list_namespaced_config_map, ns, label_selector="tier=a", resource_version=v1.list_namespaced_config_map(
            ns).metadata.resource_version, timeout_seconds=WATCH_TIMEOUT), 2)))
    time.sleep(0.3)
    v1.patch_namespaced_config_map("w3", ns, {"metadata": {"labels": {"tier": "c"}}})
    v1.patch_namespaced_config_map("w3", ns, {"metadata": {"labels": {"tier": "a"}}})
    t.join(WATCH_TIMEOUT + 2)
    assert [(e, o["metadata"]["name"], o["metadata"]["labels"]["tier"]) for e, o in got4] == [
        ("DELETED", "w3", "a"), ("ADDED", "w3", "a")]

    # allowWatchBookmarks: a BOOKMARK (resourceVersion only) before the server-side timeout;
    # (kubernetes.watch.Watch resumes from a bookmark's resourceVersion)
    t0 = time.monotonic()
    r = v1.list_namespaced_config_map(ns, allow_watch_bookmarks=True, watch=True, timeout_seconds=1,
                                      resource_version=rv_mod, label_selector="tier=none", _preload_content=False)
    lines = [json.loads(x) for x in r.data.splitlines() if x.strip()]
    assert [x["type"] for x in lines] == ["BOOKMARK"]
    bm = lines[0]["object"]
    assert bm["kind"] == "ConfigMap" and bm["apiVersion"] == "v1" and list(bm["metadata"]) == ["resourceVersion"]
    assert int(bm["metadata"]["resourceVersion"]) >= int(rv_mod)
    assert time.monotonic() - t0 < 5    # the server-side timeout ended the stream


# =========================================================================================
# kr8s (async API; it sends URLs with trailing slashes)
# =========================================================================================

async def _kr8s_api(server):
    kr8s = pytest.importorskip("kr8s")
    import kr8s.asyncio

    api = await kr8s.asyncio.api(kubeconfig=server.kubeconfig)
    assert str(api.auth.server).startswith("https://")
    return kr8s, api


async def _collect(agen, want: int, timeout: float = WATCH_TIMEOUT) -> list:
    out: list = []

    async def run() -> None:
        async for item in agen:
            out.append(item)
            if len(out) >= want:
                break
    try:
        await asyncio.wait_for(run(), timeout)
    finally:
        await agen.aclose()    # closes the HTTP stream while the loop still runs
    return out


async def test_kr8s_objects(server, ns):
    kr8s, api = await _kr8s_api(server)
    from kr8s.asyncio.objects import ConfigMap, Deployment, Pod

    cm = await ConfigMap({"metadata": {"name": "k1", "namespace": ns, "labels": {"app": "k"}}, "data": {"a": "1"}},
                         api=api)
    await cm.create()
    assert cm.metadata.uid and cm.raw["data"] == {"a": "1"}
    assert await cm.exists()
    got = await ConfigMap.get("k1", namespace=ns, api=api)
    assert got.metadata.uid == cm.metadata.uid
    await cm.patch({"data": {"b": "2"}})
    assert cm.raw["data"] == {"a": "1", "b": "2"}
    await cm.patch([{"op": "replace", "path": "/data/a", "value": "9"}], type="json")
    assert cm.raw["data"] == {"a": "9", "b": "2"}
    await cm.label({"extra": "yes"})
    await cm.refresh()
    assert cm.labels == {"app": "k", "extra": "yes"}

    await (await ConfigMap({"metadata": {"name": "k2", "namespace": ns, "labels": {"app": "other"}}}, api=api)).create()
    names = [o.name async for o in api.async_get("configmaps", namespace=ns, label_selector={"app": "k"})]
    assert names == ["k1"]
    names = sorted([o.name async for o in api.async_get("configmaps", namespace=ns, label_selector="app")])
    assert names == ["k1", "k2"]
    names = [o.name async for o in api.async_get("configmaps", namespace=ns, field_selector="metadata.name=k2")]
    assert names == ["k2"]
    with pytest.raises(kr8s.NotFoundError):
        await ConfigMap.get("nope", namespace=ns, api=api, timeout=0)   # (kr8s retries until timeout)

    # a duplicate create: kr8s raises ServerError carrying the 409 Status
    with pytest.raises(kr8s.ServerError) as ei:
        await (await ConfigMap({"metadata": {"name": "k1", "namespace": ns}}, api=api)).create()
    assert ei.value.response.status_code == 409 and ei.value.status["reason"] == "AlreadyExists"

    # scale through the scale subresource
    dep = await Deployment({"metadata": {"name": "kd", "namespace": ns}, **{"spec": _deployment("kd", 1)["spec"]}},
                           api=api)
    await dep.create()
    await dep.scale(4)
    await dep.refresh()
    assert dep.replicas == 4

    # pods: create, status patch through the subresource, delete with grace period 0
    pod = await Pod({"metadata": {"name": "kp", "namespace": ns},
                     "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}}, api=api)
    await pod.create()
    assert pod.raw["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    await pod.patch({"status": {"phase": "Running"}}, subresource="status")
    await pod.refresh()
    assert pod.status.phase == "Running"
    await pod.delete(grace_period=0)
    assert not await pod.exists()

    await cm.delete()
    assert not await cm.exists()


async def test_kr8s_watch(server, ns):
    kr8s, api = await _kr8s_api(server)
    from kr8s.asyncio.objects import ConfigMap

    first = await ConfigMap({"metadata": {"name": "kw0", "namespace": ns}}, api=api)
    await first.create()
    since = first.metadata.resourceVersion

    async def writes() -> None:
        await asyncio.sleep(0.2)
        c = await ConfigMap({"metadata": {"name": "kw1", "namespace": ns, "labels": {"w": "y"}}}, api=api)
        await c.create()
        await c.patch({"data": {"x": "1"}})
        await c.delete()

    task = asyncio.ensure_future(writes())
    events = await _collect(api.async_watch("configmaps", namespace=ns, label_selector={"w": "y"}, since=since), 3)
    await task
    assert [(t, o.name) for t, o in events] == [("ADDED", "kw1"), ("MODIFIED", "kw1"), ("DELETED", "kw1")]
    assert events[1][1].raw["data"] == {"x": "1"}
    assert all(isinstance(o, ConfigMap) for _, o in events)


# =========================================================================================
# lightkube (sync and async; server-side apply with field managers)
# =========================================================================================

@pytest.fixture(scope="module")
def lk(server):
    lightkube = pytest.importorskip("lightkube")
    from lightkube import KubeConfig

    c = lightkube.Client(config=KubeConfig.from_file(server.kubeconfig), field_manager="lk-test")
    yield c
    c.close() if hasattr(c, "close") else None


def test_lightkube_sync(lk, ns):
    from lightkube import ApiError
    from lightkube.models.meta_v1 import ObjectMeta
    from lightkube.resources.apps_v1 import Deployment
    from lightkube.resources.core_v1 import ConfigMap

    cm = lk.create(ConfigMap(metadata=ObjectMeta(name="l1", namespace=ns, labels={"app": "l"}), data={"a": "1"}))
    assert cm.metadata.uid and cm.data == {"a": "1"}
    mf = cm.metadata.managedFields
    assert [(m.manager, m.operation) for m in mf] == [("lk-test", "Update")]
    assert lk.get(ConfigMap, "l1", namespace=ns).metadata.uid == cm.metadata.uid
    lk.create(ConfigMap(metadata=ObjectMeta(name="l2", namespace=ns)))
    assert [c.metadata.name for c in lk.list(ConfigMap, namespace=ns, labels={"app": "l"})] == ["l1"]
    assert sorted(c.metadata.name for c in lk.list(ConfigMap, namespace=ns)) == ["l1", "l2"]
    assert [c.metadata.name for c in lk.list(ConfigMap, namespace=ns, fields={"metadata.name": "l2"})] == ["l2"]
    # chunked list: limit + continue
    assert sorted(c.metadata.name for c in lk.list(ConfigMap, namespace=ns, chunk_size=1)) == ["l1", "l2"]

    with pytest.raises(ApiError) as ei:
        lk.get(ConfigMap, "nope", namespace=ns)
    assert ei.value.status.code == 404 and ei.value.status.reason == "NotFound"
    with pytest.raises(ApiError) as ei:
        lk.create(ConfigMap(metadata=ObjectMeta(name="l1", namespace=ns)))
    assert ei.value.status.code == 409 and ei.value.status.reason == "AlreadyExists"

    p = lk.patch(ConfigMap, "l1", {"data": {"b": "2"}}, namespace=ns)
    assert p.data == {"a": "1", "b": "2"}

    dep = lk.create(Deployment.from_dict({"apiVersion": "apps/v1", "kind": "Deployment",
                                          "metadata": {"name": "ld", "namespace": ns}, **{"spec": _deployment(
                                              "ld", 2)["spec"]}}))
    sc = lk.get(Deployment.Scale, "ld", namespace=ns)
    assert sc.spec.replicas == 2 and sc.status.selector == "app=ld"
    assert dep.spec.replicas == 2

    # watch from the list's resourceVersion
    rv = lk.get(ConfigMap, "l1", namespace=ns).metadata.resourceVersion   # the last configmap write
    lk.delete(ConfigMap, "l2", namespace=ns)
    seen = []
    for typ, obj in lk.watch(ConfigMap, namespace=ns, resource_version=rv, server_timeout=WATCH_TIMEOUT):
        seen.append((typ, obj.metadata.name))
        break
    assert seen == [("DELETED", "l2")]


def test_lightkube_server_side_apply(lk, ns):
    from lightkube import ApiError
    from lightkube.models.meta_v1 import ObjectMeta
    from lightkube.resources.core_v1 import ConfigMap

    def cm(**data: str) -> ConfigMap:
        return ConfigMap(apiVersion="v1", kind="ConfigMap", metadata=ObjectMeta(name="ssa", namespace=ns), data=data)

    a = lk.apply(cm(owner="a", shared="a"), field_manager="mgr-a")
    assert a.data == {"owner": "a", "shared": "a"}
    assert [(m.manager, m.operation) for m in a.metadata.managedFields] == [("mgr-a", "Apply")]
    assert a.metadata.managedFields[0].fieldsV1 == {"f:data": {"f:owner": {}, "f:shared": {}}}

    # a second manager setting a field owned by the first with another value: 409 Conflict
    with pytest.raises(ApiError) as ei:
        lk.apply(cm(shared="b", mine="b"), field_manager="mgr-b")
    st = ei.value.status
    assert st.code == 409 and st.reason == "Conflict"
    assert st.message == 'Apply failed with 1 conflict: conflict with "mgr-a": .data.shared'
    assert [(c.reason, c.field) for c in st.details.causes] == [("FieldManagerConflict", ".data.shared")]
    assert lk.get(ConfigMap, "ssa", namespace=ns).data == {"owner": "a", "shared": "a"}

    # force=True takes the field over
    b = lk.apply(cm(shared="b", mine="b"), field_manager="mgr-b", force=True)
    assert b.data == {"owner": "a", "shared": "b", "mine": "b"}
    owners = {m.manager: m.fieldsV1 for m in b.metadata.managedFields}
    assert owners == {"mgr-a": {"f:data": {"f:owner": {}}}, "mgr-b": {"f:data": {"f:mine": {}, "f:shared": {}}}}

    # same value from two managers is shared ownership, not a conflict
    c = lk.apply(cm(owner="a"), field_manager="mgr-c")
    assert c.data["owner"] == "a"
    # a manager dropping a field it alone owns removes it
    d = lk.apply(cm(shared="b"), field_manager="mgr-b")
    assert d.data == {"owner": "a", "shared": "b"}

    # apply without a field manager: lightkube sends the client default (field_manager="lk-test")
    e = lk.apply(cm(other="x"))
    assert "other" in e.data


async def test_lightkube_async(server, ns):
    lightkube = pytest.importorskip("lightkube")
    from lightkube import ApiError, KubeConfig
    from lightkube.models.meta_v1 import ObjectMeta
    from lightkube.resources.core_v1 import ConfigMap

    c = lightkube.AsyncClient(config=KubeConfig.from_file(server.kubeconfig))
    try:
        rv = (await c.create(ConfigMap(metadata=ObjectMeta(name="a0", namespace=ns)))).metadata.resourceVersion

        async def writes() -> None:
            await asyncio.sleep(0.2)
            await c.create(ConfigMap(metadata=ObjectMeta(name="a1", namespace=ns, labels={"k": "v"})))
            await c.apply(ConfigMap(apiVersion="v1", kind="ConfigMap", metadata=ObjectMeta(
                name="a1", namespace=ns, labels={"k": "v"}), data={"x": "1"}), field_manager="am")
            await c.delete(ConfigMap, "a1", namespace=ns)

        task = asyncio.ensure_future(writes())
        events = await _collect(c.watch(ConfigMap, namespace=ns, labels={"k": "v"}, resource_version=rv,
                                        server_timeout=WATCH_TIMEOUT), 3)
        await task
        assert [(t, o.metadata.name) for t, o in events] == [("ADDED", "a1"), ("MODIFIED", "a1"), ("DELETED", "a1")]
        assert events[1][1].data == {"x": "1"}
        got = [o.metadata.name async for o in c.list(ConfigMap, namespace=ns)]
        assert got == ["a0"]
        with pytest.raises(ApiError) as ei:
            await c.get(ConfigMap, "a1", namespace=ns)
        assert ei.value.status.code == 404
    finally:
        await c.close()


def test_lightkube_generic_resource_apply(lk, ns, widgets):
    """Server-side apply of a custom resource: the schema default is in the object, but the
    applier owns only the fields it sent (upstream defaults after the field manager)."""
    from lightkube import ApiError
    from lightkube.generic_resource import create_namespaced_resource
    from lightkube.types import PatchType

    Widget = create_namespaced_resource(GROUP, "v1", "Widget", widgets)
    w = lk.apply(Widget(metadata={"name": "gw", "namespace": ns}, spec={"color": "red"}), field_manager="gen")
    assert w.spec == {"color": "red", "size": 1}
    assert [(m.manager, m.operation, m.fieldsV1) for m in w.metadata.managedFields] == [
        ("gen", "Apply", {"f:spec": {"f:color": {}}})]
    w = lk.apply(Widget(metadata={"name": "gw", "namespace": ns}, spec={"color": "red", "size": 2}),
                 field_manager="gen")
    assert w.spec == {"color": "red", "size": 2} and w.metadata.generation == 2
    s = lk.patch(Widget.Status, "gw", {"status": {"phase": "On"}}, namespace=ns, patch_type=PatchType.MERGE)
    assert s.status == {"phase": "On"} and s.metadata.generation == 2
    with pytest.raises(ApiError) as ei:
        lk.apply(Widget(metadata={"name": "gw", "namespace": ns}, spec={"size": 0}), field_manager="other")
    assert ei.value.status.code == 409   # the conflict (with "gen") is found before validation, as upstream
    assert [x.metadata.name for x in lk.list(Widget, namespace=ns)] == ["gw"]
    lk.delete(Widget, "gw", namespace=ns)
    with pytest.raises(ApiError) as ei:
        lk.get(Widget, "gw", namespace=ns)
    assert ei.value.status.code == 404
