"""Hand-assembled responses from cached KeyValue bytes ("serialize once").

A ``Record`` of the embedded store is immutable, so its protobuf encoding can be made
the first time it is sent and reused by every later Range that returns it: the record's
``wire`` slot holds the bytes of one item of a repeated ``KeyValue`` field numbered 2
(tag, length, message), which is exactly ``RangeResponse.kvs``.  A response of 10,000
keys is then a ``join`` of cached bytes (about 2 ms) instead of 10,000 message builds
(about 29 ms).  The price is memory: a record sent once keeps its encoding (about its
own size again) for as long as it lives.  KeyValues from other stores (a proxied etcd)
are encoded on the fly.

The KV service is registered with a response serializer that passes ``bytes`` through,
so a handler may return either a message or its ready encoding.
"""

from __future__ import annotations

import grpc
from etcd3aio._protobuf import kv_pb2, rpc_pb2

from ..types import KeyValue, RangeResult


def varint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _encode_kv_item(kv: KeyValue) -> bytes:
    msg = kv_pb2.KeyValue(
        key=kv.key,
        create_revision=kv.create_revision,
        mod_revision=kv.mod_revision,
        version=kv.version,
        value=kv.value,
        lease=kv.lease,
    ).SerializeToString()
    return b"\x12" + varint(len(msg)) + msg


def kv_item(kv: KeyValue) -> bytes:
    """``kv`` as an item of repeated field 2, cached on records that have a ``wire`` slot."""
    cached = getattr(kv, "wire", None)
    if cached is not None:
        return cached
    item = _encode_kv_item(kv)
    if hasattr(kv, "wire"):
        kv.wire = item
    return item


def range_response(header: rpc_pb2.ResponseHeader, result: RangeResult) -> bytes:
    """The encoding of ``RangeResponse{header, kvs, more, count}``."""
    hdr = header.SerializeToString()
    parts = [b"\x0a", varint(len(hdr)), hdr]
    parts.extend(map(kv_item, result.kvs))
    if result.more:
        parts.append(b"\x18\x01")
    if result.count:
        parts.append(b"\x20")
        parts.append(varint(result.count))
    return b"".join(parts)


def _serialize(msg) -> bytes:
    return msg if isinstance(msg, bytes) else msg.SerializeToString()


def add_kv_servicer(servicer, server: grpc.aio.Server) -> None:
    """Register ``etcdserverpb.KV`` like the generated helper, with ``bytes`` pass-through."""
    requests = {
        "Range": rpc_pb2.RangeRequest,
        "Put": rpc_pb2.PutRequest,
        "DeleteRange": rpc_pb2.DeleteRangeRequest,
        "Txn": rpc_pb2.TxnRequest,
        "Compact": rpc_pb2.CompactionRequest,
    }
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            getattr(servicer, name), request_deserializer=req.FromString, response_serializer=_serialize
        )
        for name, req in requests.items()
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("etcdserverpb.KV", handlers),))
