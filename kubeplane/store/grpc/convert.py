"""etcd wire requests -> kubeplane store types, store results -> etcd wire responses.

The direction is the server's: requests come in as ``etcdserverpb`` messages and are
checked the way etcd's gRPC layer checks them (``api/v3rpc/key.go``) before the store
sees them; results go out as ``etcdserverpb`` / ``mvccpb`` messages.  The opposite
direction (a client of etcd) lives in ``kubeplane.store.etcd._convert``.

Pure functions, no I/O.  Validation raises ``StoreError`` subclasses with etcd's texts.
"""

from __future__ import annotations

from etcd3aio._protobuf import kv_pb2, rpc_pb2

from ..errors import EmptyKeyError, KeyNotFoundError, TooManyOpsError
from ..types import (
    Compare,
    CompareResult,
    CompareTarget,
    DeleteOp,
    DeleteResult,
    Event,
    KeyValue,
    Op,
    PutOp,
    PutResult,
    RangeOp,
    RangeResult,
    Result,
    SortOrder,
    SortTarget,
    TxnOp,
    TxnResult,
)
from .common import MAX_TXN_OPS, Identity, InvalidSortOptionError

# --- requests -------------------------------------------------------------------


def range_op(req: rpc_pb2.RangeRequest) -> RangeOp:
    """As etcd: empty key is an error; limit/revision <= 0 mean "none"/"current"."""
    if not req.key:
        raise EmptyKeyError()
    try:
        sort_target = SortTarget(req.sort_target)
    except ValueError:
        raise InvalidSortOptionError() from None
    try:
        sort_order = SortOrder(req.sort_order)
    except ValueError:  # etcd ignores an unknown order (no sorting)
        sort_order = SortOrder.NONE
    return RangeOp(
        key=req.key,
        range_end=req.range_end,
        limit=max(req.limit, 0),
        revision=max(req.revision, 0),
        keys_only=req.keys_only,
        count_only=req.count_only,
        sort_order=sort_order,
        sort_target=sort_target,
        serializable=req.serializable,
        min_mod_revision=req.min_mod_revision,
        max_mod_revision=req.max_mod_revision,
        min_create_revision=req.min_create_revision,
        max_create_revision=req.max_create_revision,
    )


def put_op(req: rpc_pb2.PutRequest) -> PutOp:
    op = PutOp(
        key=req.key,
        value=req.value,
        lease=req.lease,
        prev_kv=req.prev_kv,
        ignore_value=req.ignore_value,
        ignore_lease=req.ignore_lease,
    )
    op.validate()
    return op


def delete_op(req: rpc_pb2.DeleteRangeRequest) -> DeleteOp:
    if not req.key:
        raise EmptyKeyError()
    return DeleteOp(key=req.key, range_end=req.range_end, prev_kv=req.prev_kv)


def txn_op(req: rpc_pb2.TxnRequest, max_ops: int = MAX_TXN_OPS) -> TxnOp:
    """etcd's checkTxnRequest: the widest of compare/success/failure may hold
    ``max_ops`` entries; a nested txn gets what its parent level left over."""
    width = max(len(req.compare), len(req.success), len(req.failure))
    if width > max_ops:
        raise TooManyOpsError()
    for c in req.compare:
        if not c.key:
            raise EmptyKeyError()
    compares = [cmp for cmp in map(compare, req.compare) if cmp is not None]
    success = [request_op(op, max_ops - width) for op in req.success]
    failure = [request_op(op, max_ops - width) for op in req.failure]
    return TxnOp(compares=compares, success=success, failure=failure)


def request_op(op: rpc_pb2.RequestOp, max_ops: int) -> Op:
    kind = op.WhichOneof("request")
    if kind == "request_range":
        return range_op(op.request_range)
    if kind == "request_put":
        return put_op(op.request_put)
    if kind == "request_delete_range":
        return delete_op(op.request_delete_range)
    if kind == "request_txn":
        return txn_op(op.request_txn, max_ops)
    raise KeyNotFoundError()  # etcd's answer to an empty RequestOp


_TARGET_FIELDS = {
    CompareTarget.VERSION: "version",
    CompareTarget.CREATE: "create_revision",
    CompareTarget.MOD: "mod_revision",
    CompareTarget.VALUE: "value",
    CompareTarget.LEASE: "lease",
}


