"""Backup and restore of the embedded store (kubeplane.store.backup; issue 9 item 7).

In process: the file format, its checks, and what a restored store answers. Child
processes on loopback: `kubeplane backup` against `kubeplane store serve` (etcd's API, and
etcdctl snapshot save), and `kubeplane restore` into a dir the server then starts on. The
API server's side (`kubeplane serve`, HTTPS) is tests/apiserver/test_serve_backup.py."""
from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from etcd_procs import KubeplaneServer
from kubeplane.store.backup import BackupError, read_backup, restore, snapshot_stream
from kubeplane.store.errors import CompactedError
from kubeplane.store.mvcc import EmbeddedStore
from kubeplane.store.types import DeleteOp, PutOp

ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"


async def _save(store: EmbeddedStore, path: Path) -> None:
    with open(path, "wb") as f:
        async for chunk in snapshot_stream(store):
            f.write(chunk)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kubeplane.cli", *args], capture_output=True, text=True,
                          timeout=60, cwd=str(cwd))


async def test_restore_is_the_store_at_the_backup_compacted_above_it(tmp_path: Path):
    async with EmbeddedStore(tmp_path / "live") as s:
        lease = await s.lease_grant(600)
        for i in range(20):
            await s.put(b"/k/%d" % i, b"v%d" % i)
        await s.put(b"/k/1", b"v1-again")
        await s.put(b"/leased", b"x", lease=lease.id)
        await s.delete(b"/k/2")
        await s.compact((await s.current_revision()) - 3)
        await _save(s, tmp_path / "backup.snap")
        at_backup = await s.range(b"/", b"0")
        rev = at_backup.revision
        await s.txn((), [PutOp(b"/k/100", b"after"), DeleteOp(b"/k/3")])  # after the backup
        later = await s.current_revision()

    result = restore(tmp_path / "backup.snap", tmp_path / "restored", bump=1000)
    assert (result.revision, result.new_revision, result.keys) == (rev, rev + 1000, 20)
    async with EmbeddedStore(tmp_path / "restored") as r:
        got = await r.range(b"/", b"0")
        assert got.revision == rev + 1000
        assert [(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease) for kv in got.kvs] == \
            [(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease) for kv in at_backup.kvs]
        assert lease.id in await r.lease_leases()
        # a client that saw `later` before the restore is told to start over, not left waiting
        w = await r.watch(b"/", b"0", start_revision=later)
        with pytest.raises(CompactedError) as err:
            await asyncio.wait_for(w.__anext__(), 5)
        assert err.value.compact_revision == rev + 1000
        with pytest.raises(CompactedError):
            await r.range(b"/k/1", revision=later)
        put = await r.put(b"/k/new", b"n")
        assert put.revision == rev + 1001 > later
    async with EmbeddedStore(tmp_path / "restored") as r:  # and it survives its own restart
        assert (await r.range(b"/k/new")).kvs[0].value == b"n"


async def test_damaged_files_and_used_dirs_are_refused(tmp_path: Path):
    async with EmbeddedStore(tmp_path / "live") as s:
        for i in range(200):
            await s.put(b"/k/%d" % i, b"v" * 100)
        await _save(s, tmp_path / "good.snap")
    good = (tmp_path / "good.snap").read_bytes()
    assert len(good) % 512 == 32 and read_backup(tmp_path / "good.snap").revision == 201
    bad = {
        "truncated": good[:-512],
        "cut": good[: len(good) // 2],
        "flipped": good[:100] + bytes([good[100] ^ 1]) + good[101:],
        "empty": b"",
    }
    for name, data in bad.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(BackupError, match="truncated|checksum"):
            restore(tmp_path / name, tmp_path / f"out-{name}")
        assert not (tmp_path / f"out-{name}").exists()
    used = tmp_path / "used"
    used.mkdir()
    (used / "something").write_text("x")
    with pytest.raises(BackupError, match="not empty"):
        restore(tmp_path / "good.snap", used)
    assert sorted(p.name for p in used.iterdir()) == ["something"]
    with pytest.raises(BackupError, match="at least 1"):
        restore(tmp_path / "good.snap", tmp_path / "zero", bump=0)

    proc = _cli("restore", str(tmp_path / "flipped"), "--data-dir", str(tmp_path / "cli"), cwd=tmp_path)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == (f"kubeplane restore: {tmp_path / 'flipped'}: SHA-256 checksum mismatch: "
                           "the file is corrupt or truncated\n")


@pytest.mark.etcd
def test_store_serve_backup_with_kubeplane_and_etcdctl_then_restore(tmp_path: Path):
    live = KubeplaneServer(tmp_path / "live").start()
    try:
        ep = live.endpoints[0]

        def ctl(*args: str) -> str:
            proc = subprocess.run([ETCDCTL, "--endpoints", ep, *args], capture_output=True, text=True,
                                  timeout=20, env={"ETCDCTL_API": "3"})
            assert proc.returncode == 0, proc.stderr
            return proc.stdout

        for i in range(10):
            ctl("put", f"/b/{i}", f"v{i}")
        ctl("del", "/b/0")
        proc = _cli("backup", "--endpoints", ep, "-o", str(tmp_path / "kp.snap"), cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith(f"kubeplane backup: saved {tmp_path / 'kp.snap'} (")
        ctl("snapshot", "save", str(tmp_path / "etcdctl.snap"))
        ctl("put", "/b/after", "x")
    finally:
        live.stop()
    assert (tmp_path / "kp.snap").read_bytes() == (tmp_path / "etcdctl.snap").read_bytes()

    proc = _cli("restore", str(tmp_path / "etcdctl.snap"), "--store-dir", str(tmp_path / "new" / "data"),
                "--bump-revision", "100", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "9 keys at revision 12 restored" in proc.stdout and "now at revision 112" in proc.stdout
    restored = KubeplaneServer(tmp_path / "new").start()   # serves <dir>/data
    try:
        got = subprocess.run([ETCDCTL, "--endpoints", restored.endpoints[0], "get", "--prefix", "/b/"],
                             capture_output=True, text=True, timeout=20, env={"ETCDCTL_API": "3"})
        assert got.stdout.split("\n")[:-1] == [x for i in range(1, 10) for x in (f"/b/{i}", f"v{i}")]
    finally:
        restored.stop()
