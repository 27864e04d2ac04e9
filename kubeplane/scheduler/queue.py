"""The scheduling queue (upstream's internal/queue PriorityQueue, simplified).

Three places a pending pod can be, exactly one at a time (or popped, "in flight"):
- activeQ: ready to be tried, ordered by priority (high first), then by the time it was
  queued (PrioritySort);
- backoffQ: failed recently, waiting until `now >= last failure + backoff` where backoff
  doubles from 1 s per attempt up to 10 s; `flush_backoff()` (every second) moves the
  expired ones to activeQ;
- unschedulable: failed and waiting for a cluster event that could help. A pod remembers
  the plugins that rejected it; `move(event)` moves the pods rejected by a plugin that
  registered that event (or by no plugin) to activeQ, or to backoffQ while still backing
  off. Pods left there 5 minutes are moved anyway (`flush_unschedulable()`).
A pod that fails while a move event happened during its cycle goes to backoffQ instead of
unschedulable (upstream's moveRequestCycle), so an event that raced with its cycle is not
lost.
"""
from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from dataclasses import dataclass, field
from typing import Callable

from .podinfo import PodInfo

ACTIVE, BACKOFF, UNSCHEDULABLE = "active", "backoff", "unschedulable"


@dataclass(eq=False)
class QueuedPod:
    info: PodInfo
    timestamp: float                        # when it entered the queue (ordering)
    attempts: int = 0
    initial_attempt: float | None = None    # first pop (upstream's InitialAttemptTimestamp)
    unschedulable_plugins: set[str] = field(default_factory=set)
    failed_at: float = 0.0
    cycle: int = 0
    where: str = ""
    added: float = field(default_factory=time.monotonic)   # first queued (the SLI's start)


