"""The garbage collector's absent-owner rule: a dependent whose owners are all gone is
deleted (as after an owner deleted while kubeplane was down, or a server stopped before
its cascade ran); a dependent with one absent and one live owner loses only the dangling
reference; a dependent of a live owner, and one whose owner kind is unknown, stay."""
from __future__ import annotations

import time
import uuid

from ctrl_cluster import get, new_namespace, wait_for


def cm(name: str, owners: list[dict] | None = None) -> dict:
    md: dict = {"name": name}
    if owners:
        md["ownerReferences"] = owners
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": md, "data": {"k": "v"}}


def ref(kind: str, name: str, uid: str, api_version: str = "v1") -> dict:
    return {"apiVersion": api_version, "kind": kind, "name": name, "uid": uid}


def test_dependents_of_absent_owners(cluster):
    ns = new_namespace(cluster, "gc")
    base = f"/api/v1/namespaces/{ns}/configmaps"
    owner = cluster.call("POST", base, cm("owner")).json
    live = ref("ConfigMap", "owner", owner["metadata"]["uid"])
    gone = ref("ConfigMap", "was-here", str(uuid.uuid4()))          # an owner that no longer exists
    replaced = ref("ConfigMap", "owner", str(uuid.uuid4()))         # same name, another uid: also absent
    unknown = ref("Widget", "w", str(uuid.uuid4()), "example.com/v1")
    for name, owners in (("orphaned", [gone]), ("replaced", [replaced]), ("half", [live, gone]),
                         ("kept", [live]), ("unknown-kind", [unknown])):
        r = cluster.call("POST", base, cm(name, owners))
        assert r.status == 201, r.body
    # a pod whose ReplicaSet is gone
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "lost", "ownerReferences": [{**ref("ReplicaSet", "rs-gone", str(uuid.uuid4()),
                                                                    "apps/v1"), "controller": True}]},
           "spec": {"schedulerName": "nobody", "containers": [{"name": "c", "image": "nginx"}]}}
    assert cluster.call("POST", f"/api/v1/namespaces/{ns}/pods", pod).status == 201

    wait_for(lambda: get(cluster, f"{base}/orphaned") is None, 20, what="orphaned collected")
    wait_for(lambda: get(cluster, f"{base}/replaced") is None, 20, what="replaced-owner dependent collected")
    wait_for(lambda: [r["uid"] for r in get(cluster, f"{base}/half")["metadata"]["ownerReferences"]]
             == [owner["metadata"]["uid"]], 20, what="the dangling reference removed")
    wait_for(lambda: (get(cluster, f"/api/v1/namespaces/{ns}/pods/lost") or {"metadata": {"deletionTimestamp": 1}})
             ["metadata"].get("deletionTimestamp"), 20, what="the pod of a gone ReplicaSet deleted")
    time.sleep(0.5)
    assert get(cluster, f"{base}/kept") is not None
    assert get(cluster, f"{base}/unknown-kind") is not None
