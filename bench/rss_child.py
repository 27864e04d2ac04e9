"""Memory of an embedded store holding N keys, measured in a fresh process.

    python -m bench.rss_child load DIR N VALUE_SIZE WRITERS   # write N keys, then measure
    python -m bench.rss_child open DIR                        # recover DIR, then measure

Prints one JSON object: ``rss`` (bytes, after the store is loaded and ``gc.collect()``),
``baseline_rss`` (after imports, before the store exists), ``seconds`` (load or
recovery time) and ``revision``.  Every value is its own ``bytes`` object (as values
decoded from requests are), so the figure counts every value's memory.  Keys are written one put each (one revision per key,
as an API server creates objects), by WRITERS concurrent tasks.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import time

import psutil

from kubeplane import runtime
from kubeplane.store.mvcc import EmbeddedStore


def _rss() -> int:
    gc.collect()
    return psutil.Process().memory_info().rss


async def load(data_dir: str, n: int, value_size: int, writers: int) -> dict:
    baseline = _rss()
    filler = b"v" * (value_size - 8)
    async with EmbeddedStore(data_dir) as store:
        t0 = time.perf_counter()

        async def writer(w: int) -> None:
            for i in range(w, n, writers):
                # a distinct value object per key, as decoded requests are
                await store.put(b"/registry/bench/%08d" % i, b"%08d" % i + filler)

        await asyncio.gather(*(writer(w) for w in range(writers)))
        seconds = time.perf_counter() - t0
        result = await store.range(b"/registry/bench/", b"/registry/bench0", count_only=True)
        if result.count != n:
            raise SystemExit(f"loaded {result.count} keys, expected {n}")
        return {"rss": _rss(), "baseline_rss": baseline, "seconds": seconds, "revision": result.revision}


async def reopen(data_dir: str) -> dict:
    baseline = _rss()
    t0 = time.perf_counter()
    async with EmbeddedStore(data_dir) as store:
        seconds = time.perf_counter() - t0
        rev = await store.current_revision()
        return {"rss": _rss(), "baseline_rss": baseline, "seconds": seconds, "revision": rev}


def main(argv: list[str]) -> None:
    if argv[:1] == ["load"] and len(argv) == 5:
        out = runtime.run(load(argv[1], int(argv[2]), int(argv[3]), int(argv[4])))
    elif argv[:1] == ["open"] and len(argv) == 2:
        out = runtime.run(reopen(argv[1]))
    else:
        raise SystemExit(__doc__)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
