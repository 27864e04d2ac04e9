"""The HTTP stack benchmark: ``python -m bench http`` (``make bench ARGS=http``).

Which HTTP server should the API server be built on?  The candidates serve the same
endpoints (``bench/http_stacks/apps.py``) and are measured side by side in one run:

* ``aiohttp``: ``web.Application``; the watch handler awaits ``StreamResponse.write``;
* ``aiohttp-direct``: the same server, but the fan-out writes pre-framed chunks to each
  watch stream's transport itself (the handler only sends the headers);
* ``uvicorn``: uvicorn with httptools, a plain ASGI app (no framework);
* ``granian-asgi`` / ``granian-rsgi``: granian (Rust I/O) with the same ASGI app, and its
  RSGI interface;
* ``raw``: ``asyncio.Protocol`` + the httptools parser, hand-written responses, fan-out by
  ``transport.write``.

Every server runs in one process (granian: one worker under its supervisor; CPU is
counted over both, RSS is the worker's) on uvloop, on 127.0.0.1
(``bench/http_stacks/serve.py``).  The client is this process (uvloop, one
``asyncio.Protocol`` per stream that counts lines without parsing them), the same for
every stack; it shares the 2 cores with the server.

Figures:

* GET ``/api/v1/namespaces/default/pods/p1`` (a fixed 2.3 KB pod): requests/s and p99
  latency from ``wrk -t2 -c32 -d5s --latency``, over HTTP and over HTTPS (a self-signed
  P-256 certificate made with ``cryptography``, TLS 1.3), and the server's CPU per request;
* watch fan-out: this process opens N streams ``GET /api/v1/pods?watch=1`` (N = 1,000,
  then 4,000 more for 5,000) and triggers 50 events one after the other
  (``POST /_fanout?n=1``, which serializes one 2.3 KB ``MODIFIED`` line once and writes it
  to every stream); per event the latency from sending the trigger until the last stream
  has received the line (p50, p99 of the 50), events delivered per second
  (N x 50 / wall time), the server's CPU per delivered event and its RSS with the N
  streams open (and the increase per stream over the idle server);
* ``--only tls-watch`` (not in the default run, which stays under 6 minutes): the same
  fan-out over HTTPS (``--tls-streams``, default 1,000);
* slow client (once per stack, after the repetitions, each on a fresh server): one stream
  that stops reading (4 KiB receive buffer, reading paused) next to one that reads, while
  24 MB of events are fanned out: the server's RSS growth, the backlog the app can see on
  the stalled stream (queued bytes, or the transport's write buffer), whether the reader
  kept up; then the stalled stream reads again (does it get every event?); then it stalls
  again, the app's limit is set to 1 MiB and batches follow: does the app close it, and
  does the client see the connection end?

Each repetition runs every stack once, in an order rotated by one per repetition (the
machine's speed drifts); medians of the repetitions are quoted.  Every server is killed
(its whole process group) at the end, also on error, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import http.client
import importlib.metadata
import importlib.util
import json
import os
import re
import resource
import shutil
import signal
import socket
import ssl
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import psutil

from . import procs
from .report import fmt

HERE = Path(__file__).resolve().parent
SERVE = HERE / "http_stacks" / "serve.py"
POD_PATH = "/api/v1/namespaces/default/pods/p1"
POD_SIZE = 2315  # len(apps.POD_BYTES), checked against the first GET
MiB = 1024 * 1024

STACKS = ("aiohttp", "aiohttp-direct", "uvicorn", "granian-asgi", "granian-rsgi", "raw")
WATCH_ONLY = {"aiohttp-direct"}  # same GET path as aiohttp: not measured twice
TLS_STACKS = ("aiohttp", "uvicorn", "granian-asgi", "granian-rsgi", "raw")

OPEN_CONCURRENCY = 200  # streams being opened at once
EVENT_TIMEOUT = 30.0


def log(msg: str) -> None:
    print(f"[http {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def versions() -> dict[str, str]:
    out = {}
    for name in ("aiohttp", "uvicorn", "httptools", "granian", "uvloop", "orjson"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def self_signed(dirpath: Path) -> tuple[str, str]:
    """A P-256 key (PKCS#8, as granian requires) and a self-signed cert for 127.0.0.1."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubeplane-bench")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = dirpath / "cert.pem", dirpath / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return str(cert_path), str(key_path)


# --- servers -----------------------------------------------------------------------------------


class StackServer(procs.Server):
    """``serve.py STACK PORT`` in its own session; ``stop()`` kills the whole process group
    (granian's worker is a child of its supervisor)."""

    def __init__(self, stack: str, workdir: Path, tls: tuple[str, str] | None = None) -> None:
        port = procs.free_port()
        argv = [sys.executable, str(SERVE), stack, str(port)]
        if tls:
            argv += ["--cert", tls[0], "--key", tls[1]]
        suffix = "-tls" if tls else ""
        super().__init__(stack + suffix, argv, f"127.0.0.1:{port}", workdir / f"{stack}{suffix}.log", cwd=procs.REPO)
        self.stack = stack
        self.port = port
        self.tls = tls is not None
        self.serving_pid = 0

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def _conn(self, timeout: float = 2.0) -> http.client.HTTPConnection:
        if self.tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout, context=ctx)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def _ready(self) -> bool:
        """Ready once ``/_stats`` answers; the pod GET is checked once too."""
        try:
            conn = self._conn()
            try:
                conn.request("GET", "/_stats")
                resp = conn.getresponse()
                stats = json.loads(resp.read())
                conn.request("GET", POD_PATH)
                resp = conn.getresponse()
                body = resp.read()
            finally:
                conn.close()
        except (OSError, http.client.HTTPException, ValueError):
            return False
        if resp.status != 200 or len(body) != POD_SIZE or resp.getheader("content-type") != "application/json":
            raise procs.ServerError(f"{self.name}: bad pod response {resp.status} {resp.getheaders()} {len(body)} bytes")
        self.serving_pid = stats["pid"]
        return True

    def tree(self) -> list[psutil.Process]:
        assert self.ps is not None
        return [self.ps, *self.ps.children(recursive=True)]

    def rss(self) -> int:
        """RSS of the process that serves (granian: the worker; its supervisor holds ~28 MiB
        more, mostly pages shared with the worker since it forked it)."""
        return psutil.Process(self.serving_pid).memory_info().rss

    def cpu_seconds(self) -> float:
        total = 0.0
        for p in self.tree():
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return total

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # start_new_session: pgid == pid
        except ProcessLookupError:
            pass
        super().stop()


