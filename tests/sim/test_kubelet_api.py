"""The simulated kubelet's HTTP API on its own, over real HTTPS on loopback: logs and
their parameters, exec over the WebSocket channel protocols, port-forward over SPDY to a
configured address, node routing by the address dialled, and the request bounds.
(The kubectl paths through the API server are in tests/apiserver/test_kubelet_proxy.py.)"""
from __future__ import annotations

import asyncio
import json
import ssl
import time

import pytest
from websockets.asyncio.client import connect

from kubeplane.sim.kubelet import KubeletServer
from kubeplane.sim.kubelet import spdy
from kubeplane.sim.kubelet.responder import format_time

START = 1_700_000_000.0       # the pods' containers started here (2023-11-14T22:13:20Z)
NOW = START + 100.0           # the kubelet's clock in these tests: 101 lines at 1 s


def _ctx() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def pod(name: str, node: str = "n1", annotations: dict | None = None, containers=("app",), restarts: int = 0) -> dict:
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(START))
    return {"metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "annotations": annotations or {}},
            "spec": {"nodeName": node, "containers": [{"name": c, "env": [{"name": "GREETING", "value": "hi"}]}
                                                      for c in containers]},
            "status": {"containerStatuses": [{"name": c, "restartCount": restarts,
                                              "state": {"running": {"startedAt": started}}} for c in containers]}}


@pytest.fixture
async def kubelet():
    k = KubeletServer(now=lambda: NOW)
    host, port = await k.add_node("n1", "127.0.0.1", 0)
    k.host, k.port = host, port
    yield k
    await k.close()


async def get(k: KubeletServer, path: str, host: str | None = None, port: int | None = None) -> tuple[int, bytes]:
    r, w = await asyncio.open_connection(host or k.host, port or k.port, ssl=_ctx())
    w.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    data = await asyncio.wait_for(r.read(), 10)
    w.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def test_logs_and_their_parameters(kubelet):
    kubelet.set_pod(pod("p"))
    code, body = await get(kubelet, "/containerLogs/ns/p/app")
    lines = body.decode().splitlines()
    assert code == 200 and len(lines) == 101 and lines[0] == "p app line 0" and lines[-1] == "p app line 100"
    assert (await get(kubelet, "/containerLogs/ns/p/app"))[1] == body          # deterministic

    _, body = await get(kubelet, "/containerLogs/ns/p/app?tailLines=2&timestamps=true")
    assert body.decode().splitlines() == [f"{format_time(START + 99)} p app line 99",
                                          f"{format_time(START + 100)} p app line 100"]
    assert format_time(START + 99) == "2023-11-14T22:14:59.000000000Z"
    _, body = await get(kubelet, "/containerLogs/ns/p/app?sinceSeconds=3")
    assert body.decode().splitlines() == ["p app line 97", "p app line 98", "p app line 99", "p app line 100"]
    _, body = await get(kubelet, "/containerLogs/ns/p/app?sinceTime=2023-11-14T22:14:55Z&tailLines=100")
    assert body.decode().splitlines()[0] == "p app line 95"
    _, body = await get(kubelet, "/containerLogs/ns/p/app?limitBytes=20&follow=true")
    assert body == b"p app line 0\np app l"                  # follow ends when the limit is reached
    _, body = await get(kubelet, "/containerLogs/ns/p/app?tailLines=0")
    assert body == b""

    kubelet.set_pod(pod("q", annotations={"kubeplane.io/log-lines": "GET /\nPOST /x"}))
    _, body = await get(kubelet, "/containerLogs/ns/q/app?tailLines=3")
    assert body.decode().splitlines() == ["GET /", "POST /x", "GET /"]      # lines 98, 99, 100

    assert await get(kubelet, "/containerLogs/ns/p/app?tailLines=x") == (400, b'tailLines: invalid value "x"')
    assert await get(kubelet, "/containerLogs/ns/p/app?previous=true") == \
        (400, b'previous terminated container "app" in pod "p" not found')
    kubelet.set_pod(pod("r", restarts=1))
    assert (await get(kubelet, "/containerLogs/ns/r/app?previous=true&tailLines=1"))[1] == b"r app line 100\n"
    assert await get(kubelet, "/containerLogs/ns/nope/app") == (404, b'pod "nope" does not exist')
    assert await get(kubelet, "/containerLogs/ns/p/zzz") == (404, b'container "zzz" not found in pod "p"')


