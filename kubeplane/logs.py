"""Structured logs in klog's formats, klog verbosity, and a flood guard.

Formats (`setup_logging(fmt=...)`):

- ``text``, klog's structured text: one line per record (multi-line values excepted)::

      I1122 10:00:00.123456   12345 app.py:42] "Watch started" resource="pods" count=3

  severity letter (I info and V(n), W warning, E error and critical), local month-day and
  time with microseconds, the process id right-aligned in 7 columns, the caller's file base
  name and line, then the message, always quoted. Key/value pairs follow: strings quoted
  (Go's strconv.Quote style), numbers and booleans bare, None as ``<nil>``, dicts and lists
  as compact JSON, exceptions by their text; a string holding line breaks is written as
  ``key=<`` then each line indented by a tab, then `` >`` (klog's multi-line form).
  An error (``err=...`` field or ``exc_info``) comes first, as in klog's ErrorS.
- ``json``, component-base's JSON format (zapr)::

      {"ts":1700000000123.456,"logger":"kubeplane.apiserver","caller":"apiserver/app.py:42",
       "msg":"Watch started","v":0,"resource":"pods","count":3}

  ``ts`` is epoch *milliseconds* as a float (upstream's epochMillisTimeEncoder);
  ``caller`` is directory/file:line (zap's short caller); ``v`` is present on info and
  warning records only (upstream routes klog warnings through Info at v=0 and errors
  through Error, which has no ``v``); the error is the last key, ``err``.

Key/value pairs: either ``logger.info("msg", extra={"kv": {"key": value}})`` or the helper
``kv(logger, level, "msg", key=value, err=exc)``, which checks the level before building
anything. Records without pairs (plain ``log.info("x %s", y)``) are formatted the same way,
the %-arguments merged into the message.

Verbosity: klog's ``-v=N``. ``V(n)`` is the stdlib level of a klog V(n) record
(``logging.INFO - n``): V(0) is INFO, V(2) 18, V(3) 17 (per-request logs), and stdlib
``debug()`` (10) is V(10). ``setup_logging(verbosity=N)`` sets the ``kubeplane`` logger to
V(N); other libraries' loggers (the root) stay at WARNING below -v=4, then follow -v.

Flood guard: `RateLimitFilter` (installed by setup_logging) lets at most `limit` records
with the same (logger name, message template) through per `interval` seconds; the rest are
counted and, once that key's interval is over, summarized in one record
``"<n> similar messages suppressed"`` (with the template and logger as fields) at the
highest level suppressed and at the caller of the first suppressed record. A summary is
written when any later record passes the filter, or by `RateLimitFilter.flush()`.
Records with ``extra={"ratelimit": False}`` (the per-request log) are never limited.

Request log: `log_request(...)` writes upstream httplog's ``"HTTP"`` line (verb, URI,
latency as a Go duration, userAgent, audit-ID, srcIP, then extra pairs, then resp) at
v=0 like upstream, but only when V(verbosity) (default 3) is enabled; the level is the
first thing checked, so below it the call costs one cached level lookup.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import traceback
from typing import IO, Any, Callable

import orjson

__all__ = [
    "V", "kv", "setup_logging", "verbosity", "TextFormatter", "JSONFormatter",
    "RateLimitFilter", "log_request", "request_logging_enabled", "go_duration",
    "REQUEST_LOGGER",
]

REQUEST_LOGGER = "kubeplane.apiserver.httplog"
_HANDLER_MARK = "_kubeplane_handler"
_verbosity = 0


def V(n: int) -> int:
    """The stdlib logging level of klog's V(n): INFO - n (V(0) == INFO, V(10) == DEBUG)."""
    return logging.INFO - max(0, min(n, logging.INFO - 1))


def verbosity() -> int:
    """The -v value last given to setup_logging."""
    return _verbosity


def kv(logger: logging.Logger, level: int, msg: str, /, **fields: Any) -> None:
    """Log `msg` with key/value pairs; `err=<exception or text>` is rendered as the error.

    Nothing is built when `level` is disabled for `logger`. The caller (file:line) is the
    code that called kv().
    """
    if logger.isEnabledFor(level):
        logger.log(level, msg, extra={"kv": fields}, stacklevel=2)


