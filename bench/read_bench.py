"""``python -m bench read``: the API server's read path at scale (issue 4).

Starts ``kubeplane serve`` (embedded store, a fresh data dir, HTTPS on a free port and
plain HTTP on loopback), loads 2.3 KB pods (``api_bench.POD_TEMPLATE``) with ``wrk``,
then measures, as a client sees it:

- ``list``: LIST of 10,000 pods with ``resourceVersion=0``, consistent (no
  resourceVersion), and paginated by 500 (limit/continue until done); aiohttp client,
  time from sending the request to the parsed response (``json.loads``, as aiohttp's
  ``resp.json()``; ``--parser orjson`` for the other parser). Upstream kube-apiserver
  1.28.7 + etcd 3.4.23 on 2 cores: 1.04-1.67 s, 1.45-1.50 s and 1.18-1.58 s. Each is
  followed by the same time without the parse (to the last byte), because the client's
  parse is most of it here: the 2.3 KB pod is served as ~6.3 KB (managedFields add ~4
  KB of small nested dicts, which both json and orjson parse at ~25 MB/s on this VM);
- ``get``: GET of one pod with wrk, 32 connections, RV=0 and consistent
  (upstream ~4,800/s and ~2,600/s);
- ``watch``: fan-out. N watchers (100, then 1,000) watch the pods of one namespace, a
  separate writer process creates 300 pods at a steady rate, each carrying its send
  time (wall clock) in an annotation; lag = receipt at a watcher - send time, over every
  (watcher, event) pair (upstream, 100 watchers: p50 69 ms, p99 170-195 ms). The watchers
  are raw asyncio connections in this process (no JSON parse: the marker is found in the
  bytes); this process's CPU is measured, and a client near one full core is flagged
  as saturated (its own queueing would then be part of the lag);
- ``memory``: RSS of the server (psutil, with any children) after loading 10,000 pods;
  with ``--big`` also after 150,000;
- ``storm`` (with ``--big``, ``--quick`` or ``--only storm``; a fresh server): W watchers of a
  namespace of P pods reconnect at once, each like an informer: LIST (``limit=500``,
  ``resourceVersion=0``, following continue tokens if the server pages) then WATCH from
  the list's resourceVersion, while a writer process patches pods at a steady rate.
  Reported: the writer's p99 latency during the storm, the server's peak RSS, and how
  many watchers were watching when the storm ended (all synced, or ``--storm-seconds``
  passed). Watchers read bodies without parsing them, over plain HTTP (TLS on 115 GB of
  LIST bodies would make the client the bottleneck). The server is killed if its RSS
  passes ``--rss-limit`` (the machine must survive a baseline that does not stream).

Each figure is repeated ``--reps`` times where it is cheap (lists, gets, fan-out) and the
median is quoted; memory and the storm are measured once. The summary ends with the
time each part took (a default run: ~6-8 min; ``--big`` adds the 150k load and the storm). ``--quick`` shrinks every size
for a smoke run. Everything started (server, wrk, helper processes, temp dirs) is
stopped and removed on exit, errors included.
"""
from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import multiprocessing
import os
import re
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import psutil

from .api_bench import LUA_THREAD_IDS, POD_TEMPLATE
from .report import Figure, Target, table

NS = "bench"            # the namespace of the loaded pods (list, get, memory)
MARK = "kp-bench/sent"  # annotation carrying a create's send time (time.time(), wall clock)

# One POST per request() until this thread's share of `total` is created, then a cheap GET
# whose response stops the thread: wrk creates (at most) exactly `total` pods.
LOAD_LUA = LUA_THREAD_IDS + r"""
function init(args)
  path = args[1]
  token = args[2]
  body = args[3]
  local total = tonumber(args[4])
  local nthreads = tonumber(args[5])
  prefix = args[6]
  quota = math.floor(total / nthreads)
  if tid < total % nthreads then quota = quota + 1 end
  done_req = wrk.format("GET", "/version", {["Authorization"] = "Bearer " .. token})
end
function request()
  counter = counter + 1
  if counter > quota then
    return done_req
  end
  local b = string.gsub(body, "__NAME__", string.format("%s%d-%d", prefix, tid, counter))
  return wrk.format("POST", path, {["Content-Type"] = "application/json",
                                   ["Authorization"] = "Bearer " .. token}, b)
end
function response(status, headers, body)
  if counter > quota then
    wrk.thread:stop()
  end
end
"""

GET_LUA = r"""
function init(args)
  req = wrk.format("GET", args[1], {["Authorization"] = "Bearer " .. args[2], ["Accept"] = "application/json"})
end
function request()
  return req
end
"""


# ---------------------------------------------------------------------------------------
# the server
# ---------------------------------------------------------------------------------------

