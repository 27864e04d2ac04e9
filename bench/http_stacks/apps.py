"""The candidate servers of ``python -m bench http``: one app per HTTP stack.

Every stack serves the same endpoints (``serve.py`` starts one of them):

* ``GET /api/v1/namespaces/default/pods/p1``: a fixed pod, ``POD_BYTES`` (~2.3 KB JSON),
  ``Content-Type: application/json``;
* ``GET /api/v1/pods?watch=1``: a chunked response that stays open; every fan-out event
  writes one ``{"type":"MODIFIED","object":{...}}\\n`` line to it;
* ``POST /_fanout?n=K``: K events, each serialized once (orjson) and handed to every open
  watch stream before the response is sent;
* ``GET /_stats``: JSON with the open streams, the largest backlog the app can see on one
  stream (bytes), how many streams were closed as slow, and the serving pid;
* ``POST /_config?slow_limit=BYTES``: from then on a fan-out closes a stream whose backlog
  is above BYTES (0, the default, never closes).

Two ways to write a watch stream:

* through the framework (``QueueStream``): each stream has a queue and the handler
  coroutine awaits the framework's write (``StreamResponse.write``, ASGI ``send``, RSGI
  ``send_bytes``) for each line; the fan-out appends to every queue and wakes its task.
  The backlog the app sees is the bytes queued and not yet accepted by the framework.
* directly (``DirectStream``): the fan-out frames the line as one HTTP chunk, once, and
  calls ``transport.write`` of every stream; the backlog is the transport's write buffer
  (``get_write_buffer_size()``).  Used by the raw asyncio server and by aiohttp when
  started as ``aiohttp-direct`` (the handler sends the headers through aiohttp, then
  parks until the stream closes).
"""

from __future__ import annotations

import asyncio
import collections
import email.utils
import os
import time

import httptools
import orjson

POD_PATH = "/api/v1/namespaces/default/pods/p1"
WATCH_PATH = "/api/v1/pods"

POD = {
    "kind": "Pod",
    "apiVersion": "v1",
    "metadata": {
        "name": "p1",
        "namespace": "default",
        "uid": "3c5f2a7e-8d41-4a62-9a0e-6f1b2d7c9e14",
        "resourceVersion": "184467",
        "creationTimestamp": "2024-05-14T09:21:37Z",
        "generateName": "web-7d4b9c6f5-",
        "labels": {"app": "web", "pod-template-hash": "7d4b9c6f5", "tier": "frontend"},
        "annotations": {
            "kubectl.kubernetes.io/restartedAt": "2024-05-14T09:21:30Z",
            "prometheus.io/scrape": "true",
            "prometheus.io/port": "9102",
        },
        "ownerReferences": [{
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d4b9c6f5",
            "uid": "9b2e4c1d-0f3a-4e5b-8c7d-2a1f6e9b3c48", "controller": True, "blockOwnerDeletion": True,
        }],
    },
    "spec": {
        "containers": [{
            "name": "web",
            "image": "registry.example.com/frontend/web:1.24.3",
            "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"},
                      {"name": "metrics", "containerPort": 9102, "protocol": "TCP"}],
            "env": [{"name": "LOG_LEVEL", "value": "info"}, {"name": "CACHE_SIZE", "value": "256Mi"}],
            "resources": {"limits": {"cpu": "500m", "memory": "512Mi"}, "requests": {"cpu": "250m", "memory": "256Mi"}},
            "volumeMounts": [{"name": "kube-api-access-x7q2m", "readOnly": True,
                              "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
            "imagePullPolicy": "IfNotPresent",
        }],
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst",
        "serviceAccountName": "default",
        "nodeName": "node-0042.cluster.local",
        "schedulerName": "default-scheduler",
        "priority": 0,
        "enableServiceLinks": True,
        "preemptionPolicy": "PreemptLowerPriority",
    },
    "status": {
        "phase": "Running",
        "conditions": [
            {"type": "Ready", "status": "True", "lastProbeTime": None, "lastTransitionTime": "2024-05-14T09:21:41Z"},
            {"type": "ContainersReady", "status": "True", "lastProbeTime": None, "lastTransitionTime": "2024-05-14T09:21:41Z"},
        ],
        "hostIP": "10.0.4.42",
        "podIP": "10.244.17.93",
        "podIPs": [{"ip": "10.244.17.93"}],
        "startTime": "2024-05-14T09:21:37Z",
        "containerStatuses": [{
            "name": "web", "state": {"running": {"startedAt": "2024-05-14T09:21:39Z"}}, "lastState": {},
            "ready": True, "restartCount": 0, "image": "registry.example.com/frontend/web:1.24.3",
            "imageID": "registry.example.com/frontend/web@sha256:4f7c1e2d9a8b3c6e5f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60",
            "containerID": "containerd://8e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7",
            "started": True,
        }],
        "qosClass": "Burstable",
    },
}

