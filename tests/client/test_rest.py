"""The REST client against `kubeplane serve` (plain HTTP on loopback), and its retry rules
against a scripted server."""
from __future__ import annotations

import asyncio
import time
from contextlib import aclosing

import pytest

from conftest import pod
from fake_server import FakeServer, status
from kubeplane.client import NODES, PODS, ApiConnectionError, ApiError, Client, Config
from kubeplane.client.ratelimit import TokenBucket


async def test_crud_patch_subresources_and_errors(cfg: Config, ns: str):
    async with Client(cfg) as c:
        made = await c.create(PODS.path(ns), pod("p1", labels={"a": "1"}))
        assert made["metadata"]["uid"] and made["metadata"]["namespace"] == ns
        got = await c.get(PODS.path(ns, "p1"))
        assert got["metadata"]["uid"] == made["metadata"]["uid"]
        got["metadata"]["labels"]["b"] = "2"
        upd = await c.update(PODS.path(ns, "p1"), got)
        assert upd["metadata"]["labels"] == {"a": "1", "b": "2"}
        m = await c.patch(PODS.path(ns, "p1"), {"metadata": {"labels": {"c": "3"}}}, patch_type="merge")
        assert m["metadata"]["labels"]["c"] == "3"
        j = await c.patch(PODS.path(ns, "p1"), [{"op": "remove", "path": "/metadata/labels/a"}], patch_type="json")
        assert "a" not in j["metadata"]["labels"]
        s = await c.patch(PODS.path(ns, "p1"), {"metadata": {"labels": {"d": "4"}}}, patch_type="strategic")
        assert s["metadata"]["labels"]["d"] == "4"
        ap = await c.patch(PODS.path(ns, "p1"), {"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": "p1", "annotations": {"x": "y"}}}, patch_type="apply", params={"fieldManager": "t", "force": True})
        assert ap["metadata"]["annotations"]["x"] == "y"
        # subresources: status, binding
        st = await c.patch(PODS.path(ns, "p1", "status"), {"status": {"phase": "Running"}}, patch_type="strategic")
        assert st["status"]["phase"] == "Running"
        await c.create(PODS.path(ns), pod("p2"))
        await c.create(PODS.path(ns, "p2", "binding"), {"apiVersion": "v1", "kind": "Binding",
                                                        "metadata": {"name": "p2"},
                                                        "target": {"kind": "Node", "name": "n1"}})
        assert (await c.get(PODS.path(ns, "p2")))["spec"]["nodeName"] == "n1"
        lst = await c.list(PODS.path(ns), params={"limit": 1})
        assert len(lst["items"]) == 1 and lst["metadata"]["continue"]
        assert len((await c.list_all(PODS.path(ns), limit=1))["items"]) == 2
        # errors in upstream's form
        with pytest.raises(ApiError) as ei:
            await c.create(PODS.path(ns), pod("p1"))
        assert (ei.value.status, ei.value.reason) == (409, "AlreadyExists")
        with pytest.raises(ApiError) as ei:
            await c.patch(PODS.path(ns, "nope"), {}, patch_type="merge")
        assert (ei.value.status, ei.value.reason) == (404, "NotFound")
        assert ei.value.body["details"]["name"] == "nope"
        with pytest.raises(ValueError, match="patch_type"):
            await c.patch(PODS.path(ns, "p1"), {}, patch_type="yaml")
        with pytest.raises(ValueError, match="cluster-scoped"):
            NODES.path("default")
        d = await c.delete(PODS.path(ns, "p1"), params={"gracePeriodSeconds": 0})
        assert d["metadata"]["name"] == "p1"


async def test_watch_streams_events_and_errors(cfg: Config, ns: str):
    async with Client(cfg) as c:
        rv = (await c.list(PODS.path(ns)))["metadata"]["resourceVersion"]
        await c.create(PODS.path(ns), pod("w1"))
        await c.delete(PODS.path(ns, "w1"))
        seen = []
        async with aclosing(c.watch(PODS.path(ns), params={"resourceVersion": rv, "timeoutSeconds": 5})) as w:
            async for t, obj in w:
                seen.append((t, obj["metadata"]["name"]))
                if len(seen) == 2:
                    break
        assert seen == [("ADDED", "w1"), ("DELETED", "w1")]
        assert c.balancer.servers[0].watches == 0         # the closed watch was counted out
        with pytest.raises(ApiError) as ei:
            async for _ in c.watch(PODS.path(ns), params={"sendInitialEvents": True}):
                pass
        assert ei.value.status == 422 and "sendInitialEvents" in ei.value.message