# --- value rendering ---------------------------------------------------------------------

def _go_quote(s: str) -> str:
    """Go's strconv.Quote closely enough: JSON string escaping, non-ASCII kept as is."""
    return json.dumps(s, ensure_ascii=False)


def _multiline(s: str) -> str:
    """klog's multi-line value: `=<`, each line after a tab, then ` >` on its own line."""
    lines = s.split("\n")
    trailing = lines[-1] == ""
    if trailing:
        lines.pop()
    body = "".join(f"\t{line}\n" for line in lines)
    return "=<\n" + body + " >"


def _exc_text(e: BaseException) -> str:
    return str(e) or type(e).__name__


def _text_value(v: Any) -> str:
    """`=value` for klog's text format."""
    if isinstance(v, str):
        s = v
    elif isinstance(v, bool):
        return "=true" if v else "=false"
    elif isinstance(v, (int, float)):
        return f"={v}"
    elif v is None:
        return "=<nil>"
    elif isinstance(v, BaseException):
        s = _exc_text(v)
    elif isinstance(v, (bytes, bytearray)):
        return "=" + _go_quote(bytes(v).decode("utf-8", "backslashreplace"))
    elif isinstance(v, (dict, list, tuple)):
        s = _json_dumps(v).decode()
        return "=" + s if "\n" not in s else _multiline(s)
    else:
        s = str(v)
    if "\n" in s:
        return _multiline(s)
    return "=" + _go_quote(s)


def _json_default(v: Any) -> Any:
    if isinstance(v, BaseException):
        return _exc_text(v)
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).decode("utf-8", "backslashreplace")
    if isinstance(v, (set, frozenset)):
        return sorted(v, key=str)
    return str(v)


def _json_dumps(obj: Any) -> bytes:
    try:
        return orjson.dumps(obj, default=_json_default)
    except TypeError:  # e.g. an int beyond 64 bits: the stdlib encoder takes anything
        return json.dumps(obj, default=_json_default, separators=(",", ":")).encode()


def _fields(record: logging.LogRecord) -> tuple[Any, dict[str, Any], str | None]:
    """(error or None, the other pairs, traceback text or None) of a record."""
    pairs = getattr(record, "kv", None)
    pairs = dict(pairs) if isinstance(pairs, dict) else {}
    err = pairs.pop("err", None)
    tb = None
    if record.exc_info and record.exc_info[1] is not None:
        if err is None:
            err = record.exc_info[1]
        tb = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
    if record.stack_info:
        tb = (tb + "\n" if tb else "") + record.stack_info
    return err, pairs, tb


class TextFormatter(logging.Formatter):
    """klog's structured text format (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        lvl = record.levelno
        sev = "E" if lvl >= logging.ERROR else "W" if lvl >= logging.WARNING else "I"
        t = time.localtime(record.created)
        micros = int((record.created - int(record.created)) * 1_000_000)
        parts = [
            f"{sev}{t.tm_mon:02d}{t.tm_mday:02d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
            f".{micros:06d} {record.process or 0:7d} {record.filename}:{record.lineno}] ",
            _go_quote(record.getMessage()),
        ]
        err, pairs, tb = _fields(record)
        if err is not None:
            parts.append(" err" + _text_value(err))
        for k, v in pairs.items():
            parts.append(f" {k}{_text_value(v)}")
        if tb:
            parts.append(" stacktrace" + _multiline(tb))
        return "".join(parts)


class JSONFormatter(logging.Formatter):
    """component-base's JSON format (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"ts": record.created * 1000.0}
        if record.name != "root":
            out["logger"] = record.name
        out["caller"] = f"{os.path.basename(os.path.dirname(record.pathname))}/{record.filename}:{record.lineno}"
        out["msg"] = record.getMessage()
        if record.levelno < logging.ERROR:
            out["v"] = logging.INFO - record.levelno if record.levelno < logging.INFO else 0
        err, pairs, tb = _fields(record)
        for k, v in pairs.items():
            if k not in out:
                out[k] = v
        if tb:
            out["stacktrace"] = tb
        if err is not None:
            out["err"] = err
        return _json_dumps(out).decode()


