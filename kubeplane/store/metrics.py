"""Prometheus metrics of the embedded store, under etcd's own names (etcd 3.4/3.5).

Dashboards and alerts written for etcd (the etcd mixin, kube-prometheus) work unchanged
on ``kubeplane store serve --listen-metrics-urls`` and on an API server that embeds the
store.  Names, types, label sets and buckets follow etcd's ``mvcc/metrics.go``,
``mvcc/backend/metrics.go``, ``wal/metrics.go`` and ``etcdserver/metrics.go``; what each
one measures *in kubeplane* is said next to it in ``StoreCollector``.

The hot path pays almost nothing: the store keeps plain ints and floats (an attribute
increment per op, one clock read per group-commit batch) and a few lock-free
``Recorder`` histograms.  All of it is read only when Prometheus scrapes, by
``StoreCollector.collect()``.  The store runs on one event loop; the only other writer
is its I/O thread, which alone records WAL fsync durations.  A scrape may therefore see
a histogram's count and sum from a few microseconds apart, never a torn number.

``serve_metrics()`` is etcd's ``--listen-metrics-urls`` listener: plain HTTP with
``GET /metrics`` and ``GET /health`` (kubeadm probes ``/health?exclude=NOSPACE``).

prometheus_client is imported only when metrics are collected or served, so the store
itself does not depend on it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from bisect import bisect_left
from time import perf_counter
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterator, Sequence
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from .mvcc.store import EmbeddedStore

log = logging.getLogger("kubeplane.store.metrics")


def exponential_buckets(start: float, factor: float, count: int) -> tuple[float, ...]:
    """Prometheus' ExponentialBuckets: ``count`` upper bounds from ``start``."""
    return tuple(start * factor**i for i in range(count))


# etcd's buckets, name by name.
WAL_FSYNC_BUCKETS = exponential_buckets(0.001, 2, 14)  # 1 ms .. 8.192 s
BACKEND_COMMIT_BUCKETS = exponential_buckets(0.001, 2, 14)
SNAPSHOT_BUCKETS = exponential_buckets(0.01, 2, 17)  # 10 ms .. 655 s
DEFRAG_BUCKETS = exponential_buckets(0.1, 2, 13)  # 100 ms .. 409.6 s
INDEX_COMPACTION_PAUSE_MS_BUCKETS = exponential_buckets(0.5, 2, 14)  # 0.5 ms .. 4.096 s
DB_COMPACTION_PAUSE_MS_BUCKETS = exponential_buckets(1, 2, 13)  # 1 ms .. 4.096 s
DB_COMPACTION_TOTAL_MS_BUCKETS = exponential_buckets(100, 2, 14)  # 100 ms .. 819.2 s

SLOW_APPLY_SECONDS = 0.1  # etcd's warnApplyDuration


