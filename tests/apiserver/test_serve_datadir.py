"""`kubeplane serve` and its data dir: one server per dir, private files, one-line start-up
errors (issue 9, items 1, 5 and 6). Every server here is a child process on loopback."""
from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

from server_procs import ServerProc


def _serve(data_dir: Path, *args: str, command: tuple[str, ...] = ("serve",)) -> subprocess.CompletedProcess:
    """Run a server that is expected to refuse to start (bounded: 60 s)."""
    argv = [sys.executable, "-m", "kubeplane.cli", *command, "--data-dir", str(data_dir), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=str(data_dir.parent))


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr and "store failed" not in stderr, stderr
    return lines[0]


def _snapshot_of(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under root with its mtime and contents (what a second server must not touch)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.name.endswith(".wal"):
            out[str(p.relative_to(root))] = (p.stat().st_mtime_ns, p.read_bytes())
    return out


def _configmap(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": name}}


def test_second_server_on_a_data_dir_is_refused_and_nothing_is_lost(tmp_path: Path):
    data = tmp_path / "data"
    first = ServerProc(data).start()
    try:
        for i in range(50):
            r = first.call("POST", "/api/v1/namespaces/default/configmaps", _configmap(f"cm-{i}"))
            assert r.status == 201, r
        before = _snapshot_of(data)
        assert "kubeconfig" in before and "pki/ca.crt" in before

        # kubeplane serve, the embedded store's own server, with and without flags that
        # would otherwise rewrite the kubeconfig and the serving certificate
        for argv in (("--secure-port", "0", "--http-listen", "127.0.0.1:0"),
                     ("--secure-port", "0", "--bind-address", "127.0.0.2")):
            proc = _serve(data, *argv)
            assert proc.returncode != 0
            line = _one_line(proc.stderr)
            assert line == (f"kubeplane serve: data dir {data.absolute()} is in use by kubeplane process "
                            f"{first.proc.pid}; stop it first, or choose another --data-dir"), line
            assert proc.stdout == ""
        proc = _serve(data / "store", "--listen", "127.0.0.1:0", command=("store", "serve"))
        assert proc.returncode != 0
        assert f"data dir {(data / 'store').absolute()} is in use by kubeplane process {first.proc.pid}" in \
            _one_line(proc.stderr)
        assert _snapshot_of(data) == before       # no kubeconfig rewrite, no new PKI, no store file touched

        # the first one keeps serving and writing
        for i in range(50, 60):
            r = first.call("POST", "/api/v1/namespaces/default/configmaps", _configmap(f"cm-{i}"))
            assert r.status == 201, r
    finally:
        first.stop()
    again = ServerProc(data).start()        # the lock went with the process
    try:
        r = again.call("GET", "/api/v1/namespaces/default/configmaps")
        names = {item["metadata"]["name"] for item in r.json["items"]}
        assert {f"cm-{i}" for i in range(60)} <= names
    finally:
        again.stop()


def test_data_dir_is_private_and_an_old_one_is_tightened(tmp_path: Path):
    data = tmp_path / "data"
    s = ServerProc(data).start()
    s.stop()
    entries = [data, *data.rglob("*")]
    assert {str(p.relative_to(data)) for p in entries} >= {
        ".", "kubeconfig", "kubeplane.lock", "pki/ca.crt", "pki/ca.key", "pki/token", "store/member.json",
        "store/kubeplane.lock", "store/wal/0000000000000001.wal"}
    for p in entries:
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode == (0o700 if p.is_dir() else 0o600), (p, oct(mode))

    # a data dir as an older kubeplane left it: 0755 directories, 0644 files
    for p in entries:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    s = ServerProc(data).start()
    try:
        assert "tightened permissions under" in s.log_tail()
        for p in [data, *data.rglob("*")]:
            assert stat.S_IMODE(p.stat().st_mode) & 0o077 == 0, p
    finally:
        s.stop()


def test_busy_ports_are_one_clear_line(tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        http = _serve(tmp_path / "a", "--secure-port", "0", "--http-listen", f"127.0.0.1:{port}")
        https = _serve(tmp_path / "b", "--secure-port", str(port))
        store = _serve(tmp_path / "c", "--listen", f"127.0.0.1:{port}", command=("store", "serve"))
    assert http.returncode == 1 and https.returncode == 1 and store.returncode == 1
    assert _one_line(http.stderr) == (
        f"kubeplane serve: cannot listen on 127.0.0.1:{port} (--http-listen): address already in use; "
        "stop the process using it or choose another port with --http-listen")
    assert _one_line(https.stderr) == (
        f"kubeplane serve: cannot listen on 127.0.0.1:{port} (--bind-address/--secure-port): address already "
        "in use; stop the process using it or choose another port with --bind-address/--secure-port")
    assert _one_line(store.stderr) == (
        f"kubeplane store serve: cannot listen on 127.0.0.1:{port} (--listen): address already in use; "
        "stop the process using it or choose another port with --listen")
    # a failed start released its data dir: the next start on it works
    ServerProc(tmp_path / "a").start().stop()


def test_other_startup_failures_are_one_line(tmp_path: Path):
    cases = {
        ("--http-listen", "0.0.0.0:0"): "limited to loopback",
        ("--etcd-servers", "http://127.0.0.1:9"): "cannot reach etcd at http://127.0.0.1:9 (--etcd-servers)",
        ("--watch-cache-sizes", "nonsense"): "--watch-cache-sizes",
    }
    for i, (args, text) in enumerate(cases.items()):
        proc = _serve(tmp_path / f"d{i}", "--secure-port", "0", *args)
        assert proc.returncode == 1
        assert text in _one_line(proc.stderr)
    # bad flag values: one line, exit 2 (argparse's status for usage errors), nothing started
    flags = {
        ("--secure-port", "99999"): "kubeplane serve: argument --secure-port: invalid port (0-65535) value: '99999' "
                                    "(see kubeplane serve --help)",
        ("--quota-backend-bytes", "-5"): "invalid positive integer value: '-5'",
        ("--watch-progress-notify-interval", "0"): "invalid positive number value: '0'",
    }
    for args, text in flags.items():
        proc = _serve(tmp_path / "flags", *args)
        assert proc.returncode == 2 and text in _one_line(proc.stderr)
    proc = _serve(tmp_path / "flags", "--auto-compaction-retention", "zz")
    assert proc.returncode == 1 and _one_line(proc.stderr) == (
        "kubeplane serve: --auto-compaction-retention 'zz': expected a duration like 5m or 1h")
    assert not (tmp_path / "flags").exists()
    unusable = tmp_path / "file"
    unusable.write_text("not a directory")
    proc = _serve(unusable, "--secure-port", "0")
    assert proc.returncode == 1
    assert f"cannot use data dir {unusable}" in _one_line(proc.stderr)
