"""KV conformance: revisions, put/range/delete and their options (etcd v3 semantics).

Every test writes only under its own ``prefix``; the server may be shared.
"""

from __future__ import annotations

import pytest

from kubeplane.store.errors import (
    EmptyKeyError,
    FutureRevisionError,
    KeyNotFoundError,
    LeaseNotFoundError,
    LeaseProvidedError,
    ValueProvidedError,
)
from kubeplane.store.types import ALL_KEYS, DeleteOp, PutOp, RangeOp, SortOrder, SortTarget, prefix_end

# --- revisions -------------------------------------------------------------------------


async def test_put_advances_revision_by_one(store, prefix):
    r0 = await store.current_revision()
    res = await store.put(prefix + b"a", b"1")
    assert res.revision == r0 + 1
    assert res.prev_kv is None
    assert await store.current_revision() == r0 + 1
    res2 = await store.put(prefix + b"b", b"2")
    assert res2.revision == r0 + 2


async def test_create_mod_revision_and_version(store, prefix):
    k = prefix + b"k"
    r1 = (await store.put(k, b"v1")).revision
    kv = await store.get(k)
    assert (kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease) == (k, b"v1", r1, r1, 1, 0)

    r2 = (await store.put(k, b"v2")).revision
    kv = await store.get(k)
    assert (kv.create_revision, kv.mod_revision, kv.version, kv.value) == (r1, r2, 2, b"v2")

    # Writing the same value again is still a write: new revision, new version.
    r3 = (await store.put(k, b"v2")).revision
    assert r3 == r2 + 1
    kv = await store.get(k)
    assert (kv.mod_revision, kv.version) == (r3, 3)

    # Delete resets the key's life: re-creating starts at version 1 again.
    rd = (await store.delete(k)).revision
    assert rd == r3 + 1
    assert await store.get(k) is None
    r5 = (await store.put(k, b"again")).revision
    kv = await store.get(k)
    assert (kv.create_revision, kv.mod_revision, kv.version) == (r5, r5, 1)


async def test_noop_delete_does_not_advance_revision(store, prefix):
    await store.put(prefix + b"x", b"1")
    r0 = await store.current_revision()
    res = await store.delete(prefix + b"missing")
    assert (res.deleted, res.revision, res.prev_kvs) == (0, r0, [])
    res = await store.delete(prefix + b"m0", prefix + b"m9", prev_kv=True)
    assert (res.deleted, res.revision, res.prev_kvs) == (0, r0, [])
    assert await store.current_revision() == r0


async def test_read_only_txn_does_not_advance_revision(store, prefix):
    await store.put(prefix + b"a", b"1")
    r0 = await store.current_revision()
    res = await store.txn([], [RangeOp(prefix + b"a")])
    assert res.succeeded and res.revision == r0
    res = await store.txn([], [DeleteOp(prefix + b"nothing")])  # deletes nothing
    assert res.revision == r0
    assert await store.current_revision() == r0


async def test_range_reports_current_revision(store, prefix):
    r = (await store.put(prefix + b"a", b"1")).revision
    res = await store.range(prefix + b"zzz-missing")
    assert (res.kvs, res.count, res.more, res.revision) == ([], 0, False, r)


# --- range -----------------------------------------------------------------------------


async def _fill(store, prefix: bytes, names: list[str]) -> dict[bytes, int]:
    """Put prefix+name = name for each; returns key -> mod revision."""
    revs = {}
    for name in names:
        revs[prefix + name.encode()] = (await store.put(prefix + name.encode(), name.encode())).revision
    return revs


async def test_get_single_key_and_missing(store, prefix):
    await _fill(store, prefix, ["a", "ab", "b"])
    res = await store.range(prefix + b"a")
    assert [kv.key for kv in res.kvs] == [prefix + b"a"]
    assert res.count == 1 and not res.more
    assert await store.get(prefix + b"nope") is None


async def test_prefix_range_is_sorted_by_key(store, prefix):
    await _fill(store, prefix, ["c", "a", "b/2", "b/1", "b"])
    res = await store.range(prefix, prefix_end(prefix))
    assert [kv.key for kv in res.kvs] == [prefix + k for k in (b"a", b"b", b"b/1", b"b/2", b"c")]
    assert res.count == 5
    res = await store.range(prefix + b"b/", prefix_end(prefix + b"b/"))
    assert [kv.value for kv in res.kvs] == [b"b/1", b"b/2"]