class Recorder:
    """A label-less histogram without locks: ``observe`` is one bisect and two adds.

    Buckets are upper bounds, inclusive (``le``), as Prometheus defines them;
    ``counts[i]`` holds the observations in bucket i alone (the last one is +Inf) and is
    made cumulative only when exposed.
    """

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, cumulative count)`` pairs ending with ``+Inf``, for HistogramMetricFamily."""
        from prometheus_client.utils import floatToGoString

        out = []
        total = 0
        counts = list(self.counts)  # one consistent copy even if the I/O thread observes
        for bound, n in zip(self.bounds, counts):
            total += n
            out.append((floatToGoString(bound), total))
        out.append(("+Inf", total + counts[-1]))
        return out


class StoreStats:
    """What the embedded store counts for its metrics (plain attributes, see each use).

    The per-op counters (ranges, puts, deletes, txns) live on ``KVStore`` where the ops
    run, the WAL fsync recorder on ``Backend`` (its I/O thread times the call); the rest
    is here.
    """

    __slots__ = (
        "commit", "snapshot", "defrag", "index_compaction_pause", "db_compaction_pause",
        "db_compaction_total", "proposals_committed", "proposals_failed",
        "inflight_txns", "slow_applies", "wal_write_bytes", "lease_expired", "events_sent",
        "watchers_open",
    )

    def __init__(self) -> None:
        self.commit = Recorder(BACKEND_COMMIT_BUCKETS)
        self.snapshot = Recorder(SNAPSHOT_BUCKETS)
        self.defrag = Recorder(DEFRAG_BUCKETS)
        self.index_compaction_pause = Recorder(INDEX_COMPACTION_PAUSE_MS_BUCKETS)
        self.db_compaction_pause = Recorder(DB_COMPACTION_PAUSE_MS_BUCKETS)
        self.db_compaction_total = Recorder(DB_COMPACTION_TOTAL_MS_BUCKETS)
        self.proposals_committed = 0  # txns (and lease/compact records) made durable
        self.proposals_failed = 0  # txns whose batch could not be written
        self.inflight_txns = 0  # txns of the batch being written right now
        self.slow_applies = 0
        self.wal_write_bytes = 0
        self.lease_expired = 0
        self.events_sent = 0  # watch events handed to consumers
        self.watchers_open = 0


class StoreCollector:
    """prometheus_client collector of one ``EmbeddedStore`` (register it in a registry).

    Reads the store's counters at scrape time; never blocks and never awaits.  The
    store's own attributes are read directly: collector and store are one unit.
    """

    def __init__(self, store: "EmbeddedStore") -> None:
        self.store = store

    def describe(self) -> list:
        return list(self.collect())

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        s = self.store
        kv = s._kv
        st = s._stats
        up = 1 if s._started and not s._closed and s._failed is None else 0

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, value=value)

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, value=value)

        # --- disk (etcd_disk_*) -------------------------------------------------------
        # The fdatasync of each group-commit batch's WAL frame (timed in the I/O thread;
        # nothing is observed with fsync disabled).
        yield _histogram("etcd_disk_wal_fsync_duration_seconds",
                         "The latency distributions of fsync called by WAL.", s._backend.fsync_durations)
        # The step that makes a batch durable *and* visible: from handing its frame to
        # the I/O thread (write + fdatasync) to readers and watchers seeing it.
        yield _histogram("etcd_disk_backend_commit_duration_seconds",
                         "The latency distributions of commit called by backend.", st.commit)
        # Writing a snapshot file (periodic, or for defragment), or streaming one to a
        # client (Maintenance.Snapshot), start to end.
        yield _histogram("etcd_disk_backend_snapshot_duration_seconds",
                         "The latency distribution of backend snapshots.", st.snapshot)
        yield _histogram("etcd_disk_backend_defrag_duration_seconds",
                         "The latency distribution of backend defragmentation.", st.defrag)
        yield gauge("etcd_disk_wal_write_bytes_total", "Total number of bytes written in WAL.",
                    st.wal_write_bytes)

        # --- mvcc sizes and revisions -----------------------------------------------
        # "Physically allocated" is the high-water mark the quota is checked against
        # (Status' dbSize); it drops back to the in-use size on defragment.
        yield gauge("etcd_mvcc_db_total_size_in_bytes",
                    "Total size of the underlying database physically allocated in bytes.", kv.db_high_water)
        yield gauge("etcd_mvcc_db_total_size_in_use_in_bytes",
                    "Total size of the underlying database logically in use in bytes.", kv.db_in_use)
        # Long ranges (and snapshots) in progress, each pinning its revision.
        yield gauge("etcd_mvcc_db_open_read_transactions", "The number of currently open read transactions",
                    sum(s._readers.values()))
        yield gauge("etcd_debugging_mvcc_current_revision", "The current revision of store.", kv.committed)
        yield gauge("etcd_debugging_mvcc_compact_revision", "The revision of the last compaction in store.",
                    kv.compacted)
        yield gauge("etcd_debugging_mvcc_keys_total", "Total number of keys.", len(kv.index.live))

        # --- mvcc operations (as etcd's metricsTxnWrite: every op a txn ran, compares
        # included since they read through Range; a txn counts when it ran > 1 op) ------
        yield counter("etcd_mvcc_range_total", "Total number of ranges seen by this member.", kv.ranges)
        yield counter("etcd_mvcc_put_total", "Total number of puts seen by this member.", kv.puts)
        yield counter("etcd_mvcc_delete_total", "Total number of deletes seen by this member.", kv.deletes)
        yield counter("etcd_mvcc_txn_total", "Total number of txns seen by this member.", kv.txns)

        # --- compaction ---------------------------------------------------------------
        # Total: from the compaction starting (after waiting for older readers) to the
        # last version dropped.  Index pause: dropping the history below the revision
        # and collecting the keys to cut (one synchronous step).  DB pause: each chunk of
        # cut version chains (the store yields to writers in between).
        yield _histogram("etcd_debugging_mvcc_db_compaction_total_duration_milliseconds",
                         "Bucketed histogram of db compaction total duration.", st.db_compaction_total)
        yield _histogram("etcd_debugging_mvcc_index_compaction_pause_duration_milliseconds",
                         "Bucketed histogram of index compaction pause duration.", st.index_compaction_pause)
        yield _histogram("etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds",
                         "Bucketed histogram of db compaction pause duration.", st.db_compaction_pause)
        yield counter("etcd_debugging_mvcc_db_compaction_keys_total", "Total number of db keys compacted.",
                      kv.index.compacted_versions)

        # --- watch --------------------------------------------------------------------
        # The embedded store has no gRPC streams of its own: every watcher is its own
        # stream, so both gauges count open watchers.  Slow watchers are the unsynced
        # ones (catching up from history, or fallen behind).
        group = s._watchers
        open_watchers = st.watchers_open
        yield gauge("etcd_debugging_mvcc_watcher_total", "Total number of watchers.", open_watchers)
        yield gauge("etcd_debugging_mvcc_watch_stream_total", "Total number of watch streams.", open_watchers)
        yield gauge("etcd_debugging_mvcc_slow_watcher_total", "Total number of unsynced slow watchers.",
                    max(open_watchers - len(group), 0))
        yield counter("etcd_debugging_mvcc_events_total", "Total number of events sent by this member.",
                      st.events_sent)
        yield gauge("etcd_debugging_mvcc_pending_events_total", "Total number of pending events to be sent.",
                    sum(len(w.buffer) for w in group.all))

        # --- server (one member: always its own leader while it runs) -------------------
        # A proposal is one staged txn (or lease grant/revoke, compaction record): it is
        # pending until its batch is on disk, then committed and applied at once.
        pending = (s._open.txns + sum(b.txns for b in s._sealed) + st.inflight_txns) if s._open else 0
        yield gauge("etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.", up)
        yield gauge("etcd_server_is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise.", up)
        yield counter("etcd_server_leader_changes_seen_total", "The number of leader changes seen.",
                      1 if s._started else 0)
        yield gauge("etcd_server_proposals_committed_total", "The total number of consensus proposals committed.",
                    st.proposals_committed)
        yield gauge("etcd_server_proposals_applied_total", "The total number of consensus proposals applied.",
                    st.proposals_committed)
        yield gauge("etcd_server_proposals_pending", "The current number of pending proposals to commit.", pending)
        yield counter("etcd_server_proposals_failed_total", "The total number of failed proposals seen.",
                      st.proposals_failed)
        # Txns acknowledged more than 100 ms after their batch took its first txn.
        yield counter("etcd_server_slow_apply_total",
                      "The total number of slow apply requests (likely overloaded from slow disk).",
                      st.slow_applies)
        yield gauge("etcd_server_quota_backend_bytes", "Current backend storage quota size in bytes.", s._quota)
        yield counter("etcd_debugging_server_lease_expired_total", "The total number of expired leases.",
                      st.lease_expired)
        version = GaugeMetricFamily("etcd_server_version",
                                    "Which version is running. 1 for 'server_version' label with current version.",
                                    labels=["server_version"])
        version.add_metric([s.info.version], 1)
        yield version


def _histogram(name: str, doc: str, rec: Recorder):
    from prometheus_client.core import HistogramMetricFamily

    return HistogramMetricFamily(name, doc, buckets=rec.cumulative(), sum_value=rec.sum)


# --- the metrics listener (etcd's --listen-metrics-urls) ------------------------------------

HealthCheck = Callable[[frozenset[str]], Awaitable[tuple[bool, str]]]


def split_url(url: str) -> tuple[str, int]:
    """``http://host:port``, ``host:port`` or ``[v6]:port`` -> (host, port)."""
    parts = urlsplit(url if "://" in url else "http://" + url)
    if parts.scheme != "http":
        raise OSError(f"cannot listen on {url!r}: only http:// metrics URLs are supported")
    if parts.hostname is None or parts.port is None:
        raise OSError(f"cannot listen on {url!r}: expected http://host:port")
    return parts.hostname, parts.port


