"""The API server's Prometheus metrics, under upstream's names, labels and buckets.

Recording sits on every request's path, so the series here are kept in plain Python
structures (a dict from label values to a counter, or to a histogram's bucket counts)
and turned into prometheus_client metric families only when /metrics is scraped. One
`observe` is a dict lookup, a bisect and two additions (about 0.3 us; prometheus_client's
own `labels().observe()` costs about 2.7 us here).

Gauges that describe state (in-flight requests, watch cache sizes, object counts) are
read from their owners at scrape time through callbacks instead of being updated.
"""
from __future__ import annotations

import bisect
from typing import Any, Awaitable, Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from .requestinfo import RequestInfo

# k8s.io/apiserver/pkg/endpoints/metrics
REQUEST_BUCKETS = (0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10,
                   15, 20, 30, 45, 60)
SLI_BUCKETS = (0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 45, 60)
RESPONSE_SIZE_BUCKETS = tuple(1000.0 * 10 ** i for i in range(7))        # 1 KB .. 1 GB
WATCH_EVENT_SIZE_BUCKETS = tuple(1024.0 * 2 ** i for i in range(8))       # 1 KiB .. 128 KiB
READ_WAIT_BUCKETS = (0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3)

COMPONENT = "apiserver"
REQUEST_LABELS = ("verb", "dry_run", "group", "version", "resource", "subresource", "scope", "component")
RESOURCE_LABELS = ("verb", "group", "version", "resource", "subresource", "scope", "component")


