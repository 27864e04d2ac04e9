"""kubeplane's etcd-compatible gRPC endpoint, spoken to with raw etcd wire messages.

Most tests serve an ``EmbeddedStore`` in this process with ``EtcdServer`` and talk to it
over loopback gRPC with the etcd stubs, asserting the responses etcd 3.4/3.5 give
(checked against a real etcd 3.4.23 when the tests were written).  A few start the
``kubeplane store serve`` process (signals, bind errors), and one serves a client of a
real etcd (``EtcdStore``) to show the server works for any ``Store``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from etcd3aio._protobuf import kv_pb2, rpc_pb2, rpc_pb2_grpc

from etcd_procs import KubeplaneServer
from kubeplane.store.grpc_server import EMULATED_VERSION, EtcdServer
from kubeplane.store.mvcc import EmbeddedStore

pb = rpc_pb2
WAIT = 5.0  # seconds any single expected response may take
QUIET = 0.3  # seconds of silence that count as "nothing was sent"
PROGRESS_INTERVAL = 0.3  # the store's progress-notify interval in these tests


class Endpoint:
    """A served store plus stubs for every etcd service."""

    def __init__(self, store, server: EtcdServer, channel: grpc.aio.Channel):
        self.store = store
        self.server = server
        self.channel = channel
        self.kv = rpc_pb2_grpc.KVStub(channel)
        self.watch = rpc_pb2_grpc.WatchStub(channel)
        self.lease = rpc_pb2_grpc.LeaseStub(channel)
        self.maintenance = rpc_pb2_grpc.MaintenanceStub(channel)
        self.cluster = rpc_pb2_grpc.ClusterStub(channel)

    async def put(self, key: bytes, value: bytes = b"v", **kw) -> pb.PutResponse:
        return await self.kv.Put(pb.PutRequest(key=key, value=value, **kw), timeout=WAIT)

    async def get(self, key: bytes, **kw) -> pb.RangeResponse:
        return await self.kv.Range(pb.RangeRequest(key=key, **kw), timeout=WAIT)

    async def revision(self) -> int:
        return (await self.get(b"\0")).header.revision


async def open_endpoint(data_dir: Path, **store_settings):
    store = EmbeddedStore(str(data_dir), progress_notify_interval=PROGRESS_INTERVAL, **store_settings)
    await store.start()
    server = EtcdServer(store, name="unit")
    try:
        await server.start("127.0.0.1:0")
    except BaseException:
        await store.close()
        raise
    return Endpoint(store, server, grpc.aio.insecure_channel(server.endpoint))


async def close_endpoint(ep: Endpoint) -> None:
    await ep.channel.close()
    await ep.server.stop(grace=1.0)
    await ep.store.close()


@pytest.fixture
async def ep(tmp_path: Path):
    endpoint = await open_endpoint(tmp_path / "data")
    try:
        yield endpoint
    finally:
        await close_endpoint(endpoint)


async def rpc_error(awaitable) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await awaitable
    return info.value


async def assert_error(awaitable, code: grpc.StatusCode, details: str) -> None:
    err = await rpc_error(awaitable)
    assert (err.code(), err.details()) == (code, details)


class WatchClient:
    """One Watch stream: ``send`` requests, ``recv`` responses with a deadline."""

    def __init__(self, ep: Endpoint, *, reading: bool = True):
        self._requests: asyncio.Queue = asyncio.Queue()
        self._responses: asyncio.Queue = asyncio.Queue()
        self.call = ep.watch.Watch(self._request_stream())
        self._reader: asyncio.Task | None = None
        if reading:
            self.start_reading()

    def start_reading(self) -> None:
        self._reader = asyncio.create_task(self._read())

    async def _request_stream(self):
        while True:
            req = await self._requests.get()
            if req is None:
                return
            yield req

    async def _read(self) -> None:
        try:
            async for resp in self.call:
                await self._responses.put(resp)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            await self._responses.put(exc)

    def send(self, req: pb.WatchRequest | None) -> None:
        """``None`` half-closes the request side."""
        self._requests.put_nowait(req)

    def create(self, key: bytes, **kw) -> None:
        self.send(pb.WatchRequest(create_request=pb.WatchCreateRequest(key=key, **kw)))

    def cancel(self, watch_id: int) -> None:
        self.send(pb.WatchRequest(cancel_request=pb.WatchCancelRequest(watch_id=watch_id)))

    def progress(self) -> None:
        self.send(pb.WatchRequest(progress_request=pb.WatchProgressRequest()))

    async def recv(self, timeout: float = WAIT) -> pb.WatchResponse:
        item = await asyncio.wait_for(self._responses.get(), timeout)
        if isinstance(item, BaseException):
            raise item
        return item

    async def created(self, key: bytes, **kw) -> int:
        self.create(key, **kw)
        resp = await self.recv()
        assert resp.created and not resp.canceled, resp
        return resp.watch_id

    async def assert_quiet(self, timeout: float = QUIET) -> None:
        with pytest.raises(asyncio.TimeoutError):
            resp = await self.recv(timeout)
            pytest.fail(f"unexpected response {resp}")

    async def close(self) -> None:
        self.call.cancel()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)


@pytest.fixture
async def watch_client(ep: Endpoint):
    clients: list[WatchClient] = []

    def make() -> WatchClient:
        clients.append(WatchClient(ep))
        return clients[-1]

    try:
        yield make
    finally:
        for c in clients:
            await c.close()


def events_of(resp: pb.WatchResponse) -> list[tuple[str, bytes, bytes]]:
    return [(kv_pb2.Event.EventType.Name(e.type), e.kv.key, e.kv.value) for e in resp.events]


# --- headers, identity ----------------------------------------------------------------


async def test_headers_identify_one_member_consistently(ep: Endpoint):
    put = await ep.put(b"h/a")
    rng = await ep.get(b"h/a")
    txn = await ep.kv.Txn(pb.TxnRequest(success=[pb.RequestOp(request_range=pb.RangeRequest(key=b"h/a"))]))
    grant = await ep.lease.LeaseGrant(pb.LeaseGrantRequest(TTL=30))
    status = await ep.maintenance.Status(pb.StatusRequest())
    members = await ep.cluster.MemberList(pb.MemberListRequest())
    headers = [put.header, rng.header, txn.header, grant.header, status.header, members.header]
    ids = {(h.cluster_id, h.member_id, h.raft_term) for h in headers}
    assert len(ids) == 1
    cluster_id, member_id, raft_term = ids.pop()
    assert cluster_id and member_id and raft_term
    assert put.header.revision == rng.header.revision == txn.header.revision == status.header.revision
    assert status.leader == member_id
    assert status.version == EMULATED_VERSION == "3.5.17"
    assert status.raftIndex == status.raftAppliedIndex == put.header.revision
    assert status.dbSize > 0 and 0 < status.dbSizeInUse <= status.dbSize
    assert [(m.ID, m.name, list(m.clientURLs)) for m in members.members] == [
        (member_id, "unit", [f"http://{ep.server.endpoint}"])
    ]


# --- KV ---------------------------------------------------------------------------------


async def test_range_options(ep: Endpoint):
    revs = {}
    for key, value in [(b"r/a", b"3"), (b"r/b", b"1"), (b"r/c", b"2"), (b"r/d", b"0")]:
        revs[key] = (await ep.put(key, value)).header.revision
    second = (await ep.put(b"r/a", b"9")).header.revision  # r/a: version 2
    await ep.put(b"s/outside", b"x")

    def keys(resp):
        return [kv.key for kv in resp.kvs]

    full = await ep.get(b"r/", range_end=b"r0")
    assert keys(full) == [b"r/a", b"r/b", b"r/c", b"r/d"] and full.count == 4 and not full.more
    limited = await ep.get(b"r/", range_end=b"r0", limit=2)
    assert keys(limited) == [b"r/a", b"r/b"] and limited.more and limited.count == 4
    assert keys(await ep.get(b"r/", range_end=b"r0", limit=-5)) == keys(full)  # etcd: <= 0 is no limit
    desc = await ep.get(b"r/", range_end=b"r0", sort_order=pb.RangeRequest.DESCEND)
    assert keys(desc) == [b"r/d", b"r/c", b"r/b", b"r/a"]
    by_value = await ep.get(b"r/", range_end=b"r0", sort_target=pb.RangeRequest.VALUE)  # order NONE: ascending
    assert [kv.value for kv in by_value.kvs] == [b"0", b"1", b"2", b"9"]
    by_version = await ep.get(
        b"r/", range_end=b"r0", sort_target=pb.RangeRequest.VERSION, sort_order=pb.RangeRequest.DESCEND
    )
    assert by_version.kvs[0].key == b"r/a" and by_version.kvs[0].version == 2
    old = await ep.get(b"r/a", revision=revs[b"r/a"])
    assert [(kv.value, kv.version) for kv in old.kvs] == [(b"3", 1)]
    assert old.header.revision == second + 1  # the header carries the current revision
    count = await ep.get(b"r/", range_end=b"r0", count_only=True)
    assert count.count == 4 and not count.kvs
    keys_only = await ep.get(b"r/", range_end=b"r0", keys_only=True)
    assert keys(keys_only) == keys(full) and all(kv.value == b"" for kv in keys_only.kvs)
    newer = await ep.get(b"r/", range_end=b"r0", min_mod_revision=revs[b"r/c"])
    assert keys(newer) == [b"r/a", b"r/c", b"r/d"]
    created_early = await ep.get(b"r/", range_end=b"r0", max_create_revision=revs[b"r/b"])
    assert keys(created_early) == [b"r/a", b"r/b"]
    from_key = await ep.get(b"r/c", range_end=b"\0")
    assert keys(from_key) == [b"r/c", b"r/d", b"s/outside"]
    kv = (await ep.get(b"r/a")).kvs[0]
    assert (kv.create_revision, kv.mod_revision, kv.version, kv.lease) == (revs[b"r/a"], second, 2, 0)


async def test_range_errors(ep: Endpoint):
    await ep.put(b"e/a")
    rev = await ep.revision()
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    await assert_error(ep.get(b""), invalid, "etcdserver: key is not provided")
    await assert_error(ep.get(b"e/a", sort_target=42), invalid, "etcdserver: invalid sort option")
    await assert_error(
        ep.get(b"e/a", revision=rev + 10), grpc.StatusCode.OUT_OF_RANGE,
        "etcdserver: mvcc: required revision is a future revision",
    )
    # etcd ignores an unknown sort order; a negative revision reads the current one
    assert [kv.key for kv in (await ep.get(b"e/a", sort_order=9)).kvs] == [b"e/a"]
    assert (await ep.get(b"e/a", revision=-3)).header.revision == rev


async def test_put_options(ep: Endpoint):
    first = await ep.put(b"p/k", b"one")
    assert not first.HasField("prev_kv")
    second = await ep.put(b"p/k", b"two", prev_kv=True)
    assert second.header.revision == first.header.revision + 1
    assert (second.prev_kv.key, second.prev_kv.value, second.prev_kv.version) == (b"p/k", b"one", 1)
    lease = await ep.lease.LeaseGrant(pb.LeaseGrantRequest(TTL=60))
    await ep.put(b"p/k", b"three", lease=lease.ID)
    kept = await ep.put(b"p/k", b"", ignore_value=True, prev_kv=True)  # keeps the value
    assert kept.prev_kv.value == b"three"
    kv = (await ep.get(b"p/k")).kvs[0]
    assert (kv.value, kv.lease, kv.version) == (b"three", 0, 4)  # ignore_value alone resets the lease
    await ep.put(b"p/k", b"four", lease=lease.ID)
    await ep.put(b"p/k", b"five", ignore_lease=True)  # keeps the lease
    kv = (await ep.get(b"p/k")).kvs[0]
    assert (kv.value, kv.lease) == (b"five", lease.ID)

    invalid = grpc.StatusCode.INVALID_ARGUMENT
    await assert_error(ep.put(b""), invalid, "etcdserver: key is not provided")
    await assert_error(ep.put(b"p/k", b"x", ignore_value=True), invalid, "etcdserver: value is provided")
    await assert_error(ep.put(b"p/k", lease=lease.ID, ignore_lease=True), invalid, "etcdserver: lease is provided")
    await assert_error(ep.put(b"p/missing", b"", ignore_value=True), invalid, "etcdserver: key not found")
    await assert_error(
        ep.put(b"p/k", lease=12345), grpc.StatusCode.NOT_FOUND, "etcdserver: requested lease not found"
    )


async def test_delete_range(ep: Endpoint):
    for key in (b"d/a", b"d/b", b"d/c"):
        await ep.put(key, key)
    rev = await ep.revision()
    nothing = await ep.kv.DeleteRange(pb.DeleteRangeRequest(key=b"d/zz", prev_kv=True))
    assert (nothing.deleted, nothing.header.revision, list(nothing.prev_kvs)) == (0, rev, [])
    two = await ep.kv.DeleteRange(pb.DeleteRangeRequest(key=b"d/a", range_end=b"d/c", prev_kv=True))
    assert two.deleted == 2 and two.header.revision == rev + 1
    assert [(kv.key, kv.value) for kv in two.prev_kvs] == [(b"d/a", b"d/a"), (b"d/b", b"d/b")]
    one = await ep.kv.DeleteRange(pb.DeleteRangeRequest(key=b"d/c"))
    assert one.deleted == 1 and not one.prev_kvs
    await assert_error(
        ep.kv.DeleteRange(pb.DeleteRangeRequest(key=b"")),
        grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: key is not provided",
    )


def op_range(key: bytes, **kw) -> pb.RequestOp:
    return pb.RequestOp(request_range=pb.RangeRequest(key=key, **kw))


def op_put(key: bytes, value: bytes = b"v", **kw) -> pb.RequestOp:
    return pb.RequestOp(request_put=pb.PutRequest(key=key, value=value, **kw))


def op_delete(key: bytes, **kw) -> pb.RequestOp:
    return pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=key, **kw))


def op_txn(**kw) -> pb.RequestOp:
    return pb.RequestOp(request_txn=pb.TxnRequest(**kw))


def cmp_mod(key: bytes, result, rev: int, **kw) -> pb.Compare:
    return pb.Compare(key=key, target=pb.Compare.MOD, result=result, mod_revision=rev, **kw)


async def test_txn_branches_and_nesting(ep: Endpoint):
    a = (await ep.put(b"t/a", b"1")).header.revision
    await ep.put(b"t/b", b"2")
    rev = await ep.revision()
    # Kubernetes' update: If(mod == expected).Then(Put).Else(Get)
    ok = await ep.kv.Txn(pb.TxnRequest(
        compare=[cmp_mod(b"t/a", pb.Compare.EQUAL, a)],
        success=[op_put(b"t/a", b"new", prev_kv=True)],
        failure=[op_range(b"t/a")],
    ))
    assert ok.succeeded and ok.header.revision == rev + 1
    assert ok.responses[0].response_put.prev_kv.value == b"1"
    assert ok.responses[0].response_put.header.revision == rev + 1
    stale = await ep.kv.Txn(pb.TxnRequest(
        compare=[cmp_mod(b"t/a", pb.Compare.EQUAL, a)],
        success=[op_put(b"t/a", b"lost")],
        failure=[op_range(b"t/a")],
    ))
    assert not stale.succeeded and stale.header.revision == rev + 1
    assert [kv.value for kv in stale.responses[0].response_range.kvs] == [b"new"]
    # a compare over a range holds for every key in it; nested txns run their own branch
    nested = await ep.kv.Txn(pb.TxnRequest(
        compare=[pb.Compare(key=b"t/", range_end=b"t0", target=pb.Compare.CREATE,
                            result=pb.Compare.GREATER, create_revision=0)],
        success=[
            op_range(b"t/", range_end=b"t0", count_only=True),
            op_txn(compare=[pb.Compare(key=b"t/b", target=pb.Compare.VALUE, result=pb.Compare.EQUAL, value=b"2")],
                   success=[op_put(b"t/c", b"3"), op_delete(b"t/b", prev_kv=True)],
                   failure=[op_put(b"t/never")]),
        ],
    ))
    assert nested.succeeded and nested.header.revision == rev + 2
    assert nested.responses[0].response_range.count == 2
    inner = nested.responses[1].response_txn
    assert inner.succeeded and len(inner.responses) == 2
    assert inner.responses[1].response_delete_range.deleted == 1
    assert inner.responses[1].response_delete_range.prev_kvs[0].value == b"2"
    keys = [kv.key for kv in (await ep.get(b"t/", range_end=b"t0")).kvs]
    assert keys == [b"t/a", b"t/c"]
    # a value compare on a missing key is false
    missing = await ep.kv.Txn(pb.TxnRequest(
        compare=[pb.Compare(key=b"t/none", target=pb.Compare.VALUE, result=pb.Compare.NOT_EQUAL, value=b"x")],
    ))
    assert not missing.succeeded


async def test_txn_operands_and_unknown_enums_as_etcd(ep: Endpoint):
    """etcd reads a compare's operand only from the oneof field matching its target,
    treats an unknown result as true and an unknown target as comparing 0 with 0
    (observed on etcd 3.4.23: both unknown-enum txns below succeed)."""
    await ep.put(b"u/a")

    async def succeeded(*compares: pb.Compare) -> bool:
        return (await ep.kv.Txn(pb.TxnRequest(compare=list(compares)))).succeeded

    # target MOD with the operand in `version`: mod_revision is compared with 0
    assert await succeeded(pb.Compare(key=b"u/a", target=pb.Compare.MOD, result=pb.Compare.GREATER, version=10**6))
    assert not await succeeded(pb.Compare(key=b"u/a", target=pb.Compare.MOD, result=pb.Compare.EQUAL, version=2))
    assert await succeeded(pb.Compare(key=b"u/a", target=pb.Compare.MOD, result=9))
    assert await succeeded(pb.Compare(key=b"u/a", target=9, result=pb.Compare.EQUAL))
    assert not await succeeded(pb.Compare(key=b"u/a", target=9, result=pb.Compare.GREATER))
    assert not await succeeded(pb.Compare(key=b"u/none", target=pb.Compare.VALUE, result=9))
    assert await succeeded(pb.Compare(key=b"u/a", target=pb.Compare.VALUE, result=9))


async def test_txn_errors(ep: Endpoint):
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    rev = await ep.revision()
    await assert_error(ep.kv.Txn(pb.TxnRequest(success=[pb.RequestOp()])), invalid, "etcdserver: key not found")
    await assert_error(
        ep.kv.Txn(pb.TxnRequest(success=[op_put(f"x/{i}".encode()) for i in range(129)])),
        invalid, "etcdserver: too many operations in txn request",
    )
    await assert_error(
        ep.kv.Txn(pb.TxnRequest(compare=[cmp_mod(b"", pb.Compare.EQUAL, 0)])),
        invalid, "etcdserver: key is not provided",
    )
    await assert_error(
        ep.kv.Txn(pb.TxnRequest(failure=[op_txn(success=[op_range(b"")])])),
        invalid, "etcdserver: key is not provided",
    )
    await assert_error(
        ep.kv.Txn(pb.TxnRequest(success=[op_put(b"x/a"), op_put(b"x/a")])),
        invalid, "etcdserver: duplicate key given in txn request",
    )
    await assert_error(
        ep.kv.Txn(pb.TxnRequest(success=[op_put(b"x/a"), op_put(b"x/b", ignore_value=True, value=b"1")])),
        invalid, "etcdserver: value is provided",
    )
    assert await ep.revision() == rev  # nothing was half applied
    assert (await ep.get(b"x/", range_end=b"x0", count_only=True)).count == 0
    full = await ep.kv.Txn(pb.TxnRequest(success=[op_put(f"x/{i}".encode()) for i in range(128)]))
    assert full.succeeded and full.header.revision == rev + 1


async def test_compact(ep: Endpoint):
    first = (await ep.put(b"c/k", b"1")).header.revision
    for value in (b"2", b"3"):
        await ep.put(b"c/k", value)
    current = await ep.revision()
    resp = await ep.kv.Compact(pb.CompactionRequest(revision=current - 1, physical=True))
    assert resp.header.revision == current
    out_of_range = grpc.StatusCode.OUT_OF_RANGE
    compacted = "etcdserver: mvcc: required revision has been compacted"
    await assert_error(ep.get(b"c/k", revision=first), out_of_range, compacted)
    assert [kv.value for kv in (await ep.get(b"c/k", revision=current - 1)).kvs] == [b"2"]
    await assert_error(ep.kv.Compact(pb.CompactionRequest(revision=current - 1)), out_of_range, compacted)
    await assert_error(
        ep.kv.Compact(pb.CompactionRequest(revision=current + 5)),
        out_of_range, "etcdserver: mvcc: required revision is a future revision",
    )


async def test_request_size_limits(ep: Endpoint):
    """gRPC accepts max_request_bytes + 512 KiB, so a value a bit over the limit gets
    etcd's own error; far over it, gRPC refuses the message (as on etcd)."""
    await assert_error(
        ep.put(b"big", b"x" * (1572864 + 1024)), grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: request is too large"
    )
    err = await rpc_error(ep.put(b"big", b"x" * (1572864 + 600 * 1024)))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (await ep.put(b"big", b"x" * (1024 * 1024))).header.revision > 0  # 1 MiB is fine
    assert len((await ep.get(b"big")).kvs[0].value) == 1024 * 1024


