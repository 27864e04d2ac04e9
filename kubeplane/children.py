"""The components `kubeplane serve` runs beside the API server, as supervised child processes.

Each child (the scheduler, the controller manager, the hollow-node simulator) talks to the
API server over loopback HTTPS with an identity of its own: a bearer token in the token file
the server reads at start (:func:`token_line`) and a private kubeconfig holding it
(:func:`write_kubeconfig`).  A :class:`Supervisor` starts the child once the server listens,
restarts it when it dies (1 s, doubling to 30 s; reset after a minute of life), and stops it
(SIGTERM, then SIGKILL after 5 s) before the server closes.  On Linux a child also gets
SIGTERM when its parent dies (PR_SET_PDEATHSIG), so a killed server leaves none behind.

Only the command line uses this module; the components themselves know nothing of it.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import signal
import sys
import time

import yaml


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_line(token: str, user: str, groups: tuple[str, ...] = ()) -> str:
    """A line of upstream's token file (token,user,uid[,"group,..."]) for a child's identity."""
    return f"{token},{user},{user}" + (f',"{",".join(groups)}"' if groups else "") + "\n"


def write_kubeconfig(path: str, server: str, ca_pem: bytes, token: str, user: str, context: str) -> None:
    """A private (0600) kubeconfig for a child's token identity, replaced atomically."""
    doc = {"apiVersion": "v1", "kind": "Config", "current-context": context,
           "clusters": [{"name": "kubeplane", "cluster": {
               "server": server, "certificate-authority-data": base64.b64encode(ca_pem).decode()}}],
           "users": [{"name": user, "user": {"token": token}}],
           "contexts": [{"name": context, "context": {"cluster": "kubeplane", "user": user}}]}
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
    """One child process kept running until :meth:`stop`; `what` names it in messages, and
    `started_message` (if any) is printed once, when the first start succeeds."""

    def __init__(self, argv: list[str], what: str, started_message: str | None = None) -> None:
        self.argv = argv
        self.what = what
        self.started_message = started_message
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
            if self.starts == 1 and self.started_message:
                print(self.started_message.format(pid=self.proc.pid), flush=True)
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
