"""One thread for the store's blocking file I/O, run in submission order.

``run_in_executor`` costs a concurrent.futures Future, a work item and a chained asyncio
future per call; the WAL makes one call per group-commit batch, so the store uses this
thin queue instead: the thread runs each call and hands the result straight to the
asyncio future with ``call_soon_threadsafe``.  One thread keeps the calls ordered (a
segment rotation never overtakes the batch written before it).  Calls in flight are
counted in ``runtime``, which hands the thread the GIL while it has work
(``runtime.io_call_started``).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any, Callable

from ... import runtime


def _resolve(fut: asyncio.Future, result: Any, exc: BaseException | None) -> None:
    runtime.io_call_answered(fut.get_loop())
    if fut.done():  # the awaiting task gave up (cancelled); the call still ran
        return
    if exc is None:
        fut.set_result(result)
    else:
        fut.set_exception(exc)


class IOThread:
    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def run(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future:
        """Queue ``fn(*args)``; the returned future completes with its result."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        runtime.io_call_started(loop)
        self._queue.put((loop, fut, fn, args))
        return fut

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            loop, fut, fn, args = item
            try:
                result, exc = fn(*args), None
            except BaseException as e:  # handed to the awaiting task
                result, exc = None, e
            try:
                loop.call_soon_threadsafe(_resolve, fut, result, exc)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass

    def shutdown(self, wait: bool = True) -> None:
        self._queue.put(None)
        if wait:
            self._thread.join()
