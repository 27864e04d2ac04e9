"""EtcdStore client behaviour on a real 3-member etcd cluster: load spreading,
re-shuffling, failover of reads/writes/watches when a member dies, version detection.

The failover tests kill members, so they use their own cluster (not the session one).
"""

from __future__ import annotations

import asyncio
import collections
import time

import grpc
import pytest

from etcd_procs import ETCD_BIN, EtcdCluster
from kubeplane.store.errors import (
    CompactedError,
    FutureRevisionError,
    RequestTooLargeError,
    StoreError,
    StoreUnavailableError,
)
from kubeplane.store.etcd import EtcdStore, progress_requests_reliable
from kubeplane.store.etcd._errors import error_from_status, may_fail_over
from kubeplane.store.types import prefix_end

pytestmark = pytest.mark.etcd


@pytest.fixture
def cluster(tmp_path):
    """A private 3-member cluster, killed at teardown."""
    with EtcdCluster(tmp_path / "cluster", 3) as c:
        yield c


def _installed_etcd_version() -> str:
    import subprocess

    out = subprocess.run([ETCD_BIN, "--version"], capture_output=True, text=True, check=True).stdout
    return out.split("etcd Version:")[1].split()[0]


# --- load spreading -------------------------------------------------------------------


async def test_shuffle_spreads_first_endpoints(etcd_cluster3):
    endpoints = etcd_cluster3.endpoints
    firsts = collections.Counter(EtcdStore(endpoints).info.endpoints[0] for _ in range(90))
    assert set(firsts) == set(endpoints)
    assert min(firsts.values()) >= 15, firsts  # expected 30 each; < 15 is ~1e-4 likely

    # And calls really go to the first endpoint: each client's member answers.
    by_url = {m.client_urls[0].removeprefix("http://"): m.id for m in await _members(endpoints)}
    answered = collections.Counter()
    for _ in range(12):
        async with EtcdStore(endpoints) as s:
            status = await s.status()
            assert status.member_id == by_url[s.info.endpoints[0]]
            answered[status.member_id] += 1
    assert len(answered) >= 2


async def _members(endpoints):
    async with EtcdStore(endpoints) as s:
        return await s.members()


async def test_reshuffle_changes_order(etcd_cluster3):
    endpoints = etcd_cluster3.endpoints
    async with EtcdStore(endpoints, reshuffle_interval=0.02) as s:
        seen = set()
        deadline = time.monotonic() + 2.0
        while len(seen) < 3 and time.monotonic() < deadline:
            order = tuple(s.info.endpoints)
            assert sorted(order) == sorted(endpoints)
            seen.add(order)
            await asyncio.sleep(0.03)
        assert len(seen) >= 3, seen
        await s.put(b"/client/reshuffle", b"ok")  # still works across re-shuffles
    async with EtcdStore(endpoints, reshuffle_interval=0) as s:
        first = s.info.endpoints
        await asyncio.sleep(0.1)
        assert s.info.endpoints == first


# --- version ---------------------------------------------------------------------------


async def test_version_detection(etcd_single):
    installed = _installed_etcd_version()
    async with EtcdStore(etcd_single.endpoints) as s:
        assert s.info.version == installed
        assert s.info.implementation == "etcd"
        assert s.info.progress_requests_reliable is progress_requests_reliable(installed)
    if installed == "3.4.23":
        assert progress_requests_reliable(installed) is False


@pytest.mark.parametrize(
    "version, reliable",
    [
        ("3.4.23", False),
        ("3.4.30", False),
        ("3.4.31", True),
        ("3.4.35", True),
        ("3.5.0", False),
        ("3.5.7", False),
        ("3.5.8", True),
        ("3.5.17", True),
        ("3.6.0", True),
        ("3.6.0-rc.1", True),
        ("3.3.27", False),
        ("4.0.0", True),
        ("", False),
        ("not-a-version", False),
    ],
)
def test_progress_requests_reliable_rule(version, reliable):
    assert progress_requests_reliable(version) is reliable


# --- error mapping ----------------------------------------------------------------------


def _rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)


