"""The MVCC state machine: revisions, reads at a revision, txn evaluation, staging.

Everything here is synchronous and does no I/O; ``store.py`` adds durability, the
asyncio surface and the background work.  Two revisions matter:

* ``rev``: the newest *staged* revision.  A write txn is evaluated against the newest
  state (its compares see every earlier txn, durable or not), gets revision ``rev + 1``
  if it changes anything, and its records are staged into the index at once.
* ``committed``: the newest revision on disk.  Plain reads and watches see only up to
  it, so nobody observes a write that a crash could still take back.

Rules follow etcd (``server/etcdserver/apply.go``, ``mvcc/kvstore_txn.go``): a txn's
nested compares are all evaluated before any of its ops run; a range inside a write txn
sees the txn's own earlier writes; a delete that matches nothing changes nothing.
"""

from __future__ import annotations

from typing import Sequence

from ..errors import (
    CompactedError,
    DuplicateKeyError,
    EmptyKeyError,
    FutureRevisionError,
    KeyNotFoundError,
    LeaseNotFoundError,
    RequestTooLargeError,
    TooManyOpsError,
)
from ..types import (
    ALL_KEYS,
    Compare,
    CompareResult,
    CompareTarget,
    DeleteOp,
    DeleteResult,
    KeyValue,
    Op,
    PutOp,
    PutResult,
    RangeOp,
    RangeResult,
    SortOrder,
    SortTarget,
    TxnOp,
    TxnResult,
)
from . import wal
from .history import History
from .key_index import KeyIndex, Record, record_size, visible
from .lease import Lessor

OP_OVERHEAD = 16  # bytes counted per op and compare towards the request size limit
QUOTA_KV_OVERHEAD = 256  # etcd's kvOverhead in its quota cost


def in_range(key: bytes, start: bytes, end: bytes) -> bool:
    if not end:
        return key == start
    if end == ALL_KEYS:
        return key >= start
    return start <= key < end


