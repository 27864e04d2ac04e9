"""Durability of the embedded store: restart, snapshots, damaged files, group commit,
long reads, compaction, quota, request limits and slow watchers.

Everything runs on a real data dir with real fsyncs; the only thing patched is a wrapper
around ``Backend.write_sync`` where a test must see (or time) the group-commit writes.
To damage files at precise places the tests walk the frames of the on-disk format
(a fixed-size header starting with the ``u32`` payload length, then the payload; see
``wal.py``), and torn writes are made from real frames cut short.
"""

from __future__ import annotations

import asyncio
import gc
import struct
import threading
import time
from pathlib import Path

import pytest

from kubeplane.store.errors import (
    CompactedError,
    CorruptionError,
    DuplicateKeyError,
    LeaseNotFoundError,
    NoSpaceError,
    RequestTooLargeError,
    TooManyOpsError,
)
from kubeplane.store.mvcc import EmbeddedStore, wal
from kubeplane.store.mvcc.backend import Backend
from kubeplane.store.mvcc.watch import MAX_BUFFERED_EVENTS
from kubeplane.store.types import (
    ALL_KEYS,
    Compare,
    DeleteOp,
    EventType,
    PutOp,
    RangeOp,
    TxnOp,
    prefix_end,
)

HEADER = wal.HEADER.size  # a frame: a fixed-size header (u32 payload length first), payload
LENGTH = struct.Struct("<I")
WAIT = 5.0


# --- helpers -----------------------------------------------------------------------------


def frames(data: bytes) -> list[tuple[int, int, bytes]]:
    """(offset, length, payload) of each frame of a well-formed file."""
    out = []
    pos = 0
    while pos + HEADER <= len(data):
        (length,) = LENGTH.unpack_from(data, pos)
        out.append((pos, length, data[pos + HEADER : pos + HEADER + length]))
        pos += HEADER + length
    assert pos == len(data), "file is not a clean sequence of frames"
    return out


def txn_revisions(data: bytes) -> list[int]:
    return [r.revision for _, _, p in frames(data) for r in wal.decode_frame(p) if isinstance(r, wal.TxnRecord)]


def segments(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "wal").glob("*.wal"))


def snapshots(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "snap").glob("*.snap"))


def file_bytes(paths: list[Path]) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in paths}


def flip(path: Path, offset: int, mask: int = 0x40) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= mask
    path.write_bytes(bytes(data))


def kv_tuple(kv) -> tuple:
    return (kv.key, kv.value, kv.lease, kv.create_revision, kv.mod_revision, kv.version)


async def all_kvs(store: EmbeddedStore, revision: int = 0) -> list[tuple]:
    res = await store.range(b"\0", ALL_KEYS, revision=revision)
    return [kv_tuple(kv) for kv in res.kvs]


async def watch_events(store: EmbeddedStore, start: int, head: int, key: bytes = b"\0", end: bytes = ALL_KEYS):
    """Every event with start <= revision <= head as tuples (the history)."""
    out: list[tuple] = []
    w = await store.watch(key, end, start_revision=start, prev_kv=True)
    try:
        while not out or out[-1][2] < head:
            resp = await asyncio.wait_for(w.__anext__(), WAIT)
            for e in resp.events:
                prev = kv_tuple(e.prev_kv) if e.prev_kv else None
                out.append((int(e.type), e.kv.key, e.kv.mod_revision, e.kv.value, e.kv.version, prev))
    finally:
        await w.cancel()
    return out


async def state(store: EmbeddedStore) -> dict:
    """Everything a restart must preserve, as plain data."""
    st = await store.status()
    head, floor = st.revision, st.compact_revision
    leases = {}
    for lease in sorted(await store.lease_leases()):
        info = await store.lease_time_to_live(lease, keys=True)
        leases[lease] = (info.granted_ttl, info.keys)
    return {
        "revision": head,
        "compact_revision": floor,
        "db_size_in_use": st.db_size_in_use,
        "member": (store.member_id, store.cluster_id),
        "kvs": await all_kvs(store),
        "history": {rev: await all_kvs(store, rev) for rev in range(max(floor, 1), head + 1)},
        "events": await watch_events(store, max(floor, 1), head) if head > max(floor, 1) else [],
        "leases": leases,
    }