# --- wrk -----------------------------------------------------------------------------------------

_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3}


async def wrk(url: str, duration: float, threads: int = 2, conns: int = 32) -> dict:
    proc = await asyncio.create_subprocess_exec(
        "wrk", f"-t{threads}", f"-c{conns}", f"-d{duration:g}s", "--latency", url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), duration + 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = out.decode(errors="replace")
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    total = re.search(r"(\d+) requests in", text)
    if not (rps and p99 and total):
        raise RuntimeError(f"wrk output not understood: {text!r} {err.decode(errors='replace')!r}")
    errors = 0
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text):
        errors += sum(int(x) for x in m.groups())
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", text):
        errors += int(m.group(1))
    return {"rps": float(rps.group(1)), "p99_ms": float(p99.group(1)) * _UNIT[p99.group(2)],
            "requests": int(total.group(1)), "errors": errors}


# --- watch client ------------------------------------------------------------------------------


class Fan:
    """Counts, over a set of streams, who has received the awaited event."""

    def __init__(self) -> None:
        self.sent = 0  # events triggered on this server so far
        self.goal = 0
        self.remaining = 0
        self.done: asyncio.Future | None = None
        self.streams: list[WatchConn] = []
        self.lost = 0

    def arm(self, k: int) -> asyncio.Future:
        self.goal = self.sent + k
        self.remaining = len(self.streams)
        self.done = asyncio.get_running_loop().create_future()
        if self.remaining == 0:
            self.done.set_result(time.perf_counter())
        return self.done


def watch_request(port: int) -> bytes:
    return (b"GET /api/v1/pods?watch=1 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAccept: application/json\r\n"
            b"User-Agent: kubeplane-bench\r\n\r\n" % port)


