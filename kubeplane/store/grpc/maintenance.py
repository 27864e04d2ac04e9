"""The ``etcdserverpb.Maintenance`` and ``etcdserverpb.Cluster`` services.

Status reports the etcd version kubeplane emulates (see ``server.EMULATED_VERSION``),
the store's sizes and alarms, and this endpoint as the leader of a one-member
cluster (raft index = store revision: both only ever grow).  Snapshot streams
``store.snapshot()`` in etcd's framing: blobs with ``remaining_bytes`` counting down
to 0, the store's bytes padded with zero bytes to a multiple of 512 (etcdctl refuses
anything else: etcd's bbolt files are page aligned), then a last blob holding the
SHA-256 of everything sent before it, as etcd appends to its snapshots.  A reader of
a saved file must therefore stop at the store format's own end marker.  Hash, HashKV, MoveLeader, Downgrade and membership
changes are UNIMPLEMENTED: a single embedded member has nothing to compare, move or
change (etcdctl needs none of them for put/get/watch/lease/snapshot/status).
"""

from __future__ import annotations

import hashlib
import tempfile
from typing import AsyncIterator

import grpc
from etcd3aio._protobuf import rpc_pb2, rpc_pb2_grpc

from ..errors import StoreError
from ..interface import Store
from .common import Identity, UnsupportedError, abort, abort_internal, unary

SNAPSHOT_CHUNK = 1 << 20  # bytes per SnapshotResponse blob
SNAPSHOT_SPOOL_IN_MEMORY = 32 << 20  # beyond this a snapshot is spooled to a temp file
# etcd clients check that a snapshot is "n * 512 bytes + a 32-byte SHA-256" (a bbolt file
# is page aligned): the store's bytes are padded with zeros to a multiple of this.
SNAPSHOT_ALIGN = 512

_ALARM_TYPES = {name: value for name, value in rpc_pb2.AlarmType.items() if name != "NONE"}


def alarm_errors(ident: Identity, alarms: list[str]) -> list[str]:
    """Status.errors as etcd writes them: the AlarmMember's text form."""
    return [f"memberID:{ident.member_id} alarm:{name} " for name in alarms]


