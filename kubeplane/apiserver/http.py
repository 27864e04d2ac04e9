"""HTTP/1.1 server on raw asyncio + httptools (chosen by measurement: docs/http-stack.md).

One `Connection` protocol per client connection. Requests on a connection are handled
one after another (HTTP/1.1 pipelining keeps its order); each is handed to the app as a
`Request`, and the app answers with a `Response` or, for watches, by opening a `Stream`
(chunked transfer encoding) on the request and returning None once it has finished.

Invariants:
- A body over `max_body` bytes is not buffered: the request is answered 413 and the
  connection closed (the client may still be sending).
- A stream writes straight to the transport; `Stream.backlog` tells the writer how much
  is queued so that a slow reader can be closed instead of buffering without bound.
- A long body (a LIST of thousands of objects, a watch's initial events) is written in
  pieces (`Stream.write_items`): the event loop serves other requests between pieces,
  the writer waits while the client is more than `ITEMS_BACKLOG` behind, and the
  handler (with its flow-control seats) stays busy until the last piece is handed over,
  as a Go handler blocked on a slow client does. At most `LONG_WRITES` such bodies are
  gathered and written at once server-wide (`long_write_slot`), the others wait their
  turn, and their pieces take turns, `PIECES_PER_TURN` per loop iteration (memory and
  the loop's share stay bounded even for requests flow control exempts).
- When the peer goes away, the task serving a stream on it is cancelled.
"""
from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import ssl
import time
import weakref
from collections import deque
from typing import Any, AsyncContextManager, Awaitable, Callable, Iterable, Sequence, TypeVar
from urllib.parse import parse_qs, unquote

import httptools

log = logging.getLogger("kubeplane.apiserver.http")

T = TypeVar("T")

ITEMS_PIECE = 256           # items encoded and written per piece
ITEMS_BACKLOG = 4 << 20     # the writer waits while this much is queued for the client
LONG_ITEMS = 500            # bodies of more items take one of the LONG_WRITES slots
LONG_WRITES = 16
PIECES_PER_TURN = 2         # pieces of long bodies written per loop iteration, server-wide


Buffer = bytes | memoryview


def join_items(items: Iterable[T], encode: Callable[[T], Sequence[Buffer]], sep: bytes = b"",
               lead: bool = False) -> bytes:
    """The buffers of every item (`encode(item)`, e.g. the parts of a stored object with
    its resourceVersion spliced in) joined in one copy, `sep` between items and before
    the first when `lead`."""
    parts: list[Buffer] = []
    add = parts.extend
    if not sep:
        for x in items:
            add(encode(x))
    else:
        put = parts.append
        for x in items:
            if lead:
                put(sep)
            add(encode(x))
            lead = True
    return b"".join(parts)


class _LongWrites:
    """Per event loop: the LONG_WRITES slots, and how many pieces of long bodies may still
    be written in this loop iteration."""

    __slots__ = ("slots", "left", "refill_queued")

    def __init__(self) -> None:
        self.slots = asyncio.Semaphore(LONG_WRITES)
        self.left = PIECES_PER_TURN
        self.refill_queued = False

    def take_turn(self, loop: asyncio.AbstractEventLoop) -> bool:
        if not self.refill_queued:   # the refill runs at the next iteration, ahead of the pieces that wait
            self.refill_queued = True
            loop.call_soon(self._refill)
        if self.left:
            self.left -= 1
            return True
        return False

    def _refill(self) -> None:
        self.left = PIECES_PER_TURN
        self.refill_queued = False


_long_writes: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LongWrites]" = weakref.WeakKeyDictionary()


def _state(loop: asyncio.AbstractEventLoop) -> _LongWrites:
    st = _long_writes.get(loop)
    if st is None:
        st = _long_writes[loop] = _LongWrites()
    return st


