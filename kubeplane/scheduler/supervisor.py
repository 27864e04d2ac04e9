"""Run `kubeplane scheduler` as a child of `kubeplane serve`: started once the API server
listens, restarted when it dies (1 s, doubling to 30 s; reset after a minute of life),
stopped (SIGTERM, then SIGKILL after 5 s) before the server closes. On Linux the child
also gets SIGTERM when its parent dies (PR_SET_PDEATHSIG), so a killed server leaves no
scheduler behind."""
from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
import time

import yaml

SCHEDULER_USER = "system:kube-scheduler"


def _die_with_parent() -> None:
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)     # PR_SET_PDEATHSIG
    except OSError:
        pass


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_line(token: str) -> str:
    """A line of upstream's token file for the scheduler's identity."""
    return f"{token},{SCHEDULER_USER},{SCHEDULER_USER}\n"


def write_kubeconfig(path: str, server: str, ca_pem: bytes, token: str) -> None:
    import base64

    doc = {"apiVersion": "v1", "kind": "Config", "current-context": "kube-scheduler",
           "clusters": [{"name": "kubeplane", "cluster": {
               "server": server, "certificate-authority-data": base64.b64encode(ca_pem).decode()}}],
           "users": [{"name": SCHEDULER_USER, "user": {"token": token}}],
           "contexts": [{"name": "kube-scheduler", "context": {"cluster": "kubeplane", "user": SCHEDULER_USER}}]}
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(doc, f, sort_keys=False)
    os.replace(tmp, path)


class Supervisor:
    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.proc: asyncio.subprocess.Process | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.starts = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            self.proc = await asyncio.create_subprocess_exec(*self.argv, preexec_fn=_die_with_parent,
                                                             stdin=asyncio.subprocess.DEVNULL)
            self.starts += 1
            if self.starts == 1:
                print(f"kubeplane: scheduler running (pid {self.proc.pid}, user {SCHEDULER_USER}); "
                      "--scheduler=false turns it off", flush=True)
            started = time.monotonic()
            waiter = asyncio.ensure_future(self.proc.wait())
            stopper = asyncio.ensure_future(self._stop.wait())
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if self._stop.is_set():
                waiter.cancel()
                return
            stopper.cancel()
            if time.monotonic() - started > 60:
                backoff = 1.0
            print(f"kubeplane: scheduler exited with status {self.proc.returncode}; restarting in {backoff:.0f}s",
                  file=sys.stderr, flush=True)
            try:
                await asyncio.wait_for(self._stop.wait(), backoff)
                return
            except asyncio.TimeoutError:
                pass
            backoff = min(backoff * 2, 30.0)

    async def stop(self) -> None:
        self._stop.set()
        p = self.proc
        if p is not None and p.returncode is None:
            p.terminate()
            try:
                await asyncio.wait_for(p.wait(), 5)
            except asyncio.TimeoutError:
                p.kill()
                await p.wait()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
