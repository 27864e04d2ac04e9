"""The data directory: WAL segments, snapshots, and recovery from them.

Layout::

    <data_dir>/kubeplane.lock     held (flock) while the store is open: one opener at a time
    <data_dir>/member.json        cluster and member ids (stable across restarts)
    <data_dir>/wal/<seq>.wal      write-ahead log segments (wal.py)
    <data_dir>/snap/<rev>.snap    snapshots (snapshot.py); the newest complete one wins

Invariant: the newest snapshot at revision S names the first segment ``next_segment``
whose records come after S; segments below it and older snapshots are garbage and are
deleted once the snapshot is durable.  Recovery = newest snapshot + every segment from
``next_segment`` on, in order.

The directory is private: ``open`` takes the lock first (a second opener fails with
``DataDirInUseError`` before touching anything), creates directories 0700 and files 0600,
and tightens what an older version left more open (``kubeplane.datadir``).

All methods here are blocking file I/O; the store calls the hot ones (``write_sync``)
from a single I/O thread so the event loop never waits on the disk.
"""

from __future__ import annotations

import json
import os
import random
import struct
from dataclasses import dataclass, field
from pathlib import Path

from ...datadir import LOCK_NAME, PRIVATE_FILE, DirLock, make_private_dir, tighten
from ..errors import CorruptionError
from ..metrics import WAL_FSYNC_BUCKETS, Recorder
from . import snapshot as snap_mod
from . import wal


@dataclass
class Recovered:
    snapshot: snap_mod.LoadedSnapshot | None
    records: list[wal.WalRecord] = field(default_factory=list)
    last_segment: int = 0
    truncated_bytes: int = 0
    log_bytes: int = 0  # bytes of log replayed (written since the snapshot)


class Backend:
    def __init__(self, data_dir: str | os.PathLike, *, fsync: bool = True) -> None:
        self.dir = Path(data_dir)
        self.wal_dir = self.dir / "wal"
        self.snap_dir = self.dir / "snap"
        self.fsync = fsync
        self.writer: wal.SegmentWriter | None = None
        self.cluster_id = 0
        self.member_id = 0
        # etcd_disk_wal_fsync_duration_seconds; observed from the I/O thread only.
        self.fsync_durations = Recorder(WAL_FSYNC_BUCKETS)
        self.lock = DirLock(self.dir)

    # --- start-up -----------------------------------------------------------------

    def open(self) -> Recovered:
        self.lock.acquire()
        try:
            tighten(self.dir, ("wal", "snap", "member.json", LOCK_NAME))
            for d in (self.wal_dir, self.snap_dir):
                make_private_dir(d)
            self._load_member()
            return self._open_log()
        except BaseException:
            self.lock.release()
            raise

    def _open_log(self) -> Recovered:
        for p in self.snap_dir.glob("*.tmp"):
            p.unlink()
        recovered = self._recover()
        self.writer = wal.SegmentWriter(self.wal_dir, recovered.last_segment)
        return recovered

    def _load_member(self) -> None:
        path = self.dir / "member.json"
        if path.exists():
            meta = json.loads(path.read_text())
        else:
            meta = {"cluster_id": random.getrandbits(63), "member_id": random.getrandbits(63)}
            tmp = path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(meta))
            os.replace(tmp, path)
        self.cluster_id = meta["cluster_id"]
        self.member_id = meta["member_id"]

    def _recover(self) -> Recovered:
        snaps = snap_mod.list_snapshots(self.snap_dir)
        loaded = snap_mod.load(snaps[-1][1]) if snaps else None
        first = loaded.next_segment if loaded else 1
        segments = [(seq, p) for seq, p in wal.list_segments(self.wal_dir) if seq >= first]
        out = Recovered(loaded, last_segment=first)
        expected = first
        for i, (seq, path) in enumerate(segments):
            if seq != expected:
                raise CorruptionError(f"kubeplane: {self.wal_dir}: segment {expected} is missing (found {seq})")
            expected += 1
            last = i == len(segments) - 1
            data = path.read_bytes()
            out.log_bytes += len(data)
            try:
                for offset, payload in wal.iter_frames(data, str(path), last=last):
                    try:
                        out.records.extend(wal.decode_frame(payload))
                    except (ValueError, IndexError, struct.error) as exc:
                        raise CorruptionError(f"kubeplane: {path}: bad record at offset {offset}: {exc}") from None
            except wal.TornTail as torn:
                out.truncated_bytes = len(data) - torn.offset
                out.log_bytes -= out.truncated_bytes
                with open(path, "r+b") as f:
                    f.truncate(torn.offset)
                    os.fsync(f.fileno())
            out.last_segment = seq
        return out

    # --- the log ------------------------------------------------------------------

    def write_sync(self, buffers: list[bytes]) -> None:
        """Append one batch's frame (durably unless fsync is off)."""
        if self.fsync:
            self.fsync_durations.observe(self.writer.write_sync(buffers))
        else:
            self.writer.append(buffers)

    @property
    def segment_size(self) -> int:
        return self.writer.size

    def rotate(self) -> int:
        """Start a new segment; returns its sequence number."""
        old = self.writer
        self.writer = wal.SegmentWriter(self.wal_dir, old.seq + 1)
        wal.fsync_dir(self.wal_dir)
        old.close()
        return self.writer.seq

    # --- snapshots ----------------------------------------------------------------

    def open_snapshot(self, revision: int):
        path = self.snap_dir / (snap_mod.snapshot_name(revision) + ".tmp")
        return open(path, "wb", opener=lambda p, flags: os.open(p, flags, PRIVATE_FILE))

    def sync_snapshot(self, f) -> None:
        """Make a written snapshot file durable (before `finish_snapshot` renames it)."""
        f.flush()
        os.fsync(f.fileno())
        f.close()

    def finish_snapshot(self, f, revision: int, next_segment: int) -> None:
        """fsync (unless `sync_snapshot` did) + rename the snapshot, then drop what it
        makes obsolete."""
        if not f.closed:
            self.sync_snapshot(f)
        tmp = Path(f.name)
        final = self.snap_dir / snap_mod.snapshot_name(revision)
        os.replace(tmp, final)
        wal.fsync_dir(self.snap_dir)
        for rev, p in snap_mod.list_snapshots(self.snap_dir):
            if rev < revision:
                p.unlink()
        for seq, p in wal.list_segments(self.wal_dir):
            if seq < next_segment:
                p.unlink()

    def abort_snapshot(self, f) -> None:
        f.close()
        Path(f.name).unlink(missing_ok=True)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        self.lock.release()