class WatchConn(asyncio.Protocol):
    """One watch stream: counts complete lines (``}\\n``: orjson escapes newlines in
    strings, and the chunk framing is ``\\r\\n``) without parsing them."""

    def __init__(self, fan: Fan, request: bytes, keep: bool = False) -> None:
        self.fan = fan
        self.request = request
        self.head: bytes | None = b""
        self.ready = asyncio.get_running_loop().create_future()
        self.count = 0
        self.base = fan.sent
        self.tail = False
        self.keep = bytearray() if keep else None  # raw body kept to check the first line
        self.transport = None
        self.closed = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if self.head is not None:
            self.head += data
            i = self.head.find(b"\r\n\r\n")
            if i < 0:
                return
            head, data = self.head[:i], self.head[i + 4:]
            self.head = None
            low = head.lower()
            if not head.startswith(b"HTTP/1.1 200") or b"transfer-encoding: chunked" not in low:
                self.ready.set_exception(RuntimeError(f"bad watch response: {head[:300]!r}"))
                return
            self.ready.set_result(None)
            if not data:
                return
        if self.keep is not None and len(self.keep) < 8192:
            self.keep += data
        n = data.count(b"}\n")
        if self.tail and data[0] == 10:
            n += 1
        self.tail = data[-1] == 125
        if n:
            old = self.count
            self.count = old + n
            fan = self.fan
            goal = fan.goal - self.base
            if old < goal <= self.count:
                fan.remaining -= 1
                if fan.remaining == 0 and fan.done is not None and not fan.done.done():
                    fan.done.set_result(time.perf_counter())

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.fan.lost += 1
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"watch stream closed before its headers: {exc!r}"))


class StalledConn(WatchConn):
    """A watch stream that stops reading once it has its headers (until ``resume()``)."""

    stalled = True

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.stalled and self.head is None:
            self.transport.pause_reading()

    def resume(self) -> None:
        self.stalled = False
        self.transport.resume_reading()


def first_line(raw: bytes) -> dict:
    """The first JSON line of a chunked body."""
    size_line, _, rest = bytes(raw).partition(b"\r\n")
    size = int(size_line, 16)
    return orjson.loads(rest[:size])


def client_ssl(tls: bool) -> ssl.SSLContext | None:
    if not tls:
        return None
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Control:
    """A keep-alive connection for the control endpoints.  It is opened again after 2 s
    idle: servers close idle keep-alive connections (uvicorn after 5 s), and opening
    thousands of TLS streams takes longer than that."""

    IDLE = 2.0

    def __init__(self, port: int, tls: bool) -> None:
        self.port, self.tls = port, tls
        self.reader = self.writer = None
        self.used = 0.0

    @classmethod
    async def open(cls, port: int, tls: bool = False) -> "Control":
        ctl = cls(port, tls)
        await ctl._connect()
        return ctl

    async def _connect(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port, ssl=client_ssl(self.tls))

    async def call(self, method: str, path: str) -> bytes:
        if time.monotonic() - self.used > self.IDLE:
            await self._connect()
        self.writer.write(b"%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Length: 0\r\n\r\n"
                          % (method.encode(), path.encode(), self.port))
        head = await self.reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"{method} {path}: {head[:200]!r}")
        m = re.search(rb"content-length:\s*(\d+)", head, re.I)
        if not m:
            raise RuntimeError(f"{method} {path}: no content-length in {head[:300]!r}")
        body = await self.reader.readexactly(int(m.group(1)))
        self.used = time.monotonic()
        return body

    async def stats(self) -> dict:
        return orjson.loads(await self.call("GET", "/_stats"))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def open_streams(port: int, fan: Fan, n: int, tls: bool = False) -> None:
    loop = asyncio.get_running_loop()
    req = watch_request(port)
    ctx = client_ssl(tls)
    sem = asyncio.Semaphore(OPEN_CONCURRENCY)

    async def one(keep: bool) -> None:
        async with sem:
            _, conn = await loop.create_connection(lambda: WatchConn(fan, req, keep), "127.0.0.1", port, ssl=ctx)
            await conn.ready
            fan.streams.append(conn)

    async with asyncio.timeout(120):
        async with asyncio.TaskGroup() as tg:
            for i in range(n):
                tg.create_task(one(keep=not fan.streams and i == 0))


