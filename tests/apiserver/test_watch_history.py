"""Watch history checker: under concurrent writes, reconnects and server restarts, every
watcher sees every change to its objects exactly once, in revision order, with no gaps.

Writers create, update (data and labels) and delete configmaps in two namespaces while
five watchers (cluster-wide and namespace-scoped, some with label selectors) watch like
reflectors: each disconnects now and then (client-side cut or a short timeoutSeconds) and
resumes from the last resourceVersion it saw (events and bookmarks). In the middle the
`kubeplane serve` child is restarted twice on the same data dir, once with SIGTERM and
once with SIGKILL; watchers reconnect from their last RV.

The oracle is the store itself: after the run the test opens the EmbeddedStore directly
and replays the configmaps prefix from the start revision with prev_kv; each watcher's
expected stream follows from its filter as upstream's cacher derives it (new and old
object both match: MODIFIED, only the new one: ADDED, only the old one: DELETED).

A 410 (relist) is handled like a reflector would (LIST, continue from its revision; the
check then skips the events the relist legitimately jumped over), and counted: resuming
from a recent RV after a restart must not force a relist (issue 4), so the test demands
zero relists.
"""
from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from server_procs import ServerProc

NAMESPACES = ("hist-a", "hist-b")
WRITERS = 4
OPS_PER_WRITER = 75          # 300 writes in all
RESTART_AT = (100, 200)      # successful writes before the SIGTERM and the SIGKILL restart
SEED = 20240417


@dataclass
class Spec:
    name: str
    namespace: str | None
    group: str | None        # labelSelector grp=<group>

    def matches(self, ns: str, labels: dict[str, str] | None) -> bool:
        if self.namespace is not None and ns != self.namespace:
            return False
        return self.group is None or (labels or {}).get("grp") == self.group


SPECS = [
    Spec("all", None, None),
    Spec("ns-a", "hist-a", None),
    Spec("ns-b-x", "hist-b", "x"),
    Spec("all-y", None, "y"),
    Spec("ns-a-x", "hist-a", "x"),
]


@dataclass
class WatchState:
    spec: Spec
    last_rv: int
    events: list[tuple] = field(default_factory=list)   # (type, ns, name, rv, data or None)
    relists: list[tuple[int, int]] = field(default_factory=list)   # (from rv, list rv)
    connects: int = 0
    throttled: int = 0
    problems: list[str] = field(default_factory=list)


