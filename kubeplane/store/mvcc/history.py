"""The revision-ordered change log: what happened at each revision, oldest first.

``entries[i]`` holds the records written at revision ``base + i`` in the order the txn
wrote them (etcd's sub-revisions).  Revisions are dense: every revision above 1 was
created by a write txn that changed at least one key, so every entry but the initial
revision's is non-empty.  Watchers that are behind read from here; compaction drops the
entries below the compacted revision.  The records are shared with the key index, so the
log costs one list slot and one tuple per revision, not a copy of the data.
"""

from __future__ import annotations

from typing import Callable

from .key_index import Record


class History:
    def __init__(self, base: int = 1) -> None:
        self.base = base
        self.entries: list[tuple[Record, ...]] = [()]  # revision `base` (1 on a new store)

    @property
    def last(self) -> int:
        return self.base + len(self.entries) - 1

    def append(self, rev: int, records: tuple[Record, ...]) -> None:
        assert rev == self.last + 1, (rev, self.last)
        self.entries.append(records)

    def at(self, rev: int) -> tuple[Record, ...]:
        return self.entries[rev - self.base]

    def scan(
        self,
        start: int,
        stop: int,
        match: Callable[[bytes], bool],
        max_events: int,
    ) -> tuple[list[Record], int]:
        """Records with start <= revision <= stop whose key matches, in order.

        Stops after the revision at which ``max_events`` is reached (a revision is never
        split).  Returns the records and the next revision to scan from.
        """
        out: list[Record] = []
        entries = self.entries
        i = max(start, self.base) - self.base
        end = stop - self.base
        while i <= end:
            for rec in entries[i]:
                if match(rec.key):
                    out.append(rec)
            i += 1
            if len(out) >= max_events:
                break
        return out, self.base + i

    def truncate_before(self, rev: int) -> list[tuple[Record, ...]]:
        """Drop entries below rev; returns them (for compaction of their keys)."""
        n = rev - self.base
        if n <= 0:
            return []
        dropped = self.entries[:n]
        del self.entries[:n]
        self.base = rev
        return dropped