class MaintenanceServicer(rpc_pb2_grpc.MaintenanceServicer):
    def __init__(self, store: Store, ident: Identity, *, quota_bytes: int = 0, spool_dir: str | None = None):
        self._store = store
        self._ident = ident
        self._quota_bytes = quota_bytes
        self._spool_dir = spool_dir

    @unary
    async def Status(self, request: rpc_pb2.StatusRequest, context) -> rpc_pb2.StatusResponse:
        st = await self._store.status()
        ident = self._ident
        return rpc_pb2.StatusResponse(
            header=ident.header(st.revision),
            version=ident.version,
            dbSize=st.db_size,
            dbSizeInUse=st.db_size_in_use,
            dbSizeQuota=self._quota_bytes,
            leader=ident.member_id,
            raftIndex=st.revision,
            raftAppliedIndex=st.revision,
            raftTerm=ident.raft_term,
            errors=alarm_errors(ident, st.alarms),
            isLearner=False,
        )

    @unary
    async def Alarm(self, request: rpc_pb2.AlarmRequest, context) -> rpc_pb2.AlarmResponse:
        """GET lists active alarms.  DEACTIVATE of an active (member, alarm) pair clears
        it and answers with it; anything else is a no-op, as on etcd.  ACTIVATE is not
        offered: the store raises NOSPACE itself."""
        action = request.action
        if action == rpc_pb2.AlarmRequest.ACTIVATE:
            raise UnsupportedError("kubeplane: alarms are raised by the store, not by clients")
        active = [name for name in await self._store.alarms() if name in _ALARM_TYPES]
        resp = rpc_pb2.AlarmResponse()
        if action == rpc_pb2.AlarmRequest.GET:
            for name in active:
                resp.alarms.add(memberID=self._ident.member_id, alarm=_ALARM_TYPES[name])
        elif action == rpc_pb2.AlarmRequest.DEACTIVATE:
            name = rpc_pb2.AlarmType.Name(request.alarm) if request.alarm in _ALARM_TYPES.values() else None
            if name in active and request.memberID == self._ident.member_id:
                await self._store.disarm()
                resp.alarms.add(memberID=self._ident.member_id, alarm=request.alarm)
        self._ident.fill(resp.header, await self._store.current_revision())
        return resp

    @unary
    async def Defragment(self, request: rpc_pb2.DefragmentRequest, context) -> rpc_pb2.DefragmentResponse:
        await self._store.defragment()
        return rpc_pb2.DefragmentResponse(header=self._ident.header(await self._store.current_revision()))

    async def Snapshot(self, request: rpc_pb2.SnapshotRequest, context) -> AsyncIterator[rpc_pb2.SnapshotResponse]:
        """The store's snapshot is spooled first so every blob can say how many bytes
        remain (etcd knows its file size up front; the Store interface streams)."""
        spool = tempfile.SpooledTemporaryFile(max_size=SNAPSHOT_SPOOL_IN_MEMORY, dir=self._spool_dir)
        try:
            digest = hashlib.sha256()
            size = 0
            try:
                async for chunk in self._store.snapshot():
                    spool.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                padding = b"\0" * (-size % SNAPSHOT_ALIGN)
                spool.write(padding)
                digest.update(padding)
                size += len(padding)
                header = self._ident.header(await self._store.current_revision())
            except StoreError as err:
                await abort(context, err)
            except Exception as exc:  # noqa: BLE001
                await abort_internal(context, "Snapshot", exc)
            spool.seek(0)
            remaining = size
            while remaining > 0:
                blob = spool.read(min(SNAPSHOT_CHUNK, remaining))
                if not blob:  # pragma: no cover - the spool lost data
                    await context.abort(grpc.StatusCode.DATA_LOSS, "kubeplane: snapshot spool truncated")
                remaining -= len(blob)
                yield rpc_pb2.SnapshotResponse(header=header, remaining_bytes=remaining, blob=blob)
            yield rpc_pb2.SnapshotResponse(header=header, remaining_bytes=0, blob=digest.digest())
        finally:
            spool.close()

    async def Hash(self, request, context):
        await abort(context, UnsupportedError("kubeplane: Hash is not supported by the embedded store"))

    async def HashKV(self, request, context):
        await abort(context, UnsupportedError("kubeplane: HashKV is not supported by the embedded store"))

    async def MoveLeader(self, request, context):
        await abort(context, UnsupportedError("kubeplane: a single-member store has no leader to move"))

    async def Downgrade(self, request, context):
        await abort(context, UnsupportedError("kubeplane: Downgrade is not supported"))


class ClusterServicer(rpc_pb2_grpc.ClusterServicer):
    """One member: this endpoint."""

    def __init__(self, ident: Identity):
        self._ident = ident

    @unary
    async def MemberList(self, request: rpc_pb2.MemberListRequest, context) -> rpc_pb2.MemberListResponse:
        ident = self._ident
        resp = rpc_pb2.MemberListResponse(header=ident.header())
        resp.members.add(ID=ident.member_id, name=ident.name, peerURLs=ident.peer_urls, clientURLs=ident.client_urls)
        return resp

    async def MemberAdd(self, request, context):
        await abort(context, _NO_MEMBERSHIP)

    async def MemberRemove(self, request, context):
        await abort(context, _NO_MEMBERSHIP)

    async def MemberUpdate(self, request, context):
        await abort(context, _NO_MEMBERSHIP)

    async def MemberPromote(self, request, context):
        await abort(context, _NO_MEMBERSHIP)


_NO_MEMBERSHIP = UnsupportedError("kubeplane: the embedded store is a single member; membership cannot change")
