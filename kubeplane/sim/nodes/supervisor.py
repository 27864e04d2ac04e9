"""`kubeplane serve --hollow-nodes N`: the simulator as a supervised child process.

The same pattern as the scheduler's child (kubeplane.scheduler.supervisor, which this
package may not import): started once the API server listens, over loopback HTTPS with
its own identity (a bearer token of user HOLLOW_USER in group system:nodes, so API
Priority and Fairness treats its Lease renewals as node heartbeats); restarted when it
dies (1 s doubling to 30 s, reset after a minute of life); SIGTERM then SIGKILL after 5 s
when the server stops; SIGTERM when its parent dies (PR_SET_PDEATHSIG).
"""
from __future__ import annotations

import asyncio
import base64
import os
import signal
import sys
import time

import yaml

HOLLOW_USER = "kubeplane:hollow-nodes"
NODES_GROUP = "system:nodes"


def token_line(token: str) -> str:
    return f'{token},{HOLLOW_USER},{HOLLOW_USER},"{NODES_GROUP}"\n'


def write_kubeconfig(path: str, server: str, ca_pem: bytes, token: str) -> None:
    doc = {"apiVersion": "v1", "kind": "Config", "current-context": "hollow-nodes",
           "clusters": [{"name": "kubeplane", "cluster": {
               "server": server, "certificate-authority-data": base64.b64encode(ca_pem).decode()}}],
           "users": [{"name": HOLLOW_USER, "user": {"token": token}}],
           "contexts": [{"name": "hollow-nodes", "context": {"cluster": "kubeplane", "user": HOLLOW_USER}}]}
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(doc, f, sort_keys=False)
    os.replace(tmp, path)


def _die_with_parent() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)     # PR_SET_PDEATHSIG
    except OSError:
        pass


class Supervisor:
    def __init__(self, argv: list[str], what: str = "hollow nodes") -> None:
        self.argv = argv
        self.what = what
        self.proc: asyncio.subprocess.Process | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.starts = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            self.proc = await asyncio.create_subprocess_exec(*self.argv, preexec_fn=_die_with_parent,
                                                             stdin=asyncio.subprocess.DEVNULL)
            self.starts += 1
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
            print(f"kubeplane: {self.what} exited with status {self.proc.returncode}; restarting in {backoff:.0f}s",
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