async def test_malformed_and_unknown_requests_do_not_hurt(ep: Endpoint):
    raw = ep.channel.unary_unary("/etcdserverpb.KV/Range")  # bytes in, bytes out
    err = await rpc_error(raw(b"\xff\xff\xff\xff garbage", timeout=WAIT))
    assert err.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.INVALID_ARGUMENT)
    unknown = ep.channel.unary_unary("/etcdserverpb.KV/NoSuchMethod")
    assert (await rpc_error(unknown(b"", timeout=WAIT))).code() == grpc.StatusCode.UNIMPLEMENTED
    auth = ep.channel.unary_unary("/etcdserverpb.Auth/AuthStatus")
    assert (await rpc_error(auth(b"", timeout=WAIT))).code() == grpc.StatusCode.UNIMPLEMENTED
    for method in ("Hash", "HashKV", "MoveLeader"):
        call = ep.channel.unary_unary(f"/etcdserverpb.Maintenance/{method}")
        assert (await rpc_error(call(b"", timeout=WAIT))).code() == grpc.StatusCode.UNIMPLEMENTED
    # a garbage stream message ends that stream only
    for method in ("/etcdserverpb.Watch/Watch", "/etcdserverpb.Lease/LeaseKeepAlive"):
        call = ep.channel.stream_stream(method)(iter([b"\x0a\xff\xff"]), timeout=WAIT)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in call:
                pass
        assert info.value.code() == grpc.StatusCode.INTERNAL
        assert info.value.details().startswith("grpc: error unmarshalling request")
    assert (await ep.put(b"still/alive")).header.revision > 0