async def one_event(ctl: Control, fan: Fan, k: int = 1) -> float:
    """Trigger k events; seconds until every stream of ``fan`` has received them."""
    done = fan.arm(k)
    t0 = time.perf_counter()
    await ctl.call("POST", f"/_fanout?n={k}")
    fan.sent += k
    try:
        t_end = await asyncio.wait_for(done, EVENT_TIMEOUT)
    except TimeoutError:
        raise RuntimeError(
            f"{fan.remaining} of {len(fan.streams)} streams did not receive event {fan.goal} "
            f"within {EVENT_TIMEOUT:g} s ({fan.lost} streams closed)") from None
    return t_end - t0


def pct(xs: list[float], q: float) -> float:
    """The q-th percentile (linear interpolation) of xs."""
    s = sorted(xs)
    i = (len(s) - 1) * q / 100
    lo = int(i)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (i - lo)


async def fanout_phase(server: StackServer, counts: tuple[int, ...], events: int) -> dict:
    """Open streams up to each count in ``counts`` and time ``events`` single-event fan-outs;
    then close every stream and check the server lets go of them."""
    me = psutil.Process()
    fan = Fan()
    ctl = await Control.open(server.port, server.tls)
    out: dict = {}
    try:
        rss_idle = server.rss()
        for n in counts:
            t0 = time.perf_counter()
            await open_streams(server.port, fan, n - len(fan.streams), server.tls)
            opened_s = time.perf_counter() - t0
            seen = (await ctl.stats())["streams"]
            if seen != n:
                raise RuntimeError(f"server reports {seen} streams, {n} open")
            await one_event(ctl, fan)  # warm-up, not counted
            if fan.streams[0].keep is not None:
                line = first_line(fan.streams[0].keep)
                assert line["type"] == "MODIFIED" and line["object"]["kind"] == "Pod", line
                fan.streams[0].keep = None
            cpu0, ccpu0 = server.cpu_seconds(), sum(me.cpu_times()[:2])
            t0 = time.perf_counter()
            lat = [await one_event(ctl, fan) for _ in range(events)]
            wall = time.perf_counter() - t0
            cpu, ccpu = server.cpu_seconds() - cpu0, sum(me.cpu_times()[:2]) - ccpu0
            rss = server.rss()
            wrong = [c.count - (fan.sent - c.base) for c in fan.streams if c.count != fan.sent - c.base]
            if wrong or fan.lost:
                raise RuntimeError(f"{len(wrong)} streams with a wrong count, {fan.lost} closed")
            delivered = n * events
            out[n] = {
                "p50_ms": pct(lat, 50) * 1e3, "p99_ms": pct(lat, 99) * 1e3,
                "events_per_s": delivered / wall, "cpu_us_per_event": cpu / delivered * 1e6,
                "server_cpu_busy": cpu / wall, "client_cpu_busy": ccpu / wall,
                "rss_mib": rss / MiB, "rss_idle_mib": rss_idle / MiB,
                "kib_per_stream": (rss - rss_idle) / n / 1024, "open_s": opened_s,
            }
            log(f"  {server.name} {n} streams: p50 {out[n]['p50_ms']:.1f} ms, p99 {out[n]['p99_ms']:.1f} ms, "
                f"{fmt(out[n]['events_per_s'])} events/s, {out[n]['cpu_us_per_event']:.1f} us CPU/event, "
                f"RSS {rss / MiB:.0f} MiB (opened in {opened_s:.1f} s; client CPU {ccpu / wall:.0%})")
        # Close every stream: does the server let go of them?  (A stack that only notices a
        # closed stream when writing to it sees it at the next event.)
        for c in fan.streams:
            c.transport.close()
        fan.streams.clear()
        await asyncio.sleep(0.2)
        await ctl.call("POST", "/_fanout?n=1")
        fan.sent += 1
        deadline = time.monotonic() + 10
        while (left := (await ctl.stats())["streams"]) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        out["streams_left_after_close"] = left
    finally:
        for c in fan.streams:
            c.transport.abort()
        ctl.close()
    return out


