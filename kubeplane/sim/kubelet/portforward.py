"""port-forward: the `portforward.k8s.io` protocol over SPDY/3.1, plain (kubectl 1.30 and
older: `Upgrade: SPDY/3.1`) or tunneled in WebSocket binary messages (kubectl 1.31+:
subprotocol `SPDY/3.1+portforward.k8s.io`).

For every local connection kubectl opens two streams with the same `requestID` and
`port` headers: `streamType: error` (which it closes at once and reads) and `streamType:
data`. Once both are here the kubelet connects the data stream to the pod's port: the
address in the pod's `kubeplane.io/port-forward-<port>` annotation, or, without one, an
echo that sends back what it receives. A failure is written on the error stream in the
kubelet's words ("error forwarding port N to pod ...") and kubectl shows it.
"""
from __future__ import annotations

import asyncio
from typing import Any

from . import spdy
from .http import Request, head
from .responder import forward_target
from .websocket import WebSocket

PROTOCOL = "portforward.k8s.io"
TUNNEL = "SPDY/3.1+" + PROTOCOL
PAIR_WAIT = 30.0       # upstream's streamCreationTimeout: how long one half waits for the other


class Forwarder:
    """Pairs a connection's error and data streams and forwards each pair."""

    def __init__(self, pod: dict[str, Any]):
        self.pod = pod
        md = pod.get("metadata") or {}
        self.pod_name = f"{md.get('name', '')}_{md.get('namespace', '')}"
        self.uid = md.get("uid", "")
        self.pairs: dict[str, dict[str, spdy.Stream]] = {}
        self.tasks: set[asyncio.Task] = set()

    def on_stream(self, s: spdy.Stream) -> None:
        rid = s.header("requestID") or str(s.id)
        kind = s.header("streamType")
        if kind not in ("error", "data"):
            s.reset()
            return
        pair = self.pairs.setdefault(rid, {})
        pair[kind] = s
        if len(pair) == 2:
            del self.pairs[rid]
            self._spawn(self._forward(pair["error"], pair["data"]))
        else:
            self._spawn(self._expire(rid))

    def _spawn(self, coro: Any) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(t)
        t.add_done_callback(self.tasks.discard)

    async def _expire(self, rid: str) -> None:
        await asyncio.sleep(PAIR_WAIT)
        for s in self.pairs.pop(rid, {}).values():
            s.reset()

    async def _forward(self, error: spdy.Stream, data: spdy.Stream) -> None:
        try:
            port = int(data.header("port"))
        except ValueError:
            error.write(f'invalid port header "{data.header("port")}"'.encode())
            error.close()
            data.reset()
            return
        try:
            target = forward_target(self.pod, port)
        except ValueError as e:
            target, problem = None, str(e)
        else:
            problem = ""
        if problem:
            self._fail(error, data, port, problem)
            return
        if target is None:
            await self._echo(data)
        else:
            try:
                reader, writer = await asyncio.open_connection(*target)
            except OSError as e:
                self._fail(error, data, port, f"failed to connect to {target[0]}:{target[1]}: {e.strerror or e}")
                return
            await self._splice(data, reader, writer)
        error.close()

    def _fail(self, error: spdy.Stream, data: spdy.Stream, port: int, why: str) -> None:
        error.write(f"error forwarding port {port} to pod {self.pod_name}, uid {self.uid}: {why}".encode())
        error.close()
        data.close()

    @staticmethod
    async def _echo(data: spdy.Stream) -> None:
        while chunk := await data.read():
            data.write(chunk)
            await data.drain()
        data.close()

    @staticmethod
    async def _splice(data: spdy.Stream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def up() -> None:
            try:
                while chunk := await data.read():
                    writer.write(chunk)
                    await writer.drain()
                if writer.can_write_eof():
                    writer.write_eof()
            except ConnectionError:
                pass

        async def down() -> None:
            try:
                while chunk := await reader.read(32 << 10):
                    data.write(chunk)
                    await data.drain()
            except ConnectionError:
                pass
            data.close()

        t_up = asyncio.ensure_future(up())
        await down()
        try:
            await asyncio.wait_for(t_up, 5.0)
        except asyncio.TimeoutError:
            t_up.cancel()
        writer.close()

    def close(self) -> None:
        for t in list(self.tasks):
            t.cancel()


async def serve_spdy(req: Request, pod: dict[str, Any]) -> None:
    w = req.writer
    if PROTOCOL not in req.values("X-Stream-Protocol-Version"):
        body = b"unable to upgrade: unable to negotiate protocol: client supports " + \
            str(req.values("X-Stream-Protocol-Version")).encode() + b", server supports [portforward.k8s.io]"
        w.write(head(403, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
                           ("Connection", "close")]) + body)
        await w.drain()
        return
    w.write(head(101, [("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1"), ("X-Stream-Protocol-Version", PROTOCOL)]))
    fwd = Forwarder(pod)
    session = spdy.Session(w.write, fwd.on_stream, w.drain)
    try:
        while data := await req.reader.read(64 << 10):
            await session.feed(data)
    except (ConnectionError, spdy.ProtocolError):
        pass
    finally:
        session.close()
        fwd.close()
        w.close()


async def serve_websocket(req: Request, pod: dict[str, Any]) -> None:
    ws = await WebSocket.accept(req, [TUNNEL])
    if ws is None:
        return
    fwd = Forwarder(pod)
    pending: list[bytes] = []
    flushing: list[asyncio.Task] = []

    def send(frame: bytes) -> None:      # one SPDY frame per binary message
        pending.append(frame)
        if not flushing or flushing[-1].done():
            flushing.append(asyncio.get_running_loop().create_task(flush()))

    async def flush() -> None:
        while pending:
            await ws.send(pending.pop(0))

    async def drain() -> None:
        await asyncio.sleep(0)
        if flushing and not flushing[-1].done():
            await asyncio.shield(flushing[-1])

    session = spdy.Session(send, fwd.on_stream, drain)
    try:
        while (msg := await ws.recv()) is not None:
            await session.feed(msg)
    except spdy.ProtocolError:
        pass
    finally:
        session.close()
        fwd.close()
        await drain()
        await ws.close()
