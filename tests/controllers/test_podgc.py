"""The pod GC on a server of its own (it acts on every namespace): terminated pods over
--terminated-pod-gc-threshold go, oldest first; a pod on a node that does not exist is
deleted after the quarantine (shortened by kubeplane's --pod-gc-orphan-quarantine-seconds;
upstream's is a fixed 40 s), a pod on an existing node stays."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from ctrl_cluster import get, wait_for
from server_procs import ServerProc


@pytest.fixture
def bare(tmp_path):
    s = ServerProc(tmp_path / "data", extra=["--scheduler=false", "--hollow-nodes", "0"]).start()
    try:
        yield s
    finally:
        s.stop()


def pod(name: str, node: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx"}]}}


def test_terminated_threshold_and_orphans(bare):
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}
    assert bare.call("POST", "/api/v1/nodes", node).status == 201
    base = "/api/v1/namespaces/default/pods"
    for i in range(4):
        assert bare.call("POST", base, pod(f"done-{i}", "n1")).status == 201
        r = bare.call("PATCH", f"{base}/done-{i}/status", {"status": {"phase": "Succeeded"}},
                      content_type="application/merge-patch+json")
        assert r.status == 200, r.body
        time.sleep(1.05)                       # distinct creation seconds: "oldest" is well defined
    assert bare.call("POST", base, pod("running", "n1")).status == 201
    assert bare.call("POST", base, pod("lost", "ghost")).status == 201
    cm = subprocess.Popen([sys.executable, "-m", "kubeplane.cli", "controller-manager", "--kubeconfig", bare.kubeconfig,
                           "--controllers", "podgc", "--terminated-pod-gc-threshold", "2",
                           "--pod-gc-orphan-quarantine-seconds", "1", "--bind-address", "0", "--leader-elect", "false"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ})
    try:
        wait_for(lambda: get(bare, f"{base}/done-0") is None and get(bare, f"{base}/done-1") is None, 30,
                 what="the two oldest terminated pods deleted")
        assert get(bare, f"{base}/done-2") and get(bare, f"{base}/done-3") and get(bare, f"{base}/running")
        wait_for(lambda: get(bare, f"{base}/lost") is None, 30, what="the pod of a missing node deleted")
        assert get(bare, f"{base}/running") is not None          # its node exists
    finally:
        cm.terminate()
        cm.wait(15)
