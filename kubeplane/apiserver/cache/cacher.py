"""One resource's watch cache: its current state, recent events and watchers.

Fed by one store watch (with previous values and progress notifications) over the
resource's key prefix. Invariants:

- `rev` is the newest store revision the cache reflects: every event up to it has been
  applied. It moves with events and with progress notifications (which say "nothing
  else for your range up to here"), so a consistent read can wait for it.
- `items` is the state at `rev`; `buffer` holds the events in (buffer.base, rev]. The
  state at any revision r >= buffer.base is `items` with the events after r undone,
  which serves paginated and Exact reads at one revision without snapshots.
- Start-up lists at revision C and watches from an earlier revision: events up to C only
  fill the buffer, so that clients resuming a watch after a restart from a revision a
  little older than C are served instead of being told to relist.
- If the store watch fails, the cacher re-lists and turns the difference into events:
  its watchers continue, nobody has to relist.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable, Iterable

from sortedcontainers import SortedList

from ...store import errors as store_errors
from ...store.interface import Store
from ...store.types import EventType, prefix_end
from ..registry.resources import ResourceInfo
from .buffer import EventBuffer
from .entry import ADDED, DELETED, MODIFIED, Entry, Event, deleted_entry, make_entry
from .watchers import CacheWatcher

log = logging.getLogger("kubeplane.apiserver.cache")

PREFILL_REVISIONS = 10_000   # how far back start-up tries to fill the buffer from store history
PROGRESS_ASK = 0.1           # seconds between progress requests while a read waits for a revision


class TooOld(Exception):
    def __init__(self, asked: int, oldest: int):
        super().__init__(f"too old resource version: {asked} ({oldest})")
        self.asked = asked
        self.oldest = oldest


class Cacher:
    def __init__(self, info: ResourceInfo, store: Store, *, window: float = 75.0, min_events: int = 100,
                 max_events: int = 102_400, watcher_queue: int = 10_000):
        self.info = info
        self.store = store
        self.prefix = info.key_prefix.encode()
        self.end = prefix_end(self.prefix)
        self.items: dict[bytes, Entry] = {}
        self.keys: SortedList = SortedList()
        self.rev = 0
        self.buffer = EventBuffer(0, window=window, min_events=min_events, max_events=max_events)
        self.watchers: set[CacheWatcher] = set()
        self.by_node: dict[str, set[CacheWatcher]] = {}   # pods watched by spec.nodeName
        self.watcher_queue = watcher_queue
        self.ready = asyncio.Event()        # state loaded: reads can be served
        self.prefilled = asyncio.Event()    # start-up history is in the buffer (or given up)
        self.terminated_watchers = 0   # closed because they fell behind
        # metrics (read at scrape time): events from the store, events offered to watchers,
        # (re)initialisations and the objects each loaded
        self.events_received = 0
        self.events_dispatched = 0
        self.initializations = 0
        self.init_events = 0
        self._waiters: list[tuple[int, asyncio.Future]] = []
        self._progress_asked = -1e9         # loop time of the last progress request (wait_for)
        self._task: asyncio.Task | None = None
        self._store_watcher = None
        self._stopping = False

    # --- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        for w in list(self.watchers):
            w.close()

    async def _run(self) -> None:
        delay = 0.1
        first = True
        while not self._stopping:
            try:
                start_from = await self._list(prefill=first)
                first = False
                delay = 0.1
                self.ready.set()
                await self._follow(start_from)
            except asyncio.CancelledError:
                raise
            except Exception as e:   # store trouble: re-list after a pause
                log.warning("watch cache %s: %s; re-listing", self.info.qualified, e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _list(self, prefill: bool) -> int:
        """Load the state; returns the revision to watch from (exclusive)."""
        res = await self.store.range(self.prefix, self.end)
        now = time.monotonic()
        fresh = {kv.key: make_entry(self.info, kv) for kv in res.kvs}
        self.initializations += 1
        self.init_events += len(fresh)
        if self.ready.is_set():
            # re-list after a failed watch: the difference becomes events at the new revision
            for key, old in list(self.items.items()):
                if key not in fresh:
                    self._apply(Event(DELETED, res.revision, deleted_entry(old, res.revision), old, now))
            for key, new in fresh.items():
                old = self.items.get(key)
                if old is None or old.rev != new.rev:
                    self._apply(Event(MODIFIED if old else ADDED, new.rev, new, old, now))
            self._advance(res.revision, progress=True)
            return res.revision
        self.items = fresh
        self.keys = SortedList(fresh)
        self.rev = res.revision
        self.buffer.base = res.revision
        if prefill and res.revision > 1:
            return max(0, res.revision - PREFILL_REVISIONS)
        self.prefilled.set()
        return res.revision

    async def _follow(self, after: int) -> None:
        """Apply the store's events after `listed` (= self.rev). When `after` is older,
        the events in (after, listed] are history: they only fill the buffer, which then
        covers (after, ...] once the store watch is known to have caught up (its first
        progress notification or an event past `listed`)."""
        listed = self.rev
        watcher = await self.store.watch(self.prefix, self.end, start_revision=after + 1, prev_kv=True,
                                         progress_notify=True)
        self._store_watcher = watcher
        prefill: list[Event] | None = [] if after < listed else None
        if prefill is not None:
            try:
                await watcher.request_progress()
            except Exception:
                pass
        deadline = time.monotonic() + 3.0
        try:
            async for resp in watcher:
                now = time.monotonic()
                for ev in resp.events:
                    if ev.kv.mod_revision <= listed:
                        if prefill is not None:
                            e = self._event_from_store(ev, now, history=True)
                            if e is not None:
                                prefill.append(e)
                        continue
                    if prefill is not None:
                        self._install_prefill(prefill, after)
                        prefill = None
                    e = self._event_from_store(ev, now)
                    if e is not None:
                        self._apply(e)
                if not resp.events:        # progress: every event up to here was delivered
                    if prefill is not None and resp.revision >= listed:
                        self._install_prefill(prefill, after)
                        prefill = None
                    self._advance(resp.revision, progress=True)
                else:
                    self._advance(resp.events[-1].kv.mod_revision)
                if prefill is not None and now > deadline:
                    prefill = None         # could not confirm the history is complete: drop it
                    self.prefilled.set()
        except store_errors.CompactedError:
            if prefill is not None:
                # the history before the listed state is gone: watch from the listed revision
                self.prefilled.set()
                await watcher.cancel()
                self._store_watcher = None
                await self._follow(listed)
                return
            raise
        finally:
            if self._store_watcher is watcher:
                self._store_watcher = None

    def _install_prefill(self, events: list[Event], after: int) -> None:
        """The history before the listed state becomes the buffer's oldest part (the buffer
        holds nothing newer yet: this runs before the first live event is applied)."""
        evs = self.buffer.events
        tail = list(evs)
        evs.clear()
        evs.extend(events)
        evs.extend(tail)
        self.buffer.base = after
        self.buffer.trim()
        self.prefilled.set()

    def _event_from_store(self, ev, now: float, history: bool = False) -> Event | None:
        kv = ev.kv
        if ev.type == EventType.PUT:
            new = make_entry(self.info, kv)
            prev = make_entry(self.info, ev.prev_kv) if ev.prev_kv is not None else None
            if prev is None and not history:
                prev = self.items.get(kv.key)
            typ = MODIFIED if kv.create_revision != kv.mod_revision else ADDED
            if typ == MODIFIED and prev is None:
                typ = ADDED
            return Event(typ, kv.mod_revision, new, prev, now)
        prev = make_entry(self.info, ev.prev_kv) if ev.prev_kv is not None else None
        if prev is None and not history:
            prev = self.items.get(kv.key)
        if prev is None:
            return None
        return Event(DELETED, kv.mod_revision, deleted_entry(prev, kv.mod_revision), prev, now)

    def _apply(self, ev: Event) -> None:
        self.events_received += 1
        key = ev.obj.key
        if ev.type == DELETED:
            if self.items.pop(key, None) is not None:
                self.keys.discard(key)
        else:
            if key not in self.items:
                self.keys.add(key)
            self.items[key] = ev.obj
        self.buffer.append(ev)
        self._dispatch(ev)
        if ev.rev > self.rev:
            self.rev = ev.rev

    @property
    def watcher_count(self) -> int:
        return len(self.watchers) + sum(len(ws) for ws in self.by_node.values())

    def _dispatch(self, ev: Event) -> None:
        if self.watchers or self.by_node:
            self.events_dispatched += 1
        if self.by_node:
            nodes = {ev.obj.fields.get("spec.nodeName")}
            if ev.prev is not None:
                nodes.add(ev.prev.fields.get("spec.nodeName"))
            for n in nodes:
                for w in list(self.by_node.get(n or "", ())):
                    w.offer(ev)
        for w in list(self.watchers):
            if w.node_name is None:
                w.offer(ev)
                if w.overflowed:
                    self.terminated_watchers += 1

    def _advance(self, rev: int, progress: bool = False) -> None:
        """The cache reflects `rev`. On a progress notification (`progress`) every watcher
        learns it too (for its bookmarks); after events only the watchers that got one
        moved, and the others learn it at the next notification (not on the hot path)."""
        if rev > self.rev:
            self.rev = rev
        if progress:
            for w in self.watchers:
                w.progress(self.rev)
            for ws in self.by_node.values():
                for w in ws:
                    w.progress(self.rev)
        if self._waiters:
            keep = []
            for want, fut in self._waiters:
                if want <= self.rev:
                    if not fut.done():
                        fut.set_result(None)
                else:
                    keep.append((want, fut))
            self._waiters = keep

    # --- consistency ----------------------------------------------------------------------
    async def wait_for(self, rev: int, timeout: float) -> bool:
        """Until the cache reflects `rev` (True) or `timeout` passes (False).

        A cache whose resource is quiet moves only with progress notifications (every few
        seconds): while waiting, it asks the store watch for one (as upstream's cacher
        does), at most every PROGRESS_ASK seconds, so that a revision the store has
        already passed is reached at once and only one ahead of the store times out."""
        if self.rev >= rev:
            return True
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._waiters.append((rev, fut))
        deadline = loop.time() + timeout
        try:
            while True:
                await self._ask_progress()
                left = deadline - loop.time()
                if left <= 0:
                    return False
                try:
                    await asyncio.wait_for(asyncio.shield(fut), min(left, PROGRESS_ASK))
                    return True
                except asyncio.TimeoutError:
                    continue
        finally:
            self._waiters = [(r, f) for r, f in self._waiters if f is not fut]

    async def _ask_progress(self) -> None:
        loop = asyncio.get_running_loop()
        if self._store_watcher is None or loop.time() - self._progress_asked < PROGRESS_ASK:
            return
        self._progress_asked = loop.time()
        try:
            await self._store_watcher.request_progress()
        except Exception:      # the watch is being replaced: its successor reports progress
            pass

    async def consistent_revision(self) -> int:
        """The store's current revision, after asking the store watch for a progress
        notification so the cache can catch up with it even without events."""
        rev = await self.store.current_revision()
        if self.rev < rev and self._store_watcher is not None:
            try:
                await self._store_watcher.request_progress()
            except Exception:
                pass
        return rev

    # --- reads ----------------------------------------------------------------------------
    def get(self, key: bytes) -> Entry | None:
        return self.items.get(key)

    def entries(self, lo: bytes, hi: bytes, rev: int | None = None,
                start: bytes | None = None) -> Iterable[Entry]:
        """Entries with keys in [max(lo, start), hi) in key order, as of `rev` (None:
        now). Raises TooOld when `rev` is before the buffer."""
        begin = max(lo, start) if start else lo
        if rev is None or rev >= self.rev:
            for key in self.keys.irange(begin, hi, inclusive=(True, False)):
                yield self.items[key]
            return
        if rev < self.buffer.base:
            raise TooOld(rev, self.buffer.base + 1)
        before: dict[bytes, Entry | None] = {}    # key -> its entry at `rev` (None: absent)
        for ev in self.buffer.since(rev):
            k = ev.obj.key
            if k not in before and begin <= k < hi:
                before[k] = ev.prev     # the version at `rev`; None: created after it
        keys = set(self.keys.irange(begin, hi, inclusive=(True, False)))
        keys.update(before)
        for key in sorted(keys):
            if key in before:
                e = before[key]
                if e is not None:
                    yield e
            else:
                yield self.items[key]

    # --- watchers -------------------------------------------------------------------------
    def watch(self, lo: bytes, hi: bytes, after: int, pred: Callable[[Entry], bool] | None,
              node_name: str | None = None) -> CacheWatcher:
        """A watcher of keys in [lo, hi) with every event after revision `after`.
        Raises TooOld when `after` is before the buffer."""
        if after < self.buffer.base:
            raise TooOld(after, self.buffer.base + 1)
        w = CacheWatcher(lo, hi, pred, self.watcher_queue, node_name)
        w.cacher = self
        w.rev = after
        for ev in self.buffer.since(after):
            w.offer(ev)
        if w.closed:
            self.terminated_watchers += 1
            return w
        w.progress(self.rev)
        if node_name is not None:
            self.by_node.setdefault(node_name, set()).add(w)
        else:
            self.watchers.add(w)
        return w

    def remove_watcher(self, w: CacheWatcher) -> None:
        self.watchers.discard(w)
        if w.node_name is not None:
            s = self.by_node.get(w.node_name)
            if s is not None:
                s.discard(w)
                if not s:
                    del self.by_node[w.node_name]
