"""HealthChecks: upstream healthz texts and codes for every mode, timeouts, shutdown, hooks."""
from __future__ import annotations

import asyncio
import logging

import orjson
import pytest

from kubeplane.apiserver.server.health import TEXT, HealthChecks, LogCheck
from kubeplane.logs import V


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(**kw) -> HealthChecks:
    kw.setdefault("log_check", lambda: None)
    return HealthChecks(**kw)


def failing(reason: str):
    def check() -> None:
        raise RuntimeError(reason)
    return check


async def get(h: HealthChecks, path: str, query: dict | None = None, method: str = "GET"):
    which, *rest = path.strip("/").split("/")
    return await h.serve(which, rest, query or {}, method)


async def test_ok_and_verbose():
    h = make()
    for ep in ("healthz", "livez", "readyz"):
        assert await get(h, ep) == (200, b"ok", TEXT)
    assert await get(h, "healthz", {"verbose": [""]}) == (
        200, b"[+]ping ok\n[+]log ok\nhealthz check passed\n", TEXT)
    assert await get(h, "livez", {"verbose": [""]}) == (
        200, b"[+]ping ok\n[+]log ok\nlivez check passed\n", TEXT)
    # readyz has shutdown, listed last even when checks are added after it
    h.add("etcd", lambda: None)
    h.add("etcd-readiness", lambda: None, endpoints=("readyz",))
    assert await get(h, "readyz", {"verbose": [""]}) == (
        200, b"[+]ping ok\n[+]log ok\n[+]etcd ok\n[+]etcd-readiness ok\n[+]shutdown ok\nreadyz check passed\n", TEXT)
    assert h.names("healthz") == ["ping", "log", "etcd"]


async def test_failing_check_withholds_reason_and_logs_it(caplog):
    h = make()
    h.add("etcd", failing("etcdserver: request timed out"))
    caplog.set_level(V(2), logger="kubeplane")
    expect = b"[+]ping ok\n[+]log ok\n[-]etcd failed: reason withheld\nhealthz check failed\n"
    assert await get(h, "healthz") == (500, expect, TEXT)
    assert await get(h, "healthz", {"verbose": [""]}) == (500, expect, TEXT)
    rec = [r for r in caplog.records if r.getMessage() == "Health check failed"][-1]
    assert rec.kv["failed"] == "etcd"
    assert rec.kv["reasons"] == "[-]etcd failed: etcdserver: request timed out"


async def test_async_check_failure_and_pass():
    h = make()

    async def boom() -> None:
        await asyncio.sleep(0)
        raise ConnectionError("connection refused")

    async def fine() -> None:
        await asyncio.sleep(0)

    h.add("etcd", boom)
    h.add("informer-sync", fine, endpoints=("readyz",))
    status, body, _ = await get(h, "readyz")
    assert status == 500
    assert body == (b"[+]ping ok\n[+]log ok\n[-]etcd failed: reason withheld\n[+]informer-sync ok\n"
                    b"[+]shutdown ok\nreadyz check failed\n")
    assert await get(h, "readyz/etcd") == (500, b"internal server error: connection refused\n", TEXT)
    assert await get(h, "readyz/informer-sync") == (200, b"ok", TEXT)


async def test_exclude():
    h = make()
    h.add("etcd", failing("down"))
    # excluding the failing check makes the endpoint pass; non-verbose is just "ok"
    assert await get(h, "healthz", {"exclude": ["etcd"]}) == (200, b"ok", TEXT)
    assert await get(h, "healthz", {"exclude": ["etcd"], "verbose": [""]}) == (
        200, b"[+]ping ok\n[+]log ok\n[+]etcd excluded: ok\nhealthz check passed\n", TEXT)
    # unknown names: one warn line, sorted and quoted, also in a failing body
    q = {"exclude": ["zeta", "log", "alpha"], "verbose": [""]}
    assert await get(h, "healthz", q) == (
        500,
        b"[+]ping ok\n[+]log excluded: ok\n[-]etcd failed: reason withheld\n"
        b'warn: some health checks cannot be excluded: no matches for "alpha","zeta"\n'
        b"healthz check failed\n", TEXT)


async def test_single_checks_and_not_found():
    h = make()
    assert await get(h, "healthz/ping") == (200, b"ok", TEXT)
    h.add("etcd", failing("etcd client connection not yet established"))
    assert await get(h, "livez/etcd") == (
        500, b"internal server error: etcd client connection not yet established\n", TEXT)
    for path in ("healthz/nope", "livez/shutdown", "healthz/poststarthook"):
        status, body, ctype = await get(h, path)
        # upstream: no such path on the mux, Go's http.NotFound (plain text, not a Status)
        assert (status, body, ctype) == (404, b"404 page not found\n", TEXT), path
    assert (await get(h, "healthz", method="POST"))[0] == 405
    assert (await get(h, "healthz", method="HEAD"))[0] == 500
    assert (await get(h, "healthz/ping", method="HEAD"))[:2] == (200, b"ok")


async def test_hanging_check_times_out_and_is_cancelled():
    h = make(timeout=0.2)
    cancelled = asyncio.Event()

    async def hang() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def stubborn() -> None:      # swallows cancellation: must not hold the answer up
        for _ in range(3):
            try:
                await asyncio.sleep(0.5)
            except asyncio.CancelledError:
                pass

    h.add("etcd", hang)
    h.add("stubborn", stubborn, endpoints=("livez",))
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    assert await get(h, "healthz") == (
        500, b"[+]ping ok\n[+]log ok\n[-]etcd failed: reason withheld\nhealthz check failed\n", TEXT)
    assert loop.time() - t0 < 1.0
    await asyncio.wait_for(cancelled.wait(), 1)
    assert await get(h, "healthz/etcd") == (500, b"internal server error: timed out after 0.2s\n", TEXT)
    t0 = loop.time()
    assert (await get(h, "livez/stubborn"))[1] == b"internal server error: timed out after 0.2s\n"
    assert loop.time() - t0 < 1.0


