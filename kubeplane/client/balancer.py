"""Spreading one client's load over several API servers that share a store.

The seeds' "58 Cloud" incident: one API server took all the load because the balancer in
front of it was broken. A client that knows every server does better by itself:

- Requests go to the healthy server with the fewest requests in flight; ties are broken
  at random, so a thousand clients starting together do not all pick the first URL.
- Long-lived watches go to the server with the fewest watches (then fewest requests).
- A server that refuses or drops connections is marked down for a jittered, doubling
  interval (0.5-1 s at first, at most 15-30 s); requests fail over to the others. When every server is down, the one
  that comes back first is tried anyway (never "no server").
- Watches are re-balanced gradually: every `rebalance_interval` seconds, if the busiest
  healthy server has at least two watches more than the least busy one, ONE movable
  watch on it is closed; its owner (a reflector) resumes from its last resourceVersion,
  which costs no relist, and lands on the least busy server. One move per interval keeps
  a recovered server from being flooded and avoids thrash.
"""
from __future__ import annotations

import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class ServerState:
    url: str
    in_flight: int = 0
    watches: int = 0
    down_until: float = 0.0
    failures: int = 0
    requests: int = 0            # requests sent here (for tests, docs and metrics)
    movable: list["WatchHandle"] = field(default_factory=list)


@dataclass(eq=False)
class WatchHandle:
    """One open watch; `close` ends its stream (set by the client)."""
    server: ServerState
    close: Callable[[], None]
    moved: bool = False


class Balancer:
    def __init__(self, servers: list[str], *, rebalance_interval: float = 30.0,
                 rng: random.Random | None = None, clock: Callable[[], float] = time.monotonic):
        if not servers:
            raise ValueError("at least one server is needed")
        self.servers = [ServerState(u.rstrip("/")) for u in servers]
        self.rebalance_interval = rebalance_interval
        self._rng = rng or random.Random()
        self._clock = clock
        self.moves = 0
        self.move_times: deque[float] = deque(maxlen=100)     # when the last moves happened

    def _candidates(self, exclude: set[str]) -> list[ServerState]:
        now = self._clock()
        up = [s for s in self.servers if s.down_until <= now and s.url not in exclude]
        if up:
            return up
        rest = [s for s in self.servers if s.url not in exclude] or self.servers
        return [min(rest, key=lambda s: s.down_until)]

    def pick(self, exclude: set[str] | frozenset[str] = frozenset()) -> ServerState:
        """The server for a request: fewest in flight among the healthy, random on ties."""
        c = self._candidates(set(exclude))
        low = min(s.in_flight for s in c)
        return self._rng.choice([s for s in c if s.in_flight == low])

    def pick_for_watch(self, exclude: set[str] | frozenset[str] = frozenset()) -> ServerState:
        c = self._candidates(set(exclude))
        low = min((s.watches, s.in_flight) for s in c)
        return self._rng.choice([s for s in c if (s.watches, s.in_flight) == low])

    def failed(self, s: ServerState) -> None:
        """A connection to `s` failed: keep it out for a while (doubling, jittered)."""
        s.failures += 1
        window = min(30.0, 2.0 ** (s.failures - 1))
        s.down_until = self._clock() + self._rng.uniform(window / 2, window)

    def succeeded(self, s: ServerState) -> None:
        s.failures = 0
        s.down_until = 0.0

    def is_down(self, s: ServerState) -> bool:
        return s.down_until > self._clock()

    # --- watches ---------------------------------------------------------------------------
    def watch_reserved(self, s: ServerState) -> None:
        """Count a watch on `s` from the moment it is picked (so watches opened together
        spread), until watch_failed or watch_closed."""
        s.watches += 1

    def watch_failed(self, s: ServerState) -> None:
        s.watches -= 1

    def watch_opened(self, s: ServerState, close: Callable[[], None], movable: bool) -> WatchHandle:
        h = WatchHandle(s, close)
        if movable:
            s.movable.append(h)
        return h

    def make_movable(self, h: WatchHandle) -> None:
        """A WatchList stream becomes movable once its initial events are through."""
        if h not in h.server.movable:
            h.server.movable.append(h)

    def watch_closed(self, h: WatchHandle) -> None:
        h.server.watches -= 1
        try:
            h.server.movable.remove(h)
        except ValueError:
            pass

    def rebalance_once(self) -> bool:
        """Move at most one watch from the busiest healthy server; True if one moved."""
        now = self._clock()
        up = [s for s in self.servers if s.down_until <= now]
        if len(up) < 2:
            return False
        busiest = max(up, key=lambda s: s.watches)
        idlest = min(up, key=lambda s: s.watches)
        if busiest.watches - idlest.watches < 2 or not busiest.movable:
            return False
        h = busiest.movable.pop(0)       # the oldest: it has had the longest run
        h.moved = True
        self.moves += 1
        self.move_times.append(now)
        h.close()
        return True

    def snapshot(self) -> dict[str, dict[str, int | bool]]:
        """Per server: requests sent, in flight, open watches, down or not."""
        return {s.url: {"requests": s.requests, "in_flight": s.in_flight, "watches": s.watches,
                        "down": self.is_down(s)} for s in self.servers}
