"""The scheduler that `kubeplane serve` starts, against 100 Nodes created through the API.

One server (with its scheduler child) for the module. Nodes: 4 zones; small, medium,
large and GPU sizes; 10 dedicated nodes tainted dedicated=db:NoSchedule; 5 cordoned;
one `special` node for the preemption case. Every pod below lands where its rules allow,
and the ones that cannot land say why in PodScheduled=False, in upstream's words.
"""
from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from collections import Counter

import pytest

from kubectls import kubectl_binary
from server_procs import ServerProc

ZONE = "topology.kubernetes.io/zone"
GPU = "example.com/gpu"
NS = "default"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_specs() -> list[tuple[dict, dict]]:
    """(node, allocatable) for 100 nodes."""
    out = []
    for i in range(100):
        zone = "abcd"[i % 4]
        labels = {ZONE: f"zone-{zone}", "kubernetes.io/hostname": f"node-{i:03}"}
        spec: dict = {}
        if i < 60:
            alloc = {"cpu": "4", "memory": "8Gi"}
        elif i < 85:
            alloc = {"cpu": "16", "memory": "64Gi"}
        else:
            alloc = {"cpu": "64", "memory": "256Gi"}
        if i % 3 == 0:
            labels["disk"] = "ssd"
        if 85 <= i < 89:
            alloc[GPU] = "4"
            labels["accelerator"] = "gpu"
        if 20 <= i < 30:
            labels["role"] = "db"
            spec["taints"] = [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]
        if 30 <= i < 35:
            spec["unschedulable"] = True
        if i == 99:
            labels["special"] = "yes"
            alloc = {"cpu": "2", "memory": "4Gi"}
            spec["taints"] = [{"key": "special", "value": "preempt", "effect": "NoSchedule"}]
        alloc = {**alloc, "pods": "110", "ephemeral-storage": "100Gi"}
        out.append(({"apiVersion": "v1", "kind": "Node", "metadata": {"name": f"node-{i:03}", "labels": labels},
                     "spec": spec}, alloc))
    return out


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    port = _free_port()
    s = ServerProc(tmp_path_factory.mktemp("sched") / "data",
                   extra=["--scheduler=true", "--scheduler-metrics-bind-address", f"127.0.0.1:{port}"]).start()
    s.metrics_port = port
    try:
        for node, alloc in _node_specs():
            r = s.call("POST", "/api/v1/nodes", node)
            assert r.status == 201, r
            # kubeplane keeps a created Node's status out (upstream keeps it): set it as a
            # kubelet does, through the status subresource
            r = s.call("PATCH", f"/api/v1/nodes/{node['metadata']['name']}/status",
                       {"status": {"capacity": alloc, "allocatable": alloc,
                                   "conditions": [{"type": "Ready", "status": "True"}]}},
                       content_type="application/merge-patch+json")
            assert r.status == 200, r
        yield s
    finally:
        s.stop()


