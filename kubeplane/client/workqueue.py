"""A rate-limited work queue (client-go's util/workqueue) on asyncio.

Invariants:
- a key is handed to at most one worker at a time: `get()` moves it from the queue to
  `processing`; an `add()` while it is processing only marks it dirty, and `done()`
  puts a dirty key back in the queue;
- a key waits in the queue at most once: adds of a queued key are one (dirty set);
- `add_after(key, s)` keeps only the earliest pending time per key;
- `add_rate_limited(key)` waits max(per-item exponential backoff base*2**failures capped
  at max_delay, the overall token bucket's delay), client-go's DefaultControllerRateLimiter;
  `forget(key)` resets the key's failures, `num_requeues(key)` reads them.
- after `shut_down()` adds are ignored and `get()` raises QueueShutDown once the queue is
  empty (keys already queued are still handed out, as client-go drains them).
"""
from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from collections.abc import Hashable
from typing import Any

from .ratelimit import TokenBucket


class QueueShutDown(Exception):
    """get() on a queue that was shut down and is empty."""


class RateLimitingQueue:
    def __init__(self, base_delay: float = 0.005, max_delay: float = 1000.0, qps: float = 10.0, burst: int = 100,
                 name: str = ""):
        self.name = name
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._bucket = TokenBucket(qps, burst)
        self._failures: dict[Hashable, int] = {}
        self._queue: deque[Hashable] = deque()
        self._dirty: set[Hashable] = set()
        self._processing: set[Hashable] = set()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._shutting_down = False
        # delayed adds: heap of (ready_at, seq, key); _ready_at holds each key's earliest time
        self._delayed: list[tuple[float, int, Hashable]] = []
        self._ready_at: dict[Hashable, float] = {}
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None

    # --- the plain queue -------------------------------------------------------------------
    def add(self, key: Hashable) -> None:
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return
        self._queue.append(key)
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            w = self._waiters.popleft()
            if not w.done():
                w.set_result(None)
                return

    async def get(self) -> Any:
        """The next key (waits for one); raises QueueShutDown when shut down and drained."""
        while not self._queue:
            if self._shutting_down:
                raise QueueShutDown(self.name)
            w = asyncio.get_running_loop().create_future()
            self._waiters.append(w)
            try:
                await w
            except asyncio.CancelledError:
                if w.done() and not w.cancelled() and self._queue:
                    self._wake()          # pass our wake-up on to another getter
                raise
        key = self._queue.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        return key

    def done(self, key: Hashable) -> None:
        """The worker finished `key`; if it was added meanwhile, it is queued again."""
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._wake()

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def processing(self) -> int:
        return len(self._processing)

    def shut_down(self) -> None:
        self._shutting_down = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for w in self._waiters:
            if not w.done():
                w.set_result(None)
        self._waiters.clear()

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    # --- delays ----------------------------------------------------------------------------
    def add_after(self, key: Hashable, seconds: float) -> None:
        if self._shutting_down:
            return
        if seconds <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        at = loop.time() + seconds
        prev = self._ready_at.get(key)
        if prev is not None and prev <= at:
            return
        self._ready_at[key] = at
        heapq.heappush(self._delayed, (at, next(self._seq), key))
        if self._delayed[0][2] == key:
            self._arm(loop)

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(self._delayed[0][0], self._fire) if self._delayed else None

    def _fire(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self._delayed and self._delayed[0][0] <= now:
            at, _, key = heapq.heappop(self._delayed)
            if self._ready_at.get(key) == at:     # stale entries (superseded by an earlier time) are skipped
                del self._ready_at[key]
                self.add(key)
        self._timer = None
        self._arm(loop)

    # --- rate limiting ---------------------------------------------------------------------
    def when(self, key: Hashable) -> float:
        """The delay add_rate_limited would use now (and count the failure)."""
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        item = min(self.max_delay, self.base_delay * (2 ** min(n, 62)))
        return max(item, self._bucket.reserve())

    def add_rate_limited(self, key: Hashable) -> None:
        self.add_after(key, self.when(key))

    def forget(self, key: Hashable) -> None:
        self._failures.pop(key, None)

    def num_requeues(self, key: Hashable) -> int:
        return self._failures.get(key, 0)