class Server:
    """``kubeplane serve`` in a fresh data dir under `tmp`; `stop()` kills it (idempotent)."""

    extra: list[str] = []   # --server-args, e.g. "--watch-cache=false" for an A/B run

    def __init__(self, tmp: Path, name: str = "server") -> None:
        self.dir = tmp / name
        self.dir.mkdir(parents=True)
        self.proc: subprocess.Popen | None = None
        self.https = ""        # https://127.0.0.1:PORT
        self.http_port = 0
        self.token = ""
        self.ps: psutil.Process | None = None

    def start(self, timeout: float = 90.0) -> "Server":
        out_path = self.dir / "stdout.log"
        argv = [sys.executable, "-m", "kubeplane.cli", "serve", "--data-dir", str(self.dir / "data"),
                "--secure-port", "0", "--http-listen", "127.0.0.1:0", "--scheduler=false", "--controller-manager=false", "--hollow-nodes", "0", *self.extra]
        with open(out_path, "wb") as out, open(self.dir / "server.log", "ab") as err:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=err, start_new_session=True)
        self.ps = psutil.Process(self.proc.pid)
        deadline = time.time() + timeout
        kubeconfig = ""
        while time.time() < deadline and not kubeconfig:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kubeplane serve exited ({self.proc.returncode}): {self.log_tail()}")
            for line in out_path.read_text().splitlines():
                if line.startswith("kubeplane: serving "):
                    self.https = line.split()[-1]
                elif line.startswith("kubeplane: plain HTTP"):
                    self.http_port = int(line.split()[-1])
                elif line.startswith("export KUBECONFIG="):
                    kubeconfig = line.strip().split("=", 1)[1]
            time.sleep(0.1)
        if not kubeconfig:
            raise RuntimeError("kubeplane serve did not start in time: " + self.log_tail())
        self.token = Path(kubeconfig).parent.joinpath("pki", "token").read_text().strip()
        return self

    def log_tail(self, n: int = 1500) -> str:
        p = self.dir / "server.log"
        return p.read_text(errors="replace")[-n:] if p.exists() else ""

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss(self) -> int:
        """Resident bytes of the server and its children (0 once it is gone)."""
        try:
            assert self.ps is not None
            procs = [self.ps, *self.ps.children(recursive=True)]
            return sum(p.memory_info().rss for p in procs)
        except (psutil.Error, AssertionError):
            return 0

    def cpu(self) -> float:
        """CPU seconds (user + system) used so far by the server and its children."""
        try:
            assert self.ps is not None
            total = 0.0
            for p in [self.ps, *self.ps.children(recursive=True)]:
                t = p.cpu_times()
                total += t.user + t.system
            return total
        except (psutil.Error, AssertionError):
            return 0.0

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def _conn(srv: Server, scheme: str, timeout: float = 120.0) -> http.client.HTTPConnection:
    if scheme == "https":
        port = int(srv.https.rsplit(":", 1)[1])
        return http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout,
                                           context=ssl._create_unverified_context())
    return http.client.HTTPConnection("127.0.0.1", srv.http_port, timeout=timeout)


