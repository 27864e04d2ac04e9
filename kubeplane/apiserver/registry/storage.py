"""Objects in the store: key layout, encoding, resourceVersion and optimistic concurrency.

Objects are stored as JSON without `metadata.resourceVersion`: the store's mod revision
*is* the resourceVersion, set on every read (as upstream's etcd3 storage does). Every
write is one txn guarded by a compare, so a create never overwrites and an update or
delete never applies over a newer version than the one it read.

With a registry, every store request is measured as upstream's etcd3 storage does
(`StorageMetrics`, names from k8s.io/apiserver/pkg/storage/etcd3/metrics).
"""
from __future__ import annotations

import asyncio
import re
from time import perf_counter
from typing import Any

import orjson

from ...store import errors as store_errors
from ...store.interface import Store
from ...store.metrics import Recorder
from ...store.types import Compare, DeleteOp, KeyValue, PutOp, RangeOp, prefix_end
from ..machinery import errors
from .resources import BUILTIN, ResourceInfo


def key_of(info: ResourceInfo, namespace: str | None, name: str) -> bytes:
    if info.namespaced:
        return f"{info.key_prefix}{namespace}/{name}".encode()
    return f"{info.key_prefix}{name}".encode()


def prefix_of(info: ResourceInfo, namespace: str | None) -> bytes:
    if info.namespaced and namespace:
        return f"{info.key_prefix}{namespace}/".encode()
    return info.key_prefix.encode()


# Stored objects start with kind, apiVersion and metadata, in that order (encode() writes
# them so); the resourceVersion is then spliced into the bytes without decoding them.
_HEAD = re.compile(rb'\{"kind":"[^"\\]*","apiVersion":"[^"\\]*","metadata":\{')


def rv_cut(value: bytes) -> int:
    """Where `metadata.resourceVersion` goes into the stored JSON: just inside metadata's
    brace; -1 when the value was written by someone else (not in encode()'s order)."""
    m = _HEAD.match(value)
    return m.end() if m is not None else -1


def rv_parts(value: bytes, rev: int, cut: int) -> tuple[bytes | memoryview, ...]:
    """The JSON as served (resourceVersion `rev` spliced in at `cut`, from rv_cut) as
    buffers to join or write: the stored bytes are not copied here."""
    if cut < 0:     # written by someone else: decode, set, encode
        return (orjson.dumps(_decoded(value, rev)),)
    rv = b'"resourceVersion":"%d"' % rev if value[cut] == 0x7D else b'"resourceVersion":"%d",' % rev  # 0x7D: }
    return value[:cut], rv, memoryview(value)[cut:]


def with_rv(value: bytes, rev: int) -> bytes:
    """The stored JSON with `metadata.resourceVersion` = `rev`: the bytes every GET, LIST
    and watch event of this version carries (serialized once)."""
    return b"".join(rv_parts(value, rev, rv_cut(value)))


def _decoded(value: bytes, rev: int) -> dict[str, Any]:
    obj = orjson.loads(value)
    md = obj.get("metadata")
    if not isinstance(md, dict):
        md = obj["metadata"] = {}
    md["resourceVersion"] = str(rev)
    return obj


def decode(kv: KeyValue) -> dict[str, Any]:
    return orjson.loads(with_rv(kv.value, kv.mod_revision))


def encode(obj: dict[str, Any]) -> bytes:
    """The stored form: JSON without resourceVersion, kind/apiVersion/metadata first."""
    md = obj.get("metadata")
    if not isinstance(md, dict):
        md = {}
    rv = md.pop("resourceVersion", None)
    try:
        if list(obj)[:3] == ["kind", "apiVersion", "metadata"]:
            return orjson.dumps(obj)
        return orjson.dumps({"kind": obj.get("kind"), "apiVersion": obj.get("apiVersion"), "metadata": md, **obj})
    finally:
        if rv is not None:
            md["resourceVersion"] = rv


