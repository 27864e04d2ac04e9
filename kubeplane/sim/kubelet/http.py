"""A small HTTP/1.1 server on asyncio streams for the simulated kubelet.

The kubelet's only client is the API server (and tests), so this is deliberately small:
requests on a connection are served in order; a handler answers a `Response` (sent with
Content-Length, the connection kept alive) or takes the connection over (a streamed log,
an upgrade to WebSocket or SPDY) and returns None, after which the connection is closed.

Bounds: a request head over `MAX_HEAD` bytes is answered 431, a body over `MAX_BODY`
413 (chunked request bodies are refused with 411: the API server sends Content-Length),
and a connection that sends no complete head within `HEAD_TIMEOUT` seconds is closed.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Awaitable, Callable
from urllib.parse import parse_qs, unquote

log = logging.getLogger("kubeplane.sim.kubelet")

MAX_HEAD = 64 << 10
MAX_BODY = 4 << 20
HEAD_TIMEOUT = 30.0
REASONS = {101: "Switching Protocols", 200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 411: "Length Required", 413: "Request Entity Too Large",
           431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented"}


@dataclass
class Request:
    method: str
    path: str                           # percent-decoded
    raw_query: str
    headers: dict[str, str]             # lower-case names; repeated headers joined by ", "
    header_items: list[tuple[str, str]]  # as received (repeated X-Stream-Protocol-Version headers)
    body: bytes
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    local: tuple[str, int]              # the address the client dialled: which node(s) it meant
    query: dict[str, list[str]] = field(default_factory=dict)

    def param(self, name: str, default: str | None = None) -> str | None:
        v = self.query.get(name)
        return v[0] if v else default

    def values(self, name: str) -> list[str]:
        """Every value of a header that may be repeated or comma-joined."""
        out = []
        for k, v in self.header_items:
            if k.lower() == name.lower():
                out += [x.strip() for x in v.split(",") if x.strip()]
        return out


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)


def head(status: int, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}"]
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")


Handler = Callable[[Request], Awaitable[Response | None]]


async def _read_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Request | None:
    try:
        raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
    except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
        return None
    except asyncio.LimitOverrunError:
        writer.write(head(431, [("Content-Length", "0"), ("Connection", "close")]))
        return None
    lines = raw.decode("latin-1").split("\r\n")
    try:
        method, target, _version = lines[0].split(" ", 2)
    except ValueError:
        writer.write(head(400, [("Content-Length", "0"), ("Connection", "close")]))
        return None
    items: list[tuple[str, str]] = []
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        k, _, v = line.partition(":")
        k, v = k.strip(), v.strip()
        items.append((k, v))
        lk = k.lower()
        headers[lk] = f"{headers[lk]}, {v}" if lk in headers else v
    body = b""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        writer.write(head(411, [("Content-Length", "0"), ("Connection", "close")]))
        return None
    n = int(headers.get("content-length", "0") or 0)
    if n > MAX_BODY:
        writer.write(head(413, [("Content-Length", "0"), ("Connection", "close")]))
        return None
    if n:
        try:
            body = await reader.readexactly(n)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
    path, _, query = target.partition("?")
    sock = writer.get_extra_info("sockname") or ("", 0)
    return Request(method.upper(), unquote(path), query, headers, items, body, reader, writer,
                   (sock[0], sock[1]), parse_qs(query, keep_blank_values=True))


async def serve_connection(handler: Handler, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            req = await _read_request(reader, writer)
            if req is None:
                break
            try:
                resp = await handler(req)
            except Exception:  # noqa: BLE001 - the last guard: a 500, never a dead connection
                log.exception("kubelet: error serving %s %s", req.method, req.path)
                resp = Response(500, b"Internal Server Error")
            if resp is None:       # the handler took the connection over
                break
            hs = [("Content-Type", resp.content_type), ("Content-Length", str(len(resp.body))), *resp.headers]
            writer.write(head(resp.status, hs) + (resp.body if req.method != "HEAD" else b""))
            await writer.drain()
            if req.headers.get("connection", "").lower() == "close":
                break
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def listen(handler: Handler, host: str, port: int, ssl_context=None) -> asyncio.base_events.Server:
    return await asyncio.start_server(lambda r, w: serve_connection(handler, r, w), host, port,
                                      ssl=ssl_context, limit=MAX_HEAD)