class Run:
    def __init__(self, server: ServerProc):
        self.server = server
        self.writes = 0
        self.write_failures = 0
        self.writers_done = 0
        self.stop_watching = asyncio.Event()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.http_port}{path}"

    async def request(self, session: aiohttp.ClientSession, method: str, path: str,
                      body: Any = None, ctype: str = "application/json") -> tuple[int, Any] | None:
        """One API call. Retries while the server is down (connection refused: the request
        was never sent); None when the connection broke mid-request (outcome unknown)."""
        deadline = time.monotonic() + 20
        while True:
            try:
                async with session.request(method, self.url(path),
                                           data=orjson.dumps(body) if body is not None else None,
                                           headers={"Content-Type": ctype} if body is not None else None) as r:
                    data = await r.read()
                    if r.status == 429:
                        await asyncio.sleep(min(float(r.headers.get("Retry-After", "1")), 1.0))
                        continue
                    return r.status, (orjson.loads(data) if data else None)
            except aiohttp.ClientConnectorError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
            except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError):
                return None

    # --- writers ------------------------------------------------------------------------------
    async def writer(self, idx: int) -> None:
        rng = random.Random(SEED * 31 + idx)
        ns = NAMESPACES[idx % len(NAMESPACES)]
        base = f"/api/v1/namespaces/{ns}/configmaps"
        names = [f"w{idx}-{k}" for k in range(6)]
        alive: dict[str, str] = {}       # name -> grp, as far as this writer knows
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as s:
            for op in range(OPS_PER_WRITER):
                name = rng.choice(names)
                roll = rng.random()
                if name not in alive:
                    grp = rng.choice("xy")
                    res = await self.request(s, "POST", base, {"metadata": {"name": name, "labels": {"grp": grp}},
                                                                "data": {"v": f"{idx}.{op}"}})
                    ok = res is not None and res[0] == 201
                    if ok or (res is not None and res[0] == 409):
                        alive[name] = grp
                elif roll < 0.5:
                    res = await self.request(s, "PATCH", f"{base}/{name}", {"data": {"v": f"{idx}.{op}"}},
                                             "application/merge-patch+json")
                    ok = res is not None and res[0] == 200
                elif roll < 0.75:
                    grp = "y" if alive[name] == "x" else "x"
                    res = await self.request(s, "PATCH", f"{base}/{name}", {"metadata": {"labels": {"grp": grp}}},
                                             "application/merge-patch+json")
                    ok = res is not None and res[0] == 200
                    if ok:
                        alive[name] = grp
                else:
                    res = await self.request(s, "DELETE", f"{base}/{name}")
                    ok = res is not None and res[0] == 200
                    if ok or (res is not None and res[0] == 404):
                        alive.pop(name, None)
                if res is not None and res[0] == 404:
                    alive.pop(name, None)
                if ok:
                    self.writes += 1
                else:
                    self.write_failures += 1
                    if res is None:      # unknown outcome: learn the truth
                        got = await self.request(s, "GET", f"{base}/{name}")
                        if got is not None and got[0] == 200:
                            alive[name] = got[1]["metadata"].get("labels", {}).get("grp", "x")
                        elif got is not None and got[0] == 404:
                            alive.pop(name, None)
                await asyncio.sleep(rng.uniform(0, 0.03))
        self.writers_done += 1

    # --- watchers -----------------------------------------------------------------------------
    async def watcher(self, st: WatchState, seed: int) -> None:
        rng = random.Random(seed)
        spec = st.spec
        base = f"/api/v1/namespaces/{spec.namespace}/configmaps" if spec.namespace else "/api/v1/configmaps"
        sel = f"&labelSelector=grp%3D{spec.group}" if spec.group else ""
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=2, sock_read=10)
        async with aiohttp.ClientSession(timeout=timeout) as s:
            while not self.stop_watching.is_set():
                path = (f"{base}?watch=1&resourceVersion={st.last_rv}&allowWatchBookmarks=true"
                        f"&timeoutSeconds={rng.randint(1, 3)}{sel}")
                cut = rng.randint(3, 40)     # the client drops the connection after this many events
                try:
                    async with s.get(self.url(path)) as r:
                        st.connects += 1
                        if r.status == 429:
                            st.throttled += 1
                            if "Retry-After" not in r.headers:
                                st.problems.append("429 without Retry-After")
                            await asyncio.sleep(min(float(r.headers.get("Retry-After", "1")), 1.0))
                            continue
                        if r.status == 410:
                            await self.relist(s, st, base, sel)
                            continue
                        if r.status != 200:
                            st.problems.append(f"watch answered {r.status}: {(await r.read())[:200]!r}")
                            await asyncio.sleep(0.1)
                            continue
                        n = 0
                        while True:
                            line = await r.content.readline()
                            if not line.endswith(b"\n"):
                                break            # end of stream (or a cut mid-line)
                            if not line.strip():
                                continue
                            ev = orjson.loads(line)
                            kind, obj = ev["type"], ev["object"]
                            if kind == "ERROR":
                                if obj.get("code") == 410:
                                    await self.relist(s, st, base, sel)
                                else:
                                    st.problems.append(f"ERROR event {obj}")
                                break
                            rv = int(obj["metadata"]["resourceVersion"])
                            if kind == "BOOKMARK":
                                if rv < st.last_rv:
                                    st.problems.append(f"bookmark {rv} older than last seen {st.last_rv}")
                                st.last_rv = max(st.last_rv, rv)
                                continue
                            md = obj["metadata"]
                            st.events.append((kind, md["namespace"], md["name"], rv, obj.get("data")))
                            st.last_rv = rv
                            n += 1
                            if n >= cut:
                                break
                except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError):
                    await asyncio.sleep(0.05)

    async def relist(self, s: aiohttp.ClientSession, st: WatchState, base: str, sel: str) -> None:
        while True:
            res = await self.request(s, "GET", f"{base}?{sel.lstrip('&')}")
            if res is not None and res[0] == 200:
                new = int(res[1]["metadata"]["resourceVersion"])
                st.relists.append((st.last_rv, new))
                st.last_rv = new
                return
            await asyncio.sleep(0.1)

    # --- restarts -----------------------------------------------------------------------------
    async def restarter(self, log: list[str]) -> None:
        for i, at in enumerate(RESTART_AT):
            while self.writes < at and self.writers_done < WRITERS:
                await asyncio.sleep(0.01)
            if i == 0:
                await asyncio.to_thread(self.server.stop)            # SIGTERM
                log.append(f"SIGTERM restart after {self.writes} writes")
            else:
                proc = self.server.proc
                assert proc is not None
                proc.kill()                                          # SIGKILL
                await asyncio.to_thread(proc.wait)
                self.server.proc = None
                log.append(f"SIGKILL restart after {self.writes} writes")
            await asyncio.to_thread(self.server.start)


def expected_stream(spec: Spec, events: list, start: int, end: int) -> list[tuple]:
    """What a watcher with `spec` must see for store events in (start, end]."""
    out = []
    for ev in events:
        rev = ev.kv.mod_revision
        if not start < rev <= end:
            continue
        ns, name = ev.kv.key.decode().split("/")[-2:]
        old = orjson.loads(ev.prev_kv.value) if ev.prev_kv is not None else None
        old_ok = old is not None and spec.matches(ns, (old.get("metadata") or {}).get("labels"))
        if ev.type.name == "PUT":
            new = orjson.loads(ev.kv.value)
            if ev.kv.create_revision == rev:
                old_ok = False
            new_ok = spec.matches(ns, (new.get("metadata") or {}).get("labels"))
            if new_ok:
                out.append(("MODIFIED" if old_ok else "ADDED", ns, name, rev, new.get("data")))
            elif old_ok:
                out.append(("DELETED", ns, name, rev, None))
        elif old_ok:
            out.append(("DELETED", ns, name, rev, None))
    return out


