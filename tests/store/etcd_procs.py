"""Start and stop real store servers for tests: etcd members and ``kubeplane store serve``.

Every server listens on free loopback ports, keeps its data under a directory the
caller owns (a pytest tmp dir), logs to a file beside it, and is killed by ``stop()``
(fixtures call it in teardown; an ``atexit`` hook is the last resort if pytest dies).
Readiness is checked over gRPC with ``Maintenance.Status``: a member is ready once it
answers and knows a leader.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import weakref
from pathlib import Path

import grpc
from etcd3aio._protobuf import rpc_pb2, rpc_pb2_grpc

ETCD_BIN = shutil.which("etcd") or "/usr/bin/etcd"
START_TIMEOUT = 30.0

_live: "weakref.WeakSet[_Server]" = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    for server in list(_live):
        server.stop()


def free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports that were free a moment ago (bound together)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def status(endpoint: str, timeout: float = 1.0) -> rpc_pb2.StatusResponse:
    """One synchronous Maintenance.Status call (raises grpc.RpcError)."""
    with grpc.insecure_channel(endpoint) as channel:
        stub = rpc_pb2_grpc.MaintenanceStub(channel)
        return stub.Status(rpc_pb2.StatusRequest(), timeout=timeout)


class _Server:
    """One child process with a log file; ``endpoint`` is its gRPC ``host:port``."""

    def __init__(self, name: str, endpoint: str, argv: list[str], log_path: Path):
        self.name = name
        self.endpoint = endpoint
        self.argv = argv
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def spawn(self) -> None:
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            log.close()
        _live.add(self)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def ready(self) -> bool:
        """Answers Status and knows a leader."""
        try:
            return status(self.endpoint, timeout=0.5).leader != 0
        except grpc.RpcError:
            return False

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.running:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a kill -9 does not hang
            pass
        _live.discard(self)


def _wait_ready(servers: list[_Server], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = list(servers)
    while pending:
        for server in list(pending):
            if not server.running:
                raise ServerStartError(f"{server.name} exited early:\n{server.log_tail()}")
            if server.ready():
                pending.remove(server)
        if pending and time.monotonic() > deadline:
            names = ", ".join(s.name for s in pending)
            tails = "\n".join(f"--- {s.name}\n{s.log_tail()}" for s in pending)
            raise ServerStartError(f"not ready after {timeout}s: {names}\n{tails}")
        if pending:
            time.sleep(0.05)


class ServerStartError(RuntimeError):
    pass


class EtcdCluster:
    """``size`` etcd members on loopback, data under ``base_dir``.

    ``quota_bytes`` maps to ``--quota-backend-bytes``, ``progress_notify_interval``
    (seconds) to ``--experimental-watch-progress-notify-interval``.
    """

    def __init__(
        self,
        base_dir: Path,
        size: int = 1,
        *,
        quota_bytes: int | None = None,
        progress_notify_interval: float | None = None,
        extra_args: tuple[str, ...] = (),
    ):
        self.base_dir = Path(base_dir)
        self.size = size
        self.quota_bytes = quota_bytes
        self.progress_notify_interval = progress_notify_interval
        self.extra_args = extra_args
        self.members: list[_Server] = []

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    def _build(self, attempt: int) -> None:
        ports = free_ports(2 * self.size)
        names = [f"m{i}" for i in range(self.size)]
        peer = {n: f"http://127.0.0.1:{ports[2 * i + 1]}" for i, n in enumerate(names)}
        initial = ",".join(f"{n}={u}" for n, u in peer.items())
        token = f"kp-{os.getpid()}-{id(self)}-{attempt}"
        self.members = []
        for i, name in enumerate(names):
            client = f"http://127.0.0.1:{ports[2 * i]}"
            data_dir = self.base_dir / f"{name}.etcd"
            shutil.rmtree(data_dir, ignore_errors=True)
            argv = [
                ETCD_BIN,
                "--name", name,
                "--data-dir", str(data_dir),
                "--listen-client-urls", client,
                "--advertise-client-urls", client,
                "--listen-peer-urls", peer[name],
                "--initial-advertise-peer-urls", peer[name],
                "--initial-cluster", initial,
                "--initial-cluster-token", token,
                "--initial-cluster-state", "new",
                "--logger", "zap",
                "--log-outputs", "stderr",
                "--log-level", "warn",
            ]
            if self.quota_bytes is not None:
                argv += ["--quota-backend-bytes", str(self.quota_bytes)]
            if self.progress_notify_interval is not None:
                argv += [
                    "--experimental-watch-progress-notify-interval",
                    f"{int(self.progress_notify_interval * 1000)}ms",
                ]
            argv += list(self.extra_args)
            log = self.base_dir / f"{name}.log"
            self.members.append(_Server(name, f"127.0.0.1:{ports[2 * i]}", argv, log))

    def start(self, timeout: float = START_TIMEOUT) -> "EtcdCluster":
        self.base_dir.mkdir(parents=True, exist_ok=True)
        last: Exception | None = None
        for attempt in range(3):  # a port taken between free_ports() and bind: retry
            self._build(attempt)
            for m in self.members:
                m.spawn()
            try:
                _wait_ready(self.members, timeout)
                return self
            except ServerStartError as e:
                last = e
                self.stop()
        raise last  # type: ignore[misc]

    def kill(self, index: int, sig: int = signal.SIGKILL) -> None:
        self.members[index].kill(sig)

    def stop(self) -> None:
        for m in self.members:
            m.stop()

    def __enter__(self) -> "EtcdCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class KubeplaneServer:
    """``python -m kubeplane.cli store serve`` on a free loopback port."""

    def __init__(
        self,
        data_dir: Path,
        *,
        quota_bytes: int | None = None,
        progress_notify_interval: float | None = None,
    ):
        self.data_dir = Path(data_dir)
        self.quota_bytes = quota_bytes
        self.progress_notify_interval = progress_notify_interval
        self.server: _Server | None = None

    @property
    def endpoints(self) -> list[str]:
        return [self.server.endpoint] if self.server else []

    def start(self, timeout: float = START_TIMEOUT) -> "KubeplaneServer":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        last: Exception | None = None
        for _ in range(3):
            (port,) = free_ports(1)
            argv = [
                sys.executable, "-m", "kubeplane.cli", "store", "serve",
                "--listen", f"127.0.0.1:{port}",
                "--data-dir", str(self.data_dir / "data"),
            ]
            if self.quota_bytes is not None:
                argv += ["--quota-backend-bytes", str(self.quota_bytes)]
            if self.progress_notify_interval is not None:
                argv += ["--watch-progress-notify-interval", str(self.progress_notify_interval)]
            self.server = _Server("kubeplane", f"127.0.0.1:{port}", argv, self.data_dir / "serve.log")
            self.server.spawn()
            try:
                _wait_ready([self.server], timeout)
                return self
            except ServerStartError as e:
                last = e
                self.stop()
        raise last  # type: ignore[misc]

    def stop(self) -> None:
        if self.server:
            self.server.stop()

    def __enter__(self) -> "KubeplaneServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
