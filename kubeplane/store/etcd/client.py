"""``EtcdStore``: the ``Store`` interface over etcd's v3 gRPC API (grpc.aio).

Works against a real etcd cluster and against kubeplane's own endpoint
(``kubeplane store serve``).  Load spreading and failover (see ``_endpoints``):

* calls go to the head of a shuffled endpoint list, re-shuffled every
  ``reshuffle_interval`` seconds;
* idempotent calls (reads, read-only txns, lease keep-alive/TTL/list, status, member
  list, alarms) move to the next member on UNAVAILABLE or deadline, for at most
  ``request_timeout`` seconds and ``max_attempts`` tries (``_Retry``);
* writes move on only when the failure proves the request was not sent (no
  connection could be made, or etcd refused it up front with "no leader"); an
  ambiguous failure is raised as ``StoreUnavailableError``;
* watches are re-created on another member from the next revision they need
  (``_watch``).

Every request carries etcd's ``hasleader`` metadata, so a member cut off from its
cluster answers "no leader" at once instead of timing out.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import AsyncIterator, Awaitable, Callable, Sequence, TypeVar

import grpc
from etcd3aio._protobuf import rpc_pb2

from ..errors import CompactedError, LeaseNotFoundError, StoreError, StoreUnavailableError
from ..interface import Store, Watcher
from ..types import (
    Compare,
    DeleteOp,
    DeleteResult,
    KeyValue,
    LeaseGrant,
    LeaseInfo,
    Member,
    Op,
    PutOp,
    PutResult,
    RangeOp,
    RangeResult,
    SortOrder,
    SortTarget,
    StoreInfo,
    StoreStatus,
    TxnOp,
    TxnResult,
)
from . import _convert
from ._endpoints import Endpoint, EndpointPool
from ._errors import map_rpc_error, may_fail_over, stream_write
from ._watch import EtcdWatcher

T = TypeVar("T")

# A key no one writes: count-only ranges on it are the cheapest linearizable read.
PROBE_KEY = b"\xff\xfekubeplane/probe"
REQUIRE_LEADER = (("hasleader", "true"),)
_MEMBER_TROUBLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def progress_requests_reliable(version: str) -> bool:
    """Whether progress notifications on this etcd version prove all events before them
    were delivered: fixed in 3.4.31 and 3.5.8 (etcd issue 15220); older lines never were."""
    m = re.match(r"\s*v?(\d+)\.(\d+)\.(\d+)", version)
    if not m:
        return False
    major, minor, patch = (int(x) for x in m.groups())
    if (major, minor) < (3, 4):
        return False
    if (major, minor) == (3, 4):
        return patch >= 31
    if (major, minor) == (3, 5):
        return patch >= 8
    return True


def _read_only(ops: Sequence[Op]) -> bool:
    for op in ops:
        if isinstance(op, TxnOp):
            if not (_read_only(op.success) and _read_only(op.failure)):
                return False
        elif not isinstance(op, RangeOp):
            return False
    return True


class EtcdStore(Store):
    def __init__(
        self,
        endpoints: list[str],
        *,
        reshuffle_interval: float = 60.0,
        request_timeout: float = 10.0,
        connect_timeout: float = 3.0,
        max_attempts: int | None = None,
    ):
        self._pool = EndpointPool(list(endpoints))
        self._reshuffle_interval = reshuffle_interval
        self._request_timeout = request_timeout
        self._connect_timeout = min(connect_timeout, request_timeout)
        self._max_attempts = max_attempts or 16 * len(self._pool)
        self._metadata = REQUIRE_LEADER
        self._version = ""
        self._progress_reliable = False
        self._known_compact = 1
        self._watchers: set[EtcdWatcher] = set()
        self._reshuffler: asyncio.Task | None = None
        self._started = False
        self._closed = False

    # --- lifecycle --------------------------------------------------------------

    @property
    def info(self) -> StoreInfo:
        return StoreInfo(
            implementation="etcd",
            version=self._version,
            progress_requests_reliable=self._progress_reliable,
            endpoints=self._pool.order,
        )

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        resp = await self._unary("Maintenance", "Status", rpc_pb2.StatusRequest(), idempotent=True)
        self._version = resp.version
        self._progress_reliable = progress_requests_reliable(resp.version)
        if self._reshuffle_interval and self._reshuffle_interval > 0:
            self._reshuffler = asyncio.get_running_loop().create_task(self._reshuffle_loop())

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._reshuffler is not None:
            self._reshuffler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reshuffler
        for w in list(self._watchers):
            await w.cancel()
        await self._pool.close()

    async def _reshuffle_loop(self) -> None:
        while True:
            await asyncio.sleep(self._reshuffle_interval)
            self._pool.shuffle()

    # --- calling with failover --------------------------------------------------

    def _retry(self) -> "_Retry":
        return _Retry(self._max_attempts, self._request_timeout, len(self._pool))

    async def _connected(self, endpoint: Endpoint) -> bool:
        """Whether ``endpoint`` has a live connection (waiting at most connect_timeout).

        Writes are only sent over a connection known to be up, so a timeout while
        connecting proves nothing was sent and another member may be tried.
        """
        channel = endpoint.channel
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._connect_timeout
        state = channel.get_state(try_to_connect=True)
        while state != grpc.ChannelConnectivity.READY:
            if state in (grpc.ChannelConnectivity.TRANSIENT_FAILURE, grpc.ChannelConnectivity.SHUTDOWN):
                return False
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(channel.wait_for_state_change(state), remaining)
            except asyncio.TimeoutError:
                return False
            state = channel.get_state(try_to_connect=True)
        return True

    async def _with_failover(self, fn: Callable[[Endpoint], Awaitable[T]], *, idempotent: bool) -> T:
        if self._closed:
            raise StoreUnavailableError(f"{StoreUnavailableError.message}: client is closed")
        retry = self._retry()
        last = "no attempt"
        while True:
            endpoint = self._pool.current()
            try:
                if not idempotent and not await self._connected(endpoint):
                    raise _NotConnected(endpoint.target)
                return await fn(endpoint)
            except _NotConnected as exc:
                last = f"{exc} unreachable"
            except grpc.aio.AioRpcError as exc:
                if not may_fail_over(exc, idempotent=idempotent):
                    if exc.code() in _MEMBER_TROUBLE:
                        self._pool.failed(endpoint)  # the next call starts elsewhere
                    raise map_rpc_error(exc) from None
                last = f"{endpoint.target}: {exc.code().name}: {exc.details()}"
            self._pool.failed(endpoint)
            if not await retry.again():
                raise StoreUnavailableError(f"{StoreUnavailableError.message}: {last}")

    async def _unary(self, service: str, method: str, request, *, idempotent: bool, timeout: float | None = None):
        timeout = timeout or self._request_timeout

        async def call(endpoint: Endpoint):
            return await getattr(endpoint.stub(service), method)(
                request, timeout=timeout, metadata=self._metadata
            )

        return await self._with_failover(call, idempotent=idempotent)

    # --- KV ---------------------------------------------------------------------

    async def range(
        self,
        key: bytes,
        range_end: bytes = b"",
        *,
        limit: int = 0,
        revision: int = 0,
        keys_only: bool = False,
        count_only: bool = False,
        sort_order: SortOrder = SortOrder.NONE,
        sort_target: SortTarget = SortTarget.KEY,
        serializable: bool = False,
        min_mod_revision: int = 0,
        max_mod_revision: int = 0,
        min_create_revision: int = 0,
        max_create_revision: int = 0,
    ) -> RangeResult:
        op = RangeOp(
            key, range_end, limit, revision, keys_only, count_only, sort_order, sort_target,
            serializable, min_mod_revision, max_mod_revision, min_create_revision, max_create_revision,
        )
        resp = await self._unary("KV", "Range", _convert.range_request(op), idempotent=True)
        return _convert.range_result(resp)

    async def get(self, key: bytes, *, revision: int = 0) -> KeyValue | None:
        result = await self.range(key, revision=revision)
        return result.kvs[0] if result.kvs else None

    async def put(
        self,
        key: bytes,
        value: bytes,
        *,
        lease: int = 0,
        prev_kv: bool = False,
        ignore_value: bool = False,
        ignore_lease: bool = False,
    ) -> PutResult:
        req = _convert.put_request(PutOp(key, value, lease, prev_kv, ignore_value, ignore_lease))
        return _convert.put_result(await self._unary("KV", "Put", req, idempotent=False))

    async def delete(self, key: bytes, range_end: bytes = b"", *, prev_kv: bool = False) -> DeleteResult:
        req = _convert.delete_request(DeleteOp(key, range_end, prev_kv))
        return _convert.delete_result(await self._unary("KV", "DeleteRange", req, idempotent=False))

    async def txn(
        self,
        compares: Sequence[Compare],
        success: Sequence[Op] = (),
        failure: Sequence[Op] = (),
    ) -> TxnResult:
        req = _convert.txn_request(compares, success, failure)
        idempotent = _read_only(success) and _read_only(failure)
        return _convert.txn_result(await self._unary("KV", "Txn", req, idempotent=idempotent))

    async def compact(self, revision: int, *, physical: bool = False) -> int:
        req = rpc_pb2.CompactionRequest(revision=revision, physical=physical)
        resp = await self._unary("KV", "Compact", req, idempotent=False)
        return resp.header.revision

    # --- watch ------------------------------------------------------------------

    async def watch(
        self,
        key: bytes,
        range_end: bytes = b"",
        *,
        start_revision: int = 0,
        prev_kv: bool = False,
        progress_notify: bool = False,
        filter_put: bool = False,
        filter_delete: bool = False,
    ) -> Watcher:
        if start_revision <= 0:
            # Pin "from now" to an exact revision, so a re-created watch knows where
            # to resume even before its first event.
            start_revision = await self.current_revision() + 1
        filters = []
        if filter_put:
            filters.append(rpc_pb2.WatchCreateRequest.NOPUT)
        if filter_delete:
            filters.append(rpc_pb2.WatchCreateRequest.NODELETE)
        create = rpc_pb2.WatchCreateRequest(
            key=key, range_end=range_end, prev_kv=prev_kv, progress_notify=progress_notify,
            filters=filters,
        )
        watcher = EtcdWatcher(self, create, start_revision)
        await watcher.start()
        self._watchers.add(watcher)
        return watcher

    # --- leases -----------------------------------------------------------------

    async def lease_grant(self, ttl: int, lease_id: int = 0) -> LeaseGrant:
        req = rpc_pb2.LeaseGrantRequest(TTL=ttl, ID=lease_id)
        resp = await self._unary("Lease", "LeaseGrant", req, idempotent=False)
        if resp.error:  # etcd reports some grant failures in the body
            raise StoreError(resp.error)
        return LeaseGrant(id=resp.ID, ttl=resp.TTL)

    async def lease_keep_alive(self, lease_id: int) -> int:
        async def once(endpoint: Endpoint) -> int:
            call = endpoint.stub("Lease").LeaseKeepAlive(
                timeout=self._request_timeout, metadata=self._metadata
            )
            try:
                await stream_write(call, rpc_pb2.LeaseKeepAliveRequest(ID=lease_id))
                resp = await call.read()
            finally:
                call.cancel()
            if resp is grpc.aio.EOF:
                raise StoreUnavailableError(f"{StoreUnavailableError.message}: keep-alive stream closed")
            return resp.TTL

        ttl = await self._with_failover(once, idempotent=True)
        if ttl <= 0:  # etcd answers an unknown or expired lease with TTL 0
            raise LeaseNotFoundError()
        return ttl

    async def lease_revoke(self, lease_id: int) -> int:
        req = rpc_pb2.LeaseRevokeRequest(ID=lease_id)
        resp = await self._unary("Lease", "LeaseRevoke", req, idempotent=False)
        return resp.header.revision

    async def lease_time_to_live(self, lease_id: int, *, keys: bool = False) -> LeaseInfo:
        req = rpc_pb2.LeaseTimeToLiveRequest(ID=lease_id, keys=keys)
        resp = await self._unary("Lease", "LeaseTimeToLive", req, idempotent=True)
        return LeaseInfo(id=resp.ID, ttl=resp.TTL, granted_ttl=resp.grantedTTL, keys=list(resp.keys))

    async def lease_leases(self) -> list[int]:
        resp = await self._unary("Lease", "LeaseLeases", rpc_pb2.LeaseLeasesRequest(), idempotent=True)
        return [lease.ID for lease in resp.leases]

    # --- maintenance ------------------------------------------------------------

    async def current_revision(self) -> int:
        req = rpc_pb2.RangeRequest(key=PROBE_KEY, count_only=True)
        resp = await self._unary("KV", "Range", req, idempotent=True)
        return resp.header.revision

    async def _readable_at(self, revision: int) -> bool:
        req = rpc_pb2.RangeRequest(key=PROBE_KEY, count_only=True, revision=revision)
        try:
            await self._unary("KV", "Range", req, idempotent=True)
        except CompactedError:
            return False
        return True

    async def _compact_revision(self, current: int) -> int:
        """The oldest readable revision, found with count-only reads on PROBE_KEY.

        etcd's StatusResponse has no compacted revision.  Readability is monotonic in
        the revision (compacted below C, readable from C), and C only grows, so the
        last answer is a lower bound: usually one read confirms it, otherwise a binary
        search over (known, current].  0 means never compacted (indistinguishable on
        etcd from a compaction at revision 1).
        """
        lo = min(self._known_compact, max(current, 1))
        if not await self._readable_at(lo):
            hi = current  # readable: a compaction never removes the current revision
            while hi - lo > 1:  # invariant: lo unreadable, hi readable
                mid = (lo + hi) // 2
                if await self._readable_at(mid):
                    hi = mid
                else:
                    lo = mid
            lo = hi
        self._known_compact = lo
        return lo if lo > 1 else 0

    async def status(self) -> StoreStatus:
        resp = await self._unary("Maintenance", "Status", rpc_pb2.StatusRequest(), idempotent=True)
        revision = resp.header.revision
        return StoreStatus(
            version=resp.version,
            db_size=resp.dbSize,
            db_size_in_use=resp.dbSizeInUse,
            revision=revision,
            compact_revision=await self._compact_revision(revision),
            member_id=resp.header.member_id,
            leader=resp.leader,
            raft_term=resp.raftTerm,
            alarms=await self.alarms(),
        )

    async def _alarm_members(self) -> list:
        req = rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.GET)
        resp = await self._unary("Maintenance", "Alarm", req, idempotent=True)
        return [a for a in resp.alarms if a.alarm != rpc_pb2.NONE]

    async def alarms(self) -> list[str]:
        return sorted({rpc_pb2.AlarmType.Name(a.alarm) for a in await self._alarm_members()})

    async def disarm(self) -> None:
        for a in await self._alarm_members():
            req = rpc_pb2.AlarmRequest(
                action=rpc_pb2.AlarmRequest.DEACTIVATE, memberID=a.memberID, alarm=a.alarm
            )
            await self._unary("Maintenance", "Alarm", req, idempotent=True)

    async def defragment(self) -> None:
        """Defragment every member we know (each member has its own backend file)."""
        if self._closed:
            raise StoreUnavailableError(f"{StoreUnavailableError.message}: client is closed")
        timeout = max(60.0, 6 * self._request_timeout)
        done, unreachable = 0, []
        for endpoint in self._pool.all:
            stub = endpoint.stub("Maintenance")
            try:
                await stub.Defragment(rpc_pb2.DefragmentRequest(), timeout=timeout, metadata=self._metadata)
                done += 1
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE:
                    raise map_rpc_error(exc) from None
                unreachable.append(endpoint.target)
        if not done:
            raise StoreUnavailableError(f"{StoreUnavailableError.message}: {', '.join(unreachable)}")

    async def snapshot(self) -> AsyncIterator[bytes]:
        """Stream the current member's backend; fails over until the first blob only."""

        async def first(endpoint: Endpoint):
            call = endpoint.stub("Maintenance").Snapshot(rpc_pb2.SnapshotRequest(), metadata=self._metadata)
            try:
                resp = await asyncio.wait_for(call.read(), self._request_timeout)
            except asyncio.TimeoutError:
                call.cancel()
                raise grpc.aio.AioRpcError(
                    grpc.StatusCode.DEADLINE_EXCEEDED, grpc.aio.Metadata(), grpc.aio.Metadata(),
                    details="no snapshot data within the request timeout",
                ) from None
            except BaseException:
                call.cancel()
                raise
            return call, resp

        call, resp = await self._with_failover(first, idempotent=True)
        try:
            while resp is not grpc.aio.EOF:
                if resp.blob:
                    yield resp.blob
                resp = await call.read()
        except grpc.aio.AioRpcError as exc:
            raise map_rpc_error(exc) from None
        finally:
            call.cancel()

    async def members(self) -> list[Member]:
        resp = await self._unary("Cluster", "MemberList", rpc_pb2.MemberListRequest(), idempotent=True)
        return [
            Member(id=m.ID, name=m.name, peer_urls=list(m.peerURLs), client_urls=list(m.clientURLs))
            for m in resp.members
        ]


class _NotConnected(Exception):
    """No connection to the member: a write was not sent."""


class _Retry:
    """Bounds one call's failover: every member is tried once, then more tries go on
    while ``budget`` seconds (the request timeout: a leader election of a second or two
    is ridden out) last, never more than ``max_attempts`` in all.  No pause within a
    round over the members; between rounds 50 ms, doubling up to 500 ms."""

    def __init__(self, max_attempts: int, budget: float, members: int):
        self._max_attempts = max_attempts
        self._members = max(1, members)
        self._deadline = asyncio.get_running_loop().time() + budget
        self.failures = 0

    async def again(self) -> bool:
        """Count a failure; False when the budget is spent, else pause and say go."""
        self.failures += 1
        loop = asyncio.get_running_loop()
        if self.failures >= self._max_attempts:
            return False
        if self.failures >= self._members and loop.time() >= self._deadline:
            return False
        rounds, within = divmod(self.failures, self._members)
        if within == 0:
            pause = min(0.05 * 2 ** (rounds - 1), 0.5)
            await asyncio.sleep(min(pause, max(0.0, self._deadline - loop.time())))
        return True
