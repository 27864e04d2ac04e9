"""A hollow node that stops heartbeating: the node lifecycle controller marks it
Ready=Unknown and taints it unreachable (NoSchedule, NoExecute); the taint eviction
controller deletes its pods when their toleration runs out (2 s here: shortened by the
pods' tolerations, not by patching the controller; the grace period is shortened to 15 s
with upstream's own --node-monitor-grace-period: it must stay above the hollow nodes'
10 s lease renewals); the ReplicaSet replaces them and the
scheduler puts the replacements on the other nodes. On a server of its own (it stops a
node). Plus the toleration arithmetic as unit tests."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ctrl_cluster import get, items, wait_for
from kubeplane.client.selectors import tolerates
from kubeplane.controllers.tainteviction import eviction_time
from server_procs import ServerProc

TAINT = {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute", "timeAdded": "2026-01-01T00:00:00Z"}


def test_toleration_arithmetic():
    t0 = 1767225600.0                                  # 2026-01-01T00:00:00Z
    assert tolerates({"key": TAINT["key"], "operator": "Exists", "effect": "NoExecute"}, TAINT)
    assert tolerates({"operator": "Exists"}, TAINT)
    assert not tolerates({"key": "other", "operator": "Exists"}, TAINT)
    assert not tolerates({"key": TAINT["key"], "operator": "Equal", "value": "x"}, TAINT)
    pod = {"spec": {"tolerations": [{"key": TAINT["key"], "operator": "Exists", "effect": "NoExecute",
                                     "tolerationSeconds": 300}]}}
    assert eviction_time(pod, [TAINT], t0 + 10) == t0 + 300
    assert eviction_time({"spec": {}}, [TAINT], t0 + 10) == t0 + 10          # not tolerated: now
    forever = {"spec": {"tolerations": [{"operator": "Exists"}]}}
    assert eviction_time(forever, [TAINT], t0) is None
    assert eviction_time(pod, [{**TAINT, "effect": "NoSchedule"}], t0) is None


@pytest.fixture
def three_nodes(tmp_path):
    s = ServerProc(tmp_path / "data", extra=["--scheduler=true", "--scheduler-metrics-bind-address", "0",
                                             "--hollow-nodes", "3", "--hollow-nodes-metrics-bind-address", "0"]).start()
    cm = subprocess.Popen([sys.executable, "-m", "kubeplane.cli", "controller-manager", "--kubeconfig", s.kubeconfig,
                           "--bind-address", "0", "--leader-elect", "false", "--node-monitor-grace-period", "15s",
                           "--node-monitor-period", "1s"],
                          stdout=subprocess.DEVNULL, stderr=open(s.log_path.with_suffix(".cm.log"), "ab"),
                          env={**os.environ})
    try:
        wait_for(lambda: len([n for n in items(s, "/api/v1/nodes")
                              if any(c["type"] == "Ready" and c["status"] == "True"
                                     for c in n.get("status", {}).get("conditions", []))]) == 3, 30,
                 what="3 Ready hollow nodes")
        yield s
    finally:
        cm.terminate()
        cm.wait(15)
        s.stop()


def test_dead_node_pods_move(three_nodes):
    s = three_nodes
    tol = [{"key": k, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2}
           for k in ("node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready")]
    d = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "mover"},
         "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "mover"}},
                  "template": {"metadata": {"labels": {"app": "mover"}},
                               "spec": {"tolerations": tol, "terminationGracePeriodSeconds": 1,
                                        "containers": [{"name": "c", "image": "nginx"}]}}}}
    assert s.call("POST", "/apis/apps/v1/namespaces/default/deployments", d).status == 201

    def running():
        return [p for p in items(s, "/api/v1/namespaces/default/pods?labelSelector=app%3Dmover")
                if not p["metadata"].get("deletionTimestamp") and p["status"].get("phase") == "Running"
                and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))]
    def three():
        r = running()
        return r if len(r) == 3 else None
    pods = wait_for(three, 40, what="3 running pods")
    dead = pods[0]["spec"]["nodeName"]
    r = s.call("PATCH", f"/api/v1/nodes/{dead}", {"metadata": {"annotations": {"kubeplane.io/heartbeat": "stop"}}},
               content_type="application/merge-patch+json")
    assert r.status == 200
    def unknown():
        n = get(s, f"/api/v1/nodes/{dead}")
        ready = [c for c in n["status"]["conditions"] if c["type"] == "Ready"][0]
        taints = {(t["key"], t["effect"]) for t in n["spec"].get("taints") or ()}
        return ready["status"] == "Unknown" and {("node.kubernetes.io/unreachable", "NoSchedule"),
                                                  ("node.kubernetes.io/unreachable", "NoExecute")} <= taints and n
    n = wait_for(unknown, 40, what="Ready=Unknown and the unreachable taints")
    for other in {"hollow-node-0", "hollow-node-1", "hollow-node-2"} - {dead}:
        o = get(s, f"/api/v1/nodes/{other}")
        assert [c for c in o["status"]["conditions"] if c["type"] == "Ready"][0]["status"] == "True", other
    ready = [c for c in n["status"]["conditions"] if c["type"] == "Ready"][0]
    assert (ready["reason"], ready["message"]) == ("NodeStatusUnknown", "Kubelet stopped posting node status.")
    def moved_off():
        r = running()
        return r if len(r) == 3 and all(p["spec"]["nodeName"] != dead for p in r) else None
    moved = wait_for(moved_off, 60, what="3 running pods, none on the dead node")
    assert {p["spec"]["nodeName"] for p in moved} <= {"hollow-node-0", "hollow-node-1", "hollow-node-2"} - {dead}
