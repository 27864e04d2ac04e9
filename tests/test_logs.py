"""kubeplane.logs: klog text and JSON formats, verbosity, the rate limiter, the request log."""
from __future__ import annotations

import inspect
import io
import json
import logging
import os
import re
import time

import pytest

from kubeplane.logs import (V, JSONFormatter, RateLimitFilter, TextFormatter, go_duration, kv,
                            log_request, request_logging_enabled, setup_logging)

log = logging.getLogger("kubeplane.test")


def here() -> int:
    """The line number of the caller."""
    return inspect.currentframe().f_back.f_lineno  # type: ignore[union-attr]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def restore_logging():
    root = logging.getLogger()
    kp = logging.getLogger("kubeplane")
    saved = (list(root.handlers), root.level, kp.level)
    yield
    for h in list(root.handlers):
        if h not in saved[0]:
            root.removeHandler(h)
    root.setLevel(saved[1])
    kp.setLevel(saved[2])


def lines(buf: io.StringIO) -> list[str]:
    return buf.getvalue().splitlines()


def record(msg: str, level: int = logging.INFO, args=None, **kv_: object) -> logging.LogRecord:
    r = logging.LogRecord("kubeplane.apiserver", level, "/src/kubeplane/apiserver/server/app.py", 42, msg, args, None)
    r.created = 1700000000.123456
    r.process = 12345
    if kv_:
        r.kv = kv_
    return r


# --- text ------------------------------------------------------------------------------------

def test_text_exact_line():
    r = record("Watch started", resource="pods", count=3, ok=True, ratio=0.5, none=None,
               labels={"app": "web"}, ids=[1, 2])
    t = time.localtime(r.created)
    head = f"I{t.tm_mon:02d}{t.tm_mday:02d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.123456   12345 app.py:42] "
    assert TextFormatter().format(r) == (
        head + '"Watch started" resource="pods" count=3 ok=true ratio=0.5 none=<nil> '
        'labels={"app":"web"} ids=[1,2]')


def test_text_severity_err_first_quoting_multiline():
    f = TextFormatter()
    assert f.format(record("x", logging.WARNING)).startswith("W")
    assert f.format(record("x", logging.CRITICAL)).startswith("E")
    assert f.format(record("x", V(3))).startswith("I")
    out = f.format(record("Watch failed", logging.ERROR, resource="pods", err=ValueError("boom")))
    assert out.startswith("E") and out.endswith('] "Watch failed" err="boom" resource="pods"')
    assert f.format(record('say "hi"\n')).endswith('] "say \\"hi\\"\\n"')
    assert f.format(record("served %d of %s", args=(5, "pods"))).endswith('] "served 5 of pods"')
    assert f.format(record("m", reasons="a\nb")).endswith('] "m" reasons=<\n\ta\n\tb\n >')
    assert f.format(record("m", reasons="a\n")).endswith('] "m" reasons=<\n\ta\n >')


def test_text_through_setup_logging_has_pid_and_caller():
    buf = io.StringIO()
    setup_logging(0, "text", buf)
    kv(log, logging.INFO, "Serving", port=6443); line_no = here()
    try:
        1 / 0
    except ZeroDivisionError:
        log.exception("unhandled error serving %s", "GET"); exc_line = here()
    out = lines(buf)
    assert re.fullmatch(r"I\d{4} \d\d:\d\d:\d\d\.\d{6} +\d+ test_logs\.py:\d+\] \"Serving\" port=6443", out[0])
    assert out[0][21:30] == f" {os.getpid():7d} "
    assert out[0].split("] ")[0].endswith(f"test_logs.py:{line_no}")
    assert f"test_logs.py:{exc_line}] \"unhandled error serving GET\" err=\"division by zero\" stacktrace=<" in out[1]
    assert "\tTraceback (most recent call last):" in out
    assert out[-1] == " >"


# --- json ------------------------------------------------------------------------------------