POD_BYTES = orjson.dumps(POD)  # the GET body, serialized once at import
JSON = "application/json"


def qparam(qs: bytes | str, name: str, default: int = 0) -> int:
    """An integer query parameter (``n=5`` in ``a=1&n=5``)."""
    if isinstance(qs, bytes):
        qs = qs.decode("latin-1")
    for part in qs.split("&"):
        key, _, val = part.partition("=")
        if key == name:
            return int(val or default)
    return default


class QueueStream:
    """A watch stream written by its handler coroutine through the framework."""

    __slots__ = ("q", "pending", "waiter", "closed", "abort")

    def __init__(self, abort) -> None:
        self.q: collections.deque[bytes] = collections.deque()
        self.pending = 0  # bytes queued, not yet accepted by the framework's write
        self.waiter: asyncio.Future | None = None
        self.closed = False
        self.abort = abort  # ends the connection when the app gives up on the stream

    def push(self, line: bytes) -> None:
        self.q.append(line)
        self.pending += len(line)
        w = self.waiter
        if w is not None:
            self.waiter = None
            if not w.done():
                w.set_result(None)

    async def get(self) -> bytes | None:
        """The next line, or None once the stream is closed."""
        while not self.q:
            if self.closed:
                return None
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
        if self.closed:
            return None
        return self.q.popleft()

    def sent(self, line: bytes) -> None:
        self.pending -= len(line)

    def close(self) -> None:
        self.closed = True
        self.q.clear()
        self.pending = 0
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)


class DirectStream:
    """A watch stream written by the fan-out with ``transport.write`` (pre-framed chunks)."""

    __slots__ = ("transport", "done")

    def __init__(self, transport, done: asyncio.Future | None = None) -> None:
        self.transport = transport
        self.done = done  # resolved when the stream ends (aiohttp-direct's parked handler)


class Hub:
    """The open watch streams and the fan-out."""

    def __init__(self) -> None:
        self.queued: set[QueueStream] = set()
        self.direct: dict[object, DirectStream] = {}
        self.rv = 184467
        self.slow_limit = 0
        self.slow_closed = 0
        self.events = 0

    def event_line(self, exact: bool = True) -> bytes:
        self.rv += 1
        obj = dict(POD)
        obj["metadata"] = {**POD["metadata"], "resourceVersion": str(self.rv)}
        line = orjson.dumps({"type": "MODIFIED", "object": obj}, option=orjson.OPT_APPEND_NEWLINE)
        # orjson returns a bytes object shrunk from a larger buffer: kept alive (queued for a
        # slow stream) each costs ~8 KiB of RSS for 2.3 KB (bench/http_stacks/checks.py
        # orjson-retention).  An exact-size copy costs its size.
        return memoryview(line).tobytes() if exact else line

    def fanout(self, n: int) -> None:
        limit = self.slow_limit
        for _ in range(n):
            line = self.event_line()  # serialized once for every stream
            self.events += 1
            if self.direct:
                chunk = b"%x\r\n%s\r\n" % (len(line), line)  # framed once too
                for key, ds in list(self.direct.items()):
                    t = ds.transport
                    if t.is_closing():
                        self.drop_direct(key)
                    elif limit and t.get_write_buffer_size() > limit:
                        self.slow_closed += 1
                        t.abort()
                        self.drop_direct(key)
                    else:
                        t.write(chunk)
            if self.queued:
                for s in list(self.queued):
                    if limit and s.pending + len(line) > limit:
                        self.slow_closed += 1
                        self.queued.discard(s)
                        s.close()
                        s.abort()
                    else:
                        s.push(line)

    def drop_direct(self, key) -> None:
        ds = self.direct.pop(key, None)
        if ds is not None and ds.done is not None and not ds.done.done():
            ds.done.set_result(None)

    def stats(self) -> bytes:
        for key, ds in list(self.direct.items()):
            if ds.transport.is_closing():
                self.drop_direct(key)
        backlog = max(
            [ds.transport.get_write_buffer_size() for ds in self.direct.values()]
            + [s.pending for s in self.queued] + [0]
        )
        return orjson.dumps({
            "streams": len(self.direct) + len(self.queued), "max_backlog": backlog,
            "slow_closed": self.slow_closed, "events": self.events, "pid": os.getpid(),
        })

    def configure(self, qs) -> bytes:
        self.slow_limit = qparam(qs, "slow_limit", 0)
        return b'{"slow_limit":%d}' % self.slow_limit