# --- the flood guard ---------------------------------------------------------------------

class _Window:
    __slots__ = ("start", "count", "suppressed", "level", "pathname", "lineno", "func", "template")

    def __init__(self, start: float, template: str):
        self.start = start
        self.count = 1
        self.suppressed = 0
        self.level = logging.NOTSET
        self.pathname = ""
        self.lineno = 0
        self.func: str | None = None
        self.template = template


class RateLimitFilter(logging.Filter):
    """At most `limit` records per (logger, message template) per `interval` seconds.

    Invariants: a key's window opens at its first record and lasts `interval` seconds of
    `clock`; records past `limit` in a window are dropped and counted; each window that
    dropped records yields exactly one summary record (see the module docstring), emitted
    through `sink` (the handler given to `attach`, else the record's logger). At most
    `max_keys` windows are kept: beyond that, closed windows are dropped first (their
    summaries emitted), then the oldest. Thread-safe; summaries are emitted outside the lock.
    """

    def __init__(self, limit: int = 20, interval: float = 10.0,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = 4096):
        super().__init__()
        if limit < 1 or interval <= 0:
            raise ValueError("limit must be >= 1 and interval > 0")
        self.limit = limit
        self.interval = interval
        self.clock = clock
        self.max_keys = max_keys
        self.sink: Callable[[logging.LogRecord], Any] | None = None
        self._windows: dict[tuple[str, str], _Window] = {}
        self._pending: set[tuple[str, str]] = set()   # keys whose window suppressed something
        self._lock = threading.Lock()

    def attach(self, handler: logging.Handler) -> None:
        """Filter `handler`'s records and write summaries to it."""
        handler.addFilter(self)
        self.sink = handler.handle

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "ratelimit", True) is False:
            return True
        template = record.msg if isinstance(record.msg, str) else type(record.msg).__name__
        key = (record.name, template)
        now = self.clock()
        with self._lock:
            due = self._take_closed(now) if self._pending else []
            w = self._windows.get(key)
            if w is None or now - w.start >= self.interval:
                if w is not None and w.suppressed:   # not yet taken: closed exactly now
                    due.append((key, w))
                    self._pending.discard(key)
                if w is None and len(self._windows) >= self.max_keys:
                    due += self._evict(now)
                self._windows[key] = _Window(now, template)
                allowed = True
            else:
                w.count += 1
                allowed = w.count <= self.limit
                if not allowed:
                    if not w.suppressed:
                        w.pathname, w.lineno, w.func = record.pathname, record.lineno, record.funcName
                        self._pending.add(key)
                    w.suppressed += 1
                    w.level = max(w.level, record.levelno or 0)
        for k, win in due:
            self._emit_summary(k[0], win)
        return allowed

    def flush(self) -> None:
        """Emit the summaries of every window that has suppressed records, closed or not."""
        with self._lock:
            due = [(k, self._windows.pop(k)) for k in self._pending if k in self._windows]
            self._pending.clear()
        for k, win in due:
            self._emit_summary(k[0], win)

    def _take_closed(self, now: float) -> list[tuple[tuple[str, str], _Window]]:
        out = []
        for k in [k for k in self._pending if now - self._windows[k].start >= self.interval]:
            self._pending.discard(k)
            out.append((k, self._windows.pop(k)))
        return out

    def _evict(self, now: float) -> list[tuple[tuple[str, str], _Window]]:
        out = []
        for k in [k for k, w in self._windows.items() if now - w.start >= self.interval]:
            w = self._windows.pop(k)
            if w.suppressed:
                self._pending.discard(k)
                out.append((k, w))
        while len(self._windows) >= self.max_keys:
            k = next(iter(self._windows))
            w = self._windows.pop(k)
            if w.suppressed:
                self._pending.discard(k)
                out.append((k, w))
        return out

    def _emit_summary(self, name: str, w: _Window) -> None:
        rec = logging.LogRecord(name, w.level, w.pathname, w.lineno,
                                f"{w.suppressed} similar messages suppressed", None, None, w.func)
        rec.kv = {"message": w.template, "logger": name, "interval": go_duration(self.interval)}
        rec.ratelimit = False
        if self.sink is not None:
            self.sink(rec)
        else:
            logging.getLogger(name).handle(rec)


