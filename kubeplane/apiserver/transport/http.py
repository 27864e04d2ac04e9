"""HTTP/1.1 server on raw asyncio + httptools (chosen by measurement: docs/http-stack.md).

One `Connection` protocol per client connection. Requests on a connection are handled
one after another (HTTP/1.1 pipelining keeps its order); each is handed to the app as a
`Request`, and the app answers with a `Response` or, for watches, by opening a `Stream`
(chunked transfer encoding) on the request and returning None once it has finished.

Invariants:
- A body over `max_body` bytes is not buffered: the request is answered 413 and the
  connection closed (the client may still be sending).
- A stream writes straight to the transport; `Stream.paused` tells the writer to wait
  (`Stream.drain`) instead of buffering more for a client that does not keep up.
- A long body (a LIST of thousands of objects, a watch's initial events) is written in
  pieces (`Stream.write_items`): the event loop serves other requests between pieces,
  the writer waits while the client is more than `ITEMS_BACKLOG` behind, and the
  handler (with its flow-control seats) stays busy until the last piece is handed over,
  as a Go handler blocked on a slow client does. At most `LONG_WRITES` such bodies are
  gathered and written at once server-wide (`long_write_slot`), the others wait their
  turn, and their pieces take turns, `PIECES_PER_TURN` per loop iteration (memory and
  the loop's share stay bounded even for requests flow control exempts).
- When the peer goes away, the task serving a stream on it is cancelled.
- A request with `Upgrade` (WebSocket, SPDY) may take its connection over
  (`Request.take_over`): the handler writes the `101` head itself and then moves raw bytes
  both ways on a `Tunnel`; reading pauses while more than `TUNNEL_BUFFER` bytes wait for
  the handler. Nothing more is parsed on such a connection: when the handler answers an
  ordinary response instead, the connection is closed after it.
- A request head (request line and headers) is bounded before anything else looks at
  it: past `MAX_URL_BYTES` of URL the answer is 414, past `MAX_HEADER_BYTES` of headers
  431 (Go's `DefaultMaxHeaderBytes`, which kube-apiserver uses), both in Go's plain-text
  form, and the connection is closed; at most the limit plus one read is ever buffered.
  Repeated headers are joined once the head is complete (linear time).
- Every connection has at most one deadline at a time (`Limits`): the head of a request
  must arrive within `header_timeout` (from the connection's start or the request's
  first byte), its body within `body_timeout`, and a keep-alive connection with nothing
  in flight is closed after `idle_timeout`. While a request is being served there is no
  deadline: a watch or a long response is never cut by them. A TLS handshake has
  `header_timeout` too (Go's tlsHandshakeTimeout).
- A client that stops reading pins at most the transport's write buffer: writers wait
  (`Stream.drain`) once it passes its high-water mark, and a connection that made no
  progress (its buffer did not shrink and, on Linux, the client acknowledged nothing)
  for `write_stall_timeout` while above that mark is aborted, its buffer released at
  once. One sweep a second checks the deadlines and stalls.
"""
from __future__ import annotations

import asyncio
import contextlib
import email.utils
import fcntl
import logging
import socket
import ssl
import termios
import time
import weakref
from collections import deque
from dataclasses import dataclass
from typing import Any, AsyncContextManager, Awaitable, Callable, Iterable, Sequence, TypeVar
from urllib.parse import parse_qs, unquote

import httptools

from ...logs import V

log = logging.getLogger("kubeplane.apiserver.transport.http")

T = TypeVar("T")

ITEMS_PIECE = 256           # items encoded and written per piece
ITEMS_BACKLOG = 4 << 20     # the writer waits while this much is queued for the client
LONG_ITEMS = 500            # bodies of more items take one of the LONG_WRITES slots
LONG_WRITES = 16
PIECES_PER_TURN = 2         # pieces of long bodies written per loop iteration, server-wide

