"""A server-side WebSocket on an accepted kubelet request: the `websockets` library's
sans-I/O protocol (handshake, framing, ping/pong, close) driven by asyncio streams.

Messages are what Kubernetes' channel protocols need: binary, reassembled from their
frames (gorilla/websocket, kubectl's library, fragments a message past its 4 KiB write
buffer), at most `MAX_MESSAGE` bytes each.
"""
from __future__ import annotations

import asyncio
import re
from typing import Sequence

from websockets.datastructures import Headers
from websockets.frames import Opcode
from websockets.http11 import Request as WSRequest
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

from .http import Request

MAX_MESSAGE = 1 << 20
_NOT_TOKEN = re.compile(r"[^A-Za-z0-9!#$%&'*+.^_`|~-]")


def _token(subprotocol: str) -> str:
    """A subprotocol as an RFC 7230 token: kubectl offers `SPDY/3.1+portforward.k8s.io`,
    which Go accepts and the websockets library's parser does not ("/" is no token
    character); the handshake goes through with a stand-in, and the answer names the
    original."""
    return _NOT_TOKEN.sub("-", subprotocol)


def is_websocket(req: Request) -> bool:
    return req.headers.get("upgrade", "").lower() == "websocket" and \
        "upgrade" in req.headers.get("connection", "").lower()


class WebSocket:
    def __init__(self, req: Request, proto: ServerProtocol):
        self.req = req
        self.proto = proto
        self.subprotocol: str = proto.subprotocol or ""
        self._parts: list[bytes] = []
        self._ready: list[bytes] = []
        self.closed = False
        self._reading = False
        self._gone = asyncio.Event()     # set once recv() has seen the end

    @classmethod
    async def accept(cls, req: Request, subprotocols: Sequence[str]) -> "WebSocket | None":
        """Complete the handshake choosing the first of `subprotocols` the client offers;
        None when the handshake failed (the error response has been written)."""
        originals = {_token(s): s for s in subprotocols}
        proto = ServerProtocol(subprotocols=[Subprotocol(t) for t in originals], max_size=MAX_MESSAGE)
        # the protocol parses the handshake itself: hand it the head as it came (subprotocols as tokens)
        target = req.path + (f"?{req.raw_query}" if req.raw_query else "")
        items = [(k, ", ".join(_token(p.strip()) for p in v.split(",")) if k.lower() == "sec-websocket-protocol"
                  else v) for k, v in req.header_items]
        raw = f"GET {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in items) + "\r\n"
        proto.receive_data(raw.encode("latin-1", "replace"))
        wreq = next((e for e in proto.events_received() if isinstance(e, WSRequest)), None)
        if wreq is None:
            return None
        resp = proto.accept(wreq)
        chosen = originals.get(proto.subprotocol or "", "")
        if resp.status_code == 101 and chosen:
            del resp.headers["Sec-WebSocket-Protocol"]
            resp.headers["Sec-WebSocket-Protocol"] = chosen
        proto.send_response(resp)
        ws = cls(req, proto)
        await ws._flush()
        if resp.status_code != 101:
            return None
        ws.subprotocol = chosen
        return ws

    async def _flush(self) -> None:
        w = self.req.writer
        for b in self.proto.data_to_send():
            if b:
                w.write(b)
            else:                          # the protocol asks for the TCP half-close
                self.closed = True
        try:
            await w.drain()
        except ConnectionError:
            self.closed = True

    async def recv(self) -> bytes | None:
        """The next binary (or text) message; None once the connection is closed.
        One task reads at a time."""
        self._reading = True
        try:
            return await self._recv()
        finally:
            self._reading = False

    async def _recv(self) -> bytes | None:
        while not self._ready:
            if self.closed or self.proto.state is State.CLOSED:
                self._gone.set()
                return None
            try:
                data = await self.req.reader.read(64 << 10)
            except ConnectionError:
                data = b""
            if data:
                self.proto.receive_data(data)
            else:
                self.proto.receive_eof()
            for ev in self.proto.events_received():
                if ev.opcode in (Opcode.BINARY, Opcode.TEXT, Opcode.CONT):
                    self._parts.append(ev.data)
                    if ev.fin:
                        self._ready.append(b"".join(self._parts))
                        self._parts = []
            await self._flush()             # pongs, close replies
            if not data:
                self.closed = True
        return self._ready.pop(0)

    async def send(self, data: bytes) -> None:
        if self.closed or self.proto.state is not State.OPEN:
            return
        self.proto.send_binary(data)
        await self._flush()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.proto.state is State.OPEN:
            self.proto.send_close(code, reason)
            await self._flush()
        # wait briefly for the client's close frame (read here, or by the task reading), then drop
        try:
            await asyncio.wait_for(self._gone.wait() if self._reading else self._drain_until_closed(), 2.0)
        except asyncio.TimeoutError:
            pass
        self.closed = True
        self.req.writer.close()

    async def _drain_until_closed(self) -> None:
        while not self.closed and self.proto.state is not State.CLOSED:
            if await self.recv() is None:
                return