HUB = Hub()


# --- aiohttp ---------------------------------------------------------------------------------


def aiohttp_app(direct: bool):
    from aiohttp import web

    async def get_pod(request: web.Request) -> web.Response:
        return web.Response(body=POD_BYTES, content_type=JSON)

    async def watch(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": JSON})
        resp.enable_chunked_encoding()
        await resp.prepare(request)  # StreamResponse sends its headers here
        if direct:
            t = request.transport
            done = asyncio.get_running_loop().create_future()
            HUB.direct[t] = DirectStream(t, done)
            try:
                await done
            finally:
                HUB.drop_direct(t)
            return resp
        t = request.transport
        s = QueueStream(abort=t.abort)
        HUB.queued.add(s)
        try:
            while (line := await s.get()) is not None:
                await resp.write(line)  # blocks in drain() while the transport is paused
                s.sent(line)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            HUB.queued.discard(s)
            s.close()
        return resp

    async def fanout(request: web.Request) -> web.Response:
        HUB.fanout(qparam(request.query_string, "n", 1))
        return web.Response(body=b"{}", content_type=JSON)

    async def stats(request: web.Request) -> web.Response:
        return web.Response(body=HUB.stats(), content_type=JSON)

    async def config(request: web.Request) -> web.Response:
        return web.Response(body=HUB.configure(request.query_string), content_type=JSON)

    app = web.Application()
    app.router.add_get(POD_PATH, get_pod)
    app.router.add_get(WATCH_PATH, watch)
    app.router.add_post("/_fanout", fanout)
    app.router.add_get("/_stats", stats)
    app.router.add_post("/_config", config)
    return app


# --- ASGI (uvicorn, granian) -------------------------------------------------------------------

_ASGI_JSON = [(b"content-type", b"application/json")]


async def _asgi_small(send, body: bytes, status: int = 200) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": _ASGI_JSON + [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


async def _asgi_disconnect(receive, s: QueueStream) -> None:
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            HUB.queued.discard(s)
            s.close()
            return


async def asgi_app(scope, receive, send) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == POD_PATH:
        await _asgi_small(send, POD_BYTES)
    elif path == WATCH_PATH:
        await send({"type": "http.response.start", "status": 200, "headers": _ASGI_JSON})
        # An empty body message: granian sends the headers only with the first body
        # message (a watch client waits for them); uvicorn writes nothing for it.
        await send({"type": "http.response.body", "body": b"", "more_body": True})
        s = QueueStream(abort=asyncio.current_task().cancel)
        HUB.queued.add(s)
        gone = asyncio.create_task(_asgi_disconnect(receive, s))
        try:
            while (line := await s.get()) is not None:
                await send({"type": "http.response.body", "body": line, "more_body": True})
                s.sent(line)
        except asyncio.CancelledError:  # closed as slow: the server closes the connection
            pass
        finally:
            HUB.queued.discard(s)
            s.close()
            gone.cancel()
    elif path == "/_fanout":
        HUB.fanout(qparam(scope["query_string"], "n", 1))
        await _asgi_small(send, b"{}")
    elif path == "/_stats":
        await _asgi_small(send, HUB.stats())
    elif path == "/_config":
        await _asgi_small(send, HUB.configure(scope["query_string"]))
    else:
        await _asgi_small(send, b"{}", 404)


# --- RSGI (granian) ----------------------------------------------------------------------------

_RSGI_JSON = [("content-type", JSON)]


async def _rsgi_disconnect(proto, s: QueueStream) -> None:
    await proto.client_disconnect()
    HUB.queued.discard(s)
    s.close()


async def rsgi_app(scope, proto) -> None:
    if scope.proto != "http":
        return
    path = scope.path
    if path == POD_PATH:
        proto.response_bytes(200, _RSGI_JSON, POD_BYTES)
    elif path == WATCH_PATH:
        transport = proto.response_stream(200, _RSGI_JSON)
        s = QueueStream(abort=asyncio.current_task().cancel)
        HUB.queued.add(s)
        gone = asyncio.create_task(_rsgi_disconnect(proto, s))
        try:
            while (line := await s.get()) is not None:
                await transport.send_bytes(line)
                s.sent(line)
        except (asyncio.CancelledError, RuntimeError):  # closed as slow, or the client went away
            pass
        finally:
            HUB.queued.discard(s)
            s.close()
            gone.cancel()
    elif path == "/_fanout":
        HUB.fanout(qparam(scope.query_string, "n", 1))
        proto.response_bytes(200, _RSGI_JSON, b"{}")
    elif path == "/_stats":
        proto.response_bytes(200, _RSGI_JSON, HUB.stats())
    elif path == "/_config":
        proto.response_bytes(200, _RSGI_JSON, HUB.configure(scope.query_string))
    else:
        proto.response_bytes(404, _RSGI_JSON, b"{}")


# --- raw asyncio: asyncio.Protocol + httptools -------------------------------------------------


class _Date:
    """The Date header, formatted at most once a second (as the frameworks do)."""

    def __init__(self) -> None:
        self.second = 0
        self.value = b""

    def get(self) -> bytes:
        now = int(time.time())
        if now != self.second:
            self.second = now
            self.value = email.utils.formatdate(now, usegmt=True).encode()
        return self.value


_DATE = _Date()


def _raw_response(body: bytes, status: bytes = b"200 OK") -> bytes:
    return b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nDate: %s\r\n\r\n%s" % (
        status, len(body), _DATE.get(), body)


