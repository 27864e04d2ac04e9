"""One client watch served from the cache.

The cacher appends each matching event (with the type this watcher sees it as) to the
watcher's queue; the HTTP side takes from it (`take`, a bounded batch at a time, only
while its connection accepts more) and writes the event's shared, encoded-once line. A
queue is bounded: a watcher that falls `max_pending` events or `max_pending_bytes` of
objects behind is closed (the client reconnects from its last resourceVersion), its
queue dropped and `on_overflow` called (the HTTP side aborts the connection there), so
one slow client never delays the others or grows memory without bound. The queue holds
references to the cache's events, not copies.
"""
from __future__ import annotations

import asyncio
from collections import deque
from typing import Callable

from .entry import ADDED, DELETED, Entry, Event

Predicate = Callable[[Entry], bool]

MAX_PENDING_BYTES = 16 << 20    # objects queued for one watcher before it is closed


class CacheWatcher:
    __slots__ = ("lo", "hi", "pred", "queue", "max_pending", "max_pending_bytes", "pending_bytes", "closed",
                 "overflowed", "_wake", "rev", "node_name", "cacher", "on_overflow")

    def __init__(self, lo: bytes, hi: bytes, pred: Predicate | None, max_pending: int,
                 node_name: str | None = None, max_pending_bytes: int = MAX_PENDING_BYTES):
        self.lo = lo
        self.hi = hi
        self.pred = pred
        self.queue: deque[tuple[Event, str]] = deque()
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self.pending_bytes = 0    # stored size of the queued events' objects
        self.on_overflow: Callable[[], None] | None = None
        self.closed = False
        self.overflowed = False
        self._wake: asyncio.Future | None = None
        self.rev = 0              # newest revision delivered (or known to have nothing for us)
        self.node_name = node_name
        self.cacher = None

    def offer(self, ev: Event) -> None:
        """Queue the event's line if it concerns this watcher (range, selector transitions)."""
        key = ev.obj.key
        if not (self.lo <= key < self.hi) or self.closed:
            return
        pred = self.pred
        if pred is None:
            self._push(ev, ev.type)
            return
        new_ok = ev.type != DELETED and pred(ev.obj)
        old_ok = ev.prev is not None and pred(ev.prev)
        if ev.type == DELETED:
            if old_ok:
                self._push(ev, DELETED)
        elif new_ok:
            self._push(ev, ev.type if old_ok else ADDED)
        elif old_ok:
            self._push(ev, DELETED)

    def _push(self, ev: Event, as_type: str) -> None:
        size = len(ev.obj.raw)
        if len(self.queue) >= self.max_pending or self.pending_bytes + size > self.max_pending_bytes:
            self.overflowed = True
            self.queue.clear()
            self.pending_bytes = 0
            self.close()
            cb, self.on_overflow = self.on_overflow, None
            if cb is not None:
                cb()
            return
        self.queue.append((ev, as_type))
        self.pending_bytes += size
        self.rev = ev.rev
        w = self._wake
        if w is not None and not w.done():
            w.set_result(None)

    def progress(self, rev: int) -> None:
        """The cache reached `rev` with nothing more for this watcher (bookmarks use it)."""
        if rev > self.rev and not self.queue:
            self.rev = rev

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        w = self._wake
        if w is not None and not w.done():
            w.set_result(None)
        if self.cacher is not None:
            self.cacher.remove_watcher(self)

    async def wait(self, timeout: float) -> None:
        """Until something is queued, the watcher closes, or `timeout` passes."""
        if self.queue or self.closed:
            return
        loop = asyncio.get_running_loop()
        fut = self._wake = loop.create_future()
        timer = loop.call_later(max(timeout, 0.0), lambda: fut.done() or fut.set_result(None))
        try:
            await fut
        finally:
            timer.cancel()
            self._wake = None

    def drain(self) -> list[tuple[Event, str]]:
        out = list(self.queue)
        self.queue.clear()
        self.pending_bytes = 0
        return out

    def take(self, budget: int) -> list[tuple[Event, str]]:
        """Queued events, oldest first, until their objects pass `budget` bytes (at
        least one): what is written to the connection at once."""
        q = self.queue
        if self.pending_bytes <= budget:
            return self.drain()
        out = []
        taken = 0
        while q and (not out or taken < budget):
            item = q.popleft()
            out.append(item)
            taken += len(item[0].obj.raw)
        self.pending_bytes -= taken
        return out
