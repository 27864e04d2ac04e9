"""Deployment semantics against a real server: Recreate never overlaps old and new pods,
pause/resume conditions, progressDeadlineSeconds (and `kubectl rollout status` failing
on it), revisionHistoryLimit, adoption of a matching orphan ReplicaSet."""
from __future__ import annotations

import os
import subprocess
import time

from ctrl_cluster import condition, deployment, get, items, new_namespace, owned_by, wait_for
from kubectls import kubectl_binary


def create(cluster, ns: str, body: dict) -> dict:
    r = cluster.call("POST", f"/apis/apps/v1/namespaces/{ns}/deployments", body)
    assert r.status == 201, r.body
    return r.json


def patch(cluster, path: str, body: dict) -> dict:
    r = cluster.call("PATCH", path, body, content_type="application/merge-patch+json")
    assert r.status == 200, r.body
    return r.json


def dget(cluster, ns: str, name: str) -> dict:
    return get(cluster, f"/apis/apps/v1/namespaces/{ns}/deployments/{name}")


def rolled_out(cluster, ns: str, name: str, replicas: int):
    def check():
        d = dget(cluster, ns, name)
        st = d.get("status") or {}
        return st.get("observedGeneration") == d["metadata"]["generation"] and \
            st.get("updatedReplicas") == replicas == st.get("availableReplicas") == st.get("replicas")
    return check


def sets(cluster, ns: str) -> list[dict]:
    return items(cluster, f"/apis/apps/v1/namespaces/{ns}/replicasets")


def test_recreate_scales_old_to_zero_before_the_new_set_grows(cluster):
    ns = new_namespace(cluster, "recreate")
    body = deployment("rc", 2, strategy={"type": "Recreate"})
    body["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 1   # old pods go within a second
    create(cluster, ns, body)
    wait_for(rolled_out(cluster, ns, "rc", 2), 30, what="first rollout")
    [old] = sets(cluster, ns)
    patch(cluster, f"/apis/apps/v1/namespaces/{ns}/deployments/rc",
          {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}}})
    saw_wait = False
    overlap = []
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        rss = sets(cluster, ns)
        news = [r for r in rss if r["metadata"]["uid"] != old["metadata"]["uid"]]
        olds = [r for r in rss if r["metadata"]["uid"] == old["metadata"]["uid"]]
        if not news or news[0]["spec"]["replicas"] == 0:
            saw_wait = saw_wait or bool(olds and olds[0]["spec"]["replicas"] == 0)
        if news and news[0]["spec"]["replicas"] > 0:
            running_old = [p for p in owned_by(items(cluster, f"/api/v1/namespaces/{ns}/pods"), old["metadata"]["uid"])
                           if p["status"].get("phase") not in ("Succeeded", "Failed")]
            if running_old or (olds and olds[0]["spec"]["replicas"] > 0):
                overlap.append((len(running_old), olds[0]["spec"]["replicas"] if olds else None))
            if rolled_out(cluster, ns, "rc", 2)():
                break
        time.sleep(0.1)
    assert rolled_out(cluster, ns, "rc", 2)(), "the Recreate rollout did not finish"
    assert overlap == [], f"old pods still existed while the new set had replicas: {overlap}"
    assert saw_wait, "the old set was never seen at 0 before the new set grew"
    assert get(cluster, f"/apis/apps/v1/namespaces/{ns}/replicasets/{old['metadata']['name']}")["spec"]["replicas"] == 0