class RawHTTP(asyncio.Protocol):
    """HTTP/1.1 keep-alive server protocol: httptools parses, responses are hand-written."""

    __slots__ = ("transport", "parser", "url", "headers")

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        HUB.direct.pop(self.transport, None)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(_raw_response(b'{"error":"bad request"}', b"400 Bad Request"))
            self.transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        # Collected (as a real server must, for Authorization, Accept...) though unused here.
        self.headers.append((name, value))

    def on_message_complete(self) -> None:
        t = self.transport
        path, _, qs = self.url.partition(b"?")
        if path == b"/api/v1/namespaces/default/pods/p1":
            t.write(_raw_response(POD_BYTES))
        elif path == b"/api/v1/pods":
            t.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nDate: %s\r\n\r\n"
                    % _DATE.get())
            HUB.direct[t] = DirectStream(t)
            return
        elif path == b"/_fanout":
            HUB.fanout(qparam(qs, "n", 1))
            t.write(_raw_response(b"{}"))
        elif path == b"/_stats":
            t.write(_raw_response(HUB.stats()))
        elif path == b"/_config":
            t.write(_raw_response(HUB.configure(qs)))
        else:
            t.write(_raw_response(b"{}", b"404 Not Found"))
        if not self.parser.should_keep_alive():
            t.close()
