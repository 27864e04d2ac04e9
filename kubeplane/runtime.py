"""How kubeplane's processes run their event loop.

kubeplane runs on uvloop when it is installed (it is a dependency): its task switching
and callbacks are C, which matters on the store's write path, where every acknowledged
write wakes its writer's task (an interleaved probe measured 10-11 us of loop-thread CPU
per put against 11.5-15.5 us with the default loop; docs/benchmarks.md).  ``KUBEPLANE_LOOP=asyncio``
selects the default loop.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Coroutine, TypeVar

T = TypeVar("T")


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
