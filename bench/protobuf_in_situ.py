"""What a pod create costs in the API server's own create path, JSON against protobuf, stage by stage.

    python -m bench protobuf --in-situ [--creates 1500] [--rounds 6]

``python -m bench protobuf`` times the codec in a hot loop: the same pod, again and again,
with everything it touches in the CPU's caches.  In a server, each create runs between other
work (the store, the watch cache, other requests), so the codec's data and code are cold
again every time.  This benchmark runs creates through the app object in this process (no
HTTP, no TLS: ``bench apf --in-process``'s harness), 32 at a time, alternating JSON rounds
(JSON body, ``Accept: application/json``) and protobuf rounds (protobuf body, ``Accept:
application/vnd.kubernetes.protobuf, application/json``), and reports this thread's CPU per
create, in total and for the stages of ``Writes.create`` that differ between the forms:
decoding the body, the repeated-key check, and the 201 (``_created``: JSON bytes, or the
protobuf encode).  The collector is off during the rounds so that its passes, which fall
on whichever create allocates the object that crosses the threshold, do not blur the stages.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

PB = "application/vnd.kubernetes.protobuf"
STAGES = (("codec", "decode_body", "decode the body"), ("writes", "_body_duplicates", "repeated-key check"),
          ("writes", "_created", "the 201 (encode)"))


def _timed(acc: dict[str, float], label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*a: Any, **k: Any) -> Any:
        t0 = time.thread_time()
        try:
            return fn(*a, **k)
        finally:
            acc[label] += time.thread_time() - t0
    return wrapper


async def _measure(creates: int, rounds: int, conc: int = 32) -> dict[str, dict[str, float]]:
    import orjson

    from kubeplane.apiserver.endpoints import writes
    from kubeplane.apiserver.machinery import protobuf
    from kubeplane.apiserver.server.apiserver import APIServer, ServerConfig
    from kubeplane.apiserver.transport.http import Request
    from kubeplane.store.mvcc import EmbeddedStore

    from .apf_bench import _Conn
    from .read_bench import _pod_json

    acc: dict[str, float] = collections.defaultdict(float)
    saved = []
    for mod_name, attr, label in STAGES:
        mod = writes.codec if mod_name == "codec" else writes
        saved.append((mod, attr, getattr(mod, attr)))
        setattr(mod, attr, _timed(acc, label, getattr(mod, attr)))
    try:
        with tempfile.TemporaryDirectory(prefix="kp-pb-situ-") as tmp:
            store = EmbeddedStore(Path(tmp) / "store")
            srv = APIServer(ServerConfig(data_dir=tmp, secure_port=0), store=store)
            await srv.start()
            try:
                pod = json.loads(_pod_json())
                pod["metadata"].pop("generateName", None)
                auth = "Bearer " + srv.pki.token

                def request(form: str, i: int) -> Request:
                    pod["metadata"]["name"] = f"{form}-{i}"
                    if form == "json":
                        hdr, body = {"content-type": "application/json", "accept": "application/json"}, orjson.dumps(pod)
                    else:
                        hdr, body = {"content-type": PB, "accept": f"{PB}, application/json"}, protobuf.encode(pod)
                    return Request("POST", "/api/v1/namespaces/default/pods", "", {"authorization": auth, **hdr},
                                   body, _Conn())

                out: dict[str, dict[str, list[float]]] = {f: collections.defaultdict(list) for f in ("json", "protobuf")}
                gc.collect()
                gc.disable()
                n = 0
                for rnd in range(rounds + 1):        # round 0 warms both forms up and is not counted
                    for form in (("json", "protobuf") if rnd % 2 == 0 else ("protobuf", "json")):
                        reqs = [request(form, n + k) for k in range(creates)]
                        n += creates
                        acc.clear()
                        t0 = time.thread_time()
                        for s in range(0, creates, conc):
                            rs = await asyncio.gather(*(srv.app(r) for r in reqs[s:s + conc]))
                            bad = [r for r in rs if r.status != 201]
                            if bad:
                                raise RuntimeError(f"create: {bad[0].status} {bytes(bad[0].body[:200])!r}")
                        if rnd:
                            out[form]["total"].append((time.thread_time() - t0) / creates * 1e6)
                            for _, _, label in STAGES:
                                out[form][label].append(acc[label] / creates * 1e6)
                        gc.enable()
                        gc.collect()
                        gc.disable()
                return {f: {k: statistics.median(v) for k, v in d.items()} for f, d in out.items()}
            finally:
                gc.enable()
                await srv.close()
                await store.close()
    finally:
        for mod, attr, fn in saved:
            setattr(mod, attr, fn)


def in_situ(creates: int, rounds: int) -> int:
    from kubeplane.runtime import run

    print(f"pod creates through the app in process, {rounds} rounds x {creates:,} per form, 32 at a time; "
          "CPU us per create, medians:")
    r = run(_measure(creates, rounds))
    print(f"{'':24}{'JSON':>10}{'protobuf':>10}{'difference':>12}")
    for label in ("total", *(s[2] for s in STAGES)):
        j, p = r["json"][label], r["protobuf"][label]
        print(f"{label:24}{j:10.1f}{p:10.1f}{p - j:+12.1f}")
    return 0
