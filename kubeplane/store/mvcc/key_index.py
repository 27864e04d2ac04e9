"""The in-memory key index: key -> newest version, versions chained backwards.

Every version of a key is a ``Record`` (a ``KeyValue`` with a ``prev`` pointer to the
version before it).  A delete appends a *tombstone* (``version == 0``, no value), so
the chain of a key reads newest-first across its generations:
``put(v3) -> put(v2) -> tombstone -> put(v1)`` ... down to the compaction cut, where
``prev`` is None.  Records are never mutated after creation except for that cut.

Two ordered key sets make ranges cost what they return:

* ``all_keys``: every key in ``latest`` (live or tombstoned, committed or staged).
* ``live``: the keys that exist at the *committed* revision.  Writes are staged (applied
  to ``latest`` at once, so later txns see them) but become visible to readers only when
  the write-ahead log has them on disk; ``commit()`` then moves keys in and out of
  ``live``.  A range at the committed revision therefore walks ``live`` alone, and its
  count is two bisections.

Reads at an older revision walk ``all_keys`` and follow each chain back to the version
visible at that revision.
"""

from __future__ import annotations

from typing import Iterable, Iterator

from sortedcontainers import SortedList

from ..types import ALL_KEYS, KeyValue


class Record(KeyValue):
    """One version of a key.  ``version == 0`` marks a tombstone (a delete).

    ``wire`` caches the record's protobuf encoding once a gRPC response has needed it
    (``kubeplane.store.grpc.wire``): records never change, so it never goes stale.
    """

    __slots__ = ("prev", "wire")

    def __init__(self, key, create_revision, mod_revision, version, value, lease, prev):
        self.key = key
        self.create_revision = create_revision
        self.mod_revision = mod_revision
        self.version = version
        self.value = value
        self.lease = lease
        self.prev = prev
        self.wire = None

    @property
    def live(self) -> bool:
        return self.version != 0


def visible(rec: Record | None, rev: int) -> Record | None:
    """The version of rec's key that a reader at ``rev`` sees, or None."""
    while rec is not None and rec.mod_revision > rev:
        rec = rec.prev
    if rec is None or rec.version == 0:
        return None
    return rec


def previous_live(rec: Record) -> Record | None:
    """The live version just before rec (a watch event's prev_kv)."""
    prev = rec.prev
    return prev if prev is not None and prev.version != 0 else None


class KeyIndex:
    def __init__(self) -> None:
        self.latest: dict[bytes, Record] = {}
        self.all_keys: SortedList = SortedList()
        self.live: SortedList = SortedList()
        self.compacted_versions = 0  # versions dropped by compaction (a metric)

    def __len__(self) -> int:
        return len(self.live)

    # --- staging and commit -------------------------------------------------------

    def stage(self, rec: Record) -> None:
        """Make rec the newest version of its key (visible to txns, not yet to readers)."""
        key = rec.key
        if rec.prev is None and key not in self.latest:
            self.all_keys.add(key)
        self.latest[key] = rec

    def commit(self, records: Iterable[Record]) -> None:
        """Records are now durable: update ``live`` in their order."""
        live = self.live
        for rec in records:
            if rec.version == 1:
                live.add(rec.key)
            elif rec.version == 0:
                live.remove(rec.key)

    # --- reads --------------------------------------------------------------------

    @staticmethod
    def _bounds(key: bytes, range_end: bytes) -> tuple[bytes, bytes | None]:
        if range_end == ALL_KEYS:
            return key, None
        return key, range_end

    def iter_keys(self, keys: SortedList, key: bytes, range_end: bytes, after: bytes | None = None) -> Iterator[bytes]:
        """Keys of ``keys`` in the range, optionally strictly after ``after``."""
        lo, hi = self._bounds(key, range_end)
        if hi is not None and hi <= lo:
            return iter(())
        if after is not None:
            return keys.irange(after, hi, inclusive=(False, False))
        return keys.irange(lo, hi, inclusive=(True, False))

    def count_live(self, key: bytes, range_end: bytes) -> int:
        """Keys existing at the committed revision in the range (O(log n))."""
        lo, hi = self._bounds(key, range_end)
        live = self.live
        if hi is None:
            return len(live) - live.bisect_left(lo)
        if hi <= lo:
            return 0
        return live.bisect_left(hi) - live.bisect_left(lo)

    def get(self, key: bytes, rev: int) -> Record | None:
        return visible(self.latest.get(key), rev)

    def head(self, key: bytes) -> Record | None:
        """Newest version including staged writes, None if absent or deleted."""
        rec = self.latest.get(key)
        return rec if rec is not None and rec.version != 0 else None

    # --- compaction ---------------------------------------------------------------

    def compact_key(self, key: bytes, rev: int) -> int:
        """Drop the versions of ``key`` that no reader at >= rev can see.

        Keeps the newest version at or below rev (unless it is a tombstone) and cuts
        the chain below it.  Returns the number of bytes freed (see ``record_size``).
        """
        head = self.latest.get(key)
        if head is None:
            return 0
        rec = head
        newer = None
        while rec is not None and rec.mod_revision > rev:
            newer, rec = rec, rec.prev
        if rec is None:
            return 0
        freed = 0
        dropped = 0
        if rec.version == 0:
            # The tombstone and everything below it are invisible from rev on.
            drop = rec
            if newer is None:
                del self.latest[key]
                self.all_keys.discard(key)
            else:
                newer.prev = None
        else:
            drop = rec.prev
            rec.prev = None
        while drop is not None:
            freed += record_size(drop)
            dropped += 1
            drop = drop.prev
        self.compacted_versions += dropped
        return freed


def record_size(rec: KeyValue) -> int:
    """Bytes one version counts against the quota (key + value + fixed overhead)."""
    return len(rec.key) + len(rec.value) + 48
