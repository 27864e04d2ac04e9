"""Reflector semantics against `kubeplane serve` processes of their own: bookmarks move
the resourceVersion on, a watch resumes across a server restart without a relist, and a
410 (history compacted while we were away) relists once, reporting what vanished as
DeletedFinalStateUnknown."""
from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from conftest import pod
from server_procs import ServerProc
from kubeplane.client import NAMESPACES, PODS, Client, Config, DeletedFinalStateUnknown, SharedInformerFactory, meta_key


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def until(pred, timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(0.02)


async def test_bookmarks_move_the_resource_version(cfg: Config, ns: str):
    """Short watches (timeoutSeconds 1-2 s) end with a bookmark; a pod written in another
    namespace moves the resource's resourceVersion past our last event, and the
    reflector resumes from the bookmark's."""
    async with Client(cfg) as c:
        await c.create(PODS.path(ns), pod("b1"))
        f = SharedInformerFactory(c, min_watch_timeout=1.0)
        inf = f.informer(PODS, namespace=ns)
        await f.start()
        assert await f.wait_for_cache_sync(10)
        synced_rv = int(inf.last_sync_resource_version)
        other = await c.create(PODS.path("default"), pod(ns + "-elsewhere"))   # not in our namespace
        later = int(other["metadata"]["resourceVersion"])
        await until(lambda: inf.reflector.stats["watches"] >= 2, timeout=8)
        st = inf.reflector.stats
        assert st["bookmarks"] >= 2                      # the initial-events-end one + a timeout one
        assert int(inf.last_sync_resource_version) >= later > synced_rv
        assert (st["lists"], st["relists"], st["events"]) == (0, 0, 0)
        await f.stop()
        await c.delete(PODS.path("default", ns + "-elsewhere"), params={"gracePeriodSeconds": 0})


@pytest.fixture
def own_server(tmp_path: Path):
    servers: list[ServerProc] = []

    def start(*extra: str) -> ServerProc:
        port = free_port()
        s = ServerProc(tmp_path / "data", extra=["--http-listen", f"127.0.0.1:{port}", *extra]).start()
        assert s.http_port == port
        servers.append(s)
        return s
    yield start
    for s in servers:
        s.stop()


async def test_watch_resumes_across_a_server_restart(own_server):
    s = own_server()
    extra = s.extra
    cfg = Config(servers=[f"http://127.0.0.1:{s.http_port}"], qps=0)
    async with Client(cfg) as c:
        await c.create(NAMESPACES.path(), {"metadata": {"name": "r"}})
        await c.create(PODS.path("r"), pod("before"))
        f = SharedInformerFactory(c, backoff_base=0.2)
        inf = f.informer(PODS, namespace="r")
        seen: list[tuple[str, str]] = []
        inf.add_event_handler(on_add=lambda o: seen.append(("add", meta_key(o))),
                              on_delete=lambda o: seen.append(("delete", meta_key(o))))
        await f.start()
        assert await f.wait_for_cache_sync(10)
        s.stop()
        await asyncio.sleep(0.5)
        s2 = ServerProc(s.data_dir, extra=extra).start()
        assert s2.http_port == s.http_port
        try:
            await c.create(PODS.path("r"), pod("after"))
            await until(lambda: ("add", "r/after") in seen)
            st = inf.reflector.stats
            assert seen == [("add", "r/before"), ("add", "r/after")]
            assert (st["watch_lists"], st["lists"], st["relists"]) == (1, 0, 0)   # resumed, never relisted
            assert st["watches"] >= 1 and st["errors"] >= 1
            await f.stop()
        finally:
            s2.stop()


async def test_410_relists_once_and_reports_what_vanished(own_server):
    s = own_server("--auto-compaction-mode", "periodic", "--auto-compaction-retention", "1s")
    extra = s.extra
    cfg = Config(servers=[f"http://127.0.0.1:{s.http_port}"], qps=0)
    async with Client(cfg) as c:
        await c.create(NAMESPACES.path(), {"metadata": {"name": "g"}})
        for n in ("keep", "gone", "changed"):
            await c.create(PODS.path("g"), pod(n))
        f = SharedInformerFactory(c, backoff_base=0.2)
        inf = f.informer(PODS, namespace="g")
        events: list[tuple[str, object]] = []
        inf.add_event_handler(on_add=lambda o: events.append(("add", meta_key(o))),
                              on_update=lambda a, b: events.append(("update", meta_key(b))),
                              on_delete=lambda o: events.append(("delete", o)))
        await f.start()
        assert await f.wait_for_cache_sync(10)
        await inf.stop()                                 # away: the watch is gone, the cache stays
        await c.delete(PODS.path("g", "gone"), params={"gracePeriodSeconds": 0})
        await c.patch(PODS.path("g", "changed"), {"metadata": {"labels": {"x": "y"}}})
        await c.create(PODS.path("g"), pod("new"))
        await asyncio.sleep(2.5)                         # compacted past our resourceVersion
        s.stop()                                         # and a restart empties the watch cache
        s2 = ServerProc(s.data_dir, extra=extra).start()
        try:
            events.clear()
            inf.start()
            await until(lambda: inf.reflector.stats["relists"] == 1 and len(events) >= 3)
            await asyncio.sleep(0.3)
            st = inf.reflector.stats
            assert st["relists"] == 1 and st["watch_lists"] == 2
            deletes = [o for t, o in events if t == "delete"]
            assert len(deletes) == 1 and isinstance(deletes[0], DeletedFinalStateUnknown)
            assert deletes[0].key == "g/gone" and deletes[0].obj["metadata"]["name"] == "gone"
            assert sorted(e for e in events if e[0] != "delete") == [("add", "g/new"), ("update", "g/changed")]
            assert sorted(inf.indexer.keys()) == ["g/changed", "g/keep", "g/new"]
            await f.stop()
        finally:
            s2.stop()