def test_json_fields_and_order():
    buf = io.StringIO()
    setup_logging(2, "json", buf)
    t0 = time.time() * 1000
    kv(log, logging.INFO, "Watch started", resource="pods", count=3); l1 = here()
    kv(log, V(2), "Detail", n=1)
    log.warning("careful")
    kv(log, logging.ERROR, "Watch failed", resource="pods", err=ConnectionError("boom"))
    a, b, c, d = [json.loads(x) for x in lines(buf)]
    assert list(a) == ["ts", "logger", "caller", "msg", "v", "resource", "count"]
    assert t0 - 1 <= a["ts"] <= time.time() * 1000 + 1          # epoch milliseconds
    assert a["caller"] == f"tests/test_logs.py:{l1}"
    assert (a["logger"], a["msg"], a["v"], a["resource"], a["count"]) == (
        "kubeplane.test", "Watch started", 0, "pods", 3)
    assert (b["msg"], b["v"], b["n"]) == ("Detail", 2, 1)
    assert (c["msg"], c["v"]) == ("careful", 0)
    assert list(d) == ["ts", "logger", "caller", "msg", "resource", "err"]   # errors: no "v"
    assert d["err"] == "boom"


def test_json_exception_and_odd_values():
    f = JSONFormatter()
    obj = json.loads(f.format(record("m", big=2**70, raw=b"\xffx", s={3}, o=object)))
    assert obj["big"] == 2**70 and obj["raw"] == "\\xffx" and obj["s"] == [3]
    assert obj["o"] == "<class 'object'>"
    try:
        raise KeyError("k")
    except KeyError:
        import sys
        r = record("failed", logging.ERROR)
        r.exc_info = sys.exc_info()
    obj = json.loads(f.format(r))
    assert obj["err"] == "'k'" and "Traceback" in obj["stacktrace"] and "v" not in obj


# --- verbosity ---------------------------------------------------------------------------------

def test_verbosity_gating():
    buf = io.StringIO()
    other = logging.getLogger("somelib")
    setup_logging(0, "text", buf)
    kv(log, logging.INFO, "v0")
    kv(log, V(1), "v1")
    other.info("lib info")
    other.warning("lib warning")
    assert [line.split("] ")[1] for line in lines(buf)] == ['"v0"', '"lib warning"']
    buf = io.StringIO()
    setup_logging(2, "text", buf)
    for n in range(5):
        kv(log, V(n), f"v{n}")
    log.debug("debug")
    assert [line.split("] ")[1] for line in lines(buf)] == ['"v0"', '"v1"', '"v2"']
    assert len(logging.getLogger().handlers) == len([h for h in logging.getLogger().handlers
                                                     if not hasattr(h, "ratelimit")]) + 1
    buf = io.StringIO()
    setup_logging(10, "text", buf)
    log.debug("debug")
    other.info("lib info")
    assert [line.split("] ")[1] for line in lines(buf)] == ['"debug"', '"lib info"']


def test_kv_builds_nothing_when_disabled():
    class Explodes:
        def __str__(self) -> str:
            raise AssertionError("formatted")

    buf = io.StringIO()
    setup_logging(1, "text", buf)
    kv(log, V(2), "hidden", x=Explodes())
    assert buf.getvalue() == ""


# --- rate limiting -----------------------------------------------------------------------------

def test_rate_limiter_suppresses_then_summarizes():
    clock = FakeClock()
    buf = io.StringIO()
    handler = setup_logging(0, "text", buf, rate_limit=3, rate_interval=10, clock=clock)
    for i in range(10):
        log.warning("connection %d failed", i)
        if i == 3:
            first_suppressed = here() - 2
    kv(log, logging.INFO, "other message")          # another template: its own budget
    out = lines(buf)
    assert [x.split("] ")[1] for x in out] == [
        '"connection 0 failed"', '"connection 1 failed"', '"connection 2 failed"', '"other message"']
    clock.now += 9.9
    log.warning("connection %d failed", 10)
    assert len(lines(buf)) == 4                      # same window: still suppressed
    clock.now += 0.1
    log.warning("connection %d failed", 11)
    out = lines(buf)[4:]
    assert out[0].startswith("W")                     # the highest level suppressed
    assert out[0].endswith(
        f'test_logs.py:{first_suppressed}] "8 similar messages suppressed" '
        'message="connection %d failed" logger="kubeplane.test" interval="10s"')
    assert out[1].endswith('"connection 11 failed"')
    assert len(out) == 2
    # a window that closes is summarized by whichever record comes next, or by flush()
    for i in range(5):
        log.error("disk full")
    clock.now += 10
    kv(log, logging.INFO, "unrelated")
    out = lines(buf)[6:]
    assert [x.split("] ")[1] for x in out] == [
        '"disk full"', '"disk full"', '"disk full"',
        '"2 similar messages suppressed" message="disk full" logger="kubeplane.test" interval="10s"',
        '"unrelated"']
    assert out[3].startswith("E")
    for i in range(4):
        log.info("tick")
    handler.ratelimit.flush()
    assert lines(buf)[-1].split("] ")[1].startswith('"1 similar messages suppressed" message="tick"')
    handler.ratelimit.flush()
    assert lines(buf)[-1].split("] ")[1].startswith('"1 similar messages suppressed" message="tick"')
    assert len([x for x in lines(buf) if "tick" in x]) == 4


