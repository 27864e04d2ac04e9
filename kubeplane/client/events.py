"""An event recorder that aggregates and rate-limits like client-go's EventCorrelator.

`event(obj, type, reason, message)` never blocks and never raises for API trouble; a
background task writes core/v1 Events. Between the call and the write:

1. Aggregation (EventAggregator): events that differ only in message are "similar"
   (same source, involved object, type, reason). Once `max_events` (10) distinct
   messages were seen for one such group within `max_interval` (10 min), further
   events of the group become ONE event whose message starts with
   "(combined from similar events): ".
2. Deduplication (EventLogger): an event identical to one already written increments
   that Event's `count` and `lastTimestamp` with a strategic merge patch instead of
   creating a new object (a 404 on the patch creates it anew).
3. Coalescing (kubeplane's addition): an event whose write is still pending only bumps
   the pending count, so a burst of N identical events costs one write carrying
   count=N, not N writes.
4. Spam filter: every write for one involved object takes a token from that object's
   bucket (burst 25, refilled one per 5 minutes, as upstream); without a token the write
   is skipped but the count is kept, so the next write that gets through is exact.

Memory is bounded: at most `cache_size` (4096, upstream's LRU size) remembered events,
groups and buckets, oldest dropped first.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from .errors import ApiConnectionError, ApiError
from .ratelimit import TokenBucket
from .resources import EVENTS

log = logging.getLogger(__name__)
COMBINED = "(combined from similar events): "


def _ts(t: float) -> str:
    return dt.datetime.fromtimestamp(int(t), dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class _LRU(OrderedDict):
    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def touch(self, key: Any, default: Any) -> Any:
        v = self.get(key)
        if v is None:
            v = default()
            self[key] = v
            if len(self) > self.size:
                self.popitem(last=False)
        else:
            self.move_to_end(key)
        return v


@dataclass
class _Group:
    messages: set[str] = field(default_factory=set)
    last: float = 0.0


@dataclass
class _Logged:
    """One Event object we write: its body, the count so far, and what is on the server."""
    body: dict[str, Any]
    count: int = 0
    name: str | None = None        # set once created on the server
    written_count: int = 0


def object_reference(obj: dict[str, Any]) -> dict[str, Any]:
    """An ObjectReference to `obj` (an object, or already a reference)."""
    if "metadata" not in obj:
        return {k: v for k, v in obj.items() if k in ("kind", "namespace", "name", "uid", "apiVersion",
                                                          "resourceVersion", "fieldPath") and v}
    md = obj.get("metadata") or {}
    ref = {"kind": obj.get("kind", ""), "namespace": md.get("namespace", ""), "name": md.get("name", ""),
           "uid": md.get("uid", ""), "apiVersion": obj.get("apiVersion", ""),
           "resourceVersion": md.get("resourceVersion", "")}
    return {k: v for k, v in ref.items() if v}


class EventRecorder:
    def __init__(self, client: Any, component: str, host: str | None = None, *, max_events: int = 10,
                 max_interval: float = 600.0, spam_burst: int = 25, spam_qps: float = 1.0 / 300.0,
                 cache_size: int = 4096, clock: Any = time.time):
        self.client = client
        self.component = component
        self.host = host or ""
        self.max_events = max_events
        self.max_interval = max_interval
        self.spam_burst = spam_burst
        self.spam_qps = spam_qps
        self._clock = clock
        self._groups: _LRU = _LRU(cache_size)
        self._logged: _LRU = _LRU(cache_size)
        self._buckets: _LRU = _LRU(cache_size)
        self._pending: OrderedDict[tuple[Any, ...], None] = OrderedDict()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.stats = {"events": 0, "creates": 0, "patches": 0, "spam_dropped": 0, "errors": 0}

    def event(self, obj: dict[str, Any], type: str, reason: str, message: str) -> None:
        """Record an event about `obj` ("Normal" or "Warning"); returns at once."""
        if self._closed:
            return
        self.stats["events"] += 1
        now = self._clock()
        ref = object_reference(obj)
        ref_key = tuple(ref.get(k, "") for k in ("kind", "namespace", "name", "uid", "apiVersion"))
        group_key = (self.component, self.host, *ref_key, type, reason)
        g: _Group = self._groups.touch(group_key, _Group)
        if g.last and g.last + self.max_interval < now:
            g.messages.clear()
        g.last = now
        g.messages.add(message)
        if len(g.messages) >= self.max_events:
            key, message = group_key, COMBINED + message
        else:
            key = group_key + (message,)
        logged: _Logged | None = self._logged.get(key)
        if logged is None:
            ns = ref.get("namespace") or "default"
            body = {"apiVersion": "v1", "kind": "Event",
                    "metadata": {"name": f"{ref.get('name', 'unknown')}.{time.time_ns():x}", "namespace": ns},
                    "involvedObject": ref, "reason": reason, "message": message, "type": type,
                    "source": {"component": self.component, **({"host": self.host} if self.host else {})},
                    "firstTimestamp": _ts(now), "lastTimestamp": _ts(now), "count": 0,
                    "reportingComponent": self.component, "reportingInstance": self.host}
            logged = self._logged.touch(key, lambda: _Logged(body))
        else:
            self._logged.move_to_end(key)
            logged.body["message"] = message
            logged.body["lastTimestamp"] = _ts(now)
        logged.count += 1
        logged.body["count"] = logged.count
        self._pending[key] = None
        self._wake.set()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._sender(), name=f"events {self.component}")

    async def _sender(self) -> None:
        """Writes pending events in arrival order; ends once closed and drained."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                key = next(iter(self._pending))
                del self._pending[key]
                await self._write(key)
            if self._closed:
                return

    async def _write(self, key: tuple[Any, ...]) -> None:
        logged: _Logged | None = self._logged.get(key)
        if logged is None or logged.count == logged.written_count:
            return
        ref = logged.body["involvedObject"]
        spam_key = (self.component, self.host, *(ref.get(k, "") for k in ("kind", "namespace", "name", "uid",
                                                                             "apiVersion")))
        bucket: TokenBucket = self._buckets.touch(spam_key, lambda: TokenBucket(self.spam_qps, self.spam_burst))
        if not bucket.try_take():
            self.stats["spam_dropped"] += 1
            return
        count = logged.count
        ns = logged.body["metadata"]["namespace"]
        try:
            if logged.name is not None:
                try:
                    await self.client.patch(EVENTS.path(ns, logged.name), {
                        "count": count, "lastTimestamp": logged.body["lastTimestamp"],
                        "message": logged.body["message"]}, patch_type="strategic")
                    self.stats["patches"] += 1
                    logged.written_count = count
                    return
                except ApiError as e:
                    if e.status != 404:
                        raise
                    logged.body["metadata"]["name"] = f"{ref.get('name', 'unknown')}.{time.time_ns():x}"
            body = dict(logged.body, count=count)
            made = await self.client.create(EVENTS.path(ns), body)
            logged.name = (made.get("metadata") or {}).get("name") or body["metadata"]["name"]
            logged.written_count = count
            self.stats["creates"] += 1
        except (ApiError, ApiConnectionError) as e:
            self.stats["errors"] += 1
            log.warning("event %s/%s not written: %s", ns, logged.body["metadata"]["name"], e)

    async def close(self, timeout: float | None = 30.0) -> None:
        """Stop taking events, write what is pending (waiting at most `timeout`
        seconds), and stop the background task. A write in progress is never cut off
        and repeated (that could duplicate an Event)."""
        self._closed = True
        if self._task is None:
            return
        self._wake.set()
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._task)
        except TimeoutError:
            self._task.cancel()
        self._task = None
