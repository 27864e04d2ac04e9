"""Hand-assembled Range responses parse back to exactly the protobuf etcd clients expect."""

from __future__ import annotations

from etcd3aio._protobuf import rpc_pb2

from kubeplane.store.grpc.wire import kv_item, range_response, varint
from kubeplane.store.mvcc.key_index import Record
from kubeplane.store.types import KeyValue, RangeResult


def test_varint_matches_protobuf() -> None:
    for n in (0, 1, 127, 128, 300, 2**31, 2**63 - 1):
        msg = rpc_pb2.RangeResponse(count=n).SerializeToString()
        assert msg == (b"\x20" + varint(n) if n else b"")


def test_range_response_round_trips_and_caches_record_bytes() -> None:
    records = [
        Record(b"/a", 2, 5, 3, b"x" * 300, 0, None),  # a length needing a 2-byte varint
        Record(b"/b", 7, 7, 1, b"", 0x7EAD, None),  # empty value (omitted field), a lease
    ]
    plain = KeyValue(b"/c", 9, 9, 1, b"v", 0)  # not a Record: encoded, not cached
    header = rpc_pb2.ResponseHeader(cluster_id=11, member_id=12, revision=9, raft_term=1)
    for more, count in ((True, 3), (False, 0)):
        data = range_response(header, RangeResult([*records, plain], more, count, 9))
        expected = rpc_pb2.RangeResponse(header=header, more=more, count=count)
        for kv in (*records, plain):
            expected.kvs.add(
                key=kv.key, create_revision=kv.create_revision, mod_revision=kv.mod_revision,
                version=kv.version, value=kv.value, lease=kv.lease,
            )
        assert rpc_pb2.RangeResponse.FromString(data) == expected
    assert all(r.wire == kv_item(r) for r in records)
    assert not hasattr(plain, "wire")
