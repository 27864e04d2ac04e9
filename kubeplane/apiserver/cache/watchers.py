"""One client watch served from the cache.

The cacher appends each matching event (with the type this watcher sees it as) to the
watcher's queue; the HTTP side drains it and writes the event's shared, encoded-once line. A queue is bounded: a watcher that falls `max_pending`
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
        self.queue: deque[tuple[Event, str]] = deque()
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
        if len(self.queue) >= self.max_pending:
            self.overflowed = True
            self.close()
            return
        self.queue.append((ev, as_type))
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
        return out
