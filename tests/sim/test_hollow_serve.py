"""`kubeplane serve --hollow-nodes 3`: the API server, the scheduler and three hollow
nodes (the simulator in its own process over loopback). A pod created with kubectl is
scheduled, reported Running by its hollow node, answers `kubectl logs`, `exec` and
`port-forward` (kubectl 1.31 and 1.33), finishes its graceful deletion; Job pods and
run-to-completion pods end Succeeded/Failed; a crash restarts a container; a node told
to stop heartbeating stops. lightkube and kr8s see the same (their own test suites are
not shipped in their packages: these are equivalent tests with each library; lightkube
has no exec, kr8s does).
"""
from __future__ import annotations

import asyncio
import os
import selectors
import socket
import subprocess
import time
import urllib.request
from datetime import datetime, timezone

import pytest

from kubectls import kubectl_binary
from server_procs import ServerProc

NODES = ["hollow-node-0", "hollow-node-1", "hollow-node-2"]


def _read_line(proc: subprocess.Popen, want: str, timeout: float) -> str:
    """Read proc's stdout until a line contains `want`; that line ("" on timeout)."""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not sel.select(max(0.0, deadline - time.monotonic())):
                break
            line = proc.stdout.readline()
            if not line:
                break
            line = line.decode() if isinstance(line, bytes) else line
            if want in line:
                return line
    finally:
        sel.close()
    return ""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    s = ServerProc(tmp_path_factory.mktemp("hollow") / "data",
                   extra=["--scheduler=true", "--hollow-nodes", "3", "--scheduler-metrics-bind-address", "0",
                          "--hollow-nodes-metrics-bind-address", "127.0.0.1:0"]).start()
    try:
        line = _read_line(s.proc, "hollow nodes registered", 30)
        assert line, f"the simulator did not report its nodes: {s.log_tail()}"
        s.sim_metrics = line.rsplit("metrics ", 1)[1].strip()
        yield s
    finally:
        s.stop()