async def test_429_is_retried_after_retry_after_for_every_verb():
    fake = FakeServer()
    too_many = status(429, "TooManyRequests", "Too many requests, please try again later.")
    fake.script("POST", "/api/v1/namespaces/x/pods", [(429, too_many, {"Retry-After": "1"}),
                                                       (201, {"kind": "Pod", "metadata": {"name": "a"}}, {})])
    await fake.start()
    try:
        async with Client(Config(servers=[fake.url], qps=0)) as c:
            t0 = time.monotonic()
            out = await c.create(PODS.path("x"), pod("a"))
            assert out["metadata"]["name"] == "a"
            assert time.monotonic() - t0 >= 0.9          # waited for Retry-After
            assert [m for m, *_ in fake.seen] == ["POST", "POST"]
    finally:
        await fake.stop()


async def test_5xx_is_retried_for_gets_only():
    fake = FakeServer()
    unavailable = status(503, "ServiceUnavailable", "try later")
    fake.script("GET", "/api/v1/namespaces/x/pods/a", [(503, unavailable, {}), (200, {"kind": "Pod"}, {})])
    fake.script("POST", "/api/v1/namespaces/x/pods", [(503, unavailable, {}), (201, {"kind": "Pod"}, {})])
    await fake.start()
    try:
        async with Client(Config(servers=[fake.url], qps=0)) as c:
            assert (await c.get(PODS.path("x", "a")))["kind"] == "Pod"
            with pytest.raises(ApiError) as ei:
                await c.create(PODS.path("x"), pod("a"))
            assert ei.value.status == 503
            assert [m for m, *_ in fake.seen] == ["GET", "GET", "POST"]
    finally:
        await fake.stop()


async def test_no_server_is_a_connection_error():
    async with Client(Config(servers=["http://127.0.0.1:9"], qps=0, max_retries=1)) as c:
        with pytest.raises(ApiConnectionError, match="no API server reachable"):
            await c.get("/version")


def test_token_bucket_burst_then_rate():
    now = [0.0]
    b = TokenBucket(qps=10, burst=3, clock=lambda: now[0])
    assert [b.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.reserve() == pytest.approx(0.1)
    assert b.reserve() == pytest.approx(0.2)          # callers queue up in order
    now[0] = 1.0
    assert b.reserve() == 0.0                          # refilled (capped at burst)
    assert TokenBucket(qps=0, burst=1).reserve() == 0.0


async def test_client_side_qps_limits_requests(cfg: Config):
    cfg.qps, cfg.burst = 20.0, 2
    async with Client(cfg) as c:
        t0 = time.monotonic()
        await asyncio.gather(*(c.get("/version") for _ in range(8)))
        # 2 from the burst, then 6 at 20/s: at least 0.3 s
        assert time.monotonic() - t0 >= 0.28


async def test_retry_after_is_carried_when_retries_run_out():
    fake = FakeServer()
    too_many = status(429, "TooManyRequests", "Too many requests, please try again later.")
    fake.script("GET", "/api/v1/pods", [(429, too_many, {"Retry-After": "7"})])
    await fake.start()
    try:
        async with Client(Config(servers=[fake.url], qps=0, max_retries=0)) as c:
            with pytest.raises(ApiError) as ei:
                await c.get(PODS.path())
            assert (ei.value.status, ei.value.reason, ei.value.retry_after) == (429, "TooManyRequests", 7.0)
            with pytest.raises(ApiError) as ei:
                async with aclosing(c.watch(PODS.path())) as w:
                    async for _ in w:
                        pass
            assert ei.value.retry_after == 7.0
    finally:
        await fake.stop()