def _call(srv: Server, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
    """One request over plain HTTP (setup, checks; not measured)."""
    c = _conn(srv, "http")
    try:
        c.request(method, path, body=json.dumps(body) if body is not None else None,
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def _make_ns(srv: Server, ns: str) -> None:
    st, data = _call(srv, "POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    if st not in (201, 409):
        raise RuntimeError(f"creating namespace {ns}: {st} {data[:300]!r}")


def _count(srv: Server, ns: str) -> int:
    st, data = _call(srv, "GET", f"/api/v1/namespaces/{ns}/pods?limit=1")
    if st != 200:
        raise RuntimeError(f"counting pods: {st} {data[:300]!r}")
    obj = json.loads(data)
    return len(obj.get("items") or []) + int(obj["metadata"].get("remainingItemCount") or 0)


def _pod_json(extra_annotations: dict[str, str] | None = None) -> str:
    pod = json.loads(json.dumps(POD_TEMPLATE))
    if extra_annotations:
        pod["metadata"]["annotations"].update(extra_annotations)
    return json.dumps(pod, separators=(",", ":"))


def load_pods(srv: Server, ns: str, total: int, prefix: str, conns: int = 32, threads: int = 2) -> float:
    """Make namespace `ns` hold `total` pods (adding pods named `prefix...`): wrk creates
    them over HTTPS, a plain HTTP loop tops up whatever wrk did not create. Returns pods/s."""
    _make_ns(srv, ns)
    have = _count(srv, ns)
    need = total - have
    t0 = time.perf_counter()
    if need > 0:
        path = f"/api/v1/namespaces/{ns}/pods"
        cap = 120 + need / 100   # seconds; stopped as soon as the pods exist
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
            f.write(LOAD_LUA)
            script = f.name
        # wrk's threads stop sending once their share exists, but wrk itself waits out -d:
        # watch the count and stop wrk when it is reached or stops growing
        wrk = subprocess.Popen(["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{int(cap)}s", "-s", script,
                                srv.https + path, "--", path, srv.token, _pod_json(), str(need), str(threads),
                                prefix], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            last, still = -1, 0
            while wrk.poll() is None:
                time.sleep(0.5)
                n = _count(srv, ns)
                if n >= total:
                    break
                still = still + 1 if n == last else 0
                last = n
                if still >= 6:
                    break
        finally:
            wrk.terminate()
            try:
                wrk.wait(10)
            except subprocess.TimeoutExpired:
                wrk.kill()
                wrk.wait()
            os.unlink(script)
        missing = total - _count(srv, ns)
        if missing > 0:
            c = _conn(srv, "http")
            try:
                body = _pod_json()
                for i in range(missing):
                    c.request("POST", path, body=body.replace("__NAME__", f"{prefix}fill-{i}"),
                              headers={"Content-Type": "application/json"})
                    r = c.getresponse()
                    r.read()
                    if r.status not in (201, 409):
                        raise RuntimeError(f"top-up create: {r.status}")
            finally:
                c.close()
    got = _count(srv, ns)
    if got < total:
        raise RuntimeError(f"namespace {ns} holds {got} pods, wanted {total}")
    return max(need, 0) / max(time.perf_counter() - t0, 1e-9)


# ---------------------------------------------------------------------------------------
# list and get
# ---------------------------------------------------------------------------------------

async def _list_runs(srv: Server, scheme: str, reps: int, parser: str, n_pods: int
                     ) -> dict[str, list[tuple[float, float, int]]]:
    """{mode: [(total seconds, seconds spent parsing, body bytes), ...]} for rv0, consistent,
    paged. The parse is timed apart so that the server's share can be told from the client's."""
    import aiohttp
    import orjson

    loads: Callable[[bytes], Any] = orjson.loads if parser == "orjson" else json.loads
    base = srv.https if scheme == "https" else f"http://127.0.0.1:{srv.http_port}"
    url = f"{base}/api/v1/namespaces/{NS}/pods"
    headers = {"Authorization": f"Bearer {srv.token}", "Accept": "application/json"}
    out: dict[str, list[tuple[float, float, int]]] = {"rv0": [], "consistent": [], "paged": []}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False),
                                     timeout=aiohttp.ClientTimeout(total=600)) as s:

        async def one(params: dict[str, str]) -> tuple[Any, float, int]:
            async with s.get(url, params=params, headers=headers) as r:
                data = await r.read()
                if r.status != 200:
                    raise RuntimeError(f"LIST {params}: {r.status} {data[:300]!r}")
            p0 = time.perf_counter()
            obj = loads(data)
            return obj, time.perf_counter() - p0, len(data)

        await one({"resourceVersion": "0", "limit": "1"})   # warm the connection
        for _ in range(reps):
            for mode in ("rv0", "consistent", "paged"):
                t0 = time.perf_counter()
                parse = 0.0
                items = size = 0
                if mode == "paged":
                    params = {"limit": "500"}
                    while True:
                        obj, dt, n = await one(params)
                        parse += dt
                        size += n
                        items += len(obj["items"])
                        cont = obj["metadata"].get("continue")
                        if not cont:
                            break
                        params = {"limit": "500", "continue": cont}
                else:
                    obj, parse, size = await one({"resourceVersion": "0"} if mode == "rv0" else {})
                    items = len(obj["items"])
                total = time.perf_counter() - t0
                if items != n_pods:
                    raise RuntimeError(f"LIST {mode} returned {items} pods, expected {n_pods}")
                out[mode].append((total, parse, size))
    return out


def _wrk_get(url: str, path: str, token: str, seconds: float, conns: int, threads: int
             ) -> tuple[float, int, int, str]:
    """(requests/s, requests, non-2xx, p99 latency text) of wrk GETs of `path`."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(GET_LUA)
        script = f.name
    try:
        out = subprocess.run(["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{max(1, int(seconds))}s",
                              "--latency", "-s", script, url + path, "--", path, token],
                             capture_output=True, text=True, timeout=seconds + 60)
    finally:
        os.unlink(script)
    text = out.stdout + out.stderr
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    n = re.search(r"(\d+) requests in", text)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    p99 = re.search(r"^\s*99%\s+(\S+)", text, re.M)   # the --latency distribution's line
    errs = re.search(r"Socket errors: (.*)", text)
    if not m or not n:
        raise RuntimeError("wrk failed: " + text[-2000:])
    nbad = int(bad.group(1)) if bad else 0
    if errs:
        nbad += sum(int(x) for x in re.findall(r"\d+", errs.group(1)))
    return float(m.group(1)), int(n.group(1)), nbad, p99.group(1) if p99 else "?"


# ---------------------------------------------------------------------------------------
# raw streaming HTTP client (watchers)
# ---------------------------------------------------------------------------------------

class RawStream(asyncio.Protocol):
    """One HTTP/1.1 GET on its own connection. The body is de-chunked but not parsed:
    with `on_line`, each newline-terminated line goes to ``on_line(line, t)`` (``t`` is
    ``time.time()`` when the bytes arrived); else it is counted and dropped, keeping
    only its first `keep` bytes (where a list's metadata is)."""

    def __init__(self, request: bytes, on_line: Callable[[bytes, float], None] | None = None,
                 keep: int = 0) -> None:
        self.request = request
        self.transport: asyncio.Transport | None = None
        self._reset(on_line, keep)

    def send(self, request: bytes, on_line: Callable[[bytes, float], None] | None = None, keep: int = 0) -> None:
        """The next request on this (kept-alive) connection, once `done` is resolved."""
        assert self.done.done() and self.transport is not None
        if self.transport.is_closing():
            raise ConnectionError("connection closed")
        self._reset(on_line, keep)
        self.transport.write(request)

    def _reset(self, on_line: Callable[[bytes, float], None] | None, keep: int) -> None:
        loop = asyncio.get_running_loop()
        self.on_line = on_line
        self.keep = keep
        self.head_seen = loop.create_future()
        self.done = loop.create_future()
        self.status = 0
        self.received = 0
        self.prefix = bytearray()
        self._head = bytearray()
        self._in_body = False
        self._chunked = False
        self._length = -1
        self._chunk_left = 0
        self._crlf_left = 0
        self._size_buf = bytearray()
        self._lines = bytearray()

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        err = exc or ConnectionError("connection closed")
        for fut in (self.head_seen, self.done):
            if fut.done():
                continue
            if fut is self.done and self._in_body and not self._chunked and self._length < 0:
                fut.set_result(None)   # a body delimited by the close
            else:
                fut.set_exception(err)
                fut.exception()        # nobody may wait any more (closed by us): not an error to log

    def data_received(self, data: bytes) -> None:
        t = time.time()
        if self.done.done():
            return   # the end of a chunked body's trailer ("\r\n") after its last chunk
        if not self._in_body:
            self._head += data
            if self._head.startswith(b"\r\n"):   # that trailer, arriving after the next request went out
                del self._head[:2]
            i = self._head.find(b"\r\n\r\n")
            if i < 0:
                return
            head = bytes(self._head[:i]).decode("latin-1").split("\r\n")
            data = bytes(self._head[i + 4:])
            self._head = bytearray()
            self._in_body = True
            self.status = int(head[0].split()[1])
            for h in head[1:]:
                k, _, v = h.partition(":")
                k = k.strip().lower()
                if k == "transfer-encoding" and "chunked" in v.lower():
                    self._chunked = True
                elif k == "content-length":
                    self._length = int(v.strip())
            if not self.head_seen.done():
                self.head_seen.set_result(self.status)
            if self._length == 0:
                self._finish()
                return
        if self._chunked:
            self._dechunk(data, t)
        else:
            self._body(memoryview(data), t)
            if self._length >= 0:
                self._length -= len(data)
                if self._length <= 0:
                    self._finish()

    def _dechunk(self, data: bytes, t: float) -> None:
        mv = memoryview(data)
        pos, n = 0, len(data)
        while pos < n:
            if self._crlf_left:
                k = min(self._crlf_left, n - pos)
                self._crlf_left -= k
                pos += k
            elif self._chunk_left:
                k = min(self._chunk_left, n - pos)
                self._body(mv[pos:pos + k], t)
                self._chunk_left -= k
                pos += k
                if not self._chunk_left:
                    self._crlf_left = 2
            else:
                j = data.find(b"\n", pos)
                if j < 0:
                    self._size_buf += mv[pos:]
                    return
                line = bytes(self._size_buf) + data[pos:j]
                self._size_buf.clear()
                pos = j + 1
                size = int(line.strip().split(b";")[0] or b"0", 16)
                if size == 0:
                    self._finish()
                    return
                self._chunk_left = size

    def _body(self, mv: memoryview, t: float) -> None:
        self.received += len(mv)
        if len(self.prefix) < self.keep:
            self.prefix += mv[:self.keep - len(self.prefix)]
        if self.on_line is not None:
            buf = self._lines
            buf += mv
            start = 0
            while True:
                i = buf.find(b"\n", start)
                if i < 0:
                    break
                self.on_line(bytes(buf[start:i]), t)
                start = i + 1
            if start:
                del buf[:start]

    def _finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()


def _request(path: str, token: str) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Accept: application/json\r\nUser-Agent: kubeplane-read-bench\r\n\r\n").encode()


async def open_stream(port: int, path: str, token: str, tls: bool, on_line=None, keep: int = 0,
                      retries: int = 20) -> RawStream:
    """Connect and send the GET; retries refused/reset connections (accept backlog full)."""
    loop = asyncio.get_running_loop()
    ctx = ssl._create_unverified_context() if tls else None
    req = _request(path, token)
    for attempt in range(retries):
        try:
            _, proto = await loop.create_connection(lambda: RawStream(req, on_line, keep), "127.0.0.1", port,
                                                    ssl=ctx)
            return proto
        except (ConnectionError, OSError):
            if attempt == retries - 1:
                raise
            await asyncio.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------------------
# helper processes: a creator that stamps send times, a steady patcher
# ---------------------------------------------------------------------------------------

def _creator_main(port: int, tls: bool, token: str, ns: str, count: int, rate: float, name_prefix: str,
                  start_at: float, q: Any) -> None:
    """Create `count` pods in `ns` at `rate`/s from wall time `start_at`; each pod carries
    its send time in annotation MARK. Puts (latencies, errors) on `q`."""
    body = _pod_json({MARK: "__SENT__"})
    if tls:
        c: http.client.HTTPConnection = http.client.HTTPSConnection(
            "127.0.0.1", port, timeout=120, context=ssl._create_unverified_context())
    else:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    lat: list[float] = []
    errors = 0
    path = f"/api/v1/namespaces/{ns}/pods"
    try:
        for i in range(count):
            delay = start_at + i / rate - time.time()
            if delay > 0:
                time.sleep(delay)
            sent = time.time()
            b = body.replace("__NAME__", f"{name_prefix}{i}").replace("__SENT__", f"{sent:.6f}")
            try:
                c.request("POST", path, body=b, headers=headers)
                r = c.getresponse()
                r.read()
                if r.status != 201:
                    errors += 1
            except (OSError, http.client.HTTPException):
                errors += 1
                c.close()
            lat.append(time.time() - sent)
    finally:
        c.close()
        q.put((lat, errors))


def _patcher_main(port: int, tls: bool, token: str, ns: str, names: list[str], rate: float, stop: Any,
                  q: Any) -> None:
    """Merge-patch a label of `names` round-robin at `rate`/s until `stop` is set, one at a
    time. Puts [(scheduled time, latency or -1 for an error), ...] on `q`. Latency counts
    from the scheduled time (t0 + i/rate), not the actual send: a write that stalls delays
    the ones behind it, and they count that wait (no coordinated omission)."""
    if tls:
        c: http.client.HTTPConnection = http.client.HTTPSConnection(
            "127.0.0.1", port, timeout=60, context=ssl._create_unverified_context())
    else:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/merge-patch+json", "Authorization": f"Bearer {token}"}
    out: list[tuple[float, float]] = []
    t0 = time.time()
    i = 0
    try:
        while not stop.is_set():
            sent = t0 + i / rate
            delay = sent - time.time()
            if delay > 0:
                if stop.wait(delay):
                    break
            name = names[i % len(names)]
            try:
                c.request("PATCH", f"/api/v1/namespaces/{ns}/pods/{name}",
                          body=b'{"metadata":{"labels":{"rev":"r%d"}}}' % i, headers=headers)
                r = c.getresponse()
                r.read()
                out.append((sent, time.time() - sent if r.status == 200 else -1.0))
            except (OSError, http.client.HTTPException):
                out.append((sent, -1.0))
                c.close()
                time.sleep(0.1)
            i += 1
        now = time.time()   # writes due but not sent when told to stop waited at least this long
        while t0 + i / rate <= now:
            out.append((t0 + i / rate, now - (t0 + i / rate)))
            i += 1
    finally:
        c.close()
        q.put(out)


def _spawn(target: Callable[..., None], *args: Any) -> tuple[multiprocessing.Process, Any]:
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(*args, q), daemon=True)
    p.start()
    return p, q


def _reap(p: multiprocessing.Process) -> None:
    if p.is_alive():
        p.terminate()
    p.join(5)
    if p.is_alive():
        p.kill()
        p.join(5)


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(q * (len(xs) - 1)))))]


