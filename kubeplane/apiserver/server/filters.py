"""What happens to a request between authentication and its handler (upstream's filter
chain): admission by flow control (API Priority and Fairness) or, with APF off, by the
in-flight limits; the request deadline; the in-flight accounting the metrics report.

    authn -> Admission.enter (APF | max-inflight) -> deadline -> handler -> Admission.exit

- APF (`--enable-priority-and-fairness`, default on): every request is classified by
  the FlowSchemas and waits in its priority level's queues for seats. A LIST or a
  watch's initial events cost more seats by the number of objects the watch cache holds
  (upstream's work estimator: ceil(objects / 100), at most 10). A watch gives its seats
  back once its initial events are sent. Queue wait is at most a quarter of the
  request's deadline. Rejection: 429, `Retry-After`, and the
  `X-Kubernetes-PF-FlowSchema-UID` / `X-Kubernetes-PF-PriorityLevel-UID` headers
  (also set on admitted requests' responses, as upstream does).
- Without APF: at most `--max-requests-inflight` read-only and
  `--max-mutating-requests-inflight` mutating requests at once; long-running requests
  (watches) and `system:masters` are not limited. Over the limit: 429 at once.
- Deadlines: `--request-timeout` (60 s), shortened by a request's `?timeout=`. A
  sweeper cancels requests past their deadline once a second and they answer 504.
  Watches are long-running: their timeout is `timeoutSeconds`, by default random in
  [`--min-request-timeout`, 2x] (1800 s). The other long-running requests (log, exec,
  attach, portforward, proxy subresources) have no deadline and, as upstream, pass APF
  and the in-flight limits untracked.
"""
from __future__ import annotations

import asyncio
import math
import re
from typing import Any, Callable

from ..machinery import errors
from ..machinery.errors import APIError
from ..flowcontrol import Rejected
from .requestinfo import RequestInfo

OBJECTS_PER_SEAT = 100
MAX_SEATS = 10
TOO_MANY = "Too many requests, please try again later."

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_go_duration(text: str) -> float:
    """Go's time.ParseDuration for the `timeout` parameter ("30s", "1m30s", "500ms")."""
    if not text:
        raise ValueError(text)
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            raise ValueError(text)
        total += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    if pos != len(text):
        raise ValueError(text)
    return total


def too_many(retry_after: int, headers: list[tuple[str, str]] | None = None) -> APIError:
    e = APIError(429, "TooManyRequests", TOO_MANY, {"retryAfterSeconds": retry_after})
    if headers:
        e.headers.update(dict(headers))
    return e


class Admission:
    """Admits requests (APF or max-inflight) and keeps the in-flight numbers."""

    def __init__(self, flow: Any | None, max_readonly: int = 400, max_mutating: int = 200,
                 request_timeout: float = 60.0, count_objects: Callable[[RequestInfo], int | None] | None = None):
        self.flow = flow                      # flowcontrol.FlowController, or None: max-inflight
        self.max_readonly = max_readonly
        self.max_mutating = max_mutating
        self.request_timeout = request_timeout
        self.count_objects = count_objects or (lambda ri: None)
        self.readonly = 0                     # executing, non-long-running
        self.mutating = 0
        self.waiting_readonly = 0             # (max-inflight has no queue: always 0 there)
        self.waiting_mutating = 0
        self._watermark = [0, 0]              # max in the current second
        self.published = (0, 0)               # max in the last whole second (the metric)
        self._deadlines: dict[Any, tuple[float, asyncio.Task]] = {}
        self._sweeper: asyncio.Task | None = None

    # --- seats ---------------------------------------------------------------------------
    def seats(self, ri: RequestInfo, query: dict[str, list[str]]) -> int:
        """Upstream's work estimator, by the objects the watch cache holds for the resource."""
        if ri.verb not in ("list", "watch"):
            return 1
        if ri.verb == "watch":
            rv = (query.get("resourceVersion") or [""])[0]
            initial = (query.get("sendInitialEvents") or [""])[0].lower() == "true" or rv in ("", "0")
            if not initial:
                return 1
        n = self.count_objects(ri)
        if n is None:
            return 1
        if ri.verb == "list":
            limit_s = (query.get("limit") or [""])[0]
            rv = (query.get("resourceVersion") or [""])[0]
            limit = int(limit_s) if limit_s.isdigit() and int(limit_s) > 0 else 0
            from_cache = rv == "0" or (not limit and not query.get("continue"))
            if not from_cache and limit and limit < n:
                has_selector = bool(query.get("labelSelector") or query.get("fieldSelector"))
                n = n + limit if has_selector else 2 * limit
        return max(1, min(MAX_SEATS, math.ceil(n / OBJECTS_PER_SEAT)))

    # --- enter / exit ------------------------------------------------------------------------
    def deadline(self, ri: RequestInfo, query: dict[str, list[str]]) -> float:
        t = self.request_timeout
        v = query.get("timeout")
        if v and not ri.long_running:
            try:
                asked = parse_go_duration(v[0])
            except ValueError:
                raise errors.bad_request(f'invalid timeout specified in the request URL: time: invalid duration '
                                         f'"{v[0]}"') from None
            if 0 < asked < t:
                t = asked
        return t

    async def enter(self, ri: RequestInfo, query: dict[str, list[str]], timeout: float) -> Any:
        """Admit the request or raise 429. Returns a ticket for `exit` (None when the
        request needs none)."""
        if ri.long_running and ri.verb != "watch":     # upstream: served untracked
            return None
        if self.flow is not None:
            seats = self.seats(ri, query) if ri.verb in ("list", "watch") else 1
            try:
                ticket = await self.flow.admit(ri, seats, timeout / 4)
            except Rejected as r:
                raise too_many(r.retry_after, [("X-Kubernetes-PF-FlowSchema-UID", r.flow_schema_uid),
                                               ("X-Kubernetes-PF-PriorityLevel-UID", r.priority_level_uid)]) from None
            self._count(ri, 1)
            return ticket
        if ri.long_running:
            return None
        if ri.user is not None and ri.user.privileged:
            self._count(ri, 1)
            return True
        if ri.mutating:
            if self.mutating >= self.max_mutating:
                raise too_many(1)
        elif self.readonly >= self.max_readonly:
            raise too_many(1)
        self._count(ri, 1)
        return True

    def exit(self, ri: RequestInfo, ticket: Any) -> None:
        if ticket is None:
            return
        if ticket is not True:
            ticket.release()
        self._count(ri, -1)

    def _count(self, ri: RequestInfo, d: int) -> None:
        if ri.long_running:
            return
        if ri.mutating:
            self.mutating += d
            if self.mutating > self._watermark[1]:
                self._watermark[1] = self.mutating
        else:
            self.readonly += d
            if self.readonly > self._watermark[0]:
                self._watermark[0] = self.readonly

    # --- deadlines ---------------------------------------------------------------------------
    def watch_deadline(self, key: Any, seconds: float) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._deadlines[key] = (asyncio.get_running_loop().time() + seconds, task)
            if self._sweeper is None:
                self._sweeper = asyncio.ensure_future(self._sweep())

    def clear_deadline(self, key: Any) -> None:
        self._deadlines.pop(key, None)

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(1.0)
            self.published = (self._watermark[0], self._watermark[1])
            self._watermark = [self.readonly, self.mutating]
            now = loop.time()
            late = [(k, t) for k, (d, t) in self._deadlines.items() if d <= now]
            for key, task in late:
                self._deadlines.pop(key, None)
                key.timed_out = True
                task.cancel()

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
