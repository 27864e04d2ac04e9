"""One client watch served from the cache.

The cacher appends the shared, already-encoded event lines to each matching watcher's
queue; the HTTP side drains it. A queue is bounded: a watcher that falls `max_pending`
lines behind is closed (the client reconnects from its last resourceVersion), so one
slow client never delays the others or grows memory without bound.
"""
from __future__ import annotations

import asyncio
from collections import deque
from typing import Callable

from .entry import ADDED, DELETED, Entry, Event

Predicate = Callable[[Entry], bool]


class CacheWatcher:
    __slots__ = ("lo", "hi", "pred", "queue", "max_pending", "closed", "overflowed", "_wake", "rev",
                 "node_name", "cacher")

    def __init__(self, lo: bytes, hi: bytes, pred: Predicate | None, max_pending: int,
                 node_name: str | None = None):
        self.lo = lo
        self.hi = hi
        self.pred = pred
        self.queue: deque[bytes] = deque()
        self.max_pending = max_pending
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
            self._push(ev.line(), ev.rev)
            return
        new_ok = ev.type != DELETED and pred(ev.obj)
        old_ok = ev.prev is not None and pred(ev.prev)
        if ev.type == DELETED:
            if old_ok:
                self._push(ev.line(), ev.rev)
        elif new_ok:
            self._push(ev.line(ev.type if old_ok else ADDED), ev.rev)
        elif old_ok:
            self._push(ev.line(DELETED), ev.rev)

    def _push(self, line: bytes, rev: int) -> None:
        if len(self.queue) >= self.max_pending:
            self.overflowed = True
            self.close()
            return
        self.queue.append(line)
        self.rev = rev
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

    def drain(self) -> list[bytes]:
        out = list(self.queue)
        self.queue.clear()
        return out