def comparable(evs: list[tuple]) -> list[tuple]:
    """DELETED events are compared by identity and revision only (their content is
    checked in test_read_path.py)."""
    return [(t, ns, n, rv, None if t == "DELETED" else data) for t, ns, n, rv, data in evs]


async def oracle_events(data_dir: Path, start: int, end: int) -> list:
    from kubeplane.store.mvcc import EmbeddedStore
    from kubeplane.store.types import prefix_end

    store = EmbeddedStore(data_dir / "store")
    await store.start()
    try:
        prefix = b"/registry/configmaps/"
        w = await store.watch(prefix, prefix_end(prefix), start_revision=start + 1, prev_kv=True)
        out: list = []

        async def read() -> None:
            async for resp in w:
                out.extend(resp.events)
                if out and out[-1].kv.mod_revision >= end:
                    return

        try:
            await asyncio.wait_for(read(), 10)
        finally:
            await w.cancel()
        return out
    finally:
        await store.close()


async def test_every_watcher_sees_every_change_once_in_order(tmp_path):
    t_start = time.monotonic()
    data_dir = tmp_path / "data"
    server = await asyncio.to_thread(ServerProc(data_dir).start)
    run = Run(server)
    log: list[str] = []
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as s:
            for ns in NAMESPACES:
                res = await run.request(s, "POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
                assert res is not None and res[0] == 201, res
            res = await run.request(s, "GET", "/api/v1/configmaps")
            assert res is not None and res[0] == 200
            start = int(res[1]["metadata"]["resourceVersion"])
            states = [WatchState(spec, start) for spec in SPECS]
            watchers = [asyncio.create_task(run.watcher(st, SEED + i)) for i, st in enumerate(states)]
            await asyncio.sleep(0.2)
            await asyncio.wait_for(asyncio.gather(run.restarter(log), *(run.writer(i) for i in range(WRITERS))), 40)
            # markers: one object per namespace and group, so every watcher has a last event to wait for
            markers: list[tuple[str, str, int]] = []
            for ns in NAMESPACES:
                for grp in "xy":
                    res = await run.request(s, "POST", f"/api/v1/namespaces/{ns}/configmaps",
                                            {"metadata": {"name": f"marker-{grp}", "labels": {"grp": grp}}})
                    assert res is not None and res[0] == 201, res
                    markers.append((ns, grp, int(res[1]["metadata"]["resourceVersion"])))
            end = max(rv for _, _, rv in markers)
            deadline = time.monotonic() + 15
            for st in states:
                want = max(rv for ns, grp, rv in markers if st.spec.matches(ns, {"grp": grp}))
                while st.last_rv < want and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
            run.stop_watching.set()
            for t in watchers:
                t.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
    finally:
        await asyncio.to_thread(server.stop)

    truth = await oracle_events(data_dir, start, end)
    assert truth and truth[-1].kv.mod_revision == end
    failures: list[str] = []
    report = [f"{run.writes} writes ({run.write_failures} failed or unknown), revisions {start}..{end}, "
              + "; ".join(log) + f", {time.monotonic() - t_start:.1f}s"]
    for st in states:
        got = [e for e in st.events if e[3] <= end]
        report.append(f"watcher {st.spec.name}: {len(got)} events, {st.connects} connects, "
                      f"{len(st.relists)} relists, {st.throttled} throttled (429)")
        failures += [f"{st.spec.name}: {p}" for p in st.problems]
        # compare segment by segment: a relist jumps from its old RV to the list's RV
        bounds = [start] + [x for pair in st.relists for x in pair] + [end]
        for lo, hi in zip(bounds[::2], bounds[1::2]):
            want = comparable(expected_stream(st.spec, truth, lo, hi))
            have = comparable([e for e in got if lo < e[3] <= hi])
            if have != want:
                missing = [e for e in want if e not in have][:5]
                extra = [e for e in have if e not in want][:5]
                dups = len(have) - len({repr(e) for e in have})
                failures.append(f"{st.spec.name} ({lo}..{hi}]: {len(have)} events, expected {len(want)}; "
                                f"missing {missing}, unexpected {extra}, duplicates {dups}")
        if not got:
            failures.append(f"{st.spec.name}: saw nothing")
    relisted = [st.spec.name for st in states if st.relists]
    print("\n".join(report))
    assert not failures, "\n".join(report + failures)
    assert not relisted, f"watchers had to relist (410) after resuming from a recent RV: {relisted}\n" + "\n".join(report)
    assert run.writes >= 200 and len(log) == 2