class SchedulingQueue:
    def __init__(self, interested: Callable[[str], set[str]] | None = None, initial_backoff: float = 1.0,
                 max_backoff: float = 10.0, max_unschedulable: float = 300.0,
                 clock: Callable[[], float] = time.monotonic,
                 on_incoming: Callable[[str, str], None] | None = None) -> None:
        self.interested = interested or (lambda event: set())
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.max_unschedulable = max_unschedulable
        self.clock = clock
        self.on_incoming = on_incoming or (lambda queue, event: None)
        self.pods: dict[str, QueuedPod] = {}          # every queued or in-flight pod
        self._active: list[tuple[int, float, int, QueuedPod]] = []
        self._backoff: list[tuple[float, int, QueuedPod]] = []
        self.unschedulable: dict[str, QueuedPod] = {}
        self.in_flight: dict[str, QueuedPod] = {}
        self._seq = itertools.count()
        self._ready = asyncio.Event()
        self.cycle = 0
        self.move_request_cycle = -1
        self._closed = False
        self.counts = {ACTIVE: 0, BACKOFF: 0, UNSCHEDULABLE: 0}
        # plugin -> unschedulable pods it rejected ("" for pods no plugin rejected), so an
        # event that helps none of them costs nothing
        self._by_plugin: dict[str, int] = {}

    # placement -------------------------------------------------------------------------
    def _put_active(self, qp: QueuedPod, event: str) -> None:
        qp.where = ACTIVE
        self.counts[ACTIVE] += 1
        heapq.heappush(self._active, (-qp.info.priority, qp.timestamp, next(self._seq), qp))
        self._ready.set()
        self.on_incoming(ACTIVE, event)

    def _put_backoff(self, qp: QueuedPod, event: str) -> None:
        qp.where = BACKOFF
        self.counts[BACKOFF] += 1
        heapq.heappush(self._backoff, (self.backoff_expiry(qp), next(self._seq), qp))
        self.on_incoming(BACKOFF, event)

    def _put_unschedulable(self, qp: QueuedPod, event: str) -> None:
        qp.where = UNSCHEDULABLE
        self.counts[UNSCHEDULABLE] += 1
        self.unschedulable[qp.info.key] = qp
        for p in qp.unschedulable_plugins or ("",):
            self._by_plugin[p] = self._by_plugin.get(p, 0) + 1
        self.on_incoming(UNSCHEDULABLE, event)

    def _take(self, qp: QueuedPod) -> None:
        """Take a queued pod out of wherever it is (heap entries die lazily)."""
        if qp.where:
            self.counts[qp.where] -= 1
        if qp.where == UNSCHEDULABLE:
            self.unschedulable.pop(qp.info.key, None)
            for p in qp.unschedulable_plugins or ("",):
                self._by_plugin[p] -= 1
                if not self._by_plugin[p]:
                    del self._by_plugin[p]
        qp.where = ""

    def backoff_expiry(self, qp: QueuedPod) -> float:
        d = self.initial_backoff * (2 ** max(qp.attempts - 1, 0))
        return qp.failed_at + min(d, self.max_backoff)

    def _backing_off(self, qp: QueuedPod) -> bool:
        return qp.attempts > 0 and self.backoff_expiry(qp) > self.clock()

    # pod events ------------------------------------------------------------------------
    def add(self, info: PodInfo) -> None:
        qp = self.pods.get(info.key)
        if qp is not None:
            self.update(info)
            return
        qp = QueuedPod(info, self.clock())
        self.pods[info.key] = qp
        self._put_active(qp, "PodAdd")

    def update(self, info: PodInfo) -> None:
        qp = self.pods.get(info.key)
        if qp is None:
            self.add(info)
            return
        old = qp.info
        qp.info = info
        if qp.where == UNSCHEDULABLE and _spec_changed(old.pod, info.pod):
            self._take(qp)
            if self._backing_off(qp):
                self._put_backoff(qp, "PodUpdate")
            else:
                self._put_active(qp, "PodUpdate")
        elif qp.where == ACTIVE and old.priority != info.priority:
            self._take(qp)
            self._put_active(qp, "PodUpdate")

    def delete(self, key: str) -> None:
        qp = self.pods.pop(key, None)
        if qp is not None:
            self._take(qp)
            self.in_flight.pop(key, None)

    def __contains__(self, key: str) -> bool:
        return key in self.pods

    # the scheduling loop's side ------------------------------------------------------------
    async def pop(self) -> QueuedPod:
        while True:
            while self._active:
                _, _, _, qp = heapq.heappop(self._active)
                if qp.where != ACTIVE or self.pods.get(qp.info.key) is not qp:
                    continue
                self._take(qp)
                self.cycle += 1
                qp.cycle = self.cycle
                qp.attempts += 1
                if qp.initial_attempt is None:
                    qp.initial_attempt = time.monotonic()
                self.in_flight[qp.info.key] = qp
                return qp
            if self._closed:
                raise asyncio.CancelledError
            self._ready.clear()
            await self._ready.wait()

    def done(self, key: str) -> None:
        """The pod left the scheduler's hands (bound, or its binding is in flight)."""
        self.in_flight.pop(key, None)
        self.pods.pop(key, None)

    def requeue(self, qp: QueuedPod, plugins: set[str], error: bool = False) -> None:
        """A failed attempt: back to the unschedulable pods, or to backoffQ after an error
        or when a move request raced with the cycle."""
        key = qp.info.key
        if self.in_flight.pop(key, None) is None and key not in self.pods:
            return      # deleted meanwhile
        if self.pods.get(key) is not qp:
            return
        qp.failed_at = self.clock()
        qp.unschedulable_plugins = set(plugins)
        qp.timestamp = self.clock()
        if error or self.move_request_cycle >= qp.cycle:
            self._put_backoff(qp, "ScheduleAttemptFailure")
        else:
            self._put_unschedulable(qp, "ScheduleAttemptFailure")

    # cluster events ----------------------------------------------------------------------
    def move(self, event: str, pick: Callable[[QueuedPod], bool] | None = None) -> int:
        """Move the unschedulable pods this event may help; returns how many moved."""
        self.move_request_cycle = self.cycle
        if not self.unschedulable:
            return 0
        plugins = self.interested(event)
        if "" not in self._by_plugin and not any(p in self._by_plugin for p in plugins):
            return 0
        moved = 0
        for qp in list(self.unschedulable.values()):
            if qp.unschedulable_plugins and not (qp.unschedulable_plugins & plugins):
                continue
            if pick is not None and not pick(qp):
                continue
            self._take(qp)
            if self._backing_off(qp):
                self._put_backoff(qp, event)
            else:
                self._put_active(qp, event)
            moved += 1
        return moved

    def flush_backoff(self) -> int:
        now = self.clock()
        moved = 0
        while self._backoff and self._backoff[0][0] <= now:
            _, _, qp = heapq.heappop(self._backoff)
            if qp.where != BACKOFF or self.pods.get(qp.info.key) is not qp:
                continue
            self._take(qp)
            self._put_active(qp, "BackoffComplete")
            moved += 1
        return moved

    def flush_unschedulable(self) -> int:
        now = self.clock()
        moved = 0
        for qp in list(self.unschedulable.values()):
            if now - qp.failed_at >= self.max_unschedulable:
                self._take(qp)
                if self._backing_off(qp):
                    self._put_backoff(qp, "UnschedulableTimeout")
                else:
                    self._put_active(qp, "UnschedulableTimeout")
                moved += 1
        return moved

    def close(self) -> None:
        self._closed = True
        self._ready.set()


def _spec_changed(old: dict, new: dict) -> bool:
    om, nm = old.get("metadata") or {}, new.get("metadata") or {}
    return (old.get("spec") != new.get("spec") or om.get("labels") != nm.get("labels")
            or om.get("annotations") != nm.get("annotations"))