def test_rate_limiter_key_cap_and_exemption():
    clock = FakeClock()
    got: list[logging.LogRecord] = []
    f = RateLimitFilter(limit=1, interval=10, clock=clock, max_keys=2)
    f.sink = got.append
    rec = lambda msg, **extra: logging.makeLogRecord({"name": "kubeplane.x", "msg": msg, "levelno": 20, **extra})  # noqa: E731
    assert f.filter(rec("a")) and not f.filter(rec("a"))
    assert f.filter(rec("b"))
    assert f.filter(rec("c"))          # evicts the oldest key "a", summarizing it
    assert [r.getMessage() for r in got] == ["1 similar messages suppressed"]
    assert len(f._windows) == 2
    assert all(f.filter(rec("HTTP", ratelimit=False)) for _ in range(5))
    with pytest.raises(ValueError):
        RateLimitFilter(limit=0)


# --- the request log ---------------------------------------------------------------------------

def test_request_log_line():
    buf = io.StringIO()
    setup_logging(3, "text", buf, rate_limit=2)
    assert request_logging_enabled()
    line_no = here() + 2
    for _ in range(3):   # never rate limited
        log_request("LIST", "/api/v1/pods?limit=500", 200, 0.003370051, "admin", "kubectl/v1.30.0",
                    "127.0.0.1:54321", audit_id="5b6f", apf_pl="exempt")
    out = lines(buf)
    assert len(out) == 3
    assert out[0].startswith("I")
    assert out[0].endswith(
        f'test_logs.py:{line_no}] "HTTP" verb="LIST" URI="/api/v1/pods?limit=500" latency="3.370051ms" '
        'userAgent="kubectl/v1.30.0" audit-ID="5b6f" srcIP="127.0.0.1:54321" user="admin" apf_pl="exempt" resp=200')
    buf = io.StringIO()
    setup_logging(3, "json", buf)
    log_request("GET", "/healthz", 500, 1.5, None, "kube-probe/1.30", "10.0.0.1:1")
    obj = json.loads(buf.getvalue())
    assert obj["msg"] == "HTTP" and obj["v"] == 0 and obj["resp"] == 500
    assert (obj["latency"], obj["audit-ID"], "user" in obj) == ("1.5s", "", False)
    assert list(obj)[-1] == "resp"


def test_request_log_costs_nothing_below_its_level():
    class Explodes:
        def __str__(self) -> str:
            raise AssertionError("formatted")

    buf = io.StringIO()
    setup_logging(2, "text", buf)
    assert not request_logging_enabled()
    log_request("GET", Explodes(), 200, 0.001, Explodes(), Explodes(), Explodes())  # type: ignore[arg-type]
    assert buf.getvalue() == ""
    assert request_logging_enabled(2)
    log_request("GET", "/version", 200, 0.001, None, "curl", "127.0.0.1:2", verbosity=2)
    assert '"HTTP" verb="GET" URI="/version"' in buf.getvalue()


@pytest.mark.parametrize("seconds,text", [
    (0, "0s"), (850e-9, "850ns"), (1.5e-6, "1.5µs"), (0.003370051, "3.370051ms"), (0.25, "250ms"),
    (2.5, "2.5s"), (90, "1m30s"), (3600, "1h0m0s"), (3723.5, "1h2m3.5s"), (-0.002, "-2ms"),
])
def test_go_duration(seconds: float, text: str):
    assert go_duration(seconds) == text


def test_setup_rejects_unknown_format():
    with pytest.raises(ValueError):
        setup_logging(0, "yaml")
