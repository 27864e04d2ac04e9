"""/healthz, /livez and /readyz: named checks served as upstream's healthz package does.

Outputs (k8s.io/apiserver/pkg/server/healthz, texts and codes as upstream):

- ``GET /<ep>``: 200 ``ok``. With ``?verbose``: one line per check, ``[+]<name> ok``
  (``[+]<name> excluded: ok`` for an excluded one), then ``<ep> check passed``.
- any check failing: 500, always verbose, reasons withheld (the endpoint is public):
  ``[-]<name> failed: reason withheld`` lines, then ``<ep> check failed``; the reasons go
  to the log at V(2).
- ``?exclude=<name>`` (repeatable) skips a check; names that match no check add the line
  ``warn: some health checks cannot be excluded: no matches for "a","b"`` (sorted, quoted)
  and a warning in the log.
- ``GET /<ep>/<name>``: that one check: 200 ``ok`` or 500 ``internal server error: <reason>``;
  a name with no check: 404 (the API server's NotFound Status, as upstream's fallthrough).
- Error bodies end with a newline (Go's http.Error); ``ok`` does not. Content type
  ``text/plain; charset=utf-8`` (upstream also sets ``X-Content-Type-Options: nosniff``).

Checks: a check is a callable returning None or an awaitable; it fails by raising, the
exception text being the reason. Built in: ``ping`` (never fails) and ``log`` (fails with
"logging blocked" when the log handlers could not be flushed for 2 minutes) on all three
endpoints, and ``shutdown`` on readyz ("process is shutting down" once
`set_shutting_down()` was called; always listed last, as upstream installs it last).
``add_poststarthook(name)`` registers ``poststarthook/<name>`` on all three endpoints,
failing with "not finished" until the returned callable is called; on livez such boot
checks pass during `livez_grace_period` seconds after construction (upstream's
--livez-grace-period, default 0).

Timing: upstream runs checks one after another without a deadline of its own. Here the
awaitable checks of one request run concurrently under a single deadline of `timeout`
seconds (default 5 s, longer than upstream's 2 s etcd health and readiness timeouts so
a store check times out on its own first): a check still running then fails with
"timed out after 5s" and is cancelled (without waiting for it). Plain (sync) checks run
inline and must not block.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from dataclasses import dataclass
from typing import Awaitable, Callable, Iterable, Mapping

import orjson

from ...logs import V, kv
from ..machinery.errors import method_not_allowed

log = logging.getLogger("kubeplane.apiserver.healthz")

Check = Callable[[], "Awaitable[None] | None"]
ENDPOINTS = ("healthz", "livez", "readyz")
TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
DEFAULT_TIMEOUT = 5.0


class LogCheck:
    """Fails ("logging blocked") when the log handlers were last flushed `max_age` s ago.

    A daemon thread, started by the first check, flushes the handlers of the root and
    ``kubeplane`` loggers every `interval` seconds and records when it got through; a
    handler stuck writing (a full pipe) holds its lock, so the flush blocks and the age grows.
    """

    def __init__(self, interval: float = 60.0, max_age: float = 120.0,
                 clock: Callable[[], float] = time.monotonic, start_thread: bool = True):
        self.interval = interval
        self.max_age = max_age
        self.clock = clock
        self.start_thread = start_thread
        self.last_verified = clock()
        self._started = False
        self._lock = threading.Lock()

    def flush_now(self) -> None:
        for name in ("", "kubeplane"):
            for h in logging.getLogger(name).handlers:
                h.flush()
        self.last_verified = self.clock()

    def _loop(self) -> None:
        while True:
            self.flush_now()
            time.sleep(self.interval)

    def __call__(self) -> None:
        if self.start_thread and not self._started:
            with self._lock:
                if not self._started:
                    self._started = True
                    self.last_verified = self.clock()
                    threading.Thread(target=self._loop, name="log-health", daemon=True).start()
        if self.clock() - self.last_verified >= self.max_age:
            raise RuntimeError("logging blocked")


_LOG_CHECK = LogCheck()   # one per process, as upstream's LogHealthz


def _ping() -> None:
    return None


@dataclass
class _Entry:
    name: str
    check: Check
    endpoints: frozenset[str]
    boot: bool = False   # a boot-sequence check: passes on livez during the grace period


def _go_quoted(names: Iterable[str]) -> str:
    return ",".join(orjson.dumps(n).decode() for n in names)


def _not_found() -> tuple[int, bytes, str]:
    # upstream: the health mux has no such path, Go's http.NotFound answers (plain text)
    return 404, b"404 page not found\n", "text/plain; charset=utf-8"


class HealthChecks:
    """The named checks of /healthz, /livez and /readyz (see the module docstring)."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT, livez_grace_period: float = 0.0,
                 clock: Callable[[], float] = time.monotonic, log_check: Check | None = None):
        self.timeout = timeout
        self.clock = clock
        self._grace_until = clock() + livez_grace_period
        self._entries: dict[str, _Entry] = {}
        self._shutting_down = False
        self.add("ping", _ping)
        self.add("log", log_check if log_check is not None else _LOG_CHECK)
        self.add("shutdown", self._shutdown_check, endpoints=("readyz",))

    # --- registration --------------------------------------------------------------------
    def add(self, name: str, check: Check, endpoints: Iterable[str] = ENDPOINTS) -> None:
        """Register `check` as `name` on `endpoints`; names are unique."""
        eps = frozenset(endpoints)
        if not name or name.startswith("/") or name.endswith("/"):
            raise ValueError(f"bad health check name {name!r}")
        if not eps or not eps <= set(ENDPOINTS):
            raise ValueError(f"endpoints must be among {ENDPOINTS}, not {sorted(eps)}")
        if name in self._entries:
            raise ValueError(f"health check {name!r} already registered")
        self._entries[name] = _Entry(name, check, eps)

    def add_poststarthook(self, name: str) -> Callable[[], None]:
        """Register check ``poststarthook/<name>`` ("not finished" until the result is called)."""
        done = threading.Event()

        def check() -> None:
            if not done.is_set():
                raise RuntimeError("not finished")

        self.add(f"poststarthook/{name}", check)
        self._entries[f"poststarthook/{name}"].boot = True
        return done.set

    def set_shutting_down(self) -> None:
        """From now on readyz's ``shutdown`` check fails (graceful termination)."""
        self._shutting_down = True

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def _shutdown_check(self) -> None:
        if self._shutting_down:
            raise RuntimeError("process is shutting down")

    def names(self, which: str) -> list[str]:
        """The checks of endpoint `which`, in output order (registration order, shutdown last)."""
        out = [e.name for e in self._entries.values() if which in e.endpoints]
        out.sort(key=lambda n: n == "shutdown")
        return out

    # --- running -------------------------------------------------------------------------
    async def run(self, which: str, names: list[str]) -> dict[str, str | None]:
        """Run the named checks of `which` concurrently: name -> None (passed) or reason."""
        results: dict[str, str | None] = {}
        tasks: dict[asyncio.Task, str] = {}
        in_grace = which == "livez" and self.clock() < self._grace_until
        for name in names:
            entry = self._entries[name]
            if in_grace and entry.boot:
                results[name] = None
                continue
            try:
                r = entry.check()
            except Exception as e:
                results[name] = str(e) or type(e).__name__
                continue
            if inspect.isawaitable(r):
                tasks[asyncio.ensure_future(r)] = name
            else:
                results[name] = None
        if tasks:
            try:
                done, pending = await asyncio.wait(tasks, timeout=self.timeout)
            except asyncio.CancelledError:   # the request went away: stop its checks too
                for t in tasks:
                    t.cancel()
                    t.add_done_callback(_retrieve)
                raise
            for t in pending:
                t.cancel()
                t.add_done_callback(_retrieve)
                results[tasks[t]] = f"timed out after {self.timeout:g}s"
            for t in done:
                if t.cancelled():
                    results[tasks[t]] = "cancelled"
                elif (e := t.exception()) is not None:
                    results[tasks[t]] = str(e) or type(e).__name__
                else:
                    results[tasks[t]] = None
        return {n: results[n] for n in names}

    async def serve(self, which: str, rest: list[str], query: dict[str, list[str]],
                    method: str) -> tuple[int, bytes, str]:
        """Answer ``<method> /<which>[/<rest...>]?<query>``: (status, body, content type).

        GET and HEAD are served (the HTTP layer drops HEAD's body); other methods get 405.
        """
        if which not in ENDPOINTS:
            return _not_found()
        if method not in ("GET", "HEAD"):
            return 405, orjson.dumps(method_not_allowed().status(), option=orjson.OPT_APPEND_NEWLINE), JSON
        names = self.names(which)
        if rest:
            name = "/".join(rest)
            if name not in names:
                return _not_found()
            reason = (await self.run(which, [name]))[name]
            if reason is None:
                return 200, b"ok", TEXT
            return 500, f"internal server error: {reason}\n".encode(), TEXT

        excluded = set(query.get("exclude", []))
        results = await self.run(which, [n for n in names if n not in excluded])
        lines: list[str] = []
        failed: list[str] = []
        for n in names:
            if n in excluded:
                lines.append(f"[+]{n} excluded: ok")
            elif results[n] is None:
                lines.append(f"[+]{n} ok")
            else:
                lines.append(f"[-]{n} failed: reason withheld")
                failed.append(n)
        unknown = sorted(excluded - set(names))
        if unknown:
            lines.append(f"warn: some health checks cannot be excluded: no matches for {_go_quoted(unknown)}")
            kv(log, logging.WARNING, "Cannot exclude some health checks, no health checks are installed matching",
               endpoint=which, names=unknown)
        if failed:
            kv(log, V(2), "Health check failed", endpoint=which, failed=",".join(failed),
               reasons="\n".join(f"[-]{n} failed: {results[n]}" for n in failed))
            return 500, "".join(f"{line}\n" for line in lines + [f"{which} check failed"]).encode(), TEXT
        if "verbose" not in query:
            return 200, b"ok", TEXT
        return 200, "".join(f"{line}\n" for line in lines + [f"{which} check passed"]).encode(), TEXT


def all_set(events: Mapping[str, asyncio.Event | threading.Event],
            what: str = "informers not started yet") -> Check:
    """A check failing with "<n> <what>: [a b]" (upstream informer-sync's text) while any
    of the named events is unset."""
    def check() -> None:
        missing = sorted(n for n, e in events.items() if not e.is_set())
        if missing:
            raise RuntimeError(f"{len(missing)} {what}: [{' '.join(missing)}]")
    return check


def _retrieve(t: asyncio.Future) -> None:
    """Consume a cancelled check's outcome (no 'exception was never retrieved' noise)."""
    if not t.cancelled():
        t.exception()
