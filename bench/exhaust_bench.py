"""``python -m bench exhaust``: what abusive connections cost the API server.

Two probes against a fresh ``kubeplane serve`` (plain-HTTP listener on loopback):

- **big header**: one client sends a request whose single header is ``--header-mb`` MB
  long, while another client GETs a ConfigMap in a loop. Reported: the time until the
  abusive client has its answer (or loses the connection), the answer's status, the
  largest GET latency seen meanwhile (and in the second before), and the server's RSS
  growth. Then the same with ``--repeats`` times one short header (``A: b``).
- **watches that never read**: ``--watchers`` watches of ConfigMaps over HTTPS (plain
  HTTP with ``--plain``) whose sockets have a 4 KiB receive buffer and are never read, while ``--event-mb`` MB of events are written
  (ConfigMaps of ~500 KB updated in turn). Reported: the server's RSS before, at the
  end of the writes, and 3 s after the watchers disconnected.
"""
from __future__ import annotations

import argparse
import http.client
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson
import psutil

MB = 1_000_000
MiB = 1 << 20


class Serve:
    """``kubeplane serve --http-listen 127.0.0.1:0`` in a temporary data dir."""

    def __init__(self, base: Path, extra: list[str] | None = None) -> None:
        self.data = base / "data"
        argv = [sys.executable, "-m", "kubeplane.cli", "serve", "--data-dir", str(self.data),
                "--secure-port", "0", "--http-listen", "127.0.0.1:0", "--scheduler=false", "--controller-manager=false", "--hollow-nodes", "0", *(extra or [])]
        self.log = open(base / "serve.log", "ab")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)
        assert self.proc.stdout is not None
        self.port = self.tls_port = 0
        deadline = time.monotonic() + 60
        while not (self.port and self.tls_port) and time.monotonic() < deadline:
            line = self.proc.stdout.readline().decode()
            if not line:
                raise RuntimeError("kubeplane serve exited")
            if line.startswith("kubeplane: plain HTTP"):
                self.port = int(line.split()[-1])
            elif line.startswith("kubeplane: serving "):
                self.tls_port = int(line.rsplit(":", 1)[1])
        self.ps = psutil.Process(self.proc.pid)
        self.token = (self.data / "pki" / "token").read_text().strip()
        self.tls = ssl.create_default_context(cafile=str(self.data / "pki" / "ca.crt"))

    def rss_mib(self) -> float:
        return self.ps.memory_info().rss / MiB

    def call(self, method: str, path: str, body: object = None) -> tuple[int, bytes]:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            data = orjson.dumps(body) if body is not None else None
            c.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def big_header(s: Serve, size: int, repeats: int = 0) -> dict[str, float | int | str]:
    """Send a request with one `size`-byte header (or `repeats` times the header
    `A: b`); GET from another client meanwhile."""
    assert s.call("POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "probe"}})[0] in (201, 409)
    worst = [0.0]
    stop = threading.Event()

    def getter() -> None:
        c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
        while not stop.is_set():
            t = time.monotonic()
            c.request("GET", "/api/v1/namespaces/default/configmaps/probe")
            c.getresponse().read()
            worst[0] = max(worst[0], time.monotonic() - t)
        c.close()

    # built before the getter starts: making 64 MB holds this process's GIL for a while
    payload = b"GET /api/v1/namespaces/default/configmaps/probe HTTP/1.1\r\nHost: x\r\n" + (
        b"A: b\r\n" * repeats + b"\r\n" if repeats else b"X-Big: " + b"a" * size)
    g = threading.Thread(target=getter)
    rss0 = s.rss_mib()
    peak = [rss0]
    g.start()
    time.sleep(1.0)
    baseline = worst[0]          # the worst GET before the big header
    worst[0] = 0.0
    sock = socket.create_connection(("127.0.0.1", s.port))
    sock.settimeout(60)

    def sender() -> None:
        try:
            sock.sendall(payload)
            sock.sendall(b"\r\n\r\n")
        except OSError:
            pass

    t0 = time.monotonic()
    snd = threading.Thread(target=sender)
    snd.start()
    answer = b""
    try:
        while b"\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    except OSError as e:
        answer = answer or str(e).encode()
    took = time.monotonic() - t0
    peak[0] = max(peak[0], s.rss_mib())
    snd.join(60)
    sock.close()
    time.sleep(0.3)
    stop.set()
    g.join()
    return {"header_mb": len(payload) / MB, "repeats": repeats, "answer": answer.split(b"\r\n", 1)[0].decode(errors="replace"),
            "seconds_to_answer": round(took, 3), "other_client_worst_get_ms": round(worst[0] * 1e3, 1),
            "worst_get_ms_before": round(baseline * 1e3, 1),
            "rss_growth_mib": round(peak[0] - rss0, 1)}


def open_stalled_watch(s: Serve, path: str, tls: bool) -> socket.socket:
    """A watch over HTTPS (`tls`) or plain HTTP whose socket is never read."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", s.tls_port if tls else s.port))
    if tls:
        sock = s.tls.wrap_socket(sock, server_hostname="127.0.0.1")
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {s.token}\r\n\r\n".encode())
    return sock


def stalled_watchers(s: Serve, watchers: int, event_bytes: int, tls: bool = True,
                     ns: str = "default") -> dict[str, float | bool]:
    """`watchers` watches that never read while `event_bytes` of events are written."""
    value = "x" * 500_000
    names = [f"big-{i}" for i in range(4)]
    for n in names:
        st, _ = s.call("POST", f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": n}, "data": {"v": value}})
        assert st in (201, 409), st
    time.sleep(1.0)
    rss0 = s.rss_mib()
    socks = [open_stalled_watch(s, f"/api/v1/namespaces/{ns}/configmaps?watch=1&resourceVersion=0", tls)
             for _ in range(watchers)]
    time.sleep(1.0)
    written, i = 0, 0
    t0 = time.monotonic()
    while written < event_bytes:
        n = names[i % len(names)]
        v = chr(ord("a") + i % 26) * 500_000
        st, _ = s.call("PUT", f"/api/v1/namespaces/{ns}/configmaps/{n}",
                       {"metadata": {"name": n}, "data": {"v": v}})
        assert st == 200, st
        written += 500_000
        i += 1
    write_s = time.monotonic() - t0
    time.sleep(1.0)
    rss_peak = s.rss_mib()
    for k in socks:
        k.close()
    time.sleep(3.0)
    rss_after = s.rss_mib()
    return {"watchers": watchers, "tls": tls, "event_mb": written / MB, "write_seconds": round(write_s, 1),
            "rss_before_mib": round(rss0, 1), "rss_with_watchers_mib": round(rss_peak, 1),
            "rss_after_disconnect_mib": round(rss_after, 1)}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench exhaust", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--header-mb", type=float, default=64.0)
    p.add_argument("--repeats", type=int, default=160_000, help="repeats of one header in the second probe")
    p.add_argument("--watchers", type=int, default=20)
    p.add_argument("--event-mb", type=float, default=40.0)
    p.add_argument("--plain", action="store_true", help="watches over plain HTTP (default: HTTPS)")
    p.add_argument("--only", default="header,watch")
    args = p.parse_args(argv)
    only = set(args.only.split(","))
    with tempfile.TemporaryDirectory(prefix="kp-exhaust-") as tmp:
        for probe in ("header", "watch"):
            if probe not in only:
                continue
            base = Path(tmp) / probe
            base.mkdir()
            s = Serve(base)
            try:
                if probe == "header":
                    out = big_header(s, int(args.header_mb * MB))
                    print(probe, orjson.dumps(out).decode(), flush=True)
                    out = big_header(s, 0, repeats=args.repeats)
                else:
                    out = stalled_watchers(s, args.watchers, int(args.event_mb * MB), not args.plain)
                print(probe, orjson.dumps(out).decode(), flush=True)
            finally:
                s.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