def store_health(store: Any) -> HealthCheck:
    """etcd's /health for any Store: healthy when it answers a read and has no alarm
    other than the excluded ones (``?exclude=NOSPACE``)."""

    async def check(exclude: frozenset[str]) -> tuple[bool, str]:
        try:
            await asyncio.wait_for(store.current_revision(), 1.0)
            alarms = [a for a in await store.alarms() if a not in exclude]
        except Exception as exc:  # unavailable, closed, timed out
            return False, f"QGET ERROR:{exc}"
        if alarms:
            return False, "ALARM " + ",".join(alarms)
        return True, ""

    return check


async def serve_metrics(url: str, registry: Any, health: HealthCheck | None = None) -> asyncio.AbstractServer:
    """Start the plain-HTTP listener; returns the started ``asyncio.Server`` (close it
    to stop).  OSError if it cannot bind."""
    host, port = split_url(url)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await _answer(reader, writer, registry, health)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError):
            pass
        except Exception:  # pragma: no cover - never let one request kill the listener
            log.exception("metrics listener: request failed")
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)


async def _answer(reader, writer, registry, health) -> None:
    request_line = await asyncio.wait_for(reader.readline(), 10)
    while True:  # headers: not needed
        line = await asyncio.wait_for(reader.readline(), 10)
        if line in (b"\r\n", b"\n", b""):
            break
    try:
        method, target, _ = request_line.decode("latin-1").split(" ", 2)
    except ValueError:
        return await _respond(writer, 400, "text/plain", b"bad request\n")
    url = urlsplit(target)
    if method not in ("GET", "HEAD"):
        return await _respond(writer, 405, "text/plain", b"method not allowed\n")
    if url.path == "/metrics":
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        t = perf_counter()
        body = generate_latest(registry)
        log.debug("metrics: %d bytes in %.1f ms", len(body), (perf_counter() - t) * 1e3)
        return await _respond(writer, 200, CONTENT_TYPE_LATEST, body, head=method == "HEAD")
    if url.path == "/health" and health is not None:
        exclude = frozenset(v for vs in parse_qs(url.query).get("exclude", []) for v in vs.split(","))
        ok, reason = await health(exclude)
        body = json.dumps({"health": "true" if ok else "false", "reason": reason}).encode()
        return await _respond(writer, 200 if ok else 503, "application/json", body, head=method == "HEAD")
    return await _respond(writer, 404, "text/plain", b"404 page not found\n")


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


async def _respond(writer, status: int, ctype: str, body: bytes, head: bool = False) -> None:
    head_bytes = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {ctype}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode("latin-1")
    writer.write(head_bytes if head else head_bytes + body)
    await writer.drain()


def default_registry_for(store: Any):
    """A fresh registry with the store's collector (if it has one) and the process,
    platform and GC collectors (etcd's process_* and go_* counterparts)."""
    from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

    registry = CollectorRegistry()
    collector = store.metrics_collector()
    if collector is not None:
        registry.register(collector)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    if sys.implementation.name == "cpython":
        GCCollector(registry=registry)
    return registry


__all__ = [
    "Recorder", "StoreCollector", "StoreStats", "default_registry_for", "exponential_buckets",
    "serve_metrics", "split_url", "store_health",
]
