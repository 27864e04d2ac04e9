"""Backups of the embedded store, and data directories rebuilt from them.

The backup file is what ``etcdctl snapshot save`` gets from ``kubeplane store serve``
(Maintenance.Snapshot, ``store/grpc/maintenance.py``) and what ``kubeplane backup`` gets from
either server:

    the store's snapshot stream (snapshot.py's frames, ending in its END frame, at one
    revision: ``EmbeddedStore.snapshot`` reads the committed revision while writes go on)
    | zero bytes up to a multiple of 512 | SHA-256 of everything before (32 bytes)

so a file is ``512 * k + 32`` bytes, as etcd's clients expect of a bbolt snapshot. A
truncated or altered file fails the size or checksum test; ``read_backup`` refuses it
before anything is written.

Restore (``restore``) writes one snapshot file into a new, empty store directory, the way
etcd 3.5's ``etcdutl snapshot restore --bump-revision N --mark-compacted`` does it: the store
starts at revision R + N (R: the backup's revision) and is compacted there, so every key
keeps its versions and mod revisions, and a client that saw a newer revision from the
server before the restore (an informer's resourceVersion) gets "compacted" (the API's 410
Gone) and relists, instead of waiting for revisions that were lost; new writes get
revisions above anything it can have seen. The history before R is dropped (compaction),
deleted keys go with it; leases are kept with their TTLs (they restart on open).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

from ..datadir import DirLock, make_private_dir
from .errors import CorruptionError
from .interface import Store
from .mvcc import snapshot as snap_mod
from .mvcc import wal
from .mvcc.history import History
from .mvcc.key_index import Record

ALIGN = 512                  # the stream is padded to a multiple of this (bbolt's page size)
DIGEST = 32                  # SHA-256 trailer
DEFAULT_BUMP = 1_000_000_000  # etcdutl's documentation suggests 1,000,000,000 for Kubernetes
SNAPSHOT_PATH = "/kubeplane/snapshot"  # kubeplane serve's online backup (admins only)


class BackupError(Exception):
    """A backup that cannot be taken or restored; one line saying what and where."""


@dataclass
class Restored:
    revision: int        # the backup's revision
    new_revision: int    # the restored store's (compacted) revision
    keys: int


async def snapshot_stream(store: Store) -> AsyncIterator[bytes]:
    """The backup file's bytes for ``store`` (an embedded store's snapshot, padded, with
    its SHA-256 appended)."""
    digest = hashlib.sha256()
    size = 0
    async for chunk in store.snapshot():
        digest.update(chunk)
        size += len(chunk)
        yield chunk
    padding = b"\0" * (-size % ALIGN)
    digest.update(padding)
    yield padding
    yield digest.digest()


def read_backup(path: str | os.PathLike) -> snap_mod.LoadedSnapshot:
    """Verify a backup file (size, checksum, every frame) and decode it."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BackupError(f"cannot read {path}: {exc.strerror or exc}") from None
    n = len(data)
    if n < ALIGN + DIGEST or (n - DIGEST) % ALIGN:
        raise BackupError(f"{path}: not a complete kubeplane snapshot ({n} bytes; a snapshot has 512*k + 32): "
                          "truncated, or not a snapshot")
    body = memoryview(data)[: n - DIGEST]
    if hashlib.sha256(body).digest() != data[n - DIGEST:]:
        raise BackupError(f"{path}: SHA-256 checksum mismatch: the file is corrupt or truncated")
    end = len(body)
    try:
        for _ in wal.iter_frames(body, str(path), last=True):
            pass
    except wal.TornTail as torn:  # the zero padding after the END frame
        end = torn.offset
    except CorruptionError as exc:
        raise BackupError(_not_ours(path, exc)) from None
    if any(body[end:]):
        raise BackupError(f"{path}: data after the end of the snapshot at offset {end}")
    try:
        return snap_mod.parse(body[:end], str(path))
    except CorruptionError as exc:
        raise BackupError(_not_ours(path, exc)) from None


def _not_ours(path: str | os.PathLike, exc: Exception) -> str:
    return (f"{str(exc).removeprefix('kubeplane: ')} (its checksum is right: not a kubeplane snapshot? "
            "an etcd server's snapshot is restored with etcdutl)")