async def test_half_open_interval(store, prefix):
    await _fill(store, prefix, ["a", "b", "c", "d"])
    res = await store.range(prefix + b"b", prefix + b"d")
    assert [kv.value for kv in res.kvs] == [b"b", b"c"]


async def test_from_key_range(store, prefix):
    await _fill(store, prefix, ["a", "b", "c"])
    res = await store.range(prefix + b"b", ALL_KEYS)
    keys = [kv.key for kv in res.kvs]
    # Keys of other tests may follow ours, but none precedes the start key.
    assert keys[:2] == [prefix + b"b", prefix + b"c"]
    assert all(k >= prefix + b"b" for k in keys)
    assert res.count == len(keys)
    everything = await store.range(b"\0", ALL_KEYS, count_only=True)
    assert everything.count >= 3


async def test_limit_more_count(store, prefix):
    await _fill(store, prefix, ["a", "b", "c", "d", "e"])
    end = prefix_end(prefix)
    res = await store.range(prefix, end, limit=2)
    assert [kv.value for kv in res.kvs] == [b"a", b"b"]
    assert (res.more, res.count) == (True, 5)
    res = await store.range(prefix, end, limit=5)
    assert (len(res.kvs), res.more, res.count) == (5, False, 5)
    res = await store.range(prefix, end, limit=50)
    assert (len(res.kvs), res.more, res.count) == (5, False, 5)
    # Paging as Kubernetes does: continue from the last key + \0.
    res2 = await store.range(prefix + b"b\0", end, limit=2)
    assert [kv.value for kv in res2.kvs] == [b"c", b"d"]
    assert (res2.more, res2.count) == (True, 3)


async def test_read_at_past_revision(store, prefix):
    k = prefix + b"k"
    r1 = (await store.put(k, b"one")).revision
    r2 = (await store.put(k, b"two")).revision
    r3 = (await store.delete(k)).revision
    r4 = (await store.put(prefix + b"later", b"x")).revision

    assert (await store.get(k, revision=r1)).value == b"one"
    assert (await store.get(k, revision=r2)).value == b"two"
    assert await store.get(k, revision=r3) is None
    assert await store.get(prefix + b"later", revision=r3) is None
    at_r2 = await store.range(prefix, prefix_end(prefix), revision=r2)
    assert [(kv.key, kv.value, kv.version) for kv in at_r2.kvs] == [(k, b"two", 2)]
    # The header still reports the current revision, not the one read at.
    assert at_r2.revision == r4
    assert (await store.range(prefix, prefix_end(prefix), revision=r4)).count == 1


async def test_read_at_future_revision_fails(store, prefix):
    r = (await store.put(prefix + b"a", b"1")).revision
    with pytest.raises(FutureRevisionError) as info:
        await store.range(prefix + b"a", revision=r + 1000)
    assert info.value.text == "etcdserver: mvcc: required revision is a future revision"
    assert info.value.grpc_code == "OUT_OF_RANGE"


async def test_keys_only(store, prefix):
    revs = await _fill(store, prefix, ["a", "b"])
    res = await store.range(prefix, prefix_end(prefix), keys_only=True)
    assert [kv.key for kv in res.kvs] == list(revs)
    assert all(kv.value == b"" for kv in res.kvs)
    assert [kv.mod_revision for kv in res.kvs] == list(revs.values())
    assert all(kv.version == 1 for kv in res.kvs)


async def test_count_only(store, prefix):
    await _fill(store, prefix, ["a", "b", "c"])
    res = await store.range(prefix, prefix_end(prefix), count_only=True)
    assert (res.kvs, res.count, res.more) == ([], 3, False)
    res = await store.range(prefix, prefix_end(prefix), count_only=True, limit=1)
    assert (res.kvs, res.count) == ([], 3)


