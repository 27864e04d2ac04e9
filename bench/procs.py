"""Server subprocesses for the benchmarks: real etcd and ``kubeplane store serve``.

Each server listens on a free loopback port, keeps its data in a directory the caller
owns, logs to a file beside it, and is killed by ``stop()``.  Every started server is
also registered here so that ``stop_all()`` (called in the benchmark's ``finally``) and
an ``atexit`` hook kill whatever is still running: a benchmark never leaves a process
behind, even when it fails half way.

Readiness is a synchronous ``Maintenance.Status`` over gRPC that reports a leader.
"""

from __future__ import annotations

import atexit
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import psutil
from etcd3aio._protobuf import rpc_pb2, rpc_pb2_grpc

ETCD_BIN = shutil.which("etcd") or "/usr/bin/etcd"
REPO = Path(__file__).resolve().parent.parent  # where ``python -m bench...`` finds the package
START_TIMEOUT = 30.0

_running: list["Server"] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerError(RuntimeError):
    pass


class Server:
    """One server child process; ``endpoint`` is its gRPC ``host:port``."""

    def __init__(self, name: str, argv: list[str], endpoint: str, log_path: Path, cwd: Path | None = None) -> None:
        self.name = name
        self.argv = argv
        self.endpoint = endpoint
        self.log_path = log_path
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None
        self.ps: psutil.Process | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = START_TIMEOUT) -> "Server":
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.cwd,
                start_new_session=True,  # a Ctrl-C is ours to handle: we kill it in stop()
            )
        _running.append(self)
        self.ps = psutil.Process(self.proc.pid)
        deadline = time.monotonic() + timeout
        while not self._ready():
            if self.proc.poll() is not None:
                raise ServerError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise ServerError(f"{self.name} not ready after {timeout}s:\n{self.log_tail()}")
            time.sleep(0.05)
        return self

    def _ready(self) -> bool:
        try:
            with grpc.insecure_channel(self.endpoint) as channel:
                resp = rpc_pb2_grpc.MaintenanceStub(channel).Status(rpc_pb2.StatusRequest(), timeout=0.5)
            return resp.leader != 0
        except grpc.RpcError:
            return False

    def rss(self) -> int:
        """Resident set size in bytes."""
        assert self.ps is not None
        return self.ps.memory_info().rss

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far (all threads)."""
        assert self.ps is not None
        t = self.ps.cpu_times()
        return t.user + t.system

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not hang
            pass
        if self in _running:
            _running.remove(self)

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def etcd_server(base_dir: Path, name: str = "etcd") -> Server:
    """A single-member etcd 3.4 with its defaults (fsync on every commit)."""
    base_dir.mkdir(parents=True, exist_ok=True)
    client, peer = free_port(), free_port()
    argv = [
        ETCD_BIN,
        "--name", name,
        "--data-dir", str(base_dir / "data"),
        "--listen-client-urls", f"http://127.0.0.1:{client}",
        "--advertise-client-urls", f"http://127.0.0.1:{client}",
        "--listen-peer-urls", f"http://127.0.0.1:{peer}",
        "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
        "--initial-cluster", f"{name}=http://127.0.0.1:{peer}",
        "--initial-cluster-state", "new",
        "--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn",
    ]
    return Server(name, argv, f"127.0.0.1:{client}", base_dir / "etcd.log")


def kubeplane_server(base_dir: Path) -> Server:
    """``python -m kubeplane.cli store serve`` with its defaults."""
    base_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [
        sys.executable, "-m", "kubeplane.cli", "store", "serve",
        "--listen", f"127.0.0.1:{port}", "--data-dir", str(base_dir / "data"),
    ]
    return Server("kubeplane", argv, f"127.0.0.1:{port}", base_dir / "serve.log")


def echo_server(base_dir: Path) -> Server:
    """``python -m bench.grpc_echo``: a grpc.aio server that answers Put doing nothing."""
    base_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [sys.executable, "-m", "bench.grpc_echo", str(port)]
    return Server("grpc-echo", argv, f"127.0.0.1:{port}", base_dir / "echo.log", cwd=REPO)


def etcd_version() -> str:
    try:
        out = subprocess.run([ETCD_BIN, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    for line in out.splitlines():
        if line.lower().startswith("etcd version:"):
            return line.split(":", 1)[1].strip()
    return "?"


@atexit.register
def stop_all() -> None:
    """Kill every server this process started and has not stopped yet."""
    for server in list(_running):
        server.stop()
