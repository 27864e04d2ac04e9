"""The ``etcdserverpb.KV`` service: Range, Put, DeleteRange, Txn, Compact."""

from __future__ import annotations

from etcd3aio._protobuf import rpc_pb2, rpc_pb2_grpc

from ..interface import Store
from . import convert, wire
from .common import MAX_TXN_OPS, Identity, unary


class KVServicer(rpc_pb2_grpc.KVServicer):
    def __init__(self, store: Store, ident: Identity, max_txn_ops: int = MAX_TXN_OPS):
        self._store = store
        self._ident = ident
        self._max_txn_ops = max_txn_ops

    @unary
    async def Range(self, request: rpc_pb2.RangeRequest, context) -> bytes:
        op = convert.range_op(request)
        result = await self._store.range(
            op.key,
            op.range_end,
            limit=op.limit,
            revision=op.revision,
            keys_only=op.keys_only,
            count_only=op.count_only,
            sort_order=op.sort_order,
            sort_target=op.sort_target,
            serializable=op.serializable,
            min_mod_revision=op.min_mod_revision,
            max_mod_revision=op.max_mod_revision,
            min_create_revision=op.min_create_revision,
            max_create_revision=op.max_create_revision,
        )
        return wire.range_response(self._ident.header(result.revision), result)

    @unary
    async def Put(self, request: rpc_pb2.PutRequest, context) -> rpc_pb2.PutResponse:
        op = convert.put_op(request)
        result = await self._store.put(
            op.key,
            op.value,
            lease=op.lease,
            prev_kv=op.prev_kv,
            ignore_value=op.ignore_value,
            ignore_lease=op.ignore_lease,
        )
        return convert.put_response(self._ident, result)

    @unary
    async def DeleteRange(self, request: rpc_pb2.DeleteRangeRequest, context) -> rpc_pb2.DeleteRangeResponse:
        op = convert.delete_op(request)
        result = await self._store.delete(op.key, op.range_end, prev_kv=op.prev_kv)
        return convert.delete_response(self._ident, result)

    @unary
    async def Txn(self, request: rpc_pb2.TxnRequest, context) -> rpc_pb2.TxnResponse:
        op = convert.txn_op(request, self._max_txn_ops)
        result = await self._store.txn(op.compares, op.success, op.failure)
        return convert.txn_response(self._ident, result)

    @unary
    async def Compact(self, request: rpc_pb2.CompactionRequest, context) -> rpc_pb2.CompactionResponse:
        revision = await self._store.compact(request.revision, physical=request.physical)
        return rpc_pb2.CompactionResponse(header=self._ident.header(revision))