def wait_for(fn, timeout: float = 20.0, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s: {fn.__doc__ or fn}")
        time.sleep(interval)


def get(s: ServerProc, path: str) -> dict:
    r = s.call("GET", path)
    assert r.status == 200, r
    return r.json


def pod_phase(s: ServerProc, ns: str, name: str) -> str | None:
    r = s.call("GET", f"/api/v1/namespaces/{ns}/pods/{name}")
    return r.json.get("status", {}).get("phase") if r.status == 200 else None


def create_pod(s: ServerProc, name: str, *, annotations=None, owner=None, policy=None, ns="default") -> dict:
    md: dict = {"name": name, "annotations": annotations or {}}
    if owner:
        md["ownerReferences"] = [{"apiVersion": "batch/v1", "kind": owner, "name": "j", "uid": "0000-j",
                                  "controller": True}]
    spec: dict = {"containers": [{"name": "app", "image": "busybox"}]}
    if policy:
        spec["restartPolicy"] = policy
    r = s.call("POST", f"/api/v1/namespaces/{ns}/pods", {"metadata": md, "spec": spec})
    assert r.status == 201, r
    return r.json


def _ts(text: str) -> float:
    return datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()


def test_nodes_register_ready_with_leases(cluster):
    nodes = {n["metadata"]["name"]: n for n in get(cluster, "/api/v1/nodes")["items"]}
    assert sorted(nodes) == NODES
    zones = set()
    for name, n in nodes.items():
        labels, st = n["metadata"]["labels"], n["status"]
        assert labels["kubeplane.io/hollow-node"] == "true" and labels["kubernetes.io/hostname"] == name
        zones.add(labels["topology.kubernetes.io/zone"])
        assert labels["topology.kubernetes.io/region"] == "region-1"
        ready = next(c for c in st["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True" and ready["reason"] == "KubeletReady"
        assert st["capacity"] == {"cpu": "32", "memory": "256Gi", "pods": "110", "ephemeral-storage": "100Gi"}
        assert st["allocatable"]["pods"] == "110"
        ip = next(a["address"] for a in st["addresses"] if a["type"] == "InternalIP")
        assert ip.startswith("127.1.0.") and st["daemonEndpoints"]["kubeletEndpoint"]["Port"] > 0
        assert n["spec"]["podCIDR"].startswith("10.64.")
        lease = get(cluster, f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}")
        assert lease["spec"]["holderIdentity"] == name and lease["spec"]["leaseDurationSeconds"] == 40
        assert lease["metadata"]["ownerReferences"][0]["uid"] == n["metadata"]["uid"]
    assert zones == {"zone-a", "zone-b", "zone-c"}


class Kubectl:
    def __init__(self, version: str, server: ServerProc, home) -> None:
        b = kubectl_binary(version)
        if b is None:
            pytest.skip(f"kubectl {version} is not installed")
        self.binary = b
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
                    "KUBECONFIG": server.kubeconfig}

    def run(self, *args: str, input: str | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run([self.binary, *args], input=input, capture_output=True, text=True, timeout=timeout,
                              env=self.env)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("version", ["1.31", "1.33"])
def test_kubectl_run_logs_exec_portforward(cluster, tmp_path, version):
    kc = Kubectl(version, cluster, tmp_path)
    name = f"web-{version.replace('.', '')}"
    r = kc.run("run", name, "--image", "nginx", "--annotations", "kubeplane.io/log-interval=0.2")
    assert r.returncode == 0, r.stderr
    r = kc.run("wait", f"pod/{name}", "--for=condition=Ready", "--timeout=20s")
    assert r.returncode == 0, (r.stdout, r.stderr)
    pod = get(cluster, f"/api/v1/namespaces/default/pods/{name}")
    st = pod["status"]
    node = pod["spec"]["nodeName"]
    assert node in NODES and st["phase"] == "Running"
    assert st["podIP"].startswith("10.64.") and st["hostIP"].startswith("127.1.0.")
    assert {c["type"] for c in st["conditions"] if c["status"] == "True"} >= {
        "PodScheduled", "PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready"}

    time.sleep(0.5)
    r = kc.run("logs", name, "--tail=2")
    assert r.returncode == 0 and r.stdout.splitlines()[-1].startswith(f"{name} {name} line "), (r.stdout, r.stderr)
    r = kc.run("exec", name, "--", "hostname")
    assert (r.returncode, r.stdout) == (0, f"{name}\n"), r.stderr
    r = kc.run("exec", "-i", name, "--", "cat", input="through the hollow kubelet\n")
    assert (r.returncode, r.stdout) == (0, "through the hollow kubelet\n"), r.stderr
    r = kc.run("exec", name, "--", "sh", "-c", "exit 4")
    assert r.returncode == 4 and "command terminated with exit code 4" in r.stderr, r.stderr

    local = _free_port()
    p = subprocess.Popen([kc.binary, "port-forward", f"pod/{name}", f"{local}:80"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=kc.env)
    try:
        assert _read_line(p, "Forwarding from", 15), p.stderr
        with socket.create_connection(("127.0.0.1", local), timeout=10) as sock:
            payload = b"hollow port-forward " * 500
            sock.sendall(payload)
            got = b""
            while len(got) < len(payload):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                got += chunk
        assert got == payload
    finally:
        p.kill()
        p.communicate(timeout=5)

    # graceful deletion: the hollow kubelet finishes it after the grace period
    t0 = time.monotonic()
    r = kc.run("delete", "pod", name, "--grace-period=2")
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    assert 1.5 <= took < 10, took
    assert cluster.call("GET", f"/api/v1/namespaces/default/pods/{name}").status == 404


def test_runs_to_completion_and_failure(cluster):
    create_pod(cluster, "job-pod", owner="Job", policy="OnFailure")      # the rule: Job pods run 5 s
    create_pod(cluster, "fails", policy="Never", annotations={"kubeplane.io/run-seconds": "1",
                                                              "kubeplane.io/exit-code": "2"})
    wait_for(lambda: pod_phase(cluster, "default", "job-pod") == "Succeeded", 20)
    wait_for(lambda: pod_phase(cluster, "default", "fails") == "Failed", 20)
    st = get(cluster, "/api/v1/namespaces/default/pods/fails")["status"]
    term = st["containerStatuses"][0]["state"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (2, "Error")
    assert {c["type"]: c["status"] for c in st["conditions"]}["Ready"] == "False"
    # a finished pod's deletion needs no grace: the kubelet deletes it at once
    t0 = time.monotonic()
    assert cluster.call("DELETE", "/api/v1/namespaces/default/pods/job-pod").status == 200
    wait_for(lambda: cluster.call("GET", "/api/v1/namespaces/default/pods/job-pod").status == 404, 10, 0.05)
    assert time.monotonic() - t0 < 5


def test_crash_on_demand_restarts_the_container(cluster):
    create_pod(cluster, "crashy", annotations={"kubeplane.io/start-seconds": "0"})
    wait_for(lambda: pod_phase(cluster, "default", "crashy") == "Running", 20)
    r = cluster.call("PATCH", "/api/v1/namespaces/default/pods/crashy",
                     {"metadata": {"annotations": {"kubeplane.io/crash": "1", "kubeplane.io/crash-exit-code": "9"}}},
                     content_type="application/merge-patch+json")
    assert r.status == 200, r

    def restarted():
        cs = get(cluster, "/api/v1/namespaces/default/pods/crashy")["status"]["containerStatuses"][0]
        return cs if cs["restartCount"] == 1 and "running" in cs["state"] else None

    cs = wait_for(restarted, 10)
    assert cs["lastState"]["terminated"]["exitCode"] == 9 and cs["ready"] is True
    r = cluster.call("DELETE", "/api/v1/namespaces/default/pods/crashy", {"gracePeriodSeconds": 0})
    assert r.status == 200


def test_a_node_told_to_stop_heartbeating_stops(cluster):
    node = "hollow-node-2"
    path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node}"
    renewed = lambda: get(cluster, path)["spec"]["renewTime"]  # noqa: E731
    first = renewed()
    wait_for(lambda: renewed() != first, 15, 0.5)              # it renews (every 10 s)
    r = cluster.call("PATCH", f"/api/v1/nodes/{node}", {"metadata": {"annotations": {"kubeplane.io/heartbeat": "stop"}}},
                     content_type="application/merge-patch+json")
    assert r.status == 200
    time.sleep(1)
    stopped_at = renewed()
    time.sleep(12)
    assert renewed() == stopped_at, "the lease was renewed after the node was told to stop"
    other = get(cluster, "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/hollow-node-0")
    assert time.time() - _ts(other["spec"]["renewTime"]) < 12
    r = cluster.call("PATCH", f"/api/v1/nodes/{node}", {"metadata": {"annotations": {"kubeplane.io/heartbeat": None}}},
                     content_type="application/merge-patch+json")
    assert r.status == 200
    wait_for(lambda: renewed() != stopped_at, 5)               # resumes at once
    with urllib.request.urlopen(cluster.sim_metrics, timeout=5) as resp:
        text = resp.read().decode()
    assert 'kubeplane_sim_nodes{state="heartbeating"} 3.0' in text
    assert "kubeplane_sim_pods_started_total" in text and "kubeplane_sim_heartbeat_lag_seconds_bucket" in text
    ok = float(next(l.split()[-1] for l in text.splitlines() if l.startswith('kubeplane_sim_heartbeats_total{result="ok"}')))
    assert ok >= 3


def test_lightkube_pod_logs(cluster):
    """lightkube has no exec API: create, watch to Running, logs."""
    lightkube = pytest.importorskip("lightkube")
    from lightkube import Client, KubeConfig
    from lightkube.models.core_v1 import Container, PodSpec
    from lightkube.models.meta_v1 import ObjectMeta
    from lightkube.resources.core_v1 import Pod

    client = Client(KubeConfig.from_file(cluster.kubeconfig), namespace="default")
    client.create(Pod(metadata=ObjectMeta(name="lk", annotations={"kubeplane.io/log-interval": "0.1"}), spec=PodSpec(containers=[Container(name="app", image="nginx")])))
    pod = wait_for(lambda: (p := client.get(Pod, "lk")).status and p.status.phase == "Running" and p, 20)
    assert pod.spec.nodeName in NODES and pod.status.podIP.startswith("10.64.")
    time.sleep(0.3)
    lines = list(client.log("lk", tail_lines=2))
    assert len(lines) == 2 and lines[0].startswith("lk app line "), lines
    client.delete(Pod, "lk", grace_period=0)
    assert lightkube


def test_kr8s_pod_logs_exec(cluster):
    kr8s = pytest.importorskip("kr8s")

    async def go():
        api = await kr8s.asyncio.api(kubeconfig=cluster.kubeconfig)
        pod = await kr8s.asyncio.objects.Pod({"apiVersion": "v1", "kind": "Pod",
                                              "metadata": {"name": "kr", "namespace": "default",
                                                           "annotations": {"kubeplane.io/log-interval": "0.1"}},
                                              "spec": {"containers": [{"name": "app", "image": "nginx"}]}}, api=api)
        await pod.create()
        await pod.wait("condition=Ready", timeout=20)
        await pod.refresh()
        await asyncio.sleep(0.3)
        assert pod.status.phase == "Running" and pod.spec.nodeName in NODES
        lines = [line async for line in pod.logs(tail_lines=2)]
        assert len(lines) == 2 and lines[0].startswith("kr app line "), lines
        ex = await pod.exec(["echo", "from", "kr8s"])
        assert ex.stdout == b"from kr8s\n" and ex.returncode == 0
        await pod.delete(grace_period=0)

    asyncio.run(go())