async def populate(store: EmbeddedStore) -> dict:
    """A bit of everything: creates, updates, deletes, txns, leases, revoke, compaction."""
    for i in range(40):
        await store.put(b"k/%02d" % i, b"v0-%d" % i)
    for i in range(0, 40, 3):
        await store.put(b"k/%02d" % i, b"v1-%d" % i)
    await store.delete(b"k/05", b"k/09")
    r = await store.txn(
        [Compare.version(b"k/00", "=", 2)],
        [PutOp(b"k/00", b"txn"), PutOp(b"t/new", b"n"), DeleteOp(b"k/10"), RangeOp(b"k/00")],
        [PutOp(b"k/00", b"wrong")],
    )
    assert r.succeeded
    keep = await store.lease_grant(600)
    gone = await store.lease_grant(600)
    floor = (await store.put(b"l/a", b"a", lease=keep.id)).revision
    await store.put(b"l/b", b"b", lease=keep.id)
    await store.put(b"l/c", b"c", lease=gone.id)
    await store.lease_revoke(gone.id)
    await store.compact(floor)  # (at a put: see test_snapshot_restart_keeps_floor_tombstones_compacted)
    for i in range(0, 40, 4):
        await store.put(b"k/%02d" % i, b"v2-%d" % i)
    await store.delete(b"k/3", b"k/4")
    await store.put(b"k/05", b"recreated")
    return {"keep": keep.id, "gone": gone.id, "floor": floor}


# --- restart -----------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["wal", "snapshot", "snapshot+wal"])
async def test_restart_preserves_everything(tmp_path: Path, source: str) -> None:
    data = tmp_path / "d"
    async with EmbeddedStore(data) as s:
        info = await populate(s)
        if source != "wal":
            await s.defragment()  # writes a snapshot, drops the log before it
            assert snapshots(data)
        if source == "snapshot+wal":
            await s.put(b"k/after-snap", b"x")
            await s.delete(b"k/00")
        before = await state(s)
    assert before["compact_revision"] == info["floor"]
    assert set(before["leases"]) == {info["keep"]}
    assert before["leases"][info["keep"]] == (600, [b"l/a", b"l/b"])
    assert len(before["history"]) > 10 and before["events"]

    async with EmbeddedStore(data) as s:
        after = await state(s)
        assert after == before
        # Below the floor stays compacted, for reads and for watches.
        with pytest.raises(CompactedError) as exc:
            await s.range(b"k/", prefix_end(b"k/"), revision=info["floor"] - 1)
        assert exc.value.compact_revision == info["floor"]
        w = await s.watch(b"k/", prefix_end(b"k/"), start_revision=info["floor"] - 1)
        with pytest.raises(CompactedError):
            await asyncio.wait_for(w.__anext__(), WAIT)
        # The log goes on where it stopped.
        r = await s.put(b"k/next", b"n")
        assert r.revision == before["revision"] + 1
    async with EmbeddedStore(data) as s:
        assert (await s.get(b"k/next")).mod_revision == before["revision"] + 1


async def test_snapshot_restart_keeps_floor_tombstones_compacted(tmp_path: Path) -> None:
    """Compaction at a revision that deleted keys, then a snapshot: a restart gives the
    same store (size in use, history from the floor with prev_kv) as before it."""
    data = tmp_path / "d"
    async with EmbeddedStore(data) as s:
        for i in range(4):
            await s.put(b"t/%d" % i, b"v%d" % i)
        floor = (await s.delete(b"t/0", b"t/3")).revision
        await s.put(b"t/1", b"again")
        await s.put(b"t/9", b"x")
        await s.compact(floor)
        await s.defragment()
        head = await s.current_revision()
        size, events = (await s.status()).db_size_in_use, await watch_events(s, floor, head)
    async with EmbeddedStore(data) as s:
        assert await watch_events(s, floor, head) == events
        assert (await s.status()).db_size_in_use == size