def restore(path: str | os.PathLike, store_dir: str | os.PathLike, bump: int = DEFAULT_BUMP) -> Restored:
    """Build a new store directory from a backup file (see the module docstring).

    Refuses a damaged file and a ``store_dir`` that exists and is not empty; the directory
    is locked while it is written, and the snapshot file only appears complete
    (written as ``.tmp``, fsynced, renamed)."""
    if bump < 1:
        raise BackupError("--bump-revision must be at least 1 (the restored store is compacted at "
                          "its revision + this)")
    target = Path(store_dir)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise BackupError(f"{target} is not empty: restore into a new directory")
    snap = read_backup(path)
    rev = snap.revision + bump
    latest: dict[bytes, Record] = {}
    for key, rec in snap.latest.items():
        if rec.version:  # a deleted key's tombstone goes with the compaction
            latest[key] = Record(key, rec.create_revision, rec.mod_revision, rec.version, rec.value, rec.lease, None)
    make_private_dir(target)
    with DirLock(target):
        snap_dir = target / "snap"
        make_private_dir(snap_dir)
        tmp = snap_dir / (snap_mod.snapshot_name(rev) + ".tmp")
        payloads = snap_mod.frames_of(rev, rev, 1, History(rev), latest, iter(sorted(latest)), snap.leases)
        with open(tmp, "wb", opener=lambda p, flags: os.open(p, flags, 0o600)) as f:
            for payload in payloads:
                f.writelines(wal.frame(payload))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, snap_dir / snap_mod.snapshot_name(rev))
        wal.fsync_dir(snap_dir)
        wal.fsync_dir(target)
    return Restored(snap.revision, rev, len(latest))


# --- taking a backup (the client side of `kubeplane backup`) -------------------------------

def _part(out: Path) -> Path:
    return out.with_name(out.name + ".part")


def _open_part(out: Path):
    return open(_part(out), "wb", opener=lambda p, flags: os.open(p, flags, 0o600))


def _finish(out: Path) -> snap_mod.LoadedSnapshot:
    """Verify the downloaded ``.part`` file, then give it its name (only a good backup
    ever has it)."""
    part = _part(out)
    try:
        snap = read_backup(part)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, out)
    return snap


async def backup_from_etcd_api(endpoints: list[str], out: str | os.PathLike) -> snap_mod.LoadedSnapshot:
    """A backup of ``kubeplane store serve`` through etcd's Maintenance.Snapshot."""
    from .etcd import EtcdStore
    from .errors import StoreError

    out = Path(out)
    store = EtcdStore(endpoints, reshuffle_interval=0)
    try:
        await store.start()
        with _open_part(out) as f:
            async for blob in store.snapshot():
                f.write(blob)
            f.flush()
            os.fsync(f.fileno())
    except StoreError as exc:
        _part(out).unlink(missing_ok=True)
        raise BackupError(f"cannot take a snapshot from {','.join(endpoints)} (--endpoints): "
                          f"{str(exc).removeprefix('etcdserver: ')}") from None
    finally:
        await store.close()
    return _finish(out)


def backup_from_apiserver(server: str, out: str | os.PathLike, *, token: str | None = None,
                          ca_pem: bytes | None = None, insecure: bool = False,
                          timeout: float = 300.0) -> snap_mod.LoadedSnapshot:
    """A backup of ``kubeplane serve`` through its admin-only ``GET /kubeplane/snapshot``
    (streamed to disk, then verified)."""
    import http.client
    import ssl
    from urllib.parse import urlsplit

    import orjson

    out = Path(out)
    u = urlsplit(server)
    if u.scheme == "https":
        ctx = ssl.create_default_context(cadata=ca_pem.decode() if ca_pem else None)
        if insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(u.hostname, u.port or 443, context=ctx,
                                                                       timeout=timeout)
    elif u.scheme == "http":
        conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=timeout)
    else:
        raise BackupError(f"--server {server}: expected an https:// or http:// URL")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        conn.request("GET", u.path.rstrip("/") + SNAPSHOT_PATH, headers=headers)
        resp = conn.getresponse()
        if resp.status != 200:
            body = resp.read(1 << 16)
            try:
                message = orjson.loads(body)["message"]
            except Exception:  # noqa: BLE001 - not a Status: show the start of the text
                message = body[:200].decode("utf-8", "replace").strip()
            raise BackupError(f"{server}: {resp.status} {resp.reason}: {message}")
        with _open_part(out) as f:
            while chunk := resp.read(1 << 20):
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
    except (OSError, http.client.HTTPException) as exc:
        _part(out).unlink(missing_ok=True)
        raise BackupError(f"cannot take a snapshot from {server}: {exc}") from None
    finally:
        conn.close()
    return _finish(out)