async def wait_count(conn: WatchConn, want: int, quiet: float) -> bool:
    """Wait until ``conn`` has ``want`` lines; False once nothing arrived for ``quiet`` s."""
    last, t_last = conn.count, time.monotonic()
    while conn.count < want and not conn.closed:
        await asyncio.sleep(0.05)
        if conn.count != last:
            last, t_last = conn.count, time.monotonic()
        elif time.monotonic() - t_last > quiet:
            break
    return conn.count >= want


async def slow_phase(server: StackServer, total_mb: float, batch: int, limit: int) -> dict:
    """One reading stream and one stalled stream (4 KiB receive buffer, reading paused):

    1. ``total_mb`` MB of events fanned out in batches, no limit: the server's RSS growth,
       the backlog the app sees on the stalled stream, how the reader fared;
    2. the stalled stream reads again: does it get every event (nothing dropped)?
    3. it stalls again; the app's limit is set to ``limit`` bytes and batches are sent
       until the app closes the stream (at most 8 MB): is it closed, and is the
       connection really ended (the client sees EOF)?
    """
    loop = asyncio.get_running_loop()
    fan = Fan()
    ctl = await Control.open(server.port)
    req = watch_request(server.port)
    sock = socket.socket()
    conns: list[WatchConn] = []
    line_size = 2345
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", server.port))
        _, stalled = await loop.create_connection(lambda: StalledConn(Fan(), req), sock=sock)
        conns.append(stalled)
        await stalled.ready
        _, reader = await loop.create_connection(lambda: WatchConn(fan, req), "127.0.0.1", server.port)
        conns.append(reader)
        await reader.ready
        fan.streams.append(reader)
        await one_event(ctl, fan)
        rss0 = server.rss()
        batches = max(1, int(total_mb * 1e6 / line_size / batch))
        worst, max_backlog = 0.0, 0
        t0 = time.perf_counter()
        for _ in range(batches):
            worst = max(worst, await one_event(ctl, fan, batch))
            max_backlog = max(max_backlog, (await ctl.stats())["max_backlog"])
        elapsed = time.perf_counter() - t0
        rss1 = server.rss()
        out = {
            "pushed_mib": batches * batch * line_size / MiB, "rss_growth_mib": (rss1 - rss0) / MiB,
            "backlog_seen_mib": max_backlog / MiB, "reader_worst_batch_ms": worst * 1e3,
            "reader_events_per_s": batches * batch / elapsed,
        }
        # 2. the stalled stream reads again
        stalled.resume()
        t0 = time.perf_counter()
        out["stalled_got_all"] = await wait_count(stalled, fan.sent, quiet=3.0)
        out["stalled_got"], out["sent"] = stalled.count, fan.sent
        out["drain_s"] = time.perf_counter() - t0
        out["rss_after_drain_growth_mib"] = (server.rss() - rss0) / MiB
        # 3. stall again, then the app's limit
        stalled.stalled = True
        await ctl.call("POST", f"/_config?slow_limit={limit}")
        pushed = 0
        while pushed < 8e6:
            await one_event(ctl, fan, batch)
            pushed += batch * line_size
            if (await ctl.stats())["slow_closed"]:
                break
        st = await ctl.stats()
        out["closed_by_limit"] = st["slow_closed"]
        out["pushed_until_closed_mib"] = pushed / MiB
        out["streams_after_limit"] = st["streams"]
        stalled.resume()
        await wait_count(stalled, fan.sent, quiet=2.0)
        out["stalled_saw_eof"] = stalled.closed
        return out
    finally:
        for c in conns:
            if c.transport is not None:
                c.transport.abort()
        sock.close()
        ctl.close()


# --- the run -------------------------------------------------------------------------------------


@dataclass
class Settings:
    reps: int = 3
    duration: float = 5.0
    counts: tuple[int, ...] = (1000, 5000)
    events: int = 50
    tls_counts: tuple[int, ...] = (1000,)
    stacks: tuple[str, ...] = STACKS
    groups: tuple[str, ...] = ("get", "watch", "slow")
    tls: bool = True  # HTTPS GET figures too
    slow_mb: float = 24.0
    workdir: Path = Path(".")


