"""kubectl logs, exec, attach and port-forward through `kubeplane serve` to the simulated
kubelet (kubeplane.sim.kubelet), with real kubectl 1.31 and 1.33 (and 1.29 for the SPDY
paths older clients take), plus the proxy subresources and the errors upstream gives.

The kubelet runs in this process on its own event loop thread, at 127.0.0.2 (a loopback
address of its own, as a hollow node would have); the Node points there by its
InternalIP and `daemonEndpoints.kubeletEndpoint.Port`, and the Pod is bound to it at
create time. Every kubectl call has a timeout.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import threading
import time

import pytest

from kubectls import kubectl_binary
from server_procs import ServerProc

from kubeplane.sim.kubelet import KubeletServer

NODE = "hollow-1"
KUBELET_HOST = "127.0.0.2"


class KubeletThread:
    """A KubeletServer on an event loop in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = KubeletServer()

    def call(self, coro, timeout: float = 10):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.call(self.server.close())
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture(scope="module")
def kubelet(server: ServerProc):
    k = KubeletThread()
    host, port = k.call(k.server.add_node(NODE, KUBELET_HOST, 0))
    r = server.call("POST", "/api/v1/nodes", {"metadata": {"name": NODE}})
    assert r.status in (201, 409), r
    r = server.call("PATCH", f"/api/v1/nodes/{NODE}/status", {"status": {
        "addresses": [{"type": "Hostname", "address": NODE}, {"type": "InternalIP", "address": host}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}},
        content_type="application/merge-patch+json")
    assert r.status == 200, r
    k.port = port
    yield k
    k.stop()
    server.call("DELETE", f"/api/v1/nodes/{NODE}")


def make_pod(server: ServerProc, kubelet: KubeletThread, ns: str, name: str, *, node: str | None = NODE,
             containers: list[dict] | None = None, annotations: dict | None = None, ip: str = "10.244.0.5") -> dict:
    """Create a pod bound to `node`, mark it Running with its containers started 30 s ago,
    and tell the kubelet about it (as the simulator's informer would)."""
    containers = containers or [{"name": "app", "image": "busybox"}]
    spec: dict = {"containers": containers}
    if node:
        spec["nodeName"] = node
    md: dict = {"name": name}
    if annotations:
        md["annotations"] = annotations
    r = server.call("POST", f"/api/v1/namespaces/{ns}/pods", {"metadata": md, "spec": spec})
    assert r.status == 201, r
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 30))
    r = server.call("PATCH", f"/api/v1/namespaces/{ns}/pods/{name}/status", {"status": {
        "phase": "Running", "startTime": started, "podIP": ip, "podIPs": [{"ip": ip}],
        "containerStatuses": [{"name": c["name"], "image": c["image"], "imageID": "", "ready": True,
                               "restartCount": 0, "started": True,
                               "state": {"running": {"startedAt": started}}} for c in containers]}},
        content_type="application/merge-patch+json")
    assert r.status == 200, r
    pod = server.call("GET", f"/api/v1/namespaces/{ns}/pods/{name}").json
    kubelet.server.set_pod(pod)
    return pod