async def test_lease_ttl_resets_on_restart_and_expiry_still_revokes(tmp_path: Path) -> None:
    data = tmp_path / "d"
    async with EmbeddedStore(data) as s:
        g = await s.lease_grant(2)
        await s.put(b"lk", b"v", lease=g.id)
        await asyncio.sleep(1.1)
        assert (await s.lease_time_to_live(g.id)).ttl == 0  # 0.9 s left
    async with EmbeddedStore(data) as s:
        info = await s.lease_time_to_live(g.id, keys=True)
        assert (info.granted_ttl, info.keys) == (2, [b"lk"])
        assert info.ttl >= 1, "a lease's TTL starts again from a restart"
        kv = await s.get(b"lk")
        assert kv is not None and kv.lease == g.id
        w = await s.watch(b"lk", start_revision=kv.mod_revision + 1)
        resp = await asyncio.wait_for(w.__anext__(), WAIT)  # expiry (deadline ~2 s away)
        assert [e.type for e in resp.events] == [EventType.DELETE]
        assert g.id not in await s.lease_leases()
        head = await s.current_revision()
    async with EmbeddedStore(data) as s:  # the expiry was a durable write
        assert await s.get(b"lk") is None
        assert g.id not in await s.lease_leases()
        assert await s.current_revision() == head


# --- snapshots and log truncation --------------------------------------------------------

SMALL = dict(snapshot_min_bytes=16 * 1024, segment_bytes=4 * 1024)


async def churn(store: EmbeddedStore, rounds: int, per_round: int, keys: int = 50, keep: int = 50) -> int:
    """Updates of a few keys, compacting so the data stays small while the log grows."""
    n = 0
    for r in range(rounds):
        await asyncio.gather(
            *(store.put(b"s/%03d" % ((r * per_round + i) % keys), b"%d-%d-" % (r, i) + b"x" * 80) for i in range(per_round))
        )
        n += per_round
        head = await store.current_revision()
        if head - keep > (await store.status()).compact_revision:
            await store.compact(head - keep)
    return n


async def test_snapshot_truncates_log_and_bounds_restart(tmp_path: Path) -> None:
    data = tmp_path / "d"
    async with EmbeddedStore(data, **SMALL) as s:
        writes = await churn(s, rounds=40, per_round=100)
        await asyncio.sleep(0.2)  # let a snapshot in progress finish
        st = await s.status()
        before = await state(s)
    wal = segments(data)
    wal_bytes = sum(p.stat().st_size for p in wal)
    assert len(snapshots(data)) == 1, "older snapshots are removed"
    assert not (data / "wal" / "0000000000000001.wal").exists(), "log before the snapshot is removed"
    # The log kept is bounded by the snapshot threshold, not by the history written.
    threshold = max(SMALL["snapshot_min_bytes"], st.db_size_in_use)
    assert wal_bytes < 2 * threshold + 2 * SMALL["segment_bytes"], (wal_bytes, threshold)
    assert writes * 100 > 10 * wal_bytes  # far more was written than kept
    # Recovery replays only the log after the snapshot.
    backend = Backend(data)
    recovered = backend.open()
    backend.close()
    assert recovered.snapshot is not None
    assert len(recovered.records) < writes / 5
    t = time.monotonic()
    async with EmbeddedStore(data, **SMALL) as s:
        assert time.monotonic() - t < 2.0
        assert await state(s) == before


async def test_log_since_snapshot_counts_across_restarts(tmp_path: Path) -> None:
    """Many short sessions, each writing a little less than the snapshot threshold: the
    log since the last snapshot still outgrows the data, so a snapshot must be taken and
    the log (and the restart time) stay bounded."""
    data = tmp_path / "d"
    opts = dict(snapshot_min_bytes=32 * 1024, segment_bytes=4 * 1024)
    for _ in range(8):
        async with EmbeddedStore(data, **opts) as s:
            await churn(s, rounds=2, per_round=60, keys=20, keep=20)  # ~20 KiB of log
            await asyncio.sleep(0.1)
    wal_bytes = sum(p.stat().st_size for p in segments(data))
    assert wal_bytes < 3 * opts["snapshot_min_bytes"], f"{wal_bytes} bytes of log kept after 8 sessions"


# --- torn tail ---------------------------------------------------------------------------


async def write_numbered(data: Path, n: int, **opts) -> list[int]:
    async with EmbeddedStore(data, **opts) as s:
        return [(await s.put(b"n/%03d" % i, b"value-%d" % i)).revision for i in range(n)]