# --- Watch ----------------------------------------------------------------------------


async def test_watch_create_ids_cancel_and_errors(ep: Endpoint, watch_client):
    w = watch_client()
    rev = await ep.revision()
    w.create(b"w/a")
    created = await w.recv()
    assert (created.watch_id, created.created, created.canceled, created.header.revision) == (0, True, False, rev)
    assert created.header.member_id == ep.server.ident.member_id
    assert await w.created(b"w/a", watch_id=7) == 7
    assert await w.created(b"w/b") == 1  # server-chosen ids count up from 0
    w.create(b"w/a", watch_id=7)
    dup = await w.recv()
    assert (dup.watch_id, dup.created, dup.canceled, dup.cancel_reason) == (
        -1, True, True, "mvcc: duplicate watch ID provided on the WatchStream")
    w.create(b"w/b", range_end=b"w/a")
    empty = await w.recv()
    assert (empty.watch_id, empty.created, empty.canceled, empty.cancel_reason) == (
        -1, True, True, "mvcc: watcher range is empty")
    w.cancel(99)  # unknown id: no answer
    w.send(pb.WatchRequest())  # no request at all: ignored
    await w.assert_quiet()
    w.cancel(7)
    canceled = await w.recv()
    assert (canceled.watch_id, canceled.canceled, canceled.created) == (7, True, False)
    put = await ep.put(b"w/a", b"1")
    got = await w.recv()
    assert (got.watch_id, got.header.revision, events_of(got)) == (0, put.header.revision, [("PUT", b"w/a", b"1")])
    await w.assert_quiet()  # watch 7 is gone, watch 1 is on another key