class Kubectl:
    def __init__(self, version: str, server: ServerProc, home) -> None:
        b = kubectl_binary(version)
        if b is None:
            pytest.skip(f"kubectl {version} is not installed")
        self.binary = b
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
                    "KUBECONFIG": server.kubeconfig}

    def run(self, *args: str, input: str | None = None, timeout: float = 20,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([self.binary, *args], input=input, capture_output=True, text=True, timeout=timeout,
                              env={**self.env, **(env or {})})

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([self.binary, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, text=True, env=self.env)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _read_until(proc: subprocess.Popen, want: str, timeout: float) -> str:
    """Lines of proc's stdout until one contains `want` (or the timeout)."""
    seen = []
    deadline = time.monotonic() + timeout
    import selectors
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    while time.monotonic() < deadline:
        if not sel.select(max(0.0, deadline - time.monotonic())):
            break
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if want in line:
            break
    sel.close()
    return "".join(seen)


def _tcp_roundtrip(port: int, payload: bytes, timeout: float = 10) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
                s.sendall(payload)
                got = b""
                while len(got) < len(payload):
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    got += chunk
                return got
        except (ConnectionRefusedError, ConnectionResetError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _exec_and_forward(kc: Kubectl, ns: str, pod: str, *, env: dict[str, str] | None = None) -> str:
    """exec (stdout, stdin, exit codes, an unknown command) and a port-forward round trip;
    returns kubectl's -v=6 log of one exec and the port-forward, which tells the protocol."""
    r = kc.run("-n", ns, "exec", pod, "-v=6", "--", "echo", "hi", env=env)
    assert (r.returncode, r.stdout) == (0, "hi\n"), r.stderr
    trace = r.stderr
    r = kc.run("-n", ns, "exec", "-i", pod, "--", "cat", input="from stdin\nline two\n", env=env)
    assert (r.returncode, r.stdout) == (0, "from stdin\nline two\n"), r.stderr
    r = kc.run("-n", ns, "exec", pod, "--", "sh", "-c", "exit 3", env=env)
    assert r.returncode == 3 and "command terminated with exit code 3" in r.stderr, (r.returncode, r.stderr)
    r = kc.run("-n", ns, "exec", pod, "--", "false", env=env)
    assert r.returncode == 1 and "command terminated with exit code 1" in r.stderr, (r.returncode, r.stderr)
    r = kc.run("-n", ns, "exec", pod, "--", "no-such-tool", env=env)
    assert r.returncode == 1 and "error executing command in container" in r.stderr \
        and "no-such-tool" in r.stderr and "executable file not found in $PATH" in r.stderr, r.stderr

    # port-forward: TCP round trips through kubectl, the API server and the kubelet (its echo)
    local = _free_port()
    p = subprocess.Popen([kc.binary, "-n", ns, "port-forward", f"pod/{pod}", f"{local}:8080", "-v=6"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                         env={**kc.env, **(env or {})})
    try:
        ready = _read_until(p, "Forwarding from", 15)
        assert "Forwarding from 127.0.0.1:" in ready, ready
        payload = b"ping through port-forward " * 2000          # 52 KB: several frames each way
        assert _tcp_roundtrip(local, payload) == payload
        assert _tcp_roundtrip(local, b"again") == b"again"
    finally:
        p.kill()
        _, err = p.communicate(timeout=5)
    return trace + err


@pytest.mark.parametrize("version", ["1.31", "1.33"])
def test_kubectl_logs_exec_attach_portforward(server, kubelet, ns, tmp_path, version):
    """The default paths of kubectl 1.31+: exec and port-forward over WebSocket (GET
    upgrades: v5.channel.k8s.io and SPDY tunneled in WebSocket)."""
    kc = Kubectl(version, server, tmp_path)
    make_pod(server, kubelet, ns, "web", annotations={"kubeplane.io/log-interval": "0.5"})

    # logs: 30 s of lines at 0.5 s, the last 3 of them
    r = kc.run("-n", ns, "logs", "web", "--tail=3")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 3 and all(line.startswith("web app line ") for line in lines), lines
    idx = [int(line.rsplit(" ", 1)[1]) for line in lines]
    assert idx == [idx[0], idx[0] + 1, idx[0] + 2] and idx[0] >= 55, idx
    r = kc.run("-n", ns, "logs", "web", "--tail=2", "--timestamps")
    assert r.returncode == 0, r.stderr
    stamp, text = r.stdout.splitlines()[0].split(" ", 1)
    assert stamp.endswith("Z") and len(stamp) == len("2026-01-01T00:00:00.000000000Z"), stamp
    assert text.startswith("web app line ")

    # logs -f: new lines keep coming until kubectl is stopped
    p = kc.popen("-n", ns, "logs", "-f", "web", "--tail=1")
    try:
        first = _read_until(p, "line", 10)
        more = _read_until(p, "line", 10)
    finally:
        p.kill()
        p.wait(5)
    n1, n2 = int(first.split()[-1]), int(more.split()[-1])
    assert n2 == n1 + 1, (first, more)

    trace = _exec_and_forward(kc, ns, "web")
    # both went over WebSocket: GET upgrades, no fallback to SPDY (POST)
    assert re.search(r'GET.*/pods/web/exec\?.*101 Switching Protocols', trace, re.S), trace
    assert re.search(r'GET.*/pods/web/portforward.*101 Switching Protocols', trace, re.S), trace
    assert "fallback" not in trace and "POST" not in trace, trace

    # attach: the container's output as it comes
    p = kc.popen("-n", ns, "attach", "web")
    try:
        out = _read_until(p, "web app line", 10)
    finally:
        p.kill()
        p.wait(5)
    assert "web app line" in out, out

    # nodes/proxy: the kubelet's own endpoints
    r = kc.run("get", "--raw", f"/api/v1/nodes/{NODE}/proxy/healthz")
    assert (r.returncode, r.stdout) == (0, "ok"), r.stderr
    r = kc.run("get", "--raw", f"/api/v1/nodes/{NODE}/proxy/pods")
    assert r.returncode == 0, r.stderr
    assert any(p["metadata"]["name"] == "web" for p in json.loads(r.stdout)["items"])


@pytest.mark.parametrize("version,env", [
    ("1.29", {}),
    ("1.33", {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false", "KUBECTL_PORT_FORWARD_WEBSOCKETS": "false"}),
], ids=["1.29", "1.33-spdy"])
def test_kubectl_spdy(server, kubelet, ns, tmp_path, version, env):
    """Older kubectl, and new kubectl with WebSockets off, speak SPDY/3.1 (POST upgrades)."""
    kc = Kubectl(version, server, tmp_path)
    make_pod(server, kubelet, ns, "old")
    trace = _exec_and_forward(kc, ns, "old", env=env)
    assert re.search(r'POST.*/pods/old/exec\?.*101 Switching Protocols', trace, re.S), trace
    assert re.search(r'POST.*/pods/old/portforward.*101 Switching Protocols', trace, re.S), trace


def test_connect_errors_in_upstreams_form(server, kubelet, ns, tmp_path):
    make_pod(server, kubelet, ns, "web")
    make_pod(server, kubelet, ns, "two", containers=[{"name": "a", "image": "x"}, {"name": "b", "image": "x"}])
    r = server.call("POST", f"/api/v1/namespaces/{ns}/pods", {"metadata": {"name": "nowhere"},
                                                              "spec": {"containers": [{"name": "c", "image": "x"}]}})
    assert r.status == 201, r
    base = f"/api/v1/namespaces/{ns}/pods"

    def status(path: str, code: int, reason: str, message: str) -> None:
        r = server.call("GET", path)
        assert r.status == code, (path, r)
        st = r.json
        assert (st["kind"], st["code"], st["reason"], st["message"]) == ("Status", code, reason, message), st

    status(f"{base}/nowhere/exec?command=true&stdout=true", 400, "BadRequest", "pod nowhere does not have a host assigned")
    status(f"{base}/nowhere/portforward?ports=80", 400, "BadRequest", "pod nowhere does not have a host assigned")
    status(f"{base}/web/exec?command=true&stdout=true&container=nope", 400, "BadRequest",
           "container nope is not valid for pod web")
    status(f"{base}/web/log?container=nope", 400, "BadRequest", "container nope is not valid for pod web")
    status(f"{base}/two/log", 400, "BadRequest", "a container name must be specified for pod two, choose one of: [a b]")
    status(f"{base}/web/exec?stdout=true", 400, "BadRequest", "you must specify at least 1 command")
    status(f"{base}/web/log?previous=true", 400, "BadRequest", 'previous terminated container "app" in pod "web" not found')
    status(f"{base}/missing/log", 404, "NotFound", 'pods "missing" not found')
    r = server.call("GET", f"{base}/web/log?tailLines=-1")
    assert r.status == 422 and r.json["reason"] == "Invalid" and \
        r.json["message"].startswith('PodLogOptions "web" is invalid: tailLines: Invalid value: -1'), r
    # an unscheduled pod has an empty log (upstream: no location, an empty stream)
    r = server.call("GET", f"{base}/nowhere/log")
    assert (r.status, r.body) == (200, b""), r

    # a node whose kubelet does not answer, and a node that does not exist
    dead = _free_port()
    r = server.call("POST", "/api/v1/nodes", {"metadata": {"name": f"dead-{ns}"}})
    assert r.status == 201, r
    r = server.call("PATCH", f"/api/v1/nodes/dead-{ns}/status", {"status": {
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": dead}}}}, content_type="application/merge-patch+json")
    assert r.status == 200, r
    try:
        make_pod(server, kubelet, ns, "stranded", node=f"dead-{ns}")
        r = server.call("GET", f"{base}/stranded/exec?command=true&stdout=true")
        assert r.status == 500 and r.json["message"] == \
            f"error dialing backend: dial tcp 127.0.0.1:{dead}: connect: connection refused", r
        r = server.call("GET", f"{base}/stranded/log")
        assert r.status == 500 and r.json["message"].startswith(f'Get "https://127.0.0.1:{dead}/containerLogs/{ns}/'
                                                                f'stranded/app": dial tcp'), r
        make_pod(server, kubelet, ns, "orphan", node=f"ghost-{ns}")
        status(f"{base}/orphan/exec?command=true&stdout=true", 404, "NotFound", f'nodes "ghost-{ns}" not found')
    finally:
        server.call("DELETE", f"/api/v1/nodes/dead-{ns}")

    # the pod and service proxies: loopback pod IPs are refused, a service needs endpoints
    make_pod(server, kubelet, ns, "loop", ip="127.0.0.1")
    status(f"{base}/loop/proxy/", 400, "BadRequest", "address not allowed")
    r = server.call("POST", f"/api/v1/namespaces/{ns}/services", {"metadata": {"name": "svc"},
                                                                  "spec": {"ports": [{"port": 80}]}})
    assert r.status == 201, r
    status(f"/api/v1/namespaces/{ns}/services/svc/proxy/x", 503, "ServiceUnavailable",
           'no endpoints available for service "svc"')
    status(f"/api/v1/namespaces/{ns}/services/nosvc/proxy/x", 404, "NotFound", 'services "nosvc" not found')

    # kubectl shows them as upstream's kubectl does
    kc = Kubectl("1.33", server, tmp_path)
    r = kc.run("-n", ns, "exec", "nowhere", "--", "true")
    assert r.returncode == 1 and "pod nowhere does not have a host assigned" in r.stderr, r.stderr
    r = kc.run("-n", ns, "logs", "web", "--previous")
    assert r.returncode == 1 and r.stderr.strip() == \
        'Error from server (BadRequest): previous terminated container "app" in pod "web" not found', r.stderr


def test_discovery_lists_connect_subresources(server):
    names = {r["name"]: r for r in server.call("GET", "/api/v1").json["resources"]}
    for sub, kind, verbs in [("pods/log", "Pod", ["get"]),
                             ("pods/exec", "PodExecOptions", ["create", "get"]),
                             ("pods/attach", "PodAttachOptions", ["create", "get"]),
                             ("pods/portforward", "PodPortForwardOptions", ["create", "get"]),
                             ("pods/proxy", "PodProxyOptions", ["create", "delete", "get", "patch", "update"]),
                             ("nodes/proxy", "NodeProxyOptions", ["create", "delete", "get", "patch", "update"]),
                             ("services/proxy", "ServiceProxyOptions", ["create", "delete", "get", "patch", "update"])]:
        assert names[sub]["kind"] == kind and names[sub]["verbs"] == verbs, names[sub]


def test_python_client_stream_exec(server, kubelet, ns):
    """The official kubernetes client's stream() (websocket-client, v4.channel.k8s.io)."""
    kubernetes = pytest.importorskip("kubernetes")
    from kubernetes.stream import stream

    make_pod(server, kubelet, ns, "py")
    api = kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config(server.kubeconfig))
    out = stream(api.connect_get_namespaced_pod_exec, "py", ns, command=["echo", "from python"],
                 stderr=True, stdin=False, stdout=True, tty=False, _request_timeout=10)
    assert out == "from python\n"
    resp = stream(api.connect_get_namespaced_pod_exec, "py", ns, command=["sh", "-c", "exit 7"],
                  stderr=True, stdin=False, stdout=True, tty=False, _preload_content=False, _request_timeout=10)
    resp.run_forever(timeout=10)
    assert resp.returncode == 7


def test_standalone_kubelet_looks_pods_up(server, ns, tmp_path):
    """`python -m kubeplane.sim.kubelet --register`: its own process, nodes registered with
    their endpoint, pods looked up in the API server when a request names them."""
    import sys
    node = f"solo-{ns}"[:60]
    p = subprocess.Popen([sys.executable, "-m", "kubeplane.sim.kubelet", "--kubeconfig", server.kubeconfig,
                          "--node", node, "--address", "127.0.0.5", "--register"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = _read_until(p, "kubelet", 20)
        assert line.startswith(f"node {node} kubelet 127.0.0.5:"), (line, p.poll())
        r = server.call("POST", f"/api/v1/namespaces/{ns}/pods", {
            "metadata": {"name": "solo", "annotations": {"kubeplane.io/log-lines": "hello from solo"}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]}})
        assert r.status == 201, r
        kc = Kubectl("1.33", server, tmp_path)
        r = kc.run("-n", ns, "logs", "solo", "--tail=1")
        assert (r.returncode, r.stdout) == (0, "hello from solo\n"), r.stderr
        r = kc.run("-n", ns, "exec", "solo", "--", "hostname")
        assert (r.returncode, r.stdout) == (0, "solo\n"), r.stderr
    finally:
        p.terminate()
        p.wait(10)
        server.call("DELETE", f"/api/v1/nodes/{node}")


def test_connect_requests_are_long_running_and_skip_flow_control():
    """upstream's long-running check (subresources attach, exec, log, portforward, proxy):
    no deadline, and APF lets them through untracked (a held exec takes no seat)."""
    from kubeplane.apiserver.server.filters import Admission
    from kubeplane.apiserver.server.requestinfo import request_info

    for path in ("/api/v1/namespaces/ns/pods/p/log", "/api/v1/namespaces/ns/pods/p/exec",
                 "/api/v1/namespaces/ns/pods/p/attach", "/api/v1/namespaces/ns/pods/p/portforward",
                 "/api/v1/namespaces/ns/pods/p/proxy/x/y", "/api/v1/nodes/n/proxy/healthz",
                 "/api/v1/namespaces/ns/services/s/proxy/"):
        ri = request_info("GET", path, "")
        assert ri.long_running and ri.verb == "get", path

    class NoSeats:
        async def admit(self, *a):
            raise AssertionError("a long-running request must not ask flow control for seats")

    adm = Admission(NoSeats())
    ri = request_info("POST", "/api/v1/namespaces/ns/pods/p/exec", "command=true")
    assert asyncio.run(adm.enter(ri, {}, 60.0)) is None
    assert not request_info("GET", "/api/v1/namespaces/ns/pods/p/status", "").long_running


def test_python_client_portforward(server, kubelet, ns):
    """The Python client's portforward(): the WebSocket channel protocol (v4.channel.k8s.io)."""
    kubernetes = pytest.importorskip("kubernetes")
    from kubernetes.stream import portforward

    make_pod(server, kubelet, ns, "pyfw")
    api = kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config(server.kubeconfig))
    pf = portforward(api.connect_get_namespaced_pod_portforward, "pyfw", ns, ports="8080")
    sock = pf.socket(8080)
    sock.settimeout(10)
    sock.sendall(b"echo through the python client")
    got = b""
    while len(got) < 30:
        got += sock.recv(100)
    assert got == b"echo through the python client"
    sock.close()
    assert pf.error(8080) is None