async def test_logs_follow_streams_new_lines():
    t0 = time.time()
    k = KubeletServer()
    host, port = await k.add_node("n1", "127.0.0.1", 0)
    p = pod("f", annotations={"kubeplane.io/log-interval": "0.1"})
    p["status"]["containerStatuses"][0]["state"]["running"]["startedAt"] = \
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 - 1))
    k.set_pod(p)
    r, w = await asyncio.open_connection(host, port, ssl=_ctx())
    w.write(b"GET /containerLogs/ns/f/app?follow=true&tailLines=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    await r.readuntil(b"\r\n\r\n")
    got = [await asyncio.wait_for(r.readline(), 5) for _ in range(4)]
    w.close()
    await k.close()
    idx = [int(line.split()[-1]) for line in got]
    assert idx == list(range(idx[0], idx[0] + 4)), got
    assert time.time() - t0 < 5


async def _exec(k: KubeletServer, query: str, protocols: list[str], stdin: bytes | None = None,
                pod_name: str = "p") -> tuple[str, dict[int, bytes]]:
    url = f"wss://{k.host}:{k.port}/exec/ns/{pod_name}/app?{query}"
    got: dict[int, bytes] = {}
    async with connect(url, ssl=_ctx(), subprotocols=protocols) as ws:
        if stdin is not None:
            await ws.send(b"\x00" + stdin)
            await ws.send(b"\xff\x00")
        async with asyncio.timeout(10):
            async for m in ws:
                got[m[0]] = got.get(m[0], b"") + m[1:]
        return ws.subprotocol, got


async def test_exec_over_websocket_channels(kubelet):
    kubelet.set_pod(pod("p"))
    proto, got = await _exec(kubelet, "command=echo&command=hello&output=1&error=1",
                             ["v5.channel.k8s.io", "v4.channel.k8s.io"])
    assert proto == "v5.channel.k8s.io"
    assert got[1] == b"hello\n" and json.loads(got[3]) == {"metadata": {}, "status": "Success"}

    _, got = await _exec(kubelet, "command=cat&input=1&output=1", ["v5.channel.k8s.io"], stdin=b"typed\n")
    assert got[1] == b"typed\n"

    proto, got = await _exec(kubelet, "command=sh&command=-c&command=exit%2042&output=1&error=1",
                             ["v4.channel.k8s.io"])
    assert proto == "v4.channel.k8s.io"
    st = json.loads(got[3])
    assert st["status"] == "Failure" and st["reason"] == "NonZeroExitCode"
    assert st["details"]["causes"] == [{"reason": "ExitCode", "message": "42"}]
    assert st["message"] == "command terminated with non-zero exit code: error executing command [sh -c exit 42], " \
                            "exit code 42"

    _, got = await _exec(kubelet, "command=env&output=1", ["v4.channel.k8s.io"])
    assert b"GREETING=hi\n" in got[1] and b"HOSTNAME=p\n" in got[1]

    # the oldest protocol: a message on the error channel only when something failed
    _, got = await _exec(kubelet, "command=true&output=1", ["channel.k8s.io"])
    assert 3 not in got
    _, got = await _exec(kubelet, "command=nope&output=1", ["channel.k8s.io"])
    assert got[3] == b'error executing command in container: exec: "nope": executable file not found in $PATH'


async def test_exec_scripted_and_real_commands(kubelet):
    kubelet.set_pod(pod("s", annotations={"kubeplane.io/exec": json.dumps(
        {"nginx -t": {"stdout": "syntax is ok\n", "stderr": "warn\n", "exitCode": 2}})}))
    _, got = await _exec(kubelet, "command=nginx&command=-t&output=1&error=1", ["v5.channel.k8s.io"], pod_name="s")
    assert got[1] == b"syntax is ok\n" and got[2] == b"warn\n"
    assert json.loads(got[3])["details"]["causes"][0]["message"] == "2"

    # no real program runs unless the pod says so
    _, got = await _exec(kubelet, "command=uname&output=1&error=1", ["v5.channel.k8s.io"], pod_name="s")
    assert b"executable file not found" in got[3]
    kubelet.set_pod(pod("real", annotations={"kubeplane.io/exec-real-commands": "true"}))
    _, got = await _exec(kubelet, "command=uname&output=1&error=1", ["v5.channel.k8s.io"], pod_name="real")
    assert b"executable file not found" in got[3]         # the kubelet did not allow real commands
    kubelet.allow_real_commands = True
    _, got = await _exec(kubelet, "command=uname&output=1&error=1", ["v5.channel.k8s.io"], pod_name="real")
    assert got[1] == b"Linux\n" and json.loads(got[3])["status"] == "Success"


class SpdyClient:
    """Just enough of a SPDY/3.1 client (spdystream's side) to drive port-forward."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.r, self.w = reader, writer
        self.codec = spdy.Codec()
        self.next_id = 1
        self.data: dict[int, bytes] = {}
        self.fin: set[int] = set()
        self.replies: set[int] = set()
        self.pings: list[int] = []

    def open(self, headers: dict[str, str], fin: bool = False) -> int:
        sid, self.next_id = self.next_id, self.next_id + 2
        self.w.write(self.codec.syn_stream(sid, {k: [v] for k, v in headers.items()}, fin=fin))
        return sid

    async def until(self, done) -> None:
        async with asyncio.timeout(10):
            while not done():
                chunk = await self.r.read(65536)
                assert chunk, "connection closed"
                for f in self.codec.feed(chunk):
                    if f.kind == spdy.SYN_REPLY:
                        self.replies.add(f.stream_id)
                    elif f.kind == spdy.PING:
                        self.pings.append(f.value)
                    elif f.kind == 0:
                        self.data[f.stream_id] = self.data.get(f.stream_id, b"") + f.data
                        if f.flags & spdy.FLAG_FIN:
                            self.fin.add(f.stream_id)


async def _portforward(k: KubeletServer, pod_name: str) -> SpdyClient:
    r, w = await asyncio.open_connection(k.host, k.port, ssl=_ctx())
    w.write(f"POST /portForward/ns/{pod_name} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
            "X-Stream-Protocol-Version: portforward.k8s.io\r\nContent-Length: 0\r\n\r\n".encode())
    head = await r.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 ") and b"X-Stream-Protocol-Version: portforward.k8s.io" in head, head
    return SpdyClient(r, w)


async def test_portforward_over_spdy_to_the_configured_address(kubelet):
    async def shout(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write((await r.read(100)).upper())
        await w.drain()
        w.close()

    target = await asyncio.start_server(shout, "127.0.0.1", 0)
    tport = target.sockets[0].getsockname()[1]
    kubelet.set_pod(pod("pf", annotations={"kubeplane.io/port-forward-80": f"127.0.0.1:{tport}",
                                           "kubeplane.io/port-forward-81": "10.0.0.1:80"}))
    c = await _portforward(kubelet, "pf")
    for rid, port in (("0", 80), ("1", 8080)):          # 80: the annotation's server; 8080: the echo
        err = c.open({"streamType": "error", "port": str(port), "requestID": rid}, fin=True)
        data = c.open({"streamType": "data", "port": str(port), "requestID": rid})
        await c.until(lambda: data in c.replies)
        c.w.write(c.codec.data(data, b"hello port %d" % port, fin=True))
        await c.until(lambda: data in c.fin)
        assert c.data[data] == (b"HELLO PORT 80" if port == 80 else b"hello port 8080")
        await c.until(lambda: err in c.fin)
        assert c.data.get(err, b"") == b""

    # a target that is not loopback is refused on the error stream, in the kubelet's words
    err = c.open({"streamType": "error", "port": "81", "requestID": "2"}, fin=True)
    data = c.open({"streamType": "data", "port": "81", "requestID": "2"})
    await c.until(lambda: err in c.fin)
    assert c.data[err] == (b"error forwarding port 81 to pod pf_ns, uid uid-pf: kubeplane.io/port-forward-81: "
                           b"10.0.0.1:80 is not a loopback address")
    # PINGs (odd ids: the client's) come back
    c.w.write(c.codec.ping(7))
    await c.until(lambda: c.pings)
    assert c.pings == [7]
    c.w.close()
    target.close()


def test_spdy_header_blocks_round_trip():
    """Each direction keeps one zlib context: several blocks in a row inflate in order."""
    a, b = spdy.Codec(), spdy.Codec()
    wire = a.syn_stream(1, {"streamType": ["data"], "port": ["80"]}) + a.syn_stream(3, {"streamType": ["error"]}) \
        + a.data(1, b"x", fin=True) + a.ping(5)
    frames = b.feed(wire[:7]) + b.feed(wire[7:])
    assert [(f.kind, f.stream_id) for f in frames] == [(spdy.SYN_STREAM, 1), (spdy.SYN_STREAM, 3), (0, 1),
                                                       (spdy.PING, 0)]
    assert frames[0].headers == {"streamtype": ["data"], "port": ["80"]} and frames[2].flags == spdy.FLAG_FIN
    assert frames[3].value == 5
    with pytest.raises(spdy.ProtocolError):
        spdy.Codec().feed(spdy.Codec.control(spdy.SYN_STREAM, 0, b"\x00\x00\x00\x01" + b"\x00" * 6 + b"garbage"))


async def test_nodes_are_told_apart_by_the_address_dialled():
    k = KubeletServer()
    try:
        _, port = await k.add_node("a", "127.0.0.3", 0)
        assert await k.add_node("b", "127.0.0.4", port) == ("127.0.0.4", port)
        k.set_pod(pod("pa", node="a"))
        k.set_pod(pod("pb", node="b"))
        _, body = await get(k, "/pods", "127.0.0.3", port)
        assert [p["metadata"]["name"] for p in json.loads(body)["items"]] == ["pa"]
        _, body = await get(k, "/metrics", "127.0.0.4", port)
        assert b"kubelet_running_pods 1\n" in body
        assert (await get(k, "/containerLogs/ns/pa/app?tailLines=0", "127.0.0.3", port))[0] == 200
        # node b's kubelet does not know node a's pod
        assert await get(k, "/containerLogs/ns/pa/app", "127.0.0.4", port) == (404, b'pod "pa" does not exist')
        assert await get(k, "/healthz", "127.0.0.4", port) == (200, b"ok")
        assert (await get(k, "/nothing/here", "127.0.0.4", port))[0] == 404
    finally:
        await k.close()


async def test_request_bounds(kubelet):
    r, w = await asyncio.open_connection(kubelet.host, kubelet.port, ssl=_ctx())
    w.write(b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * (100 << 10) + b"\r\n\r\n")
    head = await asyncio.wait_for(r.read(), 10)
    assert head.startswith(b"HTTP/1.1 431 ")
    w.close()
    r, w = await asyncio.open_connection(kubelet.host, kubelet.port, ssl=_ctx())
    w.write(b"POST /healthz HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n")
    assert (await asyncio.wait_for(r.read(), 10)).startswith(b"HTTP/1.1 413 ")
    w.close()
