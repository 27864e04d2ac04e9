"""Two one-off checks behind findings in docs/http-stack.md (not part of ``python -m bench http``).

    python bench/http_stacks/checks.py granian-defaults   # ~10 s
    python bench/http_stacks/checks.py orjson-retention   # ~2 s

``granian-defaults``: granian started from its CLI with its defaults (backlog 1024, so
backpressure 1024 requests per worker); 1,500 watch streams are opened, then a plain
``GET /_stats`` is tried, then 100 streams are closed.

``orjson-retention``: RSS of a fresh process that keeps 10,000 fan-out lines alive, as
returned by ``orjson.dumps`` and as exact-size copies (each mode in its own process).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


async def granian_defaults(streams: int = 1500) -> None:
    sys.path.insert(0, str(REPO))
    from bench import http_stacks as H
    from bench import procs

    H.raise_nofile()
    port = procs.free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "granian", "--interface", "asginl", "--loop", "uvloop", "--http", "1", "--no-ws",
         "--working-dir", str(HERE), "--port", str(port), "--log-level", "warning", "apps:asgi_app"],
        start_new_session=True,
    )
    try:
        time.sleep(3)
        loop = asyncio.get_running_loop()
        fan, req = H.Fan(), H.watch_request(port)
        conns = []
        for _ in range(streams):
            _, c = await loop.create_connection(lambda: H.WatchConn(fan, req), "127.0.0.1", port)
            conns.append(c)
        await asyncio.sleep(3)
        ok = lambda cs: sum(c.ready.done() and c.ready.exception() is None for c in cs)  # noqa: E731
        print(f"{ok(conns)} of {streams} watch streams got their response headers")
        ctl = await H.Control.open(port)
        try:
            print("GET /_stats:", await asyncio.wait_for(ctl.stats(), 3))
        except TimeoutError:
            print("GET /_stats: no response within 3 s")
        for c in conns[:100]:
            c.transport.abort()
        await asyncio.sleep(2)
        print(f"after closing 100 streams: {ok(conns[100:])} of the other {streams - 100} have their headers")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def orjson_retention(mode: str | None) -> None:
    if mode is None:
        for m in ("orjson", "copy"):
            subprocess.run([sys.executable, __file__, "orjson-retention", m], check=True)
        return
    import collections

    import psutil

    sys.path.insert(0, str(HERE))
    import apps

    me = psutil.Process()
    hub = apps.Hub()
    kept: collections.deque[bytes] = collections.deque()
    rss0 = me.memory_info().rss
    for _ in range(10_000):
        kept.append(hub.event_line(exact=mode == "copy"))
    grown = (me.memory_info().rss - rss0) / 2**20
    print(f"{mode:6}: RSS +{grown:.1f} MiB for {sum(map(len, kept)) / 2**20:.1f} MiB of lines kept")


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    if what == "granian-defaults":
        import uvloop

        uvloop.run(granian_defaults())
    elif what == "orjson-retention":
        orjson_retention(sys.argv[2] if len(sys.argv) > 2 else None)
    else:
        sys.exit(__doc__)
