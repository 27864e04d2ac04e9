"""What flow control and metrics cost: GET throughput with both on vs both off.

Two `kubeplane serve` processes run side by side in one run, identical but for
`--enable-priority-and-fairness` and `--enable-metrics`:

- on:  APF (the bootstrap configuration) and /metrics, as `kubeplane serve` runs;
- off: `--enable-priority-and-fairness=false --enable-metrics=false` (the max-inflight
  limits still apply, as upstream without APF).

wrk GETs one 2.3 KB pod (resourceVersion=0, from the watch cache) over HTTPS with 32
connections, as a user from a `--token-auth-file` (groups: none but
system:authenticated), so each request is classified by the FlowSchemas and admitted
through the global-default priority level's queues: the path an ordinary client takes,
not the exempt one the admin token would take. Rounds alternate between the servers
(on, off, on, off, ...) so drift on the shared machine hits both; the figure is the
ratio of the medians.

    python -m bench apf [--rounds 5] [--seconds 8] [--conns 32]
    python -m bench apf --in-process

``--in-process`` times the same GET through the API server's app object in this process
(no HTTP, no TLS), microseconds per request with APF and metrics each on and off: where
the difference comes from.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

from .read_bench import Server, _call, _make_ns, _pod_json

TOKEN = "bench-apf-token-0123456789"

GET_LUA = r"""
function init(args)
  req = wrk.format("GET", args[1], {["Authorization"] = "Bearer " .. args[2], ["Accept"] = "application/json"})
end
function request()
  return req
end
"""


def _wrk(url: str, path: str, seconds: int, conns: int, threads: int) -> tuple[float, int]:
    import re

    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(GET_LUA)
        script = f.name
    try:
        out = subprocess.run(["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{seconds}s", "-s", script,
                              url + path, "--", path, TOKEN], capture_output=True, text=True, timeout=seconds + 60)
    finally:
        os.unlink(script)
    text = out.stdout + out.stderr
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if not m:
        raise RuntimeError("wrk failed: " + text[-2000:])
    return float(m.group(1)), int(bad.group(1)) if bad else 0


class _Conn:
    """What the app needs of a connection (a request that never reaches a socket)."""

    class transport:  # noqa: N801
        @staticmethod
        def get_extra_info(*_a: object) -> None:
            return None

        @staticmethod
        def is_closing() -> bool:
            return False


async def _app_get_us(apf: bool, metrics: bool, tokens: Path, n: int) -> float:
    """Best of 5 rounds of n GETs through App.__call__, us per request."""
    import gc
    import time

    import orjson

    from kubeplane.apiserver.transport.http import Request
    from kubeplane.apiserver.server.apiserver import APIServer, ServerConfig
    from kubeplane.store.mvcc import EmbeddedStore

    with tempfile.TemporaryDirectory(prefix="kp-apf-app-") as tmp:
        store = EmbeddedStore(Path(tmp) / "store")
        srv = APIServer(ServerConfig(data_dir=tmp, secure_port=0, enable_priority_and_fairness=apf, metrics=metrics,
                                     token_auth_file=str(tokens)), store=store)
        await srv.start()
        try:
            pod = json.loads(_pod_json())
            pod["metadata"].pop("generateName", None)
            pod["metadata"]["name"] = "bench-pod"
            admin = {"authorization": "Bearer " + srv.pki.token, "content-type": "application/json"}
            r = await srv.app(Request("POST", "/api/v1/namespaces/default/pods", "", admin, orjson.dumps(pod),
                                      _Conn()))
            if r.status != 201:
                raise RuntimeError(f"create pod: {r.status} {r.body[:200]!r}")
            await asyncio.sleep(0.3)   # the watch cache has it
            gc.collect()
            gc.freeze()
            gc.set_threshold(100_000, 50, 1000)     # as kubeplane serve runs
            hdr = {"authorization": "Bearer " + TOKEN, "accept": "application/json"}
            best = float("inf")
            for _ in range(5):
                t0 = time.perf_counter()
                for _ in range(n):
                    r = await srv.app(Request("GET", "/api/v1/namespaces/default/pods/bench-pod", "resourceVersion=0",
                                              hdr, b"", _Conn()))
                best = min(best, (time.perf_counter() - t0) / n * 1e6)
            if r.status != 200:
                raise RuntimeError(f"GET: {r.status} {r.body[:200]!r}")
            return best
        finally:
            await srv.close()
            await store.close()


def in_process(n: int = 30_000) -> int:
    from kubeplane.runtime import run

    with tempfile.TemporaryDirectory(prefix="kp-apf-tok-") as tmp:
        tokens = Path(tmp) / "tokens.csv"
        tokens.write_text(f"{TOKEN},bench-user,1001\n")
        print(f"GET one pod (RV=0) through the app, in process, best of 5 x {n:,}:")
        for apf, metrics in ((False, False), (False, True), (True, False), (True, True)):
            us = run(_app_get_us(apf, metrics, tokens, n))
            print(f"  APF {'on ' if apf else 'off'}  metrics {'on ' if metrics else 'off'}: {us:6.2f} us per request")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench apf", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5, help="wrk runs per server (default %(default)s)")
    ap.add_argument("--seconds", type=int, default=8, help="length of one wrk run (default %(default)s)")
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--in-process", action="store_true", help="time GETs through the app object instead (no HTTP)")
    args = ap.parse_args(argv)
    if args.in_process:
        return in_process()

    with tempfile.TemporaryDirectory(prefix="kp-apf-bench-") as tmp_s:
        tmp = Path(tmp_s)
        tokens = tmp / "tokens.csv"
        tokens.write_text(f"{TOKEN},bench-user,1001\n")
        common = ["--token-auth-file", str(tokens)]
        servers = {
            "on": Server(tmp, "on"),
            "off": Server(tmp, "off"),
        }
        servers["on"].extra = common
        servers["off"].extra = common + ["--enable-priority-and-fairness", "false", "--enable-metrics", "false"]
        try:
            pod = json.loads(_pod_json())
            pod["metadata"].pop("generateName", None)
            pod["metadata"]["name"] = "bench-pod"
            for s in servers.values():
                s.start()
                _make_ns(s, "bench")
                st, body = _call(s, "POST", "/api/v1/namespaces/bench/pods", pod)
                if st != 201:
                    raise RuntimeError(f"create pod: {st} {body[:200]!r}")
            path = "/api/v1/namespaces/bench/pods/bench-pod?resourceVersion=0"
            results: dict[str, list[float]] = {"on": [], "off": []}
            # warm-up
            for s in servers.values():
                _wrk(s.https, path, 2, args.conns, args.threads)
            for r in range(args.rounds):
                for key in (("on", "off") if r % 2 == 0 else ("off", "on")):
                    s = servers[key]
                    rate, bad = _wrk(s.https, path, args.seconds, args.conns, args.threads)
                    if bad:
                        raise RuntimeError(f"{key}: {bad} non-2xx responses")
                    results[key].append(rate)
                    print(f"round {r + 1} {key:>3}: {rate:8.0f} GET/s", flush=True)
            on, off = statistics.median(results["on"]), statistics.median(results["off"])
            cost = (off - on) / off * 100
            print()
            print(f"GET one pod (RV=0), wrk {args.conns} connections over HTTPS, {args.rounds} x {args.seconds}s "
                  f"per server, median:")
            print(f"  APF + metrics on : {on:8.0f} GET/s")
            print(f"  both off         : {off:8.0f} GET/s")
            print(f"  cost             : {cost:5.1f} %   (target <= 5 %: {'met' if cost <= 5 else 'missed'})")
        finally:
            for s in servers.values():
                s.stop()
    return 0

