"""SPDY/3.1 framing and a server-side session, as much as Kubernetes' streams use.

kubectl's port-forward (and exec/attach before 1.30) multiplexes streams over one
connection with SPDY/3.1 (Go's moby/spdystream): the client opens a stream with a
SYN_STREAM whose compressed header block names it (`streamType: data|error|stdin|...`),
the server answers SYN_REPLY, both sides send DATA frames and end their half with the
FIN flag; PING frames are echoed. kubectl 1.31+ sends the very same frames inside
WebSocket binary messages (subprotocol `SPDY/3.1+portforward.k8s.io`), so the session
here only needs a `send(bytes)` callable and is fed whatever bytes arrive.

Invariants:
- Header blocks are zlib streams with SPDY/3's dictionary, one compression context per
  direction for the whole connection (each block ends with a sync flush), so every
  received header block must be inflated in order, even for streams we reset.
- A frame longer than `MAX_FRAME` or a malformed header block ends the session (the
  caller closes the connection); the parser never buffers more than one frame.
- spdystream does no flow control (it ignores WINDOW_UPDATE), so neither do we: inbound
  DATA for a stream goes into a bounded queue and `feed` waits while it is full, which
  stops reading the connection (TCP backpressure) instead of buffering.
"""
from __future__ import annotations

import asyncio
import struct
import zlib
from dataclasses import dataclass, field
from typing import Awaitable, Callable

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01
RST_PROTOCOL_ERROR, RST_INVALID_STREAM, RST_REFUSED_STREAM, RST_CANCEL = 1, 2, 3, 5
MAX_FRAME = 1 << 24          # the 24-bit length field's limit

_WORDS = (
    "options head post put delete trace accept accept-charset accept-encoding accept-language "
    "accept-ranges age allow authorization cache-control connection content-base content-encoding "
    "content-language content-length content-location content-md5 content-range content-type date "
    "etag expect expires from host if-match if-modified-since if-none-match if-range "
    "if-unmodified-since last-modified location max-forwards pragma proxy-authenticate "
    "proxy-authorization range referer retry-after server te trailer transfer-encoding upgrade "
    "user-agent vary via warning www-authenticate method get status"
).split() + ["200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin"]
_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
    "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented"
    "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 "
    "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
    "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
    "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
# SPDY/3's zlib dictionary for header blocks (the spec's, as Go's spdy package has it)
DICTIONARY = b"".join(struct.pack(">I", len(w)) + w.encode() for w in _WORDS) + _TAIL.encode()

Headers = dict[str, list[str]]


class ProtocolError(Exception):
    """The peer broke SPDY framing: the session cannot go on."""


@dataclass
class Frame:
    kind: int                    # 0 for DATA, else the control frame type
    flags: int
    stream_id: int = 0
    data: bytes = b""            # DATA payload
    headers: Headers = field(default_factory=dict)
    value: int = 0               # RST/GOAWAY status, PING id, WINDOW_UPDATE delta


def encode_headers(headers: Headers) -> bytes:
    out = [struct.pack(">I", len(headers))]
    for k, vs in headers.items():
        kb, vb = k.lower().encode(), "\x00".join(vs).encode()
        out += [struct.pack(">I", len(kb)), kb, struct.pack(">I", len(vb)), vb]
    return b"".join(out)


def decode_headers(block: bytes) -> Headers:
    try:
        (n,), pos = struct.unpack_from(">I", block), 4
        out: Headers = {}
        for _ in range(n):
            (ln,) = struct.unpack_from(">I", block, pos)
            name = block[pos + 4:pos + 4 + ln].decode()
            pos += 4 + ln
            (lv,) = struct.unpack_from(">I", block, pos)
            value = block[pos + 4:pos + 4 + lv].decode()
            pos += 4 + lv
            if pos > len(block):
                raise ProtocolError("truncated header block")
            out.setdefault(name.lower(), []).extend(value.split("\x00"))
        return out
    except (struct.error, UnicodeDecodeError) as e:
        raise ProtocolError(f"malformed header block: {e}") from None


