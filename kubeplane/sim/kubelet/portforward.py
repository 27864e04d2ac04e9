"""port-forward: the `portforward.k8s.io` protocol over SPDY/3.1, plain (kubectl 1.30 and
older: `Upgrade: SPDY/3.1`) or tunneled in WebSocket binary messages (kubectl 1.31+:
subprotocol `SPDY/3.1+portforward.k8s.io`); and the WebSocket channel form of
`v4.channel.k8s.io` that other clients (the Python client's `portforward()`) use: the ports
come in the `port` query parameter, port i has data channel 2i and error channel 2i+1, and
each channel's first message is its port (two bytes, little-endian); one connection per port.

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
CHANNELS = ("v4.channel.k8s.io", "channel.k8s.io")
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
        error.write(self.error_text(port, why).encode())
        error.close()
        data.close()

    def error_text(self, port: int, why: str) -> str:
        return f"error forwarding port {port} to pod {self.pod_name}, uid {self.uid}: {why}"

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
    ws = await WebSocket.accept(req, [TUNNEL, *CHANNELS])
    if ws is None:
        return
    if ws.subprotocol != TUNNEL:
        await _serve_channels(ws, req, pod)
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


async def _serve_channels(ws: WebSocket, req: Request, pod: dict[str, Any]) -> None:
    """The channel form: one connection per port for the WebSocket's lifetime."""
    try:
        ports = [int(p) for v in req.query.get("port", []) for p in v.split(",") if p]
    except ValueError:
        ports = []
    fwd = Forwarder(pod)
    inbox: list[asyncio.Queue[bytes]] = [asyncio.Queue(16) for _ in ports]
    for i, port in enumerate(ports):             # every channel starts with its port number
        await ws.send(bytes([2 * i]) + port.to_bytes(2, "little"))
        await ws.send(bytes([2 * i + 1]) + port.to_bytes(2, "little"))

    async def one(i: int, port: int) -> None:
        async def out(data: bytes) -> None:
            await ws.send(bytes([2 * i]) + data)
        try:
            target = forward_target(pod, port)
            if target is None:
                while chunk := await inbox[i].get():
                    await out(chunk)
                return
            reader, writer = await asyncio.open_connection(*target)
        except (ValueError, OSError) as e:
            why = str(e) if isinstance(e, ValueError) else f"failed to connect to {target}: {e.strerror or e}"
            await ws.send(bytes([2 * i + 1]) + fwd.error_text(port, why).encode())
            return

        async def up() -> None:
            while chunk := await inbox[i].get():
                writer.write(chunk)
                await writer.drain()
        t = asyncio.ensure_future(up())
        try:
            while chunk := await reader.read(32 << 10):
                await out(chunk)
        except ConnectionError:
            pass
        finally:
            t.cancel()
            writer.close()

    workers = [asyncio.ensure_future(one(i, p)) for i, p in enumerate(ports)]
    try:
        while (msg := await ws.recv()) is not None:
            ch = msg[0] if msg else 255
            if ch % 2 == 0 and ch // 2 < len(ports) and len(msg) > 1:
                await inbox[ch // 2].put(msg[1:])
    finally:
        for q in inbox:
            if not q.full():
                q.put_nowait(b"")
        for w in workers:
            w.cancel()
        await ws.close()
