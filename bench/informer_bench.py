"""``python -m bench informer``: an informer's initial sync of many pods.

Starts ``kubeplane serve`` (plain HTTP on loopback), loads N pods (2.3 KB each plus the
managedFields the server adds) with wrk, then syncs one pod informer per case, each in a
fresh child process (clean RSS): WatchList or paginated LIST+WATCH, with the default
transform (managedFields stripped) or without any. Each child reports the time to
`has_synced()`, the resident memory after sync (after gc) above its baseline, and its
peak RSS. Medians over --reps. Transforms: strip (the default, managedFields dropped),
keep (none), intern (stripped, then equal short strings shared: strip_and_intern).

    python -m bench informer --pods 150000
    python -m bench.informer_bench --child URL NS watchlist strip    # one measurement
"""
from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NS = "informer-bench"
CASES = [("watchlist", "strip"), ("watchlist", "keep"), ("watchlist", "intern"), ("list", "strip"), ("list", "keep")]
TRANSFORMS = {"strip": "managedFields stripped (default)", "keep": "none", "intern": "stripped + strings shared"}


def _rss() -> int:
    import gc

    import psutil

    gc.collect()
    return psutil.Process().memory_info().rss


async def _child(url: str, ns: str, path: str, transform: str) -> dict:
    from kubeplane.client import PODS, Client, Config, SharedInformerFactory, strip_and_intern, strip_managed_fields

    tf = {"strip": strip_managed_fields, "keep": None, "intern": strip_and_intern}[transform]
    base = _rss()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = ru0.ru_utime + ru0.ru_stime
    async with Client(Config(servers=[url], qps=0)) as c:
        f = SharedInformerFactory(c, transform=tf,
                                  use_watch_list=None if path == "watchlist" else False)
        inf = f.informer(PODS, namespace=ns)
        t0 = time.perf_counter()
        await f.start()
        ok = await f.wait_for_cache_sync(1800)
        secs = time.perf_counter() - t0
        if not ok:
            raise SystemExit("informer did not sync")
        st = dict(inf.reflector.stats)
        n = len(inf.indexer)
        # what the collector's next automatic young collections will do once the sync's
        # GC pause is over: traverse everything allocated during it (measured, not guessed)
        import gc

        t1 = time.perf_counter()
        gc.collect(1)
        gc_after = time.perf_counter() - t1
        rss = _rss()
        await f.stop()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"gc_after": gc_after, "seconds": secs, "cpu": ru.ru_utime + ru.ru_stime - cpu0, "objects": n, "rss_delta": rss - base, "rss": rss, "baseline": base,
            "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "stats": st}


def _measure(url: str, ns: str, path: str, transform: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench.informer_bench", "--child", url, ns, path, transform],
                         capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"child failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--child":
        print(json.dumps(asyncio.run(_child(*argv[1:5]))))
        return 0
    from rich.console import Console
    from rich.table import Table

    from .read_bench import Server, load_pods

    ap = argparse.ArgumentParser(prog="python -m bench informer", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pods", type=int, default=150_000)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--cases", default=",".join(f"{p}/{t}" for p, t in CASES),
                    help="comma-separated path/transform among watchlist|list / strip|keep|intern")
    args = ap.parse_args(argv)
    cases = [tuple(c.split("/")) for c in args.cases.split(",")]
    console = Console()
    results: dict[tuple[str, ...], list[dict]] = {c: [] for c in cases}
    with tempfile.TemporaryDirectory(prefix="bench-informer-") as tmp:
        srv = Server(Path(tmp)).start()
        try:
            with console.status(f"loading {args.pods:,} pods with wrk"):
                rate = load_pods(srv, NS, args.pods, "p-")
            console.print(f"loaded {args.pods:,} pods ({rate:,.0f}/s); server RSS {srv.rss() / 2**20:,.0f} MiB")
            url = f"http://127.0.0.1:{srv.http_port}"
            for r in range(args.reps):
                for case in cases:
                    with console.status(f"rep {r + 1}/{args.reps}: {case[0]}, transform {case[1]}"):
                        res = _measure(url, NS, *case)
                    results[case].append(res)
                    console.print(f"  {case}: {res['seconds']:.1f} s (client CPU {res['cpu']:.1f} s; "
                                  f"first young GC after sync {res['gc_after']:.2f} s), +{res['rss_delta'] / 2**20:,.0f} MiB "
                                  f"(peak {res['peak_rss'] / 2**20:,.0f} MiB), {res['objects']:,} objects")
        finally:
            srv.stop()
    t = Table(title=f"Informer initial sync, {args.pods:,} pods, medians of {args.reps}")
    for col in ("path", "transform", "time to sync (s)", "client CPU (s)", "pods/s", "RSS after sync - baseline (MiB)",
                "peak RSS (MiB)", "bytes/pod"):
        t.add_column(col, justify="right")
    for (path, tf), rs in results.items():
        secs = statistics.median(x["seconds"] for x in rs)
        delta = statistics.median(x["rss_delta"] for x in rs)
        t.add_row(path, TRANSFORMS[tf], f"{secs:.1f}", f"{statistics.median(x['cpu'] for x in rs):.1f}",
                  f"{args.pods / secs:,.0f}", f"{delta / 2**20:,.0f}",
                  f"{statistics.median(x['peak_rss'] for x in rs) / 2**20:,.0f}", f"{delta / args.pods:,.0f}")
    console.print(t)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