def compare(c: rpc_pb2.Compare) -> Compare | None:
    """One guard; ``None`` when etcd would always evaluate it as true.

    etcd reads the operand only from the oneof member matching ``target`` (anything
    else counts as 0 / b"").  Unknown enum values are not errors on etcd: an unknown
    result makes the compare true (except a value compare on a missing key, which
    is always false); an unknown target compares 0 with 0.  Both are rewritten into
    equivalent guards the store understands.
    """
    try:
        target = CompareTarget(c.target)
    except ValueError:
        target = None
    try:
        result = CompareResult(c.result)
    except ValueError:
        if target is CompareTarget.VALUE:  # true iff some key in the range exists
            return Compare(c.key, CompareTarget.CREATE, CompareResult.GREATER, 0, c.range_end)
        return None
    if target is None:
        if result is CompareResult.EQUAL:
            return None  # 0 == 0
        return Compare(c.key, CompareTarget.VERSION, CompareResult.LESS, 0)  # never true
    name = _TARGET_FIELDS[target]
    if c.WhichOneof("target_union") == name:
        value = getattr(c, name)
    else:
        value = b"" if target is CompareTarget.VALUE else 0
    return Compare(c.key, target, result, value, c.range_end)


# --- responses ------------------------------------------------------------------


def fill_kv(out: kv_pb2.KeyValue, kv: KeyValue) -> None:
    out.key = kv.key
    out.create_revision = kv.create_revision
    out.mod_revision = kv.mod_revision
    out.version = kv.version
    out.value = kv.value
    out.lease = kv.lease


def add_kvs(out, kvs: list[KeyValue]) -> None:
    """Append to a repeated KeyValue field without building intermediate messages."""
    add = out.add
    for kv in kvs:
        add(
            key=kv.key,
            create_revision=kv.create_revision,
            mod_revision=kv.mod_revision,
            version=kv.version,
            value=kv.value,
            lease=kv.lease,
        )


def fill_range(out: rpc_pb2.RangeResponse, result: RangeResult) -> None:
    add_kvs(out.kvs, result.kvs)
    out.more = result.more
    out.count = result.count


def fill_put(out: rpc_pb2.PutResponse, result: PutResult) -> None:
    if result.prev_kv is not None:
        fill_kv(out.prev_kv, result.prev_kv)


def fill_delete(out: rpc_pb2.DeleteRangeResponse, result: DeleteResult) -> None:
    out.deleted = result.deleted
    add_kvs(out.prev_kvs, result.prev_kvs)


def fill_txn(out: rpc_pb2.TxnResponse, result: TxnResult) -> None:
    """Nested responses carry a header with only ``revision`` set, as on etcd."""
    out.succeeded = result.succeeded
    for sub in result.responses:
        fill_response_op(out.responses.add(), sub)


def fill_response_op(out: rpc_pb2.ResponseOp, result: Result) -> None:
    if isinstance(result, RangeResult):
        resp = out.response_range
        fill_range(resp, result)
    elif isinstance(result, PutResult):
        resp = out.response_put
        fill_put(resp, result)
    elif isinstance(result, DeleteResult):
        resp = out.response_delete_range
        fill_delete(resp, result)
    elif isinstance(result, TxnResult):
        resp = out.response_txn
        fill_txn(resp, result)
    else:  # pragma: no cover - the store returned something outside the interface
        raise TypeError(f"unexpected txn result {result!r}")
    resp.header.revision = result.revision


def range_response(ident: Identity, result: RangeResult) -> rpc_pb2.RangeResponse:
    resp = rpc_pb2.RangeResponse()
    ident.fill(resp.header, result.revision)
    fill_range(resp, result)
    return resp


def put_response(ident: Identity, result: PutResult) -> rpc_pb2.PutResponse:
    resp = rpc_pb2.PutResponse()
    ident.fill(resp.header, result.revision)
    fill_put(resp, result)
    return resp


def delete_response(ident: Identity, result: DeleteResult) -> rpc_pb2.DeleteRangeResponse:
    resp = rpc_pb2.DeleteRangeResponse()
    ident.fill(resp.header, result.revision)
    fill_delete(resp, result)
    return resp


def txn_response(ident: Identity, result: TxnResult) -> rpc_pb2.TxnResponse:
    resp = rpc_pb2.TxnResponse()
    fill_txn(resp, result)
    ident.fill(resp.header, result.revision)
    return resp


def add_events(out, events: list[Event]) -> None:
    """Append watch events; a DELETE's kv is the tombstone (key + mod_revision)."""
    for ev in events:
        pb = out.add(type=int(ev.type))
        fill_kv(pb.kv, ev.kv)
        if ev.prev_kv is not None:
            fill_kv(pb.prev_kv, ev.prev_kv)
