"""Watch: a chunked stream of `{"type": ..., "object": ...}` lines read from the store's
watch (issue 4 puts the watch cache underneath).

- resourceVersion unset or "0": the current state first, as ADDED events, then changes.
- resourceVersion N: every change after N; N compacted away: HTTP 200, then one ERROR
  event carrying a 410 Status ("too old resource version"), then the end of the stream.
- sendInitialEvents=true: the current state as ADDED, then a BOOKMARK annotated
  `k8s.io/initial-events-end: "true"` (WatchList).
- allowWatchBookmarks: a BOOKMARK about once a minute and just before the timeout.
- Selectors apply to the old and new object, so an object that stops matching is sent
  as DELETED and one that starts matching as ADDED (as upstream's cacher does).
- A client that does not keep up costs a bounded amount: nothing more is written while
  its connection's write buffer is above the high-water mark (64 KiB, `Stream.paused`),
  events wait in the cache watcher's queue (references to the cache's events, up to
  `WRITE_BATCH` bytes of them taken per write); a queue past its bounds closes the
  watcher and aborts the connection at once (its buffers released), and a connection
  whose buffer does not shrink is aborted by the HTTP server's stall sweep.
"""
from __future__ import annotations

import asyncio
import random
import time
from typing import Protocol, Any, Callable

import orjson

from ...store import errors as store_errors
from ...store.types import EventType, prefix_end
from ..machinery import codec, errors, protobuf
from ..cache.cacher import Cacher, TooOld
from ..cache.entry import Entry, Event
from ..transport.http import LONG_ITEMS, Request, long_write, long_write_slot
from .common import _int_param, protobuf_served, rv_error
from ..registry.storage import decode, prefix_of

from ..registry.resources import ResourceInfo
from ..registry.storage import ObjectStore
from .common import Route


class WatchHost(Protocol):
    """What a watch needs from the REST handlers (`RESTHandlers` is one); a protocol, so
    that this module does not import the handlers that import it."""
    min_request_timeout: float
    objects: ObjectStore

    def _read_defaults(self, info: ResourceInfo, obj: dict[str, Any]) -> None: ...

    async def _ready_cacher(self, info: ResourceInfo) -> Cacher | None: ...

WRITE_BATCH = 256 * 1024     # object bytes taken from a watcher's queue per write
BOOKMARK_EVERY = 60.0
_MAX_REV = (1 << 63) - 2      # start_revision = rev + 1 must stay an int64


def _event(kind: str, obj: Any) -> bytes:
    return orjson.dumps({"type": kind, "object": obj}) + b"\n"


def _pb_event(kind: str, obj: Any) -> bytes:
    """A protobuf watch frame of an object built for this watcher (a bookmark, an error
    Status, an event of a watch without the cache)."""
    return protobuf.watch_frame(kind, protobuf.encode(obj))


def _pb_frame(info, t: str, e: Entry) -> bytes:
    """A protobuf watch frame of a cached version: its bare message is encoded once per
    version (Entry.protobuf) and shared with GETs and LISTs."""
    gv, kind = info.group_version, info.kind
    return protobuf.watch_frame(t, protobuf.envelope(gv, kind, e.protobuf(gv, kind)))


def _stream_headers(pb: bool) -> list[tuple[str, str]]:
    return [("Content-Type", protobuf.STREAM_CONTENT_TYPE if pb else "application/json"),
            ("Cache-Control", "no-cache, private")]