async def _piece_turn() -> None:
    """Wait for a turn to write one piece of a long body: at most PIECES_PER_TURN pieces
    go out per loop iteration whatever the number of long bodies, so an iteration stays
    a few milliseconds long and everything else on the loop (a write's handler, its
    commit, its response) keeps moving. Without it, 16 relists of 50,000 pods made each
    iteration ~240 ms and a patch took seconds."""
    loop = asyncio.get_running_loop()
    st = _state(loop)
    while not st.take_turn(loop):
        await asyncio.sleep(0)


def long_write_slot() -> asyncio.Semaphore:
    """One of LONG_WRITES slots for a body of more than LONG_ITEMS items, held from before
    its items are gathered (a thousand informers relisting 50,000 pods at once must not
    each pick their 50,000 entries first: that alone held the loop 7 s) until its last
    piece is written."""
    return _state(asyncio.get_running_loop()).slots


def long_write(items: int) -> AsyncContextManager[Any]:
    """`async with long_write(n)`: a long_write_slot when n items make a long body, else
    nothing."""
    return long_write_slot() if items > LONG_ITEMS else contextlib.nullcontext()


_REASONS = {
    200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 304: "Not Modified",
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 406: "Not Acceptable", 409: "Conflict", 410: "Gone",
    413: "Request Entity Too Large", 415: "Unsupported Media Type", 422: "Unprocessable Entity",
    429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable",
    504: "Gateway Timeout",
}


class _Date:
    """The Date header, formatted at most once a second."""

    second = 0
    value = b""

    @classmethod
    def get(cls) -> bytes:
        now = int(time.time())
        if now != cls.second:
            cls.second = now
            cls.value = email.utils.formatdate(now, usegmt=True).encode()
        return cls.value


class Request:
    __slots__ = ("method", "path", "raw_query", "headers", "body", "conn", "_query", "stream",
                 "keep_alive", "timed_out", "on_init", "stream_headers")

    def __init__(self, method: str, path: str, raw_query: str, headers: dict[str, str],
                 body: bytes, conn: "Connection"):
        self.method = method
        self.path = path
        self.raw_query = raw_query
        self.headers = headers          # lower-case names; repeated headers joined by ", "
        self.body = body
        self.conn = conn
        self._query: dict[str, list[str]] | None = None
        self.stream: Stream | None = None
        self.keep_alive = True
        self.timed_out = False          # set when the deadline sweeper cancels the request
        self.on_init: Callable[[], None] | None = None   # a watch calls it once its initial events are out
        self.stream_headers: list[tuple[str, str]] = []  # flow control's headers, on every response head

    def init_done(self) -> None:
        """A watch has sent its initial events (flow control gives its seats back)."""
        cb, self.on_init = self.on_init, None
        if cb is not None:
            cb()

    @property
    def query(self) -> dict[str, list[str]]:
        if self._query is None:
            self._query = parse_qs(self.raw_query, keep_blank_values=True) if self.raw_query else {}
        return self._query

    def param(self, name: str, default: str | None = None) -> str | None:
        v = self.query.get(name)
        return v[0] if v else default

    def start_stream(self, status: int, headers: list[tuple[str, str]]) -> "Stream":
        """Send the response head with chunked encoding; write the body with the stream."""
        self.stream = Stream(self.conn, status, headers + self.stream_headers if self.stream_headers else headers)
        return self.stream


class Response:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, body: bytes = b"", headers: list[tuple[str, str]] | None = None,
                 content_type: str = "application/json"):
        self.status = status
        self.body = body
        self.headers = headers if headers is not None else []
        if content_type:
            self.headers.append(("Content-Type", content_type))


def _head(status: int, headers: list[tuple[str, str]]) -> bytearray:
    out = bytearray(b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, "Unknown").encode()))
    for k, v in headers:
        if "\n" in v or "\r" in v:     # as Go's net/http: a value never ends the header early
            v = v.replace("\r", " ").replace("\n", " ")
        out += b"%s: %s\r\n" % (k.encode(), v.encode("latin-1", "replace"))
    out += b"Date: %s\r\n" % _Date.get()
    return out


