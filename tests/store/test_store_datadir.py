"""The embedded store's directory: one opener at a time, private modes (kubeplane.datadir)."""
from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from kubeplane.datadir import DataDirInUseError
from kubeplane.store.mvcc import EmbeddedStore


async def test_a_second_opener_is_refused_before_touching_anything(tmp_path: Path):
    data = tmp_path / "store"
    async with EmbeddedStore(data) as s:
        await s.put(b"/k", b"v1")
        files = {p: p.read_bytes() for p in data.rglob("*") if p.is_file()}
        other = EmbeddedStore(data)
        with pytest.raises(DataDirInUseError) as err:
            await other.start()
        assert str(err.value) == (f"data dir {data.absolute()} is in use by kubeplane process {os.getpid()}; "
                                  "stop it first, or choose another --data-dir")
        assert {p: p.read_bytes() for p in data.rglob("*") if p.is_file()} == files
        await s.put(b"/k", b"v2")      # the owner is unaffected
    async with EmbeddedStore(data) as s:  # and closing released the lock
        assert (await s.range(b"/k")).kvs[0].value == b"v2"


async def test_files_are_private_whatever_the_umask(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    data = tmp_path / "store"
    old = os.umask(0o022)
    try:
        async with EmbeddedStore(data) as s:
            await s.put(b"/secret", b"x")
            await s.defragment()          # writes a snapshot file
            await s.put(b"/secret", b"y")
    finally:
        os.umask(old)
    entries = [data, *data.rglob("*")]
    assert any(p.suffix == ".snap" for p in entries) and any(p.suffix == ".wal" for p in entries)
    for p in entries:
        assert stat.S_IMODE(p.stat().st_mode) == (0o700 if p.is_dir() else 0o600), p
    for p in entries:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    with caplog.at_level(logging.WARNING, logger="kubeplane.datadir"):
        async with EmbeddedStore(data) as s:
            assert (await s.range(b"/secret")).kvs[0].value == b"y"
    assert any("tightened permissions under" in r.getMessage() for r in caplog.records)
    for p in [data, *data.rglob("*")]:
        assert stat.S_IMODE(p.stat().st_mode) & 0o077 == 0, p


async def test_damaged_data_is_one_line_pointing_at_restore(tmp_path: Path):
    import subprocess
    import sys

    data = tmp_path / "store"
    async with EmbeddedStore(data) as s:
        for i in range(10):
            await s.put(b"/k/%d" % i, b"v" * 100)
    wal = data / "wal" / "0000000000000001.wal"
    raw = bytearray(wal.read_bytes())
    raw[20] ^= 0xFF                     # inside the first frame, with more frames after it
    wal.write_bytes(bytes(raw))
    proc = subprocess.run([sys.executable, "-m", "kubeplane.cli", "store", "serve", "--data-dir", str(data),
                           "--listen", "127.0.0.1:0"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith(f"kubeplane store serve: {wal}: checksum mismatch in frame at offset 0; "
                               "the data dir is damaged: restore a backup"), lines[0]
