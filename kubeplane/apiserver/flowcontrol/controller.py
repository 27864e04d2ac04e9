"""The flow controller: classifies requests by FlowSchema and admits them through their
priority level's queue set (upstream's apf_controller.go + apf_filter.go, minus the
API plumbing, which the API server does).

Configuration (`apply`):
- Priority levels share the server concurrency limit (max-requests-inflight +
  max-mutating-requests-inflight) by nominalConcurrencyShares:
  nominalCL = ceil(serverCL x shares / sum of the shares of all levels), the exempt
  level's shares (0 by default) and those of draining levels included, as upstream.
  Borrowing between levels is not implemented: a Limited level's concurrency limit is
  its nominalCL (at least 1, so a level configured with 0 shares still progresses).
- A broken PriorityLevelConfiguration (bad union, unusable queuing numbers, type not
  matching the name "exempt") is ignored, as upstream; `broken` says why.
- FlowSchemas are matched in order of matchingPrecedence, then name; the first match
  wins; none matching (a user in neither system:authenticated nor
  system:unauthenticated) falls back to catch-all. A FlowSchema whose level does not
  exist is Dangling and skipped (`dangling()`, `flow_schema_conditions()`).
- The mandatory objects (FlowSchemas and levels exempt and catch-all) are imagined
  when missing. Before the first `apply` the controller runs the bootstrap objects
  (mandatory + suggested) with synthetic uids.
- A level that stays keeps its queue set: waiting and executing requests stay, the new
  limits and queues apply at once (waiters are dispatched if seats were added; surplus
  queues are dropped once drained).
- A level that goes away (choice, as upstream): no new request reaches it (no
  FlowSchema may point at it), its executing requests finish normally, its waiters stay
  queued and are dispatched as its seats free (its limit still computed from its last
  shares) or time out; it is dropped when idle and the limits are recomputed without it.

Admission (`admit`): exempt requests execute at once; others as their level's queue
set decides (see queueset.py); `Rejected` carries reason queue-full,
concurrency-limit, time-out or cancelled and an adaptive retry_after (1..32 s, per
level; see `RetryAfter`). Classification is cached per (user, groups, verb, resource
attributes or non-resource path) in a dict of at most CACHE_SIZE entries, cleared by
`apply`.
"""
from __future__ import annotations

import logging
import math
import time
import uuid
from typing import Any, Callable, NamedTuple

from . import bootstrap
from .matching import compile_flow_schema, flow_distinguisher
from .metrics import MUTATING, READ_ONLY, FlowControlMetrics
from .queueset import EXEMPT, QUEUE, REJECT, EXECUTING, QueueSet, Rejected, Route, Ticket, check_dealer, deal, \
    hash_flow_id

log = logging.getLogger("kubeplane.apiserver.flowcontrol")

CACHE_SIZE = 4096
EXEMPT_NAME = "exempt"
CATCH_ALL_NAME = "catch-all"
_READ_VERBS = frozenset(("get", "list", "watch"))


class Classification(NamedTuple):
    flow_schema: str
    flow_schema_uid: str
    priority_level: str
    priority_level_uid: str
    exempt: bool
    flow_distinguisher: str


def synthetic_uid(kind: str, name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"kubeplane:apf:{kind}/{name}"))


def _go_round(x: float) -> int:
    """math.Round of Go: halves away from zero (x >= 0 here)."""
    return int(math.floor(x + 0.5))


class _LevelConfig(NamedTuple):
    mode: int
    shares: int
    lendable_percent: int
    borrowing_percent: int | None
    queues: int
    hand_size: int
    queue_length_limit: int