MAX_HEADER_BYTES = 1 << 20  # Go's http.DefaultMaxHeaderBytes, kube-apiserver's MaxHeaderBytes
HEADER_SLACK = 4096         # Go reads up to MaxHeaderBytes + 4096 bytes of a head
MAX_URL_BYTES = 1 << 20     # a longer request target is answered 414 (Go: 431, past the same budget)
# struct tcp_info (linux/tcp.h): tcpi_bytes_acked is the u64 at offset 120 (Linux >= 4.1)
_TCP_INFO = getattr(socket, "TCP_INFO", None)
_TCPI_LEN = 232
_TCPI_BYTES_ACKED = 120
TLS_PIECE = 64 << 10        # long writes over TLS go in slices of this size (Connection.write_long)
TUNNEL_BUFFER = 1 << 20     # an upgraded connection stops reading while this much waits for its handler


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
    408: "Request Timeout", 413: "Request Entity Too Large", 414: "URI Too Long",
    415: "Unsupported Media Type", 422: "Unprocessable Entity", 429: "Too Many Requests",
    431: "Request Header Fields Too Large", 500: "Internal Server Error", 503: "Service Unavailable",
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
                 "keep_alive", "timed_out", "on_init", "stream_headers", "tunnel")

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
        self.tunnel: Tunnel | None = None                # set once the handler took the connection over

    @property
    def upgrade(self) -> bool:
        """The request asks to switch protocols (and the connection can: HTTP/1.1 Upgrade)."""
        return self.conn.upgraded

    def take_over(self) -> "Tunnel":
        """The raw connection of an Upgrade request: the handler writes everything from the
        response head on, and the connection is closed once the handler returns."""
        if not self.conn.upgraded:
            raise RuntimeError("take_over() needs an Upgrade request")
        if self.tunnel is None:
            self.tunnel = Tunnel(self.conn)
        return self.tunnel

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

    def _live(self) -> Any:
        """The transport while this body can still be written to; None once it cannot
        (the stream is then marked closed)."""
        if self.closed:
            return None
        t = self.conn.transport
        if t is None or t.is_closing():
            self.closed = True
            return None
        return t

    def write(self, data: bytes) -> None:
        t = self._live() if data else None
        if t is None:
            return
        self.sent += len(data)
        if len(data) < 65536:
            t.write(b"%x\r\n%s\r\n" % (len(data), data))
        else:                           # no copy of a long piece
            t.write(b"%x\r\n" % len(data))
            self.conn.write_long(data)
            t.write(b"\r\n")

    async def write_paced(self, data: bytes) -> None:
        """`write` for a long chunk, waiting while the transport is paused between its
        slices over TLS (`Connection.write_paced`)."""
        if len(data) < 65536 or not self.conn.tls:
            self.write(data)
            return
        t = self._live()
        if t is None:
            return
        self.sent += len(data)
        t.write(b"%x\r\n" % len(data))
        await self.conn.write_paced(data)
        t = self._live()
        if t is not None:
            t.write(b"\r\n")

    async def write_items(self, items: Sequence[T], encode: Callable[[T], Sequence[Buffer]], sep: bytes = b"",
                          lead: bool = False) -> None:
        """Write every item as the buffers `encode(item)` gives, `sep` between items (and
        before the first when `lead`), in pieces of ITEMS_PIECE items (`join_items`);
        pieces take turns with every other long body (`_piece_turn`), between pieces other
        requests are served, and while more than ITEMS_BACKLOG waits for the client, so does
        this. A caller with more than LONG_ITEMS items holds a `long_write_slot()` from
        before it gathered them."""
        if len(items) <= LONG_ITEMS:
            await self.write_paced(join_items(items, encode, sep, lead))
            return
        t = self.conn.transport
        if t is not None:   # keep the pipe full: pause above ITEMS_BACKLOG, resume below a quarter of it
            t.set_write_buffer_limits(high=ITEMS_BACKLOG, low=ITEMS_BACKLOG // 4)
        try:
            for i in range(0, len(items), ITEMS_PIECE):
                await _piece_turn()
                if self.closed:
                    return
                await self.write_paced(join_items(items[i:i + ITEMS_PIECE], encode, sep, lead or i > 0))
                if self.closed:
                    return
                if self.paused:      # a client that never reads is aborted by the stall sweep
                    await self.drain()
                else:
                    await asyncio.sleep(0)
        finally:
            t = self.conn.transport
            if t is not None and not t.is_closing():
                t.set_write_buffer_limits()   # back to the default (64 KiB) for what follows

    @property
    def paused(self) -> bool:
        """The transport holds more than its high-water mark: write nothing more until
        `drain()` returns (it returns at once when the connection is gone)."""
        return self.conn.paused

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


class Tunnel:
    """Both directions of an upgraded connection as bytes. `read` returns what has
    arrived (b"" once the peer closed); `write` queues on the transport, `drain` waits
    while the client does not keep up."""

    def __init__(self, conn: "Connection"):
        self.conn = conn
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._eof = conn.transport is None
        self._wake: asyncio.Future | None = None
        early, conn.upgrade_early = conn.upgrade_early, []
        for b in early:
            self._feed(b)
        conn.tunnel = self

    def _feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        t = self.conn.transport
        if self._size > TUNNEL_BUFFER and t is not None:
            t.pause_reading()
        self._signal()

    def _feed_eof(self) -> None:
        self._eof = True
        self._signal()

    def _signal(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def read(self) -> bytes:
        while not self._chunks and not self._eof:
            self._wake = asyncio.get_running_loop().create_future()
            await self._wake
        if not self._chunks:
            return b""
        data = b"".join(self._chunks)
        self._chunks.clear()
        was, self._size = self._size, 0
        t = self.conn.transport
        if was > TUNNEL_BUFFER and t is not None and not t.is_closing():
            t.resume_reading()
        return data

    def write(self, data: Buffer) -> None:
        t = self.conn.transport
        if t is not None and not t.is_closing() and data:
            t.write(data)

    async def drain(self) -> None:
        await self.conn.drain()

    @property
    def closed(self) -> bool:
        t = self.conn.transport
        return t is None or t.is_closing()

    def close(self) -> None:
        t = self.conn.transport
        if t is not None:
            t.close()


Handler = Callable[[Request], Awaitable[Response | None]]


@dataclass(frozen=True)
class Limits:
    """What one connection may cost (seconds; 0 turns a timeout off). The defaults are
    kube-apiserver's: ReadHeaderTimeout 32 s, Go's IdleTimeout 90 s reference,
    MaxHeaderBytes 1 MiB; `body_timeout` is the request timeout (60 s)."""

    header_timeout: float = 32.0
    idle_timeout: float = 90.0
    body_timeout: float = 60.0
    write_stall_timeout: float = 60.0
    max_header_bytes: int = MAX_HEADER_BYTES
    max_url_bytes: int = MAX_URL_BYTES


_NO_DEADLINE, _HEAD, _BODY, _IDLE = 0, 1, 2, 3


class _Reject(Exception):
    """Raised from a parser callback to stop parsing a head that is too large."""


class Connection(asyncio.Protocol):
    """One client connection: parse with httptools, serve requests in order."""

    def __init__(self, server: "HTTPServer"):
        self.server = server
        self.limits = server.limits
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url: list[bytes] = []
        self.url_size = 0
        self.headers: dict[str, str] = {}
        self.repeated: dict[str, list[str]] | None = None
        self.head_size = 0              # request target and headers as parsed (Go's count)
        self.head_seen = 0              # bytes received while reading the head (bounds buffering)
        self.in_head = True
        self.reject = 0                 # 414 or 431 once the head is over its limit
        self.body: list[bytes] = []
        self.body_size = 0
        self.too_large = False
        self.pending: deque[Request] = deque()
        self.task: asyncio.Task | None = None
        self.current: Request | None = None
        self._can_write: asyncio.Future | None = None
        self.paused = False
        self.tls = False
        self.deadline = 0.0             # time.monotonic() by which `deadline_kind` must be over
        self.deadline_kind = _NO_DEADLINE
        self.stall_since = 0.0          # when the write buffer went above its high-water mark
        self.stall_size = 0
        self.stall_acked = -1           # the client's acknowledged bytes then (-1: unknown)
        self.idle_acked = -2            # ... when the idle deadline was last checked
        self.upgraded = False           # the parser stopped at an Upgrade request: raw bytes from here on
        self.upgrade_early: list[bytes] = []   # what arrived after its head before a Tunnel took it
        self.tunnel: Tunnel | None = None

    # --- asyncio.Protocol ---------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.tls = transport.get_extra_info("ssl_object") is not None
        self.server.connections.add(self)
        self._set_deadline(_HEAD, self.limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None
        self.deadline_kind = _NO_DEADLINE
        if self._can_write is not None and not self._can_write.done():
            self._can_write.set_result(None)
        cur = self.current
        if self.task is not None and cur is not None and cur.stream is not None:
            self.task.cancel()
        if self.tunnel is not None:
            self.tunnel._feed_eof()
        self.pending.clear()
        self.body = []

    def pause_writing(self) -> None:
        self.paused = True
        self.stall_since = time.monotonic()
        t = self.transport
        self.stall_size = t.get_write_buffer_size() if t is not None else 0
        self.stall_acked = self._acked()

    def _still_sending(self) -> bool:
        """The last response is still on its way and the client acknowledged more of it
        since the previous check (Go's idle timeout starts once a response is in the
        kernel, and closing then loses nothing: the kernel still sends it; an abort here
        would drop it, and over TLS the socket's transport may hold part of it)."""
        t = self.transport
        if t is None:
            return False
        unsent = t.get_write_buffer_size() > 0
        if not unsent:
            sock = t.get_extra_info("socket")
            try:
                buf = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
                unsent = int.from_bytes(buf, "little") > 0   # what a transport holds is beyond it
            except (OSError, AttributeError, TypeError, ValueError):
                unsent = False
        if not unsent:
            return False
        acked = self._acked()
        moving = acked != self.idle_acked and acked >= 0
        self.idle_acked = acked
        return moving

    def _acked(self) -> int:
        """Bytes the client has acknowledged (Linux TCP_INFO tcpi_bytes_acked), -1 when
        unknown. Over TLS the transport's own buffer does not show a slow client's
        progress (the socket's transport holds up to a high-water mark out of sight), the
        kernel's count does."""
        t = self.transport
        sock = t.get_extra_info("socket") if t is not None else None
        if sock is None or _TCP_INFO is None:
            return -1
        try:
            info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _TCPI_LEN)
        except (OSError, AttributeError, TypeError):
            return -1
        return int.from_bytes(info[_TCPI_BYTES_ACKED:_TCPI_BYTES_ACKED + 8], "little") \
            if len(info) >= _TCPI_BYTES_ACKED + 8 else -1

    def resume_writing(self) -> None:
        self.paused = False
        if self._can_write is not None and not self._can_write.done():
            self._can_write.set_result(None)

    def write_long(self, data: Buffer) -> None:
        """Write a long buffer without copying it. Over TLS it goes in TLS_PIECE slices:
        uvloop's TLS transport encrypts a write at once and hands the result to the
        socket's transport unless that one has paused it, where the bytes no longer count
        in `get_write_buffer_size()`; slices let the pause take effect, so what a client
        leaves unread stays visible to `pause_writing` and the stall sweep."""
        t = self.transport
        if t is None:
            return
        if not self.tls or len(data) <= TLS_PIECE:
            t.write(data)
            return
        view = memoryview(data)
        for i in range(0, len(view), TLS_PIECE):
            t.write(view[i:i + TLS_PIECE])

    async def write_paced(self, data: Buffer) -> None:
        """`write_long`, waiting between slices while the transport is paused: over TLS
        at most about one high-water mark of encrypted bytes is out of sight (in the
        socket's transport) when this returns, so the idle deadline that follows a
        response is not started while most of it is still unsent."""
        if not self.tls or len(data) <= TLS_PIECE:
            self.write_long(data)
            return
        view = memoryview(data)
        for i in range(0, len(view), TLS_PIECE):
            if self.paused:
                await self.drain()
            t = self.transport
            if t is None or t.is_closing():
                return
            t.write(view[i:i + TLS_PIECE])

    async def drain(self) -> None:
        """Until the write buffer is below its low-water mark or the connection is gone
        (the sweep aborts a connection stalled for `write_stall_timeout`)."""
        if self.paused and self.transport is not None:
            fut = self._can_write
            if fut is None or fut.done():
                fut = self._can_write = asyncio.get_running_loop().create_future()
            await fut

    def data_received(self, data: bytes) -> None:
        if self.reject:
            return
        if self.upgraded:
            self._upgraded_data(data)
            return
        if self.in_head:
            self.head_seen += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            self.upgraded = True                   # the request is queued; the rest is the new protocol's
            self._set_deadline(_NO_DEADLINE, 0)
            off = e.args[0] if e.args and isinstance(e.args[0], int) else len(data)
            if off < len(data):
                self._upgraded_data(data[off:])
            return
        except httptools.HttpParserCallbackError:
            if not self.reject:       # as before the limits: a callback's failure is a 400
                log.debug("parser callback failed", exc_info=True)
                self._fail(400, "malformed HTTP request")
                return
        except httptools.HttpParserError:
            self._fail(400, "malformed HTTP request")
            return
        if not self.reject and self.in_head and self.head_seen > self.limits.max_header_bytes + HEADER_SLACK:
            self.reject = 431
        if self.reject:
            self._refuse(self.reject)

    def _upgraded_data(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel._feed(data)
            return
        self.upgrade_early.append(data)           # before the handler takes over: bounded too
        if sum(map(len, self.upgrade_early)) > TUNNEL_BUFFER and self.transport is not None:
            self.transport.pause_reading()

    def _fail(self, code: int, message: str) -> None:
        if self.transport is None:
            return
        body = self.server.error_body(code, message)
        head = _head(code, [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                            ("Connection", "close")])
        self.transport.write(bytes(head) + b"\r\n" + body)
        self.transport.close()

    def _refuse(self, code: int) -> None:
        """Go's answer to a head over its limits (plain text, connection closed). Nothing
        more is read; the connection is closed half a second later (as Go's
        closeWriteAndWait does), so that the client can read the answer before the reset
        its unread request causes; abort, as a TLS close would wait for the client."""
        t = self.transport
        if t is None:
            return
        self.url, self.headers, self.repeated, self.body = [], {}, None, []
        text = b"%d %s" % (code, _REASONS[code].encode())
        t.write(b"HTTP/1.1 %s\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n%s"
                % (text, text))
        t.pause_reading()
        self._set_deadline(_NO_DEADLINE, 0)
        asyncio.get_running_loop().call_later(0.5, t.abort)

    # --- deadlines and stalls -------------------------------------------------------
    def _set_deadline(self, kind: int, seconds: float) -> None:
        if kind == _NO_DEADLINE or seconds <= 0:
            self.deadline_kind = _NO_DEADLINE
        else:
            self.deadline_kind = kind
            self.deadline = time.monotonic() + seconds

    def sweep(self, now: float) -> None:
        """Close the connection when its deadline has passed or its writes stalled."""
        t = self.transport
        if t is None:
            return
        if self.deadline_kind and now >= self.deadline:
            if self.deadline_kind == _IDLE and self._still_sending():
                self._set_deadline(_IDLE, self.limits.idle_timeout)   # the last response is still going out
                return
            what = {_HEAD: "request head", _BODY: "request body", _IDLE: "idle"}[self.deadline_kind]
            log.log(V(3), "closing connection from %s: %s timeout", _peer(t), what)
            self.deadline_kind = _NO_DEADLINE
            t.abort()   # not close(): a TLS close would wait for the peer's close_notify
            return
        stall = self.limits.write_stall_timeout
        if self.paused and stall > 0 and now - self.stall_since >= stall:
            size = t.get_write_buffer_size()
            acked = self._acked()
            if size >= self.stall_size and acked <= self.stall_acked:
                log.log(V(2), "aborting connection to %s: %d bytes unread for %.0fs", _peer(t), size, stall)
                t.abort()
            else:
                self.stall_since, self.stall_size, self.stall_acked = now, size, acked

    # --- httptools callbacks ------------------------------------------------------
    def on_message_begin(self) -> None:
        self.url = []
        self.url_size = 0
        self.headers = {}
        self.repeated = None
        self.head_size = 0
        self.body = []
        self.body_size = 0
        self.too_large = False
        if self.deadline_kind != _HEAD:
            self._set_deadline(_HEAD, self.limits.header_timeout)

    def on_url(self, url: bytes) -> None:
        self.url_size += len(url)
        if self.url_size > self.limits.max_url_bytes:
            self.reject = 414
            raise _Reject
        self.url.append(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value) + 4
        k = name.decode("latin-1").lower()
        v = value.decode("latin-1")
        old = self.headers.get(k)
        if old is None:
            self.headers[k] = v
        else:                            # joined once the head is complete: linear time
            rep = self.repeated
            if rep is None:
                rep = self.repeated = {}
            vs = rep.get(k)
            if vs is None:
                rep[k] = [old, v]
            else:
                vs.append(v)

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.head_seen = 0
        if self.head_size + self.url_size > self.limits.max_header_bytes:
            self.reject = 431
            raise _Reject
        if self.repeated:
            for k, vs in self.repeated.items():
                self.headers[k] = ", ".join(vs)
            self.repeated = None
        self._set_deadline(_BODY, self.limits.body_timeout)
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
        self.in_head = True
        self.head_seen = 0
        self._set_deadline(_NO_DEADLINE, 0)
        if self.transport is None:
            return
        if self.too_large:
            self._fail(413, "Request entity too large: limit is %d" % self.server.max_body)
            return
        try:
            raw = b"".join(self.url).decode("utf-8")
        except UnicodeDecodeError:
            self._fail(400, "the request URL is not valid UTF-8")
            return
        path, _, query = raw.partition("?")
        path = unquote(path)
        req = Request(self.parser.get_method().decode(), path, query, self.headers,
                      b"".join(self.body), self)
        self.body = []
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
                if req.tunnel is not None:         # the handler had the connection: it is done with it
                    t.close()
                    break
                if self.upgraded:
                    keep_alive = False             # nothing after an Upgrade request is HTTP
                if req.stream is not None:
                    req.stream.finish()
                elif resp is not None:
                    head = _head(resp.status, resp.headers)
                    body = resp.body if req.method != "HEAD" else b""
                    head += b"Content-Length: %d\r\n\r\n" % len(resp.body)
                    t.write(bytes(head) + body if len(body) < 65536 else bytes(head))
                    if len(body) >= 65536:
                        await self.write_paced(body)
                if not keep_alive:
                    t.close()
                    break
                if self.paused:
                    await self.drain()
        finally:
            self.current = None
            self.task = None
            if self.transport is not None and self.in_head and not self.pending and self.deadline_kind != _HEAD:
                self._set_deadline(_IDLE, self.limits.idle_timeout)


def _peer(t: asyncio.BaseTransport) -> str:
    p = t.get_extra_info("peername")
    return f"{p[0]}:{p[1]}" if isinstance(p, tuple) and len(p) >= 2 else str(p)


class HTTPServer:
    """Listens on one address (TLS when `ssl_context` is given) and serves `handler`."""

    def __init__(self, handler: Handler, error_body: Callable[[int, str], bytes],
                 max_body: int = 3 * 1024 * 1024, limits: Limits | None = None):
        self.handler = handler
        self.error_body = error_body
        self.max_body = max_body
        self.limits = limits or Limits()
        self.connections: set[Connection] = set()
        self.servers: list[asyncio.base_events.Server] = []
        self._sweeper: asyncio.TimerHandle | None = None

    async def listen(self, host: str, port: int, ssl_context: ssl.SSLContext | None = None,
                     reuse_port: bool = False) -> int:
        loop = asyncio.get_running_loop()
        kw: dict[str, Any] = {}
        if ssl_context is not None and self.limits.header_timeout > 0:
            kw["ssl_handshake_timeout"] = self.limits.header_timeout
        srv = await loop.create_server(lambda: Connection(self), host, port, ssl=ssl_context,
                                       reuse_port=reuse_port or None, backlog=4096, **kw)
        self.servers.append(srv)
        if self._sweeper is None:
            self._sweeper = loop.call_later(self._tick(), self._sweep)
        return srv.sockets[0].getsockname()[1]

    def _tick(self) -> float:
        """Sweep period: a second, shorter when a timeout is (tests use 1-2 s ones)."""
        lim = self.limits
        ts = [x for x in (lim.header_timeout, lim.idle_timeout, lim.body_timeout, lim.write_stall_timeout) if x > 0]
        return min([1.0] + [x / 4 for x in ts])

    def _sweep(self) -> None:
        now = time.monotonic()
        for c in list(self.connections):
            c.sweep(now)
        self._sweeper = asyncio.get_running_loop().call_later(self._tick(), self._sweep)

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
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