# ---------------------------------------------------------------------------------------
# watch fan-out
# ---------------------------------------------------------------------------------------

@dataclass
class FanoutResult:
    watchers: int
    lags: list[float] = field(default_factory=list)
    expected: int = 0
    connect_s: float = 0.0
    deliver_s: float = 0.0          # first send .. last event received
    client_cpu: float = 0.0         # fraction of one core, this process, while creating
    server_cpu: float = 0.0         # cores used by the server while creating
    create_p99: float = 0.0
    create_errors: int = 0
    dropped: int = 0                # watch streams that ended early


async def _fanout(srv: Server, tls: bool, ns: str, watchers: int, creates: int, rate: float,
                  wait_after: float) -> FanoutResult:
    res = FanoutResult(watchers, expected=watchers * creates)
    _make_ns(srv, ns)
    st, data = _call(srv, "GET", f"/api/v1/namespaces/{ns}/pods?limit=1")
    rv = json.loads(data)["metadata"]["resourceVersion"]
    port = int(srv.https.rsplit(":", 1)[1]) if tls else srv.http_port
    path = f"/api/v1/namespaces/{ns}/pods?watch=1&resourceVersion={rv}&allowWatchBookmarks=true"
    marker = b'"' + MARK.encode() + b'":"'
    lags = res.lags
    got = [0]
    all_in = asyncio.get_running_loop().create_future()

    def on_line(line: bytes, t: float) -> None:
        i = line.find(marker)
        if i < 0 or b'"type":"ADDED"' not in line[:40]:
            return
        i += len(marker)
        lags.append(t - float(line[i:line.index(b'"', i)]))
        got[0] += 1
        if got[0] >= res.expected and not all_in.done():
            all_in.set_result(None)

    t0 = time.perf_counter()
    streams: list[RawStream] = []
    try:
        for k in range(0, watchers, 100):   # connect in waves of 100
            batch = await asyncio.gather(*(open_stream(port, path, srv.token, tls, on_line)
                                           for _ in range(min(100, watchers - k))))
            streams += batch
            codes = await asyncio.gather(*(s.head_seen for s in batch))
            if any(c != 200 for c in codes):
                raise RuntimeError(f"watch answered {sorted(set(codes))}")
        res.connect_s = time.perf_counter() - t0
        await asyncio.sleep(0.5)
        me = psutil.Process()
        c0, s0 = sum(me.cpu_times()[:2]), srv.cpu()
        w0 = time.time()
        start_at = w0 + 0.5
        proc, q = _spawn(_creator_main, port, tls, srv.token, ns, creates, rate, "w", start_at)
        try:
            send_s = creates / rate
            try:
                await asyncio.wait_for(asyncio.shield(all_in), timeout=0.5 + send_s + wait_after)
            except asyncio.TimeoutError:
                pass
            res.deliver_s = time.time() - start_at
            dt = time.time() - w0
            res.client_cpu = (sum(me.cpu_times()[:2]) - c0) / dt
            res.server_cpu = (srv.cpu() - s0) / dt
            loop = asyncio.get_running_loop()
            lat, res.create_errors = await loop.run_in_executor(None, q.get, True, 60)
            res.create_p99 = _pct(lat, 0.99)
        finally:
            _reap(proc)
        res.dropped = sum(1 for s in streams if s.done.done())
    finally:
        for s in streams:
            s.close()
    return res