async def test_sort_orders_and_targets(store, prefix):
    # Keys, versions, create/mod revisions and values all order differently.
    k = {n: prefix + n for n in (b"a", b"b", b"c")}
    await store.put(k[b"b"], b"2")  # created first
    await store.put(k[b"c"], b"3")
    await store.put(k[b"a"], b"9")
    await store.put(k[b"c"], b"1")  # c: version 2
    await store.put(k[b"b"], b"5")
    await store.put(k[b"b"], b"6")  # b: version 3, modified last
    end = prefix_end(prefix)

    async def order(sort_order, sort_target, **kw):
        res = await store.range(prefix, end, sort_order=sort_order, sort_target=sort_target, **kw)
        return [kv.key[len(prefix):] for kv in res.kvs]

    assert await order(SortOrder.NONE, SortTarget.KEY) == [b"a", b"b", b"c"]
    assert await order(SortOrder.ASCEND, SortTarget.KEY) == [b"a", b"b", b"c"]
    assert await order(SortOrder.DESCEND, SortTarget.KEY) == [b"c", b"b", b"a"]
    assert await order(SortOrder.ASCEND, SortTarget.VERSION) == [b"a", b"c", b"b"]
    assert await order(SortOrder.DESCEND, SortTarget.VERSION) == [b"b", b"c", b"a"]
    assert await order(SortOrder.ASCEND, SortTarget.CREATE) == [b"b", b"c", b"a"]
    assert await order(SortOrder.DESCEND, SortTarget.CREATE) == [b"a", b"c", b"b"]
    assert await order(SortOrder.ASCEND, SortTarget.MOD) == [b"a", b"c", b"b"]
    assert await order(SortOrder.DESCEND, SortTarget.MOD) == [b"b", b"c", b"a"]
    assert await order(SortOrder.ASCEND, SortTarget.VALUE) == [b"c", b"b", b"a"]
    assert await order(SortOrder.DESCEND, SortTarget.VALUE) == [b"a", b"b", b"c"]
    # etcd: a non-KEY target with order NONE sorts ascending.
    assert await order(SortOrder.NONE, SortTarget.VALUE) == [b"c", b"b", b"a"]
    # Sorting happens before the limit: the top of the sorted list is returned.
    assert await order(SortOrder.DESCEND, SortTarget.KEY, limit=2) == [b"c", b"b"]
    assert await order(SortOrder.DESCEND, SortTarget.MOD, limit=1) == [b"b"]
    res = await store.range(prefix, end, sort_order=SortOrder.DESCEND, sort_target=SortTarget.MOD, limit=1)
    assert (res.more, res.count) == (True, 3)


async def test_min_max_revision_filters(store, prefix):
    revs = await _fill(store, prefix, ["a", "b", "c", "d"])
    ra, rb, rc, rd = revs.values()
    await store.put(prefix + b"a", b"a2")  # a: created ra, modified last
    end = prefix_end(prefix)

    async def names(**kw):
        res = await store.range(prefix, end, **kw)
        return [kv.key[len(prefix):] for kv in res.kvs], res

    assert (await names(min_mod_revision=rc))[0] == [b"a", b"c", b"d"]
    assert (await names(max_mod_revision=rb))[0] == [b"b"]
    assert (await names(min_create_revision=rb, max_create_revision=rc))[0] == [b"b", b"c"]
    assert (await names(max_create_revision=ra))[0] == [b"a"]
    assert (await names(min_mod_revision=rb, max_mod_revision=rc))[0] == [b"b", b"c"]
    # etcd: count is the size of the range before the filters apply.
    kept, res = await names(min_create_revision=rd)
    assert kept == [b"d"] and res.count == 4
    # The limit applies after filtering.
    kept, res = await names(min_mod_revision=rc, limit=2)
    assert kept == [b"a", b"c"] and res.more


async def test_inverted_and_empty_ranges(store, prefix):
    r = (await _fill(store, prefix, ["a", "b", "c"]))[prefix + b"c"]
    res = await store.range(prefix + b"c", prefix + b"a")
    assert (res.kvs, res.count, res.more, res.revision) == ([], 0, False, r)
    res = await store.range(prefix + b"b", prefix + b"b")
    assert (res.kvs, res.count) == ([], 0)
    d = await store.delete(prefix + b"c", prefix + b"a")
    assert (d.deleted, d.revision) == (0, r)
    assert (await store.range(prefix, prefix_end(prefix))).count == 3


async def test_binary_keys_and_values(store, prefix):
    key = prefix + bytes(range(1, 256))
    value = bytes(range(256)) * 4
    await store.put(key, value)
    kv = await store.get(key)
    assert (kv.key, kv.value) == (key, value)
    await store.put(prefix + b"empty", b"")
    kv = await store.get(prefix + b"empty")
    assert kv is not None and kv.value == b"" and kv.version == 1


# --- put options -----------------------------------------------------------------------


async def test_put_prev_kv(store, prefix):
    k = prefix + b"k"
    res = await store.put(k, b"1", prev_kv=True)
    assert res.prev_kv is None
    res2 = await store.put(k, b"2", prev_kv=True)
    assert res2.prev_kv == (await store.get(k, revision=res.revision))
    assert res2.prev_kv.value == b"1"
    res3 = await store.put(k, b"3")
    assert res3.prev_kv is None  # only when asked