@pytest.mark.parametrize("cut", ["1", "5", "20", "all-but-3"])
async def test_torn_last_record_cut_short_is_dropped(tmp_path: Path, cut: str) -> None:
    data = tmp_path / "d"
    revs = await write_numbered(data, 30)
    seg = segments(data)[-1]
    raw = seg.read_bytes()
    last_start = frames(raw)[-1][0]
    keep = last_start + 3 if cut == "all-but-3" else len(raw) - int(cut)
    seg.write_bytes(raw[:keep])
    async with EmbeddedStore(data) as s:
        assert await s.current_revision() == revs[-2]
        assert await s.get(b"n/029") is None
        for i in range(29):
            assert (await s.get(b"n/%03d" % i)).value == b"value-%d" % i
        assert seg.stat().st_size == last_start, "the torn record is cut off the file"
        r = await s.put(b"after", b"a")
        assert r.revision == revs[-1]
    async with EmbeddedStore(data) as s:  # writes after the repair are readable again
        assert (await s.get(b"after")).mod_revision == revs[-1]
        assert len((await s.range(b"n/", prefix_end(b"n/"))).kvs) == 29


def torn(kind: str) -> bytes:
    """What a crash in the middle of the next write can leave behind: a prefix of a real
    frame, possibly followed by zeros the file system had allocated."""
    frame = b"".join(wal.frame_batch(wal.encode_txn(10**6, [(wal.OP_PUT, b"torn", b"t" * 100, 0)])))
    if kind == "partial-header":
        return frame[:3]
    if kind == "header-promising-more":
        return frame[: HEADER + 10]
    if kind == "all-but-one-byte":
        return frame[:-1]
    if kind == "last-sectors-zero":
        return frame[:-20] + bytes(20)
    if kind == "preallocated-zeros":
        return bytes(4096)
    raise AssertionError(kind)


TORN = ["partial-header", "header-promising-more", "all-but-one-byte", "last-sectors-zero", "preallocated-zeros"]


@pytest.mark.parametrize("kind", TORN)
async def test_partial_frame_appended_is_dropped(tmp_path: Path, kind: str) -> None:
    data = tmp_path / "d"
    revs = await write_numbered(data, 30)
    seg = segments(data)[-1]
    size = seg.stat().st_size
    with open(seg, "ab") as f:
        f.write(torn(kind))
    async with EmbeddedStore(data) as s:
        assert await s.current_revision() == revs[-1]
        assert len((await s.range(b"n/", prefix_end(b"n/"))).kvs) == 30
        assert seg.stat().st_size == size
        await s.put(b"after", b"a")
    async with EmbeddedStore(data) as s:
        assert (await s.get(b"after")).mod_revision == revs[-1] + 1


# --- corruption --------------------------------------------------------------------------


async def corrupt_start(data: Path) -> CorruptionError:
    """Start must fail with CorruptionError and leave every file as it was."""
    before = file_bytes(segments(data) + snapshots(data))
    s = EmbeddedStore(data)
    with pytest.raises(CorruptionError) as exc:
        await s.start()
    await s.close()
    assert file_bytes(segments(data) + snapshots(data)) == before, "a corrupt store was 'repaired'"
    return exc.value


# (segment: "first" | "last", field inside a frame in the middle of that segment)
FLIPS = [
    ("first", "payload"),
    ("first", "crc"),
    ("first", "length-high"),
    ("last", "payload"),
    ("last", "crc"),
    ("last", "length-low"),
    ("last", "length-high"),
]