def _pod(name: str, cpu: str = "100m", labels: dict | None = None, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}},
            "spec": {"containers": [{"name": "c", "image": "nginx",
                                     "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}], **spec}}


def _create(s: ServerProc, pod: dict) -> None:
    r = s.call("POST", f"/api/v1/namespaces/{NS}/pods", pod)
    assert r.status == 201, r


def _wait(s: ServerProc, names: list[str], timeout: float = 30.0, bound: frozenset[str] = frozenset()) -> dict[str, dict]:
    """Until every named pod is bound or says why not (those in `bound`: until bound);
    returns them by name."""
    deadline = time.monotonic() + timeout
    while True:
        items = {p["metadata"]["name"]: p for p in s.call("GET", f"/api/v1/namespaces/{NS}/pods").json["items"]}
        done = {}
        for n in names:
            p = items.get(n)
            if p is None:
                continue
            conds = {c["type"]: c for c in (p.get("status") or {}).get("conditions") or ()}
            if p["spec"].get("nodeName") or (n not in bound and
                                             conds.get("PodScheduled", {}).get("status") == "False"):
                done[n] = p
        if len(done) == len(names) or time.monotonic() > deadline:
            missing = set(names) - set(done)
            assert not missing, f"not decided in {timeout}s: {sorted(missing)}"
            return done
        time.sleep(0.2)


def _node(s: ServerProc, name: str) -> dict:
    return s.call("GET", f"/api/v1/nodes/{name}").json


def _why(p: dict) -> str:
    return next(c["message"] for c in p["status"]["conditions"] if c["type"] == "PodScheduled")


def test_pods_land_where_the_rules_allow(cluster):
    s = cluster
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "ha"}}, "topologyKey": ZONE}]}}
    spread = [{"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule",
               "labelSelector": {"matchLabels": {"app": "web"}}}]
    pods = {
        "plain": _pod("plain"),
        "ssd": _pod("ssd", nodeSelector={"disk": "ssd"}),
        "zone-b": _pod("zone-b", affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": ZONE, "operator": "In", "values": ["zone-b"]}]}]}}}),
        "db": _pod("db", nodeSelector={"role": "db"},
                   tolerations=[{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]),
        "big": _pod("big", cpu="40"),
        "gpu": {**_pod("gpu"), "spec": {"containers": [{"name": "c", "image": "cuda", "resources": {
            "limits": {GPU: "2"}}}]}},
        "cordon-ok": _pod("cordon-ok", nodeSelector={"kubernetes.io/hostname": "node-031"}, tolerations=[
            {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]),
        "primary": _pod("primary", labels={"app": "primary"}, nodeSelector={ZONE: "zone-c"}),
        "follower": _pod("follower", affinity={"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "primary"}}, "topologyKey": ZONE}]}}),
        **{f"ha-{i}": _pod(f"ha-{i}", labels={"app": "ha"}, affinity=anti) for i in range(5)},
        **{f"web-{i}": _pod(f"web-{i}", labels={"app": "web"}, topologySpreadConstraints=spread) for i in range(8)},
        "too-big": _pod("too-big", cpu="1000"),
        "nowhere": _pod("nowhere", nodeSelector={"disk": "tape"}),
    }
    for p in pods.values():
        _create(s, p)
    # the follower may be tried before its primary is placed (the informer's first list
    # comes in name order): it fails, and the primary's binding moves it back
    got = _wait(s, list(pods), bound=frozenset({"follower"}))
    node_of = {n: p["spec"].get("nodeName") for n, p in got.items()}
    labels = {n: _node(s, n)["metadata"]["labels"] for n in set(node_of.values()) if n}

    def idx(node: str) -> int:
        return int(node.split("-")[1])

    normal = set(range(0, 20)) | set(range(35, 99))
    assert idx(node_of["plain"]) in normal
    assert labels[node_of["ssd"]].get("disk") == "ssd" and idx(node_of["ssd"]) in normal
    assert labels[node_of["zone-b"]][ZONE] == "zone-b"
    assert labels[node_of["db"]].get("role") == "db"
    assert idx(node_of["big"]) >= 85 and idx(node_of["big"]) != 99
    assert labels[node_of["gpu"]].get("accelerator") == "gpu"
    assert node_of["cordon-ok"] == "node-031"
    assert labels[node_of["follower"]][ZONE] == labels[node_of["primary"]][ZONE] == "zone-c"
    ha_bound = [n for n in pods if n.startswith("ha-") and node_of[n]]
    assert len(ha_bound) == 4 and len({labels[node_of[n]][ZONE] for n in ha_bound}) == 4
    ha_left = [n for n in pods if n.startswith("ha-") and not node_of[n]]
    assert [_why(got[n]) for n in ha_left] == [
        "0/100 nodes are available: 1 node(s) had untolerated taint {special: preempt}, "
        "10 node(s) had untolerated taint {dedicated: db}, 5 node(s) were unschedulable, "
        "84 node(s) didn't match pod anti-affinity rules. preemption: 0/100 nodes are available: "
        "16 Preemption is not helpful for scheduling, 84 No preemption victims found for incoming pod.."]
    web = Counter(labels[node_of[f"web-{i}"]][ZONE] for i in range(8))
    assert sorted(web.values()) == [2, 2, 2, 2]
    assert node_of["too-big"] is None and _why(got["too-big"]) == (
        "0/100 nodes are available: 1 node(s) had untolerated taint {special: preempt}, "
        "10 node(s) had untolerated taint {dedicated: db}, 5 node(s) were unschedulable, 84 Insufficient cpu. "
        "preemption: 0/100 nodes are available: 16 Preemption is not helpful for scheduling, "
        "84 No preemption victims found for incoming pod..")
    assert node_of["nowhere"] is None and _why(got["nowhere"]).startswith(
        "0/100 nodes are available: 1 node(s) had untolerated taint {special: preempt}, "
        "10 node(s) had untolerated taint {dedicated: db}, 5 node(s) were unschedulable, "
        "84 node(s) didn't match Pod's node affinity/selector.")
    cond = next(c for c in got["too-big"]["status"]["conditions"] if c["type"] == "PodScheduled")
    assert cond["reason"] == "Unschedulable"
    events = s.call("GET", f"/api/v1/namespaces/{NS}/events").json["items"]
    failed = [e for e in events if e["involvedObject"]["name"] == "too-big" and e["reason"] == "FailedScheduling"]
    assert failed and failed[0]["type"] == "Warning" and failed[0]["message"] == _why(got["too-big"])
    assert failed[0]["source"]["component"] == "default-scheduler"
    scheduled = [e for e in events if e["involvedObject"]["name"] == "plain" and e["reason"] == "Scheduled"]
    assert scheduled and scheduled[0]["message"] == f"Successfully assigned {NS}/plain to {node_of['plain']}"


def test_an_unschedulable_pod_is_bound_once_a_node_fits(cluster):
    s = cluster
    _create(s, _pod("waits-for-gpu-node", nodeSelector={"accelerator": "tpu"}))
    p = _wait(s, ["waits-for-gpu-node"])["waits-for-gpu-node"]
    assert p["spec"].get("nodeName") is None
    # a label change on a node moves the pod (NodeAffinity registered node label updates)
    r = s.call("PATCH", "/api/v1/nodes/node-040", {"metadata": {"labels": {"accelerator": "tpu"}}},
               content_type="application/merge-patch+json")
    assert r.status == 200
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        p = s.call("GET", f"/api/v1/namespaces/{NS}/pods/waits-for-gpu-node").json
        if p["spec"].get("nodeName"):
            break
        time.sleep(0.2)
    assert p["spec"].get("nodeName") == "node-040"


def test_preemption_evicts_the_lower_priority_pod(cluster):
    s = cluster
    tol = [{"key": "special", "operator": "Exists", "effect": "NoSchedule"}]
    sel = {"special": "yes"}
    _create(s, _pod("low", cpu="2", priority=1, tolerations=tol, nodeSelector=sel))
    assert _wait(s, ["low"])["low"]["spec"]["nodeName"] == "node-099"
    _create(s, _pod("high", cpu="2", priority=1000, tolerations=tol, nodeSelector=sel))
    deadline = time.monotonic() + 30
    high = {}
    while time.monotonic() < deadline:
        high = s.call("GET", f"/api/v1/namespaces/{NS}/pods/high").json
        if high["spec"].get("nodeName"):
            break
        low = s.call("GET", f"/api/v1/namespaces/{NS}/pods/low")
        if low.status == 200 and low.json["metadata"].get("deletionTimestamp"):
            # the scheduler deleted its victim gracefully; no kubelet runs here, so finish
            # the deletion as the kubelet would once the containers stopped
            assert high["status"].get("nominatedNodeName") == "node-099"
            conds = {c["type"]: c for c in low.json["status"]["conditions"]}
            assert conds["DisruptionTarget"]["reason"] == "PreemptionByScheduler"
            s.call("DELETE", f"/api/v1/namespaces/{NS}/pods/low", {"gracePeriodSeconds": 0})
        time.sleep(0.2)
    assert high["spec"].get("nodeName") == "node-099"
    assert s.call("GET", f"/api/v1/namespaces/{NS}/pods/low").status == 404
    events = s.call("GET", f"/api/v1/namespaces/{NS}/events").json["items"]
    pre = [e for e in events if e["reason"] == "Preempted" and e["involvedObject"]["name"] == "low"]
    assert pre and pre[0]["message"] == f"Preempted by pod {high['metadata']['uid']} on node node-099"


def test_scheduler_metrics(cluster):
    text = urllib.request.urlopen(f"http://127.0.0.1:{cluster.metrics_port}/metrics", timeout=10).read().decode()
    for needle in ('scheduler_schedule_attempts_total{profile="default-scheduler",result="scheduled"}',
                   'scheduler_schedule_attempts_total{profile="default-scheduler",result="unschedulable"}',
                   "scheduler_scheduling_attempt_duration_seconds_bucket",
                   "scheduler_pod_scheduling_sli_duration_seconds_bucket",
                   'scheduler_pending_pods{queue="unschedulable"}',
                   'scheduler_framework_extension_point_duration_seconds_bucket{extension_point="Filter"',
                   'scheduler_scheduler_cache_size{type="nodes"} 100.0',
                   "scheduler_preemption_attempts_total"):
        assert needle in text, needle
    scheduled = next(float(line.split()[-1]) for line in text.splitlines()
                     if line.startswith('scheduler_schedule_attempts_total{profile="default-scheduler",result="scheduled"}'))
    assert scheduled >= 20


@pytest.mark.parametrize("version", ["1.33"])
def test_kubectl_created_pod_gets_bound(cluster, version, tmp_path):
    kubectl = kubectl_binary(version)
    if kubectl is None:
        pytest.skip(f"kubectl {version} is not installed")
    env = {**os.environ, "KUBECONFIG": cluster.kubeconfig, "HOME": str(tmp_path)}
    manifest = ("apiVersion: v1\nkind: Pod\nmetadata: {name: from-kubectl}\n"
                "spec: {containers: [{name: web, image: nginx, resources: {requests: {cpu: 100m}}}]}\n")
    subprocess.run([kubectl, "apply", "-f", "-"], input=manifest, text=True, env=env, check=True,
                   capture_output=True, timeout=60)
    deadline = time.monotonic() + 30
    node = ""
    while time.monotonic() < deadline and not node:
        node = subprocess.run([kubectl, "get", "pod", "from-kubectl", "-o", "jsonpath={.spec.nodeName}"],
                              env=env, text=True, capture_output=True, timeout=30).stdout.strip()
        time.sleep(0.3)
    assert node.startswith("node-")
    out = subprocess.run([kubectl, "get", "pod", "from-kubectl", "-o",
                          "jsonpath={.status.conditions[?(@.type=='PodScheduled')].status}"],
                         env=env, text=True, capture_output=True, timeout=30).stdout
    assert out == "True"


def test_the_scheduler_child_goes_with_the_server(tmp_path):
    """No scheduler process outlives `kubeplane serve`, even one killed with SIGKILL."""
    import psutil
    s = ServerProc(tmp_path / "data", extra=["--scheduler=true", "--scheduler-metrics-bind-address", "0"]).start()
    parent = psutil.Process(s.proc.pid)
    deadline = time.monotonic() + 20
    kids = []
    while time.monotonic() < deadline and not kids:
        kids = [k for k in parent.children() if "scheduler" in " ".join(k.cmdline())]
        time.sleep(0.1)
    assert len(kids) == 1
    child = kids[0]
    s.proc.kill()
    s.proc.wait()
    gone, alive = psutil.wait_procs([child], timeout=10)
    assert child in gone and not alive
    s.proc = None
