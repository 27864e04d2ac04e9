"""The cyclic buffer of recent events, sized by time (upstream's watch cache).

Events are kept while the oldest is younger than `window` seconds, between `min_events`
and `max_events` (upstream: 75 s, 100 to 102,400). `base` is the newest revision that
is *not* in the buffer any more (or the revision the cache started from): a watch or a
read at a revision >= base can be served from here; an older one is "too old".
"""
from __future__ import annotations

import bisect
import time
from collections import deque
from typing import Iterator

from .entry import Event


class EventBuffer:
    def __init__(self, base: int, *, window: float = 75.0, min_events: int = 100, max_events: int = 102_400):
        self.events: deque[Event] = deque()
        self.base = base
        self.window = window
        self.min_events = min_events
        self.max_events = max_events

    def __len__(self) -> int:
        return len(self.events)

    @property
    def capacity(self) -> int:
        """What upstream's apiserver_watch_cache_capacity reports: the events held now
        (this buffer grows and shrinks by time rather than in fixed steps)."""
        return max(len(self.events), self.min_events)

    def append(self, ev: Event) -> None:
        self.events.append(ev)
        self.trim(ev.time)

    def trim(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        ev = self.events
        limit = now - self.window
        while ev and (len(ev) > self.max_events or (len(ev) > self.min_events and ev[0].time < limit)):
            self.base = ev.popleft().rev

    def since(self, rev: int) -> Iterator[Event]:
        """Events with revision > rev, oldest first (caller checks rev >= base)."""
        ev = self.events
        if not ev or ev[-1].rev <= rev:
            return iter(())
        # deque has no bisect; events are in revision order, so search a snapshot of revs
        i = bisect.bisect_right(_RevView(ev), rev)
        return (ev[j] for j in range(i, len(ev)))


class _RevView:
    """A read-only sequence of the buffer's revisions, for bisect."""

    __slots__ = ("ev",)

    def __init__(self, ev: deque[Event]):
        self.ev = ev

    def __len__(self) -> int:
        return len(self.ev)

    def __getitem__(self, i: int) -> int:
        return self.ev[i].rev