async def test_watch_events_prev_kv_filters_and_ranges(ep: Endpoint, watch_client):
    w = watch_client()
    all_id = await w.created(b"f/", range_end=b"f0", prev_kv=True)
    noput_id = await w.created(b"f/", range_end=b"f0", filters=[pb.WatchCreateRequest.NOPUT])
    from_id = await w.created(b"f/m", range_end=b"\0")  # every key >= f/m
    await ep.put(b"f/a", b"1")
    await ep.put(b"f/a", b"2")
    await ep.put(b"f/z", b"3")
    await ep.kv.DeleteRange(pb.DeleteRangeRequest(key=b"f/a"))
    seen: dict[int, list] = {all_id: [], noput_id: [], from_id: []}
    prevs = []
    deadline = time.monotonic() + WAIT
    while sum(map(len, seen.values())) < 4 + 1 + 1 and time.monotonic() < deadline:
        resp = await w.recv()
        seen[resp.watch_id] += events_of(resp)
        if resp.watch_id == all_id:
            prevs += [e.prev_kv.value if e.HasField("prev_kv") else None for e in resp.events]
    assert seen[all_id] == [("PUT", b"f/a", b"1"), ("PUT", b"f/a", b"2"), ("PUT", b"f/z", b"3"), ("DELETE", b"f/a", b"")]
    assert prevs == [None, b"1", None, b"2"]
    assert seen[noput_id] == [("DELETE", b"f/a", b"")]
    assert seen[from_id] == [("PUT", b"f/z", b"3")]
    await w.assert_quiet()