def store_error(exc: Exception) -> errors.APIError:
    """Map a store error onto the Status upstream returns for it."""
    if isinstance(exc, store_errors.CompactedError):
        return errors.APIError(410, "Expired", "The resourceVersion for the provided list is too old.")
    if isinstance(exc, store_errors.FutureRevisionError):
        return errors.APIError(504, "Timeout", "Too large resource version")
    if isinstance(exc, store_errors.RequestTooLargeError):
        return errors.APIError(413, "RequestEntityTooLarge", "etcdserver: request is too large")
    msg = getattr(exc, "message", None) or str(exc)
    return errors.internal(msg)


# --- request metrics ------------------------------------------------------------------

# etcd_request_duration_seconds' buckets (upstream keeps them in line with the API
# request latency SLO buckets).
REQUEST_BUCKETS = (0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 6, 8,
                   10, 15, 20, 30, 45, 60)

# Keys carry the resource, not its group: built-ins are /registry/<plural>/ (the first
# table entry wins, so core "events" over events.k8s.io, which shares its keys
# upstream too), custom resources /registry/<group>/<plural>/.
_BUILTIN_GROUP: dict[str, str] = {i.plural: i.group for i in reversed(BUILTIN)}


def labels_of_key(key: bytes) -> tuple[str, str]:
    """(group, resource) of a store key, for requests made without a ResourceInfo."""
    parts = key.decode("utf-8", "replace").split("/", 4)   # "", "registry", a, b, ...
    first = parts[2] if len(parts) > 2 else ""
    if "." in first and len(parts) > 3:
        return first, parts[3]
    return _BUILTIN_GROUP.get(first, ""), first


class _Series(Recorder):
    """One (operation, group, resource) child: latency histogram (its count is
    etcd_requests_total) and the requests that failed."""

    __slots__ = ("labels", "errors")

    def __init__(self, labels: tuple[str, str, str]):
        super().__init__(REQUEST_BUCKETS)
        self.labels = labels
        self.errors = 0


class StorageMetrics:
    """Upstream's storage request metrics, as one prometheus_client collector:

    * etcd_request_duration_seconds{operation, group, resource} (histogram);
    * etcd_requests_total{operation, group, resource};
    * etcd_request_errors_total{operation, group, resource} (a series appears with its
      first error, as upstream's CounterVec child does);
    * apiserver_storage_size_bytes{storage_cluster_id="etcd-0"}: the store's dbSize as
      last seen by `refresh_storage_size()` (kube-apiserver 1.29+ name; the deprecated
      apiserver_storage_db_total_size_in_bytes{endpoint} is not exposed).

    A request costs a dict lookup, two clock reads, a bisect and two adds: children
    are cached per (operation, ResourceInfo) and per key prefix.  Operations are
    upstream's: get, list, create, update, delete.  A request that raises (store error, cancellation)
    counts as an error; a failed compare (409, 404 after a guarded txn) does not, as
    upstream's etcd client returns no error for it.
    """

    def __init__(self) -> None:
        self._series: dict[tuple[str, str, str], _Series] = {}
        self._by_info: dict[tuple[str, ResourceInfo], _Series] = {}
        self._by_prefix: dict[tuple[str, bytes], _Series | dict[bytes, _Series]] = {}
        self.storage_size: int | None = None

    def series(self, op: str, group: str, resource: str) -> _Series:
        labels = (op, group, resource)
        s = self._series.get(labels)
        if s is None:
            s = self._series[labels] = _Series(labels)
        return s

    def for_info(self, op: str, info: ResourceInfo) -> _Series:
        s = self._by_info.get((op, info))
        if s is None:
            s = self._by_info[(op, info)] = self.series(op, info.group, info.plural)
        return s

    def for_key(self, op: str, key: bytes) -> _Series:
        """The series of a request for `key`, cached per /registry/<segment>: a
        built-in's series, or (custom resources) a dict of them by plural."""
        end = key.find(b"/", 10)
        head = key[:end] if end > 0 else key
        hit = self._by_prefix.get((op, head))   # only /registry/ keys are ever cached
        if type(hit) is _Series:
            return hit
        if hit is not None:   # /registry/<group>: one more segment names the resource
            cut = key.find(b"/", end + 1)
            plural = key[end + 1:cut] if cut > 0 else key[end + 1:]
            s = hit.get(plural)
            if s is None:
                s = self.series(op, *labels_of_key(key))
                if len(hit) < 1024:
                    hit[plural] = s
            return s
        s = self.series(op, *labels_of_key(key))
        if key.startswith(b"/registry/") and end > 0 and len(self._by_prefix) < 1024:
            if b"." in head[10:]:
                self._by_prefix[(op, head)] = {}
                return self.for_key(op, key)
            self._by_prefix[(op, head)] = s
        return s

    def describe(self) -> list:
        return list(self.collect())

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        names = ["operation", "group", "resource"]
        hist = HistogramMetricFamily("etcd_request_duration_seconds",
                                     "Etcd request latency in seconds for each operation and object type.",
                                     labels=names)
        total = CounterMetricFamily("etcd_requests_total",
                                    "Etcd request counts for each operation and object type.", labels=names)
        errs = CounterMetricFamily("etcd_request_errors_total",
                                   "Etcd failed request counts for each operation and object type.", labels=names)
        for s in list(self._series.values()):
            buckets = s.cumulative()
            hist.add_metric(list(s.labels), buckets, s.sum)
            total.add_metric(list(s.labels), buckets[-1][1])
            if s.errors:
                errs.add_metric(list(s.labels), s.errors)
        yield hist
        yield total
        yield errs
        size = GaugeMetricFamily("apiserver_storage_size_bytes",
                                 "Size of the storage database file physically allocated in bytes.",
                                 labels=["storage_cluster_id"])
        if self.storage_size is not None:
            size.add_metric(["etcd-0"], self.storage_size)
        yield size


