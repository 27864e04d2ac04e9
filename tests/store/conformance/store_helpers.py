"""Small helpers for the conformance suite (written only against the Store interface)."""

from __future__ import annotations

import asyncio
import time

from kubeplane.store.interface import Store, Watcher
from kubeplane.store.types import Event, WatchResponse

WAIT = 5.0  # seconds any single expected watch response may take


async def next_response(w: Watcher, timeout: float = WAIT) -> WatchResponse:
    return await asyncio.wait_for(w.__anext__(), timeout)


async def next_events(w: Watcher, timeout: float = WAIT) -> WatchResponse:
    """The next response that carries events (progress notifications are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        resp = await next_response(w, max(0.01, deadline - time.monotonic()))
        if resp.events:
            return resp


async def collect_events(w: Watcher, n: int, timeout: float = WAIT) -> list[Event]:
    """Exactly the next ``n`` events (fails if a batch runs past ``n``)."""
    events: list[Event] = []
    deadline = time.monotonic() + timeout
    while len(events) < n:
        resp = await next_events(w, max(0.01, deadline - time.monotonic()))
        assert resp.revision >= resp.events[-1].kv.mod_revision, resp
        events.extend(resp.events)
    assert len(events) == n, f"expected {n} events, got {len(events)}: {events}"
    return events


class EventReader:
    """Reads a watcher event by event: responses may batch several revisions (a
    store may coalesce what piled up), so events past the ones asked for are kept
    for the next call instead of being an error."""

    def __init__(self, w: Watcher):
        self.w = w
        self._buffer: list[Event] = []

    async def _fill(self, deadline: float) -> None:
        resp = await next_events(self.w, max(0.01, deadline - time.monotonic()))
        assert resp.revision >= resp.events[-1].kv.mod_revision, resp
        self._buffer.extend(resp.events)

    async def take(self, n: int, timeout: float = WAIT) -> list[Event]:
        deadline = time.monotonic() + timeout
        while len(self._buffer) < n:
            await self._fill(deadline)
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out

    async def until(self, stop_key: bytes, timeout: float = WAIT) -> list[Event]:
        """Every event up to and including the first one on ``stop_key``.

        Writing a sentinel key after the writes under test and reading up to it
        proves that nothing else (no duplicate, no stray event) came in between.
        """
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self._buffer):
                if ev.kv.key == stop_key:
                    out, self._buffer = self._buffer[: i + 1], self._buffer[i + 1 :]
                    return out
            await self._fill(deadline)


async def events_until(w: Watcher, stop_key: bytes, timeout: float = WAIT) -> list[Event]:
    """``EventReader(w).until(stop_key)`` for a sentinel that is the last write."""
    reader = EventReader(w)
    events = await reader.until(stop_key, timeout)
    assert not reader._buffer, f"events after the sentinel: {reader._buffer}"
    return events


async def wait_until(predicate, timeout: float = WAIT, interval: float = 0.05):
    """Poll an async predicate until it returns truthy; returns that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


def summary(events: list[Event]) -> list[tuple]:
    """(type, key, value, mod_revision) per event: compact to compare."""
    return [(e.type.name, e.kv.key, e.kv.value, e.kv.mod_revision) for e in events]


async def revision(store: Store) -> int:
    return await store.current_revision()