# ---------------------------------------------------------------------------------------
# relist storm
# ---------------------------------------------------------------------------------------

_RV = re.compile(rb'"resourceVersion":"(\d+)"')
_CONT = re.compile(rb'"continue":"([^"]*)"')


@dataclass
class StormResult:
    watchers: int
    pods: int
    synced: int = 0
    all_synced_s: float | None = None
    duration_s: float = 0.0
    writer_p99: float = float("nan")
    writer_p50: float = float("nan")
    writer_max: float = float("nan")
    writer_n: int = 0
    writer_errors: int = 0
    baseline_p99: float = float("nan")
    peak_rss: int = 0
    rss_before: int = 0
    aborted: str = ""
    list_bytes: int = 0
    list_requests: int = 0
    watch_events: int = 0
    client_cpu: float = 0.0
    server_cpu: float = 0.0
    errors: list[str] = field(default_factory=list)


async def _informer(port: int, token: str, ns: str, limit: int, list_rv: str, res: StormResult,
                    t0: float, streams: list[RawStream]) -> None:
    """LIST (following continue tokens) then WATCH from the list's resourceVersion."""
    base = f"/api/v1/namespaces/{ns}/pods"
    params = [f"limit={limit}"] if limit else []
    if list_rv:
        params.append(f"resourceVersion={list_rv}")
    cont = ""
    conn: RawStream | None = None
    while True:
        q = "&".join(params + ([f"continue={cont}"] if cont else []))
        path = base + ("?" + q if q else "")
        if conn is None or conn.transport is None or conn.transport.is_closing():
            conn = await open_stream(port, path, token, False, keep=4096)
            streams.append(conn)
        else:
            conn.send(_request(path, token), keep=4096)
        await conn.done
        res.list_requests += 1
        res.list_bytes += conn.received
        if conn.status != 200:
            raise RuntimeError(f"LIST {conn.status}: {bytes(conn.prefix[:200])!r}")
        head = bytes(conn.prefix)
        if b'"items"' in head:
            head = head[:head.find(b'"items"')]   # the list's own metadata only
        m = _RV.search(head)
        if not m:
            raise RuntimeError("LIST without resourceVersion")
        rv = m.group(1).decode()
        c = _CONT.search(head)
        cont = c.group(1).decode() if c else ""
        if not cont:
            break
        params = [p for p in params if not p.startswith("resourceVersion=")]

    def on_line(line: bytes, t: float) -> None:
        res.watch_events += 1

    path = f"{base}?watch=1&resourceVersion={rv}&allowWatchBookmarks=true"
    if conn.transport is None or conn.transport.is_closing():
        conn = await open_stream(port, path, token, False, on_line)
        streams.append(conn)
    else:
        conn.send(_request(path, token), on_line)
    code = await conn.head_seen
    if code != 200:
        raise RuntimeError(f"WATCH {code}")
    res.synced += 1
    if res.synced == res.watchers:
        res.all_synced_s = time.perf_counter() - t0