# --- setup ---------------------------------------------------------------------------------

def setup_logging(verbosity: int = 0, fmt: str = "text", stream: IO[str] | None = None, *,
                  rate_limit: int = 20, rate_interval: float = 10.0,
                  clock: Callable[[], float] = time.monotonic) -> logging.Handler:
    """Send all logs to `stream` (default stderr) in `fmt` ("text" or "json") at -v=`verbosity`.

    Replaces the handler a previous call installed (other handlers are left alone; do not
    combine with logging.basicConfig). Returns the handler; its RateLimitFilter is
    `handler.ratelimit` (call its flush() at shutdown to write pending summaries).
    """
    global _verbosity
    if fmt not in ("text", "json"):
        raise ValueError(f'unknown log format {fmt!r} (want "text" or "json")')
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, _HANDLER_MARK, False):
            root.removeHandler(h)
            rl = getattr(h, "ratelimit", None)
            if rl is not None:
                rl.flush()
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(TextFormatter() if fmt == "text" else JSONFormatter())
    limiter = RateLimitFilter(rate_limit, rate_interval, clock)
    limiter.attach(handler)
    setattr(handler, _HANDLER_MARK, True)
    handler.ratelimit = limiter  # type: ignore[attr-defined]
    root.addHandler(handler)
    _verbosity = max(0, verbosity)
    root.setLevel(logging.WARNING if _verbosity < 4 else V(_verbosity))
    logging.getLogger("kubeplane").setLevel(V(_verbosity))
    return handler


# --- the request log -------------------------------------------------------------------------

_request_log = logging.getLogger(REQUEST_LOGGER)


def request_logging_enabled(verbosity: int = 3) -> bool:
    """True when log_request(verbosity=...) would write (check it before gathering fields)."""
    return _request_log.isEnabledFor(V(verbosity))


def go_duration(seconds: float) -> str:
    """Go's time.Duration.String(): 0s, 850ns, 1.5µs, 3.370051ms, 2.5s, 1m30s, 1h0m0s."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)

    def frac(n: int, unit: int) -> str:
        whole, rest = divmod(n, unit)
        digits = str(rest).rjust(len(str(unit)) - 1, "0").rstrip("0")
        return f"{whole}.{digits}" if digits else str(whole)

    if ns < 1_000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return f"{sign}{frac(ns, 1_000)}µs"
    if ns < 1_000_000_000:
        return f"{sign}{frac(ns, 1_000_000)}ms"
    h, rest = divmod(ns, 3_600_000_000_000)
    m, rest = divmod(rest, 60_000_000_000)
    out = f"{h}h" if h else ""
    if h or m:
        out += f"{m}m"
    return f"{sign}{out}{frac(rest, 1_000_000_000)}s"


def log_request(method: str, path: str, status: int, latency_s: float, user: str | None,
                user_agent: str, remote: str, audit_id: str | None = None, verbosity: int = 3,
                **extra: Any) -> None:
    """Upstream httplog's line for one request, when V(verbosity) is enabled.

    `method` is the verb as upstream logs it (the caller may pass LIST/WATCH/APPLY), `path`
    the request URI with its query, `remote` the peer "ip:port". Pairs in `extra` (e.g.
    apf_pl, apf_fs) come after srcIP and user, before resp, as upstream's AddKeyValue pairs.
    Written at v=0 (upstream: InfoS gated by V(3).Enabled()) and never rate limited.
    """
    if not _request_log.isEnabledFor(V(verbosity)):
        return
    fields: dict[str, Any] = {
        "verb": method, "URI": path, "latency": go_duration(latency_s), "userAgent": user_agent,
        "audit-ID": audit_id or "", "srcIP": remote,
    }
    if user:
        fields["user"] = user
    fields.update(extra)
    fields["resp"] = status
    _request_log.info("HTTP", extra={"kv": fields, "ratelimit": False}, stacklevel=2)
