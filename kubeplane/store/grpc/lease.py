"""The ``etcdserverpb.Lease`` service: grant, revoke, keep-alive stream, TTL, list."""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from typing import AsyncIterator

from etcd3aio._protobuf import rpc_pb2, rpc_pb2_grpc
from google.protobuf.message import DecodeError

from ..errors import LeaseNotFoundError, StoreError
from ..interface import Store
from .common import Identity, MalformedRequestError, abort, abort_internal, unary, until_stopped


class LeaseServicer(rpc_pb2_grpc.LeaseServicer):
    def __init__(self, store: Store, ident: Identity, stopping: asyncio.Event):
        self._store = store
        self._ident = ident
        self._stopping = stopping

    @unary
    async def LeaseGrant(self, request: rpc_pb2.LeaseGrantRequest, context) -> rpc_pb2.LeaseGrantResponse:
        grant = await self._store.lease_grant(request.TTL, request.ID)
        revision = await self._store.current_revision()
        return rpc_pb2.LeaseGrantResponse(header=self._ident.header(revision), ID=grant.id, TTL=grant.ttl)

    @unary
    async def LeaseRevoke(self, request: rpc_pb2.LeaseRevokeRequest, context) -> rpc_pb2.LeaseRevokeResponse:
        revision = await self._store.lease_revoke(request.ID)
        return rpc_pb2.LeaseRevokeResponse(header=self._ident.header(revision))

    async def LeaseKeepAlive(
        self, request_iterator: AsyncIterator[rpc_pb2.LeaseKeepAliveRequest], context
    ) -> AsyncIterator[rpc_pb2.LeaseKeepAliveResponse]:
        """One response per request, in order.  As etcd: an unknown or expired lease is
        answered with TTL 0 (not an error); the stream ends when the client closes it."""
        try:
            async with aclosing(until_stopped(request_iterator, self._stopping)) as requests:
                async for request in requests:
                    try:
                        ttl = await self._store.lease_keep_alive(request.ID)
                    except LeaseNotFoundError:
                        ttl = 0
                    revision = await self._store.current_revision()
                    header = self._ident.header(revision)
                    yield rpc_pb2.LeaseKeepAliveResponse(header=header, ID=request.ID, TTL=ttl)
        except StoreError as err:
            await abort(context, err)
        except DecodeError as exc:
            await abort(context, MalformedRequestError(f"grpc: error unmarshalling request: {exc}"))
        except Exception as exc:  # noqa: BLE001
            await abort_internal(context, "LeaseKeepAlive", exc)

    @unary
    async def LeaseTimeToLive(
        self, request: rpc_pb2.LeaseTimeToLiveRequest, context
    ) -> rpc_pb2.LeaseTimeToLiveResponse:
        """A lease that does not exist answers TTL -1 (not an error), as on etcd."""
        try:
            info = await self._store.lease_time_to_live(request.ID, keys=request.keys)
        except LeaseNotFoundError:
            info = None
        revision = await self._store.current_revision()
        resp = rpc_pb2.LeaseTimeToLiveResponse(header=self._ident.header(revision), ID=request.ID)
        if info is None or info.ttl < 0:
            resp.TTL = -1
            return resp
        resp.TTL = info.ttl
        resp.grantedTTL = info.granted_ttl
        if request.keys:
            resp.keys.extend(info.keys)
        return resp

    @unary
    async def LeaseLeases(self, request: rpc_pb2.LeaseLeasesRequest, context) -> rpc_pb2.LeaseLeasesResponse:
        ids = await self._store.lease_leases()
        revision = await self._store.current_revision()
        resp = rpc_pb2.LeaseLeasesResponse(header=self._ident.header(revision))
        for lease_id in ids:
            resp.leases.add(ID=lease_id)
        return resp