async def test_checks_run_concurrently():
    h = make(timeout=0.35)
    for i in range(3):
        async def slow() -> None:
            await asyncio.sleep(0.15)
        h.add(f"slow-{i}", slow)
    # one after another they would need 0.45 s and time out; together they pass
    assert await get(h, "healthz") == (200, b"ok", TEXT)


async def test_shutdown_fails_readyz_only():
    h = make()
    assert await get(h, "readyz/shutdown") == (200, b"ok", TEXT)
    h.set_shutting_down()
    assert h.shutting_down
    assert await get(h, "readyz") == (
        500, b"[+]ping ok\n[+]log ok\n[-]shutdown failed: reason withheld\nreadyz check failed\n", TEXT)
    assert await get(h, "readyz/shutdown") == (500, b"internal server error: process is shutting down\n", TEXT)
    assert await get(h, "healthz") == (200, b"ok", TEXT)
    assert await get(h, "livez") == (200, b"ok", TEXT)
    assert await get(h, "readyz", {"exclude": ["shutdown"]}) == (200, b"ok", TEXT)


async def test_poststarthook_not_finished_until_done():
    h = make()
    done = h.add_poststarthook("start-informers")
    for ep in ("healthz", "livez", "readyz"):
        status, body, _ = await get(h, ep)
        assert status == 500
        assert b"[-]poststarthook/start-informers failed: reason withheld\n" in body
        assert body.endswith(f"{ep} check failed\n".encode())
    assert await get(h, "readyz/poststarthook/start-informers") == (
        500, b"internal server error: not finished\n", TEXT)
    done()
    assert await get(h, "readyz/poststarthook/start-informers") == (200, b"ok", TEXT)
    assert await get(h, "readyz", {"verbose": [""]}) == (
        200, b"[+]ping ok\n[+]log ok\n[+]poststarthook/start-informers ok\n[+]shutdown ok\nreadyz check passed\n",
        TEXT)
    with pytest.raises(ValueError):
        h.add_poststarthook("start-informers")


async def test_livez_grace_period_covers_boot_checks_only():
    clock = FakeClock()
    h = make(livez_grace_period=10, clock=clock)
    h.add_poststarthook("slow-hook")
    h.add("etcd", failing("down"))
    status, body, _ = await get(h, "livez", {"exclude": ["etcd"], "verbose": [""]})
    assert status == 200 and b"[+]poststarthook/slow-hook ok\n" in body
    assert (await get(h, "readyz", {"exclude": ["etcd"]}))[0] == 500   # no grace on readyz
    assert (await get(h, "livez"))[0] == 500                             # etcd gets no grace
    clock.now += 10
    assert (await get(h, "livez", {"exclude": ["etcd"]}))[0] == 500


async def test_log_check():
    clock = FakeClock()
    lc = LogCheck(clock=clock, start_thread=False)
    h = HealthChecks(log_check=lc)
    assert await get(h, "livez/log") == (200, b"ok", TEXT)
    clock.now += 119
    assert await get(h, "livez/log") == (200, b"ok", TEXT)
    clock.now += 1
    assert await get(h, "livez/log") == (500, b"internal server error: logging blocked\n", TEXT)
    lc.flush_now()
    assert await get(h, "livez/log") == (200, b"ok", TEXT)


async def test_default_log_check_passes():
    h = HealthChecks()
    assert await get(h, "healthz/log") == (200, b"ok", TEXT)


def test_add_validation():
    h = make()
    with pytest.raises(ValueError):
        h.add("ping", lambda: None)
    with pytest.raises(ValueError):
        h.add("x", lambda: None, endpoints=("metrics",))
    with pytest.raises(ValueError):
        h.add("", lambda: None)


async def test_unknown_exclude_is_logged(caplog):
    h = make()
    caplog.set_level(logging.WARNING, logger="kubeplane")
    await get(h, "livez", {"exclude": ["nope"]})
    rec = [r for r in caplog.records if r.name == "kubeplane.apiserver.healthz"][-1]
    assert rec.levelno == logging.WARNING and rec.kv["names"] == ["nope"]


async def test_cancelled_request_cancels_its_checks():
    h = make(timeout=30)
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def hang() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    h.add("etcd", hang)
    req = asyncio.ensure_future(get(h, "healthz"))
    await asyncio.wait_for(started.wait(), 1)
    req.cancel()
    with pytest.raises(asyncio.CancelledError):
        await req
    await asyncio.wait_for(cancelled.wait(), 1)


async def test_all_set_informer_sync():
    from kubeplane.apiserver.server.health import all_set

    events = {"pods": asyncio.Event(), "nodes": asyncio.Event(), "leases": asyncio.Event()}
    h = make()
    h.add("informer-sync", all_set(events), endpoints=("readyz",))
    events["leases"].set()
    assert await get(h, "readyz/informer-sync") == (
        500, b"internal server error: 2 informers not started yet: [nodes pods]\n", TEXT)
    events["pods"].set()
    events["nodes"].set()
    assert await get(h, "readyz/informer-sync") == (200, b"ok", TEXT)
