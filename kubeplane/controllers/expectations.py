"""Expectations: what a controller has asked for and not yet seen in its informer
(upstream's pkg/controller/controller_utils.go ControllerExpectations and
UIDTrackingControllerExpectations).

A controller that creates N pods records "expect N adds" before the requests; each pod
add event lowers the count. Until the count reaches zero (or the record is older than
`ttl`, 5 minutes as upstream, in case a watch event was lost) the controller does not act
on its possibly stale cache again — otherwise it would create the same pods twice.
Deletions are tracked by pod key, so a delete event seen twice (e.g. once from the watch
and once as a DeletedFinalStateUnknown) lowers the count once.

Invariant: `satisfied(key)` is True when nothing is recorded for key, when both counts
are <= 0, or when the record expired.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

TTL = 300.0


@dataclass
class _Record:
    adds: int = 0
    dels: set[str] = field(default_factory=set)
    at: float = 0.0


class Expectations:
    def __init__(self, ttl: float = TTL, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.clock = clock
        self._records: dict[str, _Record] = {}

    def expect_creations(self, key: str, n: int) -> None:
        rec = self._records.setdefault(key, _Record())
        rec.adds = n
        rec.at = self.clock()

    def expect_deletions(self, key: str, pod_keys: Iterable[str]) -> None:
        rec = self._records.setdefault(key, _Record())
        rec.dels = set(pod_keys)
        rec.at = self.clock()

    def creation_observed(self, key: str) -> None:
        rec = self._records.get(key)
        if rec is not None:
            rec.adds -= 1

    def deletion_observed(self, key: str, pod_key: str) -> None:
        rec = self._records.get(key)
        if rec is not None:
            rec.dels.discard(pod_key)

    def satisfied(self, key: str) -> bool:
        rec = self._records.get(key)
        if rec is None:
            return True
        if rec.adds <= 0 and not rec.dels:
            return True
        return self.clock() - rec.at > self.ttl

    def pending(self, key: str) -> tuple[int, int]:
        """(adds, deletions) still expected; for tests and logs."""
        rec = self._records.get(key)
        return (0, 0) if rec is None else (max(rec.adds, 0), len(rec.dels))

    def delete(self, key: str) -> None:
        self._records.pop(key, None)