def test_pause_and_resume(cluster):
    ns = new_namespace(cluster, "pause")
    create(cluster, ns, deployment("p", 2))
    wait_for(rolled_out(cluster, ns, "p", 2), 30, what="first rollout")
    path = f"/apis/apps/v1/namespaces/{ns}/deployments/p"
    patch(cluster, path, {"spec": {"paused": True}})
    wait_for(lambda: condition(dget(cluster, ns, "p"), "Progressing").get("reason") == "DeploymentPaused", 20,
             what="DeploymentPaused")
    c = condition(dget(cluster, ns, "p"), "Progressing")
    assert (c["status"], c["message"]) == ("Unknown", "Deployment is paused")
    d = patch(cluster, path, {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}}})
    wait_for(lambda: dget(cluster, ns, "p")["status"].get("observedGeneration") == d["metadata"]["generation"], 20,
             what="paused deployment observed")
    time.sleep(1.0)
    assert len(sets(cluster, ns)) == 1, "a paused Deployment must not roll out"
    patch(cluster, path, {"spec": {"paused": False}})
    wait_for(lambda: len(sets(cluster, ns)) == 2, 20, what="rollout after resume")
    wait_for(rolled_out(cluster, ns, "p", 2), 40, what="rollout after resume")
    c = condition(dget(cluster, ns, "p"), "Progressing")
    assert (c["status"], c["reason"]) == ("True", "NewReplicaSetAvailable")


def test_progress_deadline_exceeded(cluster):
    ns = new_namespace(cluster, "deadline")
    body = deployment("stuck", 2, progressDeadlineSeconds=2)
    body["spec"]["template"]["spec"]["nodeSelector"] = {"no-such-node": "x"}      # pods stay Pending
    create(cluster, ns, body)
    wait_for(lambda: condition(dget(cluster, ns, "stuck"), "Progressing").get("reason") == "ProgressDeadlineExceeded",
             20, what="ProgressDeadlineExceeded")
    d = dget(cluster, ns, "stuck")
    [rs] = sets(cluster, ns)
    c = condition(d, "Progressing")
    assert (c["status"], c["message"]) == ("False", f'ReplicaSet "{rs["metadata"]["name"]}" has timed out progressing.')
    a = condition(d, "Available")
    assert (a["status"], a["reason"]) == ("False", "MinimumReplicasUnavailable")
    assert d["status"]["unavailableReplicas"] == 2
    binary = kubectl_binary("1.33")
    if binary:
        r = subprocess.run([binary, "-n", ns, "rollout", "status", "deploy/stuck", "--timeout=20s"],
                           capture_output=True, text=True, timeout=30, env={**os.environ, "KUBECONFIG": cluster.kubeconfig})
        assert r.returncode != 0 and 'exceeded its progress deadline' in r.stderr, r.stderr


def test_revision_history_limit(cluster):
    ns = new_namespace(cluster, "history")
    create(cluster, ns, deployment("h", 1, revisionHistoryLimit=1))
    wait_for(rolled_out(cluster, ns, "h", 1), 30, what="first rollout")
    path = f"/apis/apps/v1/namespaces/{ns}/deployments/h"
    for tag in ("2", "3", "4"):
        patch(cluster, path, {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": f"nginx:{tag}"}]}}}})
        wait_for(rolled_out(cluster, ns, "h", 1), 30, what=f"rollout to {tag}")
    wait_for(lambda: len(sets(cluster, ns)) == 2, 20, what="history trimmed to one old set")
    revs = sorted(int(r["metadata"]["annotations"]["deployment.kubernetes.io/revision"]) for r in sets(cluster, ns))
    assert revs == [3, 4]


def test_orphan_replicaset_is_adopted(cluster):
    ns = new_namespace(cluster, "adopt")
    d = deployment("a", 1)
    tmpl = d["spec"]["template"]
    orphan = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
              "metadata": {"name": "a-orphan", "labels": {"app": "a"}},
              "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "a"}}, "template": tmpl}}
    r = cluster.call("POST", f"/apis/apps/v1/namespaces/{ns}/replicasets", orphan)
    assert r.status == 201, r.body
    made = create(cluster, ns, d)
    def adopted():
        rs = get(cluster, f"/apis/apps/v1/namespaces/{ns}/replicasets/a-orphan")
        return [o for o in rs["metadata"].get("ownerReferences") or () if o["uid"] == made["metadata"]["uid"]]
    [ref] = wait_for(adopted, 20, what="the orphan set adopted")
    assert ref["controller"] is True and ref["blockOwnerDeletion"] is True
    wait_for(rolled_out(cluster, ns, "a", 1), 30, what="rollout with the adopted set")
    # the adopted set's template equals the Deployment's (apart from the hash): it is the new set
    assert len(sets(cluster, ns)) == 1