class Hist:
    """One histogram child: per-bucket counts (not cumulative) and the sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, v: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, v)] += 1
        self.sum += v

    def observe_n(self, v: float, n: int) -> None:
        """`n` observations of the value `v`."""
        self.counts[bisect.bisect_left(self.bounds, v)] += n
        self.sum += v * n


class HistVec:
    def __init__(self, name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...]):
        self.name, self.doc, self.labels, self.buckets = name, doc, labels, tuple(float(b) for b in buckets)
        self.children: dict[tuple[str, ...], Hist] = {}

    def child(self, key: tuple[str, ...]) -> Hist:
        h = self.children.get(key)
        if h is None:
            h = self.children[key] = Hist(self.buckets)
        return h

    def observe(self, key: tuple[str, ...], v: float) -> None:
        h = self.children.get(key)
        if h is None:
            h = self.children[key] = Hist(self.buckets)
        h.counts[bisect.bisect_left(h.bounds, v)] += 1
        h.sum += v

    def family(self) -> HistogramMetricFamily:
        fam = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        edges = [repr(b) if b != int(b) else f"{b:.1f}" for b in self.buckets] + ["+Inf"]
        for key, h in list(self.children.items()):
            acc, cum = 0, []
            for le, c in zip(edges, h.counts):
                acc += c
                cum.append((le, acc))
            fam.add_metric(list(key), cum, h.sum)
        return fam


class CounterVec:
    def __init__(self, name: str, doc: str, labels: tuple[str, ...]):
        self.name, self.doc, self.labels = name, doc, labels
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, key: tuple[str, ...], n: float = 1) -> None:
        self.values[key] = self.values.get(key, 0) + n

    def family(self) -> CounterMetricFamily:
        base = self.name[:-6] if self.name.endswith("_total") else self.name
        fam = CounterMetricFamily(base, self.doc, labels=self.labels)
        for key, v in list(self.values.items()):
            fam.add_metric(list(key), v)
        return fam


class GaugeVec:
    def __init__(self, name: str, doc: str, labels: tuple[str, ...]):
        self.name, self.doc, self.labels = name, doc, labels
        self.values: dict[tuple[str, ...], float] = {}

    def add(self, key: tuple[str, ...], n: float) -> None:
        self.values[key] = self.values.get(key, 0) + n

    def family(self) -> GaugeMetricFamily:
        fam = GaugeMetricFamily(self.name, self.doc, labels=self.labels)
        for key, v in list(self.values.items()):
            fam.add_metric(list(key), v)
        return fam


def _gauge(name: str, doc: str, labels: tuple[str, ...], rows: Iterable[tuple[tuple[str, ...], float]]
           ) -> GaugeMetricFamily:
    fam = GaugeMetricFamily(name, doc, labels=labels)
    for key, v in rows:
        fam.add_metric(list(key), v)
    return fam


def _counter(name: str, doc: str, labels: tuple[str, ...], rows: Iterable[tuple[tuple[str, ...], float]]
             ) -> CounterMetricFamily:
    fam = CounterMetricFamily(name[:-6] if name.endswith("_total") else name, doc, labels=labels)
    for key, v in rows:
        fam.add_metric(list(key), v)
    return fam


class APIServerMetrics(Collector):
    """Request, watch and watch-cache series of one API server."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry(auto_describe=False)
        self.request_duration = HistVec(
            "apiserver_request_duration_seconds",
            "Response latency distribution in seconds for each verb, dry run value, group, version, resource, "
            "subresource, scope and component.", REQUEST_LABELS, REQUEST_BUCKETS)
        self.request_sli = HistVec(
            "apiserver_request_sli_duration_seconds",
            "Response latency distribution (not counting webhook duration and priority & fairness queue wait "
            "times) in seconds for each verb, group, version, resource, subresource, scope and component.",
            RESOURCE_LABELS, SLI_BUCKETS)
        self.requests = CounterVec(
            "apiserver_request_total",
            "Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, "
            "scope, component, and HTTP response code.", REQUEST_LABELS + ("code",))
        self.response_sizes = HistVec(
            "apiserver_response_sizes",
            "Response size distribution in bytes for each group, version, verb, resource, subresource, scope "
            "and component.", RESOURCE_LABELS, RESPONSE_SIZE_BUCKETS)
        self.terminations = CounterVec(
            "apiserver_request_terminations_total",
            "Number of requests which apiserver terminated in self-defense.", RESOURCE_LABELS + ("code",))
        self.longrunning = GaugeVec(
            "apiserver_longrunning_requests",
            "Gauge of all active long-running apiserver requests broken out by verb, group, version, resource, "
            "scope and component. Not all requests are tracked this way.", RESOURCE_LABELS)
        self.watch_events = CounterVec(
            "apiserver_watch_events_total", "Number of events sent in watch clients",
            ("group", "version", "kind"))
        self.watch_event_sizes = HistVec(
            "apiserver_watch_events_sizes", "Watch event size distribution in bytes",
            ("group", "version", "kind"), WATCH_EVENT_SIZE_BUCKETS)
        self.read_wait = HistVec(
            "apiserver_watch_cache_read_wait_seconds",
            "Histogram of time spent waiting for a watch cache to become fresh.", ("resource",), READ_WAIT_BUCKETS)
        self.consistent_reads = CounterVec(
            "apiserver_watch_cache_consistent_read_total",
            "Counter for consistent reads from cache.", ("resource", "success", "fallback"))
        self.cache_lists = CounterVec(
            "apiserver_cache_list_total", "Number of LIST requests served from watch cache",
            ("resource_prefix", "index"))
        self.cache_list_fetched = CounterVec(
            "apiserver_cache_list_fetched_objects_total",
            "Number of objects read from watch cache in the course of serving a LIST request",
            ("resource_prefix", "index"))
        self.cache_list_returned = CounterVec(
            "apiserver_cache_list_returned_objects_total",
            "Number of objects returned for a LIST request from watch cache", ("resource_prefix",))
        self.inflight: Callable[[], tuple[int, int]] = lambda: (0, 0)
        self.inqueue: Callable[[], tuple[int, int]] = lambda: (0, 0)
        self.caches: Callable[[], Iterable[Any]] = lambda: ()
        self.object_counts: Callable[[], Iterable[tuple[str, str, int]]] = lambda: ()
        self.before_scrape: Callable[[], Awaitable[Any]] | None = None   # e.g. refresh the storage size
        self._own = (self.request_duration, self.request_sli, self.requests, self.response_sizes,
                     self.terminations, self.longrunning, self.watch_events, self.watch_event_sizes,
                     self.read_wait, self.consistent_reads, self.cache_lists, self.cache_list_fetched,
                     self.cache_list_returned)
        self.registry.register(self)

    # --- recording ------------------------------------------------------------------
    def record(self, ri: RequestInfo, code: int, elapsed: float, size: int, queue_wait: float = 0.0) -> None:
        """One finished request (not for long-running ones: `longrunning_*` count those)."""
        if ri.is_resource:
            g, v, res, sub = ri.api_group, ri.api_version, ri.resource, ri.subresource
        else:
            # upstream puts a non-resource request's path in `subresource`; paths that
            # failed (a scanner's 404s) are pooled so the label set stays bounded
            g = v = res = ""
            sub = ri.path if code < 400 or ri.path in _KNOWN_PATHS else "other"
        verb = ri.metric_verb
        key = (verb, ri.dry_run, g, v, res, sub, ri.scope, COMPONENT)
        self.request_duration.observe(key, elapsed)
        self.requests.inc(key + (_code(code),))
        rkey = (verb, g, v, res, sub, ri.scope, COMPONENT)
        self.request_sli.observe(rkey, max(elapsed - queue_wait, 0.0))
        if verb in ("GET", "LIST"):
            self.response_sizes.observe(rkey, size)

    def record_termination(self, ri: RequestInfo, code: int) -> None:
        if ri.is_resource:
            key = (ri.metric_verb, ri.api_group, ri.api_version, ri.resource, ri.subresource, ri.scope, COMPONENT)
        else:
            key = (ri.metric_verb, "", "", "", ri.path if ri.path in _KNOWN_PATHS else "other", "", COMPONENT)
        self.terminations.inc(key + (_code(code),))

    def longrunning_key(self, ri: RequestInfo) -> tuple[str, ...]:
        return (ri.metric_verb, ri.api_group, ri.api_version, ri.resource, ri.subresource, ri.scope, COMPONENT)

    # --- exposition -------------------------------------------------------------------
    def collect(self) -> Iterator[Any]:
        for m in self._own:
            yield m.family()
        ro, mut = self.inflight()
        yield _gauge("apiserver_current_inflight_requests",
                     "Maximal number of currently used inflight request limit of this apiserver per request "
                     "kind in last second.", ("request_kind",), [(("readOnly",), ro), (("mutating",), mut)])
        ro, mut = self.inqueue()
        yield _gauge("apiserver_current_inqueue_requests",
                     "Maximal number of queued requests in this apiserver per request kind in last second.",
                     ("request_kind",), [(("readOnly",), ro), (("mutating",), mut)])
        yield from self._cache_families()
        counts = list(self.object_counts())
        yield _gauge("apiserver_resource_objects", "Number of stored objects at the time of last check split by "
                     "kind.", ("group", "resource"), [((g, r), n) for g, r, n in counts])
        yield _gauge("apiserver_storage_objects", "Number of stored objects at the time of last check split by "
                     "kind. In case of a fetching error, the value will be -1.", ("resource",),
                     [((f"{r}.{g}" if g else r,), n) for g, r, n in counts])

    def _cache_families(self) -> Iterator[Any]:
        cachers = list(self.caches())

        def rows(attr: str) -> list[tuple[tuple[str, ...], float]]:
            return [((c.info.qualified,), getattr(c, attr)) for c in cachers]

        yield _counter("apiserver_watch_cache_events_received_total",
                       "Counter of events received in watch cache broken by resource type.", ("resource",),
                       rows("events_received"))
        yield _counter("apiserver_watch_cache_events_dispatched_total",
                       "Counter of events dispatched in watch cache broken by resource type.", ("resource",),
                       rows("events_dispatched"))
        yield _counter("apiserver_watch_cache_initializations_total",
                       "Counter of watch cache initializations broken by resource type.", ("resource",),
                       rows("initializations"))
        yield _counter("apiserver_init_events_total",
                       "Counter of init events processed in watch cache broken by resource type.", ("resource",),
                       rows("init_events"))
        yield _gauge("apiserver_watch_cache_capacity", "Total capacity of watch cache broken by resource type.",
                     ("resource",), [((c.info.qualified,), c.buffer.capacity) for c in cachers])
        yield _gauge("apiserver_watch_cache_resource_version", "Current resource version of watch cache broken "
                     "by resource type.", ("resource",), [((c.info.qualified,), c.rev) for c in cachers])
        yield _counter("apiserver_terminated_watchers_total",
                       "Counter of watchers closed due to unresponsiveness broken by resource type.",
                       ("group", "resource"), [((c.info.group, c.info.plural), c.terminated_watchers)
                                               for c in cachers])
        yield _gauge("apiserver_registered_watchers", "Number of currently registered watchers for a given "
                     "resources", ("group", "version", "kind"),
                     [((c.info.group, c.info.version, c.info.kind), c.watcher_count) for c in cachers])

    async def exposition(self) -> bytes:
        if self.before_scrape is not None:
            try:
                await self.before_scrape()
            except Exception:
                pass
        return generate_latest(self.registry)


_KNOWN_PATHS = frozenset(("/healthz", "/livez", "/readyz", "/metrics", "/version", "/openapi/v2", "/openapi/v3",
                          "/api", "/apis", "/"))
_CODES: dict[int, str] = {}


def _code(code: int) -> str:
    s = _CODES.get(code)
    if s is None:
        s = _CODES[code] = str(code)
    return s

