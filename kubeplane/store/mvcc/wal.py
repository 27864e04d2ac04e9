"""The write-ahead log: framed, checksummed batches of records in numbered segment files.

A frame is ``u32 length | u32 crc32(payload) | u32 crc32(the 8 bytes before) | payload``:
the header has its own checksum, so a damaged length can never pass for a torn write.
One frame holds one group-commit batch: its payload is the batch's records back to back
(each record says how long it is), so a batch costs one header and one checksum however
many txns it carries, and a torn batch is dropped whole (none of it was acknowledged).
Record kinds:

* ``TXN``: ``u8 kind | u64 revision | u32 n`` then n mutations
  ``u8 op (0 put, 1 delete) | i64 lease | u32 key length | u32 value length | key | value``.
  A txn's mutations are the keys it changed, already resolved (a range delete is logged
  as one delete per key; a put with ignore_value carries the value it kept), so replay
  needs no lookups and gives the same create/mod revisions and versions.
* ``LEASE_GRANT``: ``u8 kind | i64 id | i64 ttl``; ``LEASE_REVOKE``: ``u8 kind | i64 id``
  (the keys it deleted are the TXN just before it in the same batch).
* ``COMPACT``: ``u8 kind | u64 revision``.

Segments are ``wal/<16-digit sequence>.wal``.  A batch's frame is written with one
``write`` and made durable with one ``fdatasync`` (group commit, see ``store.py``).

Recovery reads every segment in order.  A crash can only tear the final write of the
*last* segment, and a torn write is a prefix of what was written (possibly followed by
zeros the file system allocated).  So at the end of the last segment these are torn and
dropped (the file is truncated there): a header cut short; a valid header whose payload
runs past the end; a payload failing its checksum when nothing but zeros follows it; an
all-zero tail.  Anything else (a bad header checksum with data after it, a bad payload
checksum followed by more data, any bad frame in an earlier segment) is corruption and
stops startup with ``CorruptionError`` naming the file and offset: nothing is silently
skipped.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import Iterator

from ..errors import CorruptionError

HEADER = struct.Struct("<III")
_LEN_CRC = struct.Struct("<II")
TXN_HEAD = struct.Struct("<BQI")
MUTATION = struct.Struct("<BqII")
LEASE_GRANT_REC = struct.Struct("<Bqq")
LEASE_REVOKE_REC = struct.Struct("<Bq")
COMPACT_REC = struct.Struct("<BQ")

TXN, LEASE_GRANT, LEASE_REVOKE, COMPACT = 1, 2, 3, 4
OP_PUT, OP_DELETE = 0, 1

_crc32 = zlib.crc32


PUT_HEAD = struct.Struct("<BQIBqII")  # TXN_HEAD of a one-put txn + its MUTATION


def encode_put(rev: int, key: bytes, value: bytes, lease: int) -> list[bytes]:
    """A single-put txn record, as pieces for the batch (the value is not copied)."""
    return [PUT_HEAD.pack(TXN, rev, 1, OP_PUT, lease, len(key), len(value)), key, value]


def encode_txn(rev: int, mutations: list[tuple[int, bytes, bytes, int]]) -> list[bytes]:
    """A txn record: mutations are (op, key, value, lease)."""
    parts = [TXN_HEAD.pack(TXN, rev, len(mutations))]
    for op, key, value, lease in mutations:
        parts.append(MUTATION.pack(op, lease, len(key), len(value)))
        parts.append(key)
        parts.append(value)
    return parts


def encode_lease_grant(lease_id: int, ttl: int) -> list[bytes]:
    return [LEASE_GRANT_REC.pack(LEASE_GRANT, lease_id, ttl)]


def encode_lease_revoke(lease_id: int) -> list[bytes]:
    return [LEASE_REVOKE_REC.pack(LEASE_REVOKE, lease_id)]


def encode_compact(rev: int) -> list[bytes]:
    return [COMPACT_REC.pack(COMPACT, rev)]


def header(length: int, crc: int) -> bytes:
    first = _LEN_CRC.pack(length, crc)
    return first + _crc32(first).to_bytes(4, "little")


def frame(payload: bytes) -> list[bytes]:
    return [header(len(payload), _crc32(payload)), payload]


def frame_batch(pieces: list[bytes]) -> list[bytes]:
    """One frame holding a batch's records (the pieces of their encodings, in order),
    as [header, payload] buffers for ``writev`` (the payload is not copied again)."""
    payload = b"".join(pieces)
    return [header(len(payload), _crc32(payload)), payload]


@dataclass(slots=True)
class TxnRecord:
    revision: int
    mutations: list[tuple[int, bytes, bytes, int]]


@dataclass(slots=True)
class LeaseGrantRecord:
    lease_id: int
    ttl: int


@dataclass(slots=True)
class LeaseRevokeRecord:
    lease_id: int


@dataclass(slots=True)
class CompactRecord:
    revision: int


WalRecord = TxnRecord | LeaseGrantRecord | LeaseRevokeRecord | CompactRecord


def decode_frame(payload: memoryview) -> list[WalRecord]:
    """The records of one frame, in order; ValueError/struct.error if malformed."""
    out: list[WalRecord] = []
    pos = 0
    size = len(payload)
    while pos < size:
        kind = payload[pos]
        if kind == TXN:
            _, rev, n = TXN_HEAD.unpack_from(payload, pos)
            pos += TXN_HEAD.size
            muts = []
            for _ in range(n):
                op, lease, klen, vlen = MUTATION.unpack_from(payload, pos)
                pos += MUTATION.size
                key = bytes(payload[pos : pos + klen])
                pos += klen
                value = bytes(payload[pos : pos + vlen])
                pos += vlen
                muts.append((op, key, value, lease))
            if pos > size:
                raise ValueError("txn record runs past its frame")
            out.append(TxnRecord(rev, muts))
        elif kind == LEASE_GRANT:
            _, lease_id, ttl = LEASE_GRANT_REC.unpack_from(payload, pos)
            pos += LEASE_GRANT_REC.size
            out.append(LeaseGrantRecord(lease_id, ttl))
        elif kind == LEASE_REVOKE:
            _, lease_id = LEASE_REVOKE_REC.unpack_from(payload, pos)
            pos += LEASE_REVOKE_REC.size
            out.append(LeaseRevokeRecord(lease_id))
        elif kind == COMPACT:
            _, rev = COMPACT_REC.unpack_from(payload, pos)
            pos += COMPACT_REC.size
            out.append(CompactRecord(rev))
        else:
            raise ValueError(f"unknown record kind {kind}")
    return out


def iter_frames(data: bytes | memoryview, path: str, *, last: bool) -> Iterator[tuple[int, memoryview]]:
    """Yield (offset, payload) for each good frame.

    Raises ``TornTail(offset)`` for a bad frame that reaches the end of the last file, and
    ``CorruptionError`` for any other bad frame.
    """
    view = memoryview(data)
    size = len(view)
    pos = 0

    def zeros_from(i: int) -> bool:
        return not any(view[i:])

    while pos < size:
        if size - pos < HEADER.size:
            if last:
                raise TornTail(pos)
            raise CorruptionError(f"kubeplane: {path}: truncated frame header at offset {pos}")
        length, crc, header_crc = HEADER.unpack_from(view, pos)
        if _crc32(view[pos : pos + 8]) != header_crc:
            if last and zeros_from(pos):
                raise TornTail(pos)
            raise CorruptionError(f"kubeplane: {path}: bad frame header checksum at offset {pos}")
        end = pos + HEADER.size + length
        if end > size:
            if last:
                raise TornTail(pos)
            raise CorruptionError(f"kubeplane: {path}: frame at offset {pos} runs past the end of the file")
        payload = view[pos + HEADER.size : end]
        if _crc32(payload) != crc or length == 0:
            if last and zeros_from(end):
                raise TornTail(pos)
            raise CorruptionError(f"kubeplane: {path}: checksum mismatch in frame at offset {pos}")
        yield pos, payload
        pos = end


class TornTail(Exception):
    def __init__(self, offset: int):
        super().__init__(offset)
        self.offset = offset


def segment_name(seq: int) -> str:
    return f"{seq:016d}.wal"


def list_segments(wal_dir: Path) -> list[tuple[int, Path]]:
    out = []
    for p in wal_dir.iterdir():
        if p.suffix == ".wal" and p.stem.isdigit():
            out.append((int(p.stem), p))
    return sorted(out)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SegmentWriter:
    """Appends batches to the current segment.  Used from one I/O thread at a time."""

    def __init__(self, wal_dir: Path, seq: int):
        self.wal_dir = wal_dir
        self.seq = seq
        self.path = wal_dir / segment_name(seq)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.size = os.fstat(self.fd).st_size

    def write_sync(self, buffers: list[bytes]) -> float:
        """Append the buffers with one writev, then fdatasync; returns the seconds the
        fdatasync took."""
        self.append(buffers)
        start = perf_counter()
        os.fdatasync(self.fd)
        return perf_counter() - start

    def append(self, buffers: list[bytes]) -> None:
        total = sum(len(b) for b in buffers)
        n = os.writev(self.fd, buffers)
        if n < total:  # a short write: finish the rest plainly
            view = memoryview(b"".join(buffers))[n:]
            while view:
                view = view[os.write(self.fd, view) :]
        self.size += total

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
