"""Conversions between kubeplane's store types and etcd's protobuf wire types.

Pure functions, no I/O.  Request builders take our dataclasses, response readers
return them.  Nested txn responses carry their own header on etcd; when a server
leaves a nested header out, the enclosing txn's revision stands in.
"""

from __future__ import annotations

from typing import Sequence

from etcd3aio._protobuf import kv_pb2, rpc_pb2

from ..types import (
    Compare,
    CompareTarget,
    DeleteOp,
    DeleteResult,
    Event,
    EventType,
    KeyValue,
    Op,
    PutOp,
    PutResult,
    RangeOp,
    RangeResult,
    Result,
    TxnOp,
    TxnResult,
)

# --- requests -------------------------------------------------------------------


def range_request(op: RangeOp) -> rpc_pb2.RangeRequest:
    return rpc_pb2.RangeRequest(
        key=op.key,
        range_end=op.range_end,
        limit=op.limit,
        revision=op.revision,
        sort_order=int(op.sort_order),
        sort_target=int(op.sort_target),
        serializable=op.serializable,
        keys_only=op.keys_only,
        count_only=op.count_only,
        min_mod_revision=op.min_mod_revision,
        max_mod_revision=op.max_mod_revision,
        min_create_revision=op.min_create_revision,
        max_create_revision=op.max_create_revision,
    )


def put_request(op: PutOp) -> rpc_pb2.PutRequest:
    return rpc_pb2.PutRequest(
        key=op.key,
        value=op.value,
        lease=op.lease,
        prev_kv=op.prev_kv,
        ignore_value=op.ignore_value,
        ignore_lease=op.ignore_lease,
    )


def delete_request(op: DeleteOp) -> rpc_pb2.DeleteRangeRequest:
    return rpc_pb2.DeleteRangeRequest(key=op.key, range_end=op.range_end, prev_kv=op.prev_kv)


_COMPARE_FIELD = {
    CompareTarget.VERSION: "version",
    CompareTarget.CREATE: "create_revision",
    CompareTarget.MOD: "mod_revision",
    CompareTarget.VALUE: "value",
    CompareTarget.LEASE: "lease",
}


def compare_pb(c: Compare) -> rpc_pb2.Compare:
    target = CompareTarget(c.target)
    field = _COMPARE_FIELD[target]
    value = c.value
    if target == CompareTarget.VALUE:
        if not isinstance(value, (bytes, bytearray)):
            raise TypeError("a VALUE compare needs bytes")
        value = bytes(value)
    elif not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"a {target.name} compare needs an int")
    return rpc_pb2.Compare(
        result=int(c.result), target=int(target), key=c.key, range_end=c.range_end, **{field: value}
    )


def request_op(op: Op) -> rpc_pb2.RequestOp:
    if isinstance(op, RangeOp):
        return rpc_pb2.RequestOp(request_range=range_request(op))
    if isinstance(op, PutOp):
        return rpc_pb2.RequestOp(request_put=put_request(op))
    if isinstance(op, DeleteOp):
        return rpc_pb2.RequestOp(request_delete_range=delete_request(op))
    if isinstance(op, TxnOp):
        return rpc_pb2.RequestOp(request_txn=txn_request(op.compares, op.success, op.failure))
    raise TypeError(f"not a txn op: {op!r}")


def txn_request(
    compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op]
) -> rpc_pb2.TxnRequest:
    return rpc_pb2.TxnRequest(
        compare=[compare_pb(c) for c in compares],
        success=[request_op(op) for op in success],
        failure=[request_op(op) for op in failure],
    )


# --- responses ------------------------------------------------------------------


def kv(pb: kv_pb2.KeyValue) -> KeyValue:
    return KeyValue(pb.key, pb.create_revision, pb.mod_revision, pb.version, pb.value, pb.lease)


def _revision(resp, fallback: int) -> int:
    return resp.header.revision if resp.HasField("header") and resp.header.revision else fallback


def range_result(resp: rpc_pb2.RangeResponse, fallback_rev: int = 0) -> RangeResult:
    return RangeResult(
        kvs=[kv(x) for x in resp.kvs], more=resp.more, count=resp.count,
        revision=_revision(resp, fallback_rev),
    )


def put_result(resp: rpc_pb2.PutResponse, fallback_rev: int = 0) -> PutResult:
    prev = kv(resp.prev_kv) if resp.HasField("prev_kv") else None
    return PutResult(revision=_revision(resp, fallback_rev), prev_kv=prev)


def delete_result(resp: rpc_pb2.DeleteRangeResponse, fallback_rev: int = 0) -> DeleteResult:
    return DeleteResult(
        revision=_revision(resp, fallback_rev), deleted=resp.deleted,
        prev_kvs=[kv(x) for x in resp.prev_kvs],
    )


def txn_result(resp: rpc_pb2.TxnResponse, fallback_rev: int = 0) -> TxnResult:
    rev = _revision(resp, fallback_rev)
    out: list[Result] = []
    for r in resp.responses:
        which = r.WhichOneof("response")
        if which == "response_range":
            out.append(range_result(r.response_range, rev))
        elif which == "response_put":
            out.append(put_result(r.response_put, rev))
        elif which == "response_delete_range":
            out.append(delete_result(r.response_delete_range, rev))
        elif which == "response_txn":
            out.append(txn_result(r.response_txn, rev))
        else:  # pragma: no cover - a server bug
            raise ValueError(f"empty ResponseOp in txn response: {r!r}")
    return TxnResult(succeeded=resp.succeeded, responses=out, revision=rev)


def event(pb: kv_pb2.Event) -> Event:
    prev = kv(pb.prev_kv) if pb.HasField("prev_kv") else None
    return Event(EventType(pb.type), kv(pb.kv), prev)
