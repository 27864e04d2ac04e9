"""Snapshot files: the whole store at one revision, so the log before it can go.

A snapshot is a sequence of WAL-style frames (``wal.frame``: checksummed header + payload):

* ``META``: ``u8 kind | u64 revision | u64 compact revision | u64 history base |
  u64 first WAL segment to replay after it``;
* ``BASE``: one per key version below the history window (at most one per key after
  compaction): ``u8 kind | u64 create | u64 mod | u64 version | i64 lease | u32 klen |
  u32 vlen | key | value`` (version 0: a tombstone still needed for old reads);
* ``REV``: one per revision in the window, its records in txn order:
  ``u8 kind | u64 revision | u32 n`` then n times ``u64 create | u64 version | i64 lease |
  u32 klen | u32 vlen | key | value``;
* ``LEASE``: ``u8 kind | i64 id | i64 ttl``;
* ``END``: ``u8 kind | u64 number of frames before it``.

Files are written as ``snap/<revision>.snap.tmp``, fsynced, renamed, and the directory
fsynced, so a visible ``.snap`` file is always complete; damage inside one is corruption.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ..errors import CorruptionError
from . import wal
from .history import History
from .key_index import Record

META, BASE, REV, LEASE, END = 10, 11, 12, 13, 14
META_REC = struct.Struct("<BQQQQ")
BASE_HEAD = struct.Struct("<BQQQqII")
REV_HEAD = struct.Struct("<BQI")
REV_ITEM = struct.Struct("<QQqII")
LEASE_REC = struct.Struct("<Bqq")
END_REC = struct.Struct("<BQ")


def encode_meta(revision: int, compacted: int, base: int, next_segment: int) -> bytes:
    return META_REC.pack(META, revision, compacted, base, next_segment)


def encode_base(rec: Record) -> bytes:
    return (
        BASE_HEAD.pack(BASE, rec.create_revision, rec.mod_revision, rec.version, rec.lease, len(rec.key), len(rec.value))
        + rec.key
        + rec.value
    )


def encode_rev(rev: int, records: tuple[Record, ...]) -> bytes:
    parts = [REV_HEAD.pack(REV, rev, len(records))]
    for rec in records:
        parts.append(REV_ITEM.pack(rec.create_revision, rec.version, rec.lease, len(rec.key), len(rec.value)))
        parts.append(rec.key)
        parts.append(rec.value)
    return b"".join(parts)


def encode_lease(lease_id: int, ttl: int) -> bytes:
    return LEASE_REC.pack(LEASE, lease_id, ttl)


def encode_end(frames: int) -> bytes:
    return END_REC.pack(END, frames)


def snapshot_name(revision: int) -> str:
    return f"{revision:016d}.snap"


def list_snapshots(snap_dir: Path) -> list[tuple[int, Path]]:
    out = []
    for p in snap_dir.iterdir():
        if p.suffix == ".snap" and p.stem.isdigit():
            out.append((int(p.stem), p))
    return sorted(out)


@dataclass
class LoadedSnapshot:
    revision: int
    compacted: int
    next_segment: int
    latest: dict[bytes, Record]
    history: History
    leases: list[tuple[int, int]] = field(default_factory=list)


def load(path: Path) -> LoadedSnapshot:
    """Read and verify a snapshot file; raise CorruptionError on any damage."""
    return parse(path.read_bytes(), path)


def parse(data: bytes | memoryview, path: Path | str) -> LoadedSnapshot:
    """Verify and decode a snapshot's bytes (``path`` names them in errors)."""
    frames = 0
    snap: LoadedSnapshot | None = None
    latest: dict[bytes, Record] = {}
    ended = False
    try:
        for _, payload in wal.iter_frames(data, str(path), last=False):
            if ended:
                raise CorruptionError(f"kubeplane: {path}: data after the end marker")
            kind = payload[0]
            if kind == META:
                _, rev, compacted, base, next_segment = META_REC.unpack(payload)
                history = History(base)
                snap = LoadedSnapshot(rev, compacted, next_segment, latest, history)
            elif snap is None:
                raise CorruptionError(f"kubeplane: {path}: snapshot does not start with its header")
            elif kind == BASE:
                _, create, mod, version, lease, klen, vlen = BASE_HEAD.unpack_from(payload, 0)
                pos = BASE_HEAD.size
                key = bytes(payload[pos : pos + klen])
                value = bytes(payload[pos + klen : pos + klen + vlen])
                latest[key] = Record(key, create, mod, version, value, lease, latest.get(key))
            elif kind == REV:
                _, rev, n = REV_HEAD.unpack_from(payload, 0)
                pos = REV_HEAD.size
                recs = []
                for _ in range(n):
                    create, version, lease, klen, vlen = REV_ITEM.unpack_from(payload, pos)
                    pos += REV_ITEM.size
                    key = bytes(payload[pos : pos + klen])
                    pos += klen
                    value = bytes(payload[pos : pos + vlen])
                    pos += vlen
                    rec = Record(key, create, rev, version, value, lease, latest.get(key))
                    latest[key] = rec
                    recs.append(rec)
                if rev == snap.history.base and not snap.history.entries[0]:
                    snap.history.entries[0] = tuple(recs)
                else:
                    snap.history.append(rev, tuple(recs))
            elif kind == LEASE:
                _, lease_id, ttl = LEASE_REC.unpack(payload)
                snap.leases.append((lease_id, ttl))
            elif kind == END:
                _, count = END_REC.unpack(payload)
                if count != frames:
                    raise CorruptionError(f"kubeplane: {path}: frame count {frames} != {count}")
                ended = True
            else:
                raise CorruptionError(f"kubeplane: {path}: unknown frame kind {kind}")
            frames += 1
    except wal.TornTail as torn:  # pragma: no cover - last=False never raises it
        raise CorruptionError(f"kubeplane: {path}: truncated at {torn.offset}") from None
    except (struct.error, AssertionError) as exc:
        raise CorruptionError(f"kubeplane: {path}: malformed frame ({exc})") from None
    if snap is None or not ended:
        raise CorruptionError(f"kubeplane: {path}: snapshot is incomplete")
    return snap


def frames_of(
    revision: int,
    compacted: int,
    next_segment: int,
    history: History,
    latest: dict[bytes, Record],
    keys: Iterator[bytes],
    leases: list[tuple[int, int]],
) -> Iterator[bytes]:
    """The payloads of a snapshot at ``revision`` (framing is the caller's)."""
    count = 0
    yield encode_meta(revision, compacted, history.base, next_segment)
    count += 1
    base = history.base
    for key in keys:
        rec = latest.get(key)
        below = []
        while rec is not None:
            if rec.mod_revision < base:
                below.append(rec)
            rec = rec.prev
        for rec in reversed(below):
            yield encode_base(rec)
            count += 1
    for rev in range(base, revision + 1):
        yield encode_rev(rev, history.at(rev))
        count += 1
    for lease_id, ttl in leases:
        yield encode_lease(lease_id, ttl)
        count += 1
    yield encode_end(count)
