"""The API server as an HTTP client of a backend (a node's kubelet, a pod, a service's
endpoint): one connection per request, HTTP/1.1, as upstream's proxy transports do for
the connect subresources (pods/log, exec, attach, portforward, proxy).

`BackendConnection.request` sends a request head (and body) and reads the response head;
`body()` then yields the response body however it is framed (Content-Length, chunked, or
until the backend closes); after a `101 Switching Protocols` the connection's reader and
writer carry the new protocol's raw bytes. Reads are bounded: a response head over
`MAX_HEAD` bytes is an error, never buffered whole.
"""
from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import AsyncIterator

MAX_HEAD = 64 << 10
DIAL_TIMEOUT = 10.0           # seconds to connect (and finish TLS)
HEAD_TIMEOUT = 60.0           # seconds for the backend to start its answer


class BackendError(Exception):
    """The backend could not be reached or spoke no HTTP ("error dialing backend: ...")."""


_insecure: ssl.SSLContext | None = None


def insecure_tls() -> ssl.SSLContext:
    """TLS without verifying the backend's certificate: upstream's default for kubelets
    when no --kubelet-certificate-authority is given. HTTP/1.1 only (upgrades need it)."""
    global _insecure
    if _insecure is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["http/1.1"])
        _insecure = ctx
    return _insecure


@dataclass
class ResponseHead:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    raw: bytes                     # the head exactly as received (relayed as is after a 101)

    def get(self, name: str, default: str = "") -> str:
        n = name.lower()
        return next((v for k, v in self.headers if k.lower() == n), default)


class BackendConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self.head: ResponseHead | None = None

    @classmethod
    async def open(cls, scheme: str, host: str, port: int) -> "BackendConnection":
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(
                host, port, ssl=insecure_tls() if scheme == "https" else None, limit=MAX_HEAD), DIAL_TIMEOUT)
        except asyncio.TimeoutError:
            raise BackendError(f"dial tcp {_hostport(host, port)}: i/o timeout") from None
        except ssl.SSLError as e:
            raise BackendError(f"tls: {e.reason or e}") from None
        except OSError as e:
            raise BackendError(f"dial tcp {_hostport(host, port)}: connect: {(e.strerror or str(e)).lower()}") from None
        return cls(r, w)

    async def request(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes = b"") -> ResponseHead:
        lines = [f"{method} {target} HTTP/1.1"] + [f"{k}: {v}" for k, v in headers]
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace") + body)
        try:
            raw = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
        except asyncio.LimitOverrunError:
            raise BackendError("the backend's response head is too large") from None
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError, ssl.SSLError):
            raise BackendError("the backend closed the connection without an answer") from None
        text = raw.decode("latin-1").split("\r\n")
        try:
            _, code, *reason = text[0].split(" ", 2)
            status = int(code)
        except ValueError:
            raise BackendError(f"malformed HTTP response {text[0][:80]!r}") from None
        hs = []
        for line in text[1:]:
            if line:
                k, _, v = line.partition(":")
                hs.append((k.strip(), v.strip()))
        self.head = ResponseHead(status, reason[0] if reason else "", hs, raw)
        return self.head

    async def body(self, limit: int | None = None) -> AsyncIterator[bytes]:
        """The response body in pieces as they come; at most `limit` bytes when given."""
        assert self.head is not None
        left = limit
        te = self.head.get("transfer-encoding").lower()
        cl = self.head.get("content-length")
        try:
            if "chunked" in te:
                while True:
                    size_line = await self.reader.readuntil(b"\r\n")
                    n = int(size_line.split(b";")[0].strip() or b"0", 16)
                    if n == 0:
                        await self.reader.readuntil(b"\r\n")
                        return
                    data = await self.reader.readexactly(n)
                    await self.reader.readexactly(2)
                    data, left = _cut(data, left)
                    yield data
                    if left == 0:
                        return
            elif cl:
                n = int(cl)
                while n > 0:
                    data = await self.reader.read(min(n, 64 << 10))
                    if not data:
                        return
                    n -= len(data)
                    data, left = _cut(data, left)
                    yield data
                    if left == 0:
                        return
            elif self.head.status not in (204, 304) and self.head.status >= 200:
                while data := await self.reader.read(64 << 10):
                    data, left = _cut(data, left)
                    yield data
                    if left == 0:
                        return
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ssl.SSLError, ValueError):
            return

    async def read_all(self, limit: int) -> bytes:
        return b"".join([b async for b in self.body(limit)])

    def close(self) -> None:
        self.writer.close()


def _cut(data: bytes, left: int | None) -> tuple[bytes, int | None]:
    if left is None:
        return data, None
    data = data[:left]
    return data, left - len(data)


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def splice(tunnel, backend: BackendConnection) -> None:
    """Move bytes both ways between an upgraded client connection (`transport.http.Tunnel`)
    and the backend until either side closes; then close both."""
    async def up() -> None:
        try:
            while data := await tunnel.read():
                backend.writer.write(data)
                await backend.writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            backend.writer.close()

    async def down() -> None:
        try:
            while data := await backend.reader.read(64 << 10):
                tunnel.write(data)
                await tunnel.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            tunnel.close()

    tasks = [asyncio.ensure_future(up()), asyncio.ensure_future(down())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        backend.close()
        tunnel.close()
