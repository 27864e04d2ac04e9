"""The embedded store's Prometheus metrics (etcd's names) and the metrics listener."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from kubeplane.store.metrics import (
    WAL_FSYNC_BUCKETS,
    Recorder,
    default_registry_for,
    exponential_buckets,
    serve_metrics,
    split_url,
    store_health,
)
from kubeplane.store.mvcc import EmbeddedStore
from kubeplane.store.mvcc.backend import Backend
from kubeplane.store.types import Compare, PutOp

QUOTA = 64 * 1024**2

# Every series the collector must expose (histograms by their _count sample).
SERIES = [
    "etcd_disk_wal_fsync_duration_seconds_count",
    "etcd_disk_backend_commit_duration_seconds_count",
    "etcd_disk_backend_snapshot_duration_seconds_count",
    "etcd_disk_backend_defrag_duration_seconds_count",
    "etcd_disk_wal_write_bytes_total",
    "etcd_mvcc_db_total_size_in_bytes",
    "etcd_mvcc_db_total_size_in_use_in_bytes",
    "etcd_mvcc_db_open_read_transactions",
    "etcd_server_quota_backend_bytes",
    "etcd_server_proposals_committed_total",
    "etcd_server_proposals_applied_total",
    "etcd_server_proposals_pending",
    "etcd_server_proposals_failed_total",
    "etcd_server_has_leader",
    "etcd_server_is_leader",
    "etcd_server_leader_changes_seen_total",
    "etcd_server_slow_apply_total",
    "etcd_debugging_server_lease_expired_total",
    "etcd_debugging_mvcc_keys_total",
    "etcd_mvcc_put_total",
    "etcd_mvcc_delete_total",
    "etcd_mvcc_range_total",
    "etcd_mvcc_txn_total",
    "etcd_debugging_mvcc_current_revision",
    "etcd_debugging_mvcc_compact_revision",
    "etcd_debugging_mvcc_db_compaction_total_duration_milliseconds_count",
    "etcd_debugging_mvcc_index_compaction_pause_duration_milliseconds_count",
    "etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds_count",
    "etcd_debugging_mvcc_db_compaction_keys_total",
    "etcd_debugging_mvcc_watcher_total",
    "etcd_debugging_mvcc_watch_stream_total",
    "etcd_debugging_mvcc_events_total",
    "etcd_debugging_mvcc_pending_events_total",
    "etcd_debugging_mvcc_slow_watcher_total",
]


@pytest.fixture
async def store(tmp_path: Path):
    s = EmbeddedStore(tmp_path / "data", quota_bytes=QUOTA)
    await s.start()
    try:
        yield s
    finally:
        await s.close()


def registry_of(store: EmbeddedStore) -> CollectorRegistry:
    reg = CollectorRegistry()
    reg.register(store.metrics_collector())
    return reg


def test_recorder_buckets_are_inclusive_upper_bounds():
    assert exponential_buckets(0.001, 2, 14) == WAL_FSYNC_BUCKETS
    assert WAL_FSYNC_BUCKETS[0] == 0.001 and WAL_FSYNC_BUCKETS[-1] == pytest.approx(8.192)
    r = Recorder((1.0, 2.0))
    for v in (0.5, 1.0, 1.5, 2.0, 3.0):
        r.observe(v)
    assert r.cumulative() == [("1.0", 2), ("2.0", 4), ("+Inf", 5)]
    assert r.count == 5 and r.sum == 8.0


async def test_collector_counts_the_operations_done(store: EmbeddedStore):
    reg = registry_of(store)
    v = reg.get_sample_value
    assert v("etcd_mvcc_put_total") == 0
    assert v("etcd_server_has_leader") == 1 and v("etcd_server_is_leader") == 1

    w = await store.watch(b"/m/", b"/m0")
    for i in range(5):
        await store.put(b"/m/a", b"v%d" % i)  # revisions 2..6
    for k in (b"/m/b", b"/m/c", b"/m/d"):
        await store.put(k, b"x" * 100)  # 7, 8, 9
    await store.delete(b"/m/b")  # 10
    res = await store.txn([Compare.version(b"/m/c", ">", 0)], [PutOp(b"/m/c", b"y")])  # 11
    assert res.succeeded and res.revision == 11
    await store.range(b"/m/a")
    await store.range(b"/m/", b"/m0")
    events = 0
    while events < 10:
        events += len((await w.__anext__()).events)
    assert v("etcd_debugging_mvcc_watcher_total") == 1
    assert v("etcd_debugging_mvcc_watch_stream_total") == 1
    assert v("etcd_debugging_mvcc_slow_watcher_total") == 0
    await w.cancel()
    await store.compact(10)

    assert v("etcd_mvcc_put_total") == 5 + 3 + 1
    assert v("etcd_mvcc_delete_total") == 1
    assert v("etcd_mvcc_range_total") == 2 + 1  # the txn's compare reads through a range
    assert v("etcd_mvcc_txn_total") == 1  # compare + put; single-op requests are not txns
    assert v("etcd_debugging_mvcc_events_total") == events == 10
    assert v("etcd_debugging_mvcc_watcher_total") == 0
    assert v("etcd_debugging_mvcc_keys_total") == 3  # a, c, d
    assert v("etcd_debugging_mvcc_current_revision") == 11
    assert v("etcd_debugging_mvcc_compact_revision") == 10
    # a: four old versions; b: its put and the tombstone at the compaction revision.
    assert v("etcd_debugging_mvcc_db_compaction_keys_total") == 6
    assert v("etcd_debugging_mvcc_db_compaction_total_duration_milliseconds_count") == 1
    assert v("etcd_debugging_mvcc_index_compaction_pause_duration_milliseconds_count") == 1
    # ten writes and the compaction record, each durable before it was acknowledged
    assert v("etcd_server_proposals_committed_total") == 11
    assert v("etcd_server_proposals_applied_total") == 11
    assert v("etcd_server_proposals_pending") == 0
    assert v("etcd_server_proposals_failed_total") == 0
    fsyncs = v("etcd_disk_wal_fsync_duration_seconds_count")
    assert 1 <= fsyncs <= 11
    assert v("etcd_disk_wal_fsync_duration_seconds_bucket", {"le": "+Inf"}) == fsyncs
    assert v("etcd_disk_wal_fsync_duration_seconds_sum") > 0
    assert v("etcd_disk_backend_commit_duration_seconds_count") == fsyncs
    assert v("etcd_disk_wal_write_bytes_total") > 5 * len(b"/m/a")
    status = await store.status()
    assert v("etcd_mvcc_db_total_size_in_bytes") == status.db_size > 0
    assert 0 < v("etcd_mvcc_db_total_size_in_use_in_bytes") == status.db_size_in_use < status.db_size
    assert v("etcd_server_quota_backend_bytes") == QUOTA
    assert v("etcd_server_version", {"server_version": store.info.version}) == 1

    await store.defragment()
    assert v("etcd_disk_backend_defrag_duration_seconds_count") == 1
    assert v("etcd_disk_backend_snapshot_duration_seconds_count") == 1
    assert v("etcd_mvcc_db_total_size_in_bytes") == v("etcd_mvcc_db_total_size_in_use_in_bytes")

    text = generate_latest(reg).decode()
    for name in SERIES:
        assert f"\n{name} " in text or f"\n{name}{{" in text, name
    assert "# TYPE etcd_disk_wal_fsync_duration_seconds histogram" in text
    assert "# TYPE etcd_mvcc_put_total counter" in text
    assert "# TYPE etcd_server_proposals_committed_total gauge" in text  # a gauge in etcd too
    assert 'etcd_disk_wal_fsync_duration_seconds_bucket{le="8.192"}' in text


async def test_unsynced_watcher_is_slow(store: EmbeddedStore):
    reg = registry_of(store)
    await store.put(b"/s/a", b"1")
    w = await store.watch(b"/s/a", start_revision=1)  # catches up from history
    assert reg.get_sample_value("etcd_debugging_mvcc_slow_watcher_total") == 1
    resp = await w.__anext__()
    assert [e.kv.value for e in resp.events] == [b"1"]
    assert reg.get_sample_value("etcd_debugging_mvcc_slow_watcher_total") == 0
    assert reg.get_sample_value("etcd_debugging_mvcc_events_total") == 1
    await store.put(b"/s/a", b"2")
    await asyncio.sleep(0)
    assert reg.get_sample_value("etcd_debugging_mvcc_pending_events_total") == 1
    await w.cancel()


async def test_pending_and_slow_proposals(store: EmbeddedStore, monkeypatch: pytest.MonkeyPatch):
    reg = registry_of(store)
    entered = threading.Event()
    release = threading.Event()
    real = Backend.write_sync

    def held(self, buffers):
        entered.set()
        release.wait(5)
        return real(self, buffers)

    monkeypatch.setattr(Backend, "write_sync", held)
    puts = [asyncio.create_task(store.put(b"/p/%d" % i, b"v")) for i in range(3)]
    while not entered.is_set():
        await asyncio.sleep(0.005)
    assert reg.get_sample_value("etcd_server_proposals_pending") == 3
    assert reg.get_sample_value("etcd_server_proposals_committed_total") == 0
    await asyncio.sleep(0.15)  # past etcd's 100 ms slow-apply warning
    release.set()
    await asyncio.gather(*puts)
    assert reg.get_sample_value("etcd_server_proposals_pending") == 0
    assert reg.get_sample_value("etcd_server_proposals_committed_total") == 3
    assert reg.get_sample_value("etcd_server_slow_apply_total") == 3


async def test_failed_wal_write(store: EmbeddedStore, monkeypatch: pytest.MonkeyPatch):
    reg = registry_of(store)

    def broken(self, buffers):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Backend, "write_sync", broken)
    with pytest.raises(Exception):
        await store.put(b"/f/a", b"v")
    assert reg.get_sample_value("etcd_server_proposals_failed_total") == 1
    assert reg.get_sample_value("etcd_server_has_leader") == 0


async def test_no_fsync_no_fsync_observations(tmp_path: Path):
    async with EmbeddedStore(tmp_path / "d", fsync=False) as s:
        reg = registry_of(s)
        await s.put(b"/n/a", b"v")
        assert reg.get_sample_value("etcd_disk_wal_fsync_duration_seconds_count") == 0
        assert reg.get_sample_value("etcd_disk_backend_commit_duration_seconds_count") == 1


def test_split_url():
    assert split_url("http://127.0.0.1:2381") == ("127.0.0.1", 2381)
    assert split_url("127.0.0.1:0") == ("127.0.0.1", 0)
    assert split_url("http://[::1]:2381") == ("::1", 2381)
    with pytest.raises(OSError):
        split_url("https://127.0.0.1:2381")
    with pytest.raises(OSError):
        split_url("http://127.0.0.1")


async def _get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert int(headers["Content-Length"]) == len(body)
    return int(lines[0].split()[1]), headers, body


async def test_metrics_listener(store: EmbeddedStore):
    await store.put(b"/l/a", b"v")
    server = await serve_metrics("http://127.0.0.1:0", default_registry_for(store), store_health(store))
    try:
        port = server.sockets[0].getsockname()[1]
        status, headers, body = await _get(port, "/metrics")
        assert status == 200
        assert headers["Content-Type"].startswith("text/plain; version=")  # exposition text
        text = body.decode()
        assert "\netcd_mvcc_put_total 1.0\n" in text
        assert "\netcd_server_has_leader 1.0\n" in text
        assert "process_cpu_seconds_total" in text  # etcd serves process_* as well
        status, _, body = await _get(port, "/health")
        assert status == 200 and json.loads(body) == {"health": "true", "reason": ""}
        status, _, _ = await _get(port, "/nope")
        assert status == 404

        store._alarms.add("NOSPACE")
        status, _, body = await _get(port, "/health")
        assert status == 503 and json.loads(body) == {"health": "false", "reason": "ALARM NOSPACE"}
        status, _, body = await _get(port, "/health?exclude=NOSPACE&serializable=true")
        assert status == 200 and json.loads(body)["health"] == "true"
    finally:
        server.close()
        await server.wait_closed()


def test_store_serve_listen_metrics(tmp_path: Path):
    """``kubeplane store serve``'s entry point with a metrics URL: /metrics answers on
    the loopback next to the gRPC endpoint."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = (
        "import asyncio, sys; from kubeplane.store.grpc_server import serve; "
        f"asyncio.run(serve('127.0.0.1:0', {str(tmp_path / 'd')!r}, "
        f"listen_metrics='http://127.0.0.1:{port},127.0.0.1:0'))"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=Path(__file__).resolve().parents[2], env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        lines = []
        while True:
            line = proc.stdout.readline().decode()
            assert line, f"server exited: {lines} {proc.stderr.read().decode()}"
            lines.append(line)
            if sum("/metrics" in x for x in lines) == 2:  # etcd's flag takes a list of URLs
                break
        assert f"http://127.0.0.1:{port}" in lines[-2]
        other = int(lines[-1].rsplit(":", 1)[1])
        for p in (port, other):
            status, _, body = asyncio.run(_get(p, "/metrics"))
            assert status == 200
            assert "\netcd_server_has_leader 1.0\n" in body.decode()
            assert "etcd_disk_wal_fsync_duration_seconds_bucket" in body.decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


async def test_lease_expiry_counts_and_deletes(store: EmbeddedStore):
    reg = registry_of(store)
    now = [1000.0]
    store._kv.lessor.clock = lambda: now[0]  # expire on demand, not after seconds
    grant = await store.lease_grant(5)
    await store.put(b"/e/a", b"v", lease=grant.id)
    await store.put(b"/e/b", b"v", lease=grant.id)
    now[0] += 60
    for _ in range(300):
        if reg.get_sample_value("etcd_debugging_server_lease_expired_total") == 1:
            break
        await asyncio.sleep(0.01)
    assert reg.get_sample_value("etcd_debugging_server_lease_expired_total") == 1
    while (await store.range(b"/e/", b"/e0")).count:
        await asyncio.sleep(0.01)
    # etcd's lessor deletes the lease's keys one by one in a single txn
    assert reg.get_sample_value("etcd_mvcc_delete_total") == 2
    assert reg.get_sample_value("etcd_mvcc_txn_total") == 1
