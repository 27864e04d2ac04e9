"""EmbeddedStore: the durable, in-process implementation of the storage interface.

Write path (group commit)::

    txn/put/delete --stage--> KVStore (new revision, records in the index, not visible)
                   --record-> the open batch (sealed at batch_max_txns; a queue of sealed
                              batches waits behind it)
    committer task: take the next batch, write it as one WAL frame + fdatasync in the
                    I/O thread, then mark it committed (readers and watchers see it) and
                    wake every writer of the batch at once.

Concurrent writers therefore share one fsync, and a write is acknowledged, visible and
watched only once it is on disk.  Reads run on the event loop at the committed revision;
a range over many keys works in chunks and yields between them, so writers never wait
for it, and it still reads one consistent revision (records are immutable and
compaction waits for in-flight readers).

Background tasks: the committer, lease expiry (every 0.5 s), progress notifications,
auto-compaction, and snapshots (when the log since the last one outgrows the data).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections import Counter, deque
from time import perf_counter
from typing import AsyncIterator, Sequence

from sortedcontainers import SortedList

from ..errors import (
    CompactedError,
    EmptyKeyError,
    FutureRevisionError,
    InvalidWatchRangeError,
    KeyNotFoundError,
    LeaseNotFoundError,
    NoSpaceError,
    RequestTooLargeError,
    StoreUnavailableError,
)
from ..interface import Store, Watcher
from ..metrics import SLOW_APPLY_SECONDS, StoreStats
from ..types import (
    ALL_KEYS,
    Compare,
    DeleteOp,
    DeleteResult,
    LeaseGrant,
    LeaseInfo,
    Member,
    Op,
    PutOp,
    PutResult,
    RangeOp,
    RangeResult,
    SortOrder,
    SortTarget,
    StoreInfo,
    StoreStatus,
    TxnResult,
)
from . import snapshot as snap_mod
from . import wal
from .backend import Backend
from .iothread import IOThread
from .key_index import Record, record_size
from .kvstore import OP_OVERHEAD, QUOTA_KV_OVERHEAD, KVStore
from .watch import EmbeddedWatcher, WatcherGroup

log = logging.getLogger(__name__)

VERSION = "3.5.17"  # the etcd API level the embedded store emulates
DEFAULT_QUOTA = 2 * 1024**3
DEFAULT_MAX_REQUEST = 1536 * 1024
READ_CHUNK = 5000  # keys visited per step of a long range before yielding
NOSPACE = "NOSPACE"


def parse_retention(mode: str, retention: str) -> float:
    """Periodic: seconds (etcd: a bare number is hours; '5m', '1h', '30s' accepted).
    Revision: number of revisions to keep."""
    text = str(retention).strip()
    if mode == "revision":
        return float(int(text))
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smh]?)", text)
    if not m:
        raise ValueError(f"bad auto-compaction retention {retention!r}")
    unit = {"": 3600, "h": 3600, "m": 60, "s": 1}[m.group(2)]
    return float(m.group(1)) * unit


class _Durable(asyncio.Future):
    """A batch's future.  Cancelling one writer must not cancel the batch for the others,
    so ``cancel()`` refuses: a cancelled writer's task is cancelled once the batch is on
    disk (its write is durable either way).  Cheaper than ``asyncio.shield`` per writer."""

    def cancel(self, msg=None) -> bool:
        return False


class _Batch:
    """Txns that will share one write + fdatasync."""

    __slots__ = ("pieces", "records", "txns", "upto", "future", "opened")

    def __init__(self, future: asyncio.Future) -> None:
        self.pieces: list[bytes] = []  # WAL record encodings, joined into one frame
        self.records: list[Record] = []
        self.txns = 0
        self.upto = 0  # newest revision in the batch (0: none)
        self.future = future
        self.opened = 0.0  # perf_counter() when its first txn was staged


class EmbeddedStore(Store):
    def __init__(
        self,
        data_dir: str | os.PathLike,
        *,
        quota_bytes: int = DEFAULT_QUOTA,
        max_request_bytes: int = DEFAULT_MAX_REQUEST,
        max_txn_ops: int = 128,
        auto_compaction_mode: str = "periodic",
        auto_compaction_retention: str = "0",
        progress_notify_interval: float = 600.0,
        snapshot_min_bytes: int = 64 * 1024**2,
        segment_bytes: int = 64 * 1024**2,
        fsync: bool = True,
        batch_max_txns: int = 1024,
        client_urls: Sequence[str] = (),
    ) -> None:
        self._backend = Backend(data_dir, fsync=fsync)
        self._quota = quota_bytes
        self._max_request = max_request_bytes
        self._max_ops = max_txn_ops
        self._compaction_mode = auto_compaction_mode
        self._retention = parse_retention(auto_compaction_mode, auto_compaction_retention)
        self._progress_interval = progress_notify_interval
        self._snapshot_min = snapshot_min_bytes
        self._segment_bytes = segment_bytes
        self._kv = KVStore()
        self._watchers = WatcherGroup()
        self._watch_ids = 0
        self._alarms: set[str] = set()
        self._readers: Counter[int] = Counter()  # revision -> in-flight chunked readers
        self._commit_seq = 0
        # group commit state: the open batch takes new txns; a full batch is sealed and
        # queued, so one batch is on its way to disk while the next one fills.
        self._batch_max = batch_max_txns
        self._open: _Batch | None = None
        self._sealed: deque[_Batch] = deque()
        self._inflight: asyncio.Future | None = None
        self._wake_committer: asyncio.Event | None = None
        self._rotate_waiters: list[asyncio.Future] = []
        self._wal_since_snapshot = 0
        self._snapshotting = False
        self._maintenance: asyncio.Lock | None = None
        self._io: IOThread | None = None
        self._tasks: list[asyncio.Task] = []
        self._started = False
        self._closed = False
        self._failed: BaseException | None = None
        self._info = StoreInfo("embedded", VERSION, True, list(client_urls))
        self._client_urls = list(client_urls)  # set by whoever serves the store (gRPC endpoint)
        self._stats = StoreStats()  # read by metrics_collector() at scrape time
        self._collector = None

    def metrics_collector(self):
        """This store's Prometheus collector (``kubeplane.store.metrics.StoreCollector``,
        etcd's metric names); register it in a prometheus_client registry."""
        if self._collector is None:
            from ..metrics import StoreCollector

            self._collector = StoreCollector(self)
        return self._collector

    # --- lifecycle ----------------------------------------------------------------

    @property
    def info(self) -> StoreInfo:
        return self._info

    async def start(self) -> None:
        if self._started:
            return
        loop = asyncio.get_running_loop()
        self._io = IOThread("kubeplane-wal")
        self._snap_io = IOThread("kubeplane-snapshot")
        try:
            recovered = await self._io.run(self._backend.open)
            self._recover(recovered)
        except BaseException:
            self._backend.close()
            self._io.shutdown(wait=False)
            self._snap_io.shutdown(wait=False)
            raise
        self._wal_since_snapshot = recovered.log_bytes
        self._open = _Batch(_Durable(loop=loop))
        self._wake_committer = asyncio.Event()
        self._maintenance = asyncio.Lock()
        self._started = True
        self._tasks = [
            loop.create_task(self._committer(), name="kubeplane-committer"),
            loop.create_task(self._lease_expiry(), name="kubeplane-lease-expiry"),
            loop.create_task(self._progress_ticker(), name="kubeplane-progress"),
        ]
        if self._retention > 0:
            self._tasks.append(loop.create_task(self._auto_compactor(), name="kubeplane-auto-compaction"))
        if recovered.truncated_bytes:
            log.warning("dropped a torn final WAL record (%d bytes)", recovered.truncated_bytes)

    def _recover(self, rec) -> None:
        kv = self._kv
        snap = rec.snapshot
        if snap is not None:
            kv.index.latest = snap.latest
            kv.history = snap.history
            kv.rev = kv.committed = snap.revision
            kv.compacted = snap.compacted
            for lease_id, ttl in snap.leases:
                kv.lessor.grant(lease_id, ttl)
            for r in snap.latest.values():
                while r is not None:
                    kv.db_in_use += record_size(r)
                    r = r.prev
        for r in rec.records:
            if isinstance(r, wal.TxnRecord):
                if r.revision > kv.rev:
                    kv.replay_txn(r)
            elif isinstance(r, wal.LeaseGrantRecord):
                kv.lessor.grant(r.lease_id, r.ttl)
            elif isinstance(r, wal.LeaseRevokeRecord):
                kv.lessor.remove(r.lease_id)
            elif isinstance(r, wal.CompactRecord):
                if r.revision > kv.compacted:
                    kv.compact_keys(kv.compaction_keys(r.revision), r.revision)
        if kv.history.base < kv.compacted:
            # A snapshot taken while a compaction was under way records its floor only.
            kv.compact_keys(kv.compaction_keys(kv.compacted), kv.compacted)
        latest = kv.index.latest
        kv.index.all_keys = SortedList(latest)
        kv.index.live = SortedList(k for k, r in latest.items() if r.version)
        for r in latest.values():
            if r.version and r.lease:
                kv.lessor.attach(r.lease, r.key)
        kv.lessor.restart_all()
        kv.db_high_water = kv.db_in_use

    async def close(self) -> None:
        if not self._started or self._closed:
            return
        self._closed = True
        # Let the committer flush what was staged, then stop everything.
        fut = self._durable_future()
        if fut is not None and self._failed is None:
            try:
                await asyncio.wait_for(asyncio.shield(fut), 30)
            except Exception:  # pragma: no cover - best effort on shutdown
                pass
        for w in list(self._watchers.all):
            await w.cancel()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._backend.close()
        self._io.shutdown(wait=True)
        self._snap_io.shutdown(wait=True)

    async def pause(self) -> None:
        """Yield between the chunks of a long operation (range, compaction, snapshot,
        watch catch-up). The WAL's thread gets the GIL meanwhile from the loop's handoff
        (``runtime.io_call_started``)."""
        await asyncio.sleep(0)

    def _check_open(self) -> None:
        if not self._started or self._closed:
            raise StoreUnavailableError("kubeplane: store is closed")
        if self._failed is not None:
            raise StoreUnavailableError(f"kubeplane: store failed: {self._failed}")

    # --- group commit -------------------------------------------------------------

    def _stage(self, rev: int, records: list[Record], pieces: list[bytes]) -> asyncio.Future:
        """Queue a txn's records for the next batch; returns the batch's future."""
        b = self._open
        if not b.txns:
            b.opened = perf_counter()
        if records:
            self._kv.append_history(rev, records)
            b.records.extend(records)
            b.upto = rev
        b.pieces.extend(pieces)
        b.txns += 1
        if b.txns >= self._batch_max:
            self._sealed.append(b)
            self._open = _Batch(_Durable(loop=b.future.get_loop()))
        self._wake_committer.set()
        return b.future

    def _durable_future(self) -> asyncio.Future | None:
        """Completes when everything staged so far is durable (None: already is)."""
        if self._open.txns:
            return self._open.future
        if self._sealed:
            return self._sealed[-1].future
        if self._inflight is not None and not self._inflight.done():
            return self._inflight
        return None

    def _next_batch(self) -> _Batch | None:
        if self._sealed:
            return self._sealed.popleft()
        b = self._open
        if not b.txns:
            return None
        self._open = _Batch(_Durable(loop=b.future.get_loop()))
        return b

    async def _wait_durable(self, fut: asyncio.Future | None) -> None:
        if fut is not None:
            await fut

    async def _committer(self) -> None:
        loop = asyncio.get_running_loop()
        kv = self._kv
        backend = self._backend
        stats = self._stats
        while True:
            await self._wake_committer.wait()
            self._wake_committer.clear()
            while True:
                if self._rotate_waiters or backend.segment_size >= self._segment_bytes:
                    try:
                        seq = await self._io.run(backend.rotate)
                    except OSError as exc:
                        self._fail(exc)
                        return
                    waiters, self._rotate_waiters = self._rotate_waiters, []
                    if waiters:
                        self._wal_since_snapshot = 0  # the snapshot covers the log before this
                    for w in waiters:
                        if not w.done():
                            w.set_result((kv.committed, seq))
                b = self._next_batch()
                if b is None:
                    break
                data = wal.frame_batch(b.pieces)
                self._inflight = b.future
                stats.inflight_txns = b.txns
                start = perf_counter()
                try:
                    await self._io.run(backend.write_sync, data)
                except BaseException as exc:  # disk full, I/O error: etcd panics; we stop writing
                    stats.proposals_failed += b.txns
                    stats.inflight_txns = 0
                    self._fail(exc)
                    b.future.set_exception(StoreUnavailableError(f"kubeplane: WAL write failed: {exc}"))
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    return
                if b.records:
                    kv.index.commit(b.records)
                    kv.committed = b.upto
                    self._commit_seq += 1
                    self._watchers.notify(b.records, b.upto)
                b.future.set_result(None)
                end = perf_counter()
                stats.commit.observe(end - start)
                stats.inflight_txns = 0
                stats.proposals_committed += b.txns
                if end - b.opened > SLOW_APPLY_SECONDS:
                    stats.slow_applies += b.txns
                written = len(data[0]) + len(data[1])
                stats.wal_write_bytes += written
                self._wal_since_snapshot += written
                if not self._snapshotting and self._wal_since_snapshot > max(self._snapshot_min, kv.db_in_use):
                    self._snapshotting = True
                    self._tasks.append(loop.create_task(self._snapshot_task()))

    def _fail(self, exc: BaseException) -> None:
        if isinstance(exc, asyncio.CancelledError):
            # torn down (the loop is ending) with a write in flight: not a disk failure
            log.debug("store stopped with a write in flight")
        else:
            log.error("store failed, refusing writes: %s", str(exc) or type(exc).__name__)
        self._failed = exc
        for b in [*self._sealed, self._open]:
            if b.txns and not b.future.done():     # an empty batch has nobody waiting on it
                self._stats.proposals_failed += b.txns
                b.future.set_exception(StoreUnavailableError(f"kubeplane: WAL write failed: {exc}"))

    # --- KV -----------------------------------------------------------------------

    def _check_quota(self, cost: int) -> None:
        if NOSPACE in self._alarms:
            raise NoSpaceError()
        if self._kv.db_high_water + cost > self._quota:
            self._alarms.add(NOSPACE)
            raise NoSpaceError()

    async def range(
        self,
        key: bytes,
        range_end: bytes = b"",
        *,
        limit: int = 0,
        revision: int = 0,
        keys_only: bool = False,
        count_only: bool = False,
        sort_order: SortOrder = SortOrder.NONE,
        sort_target: SortTarget = SortTarget.KEY,
        serializable: bool = False,
        min_mod_revision: int = 0,
        max_mod_revision: int = 0,
        min_create_revision: int = 0,
        max_create_revision: int = 0,
    ) -> RangeResult:
        self._check_open()
        if not key:
            raise EmptyKeyError()
        self._kv.ranges += 1
        op = RangeOp(
            key, range_end, limit, revision, keys_only, count_only, SortOrder(sort_order),
            SortTarget(sort_target), serializable, min_mod_revision, max_mod_revision,
            min_create_revision, max_create_revision,
        )
        kv = self._kv
        rev = kv.check_read_revision(revision)
        header = kv.committed
        if not range_end:
            recs = kv.read_single(key, rev)
            return kv.finish_range(op, recs, len(recs), header)
        want = 0 if kv.fetch_all(op) else (limit + 1 if limit > 0 else 0)
        fast = rev == kv.committed
        if fast:
            count = kv.index.count_live(key, range_end)
            if count_only:
                return RangeResult([], False, count, header)
            if count <= READ_CHUNK or (want and want <= READ_CHUNK):
                recs, _, _, _ = kv.collect(key, range_end, rev, want, False, use_live=True, count_all=False)
                return kv.finish_range(op, recs, count, header)
        recs, n = await self._chunked_scan(key, range_end, rev, want, count_only, fast)
        return kv.finish_range(op, recs, count if fast else n, header)

    async def _chunked_scan(self, key, range_end, rev, want, count_only, fast):
        """A long scan in steps of READ_CHUNK keys, yielding to writers in between."""
        kv = self._kv
        self._readers[rev] += 1
        try:
            seq = self._commit_seq
            out: list[Record] = []
            total = 0
            after = None
            while True:
                use_live = fast and self._commit_seq == seq
                enough = bool(want) and len(out) >= want
                if enough and fast:
                    break  # the count is known already
                recs, n, last, done = kv.collect(
                    key, range_end, rev, want - len(out) if want else 0, count_only or enough,
                    use_live=use_live, after=after, max_steps=READ_CHUNK,
                )
                out.extend(recs)
                total += n
                if done:
                    break
                after = last
                await self.pause()
            return out, total
        finally:
            self._readers[rev] -= 1
            if not self._readers[rev]:
                del self._readers[rev]

    async def put(
        self,
        key: bytes,
        value: bytes,
        *,
        lease: int = 0,
        prev_kv: bool = False,
        ignore_value: bool = False,
        ignore_lease: bool = False,
    ) -> PutResult:
        if self._failed is not None or not self._started or self._closed:
            self._check_open()
        kv = self._kv
        if not key:
            raise EmptyKeyError()
        size = len(key) + len(value)
        if ignore_value or ignore_lease:
            PutOp(key, value, lease, prev_kv, ignore_value, ignore_lease).validate()
        if size + OP_OVERHEAD > self._max_request:
            raise RequestTooLargeError()
        if self._alarms or kv.db_high_water + QUOTA_KV_OVERHEAD + size > self._quota:
            self._check_quota(QUOTA_KV_OVERHEAD + size)
        prev = kv.index.latest.get(key)
        if prev is not None and not prev.version:
            prev = None
        if ignore_value or ignore_lease:
            if prev is None:
                raise KeyNotFoundError()
            if ignore_value:
                value = prev.value
            if ignore_lease:
                lease = prev.lease
        if lease and lease not in kv.lessor.leases:
            raise LeaseNotFoundError()
        kv.puts += 1
        rev = kv.rev + 1
        rec = kv.stage_put(key, value, lease, rev, prev)
        await self._stage(rev, [rec], wal.encode_put(rev, key, value, lease))
        return PutResult(rev, prev if prev_kv else None)

    async def delete(self, key: bytes, range_end: bytes = b"", *, prev_kv: bool = False) -> DeleteResult:
        self._check_open()
        if not key:
            raise EmptyKeyError()
        self._kv.check_size(len(key) + len(range_end) + OP_OVERHEAD, self._max_request)
        result = await self.txn((), [DeleteOp(key, range_end, prev_kv)])
        return result.responses[0]

    async def txn(self, compares: Sequence[Compare], success: Sequence[Op] = (), failure: Sequence[Op] = ()) -> TxnResult:
        self._check_open()
        kv = self._kv
        size = kv.check_txn(compares, success, failure, self._max_ops)
        kv.check_size(size, self._max_request)
        ops_before = kv.ranges + kv.puts + kv.deletes
        path = kv.path(compares, success, failure)
        ops = success if path[0] else failure
        cost, _ = kv.has_puts(ops, path)
        if cost:
            self._check_quota(cost)
        kv.check_ops(ops, path, 0)
        rev = kv.rev + 1
        records: list[Record] = []
        mutations: list = []
        responses, _ = kv.apply(ops, path, 0, rev, records, mutations)
        if kv.ranges + kv.puts + kv.deletes - ops_before > 1:
            kv.txns += 1  # etcd counts a txn when it ran more than one op
        if records:
            fut = self._stage(rev, records, wal.encode_txn(rev, mutations))
            await fut
            return TxnResult(path[0], responses, rev)
        # Read-only (or no-op): it may have read staged data; answer once that is durable.
        await self._wait_durable(self._durable_future())
        return TxnResult(path[0], responses, rev - 1)

    async def compact(self, revision: int, *, physical: bool = False) -> int:
        self._check_open()
        kv = self._kv
        if revision <= kv.compacted:
            raise CompactedError(kv.compacted)
        if revision > kv.rev:
            raise FutureRevisionError()
        # The floor moves now: reads below it fail from here on, and a snapshot taken
        # before the physical compaction below still records it.
        kv.compacted = revision
        await self._stage(0, [], wal.encode_compact(revision))
        async with self._maintenance:
            await self._compact_now(revision)
        return kv.committed

    async def _compact_now(self, revision: int) -> None:
        kv = self._kv
        if kv.history.base >= revision:
            return  # a later compaction already did this part
        # Readers below the new floor keep their snapshot until they finish.
        while self._readers and min(self._readers) < revision:
            await asyncio.sleep(0.005)
        stats = self._stats
        start = perf_counter()
        keys = kv.compaction_keys(revision)
        stats.index_compaction_pause.observe((perf_counter() - start) * 1e3)
        for i in range(0, len(keys), READ_CHUNK):
            t = perf_counter()
            kv.compact_keys(keys[i : i + READ_CHUNK], revision)
            stats.db_compaction_pause.observe((perf_counter() - t) * 1e3)
            if i + READ_CHUNK < len(keys):
                await self.pause()
        stats.db_compaction_total.observe((perf_counter() - start) * 1e3)

    # --- watch --------------------------------------------------------------------

    async def watch(
        self,
        key: bytes,
        range_end: bytes = b"",
        *,
        start_revision: int = 0,
        prev_kv: bool = False,
        progress_notify: bool = False,
        filter_put: bool = False,
        filter_delete: bool = False,
    ) -> Watcher:
        self._check_open()
        if range_end and range_end != ALL_KEYS and key >= range_end:
            raise InvalidWatchRangeError()
        self._watch_ids += 1
        committed = self._kv.committed
        start = start_revision if start_revision > 0 else committed + 1
        w = EmbeddedWatcher(
            self, self._watch_ids, key, range_end, start, prev_kv, progress_notify, filter_put, filter_delete
        )
        if start > committed:
            w.synced = True
            self._watchers.add(w)
        self._stats.watchers_open += 1
        return w

    # --- leases -------------------------------------------------------------------

    async def lease_grant(self, ttl: int, lease_id: int = 0) -> LeaseGrant:
        self._check_open()
        if NOSPACE in self._alarms:
            raise NoSpaceError()
        lessor = self._kv.lessor
        lease_id = lessor.check_grant(ttl, lease_id)
        lease = lessor.grant(lease_id, ttl)
        await (self._stage(0, [], wal.encode_lease_grant(lease_id, lease.ttl)))
        return LeaseGrant(lease_id, lease.ttl)

    async def lease_keep_alive(self, lease_id: int) -> int:
        self._check_open()
        return self._kv.lessor.renew(lease_id)

    def _revoke_now(self, lease_id: int) -> asyncio.Future:
        """Stage the revoke of a lease and the deletion of its keys as one txn."""
        kv = self._kv
        lease = kv.lessor.remove(lease_id)
        records: list[Record] = []
        pieces: list[bytes] = []
        rev = kv.rev + 1
        if lease is not None:
            for key in sorted(lease.keys):
                prev = kv.index.head(key)
                if prev is not None:
                    records.append(kv.stage_delete(prev, rev))
            kv.deletes += len(records)  # etcd's lessor deletes key by key in one txn
            if len(records) > 1:
                kv.txns += 1
        if records:
            pieces.extend(wal.encode_txn(rev, [(wal.OP_DELETE, r.key, b"", 0) for r in records]))
        pieces.extend(wal.encode_lease_revoke(lease_id))
        return self._stage(rev if records else 0, records, pieces)

    async def lease_revoke(self, lease_id: int) -> int:
        self._check_open()
        if lease_id not in self._kv.lessor.leases:
            raise LeaseNotFoundError()
        await self._revoke_now(lease_id)
        return self._kv.committed

    async def lease_time_to_live(self, lease_id: int, *, keys: bool = False) -> LeaseInfo:
        self._check_open()
        lease = self._kv.lessor.leases.get(lease_id)
        if lease is None:
            return LeaseInfo(lease_id, -1, 0, [])
        remaining = lease.remaining(time.monotonic())
        return LeaseInfo(lease_id, remaining, lease.ttl, sorted(lease.keys) if keys else [])

    async def lease_leases(self) -> list[int]:
        self._check_open()
        return list(self._kv.lessor.leases)

    async def _lease_expiry(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            if self._failed is not None:
                return
            for lease_id in self._kv.lessor.expired():
                self._stats.lease_expired += 1
                self._revoke_now(lease_id)

    # --- maintenance --------------------------------------------------------------

    async def current_revision(self) -> int:
        self._check_open()
        return self._kv.committed

    async def status(self) -> StoreStatus:
        self._check_open()
        kv = self._kv
        return StoreStatus(
            version=VERSION,
            db_size=kv.db_high_water,
            db_size_in_use=kv.db_in_use,
            revision=kv.committed,
            compact_revision=kv.compacted,
            member_id=self._backend.member_id,
            leader=self._backend.member_id,
            raft_term=1,
            alarms=sorted(self._alarms),
        )

    @property
    def cluster_id(self) -> int:
        return self._backend.cluster_id

    @property
    def member_id(self) -> int:
        return self._backend.member_id

    async def alarms(self) -> list[str]:
        self._check_open()
        return sorted(self._alarms)

    async def disarm(self) -> None:
        self._check_open()
        self._alarms.clear()

    async def defragment(self) -> None:
        """Rewrite the on-disk state compactly (a snapshot) and release freed space."""
        self._check_open()
        start = perf_counter()
        await self._take_snapshot()
        self._kv.db_high_water = self._kv.db_in_use
        self._stats.defrag.observe(perf_counter() - start)

    async def members(self) -> list[Member]:
        self._check_open()
        return [Member(self._backend.member_id, "kubeplane", [], list(self._client_urls))]

    async def snapshot(self) -> AsyncIterator[bytes]:
        """Stream the store at its committed revision, in the snapshot-file format."""
        self._check_open()
        kv = self._kv
        async with self._maintenance:
            rev = kv.committed
            self._readers[rev] += 1
            start = perf_counter()
            try:
                buf: list[bytes] = []
                size = 0
                async for payload in self._snapshot_payloads(rev, 0):
                    for piece in wal.frame(payload):
                        buf.append(piece)
                        size += len(piece)
                    if size >= 1 << 20:
                        yield b"".join(buf)
                        buf, size = [], 0
                if buf:
                    yield b"".join(buf)
                self._stats.snapshot.observe(perf_counter() - start)
            finally:
                self._readers[rev] -= 1
                if not self._readers[rev]:
                    del self._readers[rev]

    async def _snapshot_payloads(self, rev: int, next_segment: int) -> AsyncIterator[bytes]:
        kv = self._kv
        leases = [(lease.id, lease.ttl) for lease in kv.lessor.leases.values()]
        keys = list(kv.index.all_keys)  # a copy: the set changes while we yield
        gen = snap_mod.frames_of(rev, kv.compacted, next_segment, kv.history, kv.index.latest, iter(keys), leases)
        for i, payload in enumerate(gen):
            yield payload
            if i % 2000 == 1999:
                await self.pause()

    async def _snapshot_task(self) -> None:
        try:
            await self._take_snapshot()
        except Exception:  # pragma: no cover - logged; the log keeps everything anyway
            log.exception("snapshot failed")
        finally:
            self._snapshotting = False

    async def _take_snapshot(self) -> None:
        """Rotate the log, write a snapshot at the rotation point, drop the old log."""
        loop = asyncio.get_running_loop()
        async with self._maintenance:
            waiter = loop.create_future()
            self._rotate_waiters.append(waiter)
            self._wake_committer.set()
            rev, next_segment = await waiter
            self._readers[rev] += 1
            start = perf_counter()
            f = None
            # The snapshot's file is written and fsynced on a thread of its own: on the WAL's
            # thread, tens of MB written and fsynced would stall every commit queued behind them
            # (a lease renewal waited 5 s behind one in a list flood, tests/apiserver/test_fairness.py).
            io = self._snap_io
            try:
                f = await io.run(self._backend.open_snapshot, rev)
                chunk: list[bytes] = []
                size = 0
                async for payload in self._snapshot_payloads(rev, next_segment):
                    chunk.extend(wal.frame(payload))
                    size += len(payload)
                    if size >= 4 << 20:
                        await io.run(f.writelines, chunk)
                        chunk, size = [], 0
                await io.run(f.writelines, chunk)
                await io.run(self._backend.sync_snapshot, f)
                # rename and dropping obsolete segments stay on the WAL's thread (it owns the log)
                await self._io.run(self._backend.finish_snapshot, f, rev, next_segment)
                f = None
                self._stats.snapshot.observe(perf_counter() - start)
            finally:
                if f is not None:  # failed or cancelled half-way: no half-written file stays
                    self._snap_io.run(self._backend.abort_snapshot, f)
                self._readers[rev] -= 1
                if not self._readers[rev]:
                    del self._readers[rev]

    async def _progress_ticker(self) -> None:
        while True:
            await asyncio.sleep(self._progress_interval)
            self._watchers.tick()

    async def _auto_compactor(self) -> None:
        """etcd's auto-compaction: periodic (keep `retention` seconds of history) or
        revision (keep `retention` revisions), checked every interval."""
        kv = self._kv
        if self._compaction_mode == "revision":
            interval = 300.0
        else:
            interval = max(min(self._retention / 10, 3600.0), 0.1)
        samples: list[tuple[float, int]] = []
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            if self._compaction_mode == "revision":
                target = kv.committed - int(self._retention)
            else:
                samples.append((now, kv.committed))
                target = 0
                while samples and samples[0][0] <= now - self._retention:
                    target = samples.pop(0)[1]
            if target > kv.compacted and target <= kv.committed:
                try:
                    await self.compact(target)
                except (CompactedError, FutureRevisionError):
                    pass
                except StoreUnavailableError:
                    return
