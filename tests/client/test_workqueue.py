"""The rate-limited work queue: dedup, one worker per key, dirty re-queue, delays,
per-item backoff, shutdown."""
from __future__ import annotations

import asyncio

import pytest

from kubeplane.client import QueueShutDown, RateLimitingQueue


async def test_duplicates_are_one_and_a_key_is_never_processed_twice_at_once():
    q = RateLimitingQueue()
    for k in ("a", "b", "a", "a"):
        q.add(k)
    assert len(q) == 2
    k1 = await q.get()
    assert k1 == "a"
    q.add("a")                       # while processing: marked dirty, not queued
    assert len(q) == 1
    k2 = await q.get()
    assert k2 == "b"
    assert len(q) == 0
    waiter = asyncio.create_task(q.get())
    await asyncio.sleep(0.01)
    assert not waiter.done()         # "a" is dirty but still being processed
    q.done("a")                      # now it is queued again
    assert await asyncio.wait_for(waiter, 1) == "a"
    q.done("a")
    q.done("b")
    assert len(q) == 0 and q.processing == 0


async def test_concurrent_workers_never_share_a_key():
    q = RateLimitingQueue()
    active: set[str] = set()
    overlaps = []
    handled = []

    async def worker() -> None:
        while True:
            try:
                k = await q.get()
            except QueueShutDown:
                return
            if k in active:
                overlaps.append(k)
            active.add(k)
            await asyncio.sleep(0.001)
            active.discard(k)
            handled.append(k)
            q.done(k)

    workers = [asyncio.create_task(worker()) for _ in range(8)]
    for i in range(300):
        q.add(f"k{i % 10}")
        if i % 7 == 0:
            await asyncio.sleep(0)
    await asyncio.sleep(0.2)
    q.shut_down()
    await asyncio.wait_for(asyncio.gather(*workers), 2)
    assert overlaps == []
    assert set(handled) == {f"k{i}" for i in range(10)}
    assert len(handled) < 300                          # dirty adds were merged


async def test_add_after_keeps_the_earliest_time():
    q = RateLimitingQueue()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    q.add_after("x", 0.3)
    q.add_after("x", 0.05)
    q.add_after("x", 0.5)
    q.add_after("y", 0.1)
    assert len(q) == 0
    assert await asyncio.wait_for(q.get(), 1) == "x"
    assert 0.04 <= loop.time() - t0 < 0.25
    assert await asyncio.wait_for(q.get(), 1) == "y"
    await asyncio.sleep(0.5)
    assert len(q) == 0                                 # the later "x" entries were superseded


async def test_per_item_exponential_backoff_and_forget():
    q = RateLimitingQueue(base_delay=0.01, max_delay=0.05, qps=0)
    assert [q.when("a") for _ in range(5)] == pytest.approx([0.01, 0.02, 0.04, 0.05, 0.05])
    assert q.num_requeues("a") == 5
    q.forget("a")
    assert q.num_requeues("a") == 0 and q.when("a") == pytest.approx(0.01)
    q.forget("a")
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    q.add_rate_limited("a")
    assert await asyncio.wait_for(q.get(), 1) == "a"
    assert loop.time() - t0 >= 0.009


async def test_overall_bucket_limits_after_the_burst():
    q = RateLimitingQueue(base_delay=0.0, qps=10, burst=2)
    delays = [q.when(f"k{i}") for i in range(4)]
    assert delays[:2] == [0.0, 0.0]
    assert delays[2] == pytest.approx(0.1, abs=0.01) and delays[3] == pytest.approx(0.2, abs=0.01)


async def test_shut_down_drains_then_raises():
    q = RateLimitingQueue()
    q.add("a")
    waiter_q = RateLimitingQueue()
    blocked = asyncio.create_task(waiter_q.get())
    await asyncio.sleep(0)
    q.shut_down()
    waiter_q.shut_down()
    q.add("b")                                         # ignored after shutdown
    assert await q.get() == "a"
    with pytest.raises(QueueShutDown):
        await q.get()
    with pytest.raises(QueueShutDown):
        await asyncio.wait_for(blocked, 1)
