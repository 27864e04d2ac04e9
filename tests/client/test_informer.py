"""Informers against `kubeplane serve`: the WatchList and LIST+WATCH paths, the fallback
when a server does not serve WatchList, handlers, indexers, transform, resync, and the
shared factory."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from conftest import pod
from fake_server import FakeServer, proxy_to, status
from kubeplane.client import (
    NAMESPACES, PODS, Client, Config, DeletedFinalStateUnknown, Indexer, SharedInformerFactory, label_index,
    meta_key, node_name_index,
)


async def until(pred, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(0.02)


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.objs: list[Any] = []

    def handlers(self) -> dict[str, Any]:
        return {"on_add": lambda o: self.events.append(("add", meta_key(o))),
                "on_update": lambda a, b: self.events.append(("update", meta_key(b))),
                "on_delete": self._delete}

    def _delete(self, o: Any) -> None:
        self.objs.append(o)
        self.events.append(("delete", meta_key(o)))


@pytest.mark.parametrize("watch_list", [None, False], ids=["watchlist", "list-watch"])
async def test_sync_events_indexes_and_transform(cfg: Config, ns: str, watch_list: bool | None):
    async with Client(cfg) as c:
        for i in range(5):
            await c.create(PODS.path(ns), pod(f"p{i}", node="n1" if i < 2 else "", labels={"app": f"a{i % 2}"}))
        f = SharedInformerFactory(c, use_watch_list=watch_list, page_size=2)
        inf = f.informer(PODS, namespace=ns)
        inf.add_indexers({Indexer.NODE_NAME: node_name_index, "app": label_index("app")})
        rec = Recorder()
        inf.add_event_handler(**rec.handlers())
        await f.start()
        assert await f.wait_for_cache_sync(10)
        st = inf.reflector.stats
        if watch_list is None:
            assert (st["watch_lists"], st["lists"], inf.reflector.watch_list) == (1, 0, True)
        else:
            assert (st["watch_lists"], st["lists"], st["list_pages"]) == (0, 1, 3)   # 5 pods in pages of 2
        assert sorted(rec.events) == [("add", f"{ns}/p{i}") for i in range(5)]
        assert sorted(inf.indexer.keys()) == [f"{ns}/p{i}" for i in range(5)]
        assert all("managedFields" not in o["metadata"] for o in inf.indexer.list())
        assert inf.indexer.get(f"{ns}/p0")["kind"] == "Pod"
        assert sorted(meta_key(o) for o in inf.indexer.by_index("nodeName", "n1")) == [f"{ns}/p0", f"{ns}/p1"]
        assert len(inf.indexer.by_index("nodeName", "")) == 3
        assert len(inf.indexer.by_index(Indexer.NAMESPACE, ns)) == 5
        rec.events.clear()
        await c.create(PODS.path(ns, "p2", "binding"), {"apiVersion": "v1", "kind": "Binding", "metadata": {
            "name": "p2"}, "target": {"kind": "Node", "name": "n1"}})
        await c.delete(PODS.path(ns, "p0"), params={"gracePeriodSeconds": 0})
        await c.create(PODS.path(ns), pod("p9", labels={"app": "a1"}))
        await until(lambda: len(rec.events) >= 3)
        assert rec.events == [("update", f"{ns}/p2"), ("delete", f"{ns}/p0"), ("add", f"{ns}/p9")]
        assert sorted(meta_key(o) for o in inf.indexer.by_index("nodeName", "n1")) == [f"{ns}/p1", f"{ns}/p2"]
        assert sorted(meta_key(o) for o in inf.indexer.by_index("app", "a1")) == [f"{ns}/p1", f"{ns}/p3", f"{ns}/p9"]
        assert inf.indexer.get(f"{ns}/p0") is None
        # a handler added now gets synthetic adds for the cache
        late = Recorder()
        inf.add_event_handler(**late.handlers())
        assert sorted(late.events) == sorted(("add", k) for k in inf.indexer.keys())
        await f.stop()


async def test_factory_shares_informers_and_selectors_filter(cfg: Config, ns: str):
    async with Client(cfg) as c:
        await c.create(PODS.path(ns), pod("on", node="n7"))
        await c.create(PODS.path(ns), pod("off", labels={"tier": "db"}))
        f = SharedInformerFactory(c, transform=None)
        a = f.informer(PODS, namespace=ns)
        assert f.informer(PODS, namespace=ns) is a
        by_node = f.informer(PODS, namespace=ns, field_selector="spec.nodeName=n7")
        by_label = f.informer(PODS, namespace=ns, label_selector="tier=db")
        assert len({id(a), id(by_node), id(by_label)}) == 3
        await f.start()
        late = f.informer(NAMESPACES)              # made after start: started at once
        assert await f.wait_for_cache_sync(10)
        assert late.has_synced() and late.indexer.get(ns) is not None
        assert by_node.indexer.keys() == [f"{ns}/on"]
        assert by_label.indexer.keys() == [f"{ns}/off"]
        assert "managedFields" in a.indexer.get(f"{ns}/on")["metadata"]     # transform=None keeps them
        await f.stop()


async def test_resync_replays_updates(cfg: Config, ns: str):
    async with Client(cfg) as c:
        await c.create(PODS.path(ns), pod("r1"))
        f = SharedInformerFactory(c, resync_period=0.2)
        inf = f.informer(PODS, namespace=ns)
        seen: list[tuple[str, bool]] = []
        inf.add_event_handler(on_update=lambda old, new: seen.append((meta_key(new), old is new)))
        await f.start()
        await until(lambda: len(seen) >= 2)
        assert set(seen) == {(f"{ns}/r1", True)}
        await f.stop()


@pytest.mark.parametrize("mode", ["ignored", "rejected"])
async def test_falls_back_to_list_watch_without_watchlist(server, ns: str, mode: str):
    """A server that ignores sendInitialEvents (pre-1.27: a plain watch, initial ADDED
    events, no end bookmark) or refuses it (1.27-1.31 without the feature gate: 422)."""
    fake = FakeServer()
    if mode == "ignored":
        h = proxy_to(f"http://127.0.0.1:{server.http_port}", drop_params=("sendInitialEvents", "resourceVersionMatch"))
    else:
        h = proxy_to(f"http://127.0.0.1:{server.http_port}", reject_param=("sendInitialEvents", 422, status(
            422, "Invalid", "ListOptions.meta.k8s.io \"\" is invalid: sendInitialEvents: Forbidden: sendInitialEvents "
            "is forbidden for watch unless the WatchList feature gate is enabled")))
    fake.route("*", "/{tail:.*}", h)
    await fake.start()
    try:
        async with Client(Config(servers=[fake.url], qps=0)) as c:
            await c.create(PODS.path(ns), pod("x1"))
            f = SharedInformerFactory(c, watch_list_idle_timeout=0.5)
            inf = f.informer(PODS, namespace=ns)
            rec = Recorder()
            inf.add_event_handler(**rec.handlers())
            await f.start()
            assert await f.wait_for_cache_sync(10)
            st = inf.reflector.stats
            assert inf.reflector.watch_list is False
            assert (st["watch_lists"], st["lists"]) == (1, 1)
            assert rec.events == [("add", f"{ns}/x1")]
            await c.create(PODS.path(ns), pod("x2"))
            await until(lambda: len(rec.events) == 2)
            assert rec.events[1] == ("add", f"{ns}/x2")
            await f.stop()
    finally:
        await fake.stop()


def test_indexer_keeps_indexes_exact():
    idx = Indexer({"node": node_name_index})
    a = {"metadata": {"namespace": "n", "name": "a"}, "spec": {"nodeName": "x"}}
    idx.update(a)
    idx.update({"metadata": {"namespace": "n", "name": "a"}, "spec": {"nodeName": "y"}})
    assert idx.index_keys("node", "x") == [] and idx.index_keys("node", "y") == ["n/a"]
    assert idx.index_values("node") == ["y"]
    idx.delete("n/a")
    assert idx.index_values("node") == [] and idx.index_values(Indexer.NAMESPACE) == []
    idx.replace([a])
    idx.add_indexers({"ns2": lambda o: [o["metadata"]["namespace"] * 2]})
    assert idx.by_index("ns2", "nn") == [a]
    with pytest.raises(KeyError, match="no index named"):
        idx.by_index("missing", "x")
    assert DeletedFinalStateUnknown("n/a", a).key == meta_key(DeletedFinalStateUnknown("n/a", a))


def test_transforms():
    from kubeplane.client import chain, intern_strings, strip, strip_and_intern, strip_managed_fields

    def obj() -> dict:
        import orjson
        return orjson.loads(b'{"metadata":{"name":"a","managedFields":[{"manager":"m"}],"annotations":'
                            b'{"kubectl.kubernetes.io/last-applied-configuration":"{}","keep":"v"}},'
                            b'"spec":{"containers":[{"imagePullPolicy":"IfNotPresent"}]}}')
    assert "managedFields" not in strip_managed_fields(obj())["metadata"]
    s = strip("metadata.annotations.kubectl.kubernetes.io/last-applied-configuration", "spec")(obj())
    assert s["metadata"]["annotations"] == {"keep": "v"} and "spec" not in s
    a, b = strip_and_intern(obj()), chain(strip_managed_fields, intern_strings)(obj())
    assert a == b and "managedFields" not in a["metadata"]
    assert a["spec"]["containers"][0]["imagePullPolicy"] is b["spec"]["containers"][0]["imagePullPolicy"]


def test_gc_pause_nests_and_restores():
    import gc

    from kubeplane.client import gcpause

    assert gc.isenabled()
    with gcpause.paused():
        assert not gc.isenabled()
        with gcpause.paused():
            assert gcpause.depth() == 2
        assert not gc.isenabled()
    assert gc.isenabled() and gcpause.depth() == 0
    with gcpause.paused(False):
        assert gc.isenabled()
    gc.disable()
    try:
        with gcpause.paused():
            pass
        assert not gc.isenabled()                        # it was off: it stays off
    finally:
        gc.enable()


@pytest.mark.parametrize("watch_list", [None, False], ids=["watchlist", "list-watch"])
async def test_gc_is_back_on_after_sync(cfg: Config, ns: str, watch_list: bool | None):
    import gc

    from kubeplane.client import gcpause

    async with Client(cfg) as c:
        await c.create(PODS.path(ns), pod("g1"))
        f = SharedInformerFactory(c, use_watch_list=watch_list)
        inf = f.informer(PODS, namespace=ns)
        await f.start()
        assert await f.wait_for_cache_sync(10)
        assert len(inf.indexer) == 1
        assert gc.isenabled() and gcpause.depth() == 0
        await f.stop()


def test_gc_pause_leaves_what_it_made_in_the_oldest_generation():
    import gc

    from kubeplane.client import gcpause

    gc.collect()
    with gcpause.paused():
        keep = [{"a": [i]} for i in range(30_000)]
        assert gc.get_count()[0] > 30_000                    # all young while paused
    assert gc.get_count()[0] < 1_000 and gc.get_freeze_count() == 0
    assert len(keep) == 30_000
