"""kubectl 1.31 and 1.33 against kubeplane with its controller manager (and two hollow
nodes that run the pods): create deployment, rollout status, set image, rollout undo,
rollout history, scale, wait --for=condition=Available, and a cascading delete."""
from __future__ import annotations

import os
import subprocess

import pytest

from ctrl_cluster import get, items, new_namespace, owned_by, wait_for
from kubectls import kubectl_binary


def kubectl(cluster, version: str, *args: str, timeout: float = 60) -> str:
    binary = kubectl_binary(version)
    if binary is None:
        pytest.skip(f"kubectl {version} is not installed")
    r = subprocess.run([binary, *args], capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, "KUBECONFIG": cluster.kubeconfig})
    assert r.returncode == 0, f"kubectl {' '.join(args)}: {r.stderr}"
    return r.stdout


@pytest.mark.parametrize("version", ["1.31", "1.33"])
def test_deployment_lifecycle_with_kubectl(cluster, version):
    ns = new_namespace(cluster, "kubectl")
    k = lambda *a, **kw: kubectl(cluster, version, "-n", ns, *a, **kw)   # noqa: E731
    k("create", "deployment", "web", "--image=nginx:1", "--replicas=3")
    out = k("rollout", "status", "deploy/web", "--timeout=60s")
    assert 'deployment "web" successfully rolled out' in out
    d = get(cluster, f"/apis/apps/v1/namespaces/{ns}/deployments/web")
    st = d["status"]
    assert (st["replicas"], st["updatedReplicas"], st["readyReplicas"], st["availableReplicas"]) == (3, 3, 3, 3)
    assert st["observedGeneration"] == d["metadata"]["generation"]
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    [rs1] = items(cluster, f"/apis/apps/v1/namespaces/{ns}/replicasets")
    h1 = rs1["metadata"]["labels"]["pod-template-hash"]
    assert rs1["metadata"]["name"] == f"web-{h1}"
    assert rs1["spec"]["selector"]["matchLabels"] == {"app": "web", "pod-template-hash": h1}
    assert rs1["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    assert rs1["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] == "3"
    assert rs1["metadata"]["annotations"]["deployment.kubernetes.io/max-replicas"] == "4"   # 3 + 25% up
    ref = rs1["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["uid"], ref["controller"], ref["blockOwnerDeletion"]) == \
        ("Deployment", d["metadata"]["uid"], True, True)
    pods = owned_by(items(cluster, f"/api/v1/namespaces/{ns}/pods"), rs1["metadata"]["uid"])
    assert len(pods) == 3 and all(p["metadata"]["name"].startswith(f"web-{h1}-") for p in pods)

    k("set", "image", "deploy/web", "nginx=nginx:2")
    assert "successfully rolled out" in k("rollout", "status", "deploy/web", "--timeout=60s")
    rss = {r["metadata"]["name"]: r for r in items(cluster, f"/apis/apps/v1/namespaces/{ns}/replicasets")}
    assert len(rss) == 2 and rss[rs1["metadata"]["name"]]["spec"]["replicas"] == 0
    [rs2] = [r for n, r in rss.items() if n != rs1["metadata"]["name"]]
    assert rs2["spec"]["replicas"] == 3 and rs2["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    assert rs2["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:2"

    k("rollout", "undo", "deploy/web")
    assert "successfully rolled out" in k("rollout", "status", "deploy/web", "--timeout=60s")
    back = get(cluster, f"/apis/apps/v1/namespaces/{ns}/replicasets/{rs1['metadata']['name']}")
    assert back["spec"]["replicas"] == 3
    assert back["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"   # the old one, re-numbered
    hist = k("rollout", "history", "deploy/web")
    assert "2 " in hist and "3 " in hist
    d = get(cluster, f"/apis/apps/v1/namespaces/{ns}/deployments/web")
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1"

    k("scale", "deploy/web", "--replicas=5")
    k("wait", "--for=condition=Available", "deploy/web", "--timeout=60s")
    wait_for(lambda: (get(cluster, f"/apis/apps/v1/namespaces/{ns}/deployments/web")["status"]
                      .get("availableReplicas")) == 5, 60, what="5 available replicas")
    d = get(cluster, f"/apis/apps/v1/namespaces/{ns}/deployments/web")
    avail = [c for c in d["status"]["conditions"] if c["type"] == "Available"][0]
    assert (avail["status"], avail["reason"], avail["message"]) == \
        ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
    prog = [c for c in d["status"]["conditions"] if c["type"] == "Progressing"][0]
    assert (prog["status"], prog["reason"]) == ("True", "NewReplicaSetAvailable")
    assert prog["message"] == f'ReplicaSet "{rs1["metadata"]["name"]}" has successfully progressed.'

    k("delete", "deployment", "web", "--timeout=60s")
    wait_for(lambda: not items(cluster, f"/apis/apps/v1/namespaces/{ns}/replicasets"), 30, what="sets collected")
    # the pods are being deleted (their hollow nodes finish the graceful deletion after
    # terminationGracePeriodSeconds, 30 s by default: not waited for here)
    wait_for(lambda: all(p["metadata"].get("deletionTimestamp") for p in items(cluster, f"/api/v1/namespaces/{ns}/pods")),
             30, what="pods being deleted")