class Stream:
    """A chunked response body written directly to the connection's transport."""

    __slots__ = ("conn", "closed", "sent")

    def __init__(self, conn: "Connection", status: int, headers: list[tuple[str, str]]):
        self.conn = conn
        self.closed = conn.transport is None or conn.transport.is_closing()
        self.sent = 0                   # body bytes written (the response size metric)
        head = _head(status, headers)
        head += b"Transfer-Encoding: chunked\r\n\r\n"
        if not self.closed:
            conn.transport.write(bytes(head))

    def write(self, data: bytes) -> None:
        if self.closed or not data:
            return
        t = self.conn.transport
        if t is None or t.is_closing():
            self.closed = True
            return
        self.sent += len(data)
        if len(data) < 65536:
            t.write(b"%x\r\n%s\r\n" % (len(data), data))
        else:                           # no copy of a long piece
            t.writelines((b"%x\r\n" % len(data), data, b"\r\n"))

    async def write_items(self, items: Sequence[T], encode: Callable[[T], Sequence[Buffer]], sep: bytes = b"",
                          lead: bool = False) -> None:
        """Write every item as the buffers `encode(item)` gives, `sep` between items (and
        before the first when `lead`), in pieces of ITEMS_PIECE items (`join_items`);
        pieces take turns with every other long body (`_piece_turn`), between pieces other
        requests are served, and while more than ITEMS_BACKLOG waits for the client, so does
        this. A caller with more than LONG_ITEMS items holds a `long_write_slot()` from
        before it gathered them."""
        if len(items) <= LONG_ITEMS:
            self.write(join_items(items, encode, sep, lead))
            return
        t = self.conn.transport
        if t is not None:   # keep the pipe full: pause above ITEMS_BACKLOG, resume below a quarter of it
            t.set_write_buffer_limits(high=ITEMS_BACKLOG, low=ITEMS_BACKLOG // 4)
        for i in range(0, len(items), ITEMS_PIECE):
            await _piece_turn()
            if self.closed:
                return
            self.write(join_items(items[i:i + ITEMS_PIECE], encode, sep, lead or i > 0))
            if self.closed:
                return
            if self.backlog > ITEMS_BACKLOG:
                await self.drain()
            else:
                await asyncio.sleep(0)

    @property
    def backlog(self) -> int:
        t = self.conn.transport
        return t.get_write_buffer_size() if t is not None and not t.is_closing() else 0

    async def drain(self) -> None:
        await self.conn.drain()

    def finish(self) -> None:
        if not self.closed:
            t = self.conn.transport
            if t is not None and not t.is_closing():
                t.write(b"0\r\n\r\n")
            self.closed = True

    def abort(self) -> None:
        """The body cannot be completed (the request failed half-way): close the
        connection without the last chunk, so the client sees a broken response, not a
        short one."""
        if not self.closed:
            self.closed = True
            t = self.conn.transport
            if t is not None:
                t.abort()


Handler = Callable[[Request], Awaitable[Response | None]]


class Connection(asyncio.Protocol):
    """One client connection: parse with httptools, serve requests in order."""

    def __init__(self, server: "HTTPServer"):
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.body_size = 0
        self.too_large = False
        self.pending: deque[Request] = deque()
        self.task: asyncio.Task | None = None
        self.current: Request | None = None
        self._can_write: asyncio.Future | None = None
        self.paused = False

    # --- asyncio.Protocol ---------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None
        if self._can_write is not None and not self._can_write.done():
            self._can_write.set_result(None)
        cur = self.current
        if self.task is not None and cur is not None and cur.stream is not None:
            self.task.cancel()
        self.pending.clear()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self._can_write is not None and not self._can_write.done():
            self._can_write.set_result(None)

    async def drain(self) -> None:
        if self.paused and self.transport is not None:
            self._can_write = asyncio.get_running_loop().create_future()
            await self._can_write

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "upgrades are not supported")
        except httptools.HttpParserError:
            self._fail(400, "malformed HTTP request")

    def _fail(self, code: int, message: str) -> None:
        if self.transport is None:
            return
        body = self.server.error_body(code, message)
        head = _head(code, [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                            ("Connection", "close")])
        self.transport.write(bytes(head) + b"\r\n" + body)
        self.transport.close()

    # --- httptools callbacks ------------------------------------------------------
    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = {}
        self.body = []
        self.body_size = 0
        self.too_large = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        k = name.decode("latin-1").lower()
        v = value.decode("latin-1")
        old = self.headers.get(k)
        self.headers[k] = v if old is None else old + ", " + v

    def on_headers_complete(self) -> None:
        if self.headers.get("expect", "").lower() == "100-continue" and self.transport:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        if self.too_large:
            return
        self.body_size += len(body)
        if self.body_size > self.server.max_body:
            self.too_large = True
            self.body = []
            return
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.transport is None:
            return
        if self.too_large:
            self._fail(413, "Request entity too large: limit is %d" % self.server.max_body)
            return
        try:
            raw = self.url.decode("utf-8")
        except UnicodeDecodeError:
            self._fail(400, "the request URL is not valid UTF-8")
            return
        path, _, query = raw.partition("?")
        path = unquote(path)
        req = Request(self.parser.get_method().decode(), path, query, self.headers,
                      b"".join(self.body), self)
        req.keep_alive = self.parser.should_keep_alive()
        self.pending.append(req)
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._serve())

    # --- serving ------------------------------------------------------------------
    async def _serve(self) -> None:
        try:
            while self.pending and self.transport is not None:
                req = self.pending.popleft()
                self.current = req
                keep_alive = req.keep_alive
                try:
                    resp = await self.server.handler(req)
                except asyncio.CancelledError:
                    if req.stream is None:
                        raise
                    resp = None
                except Exception:  # the app turns errors into Status; this is the last guard
                    log.exception("unhandled error serving %s %s", req.method, req.path)
                    body = self.server.error_body(500, "Internal error occurred")
                    resp = Response(500, body)
                t = self.transport
                if t is None:
                    break
                if req.stream is not None:
                    req.stream.finish()
                elif resp is not None:
                    head = _head(resp.status, resp.headers)
                    body = resp.body if req.method != "HEAD" else b""
                    head += b"Content-Length: %d\r\n\r\n" % len(resp.body)
                    t.write(bytes(head) + body if len(body) < 65536 else bytes(head))
                    if len(body) >= 65536:
                        t.write(body)
                if not keep_alive:
                    t.close()
                    break
                if self.paused:
                    await self.drain()
        finally:
            self.current = None
            self.task = None


class HTTPServer:
    """Listens on one address (TLS when `ssl_context` is given) and serves `handler`."""

    def __init__(self, handler: Handler, error_body: Callable[[int, str], bytes],
                 max_body: int = 3 * 1024 * 1024):
        self.handler = handler
        self.error_body = error_body
        self.max_body = max_body
        self.connections: set[Connection] = set()
        self.servers: list[asyncio.base_events.Server] = []

    async def listen(self, host: str, port: int, ssl_context: ssl.SSLContext | None = None,
                     reuse_port: bool = False) -> int:
        loop = asyncio.get_running_loop()
        srv = await loop.create_server(lambda: Connection(self), host, port, ssl=ssl_context,
                                       reuse_port=reuse_port or None, backlog=4096)
        self.servers.append(srv)
        return srv.sockets[0].getsockname()[1]

    async def close(self) -> None:
        for s in self.servers:
            s.close()
        for c in list(self.connections):
            if c.transport is not None:
                c.transport.close()
        for s in self.servers:
            try:
                await asyncio.wait_for(s.wait_closed(), 2)
            except asyncio.TimeoutError:
                pass
        self.servers.clear()
