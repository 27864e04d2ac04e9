"""A RateLimitingQueue that reports upstream's workqueue metrics (metrics.py).

Bookkeeping mirrors client-go's queueMetrics: an add that the queue accepts (the key
was not already waiting) counts in adds_total and starts the key's queue-time clock
unless it is already running; `get()` observes the queue time and starts the work
clock; `done()` observes the work time. Retries are counted on add_rate_limited.
"""
from __future__ import annotations

import time
from collections.abc import Hashable
from typing import Any

from ..client import RateLimitingQueue
from .metrics import Metrics


class MeteredQueue(RateLimitingQueue):
    def __init__(self, name: str, metrics: Metrics | None = None, **kw: Any):
        super().__init__(name=name, **kw)
        self._added_at: dict[Hashable, float] = {}
        self._started_at: dict[Hashable, float] = {}
        self._m = metrics
        if metrics is not None:
            self._adds = metrics.adds.labels(name)
            self._retries = metrics.retries.labels(name)
            self._qd = metrics.queue_duration.labels(name)
            self._wd = metrics.work_duration.labels(name)
            metrics.depth.labels(name).set_function(lambda: len(self))
            metrics.unfinished.labels(name).set_function(self.unfinished_seconds)
            metrics.longest.labels(name).set_function(self.longest_running_seconds)

    def add(self, key: Hashable) -> None:
        accepted = not self.shutting_down and key not in self._dirty   # as the parent decides
        super().add(key)
        if accepted:
            if self._m is not None:
                self._adds.inc()
            self._added_at.setdefault(key, time.perf_counter())

    async def get(self) -> Any:
        key = await super().get()
        now = time.perf_counter()
        t = self._added_at.pop(key, None)
        if t is not None and self._m is not None:
            self._qd.observe(now - t)
        self._started_at[key] = now
        return key

    def done(self, key: Hashable) -> None:
        t = self._started_at.pop(key, None)
        if t is not None and self._m is not None:
            self._wd.observe(time.perf_counter() - t)
        super().done(key)

    def add_rate_limited(self, key: Hashable) -> None:
        if self._m is not None and not self.shutting_down:
            self._retries.inc()
        super().add_rate_limited(key)

    def unfinished_seconds(self) -> float:
        now = time.perf_counter()
        return sum(now - t for t in self._started_at.values())

    def longest_running_seconds(self) -> float:
        if not self._started_at:
            return 0.0
        return time.perf_counter() - min(self._started_at.values())