async def _storm(srv: Server, scheme: str, ns: str, res: StormResult, names: list[str], write_rate: float,
                 limit: int, list_rv: str, cap_s: float, after_s: float, rss_limit: int) -> None:
    tls = scheme == "https"
    wport = int(srv.https.rsplit(":", 1)[1]) if tls else srv.http_port
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    proc, q = _spawn(_patcher_main, wport, tls, srv.token, ns, names, write_rate, stop)
    peak = [srv.rss()]
    res.rss_before = peak[0]
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            r = srv.rss()
            peak[0] = max(peak[0], r)
            if r > rss_limit and srv.alive:
                res.aborted = f"server RSS {r / 2**20:,.0f} MiB passed --rss-limit; killed"
                srv.stop()
            sampling.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    streams: list[RawStream] = []
    tasks: list[asyncio.Task] = []
    try:
        await asyncio.sleep(3.0)   # the writer's baseline, before the storm
        storm_wall = time.time()
        me = psutil.Process()
        c0, s0 = sum(me.cpu_times()[:2]), srv.cpu()
        t0 = time.perf_counter()
        tasks = [asyncio.create_task(_informer(srv.http_port, srv.token, ns, limit, list_rv, res, t0, streams))
                 for _ in range(res.watchers)]
        deadline = t0 + cap_s
        while time.perf_counter() < deadline and not res.aborted:
            if all(t.done() for t in tasks):
                if res.all_synced_s is not None:
                    deadline = min(deadline, t0 + res.all_synced_s + after_s)
                else:
                    break
            await asyncio.sleep(0.1)
        res.duration_s = time.perf_counter() - t0
        dt = res.duration_s
        res.client_cpu = (sum(me.cpu_times()[:2]) - c0) / dt
        res.server_cpu = (srv.cpu() - s0) / dt
        storm_end_wall = time.time()
        for t in tasks:
            if t.done() and not t.cancelled() and t.exception() is not None:
                res.errors.append(repr(t.exception())[:200])
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for s in streams:
            s.close()
        stop.set()
        sampling.set()
        sampler.join(5)
        try:
            samples = await asyncio.get_running_loop().run_in_executor(None, q.get, True, 90)
        except Exception:
            samples = []
        _reap(proc)
    res.peak_rss = peak[0]
    before = [lat for sent, lat in samples if sent < storm_wall and lat >= 0]
    during = [(sent, lat) for sent, lat in samples if storm_wall <= sent <= storm_end_wall]
    ok = [lat for _, lat in during if lat >= 0]
    res.baseline_p99 = _pct(before, 0.99)
    res.writer_n = len(during)
    res.writer_errors = sum(1 for _, lat in during if lat < 0)
    # latencies count from each write's scheduled time; an error counts as "slower than
    # anything" in the percentiles
    worst = [lat if lat >= 0 else float("inf") for _, lat in during]
    res.writer_p99 = _pct(worst, 0.99)
    res.writer_p50 = _pct(worst, 0.50)
    res.writer_max = max(ok) if ok else float("nan")


# ---------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------

@dataclass
class Sizes:
    pods: int = 10_000
    big_pods: int = 150_000
    watchers: tuple[int, ...] = (100, 1000)
    creates: int = 300
    storm_pods: int = 50_000
    storm_watchers: int = 1000


QUICK = Sizes(pods=1000, big_pods=5000, watchers=(10, 50), creates=40, storm_pods=2000, storm_watchers=20)