def parse_level(obj: dict[str, Any]) -> tuple[_LevelConfig | None, str]:
    """A PriorityLevelConfiguration's effective settings (v1 defaults applied), or the
    reason it cannot be used."""
    name = (obj.get("metadata") or {}).get("name", "")
    spec = obj.get("spec") or {}
    typ = spec.get("type")
    if (typ == "Exempt") != (name == EXEMPT_NAME):
        return None, "non-alignment between name and type"
    if typ == "Exempt":
        ex = spec.get("exempt") or {}
        shares = ex.get("nominalConcurrencyShares")
        return _LevelConfig(EXEMPT, int(shares or 0), int(ex.get("lendablePercent") or 0), None, 0, 0, 0), ""
    if typ != "Limited":
        return None, f"unknown type {typ!r}"
    lim = spec.get("limited")
    if not isinstance(lim, dict):
        return None, "broken union structure at the top, for Limited"
    shares = lim.get("nominalConcurrencyShares")
    shares = 30 if shares is None else int(shares)
    lendable = int(lim.get("lendablePercent") or 0)
    borrowing = lim.get("borrowingLimitPercent")
    borrowing = None if borrowing is None else int(borrowing)
    if shares < 0 or not 0 <= lendable <= 100 or (borrowing is not None and borrowing < 0):
        return None, "negative shares or percent out of range"
    lr = lim.get("limitResponse") or {"type": "Reject"}
    lrt = lr.get("type")
    if lrt == "Reject":
        if lr.get("queuing") is not None:
            return None, "broken union structure for limit response"
        return _LevelConfig(REJECT, shares, lendable, borrowing, 0, 0, 0), ""
    if lrt != "Queue":
        return None, f"unknown limitResponse type {lrt!r}"
    q = lr.get("queuing") or {}
    queues, hand, qll = int(q.get("queues", 64)), int(q.get("handSize", 8)), int(q.get("queueLengthLimit", 50))
    why = check_dealer(queues, hand)
    if why:
        return None, f"invalid shuffle sharding config: {why}"
    if qll < 1:
        return None, f"queueLengthLimit {qll} is not positive"
    return _LevelConfig(QUEUE, shares, lendable, borrowing, queues, hand, qll), ""


class _Level:
    __slots__ = ("name", "uid", "cfg", "qs", "quiescing", "nominal")

    def __init__(self, name: str, qs: QueueSet):
        self.name = name
        self.uid = ""
        self.cfg: _LevelConfig | None = None
        self.qs = qs
        self.quiescing = False
        self.nominal = 0


class _Schema:
    __slots__ = ("name", "uid", "spec", "level", "precedence", "match")

    def __init__(self, obj: dict[str, Any], uid: str):
        meta = obj.get("metadata") or {}
        self.name: str = meta.get("name", "")
        self.uid = uid
        self.spec: dict[str, Any] = obj.get("spec") or {}
        self.level: str = (self.spec.get("priorityLevelConfiguration") or {}).get("name", "")
        self.precedence = int(self.spec.get("matchingPrecedence") or 1000)
        self.match = compile_flow_schema(self.spec)


