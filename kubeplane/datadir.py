"""Data directories: one owner at a time, private to the user that runs kubeplane.

Two invariants, kept by everything that opens a data directory (the embedded store's
``Backend.open``, ``kubeplane serve`` before it writes PKI or the kubeconfig):

* **One owner.** ``DirLock`` holds an exclusive ``fcntl.flock`` on ``<dir>/kubeplane.lock``
  for as long as the directory is in use (etcd does the same with its WAL files). A second
  opener fails at once with ``DataDirInUseError`` naming the directory and the PID written
  in the lock file, before it has changed anything there. The kernel drops the lock when
  the process dies, even by SIGKILL, so a stale lock file never blocks a restart.
* **Private.** Directories are created 0700 and files 0600 (``PRIVATE_DIR``,
  ``PRIVATE_FILE``), as etcd creates its data dir; ``tighten`` brings an existing tree
  created by an older kubeplane (0755/0644) down to that and says so in the log.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("kubeplane.datadir")

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
LOCK_NAME = "kubeplane.lock"


class StartupError(Exception):
    """A start-up failure with a one-line message saying what, where and what to do;
    the CLI prints it and exits 1 without a traceback."""


def listen_error(address: str, flag: str, exc: BaseException) -> StartupError:
    """The one-line StartupError for a listener that could not bind ``address``."""
    reasons = {errno.EADDRINUSE: "address already in use", errno.EACCES: "permission denied",
               errno.EADDRNOTAVAIL: "no such address on this machine"}
    reason = reasons.get(getattr(exc, "errno", None) or 0) or getattr(exc, "strerror", None) or str(exc)
    todo = ("stop the process using it or choose another port" if "in use" in reason
            else "choose another address")
    return StartupError(f"cannot listen on {address} ({flag}): {reason}; {todo} with {flag}")


class DataDirInUseError(StartupError):
    def __init__(self, path: str, pid: int | None):
        who = f"kubeplane process {pid}" if pid else "another kubeplane process"
        super().__init__(f"data dir {path} is in use by {who}; stop it first, or choose another --data-dir")
        self.path = path
        self.pid = pid


def make_private_dir(path: str | os.PathLike) -> None:
    """Create ``path`` (and missing parents) with mode 0700; an existing one is left as is
    (``tighten`` handles those)."""
    p = Path(path)
    if p.is_dir():
        return
    missing = []
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:
            pass
        os.chmod(d, PRIVATE_DIR)  # mkdir's mode is masked by the umask


def tighten(root: str | os.PathLike, names: tuple[str, ...] | None = None) -> int:
    """Remove group and other permissions from ``root`` and, recursively, from the entries
    ``names`` of it (every entry when None). Returns how many modes changed and logs one
    line when any did. Symbolic links are not followed."""
    root = Path(root)
    changed = 0

    def fix(p: Path) -> None:
        nonlocal changed
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(st.st_mode):
            return
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            os.chmod(p, mode & 0o700)
            changed += 1
        if stat.S_ISDIR(st.st_mode):
            for child in p.iterdir():
                fix(child)

    if not root.is_dir():
        return 0
    mode = stat.S_IMODE(os.stat(root).st_mode)
    if mode & 0o077:
        os.chmod(root, mode & 0o700)
        changed += 1
    for child in (root.iterdir() if names is None else (root / n for n in names)):
        fix(child)
    if changed:
        log.warning("tightened permissions under %s to owner-only (dirs 0700, files 0600): %d changed",
                    root, changed)
    return changed


class DirLock:
    """An exclusive lock on a data directory (see the module docstring).

    ``acquire()`` creates the directory (0700) if needed, then the lock file (0600), locks
    it without blocking and writes this process's PID into it. ``release()`` unlocks and
    closes; the file stays (removing it would race with a new owner)."""

    def __init__(self, path: str | os.PathLike):
        self.dir = Path(path)
        self.path = self.dir / LOCK_NAME
        self.fd = -1

    def acquire(self) -> "DirLock":
        if self.fd >= 0:
            return self
        try:
            make_private_dir(self.dir)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE)
        except PermissionError as exc:
            raise StartupError(f"cannot use data dir {self.dir.absolute()}: {exc.strerror}; "
                               "check its owner and permissions, or choose another --data-dir") from None
        except OSError as exc:
            raise StartupError(f"cannot use data dir {self.dir.absolute()}: {exc.strerror or exc}; "
                               "choose another --data-dir") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            pid = _read_pid(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise DataDirInUseError(str(self.dir.absolute()), pid) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def __enter__(self) -> "DirLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