@pytest.mark.parametrize("where,field", FLIPS)
async def test_flipped_byte_in_segment_is_corruption(tmp_path: Path, where: str, field: str) -> None:
    data = tmp_path / "d"
    await write_numbered(data, 120, segment_bytes=2048)
    segs = segments(data)
    assert len(segs) >= 3
    seg = segs[0] if where == "first" else segs[-1]
    fr = frames(seg.read_bytes())
    assert len(fr) >= 5
    offset, length, _ = fr[len(fr) // 2]
    pos = {
        "payload": offset + HEADER + length // 2,
        "crc": offset + 5,
        "length-low": offset,
        "length-high": offset + 3,
    }[field]
    flip(seg, pos, 0x01 if field == "length-low" else 0x40)
    err = await corrupt_start(data)
    assert seg.name in str(err)


@pytest.mark.parametrize("damage", ["flip-middle", "flip-header", "cut-end"])
async def test_damaged_snapshot_is_corruption(tmp_path: Path, damage: str) -> None:
    data = tmp_path / "d"
    async with EmbeddedStore(data) as s:
        await populate(s)
        await s.defragment()
        await s.put(b"after", b"a")
    (snap,) = snapshots(data)
    raw = snap.read_bytes()
    if damage == "flip-middle":
        flip(snap, len(raw) // 2)
    elif damage == "flip-header":
        flip(snap, HEADER + 3)  # inside the META record
    else:
        snap.write_bytes(raw[:-5])
    err = await corrupt_start(data)
    assert snap.name in str(err)


# --- group commit ------------------------------------------------------------------------


async def test_group_commit_shares_fsyncs_and_acks_only_durable_writes(tmp_path: Path, monkeypatch) -> None:
    batches: list[list[int]] = []
    durable: set[int] = set()
    real = Backend.write_sync

    def write_sync(self, buffers: list[bytes]) -> None:
        real(self, buffers)
        revs = txn_revisions(b"".join(buffers))
        batches.append(revs)
        durable.update(revs)

    monkeypatch.setattr(Backend, "write_sync", write_sync)
    n = 300
    async with EmbeddedStore(tmp_path / "d") as s:
        w = await s.watch(b"g/", prefix_end(b"g/"))
        seen: list[int] = []

        async def watch() -> None:
            while len(seen) < n:
                resp = await asyncio.wait_for(w.__anext__(), WAIT)
                for e in resp.events:
                    assert e.kv.mod_revision in durable, "a watcher saw a write before it was on disk"
                    seen.append(e.kv.mod_revision)

        async def put(i: int) -> int:
            r = await s.put(b"g/%03d" % i, b"v")
            assert r.revision in durable, "a put was acknowledged before it was on disk"
            return r.revision

        watcher = asyncio.create_task(watch())
        revs = await asyncio.gather(*(put(i) for i in range(n)))
        await asyncio.wait_for(watcher, WAIT)
        assert sorted(revs) == list(range(2, n + 2))
        assert seen == sorted(revs)
        put_batches = [b for b in batches if b]
        assert sum(len(b) for b in put_batches) == n
        assert len(put_batches) <= n // 10, f"{n} concurrent puts took {len(put_batches)} fsyncs"
        # One at a time, each put is its own batch.
        batches.clear()
        for i in range(5):
            await s.put(b"seq", b"%d" % i)
        assert len(batches) == 5


# --- long reads --------------------------------------------------------------------------

N_LONG = 100_000


async def test_long_range_does_not_block_writers(tmp_path: Path) -> None:
    async with EmbeddedStore(tmp_path / "d") as s:
        # Per key: [(revision, value or None)], to know the state at any revision.
        hist: dict[bytes, list[tuple[int, bytes | None]]] = {}

        async def fill(j: int) -> None:
            ops = [PutOp(b"r/%06d" % i, b"v%d" % i) for i in range(j * 125, j * 125 + 125)]
            rev = (await s.txn([], ops)).revision
            for op in ops:
                hist[op.key] = [(rev, op.value)]

        await asyncio.gather(*(fill(j) for j in range(N_LONG // 125)))
        gc.collect()
        gc.freeze()  # keep a full collection of 100k objects out of the run
        try:
            during = 0
            for rep in range(8):
                task = asyncio.create_task(s.range(b"r/", prefix_end(b"r/")))
                ticks = 0

                async def ticker() -> None:
                    nonlocal ticks
                    while not task.done():
                        await asyncio.sleep(0)
                        ticks += 1

                async def writer(p: int) -> None:
                    nonlocal during
                    i = 0
                    while not task.done():
                        base = p * 20_000 + rep * 1000 + i
                        upd, new, gone = b"r/%06d" % base, b"r/%06d.new" % base, b"r/%06d" % (base + 10_000)
                        for key, coro, value in (
                            (upd, s.put(upd, b"upd"), b"upd"),
                            (new, s.put(new, b"new"), b"new"),
                            (gone, s.delete(gone), None),
                        ):
                            rev = (await coro).revision
                            hist.setdefault(key, []).append((rev, value))
                            if not task.done():
                                during += 1
                        i += 1

                await asyncio.gather(ticker(), *(writer(p) for p in range(4)))
                # The range ran in steps, the loop (and the writers) running in between.
                assert ticks >= 10, f"a {N_LONG}-key range held the event loop ({ticks} turns)"
                res = task.result()
                # A consistent snapshot at its revision: exactly the state the writes made.
                expect = []
                for key in sorted(hist):
                    vis = [v for rev, v in hist[key] if rev <= res.revision]
                    if vis and vis[-1] is not None:
                        expect.append((key, vis[-1]))
                assert [(kv.key, kv.value) for kv in res.kvs] == expect
                assert res.count == len(expect) >= N_LONG - 4 * 8 * 50
                assert all(kv.mod_revision <= res.revision for kv in res.kvs)
        finally:
            gc.unfreeze()
        assert during >= 4, f"only {during} writes completed while 100k-key ranges were running"


# --- compaction --------------------------------------------------------------------------


async def test_compaction_frees_memory_and_old_reads_fail(tmp_path: Path) -> None:
    data = tmp_path / "d"
    async with EmbeddedStore(data) as s:
        for v in range(50):
            await asyncio.gather(*(s.put(b"c/%02d" % k, b"%d" % v + b"x" * 200) for k in range(20)))
        head = await s.current_revision()
        st1 = await s.status()
        await s.compact(head - 10)
        st2 = await s.status()
        assert st2.compact_revision == head - 10
        assert st2.db_size_in_use < st1.db_size_in_use / 10, (st1.db_size_in_use, st2.db_size_in_use)
        with pytest.raises(CompactedError) as exc:
            await s.range(b"c/", prefix_end(b"c/"), revision=head - 11)
        assert exc.value.compact_revision == head - 10
        old = await s.range(b"c/", prefix_end(b"c/"), revision=head - 10)
        assert old.count == 20
        await s.compact(head)
        assert (await s.status()).db_size_in_use == sum(len(kv.key) + len(kv.value) for kv in old.kvs) + 48 * 20
        w = await s.watch(b"c/", prefix_end(b"c/"), start_revision=head - 1)
        with pytest.raises(CompactedError):
            await asyncio.wait_for(w.__anext__(), WAIT)
        st3 = await s.status()
    async with EmbeddedStore(data) as s:
        st4 = await s.status()
        assert (st4.db_size_in_use, st4.compact_revision) == (st3.db_size_in_use, head)


async def test_compaction_floor_survives_a_concurrent_snapshot(tmp_path: Path, monkeypatch) -> None:
    """A snapshot that starts while an acknowledged compaction's record is being written
    must not drop the compaction: after a restart the floor is where it was."""
    entered = threading.Event()
    release = threading.Event()
    real = Backend.write_sync

    def write_sync(self, buffers: list[bytes]) -> None:
        data = b"".join(buffers)
        if any(isinstance(r, wal.CompactRecord) for _, _, p in frames(data) for r in wal.decode_frame(p)):
            entered.set()
            release.wait(WAIT)
        real(self, buffers)

    monkeypatch.setattr(Backend, "write_sync", write_sync)
    data = tmp_path / "d"
    async with EmbeddedStore(data) as s:
        for i in range(30):
            await s.put(b"f/%d" % (i % 5), b"%d" % i)
        head = await s.current_revision()
        compaction = asyncio.create_task(s.compact(head - 3))
        assert await asyncio.to_thread(entered.wait, WAIT)
        snapshot = asyncio.create_task(s.defragment())
        await asyncio.sleep(0.05)  # the snapshot is waiting for the log to rotate
        release.set()
        await asyncio.wait_for(asyncio.gather(compaction, snapshot), WAIT)
        assert (await s.status()).compact_revision == head - 3
    async with EmbeddedStore(data) as s:
        assert (await s.status()).compact_revision == head - 3, "an acknowledged compaction was lost"
        with pytest.raises(CompactedError):
            await s.range(b"f/0", revision=head - 4)


# --- quota -------------------------------------------------------------------------------


async def test_quota_nospace_then_recovery(tmp_path: Path) -> None:
    quota = 128 * 1024
    async with EmbeddedStore(tmp_path / "d", quota_bytes=quota) as s:
        value = b"q" * 2000
        i = 0
        with pytest.raises(NoSpaceError) as exc:
            while i < 1000:
                await s.put(b"q/%d" % (i % 5), value + b"%d" % i)
                i += 1
        assert str(exc.value) == "etcdserver: mvcc: database space exceeded"
        assert 20 < i < 1000
        head = await s.current_revision()
        assert await s.alarms() == ["NOSPACE"] and (await s.status()).alarms == ["NOSPACE"]
        # Every write that adds data is refused, and nothing of it is applied.
        with pytest.raises(NoSpaceError):
            await s.put(b"tiny", b"t")
        with pytest.raises(NoSpaceError):
            await s.txn([], [PutOp(b"tiny", b"t"), DeleteOp(b"q/0")])
        with pytest.raises(NoSpaceError):
            await s.lease_grant(60)
        assert await s.current_revision() == head
        assert await s.get(b"tiny") is None and await s.get(b"q/0") is not None
        # Reads, deletes and compaction still work.
        assert (await s.range(b"q/", prefix_end(b"q/"))).count == 5
        assert (await s.delete(b"q/0")).deleted == 1
        r = await s.txn([], [DeleteOp(b"q/1"), RangeOp(b"q/", prefix_end(b"q/"))])
        assert r.responses[1].count == 3
        head = await s.current_revision()
        await s.compact(head)
        # Compaction frees space, but the alarm stays until disarmed, and disarming alone
        # does not help while the file is still as big (the size is only reclaimed by
        # defragment, as etcd's db size).
        with pytest.raises(NoSpaceError):
            await s.put(b"tiny", b"t")
        await s.disarm()
        with pytest.raises(NoSpaceError):
            await s.put(b"q/0", value)
        assert await s.alarms() == ["NOSPACE"]
        await s.defragment()
        assert (await s.status()).db_size < quota / 4
        with pytest.raises(NoSpaceError):
            await s.put(b"tiny", b"t")
        await s.disarm()
        assert await s.alarms() == []
        r = await s.put(b"tiny", b"t")
        assert r.revision == head + 1
        await s.lease_grant(60)


# --- request limits ----------------------------------------------------------------------


async def test_request_size_and_op_limits_apply_nothing(tmp_path: Path) -> None:
    data = tmp_path / "d"
    async with EmbeddedStore(data, max_request_bytes=4096) as s:
        await s.put(b"a", b"0")
        head = await s.current_revision()
        big = b"x" * 5000
        with pytest.raises(RequestTooLargeError) as exc:
            await s.put(b"big", big)
        assert str(exc.value) == "etcdserver: request is too large"
        with pytest.raises(RequestTooLargeError):
            await s.txn([], [PutOp(b"a", b"1"), PutOp(b"b", b"y" * 2000), PutOp(b"c", b"z" * 2100)])
        with pytest.raises(RequestTooLargeError):
            await s.txn([Compare.value_of(b"a", "=", big)], [PutOp(b"a", b"1")])
        with pytest.raises(TooManyOpsError) as exc:
            await s.txn([], [PutOp(b"o%d" % i, b"") for i in range(129)])
        assert str(exc.value) == "etcdserver: too many operations in txn request"
        with pytest.raises(TooManyOpsError):
            await s.txn([], [PutOp(b"a", b"1"), TxnOp([], [PutOp(b"n%d" % i, b"") for i in range(129)], [])])
        with pytest.raises(DuplicateKeyError):
            await s.txn([], [PutOp(b"a", b"1"), PutOp(b"b", b"1"), PutOp(b"a", b"2")])
        with pytest.raises(LeaseNotFoundError):
            await s.txn([], [PutOp(b"a", b"1"), DeleteOp(b"a2"), PutOp(b"b", b"1", lease=424242)])
        assert await s.current_revision() == head
        assert await all_kvs(s) == [(b"a", b"0", 0, 2, 2, 1)]
        # The limits are limits, not off by one: exactly 128 ops in a branch is fine.
        r = await s.txn([], [PutOp(b"o%03d" % i, b"") for i in range(128)])
        assert r.succeeded and r.revision == head + 1
        assert (await s.range(b"o", b"p")).count == 128
    async with EmbeddedStore(data) as s:  # nothing of the refused requests reached the log
        assert await s.current_revision() == head + 1
        assert await s.get(b"b") is None and await s.get(b"big") is None


# --- slow watchers -----------------------------------------------------------------------


async def test_slow_watcher_is_bounded_and_gets_everything(tmp_path: Path) -> None:
    n_txns, per_txn = 1000, 20  # 20k events
    async with EmbeddedStore(tmp_path / "d", fsync=False) as s:
        slow = await s.watch(b"w/", prefix_end(b"w/"))
        fast = await s.watch(b"w/", prefix_end(b"w/"))
        max_buffer = 0
        fell_back = False
        done = asyncio.Event()

        async def sample() -> None:
            nonlocal max_buffer, fell_back
            while not done.is_set():
                max_buffer = max(max_buffer, len(slow.buffer))
                fell_back = fell_back or not slow.synced
                await asyncio.sleep(0)

        async def consume(w, n: int) -> list:
            out = []
            while len(out) < n:
                resp = await asyncio.wait_for(w.__anext__(), WAIT)
                out.extend((e.kv.mod_revision, e.kv.key, e.kv.value) for e in resp.events)
            return out

        sampler = asyncio.create_task(sample())
        fast_task = asyncio.create_task(consume(fast, n_txns * per_txn))
        written = []
        for chunk in range(0, n_txns, 50):

            async def txn(t: int) -> None:
                ops = [PutOp(b"w/%02d" % k, b"%d.%d" % (t, k)) for k in range(per_txn)]
                rev = (await s.txn([], ops)).revision
                written.extend((rev, op.key, op.value) for op in ops)

            await asyncio.gather(*(txn(t) for t in range(chunk, chunk + 50)))
            assert len(slow.buffer) <= MAX_BUFFERED_EVENTS
        done.set()
        await sampler
        written.sort()
        assert max_buffer <= MAX_BUFFERED_EVENTS
        assert fell_back, "the slow watcher never left the push path: the test did not test it"
        assert await asyncio.wait_for(fast_task, 30) == written  # a live watcher was not held up
        assert await consume(slow, len(written)) == written
        # And it is live again afterwards.
        r = await s.put(b"w/last", b"l")
        assert await consume(slow, 1) == [(r.revision, b"w/last", b"l")]


async def test_far_behind_watcher_does_not_delay_live_watchers(tmp_path: Path) -> None:
    """A watcher replaying a long history pulls it in bounded chunks in its own task:
    a live watcher gets a new write while the replay is still far from done."""
    async with EmbeddedStore(tmp_path / "d", fsync=False) as s:
        first = None
        for t in range(200):  # 200 txns of 100 puts: 20k events of history
            r = await s.txn([], [PutOp(b"h/%03d" % k, b"%d" % t) for k in range(100)])
            first = first or r.revision
        behind = await s.watch(b"h/", prefix_end(b"h/"), start_revision=first)
        live = await s.watch(b"h/", prefix_end(b"h/"))
        replayed = 0

        async def replay() -> None:
            nonlocal replayed
            while replayed < 20_000:
                resp = await behind.__anext__()
                replayed += len(resp.events)

        replayer = asyncio.create_task(replay())
        await asyncio.sleep(0)  # the replay has started
        r = await s.put(b"h/new", b"n")
        resp = await asyncio.wait_for(live.__anext__(), WAIT)
        assert [(e.kv.key, e.kv.mod_revision) for e in resp.events] == [(b"h/new", r.revision)]
        assert replayed < 20_000, "the live event waited for the whole replay"
        await asyncio.wait_for(replayer, 30)
        resp = await asyncio.wait_for(behind.__anext__(), WAIT)  # and then the new one, once
        assert [(e.kv.key, e.kv.mod_revision) for e in resp.events] == [(b"h/new", r.revision)]
        await behind.cancel()
        await live.cancel()


async def test_watcher_behind_a_compaction_gets_compacted_error(tmp_path: Path) -> None:
    """A slow watcher whose undelivered events are compacted away ends with
    CompactedError carrying the new floor, as an etcd watch does."""
    async with EmbeddedStore(tmp_path / "d", fsync=False) as s:
        w = await s.watch(b"c/", prefix_end(b"c/"))
        for i in range(MAX_BUFFERED_EVENTS + 100):  # overflow its buffer: it must catch up later
            await s.put(b"c/%d" % (i % 10), b"%d" % i)
        assert not w.synced
        floor = await s.current_revision()
        await s.compact(floor)
        with pytest.raises(CompactedError) as exc:
            for _ in range(10):
                await asyncio.wait_for(w.__anext__(), WAIT)
        assert exc.value.compact_revision == floor