class KVStore:
    def __init__(self) -> None:
        self.index = KeyIndex()
        self.history = History()
        self.lessor = Lessor()
        self.rev = 1
        self.committed = 1
        self.compacted = 0
        self.db_in_use = 0
        self.db_high_water = 0
        # Ops run, for etcd_mvcc_{range,put,delete,txn}_total (kubeplane.store.metrics).
        self.ranges = 0
        self.puts = 0
        self.deletes = 0
        self.txns = 0

    # --- reads --------------------------------------------------------------------

    def check_read_revision(self, revision: int) -> int:
        rev = revision if revision > 0 else self.committed
        if rev > self.committed:
            raise FutureRevisionError()
        if rev < self.compacted:
            raise CompactedError(self.compacted)
        return rev

    def collect(
        self,
        key: bytes,
        range_end: bytes,
        rev: int | None,
        want: int,
        count_only: bool,
        *,
        use_live: bool = False,
        after: bytes | None = None,
        max_steps: int = 0,
        count_all: bool = True,
    ) -> tuple[list[Record], int, bytes | None, bool]:
        """Scan a range: (records, matches counted, last key visited, finished).

        ``rev`` None reads the newest (staged) state.  Collects at most ``want`` records
        (0: all) but counts every match; ``max_steps`` bounds the keys visited so a long
        scan can be resumed with ``after``.  ``use_live`` walks only the keys live at the
        committed revision (valid only when ``rev`` is that revision and nothing was
        committed since the scan began).  With ``count_all`` False the scan stops once
        ``want`` records are collected (the caller knows the count already).
        """
        idx = self.index
        latest = idx.latest
        out: list[Record] = []
        n = 0
        steps = 0
        last = None
        keys = idx.live if use_live else idx.all_keys
        for k in idx.iter_keys(keys, key, range_end, after):
            last = k
            r = latest.get(k)
            if rev is None:
                if r is None or r.version == 0:
                    r = None
            elif r is not None and r.mod_revision > rev:
                r = visible(r, rev)
            elif r is not None and r.version == 0:
                r = None
            if r is not None:
                n += 1
                if not count_only and (not want or len(out) < want):
                    out.append(r)
                elif not count_all:
                    return out, n, last, True
            steps += 1
            if max_steps and steps >= max_steps:
                return out, n, last, False
        return out, n, last, True

    def read_single(self, key: bytes, rev: int | None) -> list[Record]:
        r = self.index.head(key) if rev is None else self.index.get(key, rev)
        return [r] if r is not None else []

    @staticmethod
    def fetch_all(op: RangeOp) -> bool:
        """etcd reads the whole range when it must sort or filter before limiting."""
        return bool(
            op.sort_order != SortOrder.NONE
            or op.min_mod_revision
            or op.max_mod_revision
            or op.min_create_revision
            or op.max_create_revision
        )

    @staticmethod
    def finish_range(op: RangeOp, kvs: list, count: int, header_rev: int) -> RangeResult:
        """etcd's post-processing: filters, sort, limit, keys_only."""
        if op.count_only:
            return RangeResult([], False, count, header_rev)
        if op.max_mod_revision:
            kvs = [kv for kv in kvs if kv.mod_revision <= op.max_mod_revision]
        if op.min_mod_revision:
            kvs = [kv for kv in kvs if kv.mod_revision >= op.min_mod_revision]
        if op.max_create_revision:
            kvs = [kv for kv in kvs if kv.create_revision <= op.max_create_revision]
        if op.min_create_revision:
            kvs = [kv for kv in kvs if kv.create_revision >= op.min_create_revision]
        order = op.sort_order
        if op.sort_target != SortTarget.KEY and order == SortOrder.NONE:
            order = SortOrder.ASCEND
        if order != SortOrder.NONE and not (op.sort_target == SortTarget.KEY and order == SortOrder.ASCEND):
            attr = ("key", "version", "create_revision", "mod_revision", "value")[op.sort_target]
            kvs = sorted(kvs, key=lambda kv: getattr(kv, attr), reverse=order == SortOrder.DESCEND)
        more = False
        if op.limit > 0 and len(kvs) > op.limit:
            kvs = kvs[: op.limit]
            more = True
        if op.keys_only:
            kvs = [KeyValue(kv.key, kv.create_revision, kv.mod_revision, kv.version, b"", kv.lease) for kv in kvs]
        return RangeResult(list(kvs), more, count, header_rev)

    def range_now(self, op: RangeOp, rev: int | None, header_rev: int) -> RangeResult:
        """A whole range in one step (ranges inside txns, small reads)."""
        want = 0 if self.fetch_all(op) else (op.limit + 1 if op.limit > 0 else 0)
        if not op.range_end:
            kvs = self.read_single(op.key, rev)
            return self.finish_range(op, kvs, len(kvs), header_rev)
        kvs, count, _, _ = self.collect(op.key, op.range_end, rev, want, op.count_only)
        return self.finish_range(op, kvs, count, header_rev)

    def head_range(self, key: bytes, range_end: bytes) -> list[Record]:
        if not range_end:
            return self.read_single(key, None)
        return self.collect(key, range_end, None, 0, False)[0]

    # --- validation ---------------------------------------------------------------

    def check_txn(self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op], max_ops: int) -> int:
        """Static checks of a txn (etcd's checkTxnRequest + checkIntervals); returns its size."""
        if max(len(compares), len(success), len(failure)) > max_ops:
            raise TooManyOpsError()
        size = 0
        for c in compares:
            if not c.key:
                raise EmptyKeyError()
            size += len(c.key) + len(c.range_end) + OP_OVERHEAD
            if isinstance(c.value, bytes):
                size += len(c.value)
        for branch in (success, failure):
            for op in branch:
                if isinstance(op, TxnOp):
                    size += self.check_txn(op.compares, op.success, op.failure, max_ops)
                    continue
                if not op.key:
                    raise EmptyKeyError()
                if isinstance(op, PutOp):
                    op.validate()
                    size += len(op.key) + len(op.value) + OP_OVERHEAD
                else:
                    size += len(op.key) + len(op.range_end) + OP_OVERHEAD
            _check_intervals(branch)
        return size

    def check_size(self, size: int, limit: int) -> None:
        if size > limit:
            raise RequestTooLargeError()

    # --- txn evaluation -----------------------------------------------------------

    def compare(self, c: Compare) -> bool:
        self.ranges += 1  # etcd evaluates a compare with a Range (counted as one)
        recs = self.head_range(c.key, c.range_end)
        if not recs:
            if c.target == CompareTarget.VALUE:
                return False
            return _compare_one(c, None)
        return all(_compare_one(c, r) for r in recs)

    def path(self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op]) -> list[bool]:
        """Outcome of every compare the txn will meet, depth first (etcd's compareToPath)."""
        ok = all(self.compare(c) for c in compares)
        out = [ok]
        for op in success if ok else failure:
            if isinstance(op, TxnOp):
                out.extend(self.path(op.compares, op.success, op.failure))
        return out

    def check_ops(self, ops: Sequence[Op], path: list[bool], i: int) -> int:
        """Dynamic checks of the ops that will run (leases, ignore_*, read revisions)."""
        for op in ops:
            if isinstance(op, PutOp):
                if op.lease and op.lease not in self.lessor.leases:
                    raise LeaseNotFoundError()
                if (op.ignore_value or op.ignore_lease) and self.index.head(op.key) is None:
                    raise KeyNotFoundError()
            elif isinstance(op, RangeOp):
                if op.revision > 0:
                    if op.revision > self.rev:
                        raise FutureRevisionError()
                    if op.revision < self.compacted:
                        raise CompactedError(self.compacted)
            elif isinstance(op, TxnOp):
                i += 1
                branch = op.success if path[i] else op.failure
                i = self.check_ops(branch, path, i)
        return i

    @staticmethod
    def has_puts(ops: Sequence[Op], path: list[bool], i: int = 0) -> tuple[int, int]:
        """(quota cost of the puts among ops that will run, next path index)."""
        cost = 0
        for op in ops:
            if isinstance(op, PutOp):
                cost += QUOTA_KV_OVERHEAD + len(op.key) + len(op.value)
            elif isinstance(op, TxnOp):
                i += 1
                branch = op.success if path[i] else op.failure
                sub, i = KVStore.has_puts(branch, path, i)
                cost += sub
        return cost, i

    def apply(
        self,
        ops: Sequence[Op],
        path: list[bool],
        i: int,
        rev: int,
        records: list[Record],
        mutations: list,
    ) -> tuple[list, int]:
        """Run ops in order at revision ``rev`` (staging writes).  Returns (results, i)."""
        results: list = []
        for op in ops:
            if isinstance(op, RangeOp):
                self.ranges += 1
                read_rev = op.revision if op.revision > 0 else None
                header = rev if records else rev - 1
                results.append(self.range_now(op, read_rev, header))
            elif isinstance(op, PutOp):
                self.puts += 1
                prev = self.index.head(op.key)
                value = prev.value if op.ignore_value else op.value
                lease = prev.lease if op.ignore_lease else op.lease
                rec = self.stage_put(op.key, value, lease, rev, prev)
                records.append(rec)
                mutations.append((wal.OP_PUT, op.key, value, lease))
                results.append(PutResult(rev, prev if op.prev_kv else None))
            elif isinstance(op, DeleteOp):
                self.deletes += 1
                prevs = self.head_range(op.key, op.range_end)
                for prev in prevs:
                    records.append(self.stage_delete(prev, rev))
                    mutations.append((wal.OP_DELETE, prev.key, b"", 0))
                header = rev if records else rev - 1
                results.append(DeleteResult(header, len(prevs), list(prevs) if op.prev_kv else []))
            elif isinstance(op, TxnOp):
                i += 1
                ok = path[i]
                sub, i = self.apply(op.success if ok else op.failure, path, i, rev, records, mutations)
                results.append(TxnResult(ok, sub, rev if records else rev - 1))
        return results, i

    # --- staging ------------------------------------------------------------------

    def stage_put(self, key: bytes, value: bytes, lease: int, rev: int, prev: Record | None) -> Record:
        """Stage a new version of key (prev: its live head, or None)."""
        latest = self.index.latest.get(key) if prev is None else prev
        if prev is None:
            rec = Record(key, rev, rev, 1, value, lease, latest)
        else:
            rec = Record(key, prev.create_revision, rev, prev.version + 1, value, lease, prev)
            if prev.lease != lease:
                self.lessor.detach(prev.lease, key)
        if lease:
            self.lessor.attach(lease, key)
        self.index.stage(rec)
        size = record_size(rec)
        self.db_in_use += size
        if self.db_in_use > self.db_high_water:
            self.db_high_water = self.db_in_use
        return rec

    def stage_delete(self, prev: Record, rev: int) -> Record:
        rec = Record(prev.key, 0, rev, 0, b"", 0, prev)
        self.lessor.detach(prev.lease, prev.key)
        self.index.stage(rec)
        self.db_in_use += record_size(rec)
        if self.db_in_use > self.db_high_water:
            self.db_high_water = self.db_in_use
        return rec

    def append_history(self, rev: int, records: list[Record]) -> None:
        self.rev = rev
        self.history.append(rev, tuple(records))

    # --- replay (recovery) --------------------------------------------------------

    def replay_txn(self, rec: wal.TxnRecord) -> None:
        """Re-apply a logged txn.  Recovery builds the ordered key sets afterwards."""
        rev = rec.revision
        latest = self.index.latest
        out = []
        for op, key, value, lease in rec.mutations:
            prev = latest.get(key)
            if op == wal.OP_PUT:
                if prev is None or prev.version == 0:
                    r = Record(key, rev, rev, 1, value, lease, prev)
                else:
                    r = Record(key, prev.create_revision, rev, prev.version + 1, value, lease, prev)
            else:
                r = Record(key, 0, rev, 0, b"", 0, prev)
            latest[key] = r
            self.db_in_use += record_size(r)
            out.append(r)
        self.history.append(rev, tuple(out))
        self.rev = self.committed = rev

    # --- compaction ---------------------------------------------------------------

    def compaction_keys(self, rev: int) -> list[bytes]:
        """Drop history below rev; returns the keys whose chains need cutting.

        Deletes at exactly ``rev`` leave the history too: compaction never keeps a
        tombstone, so (as in etcd) a watch from the floor does not see them, and the
        record and the version it deleted can be freed.
        """
        self.compacted = max(self.compacted, rev)
        dropped = self.history.truncate_before(rev)
        keys = {r.key for entry in dropped for r in entry}
        floor = self.history.at(rev)
        keys.update(r.key for r in floor)
        self.history.entries[0] = tuple(r for r in floor if r.version)
        return list(keys)

    def compact_keys(self, keys: Sequence[bytes], rev: int) -> None:
        freed = 0
        for key in keys:
            freed += self.index.compact_key(key, rev)
        self.db_in_use -= freed


