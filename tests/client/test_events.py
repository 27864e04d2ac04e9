"""The event recorder against `kubeplane serve`: identical events become one Event with a
count, similar ones are combined, and each object's writes are rate-limited."""
from __future__ import annotations

import asyncio

from conftest import pod
from kubeplane.client import EVENTS, PODS, Client, Config, EventRecorder


async def _events(c: Client, ns: str) -> list[dict]:
    return (await c.list(EVENTS.path(ns)))["items"]


async def test_thousands_of_identical_events_become_one_with_a_count(cfg: Config, ns: str):
    async with Client(cfg) as c:
        p = await c.create(PODS.path(ns), pod("busy"))
        rec = EventRecorder(c, component="default-scheduler", host="h1")
        for _ in range(1000):
            rec.event(p, "Warning", "FailedScheduling", "0/5 nodes are available: 5 Insufficient cpu.")
        await asyncio.sleep(0.2)
        for _ in range(500):
            rec.event(p, "Warning", "FailedScheduling", "0/5 nodes are available: 5 Insufficient cpu.")
        await rec.close()
        evs = await _events(c, ns)
        assert len(evs) == 1
        e = evs[0]
        assert e["count"] == 1500
        assert (e["reason"], e["type"], e["source"]) == ("FailedScheduling", "Warning",
                                                          {"component": "default-scheduler", "host": "h1"})
        assert e["involvedObject"]["uid"] == p["metadata"]["uid"] and e["involvedObject"]["kind"] == "Pod"
        assert rec.stats["creates"] == 1 and 1 <= rec.stats["patches"] <= 3   # coalesced writes
        assert e["metadata"]["name"].startswith("busy.")


async def test_similar_events_are_combined(cfg: Config, ns: str):
    async with Client(cfg) as c:
        p = await c.create(PODS.path(ns), pod("p"))
        rec = EventRecorder(c, component="test")
        for i in range(15):
            rec.event(p, "Warning", "BackOff", f"attempt {i} failed")
            await asyncio.sleep(0)
        await rec.close()
        evs = await _events(c, ns)
        combined = [e for e in evs if e["message"].startswith("(combined from similar events): ")]
        single = [e for e in evs if e not in combined]
        assert len(single) == 9                      # messages 0..8: the 10th distinct one is combined
        assert len(combined) == 1 and combined[0]["count"] == 6
        assert combined[0]["message"] == "(combined from similar events): attempt 14 failed"


async def test_each_object_has_a_write_budget(cfg: Config, ns: str):
    async with Client(cfg) as c:
        p = await c.create(PODS.path(ns), pod("noisy"))
        rec = EventRecorder(c, component="test", spam_burst=5)
        for i in range(8):
            rec.event(p, "Normal", f"Reason{i}", "m")
        other = await c.create(PODS.path(ns), pod("quiet"))
        rec.event(other, "Normal", "Reason0", "m")
        await rec.close()
        evs = await _events(c, ns)
        by_obj = [e["involvedObject"]["name"] for e in evs]
        assert by_obj.count("noisy") == 5 and by_obj.count("quiet") == 1
        assert rec.stats["spam_dropped"] == 3
