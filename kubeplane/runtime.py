"""How kubeplane's processes run their event loop.

kubeplane runs on uvloop when it is installed (it is a dependency): its task switching
and callbacks are C, which matters on the store's write path, where every acknowledged
write wakes its writer's task (an interleaved probe measured 10-11 us of loop-thread CPU
per put against 11.5-15.5 us with the default loop; docs/benchmarks.md).  ``KUBEPLANE_LOOP=asyncio``
selects the default loop.

The store's file I/O runs on threads of its own (store/mvcc/iothread.py); a busy loop
would starve them of the GIL, so the loop hands it over while they have work
(``io_call_started``).
"""

from __future__ import annotations

import asyncio
import os
import time
import weakref
from typing import Any, Coroutine, TypeVar

T = TypeVar("T")

HANDOFF_EVERY = 0.001      # while an I/O thread has work: hand it the GIL once a millisecond
HANDOFF_SLEEP = 20e-6      # for this long (long enough for the thread to wake and take it)


class _IOState:
    __slots__ = ("calls", "ticking")

    def __init__(self) -> None:
        self.calls = 0         # handed to I/O threads and not yet answered on the loop
        self.ticking = False   # a _handoff is scheduled


_io: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _IOState]" = weakref.WeakKeyDictionary()


def io_call_started(loop: asyncio.AbstractEventLoop) -> None:
    """An I/O thread (store/mvcc/iothread.py) got a call from `loop` to run.

    The thread needs the GIL to take the call, and again after each system call it
    makes, and a busy event loop starves it: the loop releases and retakes the GIL at
    every I/O callback and poll, and each release restarts the waiting thread's 5 ms
    forced-switch timer, so it gets the GIL only when it happens to win a race (a WAL
    commit took 0.1-0.5 s beside a flood of LISTs written in pieces, fsync ~1 ms; 15-25
    ms with this). So while the thread has work the loop sleeps HANDOFF_SLEEP every
    HANDOFF_EVERY with the GIL released (~2% of the loop, only while a write or snapshot
    is in flight; pod creates and merge patches within 3% of without it, alternating runs)."""
    st = _io.get(loop)
    if st is None:
        st = _io[loop] = _IOState()
    st.calls += 1
    if not st.ticking:
        st.ticking = True
        loop.call_later(HANDOFF_EVERY, _handoff, loop, st)


def io_call_answered(loop: asyncio.AbstractEventLoop) -> None:
    st = _io.get(loop)
    if st is not None:
        st.calls -= 1


def _handoff(loop: asyncio.AbstractEventLoop, st: _IOState) -> None:
    if not st.calls:
        st.ticking = False
        return
    time.sleep(HANDOFF_SLEEP)
    loop.call_later(HANDOFF_EVERY, _handoff, loop, st)


def loop_name() -> str:
    if os.environ.get("KUBEPLANE_LOOP", "uvloop") == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on kubeplane's event loop."""
    if loop_name() == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


def raise_open_file_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit, as Go's runtime does at start: a
    server with thousands of watch connections would otherwise fail new connections at
    the soft default (often 1,024). Returns (before, after); logged at -v=1."""
    import logging
    import resource

    from .logs import V

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new = soft
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            new = target
        except (ValueError, OSError):   # e.g. above fs.nr_open: keep what we have
            pass
    logging.getLogger("kubeplane").log(V(1), "open file limit (RLIMIT_NOFILE): soft %d, hard %s (was soft %d)",
                                       new, "unlimited" if hard == resource.RLIM_INFINITY else hard, soft)
    return soft, new
