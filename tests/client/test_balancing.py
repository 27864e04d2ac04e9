"""One client, three API server processes on one store: requests spread by least in
flight, watches spread, a stopped server fails over without failed calls or relists,
and when it comes back watches move to it gradually."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cluster import Cluster
from conftest import pod
from kubeplane.client import NAMESPACES, PODS, Client, Config, SharedInformerFactory


async def until(pred, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(0.05)


@pytest.fixture
def cluster(tmp_path: Path):
    c = Cluster(tmp_path).start()
    yield c
    c.stop()


async def test_spread_failover_and_gradual_rebalance(cluster: Cluster):
    cfg = Config(servers=cluster.urls, qps=0)
    async with Client(cfg, rebalance_interval=0.5) as c:
        bal = c.balancer
        await c.create(NAMESPACES.path(), {"metadata": {"name": "lb"}})
        # requests: 300 GETs, 20 at a time, spread over the three
        sem = asyncio.Semaphore(20)

        async def get() -> None:
            async with sem:
                await c.get(NAMESPACES.path(name="lb"))
        await asyncio.gather(*(get() for _ in range(300)))
        sent = {u: st["requests"] for u, st in bal.snapshot().items()}
        assert all(n >= 60 for n in sent.values()), sent

        # watches: six informers, two per server
        f = SharedInformerFactory(c)
        infs = [f.informer(PODS, namespace="lb", label_selector=f"i={i}") for i in range(6)]
        await f.start()
        assert await f.wait_for_cache_sync(20)
        await until(lambda: sorted(s.watches for s in bal.servers) == [2, 2, 2])

        # server 0 goes away (stopped off the event loop, so the client sees it happen):
        # its watches resume elsewhere, and calls keep working
        await asyncio.to_thread(cluster.stop_server, 0)
        await until(lambda: bal.servers[0].watches == 0 and sum(s.watches for s in bal.servers) == 6)
        for i in range(6):
            await c.create(PODS.path("lb"), pod(f"p{i}", labels={"i": str(i)}))
        await until(lambda: all(len(inf.indexer) == 1 for inf in infs))
        assert bal.servers[0].watches == 0 and sum(s.watches for s in bal.servers) == 6
        assert all(inf.reflector.stats["relists"] == 0 and inf.reflector.stats["lists"] == 0 for inf in infs)

        # it comes back: watches move to it one at a time, without relisting
        await asyncio.to_thread(cluster.start_server, 0)
        moves_before = bal.moves
        await until(lambda: sorted(s.watches for s in bal.servers) == [2, 2, 2], timeout=30)
        assert bal.moves > moves_before
        times = list(bal.move_times)
        assert all(b - a >= 0.35 for a, b in zip(times, times[1:])), times   # one move per interval
        for i in range(6):
            await c.patch(PODS.path("lb", f"p{i}"), {"metadata": {"labels": {"seen": "yes"}}})
        await until(lambda: all(inf.indexer.list()[0]["metadata"]["labels"].get("seen") == "yes" for inf in infs))
        assert all(inf.reflector.stats["relists"] == 0 and inf.reflector.stats["lists"] == 0 for inf in infs)
        await f.stop()