async def serve_watch(h: "WatchHost", req: Request, route: Route) -> None:
    from ..registry.selectors import FieldSelector, LabelSelector, field_set

    info = route.info
    accept = codec.negotiate(req.headers.get("accept", ""), protobuf_served(info))
    pb = accept.protobuf
    enc = _pb_event if pb else _event
    lsel = LabelSelector.parse(req.param("labelSelector") or "")
    fsel = FieldSelector.for_resource(req.param("fieldSelector") or "", info)
    rv = req.param("resourceVersion") or ""
    bookmarks = (req.param("allowWatchBookmarks") or "").lower() in ("1", "true")
    send_initial = req.param("sendInitialEvents")
    if send_initial is not None:
        send_initial_b = send_initial.lower() == "true"
        if not bookmarks or req.param("resourceVersionMatch") != "NotOlderThan":
            raise errors.invalid("", "ListOptions", "", [errors.Cause(
                "FieldValueForbidden", "sendInitialEvents",
                "Forbidden: sendInitialEvents is forbidden for watch unless allowWatchBookmarks=true and "
                "resourceVersionMatch=NotOlderThan")])
    else:
        send_initial_b = None
    if rv not in ("", "0") and rv_error(rv) is not None:
        # upstream's cacher: the versioner's InvalidError, interpreted as 422 on the resource
        raise errors.invalid(info.group, info.plural, "", [errors.Cause(
            "FieldValueInvalid", "resourceVersion", (rv_error(rv) or "").split(": ", 1)[1])])
    timeout_s = req.param("timeoutSeconds")
    if timeout_s:
        timeout = float(_int_param(req, "timeoutSeconds", 0))
    else:
        timeout = random.uniform(h.min_request_timeout, 2 * h.min_request_timeout)
    filtering = not (lsel.empty and fsel.empty)

    def matches(obj: dict[str, Any]) -> bool:
        if not filtering:
            return True
        md = obj.get("metadata") or {}
        if not lsel.matches(md.get("labels")):
            return False
        return fsel.empty or fsel.matches(field_set(info, obj))

    table_first = [True]

    def render(obj: dict[str, Any]) -> Any:
        if info.crd is not None:
            h._read_defaults(info, obj)
        if accept.table:
            from .tables import table_for_watch_event

            t = table_for_watch_event(info, obj, req.param("includeObject") or "Metadata", table_first[0],
                                      now=time.time())
            table_first[0] = False
            return t
        if accept.metadata:
            return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}
        return obj

    prefix = prefix_of(info, route.namespace)
    if route.name is not None:
        from ..registry.storage import key_of

        key, end = key_of(info, route.namespace, route.name), b""
    else:
        key, end = prefix, prefix_end(prefix)

    cacher = await h._ready_cacher(info)
    if cacher is not None:
        def entry_matches(e: Entry) -> bool:
            return lsel.matches(e.labels) and (fsel.empty or fsel.matches(e.fields))

        pred = entry_matches if filtering else None
        node = fsel.exact("spec.nodeName") if (info.group, info.plural) == ("", "pods") else None
        plain = info.crd is None and not (accept.table or accept.metadata)
        fmt = (accept.table, accept.metadata, req.param("includeObject") or "Metadata")
        return await _watch_cache(req, info, cacher, key, end or key + b"\0", rv, send_initial_b, bookmarks,
                                  timeout, pred, node, None if plain else render, fmt, _counter(h, info), pb)

    initial: list[dict[str, Any]] = []
    if rv in ("", "0") or send_initial_b:
        kvs, start_rev, _, _ = await h.objects.list(info, route.namespace)
        if route.name is not None:
            kvs = [kv for kv in kvs if kv.key == key]
        initial = [o for o in (decode(kv) for kv in kvs) if matches(o)]
        if send_initial_b and rv not in ("", "0"):
            want = int(rv) if rv.isdigit() else 0
            start_rev = max(start_rev, want)
    else:
        start_rev = min(int(rv), _MAX_REV)     # a uint64 beyond the store's int64 revisions
    if send_initial_b is False:
        initial = []

    try:
        watcher = await h.objects.store.watch(key, end, start_revision=start_rev + 1, prev_kv=True,
                                              progress_notify=bookmarks)
    except store_errors.StoreError as e:
        raise errors.internal(str(e)) from None

    stream = req.start_stream(200, _stream_headers(pb))
    last_rev = start_rev
    count = _counter(h, info)
    try:
        if initial:
            sent = stream.sent
            async with long_write(len(initial)):
                await stream.write_items(initial, lambda obj: (enc("ADDED", render(obj)),))
            count(len(initial), stream.sent - sent)
        if send_initial_b:
            stream.write(enc("BOOKMARK", _bookmark(info, last_rev, initial_end=True)))
        req.init_done()
        deadline = time.monotonic() + timeout
        next_bookmark = time.monotonic() + BOOKMARK_EVERY
        it = watcher.__aiter__()

        async def emit(line: bytes) -> None:
            stream.write(line)
            count(1, len(line))
            if stream.paused:     # one event at most above the high-water mark
                await stream.drain()

        while True:
            now = time.monotonic()
            wait = deadline - now
            if bookmarks:
                wait = min(wait, max(next_bookmark - now, 0.0))
            if wait <= 0 and now >= deadline:
                break
            try:
                resp = await asyncio.wait_for(it.__anext__(), timeout=max(wait, 0.001))
            except asyncio.TimeoutError:
                now = time.monotonic()
                if bookmarks and now < deadline and now >= next_bookmark:
                    stream.write(enc("BOOKMARK", _bookmark(info, last_rev)))
                    next_bookmark = now + BOOKMARK_EVERY
                if now >= deadline - 0.001:
                    break
                continue
            except StopAsyncIteration:
                break
            except store_errors.CompactedError as e:
                stream.write(enc("ERROR", _too_old(start_rev, getattr(e, "compact_revision", 0))))
                break
            for ev in resp.events:
                last_rev = ev.kv.mod_revision
                if ev.type == EventType.PUT:
                    new = decode(ev.kv)
                    new_ok = matches(new)
                    old_ok = False
                    if filtering and ev.prev_kv is not None and ev.kv.create_revision != ev.kv.mod_revision:
                        old_ok = matches(decode(ev.prev_kv))
                    elif ev.kv.create_revision != ev.kv.mod_revision:
                        old_ok = new_ok
                    if new_ok:
                        kind = "MODIFIED" if old_ok else "ADDED"
                        line = enc(kind, render(new))
                        await emit(line)
                    elif old_ok:
                        # upstream's cacheWatcher: the previous content at the event's revision
                        old = decode(ev.prev_kv) if ev.prev_kv is not None else new
                        old["metadata"]["resourceVersion"] = str(ev.kv.mod_revision)
                        line = enc("DELETED", render(old))
                        await emit(line)
                else:
                    if ev.prev_kv is None:
                        continue
                    old = decode(ev.prev_kv)
                    old["metadata"]["resourceVersion"] = str(ev.kv.mod_revision)
                    if matches(old):
                        line = enc("DELETED", render(old))
                        await emit(line)
            if resp.revision > last_rev and not resp.events:
                last_rev = resp.revision   # a progress notification
            if stream.closed or req.conn.transport is None:
                break
        if bookmarks and time.monotonic() >= deadline - 0.001 and not stream.closed:
            stream.write(enc("BOOKMARK", _bookmark(info, last_rev)))
    finally:
        try:
            await watcher.cancel()
        except Exception:
            pass
    return None


