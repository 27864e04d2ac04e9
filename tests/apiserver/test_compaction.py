"""What clients see when the store has compacted the revision they ask for.

The API server runs in process here, over an EmbeddedStore the test can compact.
"""
from __future__ import annotations

import aiohttp
import orjson
import pytest

from kubeplane.apiserver.server.apiserver import APIServer, ServerConfig
from kubeplane.store.mvcc import EmbeddedStore


@pytest.fixture(params=["cache", "store"])
async def api(tmp_path, request):
    """The server with its watch caches (configmaps' event buffer capped at 3 events, so
    the window is easy to leave) and without them (reads straight from the store)."""
    store = EmbeddedStore(tmp_path / "store")
    config = ServerConfig(data_dir=str(tmp_path), secure_port=-1, http_listen="127.0.0.1:0",
                          watch_cache=request.param == "cache", watch_cache_sizes="configmaps#3")
    server = APIServer(config, store=store)
    await server.start()
    async with aiohttp.ClientSession(f"http://127.0.0.1:{server.http_port}") as session:
        yield server, store, session
    await server.close()
    await store.close()


async def _post(session, path, body):
    async with session.post(path, data=orjson.dumps(body), headers={"Content-Type": "application/json"}) as r:
        assert r.status == 201, await r.text()
        return await r.json()


async def test_continue_token_after_compaction_is_410_with_fresh_token(api):
    server, store, s = api
    for i in range(5):
        await _post(s, "/api/v1/namespaces/default/configmaps", {"metadata": {"name": f"c{i}"}})
    async with s.get("/api/v1/namespaces/default/configmaps?limit=2") as r:
        page = await r.json()
    token = page["metadata"]["continue"]
    await _post(s, "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "c9"}})
    await store.compact(await store.current_revision())
    async with s.get(f"/api/v1/namespaces/default/configmaps?limit=2&continue={token}") as r:
        assert r.status == 410
        body = await r.json()
    assert body["reason"] == "Expired" and body["message"].startswith("The provided continue parameter is too old")
    fresh = body["metadata"]["continue"]
    assert orjson.loads(__import__("base64").urlsafe_b64decode(fresh + "=" * (-len(fresh) % 4)))["rv"] == -1
    names = []
    while fresh:
        async with s.get(f"/api/v1/namespaces/default/configmaps?limit=2&continue={fresh}") as r:
            assert r.status == 200
            page = await r.json()
        names += [o["metadata"]["name"] for o in page["items"]]
        fresh = page["metadata"].get("continue")
    assert names == ["c2", "c3", "c4", "c9"]


async def test_watch_from_a_revision_out_of_the_window_gets_410_error_event(api):
    """Out of the window: older than the cache's event buffer, or (without the cache)
    compacted in the store."""
    server, store, s = api
    first = await _post(s, "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "w0"}})
    old_rv = int(first["metadata"]["resourceVersion"])
    for i in range(1, 4):
        await _post(s, "/api/v1/namespaces/default/configmaps", {"metadata": {"name": f"w{i}"}})
    for i in range(4, 8):   # more changes than the cache's 3-event buffer holds
        await _post(s, "/api/v1/namespaces/default/configmaps", {"metadata": {"name": f"w{i}"}})
    now = await store.current_revision()
    await store.compact(now)
    async with s.get(f"/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={old_rv}"
                     f"&timeoutSeconds=5") as r:
        assert r.status == 200
        lines = [orjson.loads(x) for x in (await r.read()).splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0]["type"] == "ERROR"
    st = lines[0]["object"]
    assert st["code"] == 410 and st["reason"] == "Expired"
    assert st["message"].startswith(f"too old resource version: {old_rv}")
    # a list at a compacted exact revision is 410 too
    async with s.get(f"/api/v1/namespaces/default/configmaps?resourceVersion={old_rv}"
                     f"&resourceVersionMatch=Exact") as r:
        assert r.status == 410 and (await r.json())["reason"] == "Expired"