async def test_watch_history_and_compacted_start(ep: Endpoint, watch_client):
    first = (await ep.put(b"h/k", b"1")).header.revision
    await ep.put(b"h/k", b"2")
    await ep.put(b"h/k", b"3")
    w = watch_client()
    wid = await w.created(b"h/k", start_revision=first + 1, prev_kv=True)
    resp = await w.recv()
    assert resp.watch_id == wid and events_of(resp) == [("PUT", b"h/k", b"2"), ("PUT", b"h/k", b"3")]
    assert resp.events[0].prev_kv.value == b"1"
    current = await ep.revision()
    await ep.kv.Compact(pb.CompactionRequest(revision=current))
    w2 = watch_client()
    w2.create(b"h/k", start_revision=first)
    created = await w2.recv()
    assert created.created and not created.canceled
    gone = await w2.recv()
    assert (gone.watch_id, gone.canceled, gone.compact_revision, gone.cancel_reason) == (
        created.watch_id, True, current, "")


async def test_progress_request_without_watchers(ep: Endpoint, watch_client):
    await ep.put(b"pr/a")
    w = watch_client()
    w.progress()
    resp = await w.recv()
    assert (resp.watch_id, resp.created, resp.canceled, list(resp.events)) == (-1, False, False, [])
    assert resp.header.revision == await ep.revision()