async def _watch_cache(req: Request, info, cacher: Cacher, lo: bytes, hi: bytes, rv: str,
                       send_initial: bool | None, bookmarks: bool, timeout: float, pred, node: str | None,
                       render, fmt: tuple, count, pb: bool = False) -> None:
    """A watch served from the watch cache. Each event's line is encoded once and shared
    by every watcher; a watcher that asked for a Table or metadata only gets `render`'s
    conversion, also made once per event and format (except the first Table, which
    carries the column definitions). Long initial events are picked and written in a
    long_write_slot, given back once they are out."""
    ks = cacher.keys
    slot: asyncio.Semaphore | None = None
    if (rv in ("", "0") or send_initial) and send_initial is not False \
            and ks.bisect_left(hi) - ks.bisect_left(lo) > LONG_ITEMS:
        slot = long_write_slot()
        await slot.acquire()

    def initial_done() -> None:
        nonlocal slot
        if slot is not None:
            slot.release()
            slot = None
    try:
        return await _watch_cache_in(req, info, cacher, lo, hi, rv, send_initial, bookmarks, timeout, pred, node,
                                     render, fmt, count, initial_done, pb)
    finally:
        initial_done()


async def _watch_cache_in(req: Request, info, cacher: Cacher, lo: bytes, hi: bytes, rv: str,
                          send_initial: bool | None, bookmarks: bool, timeout: float, pred, node: str | None,
                          render, fmt: tuple, count, initial_done: Callable[[], None], pb: bool) -> None:
    first = [True]
    enc = _pb_event if pb else _event

    def convert(ev: Event, t: str) -> bytes:
        obj = orjson.loads(ev.line(t))["object"]
        return _event(t, render(obj))

    def out(items: list[tuple[Event, str]]) -> bytes:
        if pb:      # each event's frame built once per type for every protobuf watcher
            return b"".join([ev.cached(("pb", t), lambda ev=ev, t=t: _pb_frame(info, t, ev.entry(t)))
                             for ev, t in items])
        if render is None:
            return b"".join([ev.line(t) for ev, t in items])
        conv = []
        for ev, t in items:
            if first[0] and fmt[0]:
                conv.append(convert(ev, t))    # the Table with columnDefinitions
            else:
                conv.append(ev.cached((fmt, t), lambda ev=ev, t=t: convert(ev, t)))
            first[0] = False
        return b"".join(conv)

    initial: list[Entry] = []
    if rv in ("", "0") or send_initial:
        if send_initial and rv not in ("", "0") and rv.isdigit():
            await cacher.wait_for(int(rv), 3.0)
        after = cacher.rev
        if send_initial is not False:
            initial = [e for e in cacher.entries(lo, hi) if pred is None or pred(e)]
    else:
        after = min(int(rv), _MAX_REV)
        if after > cacher.rev:
            await cacher.wait_for(after, 3.0)
    if after < cacher.buffer.base and not cacher.prefilled.is_set():
        try:   # just started: the history before the listed state is still being loaded
            await asyncio.wait_for(cacher.prefilled.wait(), 3.0)
        except asyncio.TimeoutError:
            pass
    headers = _stream_headers(pb)
    try:
        w = cacher.watch(lo, hi, after, pred, node)
    except TooOld as e:
        stream = req.start_stream(200, headers)
        stream.write(enc("ERROR", _too_old(e.asked, e.oldest)))
        return None
    stream = req.start_stream(200, headers)
    w.on_overflow = stream.abort      # too far behind: drop the connection and its buffers now
    try:
        if initial:
            sent = stream.sent
            if pb:
                await stream.write_items(initial, lambda e: (_pb_frame(info, "ADDED", e),))
            elif render is None:
                await stream.write_items(initial, _added_line)
            else:
                await stream.write_items(initial, lambda e: (enc("ADDED", render(e.obj())),))
                first[0] = False
            count(len(initial), stream.sent - sent)
        if send_initial:
            stream.write(enc("BOOKMARK", _bookmark(info, after, initial_end=True)))
        initial_done()
        req.init_done()
        deadline = time.monotonic() + timeout
        next_bookmark = time.monotonic() + BOOKMARK_EVERY
        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            wait = deadline - now
            if bookmarks:
                wait = min(wait, max(next_bookmark - now, 0.0))
            if stream.paused:
                await stream.drain()   # events wait in w's queue; its overflow aborts the connection
                if stream.closed or req.conn.transport is None:
                    break
            else:
                await w.wait(wait)
            lines = w.take(WRITE_BATCH)
            if lines:
                data = out(lines)
                stream.write(data)
                count(len(lines), len(data))
            if w.closed and not w.queue or stream.closed:
                break
            now = time.monotonic()
            if bookmarks and now >= next_bookmark and now < deadline:
                stream.write(enc("BOOKMARK", _bookmark(info, w.rev)))
                next_bookmark = now + BOOKMARK_EVERY
        if bookmarks and not stream.closed and not w.closed:
            stream.write(enc("BOOKMARK", _bookmark(info, w.rev)))
    finally:
        w.close()
    return None


def _added_line(e: Entry) -> tuple[bytes | memoryview, ...]:
    return (b'{"type":"ADDED","object":', *e.parts(), b"}\n")


def _counter(h: "WatchHost", info) -> Callable[[int, int], None]:
    """Counts events sent to one watcher: apiserver_watch_events_total and _sizes. A batch
    of n events written at once is recorded as n events of its mean size."""
    m = getattr(h, "metrics", None)
    if m is None:
        return lambda n, size: None
    key = (info.group, info.version, info.kind)
    hist = m.watch_event_sizes.child(key)
    events = m.watch_events

    def count(n: int, size: int) -> None:
        events.inc(key, n)
        hist.observe_n(size / n, n)
    return count


def _bookmark(info, rev: int, initial_end: bool = False) -> dict[str, Any]:
    md: dict[str, Any] = {"resourceVersion": str(rev)}
    if initial_end:
        md["annotations"] = {"k8s.io/initial-events-end": "true"}
    return {"kind": info.kind, "apiVersion": info.group_version, "metadata": md}


def _too_old(asked: int, compacted: int) -> dict[str, Any]:
    msg = f"too old resource version: {asked} ({compacted})" if compacted else f"too old resource version: {asked}"
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": msg,
            "reason": "Expired", "code": 410}