class Codec:
    """Frames to bytes and back for one connection (its two zlib contexts)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)
        self._deflate = zlib.compressobj(9, zlib.DEFLATED, 15, zdict=DICTIONARY)

    # --- reading -----------------------------------------------------------------------
    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames = []
        while len(self._buf) >= 8:
            length = int.from_bytes(self._buf[5:8], "big")
            if len(self._buf) < 8 + length:
                break
            head, body = bytes(self._buf[:8]), bytes(self._buf[8:8 + length])
            del self._buf[:8 + length]
            frames.append(self._frame(head, body))
        return frames

    def _block(self, data: bytes) -> Headers:
        try:
            raw = self._inflate.decompress(data, MAX_FRAME)
        except zlib.error as e:
            raise ProtocolError(f"header block does not inflate: {e}") from None
        return decode_headers(raw)

    def _frame(self, head: bytes, body: bytes) -> Frame:
        flags = head[4]
        if not head[0] & 0x80:                       # DATA
            return Frame(0, flags, int.from_bytes(head[:4], "big") & 0x7FFFFFFF, data=body)
        version = int.from_bytes(head[:2], "big") & 0x7FFF
        kind = int.from_bytes(head[2:4], "big")
        if version != VERSION:
            raise ProtocolError(f"SPDY version {version}")
        try:
            if kind == SYN_STREAM:
                sid = int.from_bytes(body[:4], "big") & 0x7FFFFFFF
                return Frame(kind, flags, sid, headers=self._block(body[10:]))
            if kind in (SYN_REPLY, HEADERS):
                sid = int.from_bytes(body[:4], "big") & 0x7FFFFFFF
                return Frame(kind, flags, sid, headers=self._block(body[4:]))
            if kind in (RST_STREAM, WINDOW_UPDATE, GOAWAY):
                a, b = struct.unpack_from(">II", body)
                return Frame(kind, flags, a & 0x7FFFFFFF, value=b)
            if kind == PING:
                return Frame(kind, flags, value=struct.unpack_from(">I", body)[0])
        except struct.error:
            raise ProtocolError(f"short frame of type {kind}") from None
        return Frame(kind, flags)                    # SETTINGS and unknown types: ignored

    # --- writing -----------------------------------------------------------------------
    def _compress(self, headers: Headers) -> bytes:
        return self._deflate.compress(encode_headers(headers)) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    @staticmethod
    def control(kind: int, flags: int, body: bytes) -> bytes:
        return struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(body)) + body

    def syn_reply(self, stream_id: int, headers: Headers, fin: bool = False) -> bytes:
        return self.control(SYN_REPLY, FLAG_FIN if fin else 0,
                            struct.pack(">I", stream_id) + self._compress(headers))

    def syn_stream(self, stream_id: int, headers: Headers, fin: bool = False) -> bytes:
        return self.control(SYN_STREAM, FLAG_FIN if fin else 0,
                            struct.pack(">IIBB", stream_id, 0, 0, 0) + self._compress(headers))

    @staticmethod
    def data(stream_id: int, data: bytes, fin: bool = False) -> bytes:
        return struct.pack(">II", stream_id, ((FLAG_FIN if fin else 0) << 24) | len(data)) + data

    def rst(self, stream_id: int, status: int) -> bytes:
        return self.control(RST_STREAM, 0, struct.pack(">II", stream_id, status))

    def ping(self, ping_id: int) -> bytes:
        return self.control(PING, 0, struct.pack(">I", ping_id))

    def goaway(self, last_stream: int, status: int = 0) -> bytes:
        return self.control(GOAWAY, 0, struct.pack(">II", last_stream, status))


DATA_CHUNK = 32 << 10        # what one DATA frame carries at most when we send


class Stream:
    """One stream the client opened: its headers, what it sends (`read`), our half (`write`)."""

    def __init__(self, session: "Session", stream_id: int, headers: Headers, remote_done: bool):
        self.session = session
        self.id = stream_id
        self.headers = headers
        self._inbox: asyncio.Queue[bytes] = asyncio.Queue(16)
        self.remote_done = remote_done
        self.local_done = False
        if remote_done:
            self._inbox.put_nowait(b"")

    def header(self, name: str, default: str = "") -> str:
        vs = self.headers.get(name.lower())
        return vs[0] if vs else default

    async def read(self) -> bytes:
        """The next piece the client sent; b"" once it finished its half (or reset)."""
        if self._inbox.empty() and self.remote_done:
            return b""
        data = await self._inbox.get()
        if not data:
            self.remote_done = True
        return data

    async def _deliver(self, data: bytes, fin: bool) -> None:
        if self.remote_done:
            return
        if data:
            await self._inbox.put(data)
        if fin:
            self.remote_done = True
            await self._inbox.put(b"")

    def _reset(self) -> None:
        self.local_done = True
        if not self.remote_done:
            self.remote_done = True
            try:
                self._inbox.put_nowait(b"")
            except asyncio.QueueFull:       # a reader blocked on a full queue is woken by read()
                pass

    def write(self, data: bytes) -> None:
        if self.local_done or self.session.closed:
            return
        for i in range(0, len(data), DATA_CHUNK):
            self.session.send(self.session.codec.data(self.id, data[i:i + DATA_CHUNK]))

    def close(self) -> None:
        """End our half (DATA with FIN)."""
        if not self.local_done and not self.session.closed:
            self.local_done = True
            self.session.send(self.session.codec.data(self.id, b"", fin=True))

    def reset(self) -> None:
        if not self.session.closed:
            self.session.send(self.session.codec.rst(self.id, RST_CANCEL))
        self._reset()
        self.session.streams.pop(self.id, None)

    async def drain(self) -> None:
        await self.session.drain()


class Session:
    """The server side of a SPDY/3.1 connection. `feed` the bytes that arrive; every
    stream the client opens is answered with SYN_REPLY (as spdystream's server does)
    and handed to `on_stream`; PINGs are echoed."""

    def __init__(self, send: Callable[[bytes], None], on_stream: Callable[[Stream], None],
                 drain: Callable[[], Awaitable[None]] | None = None):
        self.codec = Codec()
        self._send = send
        self._drain = drain
        self.on_stream = on_stream
        self.streams: dict[int, Stream] = {}
        self.closed = False
        self.last_stream = 0

    def send(self, data: bytes) -> None:
        if not self.closed:
            self._send(data)

    async def drain(self) -> None:
        if self._drain is not None:
            await self._drain()

    async def feed(self, data: bytes) -> None:
        """Handle the frames in `data`; raises ProtocolError on broken framing."""
        for f in self.codec.feed(data):
            if f.kind == 0:
                s = self.streams.get(f.stream_id)
                if s is not None:
                    await s._deliver(f.data, bool(f.flags & FLAG_FIN))
                    if s.remote_done and s.local_done:
                        self.streams.pop(s.id, None)
            elif f.kind == SYN_STREAM:
                if f.stream_id % 2 == 0 or f.stream_id <= self.last_stream:
                    self.send(self.codec.rst(f.stream_id, RST_PROTOCOL_ERROR))
                    continue
                self.last_stream = f.stream_id
                s = Stream(self, f.stream_id, f.headers, bool(f.flags & FLAG_FIN))
                self.streams[s.id] = s
                self.send(self.codec.syn_reply(s.id, {}))
                self.on_stream(s)
            elif f.kind == RST_STREAM:
                s = self.streams.pop(f.stream_id, None)
                if s is not None:
                    s._reset()
            elif f.kind == PING:
                if f.value % 2 == 1:        # the client's (odd ids): echo it
                    self.send(self.codec.ping(f.value))
            elif f.kind == GOAWAY:
                self.close()
            elif f.kind == HEADERS:
                pass

    def close(self) -> None:
        """GOAWAY once; every stream's reader sees its end."""
        if self.closed:
            return
        self.send(self.codec.goaway(self.last_stream))
        self.closed = True
        for s in list(self.streams.values()):
            s._reset()
        self.streams.clear()
