"""Cost of flow control on the request path (a timing script, not a test).

    .venv/bin/python -m kubeplane.apiserver.flowcontrol._timing [n]

Prints microseconds per admit+release of an unqueued request (classification cached),
for an exempt and for a queued (global-default) level, with metrics on, and per
classification miss.
"""
from __future__ import annotations

import asyncio
import sys
import time

from prometheus_client import CollectorRegistry, generate_latest

from . import FlowController, RequestDigest, UserInfo


async def _loop(fc: FlowController, d: RequestDigest, n: int) -> float:
    admit = fc.admit
    t0 = time.perf_counter()
    for _ in range(n):
        t = await admit(d, 1, 15.0)
        t.release()
    return (time.perf_counter() - t0) / n * 1e6


async def main(n: int) -> None:
    registry = CollectorRegistry()
    fc = FlowController(600, registry=registry)
    alice = RequestDigest(UserInfo("alice", ("system:authenticated",)), "list", True, "", "pods", "", "default")
    admin = RequestDigest(UserInfo("admin", ("system:masters", "system:authenticated")), "get", True, "", "pods",
                          "", "default", "p")
    for name, d in (("global-default (queued level)", alice), ("exempt", admin)):
        await _loop(fc, d, 1000)
        best = min([await _loop(fc, d, n) for _ in range(5)])
        print(f"admit+release, {name}: {best:.2f} us")

    async def nothing() -> None:
        return None

    t0 = time.perf_counter()
    for _ in range(n):
        await nothing()
    print(f"  (an empty coroutine call: {(time.perf_counter() - t0) / n * 1e6:.2f} us)")

    users = [RequestDigest(UserInfo(f"user-{i}", ("system:authenticated",)), "get", True, "", "pods", "", "ns")
             for i in range(2000)]
    t0 = time.perf_counter()
    for d in users:
        fc.classify(d)
    print(f"classification miss (11 schemas, then cached): {(time.perf_counter() - t0) / len(users) * 1e6:.2f} us")
    t0 = time.perf_counter()
    body = generate_latest(registry)
    print(f"scrape: {(time.perf_counter() - t0) * 1e3:.1f} ms, {len(body)} bytes")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000))
