"""Watchers of the embedded store (etcd's watchable_store, in asyncio).

A watcher is either *synced* or *catching up*:

* synced watchers sit in the ``WatcherGroup``; when a batch of writes becomes durable the
  store calls ``WatcherGroup.notify`` once and each matching watcher gets the events
  appended to its buffer (the push path; one pass over the batch per watcher).
* a watcher that starts at an old revision, or whose buffer grew past
  ``MAX_BUFFERED_EVENTS`` because its consumer is slow, drops its buffer and reads the
  revision-ordered ``History`` itself, a bounded chunk per ``__anext__`` (the pull path).
  A watcher far behind therefore costs only its own consumer's time and no memory beyond
  the history the store keeps anyway; live watchers are never delayed by it.  When it
  reaches the committed revision it joins the group again.

Either way a watcher delivers every matching event with revision >= its start exactly
once, in revision order, and ``next_rev`` is the first revision it has not delivered.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ..errors import CompactedError
from ..interface import Watcher
from ..types import Event, EventType, WatchResponse
from .key_index import Record, previous_live
from .kvstore import in_range

if TYPE_CHECKING:
    from .store import EmbeddedStore

MAX_BUFFERED_EVENTS = 4096  # per watcher, before it falls back to reading history
CATCH_UP_EVENTS = 1000  # events per pull-path response
CATCH_UP_REVISIONS = 20000  # revisions scanned per pull step before yielding


def _event(rec: Record, with_prev: bool) -> Event:
    if rec.version == 0:
        return Event(EventType.DELETE, rec, previous_live(rec) if with_prev else None)
    return Event(EventType.PUT, rec, previous_live(rec) if with_prev else None)


class EmbeddedWatcher(Watcher):
    def __init__(
        self,
        store: "EmbeddedStore",
        watch_id: int,
        key: bytes,
        range_end: bytes,
        start_revision: int,
        prev_kv: bool,
        progress_notify: bool,
        filter_put: bool,
        filter_delete: bool,
    ) -> None:
        self.store = store
        self.watch_id = watch_id
        self.key = key
        self.range_end = range_end
        self.prev_kv = prev_kv
        self.progress_notify = progress_notify
        self.filter_put = filter_put
        self.filter_delete = filter_delete
        self.next_rev = start_revision
        self.synced = False
        self.closed = False
        self.buffer: list[Event] = []
        self.buffer_rev = 0
        self.progress_requested = False
        self.progress_due = False  # set by the periodic ticker
        self.sent_since_tick = False
        self._waiter: asyncio.Future | None = None

    # --- matching -----------------------------------------------------------------

    def matches(self, key: bytes) -> bool:
        return in_range(key, self.key, self.range_end)

    def _wanted(self, rec: Record) -> bool:
        if rec.version == 0:
            return not self.filter_delete
        return not self.filter_put

    # --- push path (called by the group) ------------------------------------------

    def push(self, records: list[Record], upto: int) -> None:
        """Records committed up to ``upto`` that match this watcher."""
        next_rev = self.next_rev
        buf = self.buffer
        for rec in records:
            if rec.mod_revision >= next_rev and self._wanted(rec):
                buf.append(_event(rec, self.prev_kv))
        self.next_rev = max(next_rev, upto + 1)
        self.buffer_rev = upto
        if len(buf) > MAX_BUFFERED_EVENTS:
            # Slow consumer: forget the buffer, read it back from history later.
            self.next_rev = buf[0].kv.mod_revision
            buf.clear()
            self.store._watchers.discard(self)
            self.synced = False
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    # --- consumer side ------------------------------------------------------------

    async def __anext__(self) -> WatchResponse:
        store = self.store
        while True:
            if self.closed:
                raise StopAsyncIteration
            if self.buffer:
                events, self.buffer = self.buffer, []
                self.sent_since_tick = True
                store._stats.events_sent += len(events)
                return WatchResponse(self.buffer_rev, events)
            if not self.synced:
                # One bounded step of history per call, and a yield before it, so a
                # consumer draining a long backlog in a tight loop shares the event loop.
                await store.pause()
                if self.closed:
                    raise StopAsyncIteration
                resp = self._catch_up()
                if resp is not None:
                    self.sent_since_tick = True
                    store._stats.events_sent += len(resp.events)
                    return resp
                continue
            if self.progress_requested or self.progress_due:
                self.progress_requested = self.progress_due = False
                return WatchResponse(store._kv.committed, [])
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def _catch_up(self) -> WatchResponse | None:
        store = self.store
        history = store._kv.history
        committed = store._kv.committed
        if self.next_rev < store._kv.compacted or self.next_rev < history.base:
            self.closed = True
            store._stats.watchers_open -= 1
            store._watchers.discard(self)
            raise CompactedError(store._kv.compacted)
        stop = min(committed, self.next_rev + CATCH_UP_REVISIONS - 1)
        recs, nxt = history.scan(self.next_rev, stop, self.matches, CATCH_UP_EVENTS)
        self.next_rev = nxt
        if nxt > committed:
            self.synced = True
            store._watchers.add(self)
        events = [_event(r, self.prev_kv) for r in recs if self._wanted(r)]
        if events:
            return WatchResponse(nxt - 1, events)
        return None

    async def request_progress(self) -> None:
        self.progress_requested = True
        self._wake()

    def tick(self) -> None:
        """Periodic progress notification (only if nothing was sent since last tick)."""
        if self.progress_notify and self.synced and not self.sent_since_tick and not self.buffer:
            self.progress_due = True
            self._wake()
        self.sent_since_tick = False

    async def cancel(self) -> None:
        if not self.closed:
            self.closed = True
            self.store._stats.watchers_open -= 1
            self.store._watchers.discard(self)
            self._wake()


class WatcherGroup:
    """The synced watchers, indexed so a write only visits watchers that can match it."""

    def __init__(self) -> None:
        self.by_key: dict[bytes, set[EmbeddedWatcher]] = {}
        self.ranges: set[EmbeddedWatcher] = set()
        self.all: set[EmbeddedWatcher] = set()

    def __len__(self) -> int:
        return len(self.all)

    def add(self, w: EmbeddedWatcher) -> None:
        if w in self.all:
            return
        self.all.add(w)
        if w.range_end:
            self.ranges.add(w)
        else:
            self.by_key.setdefault(w.key, set()).add(w)

    def discard(self, w: EmbeddedWatcher) -> None:
        if w not in self.all:
            return
        self.all.discard(w)
        if w.range_end:
            self.ranges.discard(w)
        else:
            s = self.by_key.get(w.key)
            if s is not None:
                s.discard(w)
                if not s:
                    del self.by_key[w.key]

    def notify(self, records: list[Record], upto: int) -> None:
        """Deliver a durable batch (records in revision order) to the synced watchers."""
        if not self.all:
            return
        for w in list(self.ranges):
            match = w.matches
            recs = [r for r in records if match(r.key)]
            if recs:
                w.push(recs, upto)
        by_key = self.by_key
        if by_key:
            hits: dict[bytes, list[Record]] = {}
            for r in records:
                if r.key in by_key:
                    hits.setdefault(r.key, []).append(r)
            for key, recs in hits.items():
                for w in list(by_key.get(key, ())):
                    w.push(recs, upto)

    def tick(self) -> None:
        for w in list(self.all):
            w.tick()