@dataclass
class Results:
    # samples[stack][figure] -> one value per repetition
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    slow: dict[str, dict] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)
    context: dict = field(default_factory=dict)

    def add(self, stack: str, name: str, value: float) -> None:
        self.samples.setdefault(stack, {}).setdefault(name, []).append(value)

    def error(self, stack: str, what: str, exc: BaseException) -> None:
        msg = f"{what}: {type(exc).__name__}: {exc}"[:400]
        log(f"  {stack} {msg}")
        self.errors.setdefault(stack, []).append(msg)

    def median(self, stack: str, name: str) -> float | None:
        xs = self.samples.get(stack, {}).get(name)
        return statistics.median(xs) if xs else None


async def measure_get(server: StackServer, s: Settings, res: Results, prefix: str) -> None:
    cpu0 = server.cpu_seconds()
    r = await wrk(server.url + POD_PATH, s.duration)
    cpu = server.cpu_seconds() - cpu0
    if r["errors"]:
        raise RuntimeError(f"wrk saw {r['errors']} errors")
    res.add(server.stack, f"{prefix}_rps", r["rps"])
    res.add(server.stack, f"{prefix}_p99_ms", r["p99_ms"])
    res.add(server.stack, f"{prefix}_cpu_us", cpu / r["requests"] * 1e6)
    log(f"  {server.name} GET: {fmt(r['rps'])} req/s, p99 {r['p99_ms']:.2f} ms")


async def measure_watch(server: StackServer, s: Settings, res: Results, counts: tuple[int, ...], prefix: str) -> None:
    out = await fanout_phase(server, counts, s.events)
    for n in counts:
        for key, val in out[n].items():
            res.add(server.stack, f"{prefix}{n}_{key}", val)
    res.add(server.stack, f"{prefix}_streams_left_after_close", out["streams_left_after_close"])


async def run_stack(s: Settings, res: Results, stack: str, cert: tuple[str, str] | None) -> None:
    """One repetition of one stack: a plain server (GET, watch), then a TLS one (GET, watch)."""
    for tls in (False, True):
        get = "get" in s.groups and stack not in WATCH_ONLY and (not tls or s.tls)
        watch = ("tls-watch" if tls else "watch") in s.groups and (s.tls_counts if tls else s.counts)
        if not (get or watch):
            continue
        server = StackServer(stack, s.workdir, tls=cert if tls else None)
        try:
            server.start()
        except procs.ServerError as exc:
            res.error(stack, f"server start{' (TLS)' if tls else ''}", exc)
            server.stop()
            continue
        try:
            if get:
                try:
                    await measure_get(server, s, res, "tls" if tls else "get")
                except Exception as exc:
                    res.error(stack, f"GET {'https' if tls else 'http'}", exc)
            if watch:
                try:
                    if tls:
                        await measure_watch(server, s, res, s.tls_counts, "tlswatch")
                    else:
                        await measure_watch(server, s, res, s.counts, "watch")
                except Exception as exc:
                    res.error(stack, f"watch fan-out{' over TLS' if tls else ''}", exc)
        finally:
            server.stop()


