"""Three `kubeplane serve` processes on one `kubeplane store serve` (loopback, plain HTTP
listeners on fixed ports so that a stopped server can come back on the same URL)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from server_procs import ServerProc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StoreProc:
    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> "StoreProc":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir.parent / "store.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "kubeplane.cli", "store", "serve", "--listen",
                                      f"127.0.0.1:{self.port}", "--data-dir", str(self.data_dir)],
                                     stdout=log, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("kubeplane store serve exited")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("kubeplane store serve did not start in time")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class Cluster:
    def __init__(self, root: Path, n: int = 3):
        self.root = root
        self.store = StoreProc(root / "store")
        self.ports = [free_port() for _ in range(n)]
        self.servers: list[ServerProc | None] = [None] * n

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.ports]

    def _server(self, i: int) -> ServerProc:
        return ServerProc(self.root / f"api{i}", etcd_servers=[f"http://127.0.0.1:{self.store.port}"],
                          extra=["--http-listen", f"127.0.0.1:{self.ports[i]}"])

    def start(self) -> "Cluster":
        self.store.start()
        for i in range(len(self.ports)):
            self.start_server(i)
        return self

    def start_server(self, i: int) -> None:
        self.servers[i] = self._server(i).start()

    def stop_server(self, i: int) -> None:
        s = self.servers[i]
        if s is not None:
            s.stop()
        self.servers[i] = None

    def stop(self) -> None:
        for i in range(len(self.servers)):
            self.stop_server(i)
        self.store.stop()