async def test_progress_requests_are_ordered_with_events(ep: Endpoint, watch_client):
    """A progress response at revision T leaves only after every watcher of the stream
    delivered all its events up to T, and header revisions never go backwards, even
    with writes racing the requests."""
    w = watch_client()
    hot = await w.created(b"o/hot/", range_end=b"o/hot0")
    cold = await w.created(b"o/cold/", range_end=b"o/cold0")
    await w.created(b"o/idle")
    stop = asyncio.Event()

    async def writer(prefix: bytes, pause: float) -> None:
        i = 0
        while not stop.is_set():  # straight into the store: many events per progress round trip
            await ep.store.put(prefix + str(i % 7).encode(), str(i).encode())
            i += 1
            await asyncio.sleep(pause)

    writers = [asyncio.create_task(writer(b"o/hot/", 0)) for _ in range(8)]
    writers.append(asyncio.create_task(writer(b"o/cold/", 0.02)))
    received: list[pb.WatchResponse] = []

    async def requester() -> None:
        for _ in range(150):
            w.progress()
            await asyncio.sleep(0.002)

    requests = asyncio.create_task(requester())
    try:
        while not requests.done():
            with contextlib.suppress(asyncio.TimeoutError):
                received.append(await w.recv(0.01))
    finally:
        stop.set()
        await asyncio.gather(*writers, requests)
    final = await ep.revision()
    w.progress()  # a last answer at or after the final revision: everything is in by then
    while not (received and received[-1].watch_id == -1 and received[-1].header.revision >= final):
        received.append(await w.recv())

    revisions = [r.header.revision for r in received]
    assert revisions == sorted(revisions), "header revisions went backwards"
    progress = [i for i, r in enumerate(received) if r.watch_id == -1]
    assert len(progress) >= 2
    all_events = {hot: [], cold: []}
    for r in received:
        if r.watch_id in all_events:
            all_events[r.watch_id] += [e.kv.mod_revision for e in r.events]
    for wid, mods in all_events.items():
        assert mods == sorted(mods) and len(set(mods)) == len(mods)
    for i in progress:
        t = received[i].header.revision
        for wid in (hot, cold):
            before = [e.kv.mod_revision for r in received[:i] if r.watch_id == wid for e in r.events]
            assert [m for m in all_events[wid] if m <= t] == [m for m in before if m <= t], (wid, t)


async def test_progress_waits_for_a_blocked_watcher(ep: Endpoint, monkeypatch):
    """A watcher stuck behind a client that does not read is lagging: the progress
    answer must wait for its events, not overtake them."""
    from kubeplane.store.grpc import watch as watch_module

    monkeypatch.setattr(watch_module, "OUTPUT_QUEUE", 2)
    w = WatchClient(ep, reading=False)
    w.create(b"bw/", range_end=b"bw0")
    await asyncio.sleep(0.1)
    big = b"x" * 1024 * 1024
    for i in range(16):  # far more than the stream's queue and the HTTP/2 windows hold
        await ep.store.put(b"bw/%d" % i, big)
    target = await ep.revision()
    w.progress()
    await asyncio.sleep(0.1)
    for i in range(5):
        await ep.store.put(b"bw/late%d" % i, b"v")
    w.start_reading()
    try:
        received = [await w.recv()]
        assert received[0].created
        while received[-1].watch_id != -1:
            received.append(await w.recv())
        assert received[-1].header.revision == target
        mods = [e.kv.mod_revision for r in received for e in r.events]
        assert mods == list(range(target - 15, target + 1))
        revisions = [r.header.revision for r in received]
        assert revisions == sorted(revisions)
    finally:
        await w.close()