def test_error_mapping_by_message_then_code():
    e = error_from_status(grpc.StatusCode.OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted")
    assert isinstance(e, CompactedError) and e.compact_revision == 0
    e = error_from_status(grpc.StatusCode.OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision")
    assert isinstance(e, FutureRevisionError)
    e = error_from_status(grpc.StatusCode.RESOURCE_EXHAUSTED, "grpc: received message larger than max (3 vs. 2)")
    assert isinstance(e, RequestTooLargeError)
    e = error_from_status(grpc.StatusCode.UNAVAILABLE, "etcdserver: leader changed")
    assert isinstance(e, StoreUnavailableError)
    e = error_from_status(grpc.StatusCode.PERMISSION_DENIED, "etcdserver: permission denied")
    assert type(e) is StoreError and e.grpc_code == "PERMISSION_DENIED"
    assert e.text == "etcdserver: permission denied"


def test_which_failures_may_fail_over():
    refused = _rpc_error(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses; last error: x")
    no_leader = _rpc_error(grpc.StatusCode.UNAVAILABLE, "etcdserver: no leader")
    reset = _rpc_error(grpc.StatusCode.UNAVAILABLE, "Socket closed")
    deadline = _rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
    invalid = _rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: key is not provided")
    for err in (refused, no_leader, reset, deadline):
        assert may_fail_over(err, idempotent=True)
    assert may_fail_over(refused, idempotent=False)
    assert may_fail_over(no_leader, idempotent=False)
    # A write that may have reached the member is never sent twice.
    assert not may_fail_over(reset, idempotent=False)
    assert not may_fail_over(deadline, idempotent=False)
    assert not may_fail_over(invalid, idempotent=True)


# --- failover ---------------------------------------------------------------------------


def _index(cluster: EtcdCluster, endpoint: str) -> int:
    return cluster.endpoints.index(endpoint)


async def _leader_index(cluster: EtcdCluster, store: EtcdStore) -> int:
    status = await store.status()
    members = {m.id: m.client_urls[0].removeprefix("http://") for m in await store.members()}
    return _index(cluster, members[status.leader])


async def _write_read_watch_through_failure(cluster: EtcdCluster, victim: int, *, write_first: bool):
    """Kill member ``victim`` while the client talks to it (its watch lives there) and
    check that reads, writes and the watch carry on without loss or duplicates."""
    p = b"/failover/"
    async with EtcdStore(cluster.endpoints, reshuffle_interval=0, request_timeout=8.0) as s:
        while s.info.endpoints[0] != cluster.endpoints[victim]:
            s._pool.failed(s._pool.current())  # make the victim the client's member
        w = await s.watch(p, prefix_end(p))
        expected = []
        for i in range(5):
            r = (await s.put(p + b"before/%d" % i, b"%d" % i)).revision
            expected.append((p + b"before/%d" % i, r))

        cluster.kill(victim)

        if write_first:
            # Once the client has seen the dead member's connection close, a write
            # certainly is not sent there, so it goes to the next member at once.  (A
            # write racing with the close may fail as "Socket closed": ambiguous in
            # general, so it is raised, not resent.)
            channel = s._pool.current().channel
            deadline = time.monotonic() + 2.0
            while channel.get_state() == grpc.ChannelConnectivity.READY and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            t0 = time.monotonic()
            r = (await s.put(p + b"first", b"")).revision
            assert time.monotonic() - t0 < 2.0
            expected.append((p + b"first", r))
        # Reads fail over at once (idempotent).
        assert (await s.get(p + b"before/0")).value == b"0"
        assert s.info.endpoints[0] != cluster.endpoints[victim]
        for i in range(5):
            r = (await s.put(p + b"after/%d" % i, b"%d" % i)).revision
            expected.append((p + b"after/%d" % i, r))
        stop = (await s.put(p + b"stop", b"")).revision
        expected.append((p + b"stop", stop))

        got = []
        deadline = time.monotonic() + 15
        while not got or got[-1][0] != p + b"stop":
            resp = await asyncio.wait_for(w.__anext__(), max(0.1, deadline - time.monotonic()))
            got += [(e.kv.key, e.kv.mod_revision) for e in resp.events]
        assert got == expected  # every event exactly once, in order
        await w.cancel()

        # Everything written is readable from the survivors.
        res = await s.range(p, prefix_end(p))
        assert res.count == len(expected)
        assert (await s.status()).member_id != 0


async def test_kill_follower_writes_reads_watches_continue(cluster):
    async with EtcdStore(cluster.endpoints) as s:
        leader = await _leader_index(cluster, s)
    follower = (leader + 1) % 3
    await _write_read_watch_through_failure(cluster, follower, write_first=True)


async def test_kill_leader_reads_writes_watches_continue(cluster):
    """A write sent right after the leader dies is forwarded to it by the follower and
    times out ambiguously inside etcd ("request timed out, possibly due to previous
    leader failure", after ~7 s): that is etcd's behaviour, and the client rightly does
    not resend such a write.  So this test reads first, riding out the election."""
    async with EtcdStore(cluster.endpoints) as s:
        leader = await _leader_index(cluster, s)
    await _write_read_watch_through_failure(cluster, leader, write_first=False)


async def test_watch_resumes_from_next_revision_under_concurrent_writes(cluster):
    """A writer keeps writing through another client while the watch's member dies."""
    p = b"/resume/"
    async with EtcdStore(cluster.endpoints, reshuffle_interval=0) as watcher_client:
        # The watch's member is a follower, so the writer is not held up by an election.
        victim = (await _leader_index(cluster, watcher_client) + 1) % 3
        while watcher_client.info.endpoints[0] != cluster.endpoints[victim]:
            watcher_client._pool.failed(watcher_client._pool.current())
        survivors = [e for i, e in enumerate(cluster.endpoints) if i != victim]
        async with EtcdStore(survivors, reshuffle_interval=0) as writer:
            w = await watcher_client.watch(p, prefix_end(p), prev_kv=True)
            revs = []

            async def write(n: int):
                for i in range(n):
                    revs.append((await writer.put(p + b"%03d" % (i % 7), b"%d" % i)).revision)
                    await asyncio.sleep(0.005)

            task = asyncio.ensure_future(write(60))
            await asyncio.sleep(0.05)
            cluster.kill(victim)
            await asyncio.wait_for(task, 20)
            events = []
            while len(events) < 60:
                resp = await asyncio.wait_for(w.__anext__(), 10)
                events += resp.events
            await w.cancel()
    assert [e.kv.mod_revision for e in events] == revs
    # prev_kv survives the reconnect: each event's prev is that key's previous version.
    last = {}
    for e in events:
        assert (e.prev_kv.mod_revision if e.prev_kv else None) == last.get(e.kv.key)
        last[e.kv.key] = e.kv.mod_revision


async def test_hung_member_reads_fail_over_writes_are_not_resent(cluster):
    """A frozen member (SIGSTOP) keeps its connections open but never answers."""
    import signal

    p = b"/hung/"
    async with EtcdStore(cluster.endpoints, reshuffle_interval=0, request_timeout=1.0) as s:
        victim = (await _leader_index(cluster, s) + 1) % 3  # a follower: no election
        while s.info.endpoints[0] != cluster.endpoints[victim]:
            s._pool.failed(s._pool.current())
        r = (await s.put(p + b"k", b"v")).revision
        cluster.members[victim].proc.send_signal(signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            kv = await s.get(p + b"k")  # times out on the victim, then another answers
            assert kv.value == b"v" and kv.mod_revision == r
            assert 0.9 < time.monotonic() - t0 < 5
            assert s.info.endpoints[0] != cluster.endpoints[victim]

            # A write that timed out may have been applied: it is raised, not resent.
            while s.info.endpoints[0] != cluster.endpoints[victim]:
                s._pool.failed(s._pool.current())
            with pytest.raises(StoreUnavailableError):
                await s.put(p + b"k", b"maybe")
            assert s.info.endpoints[0] != cluster.endpoints[victim]  # moved on
            r2 = (await s.put(p + b"k", b"sure")).revision
            assert r2 > r and (await s.get(p + b"k")).value == b"sure"
        finally:
            cluster.members[victim].proc.send_signal(signal.SIGCONT)


async def test_all_members_down_is_unavailable_quickly(cluster):
    async with EtcdStore(cluster.endpoints, request_timeout=1.0) as s:
        await s.put(b"/down/k", b"v")
        for i in range(3):
            cluster.kill(i)
        t0 = time.monotonic()
        with pytest.raises(StoreUnavailableError):
            await s.get(b"/down/k")
        with pytest.raises(StoreUnavailableError):
            await s.put(b"/down/k", b"v2")
        with pytest.raises(StoreUnavailableError):
            await s.watch(b"/down/k", start_revision=1)
        assert time.monotonic() - t0 < 3 * 1.0 + 2


async def test_unreachable_endpoint_at_start_is_skipped(etcd_single):
    from etcd_procs import free_ports

    (dead_port,) = free_ports(1)
    endpoints = [f"127.0.0.1:{dead_port}"] + etcd_single.endpoints
    for _ in range(4):  # whichever comes first, start and a write succeed
        async with EtcdStore(endpoints) as s:
            await s.put(b"/skip/k", b"v")
            assert (await s.get(b"/skip/k")).value == b"v"


async def test_closed_client_refuses_calls(etcd_single):
    s = EtcdStore(etcd_single.endpoints)
    await s.start()
    await s.close()
    with pytest.raises(StoreUnavailableError):
        await s.get(b"/closed")
    await s.close()  # idempotent