async def test_put_ignore_value(store, prefix):
    k = prefix + b"k"
    r1 = (await store.put(k, b"keep")).revision
    r2 = (await store.put(k, b"", ignore_value=True)).revision
    kv = await store.get(k)
    assert (kv.value, kv.version, kv.create_revision, kv.mod_revision) == (b"keep", 2, r1, r2)

    r = await store.current_revision()
    with pytest.raises(ValueProvidedError) as info:
        await store.put(k, b"x", ignore_value=True)
    assert info.value.text == "etcdserver: value is provided"
    with pytest.raises(KeyNotFoundError) as info:
        await store.put(prefix + b"missing", b"", ignore_value=True)
    assert info.value.text == "etcdserver: key not found"
    assert await store.current_revision() == r


async def test_put_lease_attach_ignore_lease_and_detach(store, prefix):
    k = prefix + b"k"
    lease = (await store.lease_grant(30)).id
    try:
        await store.put(k, b"1", lease=lease)
        assert (await store.get(k)).lease == lease
        # ignore_lease keeps the attachment while changing the value.
        await store.put(k, b"2", ignore_lease=True)
        kv = await store.get(k)
        assert (kv.value, kv.lease) == (b"2", lease)
        info = await store.lease_time_to_live(lease, keys=True)
        assert info.keys == [k]
        with pytest.raises(LeaseProvidedError) as exc:
            await store.put(k, b"3", lease=lease, ignore_lease=True)
        assert exc.value.text == "etcdserver: lease is provided"
        with pytest.raises(KeyNotFoundError):
            await store.put(prefix + b"missing", b"v", ignore_lease=True)
        # A plain put detaches the key from its lease.
        await store.put(k, b"4")
        assert (await store.get(k)).lease == 0
        assert (await store.lease_time_to_live(lease, keys=True)).keys == []
    finally:
        await store.lease_revoke(lease)
    assert (await store.get(k)).value == b"4"  # detached keys outlive the lease


async def test_put_with_unknown_lease_fails_without_writing(store, prefix):
    r = await store.current_revision()
    with pytest.raises(LeaseNotFoundError) as info:
        await store.put(prefix + b"k", b"v", lease=0x7EADBEEF)
    assert info.value.text == "etcdserver: requested lease not found"
    assert info.value.grpc_code == "NOT_FOUND"
    assert await store.get(prefix + b"k") is None
    assert await store.current_revision() == r


# --- delete ----------------------------------------------------------------------------


async def test_delete_single_with_prev_kv(store, prefix):
    k = prefix + b"k"
    await store.put(k, b"v")
    before = await store.get(k)
    res = await store.delete(k, prev_kv=True)
    assert res.deleted == 1 and res.prev_kvs == [before]
    assert res.revision == await store.current_revision()
    assert await store.get(k) is None


async def test_delete_range_in_one_revision(store, prefix):
    await _fill(store, prefix, ["a", "b", "c", "d"])
    r0 = await store.current_revision()
    res = await store.delete(prefix + b"b", prefix + b"d", prev_kv=True)
    assert res.deleted == 2 and res.revision == r0 + 1
    assert [kv.value for kv in res.prev_kvs] == [b"b", b"c"]
    left = await store.range(prefix, prefix_end(prefix))
    assert [kv.value for kv in left.kvs] == [b"a", b"d"]
    res = await store.delete(prefix, prefix_end(prefix))
    assert res.deleted == 2 and res.prev_kvs == [] and res.revision == r0 + 2
    assert (await store.range(prefix, prefix_end(prefix))).count == 0


# --- empty keys ------------------------------------------------------------------------


async def test_empty_key_is_rejected_everywhere(store, prefix):
    r = await store.current_revision()
    for call in (
        lambda: store.put(b"", b"v"),
        lambda: store.range(b""),
        lambda: store.range(b"", prefix_end(prefix)),
        lambda: store.delete(b""),
        lambda: store.txn([], [PutOp(b"", b"v")]),
        lambda: store.txn([], [RangeOp(b"")]),
        lambda: store.txn([], [], [DeleteOp(b"")]),
    ):
        with pytest.raises(EmptyKeyError) as info:
            await call()
        assert info.value.text == "etcdserver: key is not provided"
        assert info.value.grpc_code == "INVALID_ARGUMENT"
    assert await store.current_revision() == r