def _with_uids(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    for o in objs:
        o["metadata"]["uid"] = synthetic_uid(kind, o["metadata"]["name"])
    return objs


def _uid(obj: dict[str, Any], kind: str) -> str:
    meta = obj.get("metadata") or {}
    return meta.get("uid") or synthetic_uid(kind, meta.get("name", ""))


class FlowController:
    def __init__(self, server_concurrency_limit: int = 600, registry: Any = None,
                 clock: Callable[[], float] = time.monotonic):
        """`registry`: a prometheus_client CollectorRegistry to register the
        apiserver_flowcontrol_* collector on (None: not registered; it is
        `self.metrics` either way)."""
        self.server_concurrency_limit = server_concurrency_limit
        self._clock = clock
        self.metrics = FlowControlMetrics(clock)
        if registry is not None:
            registry.register(self.metrics)
        self._levels: dict[str, _Level] = {}
        self._schemas: list[_Schema] = []
        self._catch_all: _Schema | None = None
        self._cache: dict[tuple, Route] = {}
        self._dangling: dict[str, str | None] = {}     # schema name -> missing level name, or None
        self.broken: dict[str, str] = {}                # ignored level name -> why
        self.apply(_with_uids(bootstrap.mandatory_flow_schemas() + bootstrap.suggested_flow_schemas(), "fs"),
                   _with_uids(bootstrap.mandatory_priority_levels() + bootstrap.suggested_priority_levels(), "pl"))

    # --- configuration -----------------------------------------------------------------------
    def apply(self, flow_schemas: list[dict[str, Any]], priority_levels: list[dict[str, Any]]) -> None:
        """Replace the live configuration by these objects (as stored)."""
        old = self._levels
        new: dict[str, _Level] = {}
        self.broken = {}
        for obj in priority_levels:
            name = (obj.get("metadata") or {}).get("name", "")
            try:
                cfg, why = parse_level(obj)
            except (TypeError, ValueError, AttributeError) as e:
                cfg, why = None, f"malformed: {e}"
            if cfg is None:
                log.warning("ignoring PriorityLevelConfiguration %s: %s", name, why)
                self.broken[name] = why
                continue
            lvl = old.get(name) or self._new_level(name)
            lvl.uid, lvl.cfg, lvl.quiescing = _uid(obj, "pl"), cfg, False
            lvl.qs.on_idle = None
            new[name] = lvl

        schemas: list[_Schema] = []
        dangling: dict[str, str | None] = {}
        for obj in flow_schemas:
            try:
                s = _Schema(obj, _uid(obj, "fs"))
            except (TypeError, ValueError, AttributeError) as e:
                log.warning("ignoring malformed FlowSchema %s: %s", (obj.get("metadata") or {}).get("name"), e)
                continue
            if s.name in dangling:
                log.warning("ignoring a second FlowSchema named %s", s.name)
                continue
            found = s.level in new
            dangling[s.name] = None if found else s.level
            if found:
                schemas.append(s)
        schemas.sort(key=lambda s: (s.precedence, s.name))
        names = {s.name for s in schemas}
        if EXEMPT_NAME not in names:
            schemas.insert(0, _Schema(_with_uids(bootstrap.mandatory_flow_schemas()[:1], "fs")[0],
                                      synthetic_uid("fs", EXEMPT_NAME)))
        if CATCH_ALL_NAME not in names:
            schemas.append(_Schema(_with_uids(bootstrap.mandatory_flow_schemas()[1:], "fs")[0],
                                   synthetic_uid("fs", CATCH_ALL_NAME)))

        for name, lvl in old.items():
            if name in new:
                continue
            if name in (EXEMPT_NAME, CATCH_ALL_NAME):
                pass                              # mandatory: retained as it was
            elif lvl.qs.idle():
                continue
            else:
                lvl.quiescing = True
                lvl.qs.on_idle = self._on_idle
            new[name] = lvl
        for proto in bootstrap.mandatory_priority_levels():
            name = proto["metadata"]["name"]
            if name not in new:
                lvl = old.get(name) or self._new_level(name)
                lvl.uid, lvl.cfg = synthetic_uid("pl", name), parse_level(proto)[0]
                new[name] = lvl

        self._levels = new
        self._schemas = schemas
        self._catch_all = next(s for s in schemas if s.name == CATCH_ALL_NAME)
        self._dangling = dangling
        self._cache.clear()
        self._recompute()

    def _new_level(self, name: str) -> _Level:
        return _Level(name, QueueSet(name, self._clock, self.metrics.level(name), self.metrics.rw))

    def _recompute(self) -> None:
        """Split the server's seats among the levels and (re)configure their queue sets."""
        levels = list(self._levels.values())
        share_sum = sum(lvl.cfg.shares for lvl in levels if lvl.cfg is not None)
        scl = self.server_concurrency_limit
        exec_den = wait_den = 0
        for lvl in levels:
            cfg = lvl.cfg
            assert cfg is not None
            nominal = -(-scl * cfg.shares // share_sum) if share_sum > 0 else 0
            lvl.nominal = nominal
            lendable = _go_round(nominal * cfg.lendable_percent / 100)
            borrowing = scl if cfg.borrowing_percent is None else _go_round(nominal * cfg.borrowing_percent / 100)
            cl = nominal if cfg.mode == EXEMPT else max(1, nominal)
            cl_den = cl if cl > 0 else max(1, _go_round(scl / 10))
            st = lvl.qs.stats
            st.nominal, st.lower, st.upper, st.current = nominal, nominal - lendable, nominal + borrowing, cl
            lvl.qs.configure(cfg.mode, cl, cl_den, cfg.queues, cfg.hand_size, cfg.queue_length_limit)
            exec_den += nominal
            if cfg.mode == QUEUE:
                wait_den += cfg.queues * cfg.queue_length_limit
        rw = self.metrics.rw
        now = self._clock()
        rw.integrate(now)
        rw.exec_den = max(1, exec_den)
        rw.wait_den = max(1, wait_den)

    def _on_idle(self, qs: QueueSet) -> None:
        """A draining level went idle: drop it and split the seats again."""
        lvl = self._levels.get(qs.name)
        if lvl is None or lvl.qs is not qs or not lvl.quiescing:
            return
        qs.on_idle = None
        del self._levels[qs.name]
        self._recompute()

    # --- introspection -----------------------------------------------------------------------
    def dangling(self) -> dict[str, bool]:
        """FlowSchema name -> whether its priority level is missing (last `apply`)."""
        return {name: missing is not None for name, missing in self._dangling.items()}

    def flow_schema_conditions(self) -> dict[str, dict[str, str]]:
        """FlowSchema name -> its wanted `Dangling` condition (upstream's reasons and
        messages; the caller adds lastTransitionTime when status or reason change)."""
        out = {}
        for name, missing in self._dangling.items():
            s = next((x for x in self._schemas if x.name == name), None)
            target = missing if missing is not None else (s.level if s else "")
            if missing is not None:
                out[name] = {"type": "Dangling", "status": "True", "reason": "NotFound",
                             "message": f'This FlowSchema references the PriorityLevelConfiguration object named '
                                        f'"{target}" but there is no such object'}
            else:
                out[name] = {"type": "Dangling", "status": "False", "reason": "Found",
                             "message": f'This FlowSchema references the PriorityLevelConfiguration object named '
                                        f'"{target}" and it exists'}
        return out

    def levels(self) -> dict[str, dict[str, Any]]:
        """A snapshot per live level (for debugging and tests)."""
        out = {}
        for name, lvl in self._levels.items():
            qs = lvl.qs
            out[name] = {"uid": lvl.uid, "nominal": lvl.nominal, "limit": qs.cl, "quiescing": lvl.quiescing,
                         "mode": {EXEMPT: "Exempt", REJECT: "Reject", QUEUE: "Queue"}[qs.mode],
                         "queues": len(qs.queues), "waiting": qs.tot_waiting, "executing": qs.tot_executing,
                         "seats_in_use": qs.seats_in_use, "seats_waiting": qs.seats_waiting,
                         "retry_after": qs.retry.value}
        return out

    # --- classification ----------------------------------------------------------------------
    def _route(self, d: Any, key: tuple) -> Route:
        for s in self._schemas:
            if s.match(d):
                break
        else:
            s = self._catch_all
            assert s is not None
        lvl = self._levels[s.level]
        qs = lvl.qs
        dist = flow_distinguisher(s.spec, d)
        hand = None
        if qs.mode == QUEUE:
            if qs.desired > 1:
                idx = deal(hash_flow_id(s.name, dist), qs.desired, qs.hand_size)
                hand = tuple(qs.queues[i] for i in idx)
            else:
                hand = (qs.queues[0],)
        verb = d.verb
        route = Route(s.name, s.uid, lvl.name, lvl.uid, dist, qs, self.metrics.pair(lvl.name, s.name), hand,
                      READ_ONLY if verb in _READ_VERBS else MUTATING, verb == "watch")
        cache = self._cache
        if len(cache) >= CACHE_SIZE:
            cache.clear()
        cache[key] = route
        return route

    @staticmethod
    def _key(d: Any) -> tuple:
        u = d.user
        if u is None:
            name, groups = None, ()
        else:
            name, groups = u.name, u.groups
        if d.is_resource:
            return name, groups, d.verb, True, d.api_group, d.resource, d.subresource, d.namespace
        return name, groups, d.verb, False, d.path

    def classify(self, digest: Any) -> Classification:
        key = self._key(digest)
        r = self._cache.get(key) or self._route(digest, key)
        return Classification(r.fs_name, r.fs_uid, r.pl_name, r.pl_uid, r.exempt, r.distinguisher)

    # --- admission -----------------------------------------------------------------------------
    async def admit(self, digest: Any, seats: int = 1, wait_limit: float = 15.0) -> Ticket:
        """Admit a request (wait in its queue at most `wait_limit` seconds). Returns a
        Ticket to `release()`; raises Rejected."""
        u = digest.user
        if u is None or not digest.is_resource:
            key = self._key(digest)
        else:
            key = (u.name, u.groups, digest.verb, True, digest.api_group, digest.resource, digest.subresource,
                   digest.namespace)
        route = self._cache.get(key)
        if route is None:
            route = self._route(digest, key)
        qs = route.qs
        t = qs.start(route, seats)
        if t._state == EXECUTING:
            return t
        return await qs.wait(t, wait_limit)


__all__ = ["Classification", "FlowController", "Rejected", "Ticket", "parse_level", "synthetic_uid"]
