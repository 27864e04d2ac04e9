"""A ReplicaSet on its own against a real server: pods from its template with a
controller reference, status counters, adoption of a matching orphan (and the upstream
deletion order removing the unscheduled one first), release of a pod whose labels stop
matching."""
from __future__ import annotations

from ctrl_cluster import get, items, new_namespace, owned_by, wait_for


def replicaset(name: str, replicas: int) -> dict:
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name, "extra": "x"}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}


def test_replicaset_pods_status_adoption_release(cluster):
    ns = new_namespace(cluster, "rs")
    r = cluster.call("POST", f"/apis/apps/v1/namespaces/{ns}/replicasets", replicaset("r", 3))
    assert r.status == 201, r.body
    rs = r.json
    uid = rs["metadata"]["uid"]
    pods_path = f"/api/v1/namespaces/{ns}/pods"

    def status_is(**want):
        def check():
            st = get(cluster, f"/apis/apps/v1/namespaces/{ns}/replicasets/r").get("status") or {}
            return all(st.get(k) == v for k, v in want.items())
        return check
    wait_for(status_is(replicas=3, fullyLabeledReplicas=3, readyReplicas=3, availableReplicas=3,
                       observedGeneration=1), 30, what="status counters")
    pods = owned_by(items(cluster, pods_path), uid)
    assert len(pods) == 3
    for p in pods:
        assert p["metadata"]["generateName"] == "r-" and p["metadata"]["labels"] == {"app": "r", "extra": "x"}
        [ref] = p["metadata"]["ownerReferences"]
        assert (ref["apiVersion"], ref["kind"], ref["name"], ref["controller"], ref["blockOwnerDeletion"]) == \
            ("apps/v1", "ReplicaSet", "r", True, True)

    # an orphan that matches (and is never scheduled) is adopted; one pod too many: the
    # unassigned one goes first (upstream's ranking)
    orphan = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "orphan", "labels": {"app": "r"}},
              "spec": {"schedulerName": "nobody", "containers": [{"name": "c", "image": "nginx"}]}}
    assert cluster.call("POST", pods_path, orphan).status == 201

    def orphan_adopted_and_deleted():
        p = get(cluster, f"{pods_path}/orphan")
        return p is None or p["metadata"].get("deletionTimestamp")
    wait_for(orphan_adopted_and_deleted, 20, what="the adopted extra pod deleted")
    assert sorted(p["metadata"]["name"] for p in owned_by(items(cluster, pods_path), uid)
                  if not p["metadata"].get("deletionTimestamp")) == sorted(p["metadata"]["name"] for p in pods)
    ev = items(cluster, f"/api/v1/namespaces/{ns}/events")
    assert any(e["reason"] == "SuccessfulDelete" and e["message"] == "Deleted pod: orphan" for e in ev), \
        [(e["reason"], e["message"]) for e in ev]
    assert sum(e.get("count", 1) for e in ev if e["reason"] == "SuccessfulCreate") >= 3

    # a pod whose labels stop matching is released and replaced
    victim = pods[0]["metadata"]["name"]
    r = cluster.call("PATCH", f"{pods_path}/{victim}", {"metadata": {"labels": {"app": "elsewhere"}}},
                     content_type="application/merge-patch+json")
    assert r.status == 200, r.body
    wait_for(lambda: not (get(cluster, f"{pods_path}/{victim}")["metadata"].get("ownerReferences")), 20,
             what="the pod released")
    wait_for(lambda: len([p for p in owned_by(items(cluster, pods_path), uid)
                          if not p["metadata"].get("deletionTimestamp")]) == 3, 20, what="a replacement")
    wait_for(status_is(replicas=3, readyReplicas=3), 30, what="status after release")

    # scale down to 1 through the scale subresource
    r = cluster.call("PATCH", f"/apis/apps/v1/namespaces/{ns}/replicasets/r/scale", {"spec": {"replicas": 1}},
                     content_type="application/merge-patch+json")
    assert r.status == 200, r.body
    wait_for(status_is(replicas=1, observedGeneration=2), 20, what="scaled down")
