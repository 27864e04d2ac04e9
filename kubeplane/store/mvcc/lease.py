"""Lease bookkeeping (etcd's lessor): ids, TTLs, deadlines and attached keys.

This module only keeps the table; the store decides when a lease expires and turns a
revoke into a write that deletes the attached keys.  Deadlines use the monotonic clock and
are not persisted: after a restart every lease gets its full TTL again, as etcd does when
a new leader takes over.
"""

from __future__ import annotations

import heapq
import random
import time

from ..errors import LeaseExistsError, LeaseNotFoundError, LeaseTTLTooLargeError

MAX_LEASE_TTL = 9_000_000_000  # etcd's MaxLeaseTTL (seconds)
MIN_LEASE_TTL = 2  # etcd's default: ceil(1.5 * election timeout of 1 s)


class Lease:
    __slots__ = ("id", "ttl", "deadline", "keys")

    def __init__(self, lease_id: int, ttl: int, deadline: float):
        self.id = lease_id
        self.ttl = ttl
        self.deadline = deadline
        self.keys: set[bytes] = set()

    def remaining(self, now: float) -> int:
        return max(0, int(self.deadline - now))


class Lessor:
    def __init__(self, clock=time.monotonic, min_ttl: int = MIN_LEASE_TTL) -> None:
        self.leases: dict[int, Lease] = {}
        self.clock = clock
        self.min_ttl = min_ttl
        self._deadlines: list[tuple[float, int]] = []  # heap of (deadline, id), lazily pruned

    def check_grant(self, ttl: int, lease_id: int) -> int:
        """Validate a grant; returns the id to use (a fresh random one for id 0)."""
        if ttl > MAX_LEASE_TTL:
            raise LeaseTTLTooLargeError()
        if lease_id:
            if lease_id in self.leases:
                raise LeaseExistsError()
            return lease_id
        while True:
            lease_id = random.getrandbits(63) or 1
            if lease_id not in self.leases:
                return lease_id

    def grant(self, lease_id: int, ttl: int) -> Lease:
        ttl = max(ttl, self.min_ttl)
        lease = self.leases.get(lease_id)
        if lease is None:
            lease = self.leases[lease_id] = Lease(lease_id, ttl, 0.0)
        lease.ttl = ttl
        self._renew(lease)
        return lease

    def _renew(self, lease: Lease) -> None:
        lease.deadline = self.clock() + lease.ttl
        heapq.heappush(self._deadlines, (lease.deadline, lease.id))

    def renew(self, lease_id: int) -> int:
        lease = self.leases.get(lease_id)
        if lease is None or lease.deadline <= self.clock():
            raise LeaseNotFoundError()
        self._renew(lease)
        return lease.ttl

    def get(self, lease_id: int) -> Lease:
        lease = self.leases.get(lease_id)
        if lease is None:
            raise LeaseNotFoundError()
        return lease

    def remove(self, lease_id: int) -> Lease | None:
        return self.leases.pop(lease_id, None)

    def attach(self, lease_id: int, key: bytes) -> None:
        if lease_id:
            lease = self.leases.get(lease_id)
            if lease is not None:
                lease.keys.add(key)

    def detach(self, lease_id: int, key: bytes) -> None:
        if lease_id:
            lease = self.leases.get(lease_id)
            if lease is not None:
                lease.keys.discard(key)

    def expired(self) -> list[int]:
        """Ids whose deadline has passed; each is reported once (the caller revokes it)."""
        now = self.clock()
        out = []
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            deadline, lease_id = heapq.heappop(heap)
            lease = self.leases.get(lease_id)
            if lease is not None and lease.deadline == deadline:
                out.append(lease_id)
        return out

    def next_deadline(self) -> float | None:
        return self._deadlines[0][0] if self._deadlines else None

    def restart_all(self) -> None:
        """After recovery: every lease gets its full TTL from now."""
        self._deadlines = []
        for lease in self.leases.values():
            self._renew(lease)

