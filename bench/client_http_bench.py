"""``python -m bench client-http``: which HTTP library the client should use.

Starts ``kubeplane serve`` (plain HTTP on loopback), loads N pods (2.3 KB each) with
wrk, then times, for aiohttp and httpx (both async, one pooled client each, JSON parsed
with orjson in both): sequential small GETs, 16 concurrent small GETs, and a full LIST
of the N pods in one response. Rounds alternate between the libraries; medians printed.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import orjson
from rich.console import Console
from rich.table import Table

from .read_bench import Server, load_pods

NS = "client-http"


async def _aiohttp_client(base: str) -> tuple[Callable[[str], Awaitable[Any]], Callable[[], Awaitable[None]]]:
    import aiohttp

    s = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100))

    async def get(path: str) -> Any:
        async with s.get(base + path, headers={"Accept": "application/json"}) as r:
            return orjson.loads(await r.read())
    return get, s.close


async def _httpx_client(base: str) -> tuple[Callable[[str], Awaitable[Any]], Callable[[], Awaitable[None]]]:
    import httpx

    c = httpx.AsyncClient(base_url=base, limits=httpx.Limits(max_connections=100), timeout=120)

    async def get(path: str) -> Any:
        r = await c.get(path, headers={"Accept": "application/json"})
        return orjson.loads(r.content)
    return get, c.aclose


async def _round(make, base: str, gets: int, list_reps: int) -> dict[str, float]:
    get, close = await make(base)
    try:
        small = f"/api/v1/namespaces/{NS}"
        await get(small)
        t0 = time.perf_counter()
        for _ in range(gets):
            await get(small)
        seq = gets / (time.perf_counter() - t0)
        sem = asyncio.Semaphore(16)

        async def one() -> None:
            async with sem:
                await get(small)
        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(gets)))
        conc = gets / (time.perf_counter() - t0)
        lists = []
        for _ in range(list_reps):
            t0 = time.perf_counter()
            out = await get(f"/api/v1/namespaces/{NS}/pods?resourceVersion=0")
            lists.append(time.perf_counter() - t0)
            assert len(out["items"]) > 0
        return {"seq": seq, "conc": conc, "list": statistics.median(lists)}
    finally:
        await close()


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench client-http", description=__doc__)
    ap.add_argument("--pods", type=int, default=10_000)
    ap.add_argument("--gets", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    console = Console()
    with tempfile.TemporaryDirectory(prefix="bench-client-http-") as tmp:
        srv = Server(Path(tmp)).start()
        try:
            with console.status(f"loading {args.pods} pods"):
                load_pods(srv, NS, args.pods, "p-")
            base = f"http://127.0.0.1:{srv.http_port}"
            libs = {"aiohttp": _aiohttp_client, "httpx": _httpx_client}
            res: dict[str, list[dict[str, float]]] = {k: [] for k in libs}
            for r in range(args.rounds):
                for name, make in libs.items():
                    with console.status(f"round {r + 1}/{args.rounds}: {name}"):
                        res[name].append(asyncio.run(_round(make, base, args.gets, 3)))
        finally:
            srv.stop()
    t = Table(title=f"HTTP libraries, kubeplane serve on loopback, medians of {args.rounds} rounds")
    for col in ("library", "sequential GET/s", "16 concurrent GET/s", f"LIST {args.pods} pods (s)"):
        t.add_column(col, justify="right")
    for name, rs in res.items():
        t.add_row(name, f"{statistics.median(x['seq'] for x in rs):,.0f}",
                  f"{statistics.median(x['conc'] for x in rs):,.0f}",
                  f"{statistics.median(x['list'] for x in rs):.3f}")
    console.print(t)
    return 0