def _compare_one(c: Compare, kv: Record | None) -> bool:
    t = c.target
    if t == CompareTarget.VALUE:
        a = kv.value if kv is not None else b""
        b = c.value if isinstance(c.value, bytes) else b""
    else:
        if kv is None:
            a = 0
        elif t == CompareTarget.VERSION:
            a = kv.version
        elif t == CompareTarget.CREATE:
            a = kv.create_revision
        elif t == CompareTarget.MOD:
            a = kv.mod_revision
        else:
            a = kv.lease
        b = c.value if isinstance(c.value, int) else 0
    r = c.result
    if r == CompareResult.EQUAL:
        return a == b
    if r == CompareResult.NOT_EQUAL:
        return a != b
    if r == CompareResult.GREATER:
        return a > b
    return a < b


def _check_intervals(ops: Sequence[Op]) -> tuple[set[bytes], list[tuple[bytes, bytes]]]:
    """etcd's checkIntervals: no key put twice, and no put inside a deleted range.

    Puts in the success and failure branches of one nested txn may repeat each other
    (only one branch runs).
    """
    dels = [(op.key, op.range_end) for op in ops if isinstance(op, DeleteOp)]

    def deleted(k: bytes) -> bool:
        return any(in_range(k, s, e) for s, e in dels)

    puts: set[bytes] = set()
    for op in ops:
        if not isinstance(op, TxnOp):
            continue
        puts_then, dels_then = _check_intervals(op.success)
        puts_else, dels_else = _check_intervals(op.failure)
        for k in puts_then:
            if k in puts or deleted(k):
                raise DuplicateKeyError()
            puts.add(k)
        for k in puts_else:
            if (k in puts and k not in puts_then) or deleted(k):
                raise DuplicateKeyError()
            puts.add(k)
        dels.extend(dels_then)
        dels.extend(dels_else)
    for op in ops:
        if isinstance(op, PutOp):
            if op.key in puts or deleted(op.key):
                raise DuplicateKeyError()
            puts.add(op.key)
    return puts, dels