def _mb(x: int) -> float:
    return x / 2**20


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench read", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="comma-separated subset of list,get,watch,memory,storm "
                    "(default: list,get,watch,memory; plus storm with --big)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="small sizes, 1 rep, short runs (a smoke run)")
    ap.add_argument("--big", action="store_true", help="also 150,000 pods (memory) and the relist storm")
    ap.add_argument("--json", help="also write the figures as JSON here")
    ap.add_argument("--scheme", choices=("https", "http"), default="https",
                    help="lists, gets, fan-out watchers and writers (default https, with the admin token)")
    ap.add_argument("--parser", choices=("json", "orjson"), default="json",
                    help="how the LIST client parses (json: as aiohttp's resp.json())")
    ap.add_argument("--pods", type=int, help="pods for list/get/memory (default 10,000)")
    ap.add_argument("--seconds", type=float, default=8.0, help="each wrk GET run")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--watchers", help="comma-separated fan-out sizes (default 100,1000)")
    ap.add_argument("--creates", type=int, help="creates per fan-out run (default 300)")
    ap.add_argument("--watch-rate", type=float, default=30.0, help="creates/s during fan-out")
    ap.add_argument("--watch-wait", type=float, default=30.0,
                    help="seconds to wait for late events after the last create")
    ap.add_argument("--storm-pods", type=int)
    ap.add_argument("--storm-watchers", type=int)
    ap.add_argument("--storm-limit", type=int, default=500, help="LIST page size of the informers (0: none)")
    ap.add_argument("--storm-list-rv", default="0", help='resourceVersion of the informers\' LIST ("" = consistent)')
    ap.add_argument("--storm-write-rate", type=float, default=20.0, help="writer patches/s")
    ap.add_argument("--storm-seconds", type=float, default=120.0, help="cap on the storm's length")
    ap.add_argument("--storm-after", type=float, default=5.0, help="seconds of watching after all synced")
    ap.add_argument("--rss-limit", type=float, default=4.0,
                    help="GiB; the storm's server is killed above this (twice the target; default %(default)s)")
    ap.add_argument("--server-args", default="",
                    help='extra `kubeplane serve` options, e.g. "--watch-cache=false" (A/B against the store path)')
    args = ap.parse_args(argv)
    import shlex

    Server.extra = shlex.split(args.server_args)

    sizes = Sizes(**vars(QUICK)) if args.quick else Sizes()
    if args.quick:
        args.reps = 1
        args.seconds = min(args.seconds, 2.0)
        args.watch_wait = min(args.watch_wait, 20.0)
        args.storm_seconds = min(args.storm_seconds, 30.0)
    if args.pods:
        sizes.pods = args.pods
    if args.watchers:
        sizes.watchers = tuple(int(x) for x in args.watchers.split(","))
    if args.creates:
        sizes.creates = args.creates
    if args.storm_pods:
        sizes.storm_pods = args.storm_pods
    if args.storm_watchers:
        sizes.storm_watchers = args.storm_watchers
    only = {x.strip() for x in args.only.split(",") if x.strip()} or (
        {"list", "get", "watch", "memory"} | ({"storm"} if args.big or args.quick else set()))
    unknown = only - {"list", "get", "watch", "memory", "storm"}
    if unknown:
        print(f"unknown --only parts: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    if not shutil.which("wrk"):
        print("wrk not found (Debian: apt-get install wrk; `make bench` installs it)", file=sys.stderr)
        return 2

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        import uvloop
        run: Callable[[Any], Any] = uvloop.run
    except ImportError:
        run = asyncio.run

    tmp = Path(tempfile.mkdtemp(prefix="kp-read-bench-"))
    figures: list[Figure] = []
    info: dict[str, Any] = {"scheme": args.scheme, "parser": args.parser, "sizes": vars(sizes) | {},
                            "reps": args.reps}
    servers: list[Server] = []
    started = time.perf_counter()
    phase_s: dict[str, float] = {}
    info["phase_seconds"] = phase_s
    mark = [started]

    def phase(name: str) -> None:
        """Account the time since the previous mark to `name` (how long each part takes)."""
        now = time.perf_counter()
        phase_s[name] = phase_s.get(name, 0.0) + now - mark[0]
        mark[0] = now
    scheme_txt = args.scheme.upper()
    try:
        need_a = only & {"list", "get", "watch", "memory"}
        if need_a:
            srv = Server(tmp, "a").start()
            servers.append(srv)
            rss0 = srv.rss()
            rate = load_pods(srv, NS, sizes.pods, "p")
            time.sleep(1.0)
            rss10k = srv.rss()
            print(f"loaded {sizes.pods:,} pods at {rate:,.0f}/s; server RSS {_mb(rss0):.0f} MiB empty, "
                  f"{_mb(rss10k):.0f} MiB loaded", flush=True)
            info["load_rate"] = rate
            if "memory" in only:
                figures.append(Figure("read", f"server RSS, {sizes.pods:,} pods", "MiB", [_mb(rss10k)],
                                      target=Target("<=", 200 * 1e6 / 2**20, "<= 200 MB"),
                                      note=f"{_mb(rss0):.0f} MiB empty; psutil, after loading via wrk"))
            phase("load")
            if "list" in only:
                lists = run(_list_runs(srv, args.scheme, args.reps, args.parser, sizes.pods))
                specs = {
                    "rv0": (f"LIST {sizes.pods:,} pods, RV=0", Target("<=", 0.35), "upstream 1.04-1.67 s"),
                    "consistent": (f"LIST {sizes.pods:,} pods, consistent", Target("<=", 0.45),
                                   "upstream 1.45-1.50 s"),
                    "paged": (f"LIST {sizes.pods:,} pods, pages of 500", None, "upstream 1.18-1.58 s"),
                }
                for mode, (name, target, note) in specs.items():
                    runs = lists[mode]
                    parse = statistics.median(p for _, p, _ in runs)
                    size = runs[0][2]
                    figures.append(Figure("read", name, "s", [t for t, _, _ in runs], target=target,
                                          note=f"{note}; {scheme_txt}, aiohttp, parse included "
                                               f"({args.parser}: {parse:.3f} s of it)"))
                    figures.append(Figure("read", "  same, to the last byte (no parse)", "s",
                                          [t - p for t, p, _ in runs],
                                          note=f"{size / 1e6:.1f} MB, {size / sizes.pods:,.0f} B/pod as served"))
                    print(f"  {name}: {', '.join(f'{t:.3f}' for t, _, _ in runs)} s (parse {parse:.3f} s; "
                          f"{size / 1e6:.1f} MB)", flush=True)
            phase("list")
            if "get" in only:
                st, data = _call(srv, "GET", f"/api/v1/namespaces/{NS}/pods?limit=1")
                pod = json.loads(data)["items"][0]["metadata"]["name"]
                url = srv.https if args.scheme == "https" else f"http://127.0.0.1:{srv.http_port}"
                path = f"/api/v1/namespaces/{NS}/pods/{pod}"
                for label, q, target, note in (("RV=0", "?resourceVersion=0", 9600, "upstream ~4,800/s"),
                                               ("consistent", "", 5200, "upstream ~2,600/s")):
                    f = Figure("read", f"GET one pod, {label}, {args.connections} conns", "req/s",
                               target=Target(">=", target), note=f"{note}; wrk, {scheme_txt}")
                    bad_total = 0
                    p99s = []
                    for _ in range(args.reps):
                        rps, n, bad, p99 = _wrk_get(url, path + q, srv.token, args.seconds, args.connections,
                                                    args.threads)
                        f.samples.append(rps)
                        bad_total += bad
                        p99s.append(p99)
                        print(f"  GET {label}: {rps:,.0f}/s ({n} requests, {bad} errors, p99 {p99})", flush=True)
                    f.note += f"; p99 {'/'.join(p99s)}"
                    if bad_total:
                        f.note += f"; {bad_total} non-2xx/socket errors"
                        f.error = f"{bad_total} failed requests"
                    figures.append(f)
            phase("get")
            if "watch" in only:
                tls = args.scheme == "https"
                for w in sizes.watchers:
                    p50 = Figure("read", f"watch fan-out, {w} watchers, lag p50", "ms",
                                 note="upstream 100 watchers: 69 ms" if w == 100 else "")
                    p99 = Figure("read", f"watch fan-out, {w} watchers, lag p99", "ms",
                                 target=Target("<=", 50) if w == 100 else None,
                                 note="upstream 100 watchers: 170-195 ms" if w == 100 else "")
                    notes: list[str] = []
                    for rep in range(args.reps):
                        r = run(_fanout(srv, tls, f"fan{w}-{rep}", w, sizes.creates, args.watch_rate,
                                        args.watch_wait))
                        missing = r.expected - len(r.lags)
                        # an event never received counts as slower than any received one
                        lags_ms = [x * 1000 for x in r.lags] + [float("inf")] * missing
                        p50.samples.append(_pct(lags_ms, 0.5))
                        p99.samples.append(_pct(lags_ms, 0.99))
                        sat = r.client_cpu >= 0.9
                        print(f"  fan-out {w} watchers rep {rep}: p50 {p50.samples[-1]:.1f} ms, "
                              f"p99 {p99.samples[-1]:.1f} ms, max received {1000 * max(r.lags or [0]):.0f} ms, "
                              f"{len(r.lags):,}/{r.expected:,} events, connect {r.connect_s:.1f} s, delivered in "
                              f"{r.deliver_s:.1f} s, client CPU {100 * r.client_cpu:.0f}%"
                              f"{' (SATURATED)' if sat else ''}, server CPU {100 * r.server_cpu:.0f}%, "
                              f"create p99 {1000 * r.create_p99:.0f} ms, {r.create_errors} create errors, "
                              f"{r.dropped} streams ended", flush=True)
                        notes.append(f"client CPU {100 * r.client_cpu:.0f}%{' SATURATED' if sat else ''}, "
                                     f"server {100 * r.server_cpu:.0f}%"
                                     + (f", {missing:,} events missing" if missing else ""))
                        if missing > r.expected // 100:   # p99 itself is then unknown
                            p99.error = p99.error or f"{missing:,} of {r.expected:,} events not received"
                    tail = (f"{sizes.creates} creates at {args.watch_rate:g}/s, {scheme_txt}; " + "; ".join(notes))
                    p50.note = "; ".join(x for x in (p50.note, tail) if x)
                    p99.note = "; ".join(x for x in (p99.note, tail) if x)
                    figures += [p50, p99]
            phase("watch")
            if "memory" in only and args.big:
                rate = load_pods(srv, NS, sizes.big_pods, "b")
                time.sleep(1.0)
                rss_big = srv.rss()
                print(f"loaded {sizes.big_pods:,} pods (at {rate:,.0f}/s); server RSS {_mb(rss_big):,.0f} MiB",
                      flush=True)
                figures.append(Figure("read", f"server RSS, {sizes.big_pods:,} pods", "MiB", [_mb(rss_big)],
                                      target=Target("<=", 2 * 1e9 / 2**20, "<= 2 GB"),
                                      note=f"same server after the other phases; loaded at {rate:,.0f}/s"))
            srv.stop()
            phase("big")
        phase("stop")
        if "storm" in only:
            srv = Server(tmp, "storm").start()
            servers.append(srv)
            t_load = time.perf_counter()
            rate = load_pods(srv, "storm", sizes.storm_pods, "s")
            print(f"storm: loaded {sizes.storm_pods:,} pods at {rate:,.0f}/s in "
                  f"{time.perf_counter() - t_load:.0f} s", flush=True)
            st, data = _call(srv, "GET", "/api/v1/namespaces/storm/pods?limit=1000")
            names = [p["metadata"]["name"] for p in json.loads(data)["items"]]
            res = StormResult(sizes.storm_watchers, sizes.storm_pods)
            run(_storm(srv, args.scheme, "storm", res, names, args.storm_write_rate, args.storm_limit,
                       args.storm_list_rv, args.storm_seconds, args.storm_after, int(args.rss_limit * 2**30)))
            ended = (f"all synced in {res.all_synced_s:.1f} s" if res.all_synced_s is not None
                     else f"{res.synced}/{res.watchers} synced when stopped after {res.duration_s:.0f} s")
            desc = (f"{res.watchers} informers x {res.pods:,} pods (LIST limit={args.storm_limit} "
                    f"RV={args.storm_list_rv or 'unset'}, then WATCH), writer {args.storm_write_rate:g} patches/s")
            print(f"  storm: {desc}: {ended}; writer p50 {1000 * res.writer_p50:.0f} ms p99 "
                  f"{1000 * res.writer_p99:.0f} ms max {1000 * res.writer_max:.0f} ms ({res.writer_n} writes, "
                  f"{res.writer_errors} errors; before the storm p99 {1000 * res.baseline_p99:.0f} ms); "
                  f"peak RSS {_mb(res.peak_rss):,.0f} MiB (before {_mb(res.rss_before):,.0f}); "
                  f"{res.list_requests:,} LIST requests, {res.list_bytes / 1e9:.1f} GB; "
                  f"{res.watch_events:,} watch events; client CPU {100 * res.client_cpu:.0f}%, "
                  f"server CPU {100 * res.server_cpu:.0f}%"
                  + (f"; ABORTED: {res.aborted}" if res.aborted else "")
                  + (f"; {len(res.errors)} informer errors, e.g. {res.errors[0]}" if res.errors else ""),
                  flush=True)
            wf = Figure("read", "relist storm: writer latency p99", "s", [res.writer_p99],
                        target=Target("<=", 1.0),
                        note=f"{desc}; {ended}; {res.writer_errors} write errors; p99 before {res.baseline_p99:.3f} s")
            rf = Figure("read", "relist storm: peak server RSS", "MiB", [_mb(res.peak_rss)],
                        target=Target("<=", 2 * 1e9 / 2**20, "<= 2 GB"),
                        note=f"{_mb(res.rss_before):,.0f} MiB before; client CPU {100 * res.client_cpu:.0f}%, "
                             f"server {100 * res.server_cpu:.0f}%")
            sf = Figure("read", "relist storm: informers watching at the end", "count", [float(res.synced)],
                        note=f"of {res.watchers}; {res.list_requests:,} LIST requests, {res.list_bytes / 1e9:.1f} GB "
                             f"read in {res.duration_s:.0f} s")
            if res.aborted:
                for f in (wf, rf, sf):
                    f.error = res.aborted
            figures += [wf, rf, sf]
            info["storm"] = {k: v for k, v in vars(res).items()}
            srv.stop()
            phase("storm")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        for s in servers:
            if s.log_tail():
                print(f"server log tail ({s.dir.name}):\n{s.log_tail()}", file=sys.stderr)
        raise RuntimeError(f"bench read failed: {e}") from e
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        elapsed = time.perf_counter() - started
        if figures:
            print(table(figures))
        print(f"bench read: {elapsed:.0f} s (" + ", ".join(f"{k} {v:.0f} s" for k, v in phase_s.items()) + ")")
        if args.json and figures:
            Path(args.json).write_text(json.dumps({"figures": [f.as_dict() for f in figures],
                                                   "info": info, "seconds": elapsed}, indent=2, default=str))
    return 0

