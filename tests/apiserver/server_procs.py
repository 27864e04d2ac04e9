"""Run `kubeplane serve` as a child process for tests, and talk to it over loopback.

The server picks free ports (`--secure-port 0`, `--http-listen 127.0.0.1:0`) and prints
where it listens; `ServerProc` reads those lines, so nothing races for a port.
"""
from __future__ import annotations

import atexit
import http.client
import os
import signal
import subprocess
import sys
import time
import weakref
from pathlib import Path
from typing import Any

import orjson

_live: "weakref.WeakSet[ServerProc]" = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    for s in list(_live):
        s.stop()


class ServerProc:
    def __init__(self, data_dir: Path, *, etcd_servers: list[str] | None = None, extra: list[str] | None = None,
                 preexec_fn: Any = None):
        self.preexec_fn = preexec_fn     # run in the child before exec (e.g. to lower a limit)
        self.data_dir = Path(data_dir)
        self.etcd_servers = etcd_servers or []
        self.extra = extra or []
        self.proc: subprocess.Popen | None = None
        self.https_url = ""
        self.http_port = 0
        self.kubeconfig = ""
        self.log_path = self.data_dir.parent / (self.data_dir.name + ".log")

    def start(self, timeout: float = 60.0) -> "ServerProc":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "kubeplane.cli", "serve", "--data-dir", str(self.data_dir),
                "--secure-port", "0", "--http-listen", "127.0.0.1:0", *self.extra]
        if not any(a.startswith("--scheduler") for a in self.extra):
            # the API server alone: a scheduler would write to the pods these suites
            # create (conditions, events) and spend the second core (tests/scheduler
            # start it on purpose)
            argv.append("--scheduler=false")
        if not any(a.startswith("--hollow-nodes") for a in self.extra):
            argv += ["--hollow-nodes", "0"]      # no simulated nodes unless a suite asks (tests/sim)
        if not any(a.startswith(("--controller-manager", "--controllers")) for a in self.extra):
            # no controllers either (tests/controllers start them on purpose): they would
            # make pods for Deployments and ServiceAccounts in every namespace
            argv.append("--controller-manager=false")
        if self.etcd_servers:
            argv += ["--etcd-servers", ",".join(self.etcd_servers)]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, cwd=str(self.data_dir.parent),
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"}, preexec_fn=self.preexec_fn)
        _live.add(self)
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline().decode()
            if not line:
                raise RuntimeError(f"kubeplane serve exited: {self.log_tail()}")
            if line.startswith("kubeplane: serving "):
                self.https_url = line.split()[-1]
            elif line.startswith("kubeplane: plain HTTP"):
                self.http_port = int(line.split()[-1])
            elif line.startswith("export KUBECONFIG="):
                self.kubeconfig = line.strip().split("=", 1)[1]
                break
        else:
            raise RuntimeError("kubeplane serve did not start in time")
        return self

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    # --- plain-HTTP client ----------------------------------------------------------------
    def call(self, method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None,
             content_type: str = "application/json", raw: bytes | None = None) -> "Reply":
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=30)
        try:
            hdrs = dict(headers or {})
            data = raw if raw is not None else (orjson.dumps(body) if body is not None else None)
            if data is not None:
                hdrs.setdefault("Content-Type", content_type)
            conn.request(method, path, body=data, headers=hdrs)
            r = conn.getresponse()
            payload = r.read()
            return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, payload,
                         [v for k, v in r.getheaders() if k.lower() == "warning"])
        finally:
            conn.close()


class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes, warnings: list[str]):
        self.status = status
        self.headers = headers
        self.body = body
        self.warnings = warnings

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)

    def __repr__(self) -> str:
        return f"Reply({self.status}, {self.body[:300]!r})"