def _failed(series: _Series, start: float) -> None:
    series.observe(perf_counter() - start)
    series.errors += 1


class ObjectStore:
    """The API's objects over one `Store`.

    With ``registry`` (a prometheus_client CollectorRegistry) every store request is
    measured (`StorageMetrics`, registered there); without it nothing is.
    """

    def __init__(self, store: Store, *, registry: Any = None):
        self.store = store
        self.metrics: StorageMetrics | None = None
        if registry is not None:
            self.metrics = StorageMetrics()
            registry.register(self.metrics)

    async def refresh_storage_size(self, timeout: float = 1.0) -> None:
        """Read the store's dbSize for apiserver_storage_size_bytes (upstream asks etcd
        at each scrape, with a 1 s timeout, and leaves the series out on failure).
        Call it before rendering /metrics."""
        m = self.metrics
        if m is None:
            return
        try:
            status = await asyncio.wait_for(self.store.status(), timeout)
        except Exception:
            m.storage_size = None
            return
        m.storage_size = status.db_size

    async def get_kv(self, key: bytes, revision: int = 0, *,
                     info: ResourceInfo | None = None) -> KeyValue | None:
        """The key's current (or `revision`'s) version.  `info` only labels the request
        metrics (without it they are read off the key)."""
        m = self.metrics
        if m is not None:
            series = m.for_info("get", info) if info is not None else m.for_key("get", key)
            t0 = perf_counter()
        try:
            res = await self.store.range(key, revision=revision)
        except BaseException as e:
            if m is not None:
                _failed(series, t0)
            if isinstance(e, store_errors.StoreError):
                raise store_error(e) from None
            raise
        if m is not None:
            series.observe(perf_counter() - t0)
        return res.kvs[0] if res.kvs else None

    async def get(self, info: ResourceInfo, namespace: str | None, name: str,
                  revision: int = 0) -> dict[str, Any]:
        kv = await self.get_kv(key_of(info, namespace, name), revision, info=info)
        if kv is None:
            raise errors.not_found(info.group, info.plural, name)
        return decode(kv)

    async def list(self, info: ResourceInfo, namespace: str | None, *, revision: int = 0,
                   limit: int = 0, start: bytes | None = None) -> tuple[list[KeyValue], int, bool, int]:
        """Returns (kvs, revision, more, remaining-after-this-page)."""
        prefix = prefix_of(info, namespace)
        end = prefix_end(prefix)
        m = self.metrics
        if m is not None:
            series = m.for_info("list", info)
            t0 = perf_counter()
        try:
            res = await self.store.range(start or prefix, end, revision=revision, limit=limit)
        except BaseException as e:
            if m is not None:
                _failed(series, t0)
            if isinstance(e, store_errors.StoreError):
                raise store_error(e) from None
            raise
        if m is not None:
            series.observe(perf_counter() - t0)
        return res.kvs, res.revision, res.more, res.count - len(res.kvs)

    async def current_revision(self, info: ResourceInfo | None = None) -> int:
        """The store's current revision.  With `info` it is measured as the "list" it is
        upstream (a limit-1 list of that resource); without, it is not measured."""
        m = self.metrics
        if m is None or info is None:
            return await self.store.current_revision()
        series = m.for_info("list", info)
        t0 = perf_counter()
        try:
            rev = await self.store.current_revision()
        except BaseException:
            _failed(series, t0)
            raise
        series.observe(perf_counter() - t0)
        return rev

    async def _txn(self, op: str, info: ResourceInfo, compares, success, failure):
        """store.txn, measured as `op`; store errors become API errors."""
        m = self.metrics
        if m is not None:
            series = m.for_info(op, info)
            t0 = perf_counter()
        try:
            res = await self.store.txn(compares, success, failure)
        except BaseException as e:
            if m is not None:
                _failed(series, t0)
            if isinstance(e, store_errors.StoreError):
                raise store_error(e) from None
            raise
        if m is not None:
            series.observe(perf_counter() - t0)
        return res

    async def create(self, info: ResourceInfo, namespace: str | None, name: str,
                     obj: dict[str, Any]) -> dict[str, Any]:
        key = key_of(info, namespace, name)
        data = encode(obj)
        res = await self._txn("create", info, [Compare.create_revision(key, "=", 0)], [PutOp(key, data)], [])
        if not res.succeeded:
            raise errors.already_exists(info.group, info.plural, name)
        obj.setdefault("metadata", {})["resourceVersion"] = str(res.revision)
        return obj

    async def _guarded(self, info: ResourceInfo, key: bytes, name: str, expected_rev: int, op,
                       verb: str) -> int:
        """Run `op` on `key` if it is still at `expected_rev`; 409 Conflict if it changed,
        404 if it is gone. Returns the store revision after the txn."""
        res = await self._txn(verb, info, [Compare.mod_revision(key, "=", expected_rev)], [op],
                              [RangeOp(key, keys_only=True)])
        if not res.succeeded:
            if not res.responses[0].kvs:
                raise errors.not_found(info.group, info.plural, name)
            raise errors.conflict(info.group, info.plural, name, errors.OPTIMISTIC_LOCK)
        return res.revision

    async def update(self, info: ResourceInfo, namespace: str | None, name: str,
                     obj: dict[str, Any], expected_rev: int) -> dict[str, Any]:
        """Write `obj` if the stored object is still at `expected_rev`."""
        key = key_of(info, namespace, name)
        rev = await self._guarded(info, key, name, expected_rev, PutOp(key, encode(obj)), "update")
        obj.setdefault("metadata", {})["resourceVersion"] = str(rev)
        return obj

    async def delete(self, info: ResourceInfo, namespace: str | None, name: str,
                     expected_rev: int) -> int:
        """Delete if still at `expected_rev`; returns the deletion's revision."""
        key = key_of(info, namespace, name)
        return await self._guarded(info, key, name, expected_rev, DeleteOp(key), "delete")

    async def delete_prefix(self, prefix: bytes) -> int:
        """Delete every key under `prefix` (measured as one "delete" of its resource)."""
        m = self.metrics
        if m is not None:
            series = m.for_key("delete", prefix)
            t0 = perf_counter()
        try:
            res = await self.store.delete(prefix, prefix_end(prefix))
        except BaseException as e:
            if m is not None:
                _failed(series, t0)
            if isinstance(e, store_errors.StoreError):
                raise store_error(e) from None
            raise
        if m is not None:
            series.observe(perf_counter() - t0)
        return res.deleted