async def test_progress_notify_only_for_watches_that_ask(ep: Endpoint, watch_client):
    w = watch_client()
    quiet = await w.created(b"pn/quiet")
    loud = await w.created(b"pn/loud", progress_notify=True)
    rev = await ep.revision()
    resp = await w.recv(WAIT)
    assert (resp.watch_id, list(resp.events), resp.header.revision) == (loud, [], rev)
    deadline = time.monotonic() + 3 * PROGRESS_INTERVAL
    while time.monotonic() < deadline:
        try:
            resp = await w.recv(max(0.01, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            break
        assert resp.watch_id == loud != quiet and not resp.events


async def test_watch_survives_client_half_close(ep: Endpoint, watch_client):
    w = watch_client()
    wid = await w.created(b"hc/k")
    w.send(None)
    await asyncio.sleep(0.1)
    await ep.put(b"hc/k", b"after")
    resp = await w.recv()
    assert resp.watch_id == wid and events_of(resp) == [("PUT", b"hc/k", b"after")]


# --- Lease ------------------------------------------------------------------------------


async def test_lease_lifecycle(ep: Endpoint):
    grant = await ep.lease.LeaseGrant(pb.LeaseGrantRequest(TTL=60))
    assert grant.ID > 0 and grant.TTL == 60 and grant.error == ""
    chosen = await ep.lease.LeaseGrant(pb.LeaseGrantRequest(TTL=30, ID=4242))
    assert chosen.ID == 4242
    await assert_error(
        ep.lease.LeaseGrant(pb.LeaseGrantRequest(TTL=30, ID=4242)),
        grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: lease already exists",
    )
    await ep.put(b"l/a", lease=grant.ID)
    await ep.put(b"l/b", lease=grant.ID)
    ttl = await ep.lease.LeaseTimeToLive(pb.LeaseTimeToLiveRequest(ID=grant.ID, keys=True))
    assert (ttl.ID, ttl.grantedTTL, sorted(ttl.keys)) == (grant.ID, 60, [b"l/a", b"l/b"])
    assert 55 <= ttl.TTL <= 60
    no_keys = await ep.lease.LeaseTimeToLive(pb.LeaseTimeToLiveRequest(ID=grant.ID))
    assert list(no_keys.keys) == []
    missing = await ep.lease.LeaseTimeToLive(pb.LeaseTimeToLiveRequest(ID=777, keys=True))
    assert (missing.ID, missing.TTL, missing.grantedTTL) == (777, -1, 0)
    leases = await ep.lease.LeaseLeases(pb.LeaseLeasesRequest())
    assert sorted(s.ID for s in leases.leases) == sorted([grant.ID, 4242])

    async def keepalives():
        yield pb.LeaseKeepAliveRequest(ID=grant.ID)
        yield pb.LeaseKeepAliveRequest(ID=999)
        yield pb.LeaseKeepAliveRequest(ID=4242)

    answers = [(r.ID, r.TTL) async for r in ep.lease.LeaseKeepAlive(keepalives(), timeout=WAIT)]
    assert answers == [(grant.ID, 60), (999, 0), (4242, 30)]

    rev = await ep.revision()
    revoked = await ep.lease.LeaseRevoke(pb.LeaseRevokeRequest(ID=grant.ID))
    assert revoked.header.revision == rev + 1  # both keys deleted in one revision
    assert (await ep.get(b"l/", range_end=b"l0", count_only=True)).count == 0
    await assert_error(
        ep.lease.LeaseRevoke(pb.LeaseRevokeRequest(ID=grant.ID)),
        grpc.StatusCode.NOT_FOUND, "etcdserver: requested lease not found",
    )


# --- Maintenance --------------------------------------------------------------------


async def test_snapshot_framing(ep: Endpoint):
    for i in range(300):
        await ep.put(f"snap/{i:04d}".encode(), b"v" * 100)
    blobs = [r async for r in ep.maintenance.Snapshot(pb.SnapshotRequest(), timeout=WAIT)]
    data, checksum = blobs[:-1], blobs[-1]
    body = b"".join(b.blob for b in data)
    assert len(body) % 512 == 0 and len(body) > 300 * 100
    remaining = [b.remaining_bytes for b in data]
    assert remaining == sorted(remaining, reverse=True) and remaining[-1] == 0
    assert all(b.remaining_bytes == len(body) - sum(len(x.blob) for x in data[: i + 1]) for i, b in enumerate(data))
    assert checksum.remaining_bytes == 0 and checksum.blob == hashlib.sha256(body).digest()
    stored = b"".join([chunk async for chunk in ep.store.snapshot()])
    assert body.startswith(stored) and body[len(stored):] == b"\0" * (len(body) - len(stored))


async def test_defragment_and_status(ep: Endpoint):
    await ep.put(b"df/a", b"x" * 10000)
    await ep.kv.DeleteRange(pb.DeleteRangeRequest(key=b"df/a"))
    await ep.kv.Compact(pb.CompactionRequest(revision=await ep.revision()))
    resp = await ep.maintenance.Defragment(pb.DefragmentRequest())
    assert resp.header.revision == await ep.revision()
    status = await ep.maintenance.Status(pb.StatusRequest())
    stored = await ep.store.status()
    assert (status.dbSize, status.dbSizeInUse) == (stored.db_size, stored.db_size_in_use)
    assert list(status.errors) == []


async def test_nospace_alarm(tmp_path: Path):
    ep = await open_endpoint(tmp_path / "small", quota_bytes=256 * 1024)
    try:
        member = ep.server.ident.member_id
        with pytest.raises(grpc.aio.AioRpcError) as info:
            for i in range(20):
                await ep.put(f"big/{i}".encode(), b"x" * (64 * 1024))
        assert (info.value.code(), info.value.details()) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED, "etcdserver: mvcc: database space exceeded")
        alarms = await ep.maintenance.Alarm(pb.AlarmRequest(action=pb.AlarmRequest.GET))
        assert [(a.memberID, a.alarm) for a in alarms.alarms] == [(member, pb.NOSPACE)]
        status = await ep.maintenance.Status(pb.StatusRequest())
        assert list(status.errors) == [f"memberID:{member} alarm:NOSPACE "]
        assert [kv.key for kv in (await ep.get(b"big/0", keys_only=True)).kvs] == [b"big/0"]  # reads still work
        wrong = await ep.maintenance.Alarm(
            pb.AlarmRequest(action=pb.AlarmRequest.DEACTIVATE, memberID=member + 1, alarm=pb.NOSPACE))
        assert list(wrong.alarms) == []
        await ep.kv.DeleteRange(pb.DeleteRangeRequest(key=b"big/", range_end=b"big0"))
        await ep.kv.Compact(pb.CompactionRequest(revision=await ep.revision(), physical=True))
        await ep.maintenance.Defragment(pb.DefragmentRequest())
        disarmed = await ep.maintenance.Alarm(
            pb.AlarmRequest(action=pb.AlarmRequest.DEACTIVATE, memberID=member, alarm=pb.NOSPACE))
        assert [(a.memberID, a.alarm) for a in disarmed.alarms] == [(member, pb.NOSPACE)]
        assert list((await ep.maintenance.Alarm(pb.AlarmRequest(action=pb.AlarmRequest.GET))).alarms) == []
        assert (await ep.put(b"after", b"ok")).header.revision > 0
        err = await rpc_error(ep.maintenance.Alarm(
            pb.AlarmRequest(action=pb.AlarmRequest.ACTIVATE, memberID=member, alarm=pb.NOSPACE)))
        assert err.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await close_endpoint(ep)


# --- shutdown, the process ----------------------------------------------------------


async def test_stop_ends_open_streams_with_unavailable(tmp_path: Path):
    ep = await open_endpoint(tmp_path / "data")
    try:
        w = WatchClient(ep)
        await w.created(b"s/k")
        grant = await ep.lease.LeaseGrant(pb.LeaseGrantRequest(TTL=60))
        requests: asyncio.Queue = asyncio.Queue()

        async def keepalives():
            while (item := await requests.get()) is not None:
                yield item

        keepalive = ep.lease.LeaseKeepAlive(keepalives())
        requests.put_nowait(pb.LeaseKeepAliveRequest(ID=grant.ID))
        assert (await asyncio.wait_for(keepalive.read(), WAIT)).TTL == 60
        started = time.monotonic()
        await ep.server.stop(grace=3.0)
        assert time.monotonic() - started < 2.5  # open streams do not hold the shutdown
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await w.recv()
        assert (info.value.code(), info.value.details()) == (
            grpc.StatusCode.UNAVAILABLE, "etcdserver: server stopped")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await asyncio.wait_for(keepalive.read(), WAIT)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        await w.close()
    finally:
        await close_endpoint(ep)


def _kv_stub(endpoint: str):
    channel = grpc.insecure_channel(endpoint)
    return channel, rpc_pb2_grpc.KVStub(channel)


def test_sigterm_and_sigint_close_the_store_durably(tmp_path: Path):
    server = KubeplaneServer(tmp_path).start()
    try:
        channel, kv = _kv_stub(server.endpoints[0])
        with channel:
            for i in range(20):
                kv.Put(pb.PutRequest(key=f"durable/{i}".encode(), value=b"v"), timeout=WAIT)
        server.server.proc.send_signal(signal.SIGTERM)
        assert server.server.proc.wait(timeout=15) == 0
        assert "kubeplane store: stopped" in server.server.log_tail()
    finally:
        server.stop()
    again = KubeplaneServer(tmp_path).start()
    try:
        channel, kv = _kv_stub(again.endpoints[0])
        with channel:
            resp = kv.Range(pb.RangeRequest(key=b"durable/", range_end=b"durable0", count_only=True), timeout=WAIT)
        assert resp.count == 20
        again.server.proc.send_signal(signal.SIGINT)  # Ctrl-C stops it just as cleanly
        assert again.server.proc.wait(timeout=15) == 0
    finally:
        again.stop()


def test_serve_refuses_a_port_in_use(tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "kubeplane.cli", "store", "serve",
             "--listen", f"127.0.0.1:{port}", "--data-dir", str(tmp_path / "data")],
            capture_output=True, text=True, timeout=30,
        )
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr


# --- any Store --------------------------------------------------------------------------


@pytest.mark.etcd
async def test_serves_any_store_implementation(etcd_single):
    """The servicers only use the Store interface: serve a client of a real etcd 3.4.23.
    Its progress requests are not reliable, so the server does not claim 3.5.17."""
    from kubeplane.store.etcd import EtcdStore

    store = EtcdStore(etcd_single.endpoints, request_timeout=10.0)
    await store.start()
    server = EtcdServer(store)
    await server.start("127.0.0.1:0")
    channel = grpc.aio.insecure_channel(server.endpoint)
    try:
        ep = Endpoint(store, server, channel)
        status = await ep.maintenance.Status(pb.StatusRequest())
        assert status.version == "3.4.23"
        w = WatchClient(ep)
        try:
            wid = await w.created(b"/proxy/k")
            put = await ep.put(b"/proxy/k", b"through")
            resp = await w.recv()
            assert (resp.watch_id, events_of(resp)) == (wid, [("PUT", b"/proxy/k", b"through")])
            direct = await store.get(b"/proxy/k")
            assert (direct.value, direct.mod_revision) == (b"through", put.header.revision)
        finally:
            await w.close()
    finally:
        await channel.close()
        await server.stop(grace=1.0)
        await store.close()