async def run(s: Settings) -> Results:
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
    res = Results()
    res.context = {
        "cpus": os.cpu_count(), "python": sys.version.split()[0], "versions": versions(),
        "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg()), "reps": s.reps,
        "wrk": shutil.which("wrk"), "nofile": raise_nofile(),
    }
    cert = self_signed(s.workdir) if (s.tls or "tls-watch" in s.groups) else None
    for rep in range(s.reps):
        order = s.stacks[rep % len(s.stacks):] + s.stacks[:rep % len(s.stacks)]
        log(f"repetition {rep + 1}/{s.reps}: {', '.join(order)}")
        for stack in order:
            await run_stack(s, res, stack, cert)
    if "slow" in s.groups:
        log("slow client, once per stack, each on a fresh server")
        for stack in s.stacks:
            server = StackServer(stack, s.workdir)
            try:
                server.start()
                res.slow[stack] = d = await slow_phase(server, s.slow_mb, 250, MiB)
                log(f"  {stack}: RSS +{d['rss_growth_mib']:.1f} MiB for {d['pushed_mib']:.1f} MiB pushed, "
                    f"app saw {d['backlog_seen_mib']:.1f} MiB; got all after resume: {d['stalled_got_all']}; "
                    f"closed by the limit: {d['closed_by_limit']}, EOF seen: {d['stalled_saw_eof']}")
            except Exception as exc:
                res.error(stack, "slow client", exc)
            finally:
                server.stop()
    res.context["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return res


# --- report --------------------------------------------------------------------------------------


def _f(x: float | None, digits: int | None = None) -> str:
    if x is None:
        return "-"
    return f"{x:.{digits}f}" if digits is not None else fmt(x)


def md_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def watch_table(s: Settings, res: Results, prefix: str, n: int, title: str) -> str:
    m = res.median
    k = f"{prefix}{n}_"
    rows = [
        [st, _f(m(st, k + "p50_ms"), 1), _f(m(st, k + "p99_ms"), 1), _f(m(st, k + "events_per_s")),
         _f(m(st, k + "cpu_us_per_event"), 1), _f(m(st, k + "rss_mib"), 0), _f(m(st, k + "kib_per_stream"), 1),
         _f(m(st, k + "client_cpu_busy"), 2)]
        for st in s.stacks if m(st, k + "p50_ms") is not None
    ]
    return f"{title}, {n:,} streams, {s.events} events one at a time; median of {s.reps}\n\n" + md_table(
        ["stack", "p50 ms", "p99 ms", "events/s", "server CPU us/event", "server RSS MiB", "KiB/stream",
         "client CPU busy"], rows)


def report(s: Settings, res: Results) -> str:
    m = res.median
    parts = []
    if "get" in s.groups:
        get_rows = [
            [st, _f(m(st, "get_rps")), _f(m(st, "get_p99_ms"), 2), _f(m(st, "get_cpu_us"), 0),
             _f(m(st, "tls_rps")), _f(m(st, "tls_p99_ms"), 2), _f(m(st, "tls_cpu_us"), 0)]
            for st in s.stacks if st not in WATCH_ONLY
        ]
        parts.append("GET pod (2.3 KB JSON), wrk -t2 -c32 -d%gs; median of %d\n\n" % (s.duration, s.reps) + md_table(
            ["stack", "HTTP req/s", "p99 ms", "CPU us/req", "HTTPS req/s", "p99 ms", "CPU us/req"], get_rows))
    for prefix, counts, title, group in (("watch", s.counts, "Watch fan-out", "watch"),
                                         ("tlswatch", s.tls_counts, "Watch fan-out over TLS", "tls-watch")):
        if group not in s.groups or not counts:
            continue
        for n in counts:
            parts.append(watch_table(s, res, prefix, n, title))
        left = [f"{st}: {int(x)}" for st in s.stacks if (x := m(st, f"{prefix}_streams_left_after_close"))]
        parts.append(f"{title}: streams the server still held 10 s after the client closed them all (and one more "
                     "event): " + (", ".join(left) if left else "none"))
    if res.slow:
        rows = []
        for st in s.stacks:
            d = res.slow.get(st)
            if d is None:
                continue
            got = "yes" if d["stalled_got_all"] else f"NO ({d['stalled_got']} of {d['sent']})"
            closed = (f"yes, after {d['pushed_until_closed_mib']:.1f} MiB" if d["closed_by_limit"]
                      else f"no ({d['pushed_until_closed_mib']:.1f} MiB pushed)")
            rows.append([st, _f(d["pushed_mib"], 1), _f(d["rss_growth_mib"], 1), _f(d["backlog_seen_mib"], 1),
                         _f(d["reader_worst_batch_ms"], 0), got, _f(d["rss_after_drain_growth_mib"], 1), closed,
                         "yes" if d["stalled_saw_eof"] else "no"])
        parts.append(
            "Slow client (fresh server): 1 stalled stream (4 KiB receive buffer) + 1 reading stream, events in "
            "batches of 250\n\n" + md_table(
                ["stack", "pushed MiB", "RSS growth MiB", "backlog app sees MiB", "reader worst batch ms",
                 "stalled got all after resume", "RSS growth after drain", "app closed it at 1 MiB", "client saw EOF"],
                rows))
    if res.errors:
        parts.append("Errors:\n" + "\n".join(f"- {st}: {e}" for st, es in res.errors.items() for e in es))
    return "\n\n".join(parts)


GROUPS = ("get", "watch", "slow", "tls-watch")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench http", description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=3, help="repetitions (default %(default)s)")
    p.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run (default %(default)s)")
    p.add_argument("--streams", default="1000,5000", help="watch stream counts, ascending (default %(default)s)")
    p.add_argument("--tls-streams", default="1000", help="stream counts for tls-watch (default %(default)s)")
    p.add_argument("--events", type=int, default=50, help="fan-out events per stream count (default %(default)s)")
    p.add_argument("--stacks", default=",".join(STACKS), help="comma-separated among %(default)s")
    p.add_argument("--only", default="get,watch,slow",
                   help=f"comma-separated groups among {','.join(GROUPS)} (default %(default)s; tls-watch, the "
                        "fan-out over HTTPS, is left out of the default run to keep it under 6 minutes)")
    p.add_argument("--no-tls", action="store_true", help="skip the HTTPS GET figures")
    p.add_argument("--slow-mb", type=float, default=24.0, help="MB fanned out to the stalled client (default %(default)s)")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 repetition, 1 s wrk, 200 streams, 10 events")
    p.add_argument("--json", metavar="PATH", help="also write every sample as JSON")
    args = p.parse_args(argv)
    stacks = tuple(x.strip() for x in args.stacks.split(",") if x.strip())
    if unknown := set(stacks) - set(STACKS):
        p.error(f"unknown stacks {sorted(unknown)}")
    groups = tuple(g.strip() for g in args.only.split(",") if g.strip())
    if unknown := set(groups) - set(GROUPS):
        p.error(f"unknown groups {sorted(unknown)}")
    counts = lambda text: tuple(sorted(int(x) for x in text.split(",") if x.strip()))  # noqa: E731
    s = Settings(reps=args.reps, duration=args.duration, events=args.events, stacks=stacks, groups=groups,
                 counts=counts(args.streams), tls_counts=counts(args.tls_streams), tls=not args.no_tls,
                 slow_mb=args.slow_mb)
    if args.quick:
        s.reps, s.duration, s.counts, s.tls_counts, s.events, s.slow_mb = 1, 1.0, (200,), (200,), 10, 4.0
    missing = [m for m in ("aiohttp", "uvicorn", "httptools", "granian", "cryptography", "psutil")
               if importlib.util.find_spec(m) is None]
    if missing:
        print(f"http benchmark: missing {', '.join(missing)}: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    if "get" in s.groups and not shutil.which("wrk"):
        print("http benchmark: wrk not found: apt-get install -y wrk (or --only watch,slow)", file=sys.stderr)
        return 2
    from kubeplane import runtime

    with tempfile.TemporaryDirectory(prefix="kubeplane-http-bench-") as tmp:
        s.workdir = Path(tmp)
        t0 = time.perf_counter()
        try:
            res = runtime.run(run(s))
        except (KeyboardInterrupt, asyncio.CancelledError):
            print("http benchmark interrupted; servers stopped", file=sys.stderr)
            return 130
        finally:
            procs.stop_all()
    ctx = res.context
    ctx["took_s"] = round(time.perf_counter() - t0)
    v = ctx["versions"]
    print(
        f"\nHTTP stack benchmark: {ctx['cpus']} CPUs, Python {ctx['python']}, "
        f"{', '.join(f'{k} {x}' for k, x in v.items())}; every server on uvloop, one process; "
        f"client: this process ({runtime.loop_name()}); {s.reps} repetition(s), stacks interleaved "
        f"(order rotated each repetition); load average before {ctx['load_before']}, after {ctx['load_after']}; "
        f"took {ctx['took_s']} s.\n"
    )
    print(report(s, res))
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"context": ctx, "samples": res.samples, "slow": res.slow, "errors": res.errors}, indent=2))
    return 1 if res.errors else 0
