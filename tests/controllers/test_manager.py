"""`kubeplane controller-manager` as a process: two instances on one Lease (one runs the
controllers, the other takes over when the leader dies), /healthz, /metrics with
upstream's workqueue_* names, and --controllers errors."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest

from ctrl_cluster import get, read_line


def start_cm(cluster, lease: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "kubeplane.cli", "controller-manager", "--kubeconfig", cluster.kubeconfig,
         "--controllers", "serviceaccount,replicaset", "--bind-address", "127.0.0.1:0",
         "--leader-elect-resource-name", lease, "--leader-elect-lease-duration", "3",
         "--leader-elect-renew-deadline", "2", "--leader-elect-retry-period", "0.5"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        bufsize=0)      # unbuffered: read_line selects on the pipe, no line may hide in a buffer


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_two_instances_one_leader_then_failover(cluster):
    lease = f"cm-{uuid.uuid4().hex[:6]}"
    a, b = start_cm(cluster, lease), start_cm(cluster, lease)
    try:
        urls = {}
        for p in (a, b):
            line = read_line(p, "metrics on http://", 20)
            assert line, "no metrics line"
            urls[p.pid] = line.split("metrics on ", 1)[1].strip().rsplit("/metrics", 1)[0]
        leader_line = ""
        deadline = time.monotonic() + 20
        # exactly one of them leads: read the lines of both until one says "leading"
        while not leader_line and time.monotonic() < deadline:
            for p in (a, b):
                line = read_line(p, "leading as", 0.5)
                if line:
                    leader_line, leader = line, p
        assert leader_line, "no instance took the lease"
        follower = b if leader is a else a
        assert read_line(follower, "leading as", 2.0) == "", "both instances lead"
        lease_obj = get(cluster, f"/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/{lease}")
        assert lease_obj["spec"]["holderIdentity"] == leader_line.split("leading as ", 1)[1].strip()

        for p in (a, b):
            assert fetch(urls[p.pid] + "/healthz") == (200, "ok")
            assert fetch(urls[p.pid] + "/nope")[0] == 404
        read_line(leader, "caches synced", 20)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            _, text = fetch(urls[leader.pid] + "/metrics")
            if 'workqueue_adds_total{name="serviceaccount"}' in text:
                break
            time.sleep(0.2)
        for name in ("workqueue_depth", "workqueue_adds_total", "workqueue_retries_total",
                     "workqueue_queue_duration_seconds_bucket", "workqueue_work_duration_seconds_bucket",
                     "workqueue_unfinished_work_seconds", "workqueue_longest_running_processor_seconds"):
            assert any(line.startswith(name + "{") and 'name="serviceaccount"' in line
                       for line in text.splitlines()), name
        assert f'leader_election_master_status{{name="{lease}"}} 1.0' in text
        _, ftext = fetch(urls[follower.pid] + "/metrics")
        assert f'leader_election_master_status{{name="{lease}"}} 0.0' in ftext
        assert 'workqueue_adds_total{name="serviceaccount"}' not in ftext      # followers run nothing

        leader.send_signal(signal.SIGKILL)                  # dies without releasing: the lease must expire
        leader.wait(10)
        t0 = time.monotonic()
        line = read_line(follower, "leading as", 20)
        assert line, "the follower did not take over"
        assert time.monotonic() - t0 < 15
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()


def test_unknown_controller_is_refused():
    r = subprocess.run([sys.executable, "-m", "kubeplane.cli", "controller-manager", "--controllers", "*,-bogus"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert '"bogus" is not in the list of known controllers' in r.stderr


def test_sigterm_releases_the_lease(cluster):
    """A leader stopped with SIGTERM gives its Lease up (holder ""), so a successor does
    not wait for the lease to expire."""
    lease = f"cm-{uuid.uuid4().hex[:6]}"
    p = start_cm(cluster, lease)
    try:
        assert read_line(p, "leading as", 20), "did not lead"
        p.send_signal(signal.SIGTERM)
        assert p.wait(15) == 0
        spec = get(cluster, f"/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/{lease}")["spec"]
        assert spec.get("holderIdentity", "") == ""
    finally:
        if p.poll() is None:
            p.kill()
