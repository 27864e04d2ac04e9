"""Txn conformance: compares, branches, nesting, limits, atomicity."""

from __future__ import annotations

import pytest

from kubeplane.store.errors import DuplicateKeyError, EmptyKeyError, LeaseNotFoundError, TooManyOpsError
from kubeplane.store.types import (
    Compare,
    CompareResult,
    CompareTarget,
    DeleteOp,
    DeleteResult,
    PutOp,
    PutResult,
    RangeOp,
    RangeResult,
    TxnOp,
    TxnResult,
    prefix_end,
)

EQ, GT, LT, NE = CompareResult.EQUAL, CompareResult.GREATER, CompareResult.LESS, CompareResult.NOT_EQUAL


async def _holds(store, compare: Compare) -> bool:
    res = await store.txn([compare])
    assert res.responses == []
    return res.succeeded


async def test_compare_every_target_and_result(store, prefix):
    k = prefix + b"k"
    lease = (await store.lease_grant(60)).id
    try:
        create = (await store.put(k, b"m", lease=lease)).revision
        mod = (await store.put(k, b"m", ignore_lease=True)).revision  # version 2, lease kept
        cases = [
            (CompareTarget.VERSION, 2, 1, 3),
            (CompareTarget.CREATE, create, create - 1, create + 1),
            (CompareTarget.MOD, mod, mod - 1, mod + 1),
            (CompareTarget.VALUE, b"m", b"l", b"n"),
            (CompareTarget.LEASE, lease, lease - 1, lease + 1),
        ]
        for target, equal, smaller, bigger in cases:
            c = lambda result, value, target=target: Compare(k, target, result, value)  # noqa: E731
            assert await _holds(store, c(EQ, equal)), target
            assert not await _holds(store, c(EQ, smaller)), target
            assert await _holds(store, c(GT, smaller)), target
            assert not await _holds(store, c(GT, equal)), target
            assert await _holds(store, c(LT, bigger)), target
            assert not await _holds(store, c(LT, equal)), target
            assert await _holds(store, c(NE, bigger)), target
            assert not await _holds(store, c(NE, equal)), target
        # Values compare as bytes, not as numbers or strings of a length.
        assert await _holds(store, Compare.value_of(k, ">", b"l\xff\xff"))
        assert await _holds(store, Compare.value_of(k, "<", b"m\x00"))
    finally:
        await store.lease_revoke(lease)


async def test_compare_on_missing_key(store, prefix):
    k = prefix + b"never"
    # A missing key has version, create, mod revision and lease 0 ...
    assert await _holds(store, Compare.version(k, "=", 0))
    assert await _holds(store, Compare.create_revision(k, "=", 0))
    assert await _holds(store, Compare.mod_revision(k, "=", 0))
    assert await _holds(store, Compare.lease_of(k, "=", 0))
    assert not await _holds(store, Compare.mod_revision(k, ">", 0))
    # ... but any value compare on it fails, even "!=" and "=" b"".
    assert not await _holds(store, Compare.value_of(k, "=", b""))
    assert not await _holds(store, Compare.value_of(k, "!=", b"x"))
    assert not await _holds(store, Compare.value_of(k, "<", b"zzz"))


async def test_range_compare_must_hold_for_every_key(store, prefix):
    p = prefix + b"r/"
    for name, value in ((b"a", b"1"), (b"b", b"1"), (b"c", b"2")):
        await store.put(p + name, value)
    end = prefix_end(p)
    assert await _holds(store, Compare(p, CompareTarget.VERSION, EQ, 1, end))
    assert not await _holds(store, Compare(p, CompareTarget.VALUE, EQ, b"1", end))
    assert await _holds(store, Compare(p, CompareTarget.VALUE, EQ, b"1", p + b"c"))
    assert await _holds(store, Compare(p, CompareTarget.VALUE, LT, b"3", end))
    assert await _holds(store, Compare(p, CompareTarget.CREATE, GT, 0, end))
    # An empty range compares like a missing key.
    empty = prefix + b"e/"
    assert await _holds(store, Compare(empty, CompareTarget.VERSION, EQ, 0, prefix_end(empty)))
    assert not await _holds(store, Compare(empty, CompareTarget.VALUE, NE, b"x", prefix_end(empty)))


async def test_all_compares_must_hold(store, prefix):
    a, b = prefix + b"a", prefix + b"b"
    await store.put(a, b"1")
    await store.put(b, b"2")
    ok = [Compare.value_of(a, "=", b"1"), Compare.value_of(b, "=", b"2")]
    bad = [Compare.value_of(a, "=", b"1"), Compare.value_of(b, "=", b"9")]
    assert (await store.txn(ok, [PutOp(a, b"ok")], [PutOp(a, b"bad")])).succeeded
    assert (await store.get(a)).value == b"ok"
    ok[0] = Compare.value_of(a, "=", b"ok")
    bad[0] = ok[0]
    res = await store.txn(bad, [PutOp(a, b"ok2")], [PutOp(a, b"bad2")])
    assert not res.succeeded
    assert (await store.get(a)).value == b"bad2"


async def test_branch_responses_and_one_revision_per_write_txn(store, prefix):
    a, b, c = prefix + b"a", prefix + b"b", prefix + b"c"
    await store.put(c, b"old")
    r0 = await store.current_revision()
    res = await store.txn(
        [Compare.version(a, "=", 0)],
        [PutOp(a, b"1"), PutOp(b, b"2", prev_kv=True), DeleteOp(c, prev_kv=True), RangeOp(prefix, prefix_end(prefix))],
        [RangeOp(a)],
    )
    assert res.succeeded and res.revision == r0 + 1
    put_a, put_b, del_c, rng = res.responses
    assert isinstance(put_a, PutResult) and put_a.revision == r0 + 1 and put_a.prev_kv is None
    assert isinstance(put_b, PutResult) and put_b.prev_kv is None
    assert isinstance(del_c, DeleteResult) and del_c.deleted == 1 and del_c.prev_kvs[0].value == b"old"
    assert isinstance(rng, RangeResult) and rng.revision == r0 + 1
    # Reads later in a branch see the branch's earlier writes.
    assert [(kv.key, kv.value) for kv in rng.kvs] == [(a, b"1"), (b, b"2")]
    # Every write of one txn shares its revision.
    kvs = (await store.range(prefix, prefix_end(prefix))).kvs
    assert [(kv.mod_revision, kv.create_revision, kv.version) for kv in kvs] == [(r0 + 1, r0 + 1, 1)] * 2

    res = await store.txn([Compare.version(a, "=", 0)], [PutOp(a, b"x")], [RangeOp(a), RangeOp(b, count_only=True)])
    assert not res.succeeded and res.revision == r0 + 1
    got_a, count_b = res.responses
    assert isinstance(got_a, RangeResult) and got_a.kvs[0].value == b"1"
    assert count_b.count == 1 and count_b.kvs == []


async def test_reads_after_writes_in_a_branch(store, prefix):
    k, gone_key = prefix + b"k", prefix + b"gone"
    await store.put(k, b"before")
    await store.put(gone_key, b"x")
    res = await store.txn([], [RangeOp(k), PutOp(k, b"after"), RangeOp(k), DeleteOp(gone_key), RangeOp(gone_key)])
    before, put, after, deleted, gone = res.responses
    assert before.kvs[0].value == b"before"
    assert after.kvs[0].value == b"after" and after.kvs[0].version == 2
    assert after.kvs[0].mod_revision == put.revision == res.revision
    assert deleted.deleted == 1 and gone.kvs == [] and gone.count == 0
    assert await store.get(gone_key) is None


async def test_empty_txn(store, prefix):
    r0 = await store.current_revision()
    res = await store.txn([])
    assert (res.succeeded, res.responses, res.revision) == (True, [], r0)
    res = await store.txn([Compare.version(prefix + b"x", "=", 5)])
    assert (res.succeeded, res.responses, res.revision) == (False, [], r0)


async def test_nested_txn(store, prefix):
    a, b = prefix + b"a", prefix + b"b"
    await store.put(a, b"1")
    r0 = await store.current_revision()
    inner = TxnOp(
        compares=[Compare.value_of(a, "=", b"1")],
        success=[PutOp(b, b"inner-yes"), RangeOp(a)],
        failure=[PutOp(b, b"inner-no"), RangeOp(a)],
    )
    res = await store.txn([Compare.value_of(a, "=", b"1")], [PutOp(a, b"2"), inner])
    assert res.succeeded and res.revision == r0 + 1
    put, nested = res.responses
    assert isinstance(put, PutResult) and put.revision == r0 + 1
    # etcd evaluates every compare, nested ones included, against the state before
    # the txn: the inner compare still sees a == "1" although the outer put ran first.
    assert isinstance(nested, TxnResult) and nested.succeeded
    assert isinstance(nested.responses[0], PutResult)
    # The inner ops themselves do see the outer writes before them.
    assert nested.responses[1].kvs[0].value == b"2"
    kv = await store.get(b)
    assert (kv.value, kv.mod_revision) == (b"inner-yes", r0 + 1)

    # So a nested compare on the value the outer branch just wrote fails.
    inner.compares = [Compare.value_of(a, "=", b"3")]
    res = await store.txn([], [PutOp(a, b"3"), inner])
    assert res.succeeded and not res.responses[1].succeeded
    assert res.responses[1].responses[1].kvs[0].value == b"3"
    assert (await store.get(b)).value == b"inner-no"


async def test_txn_op_limit(store, prefix):
    r0 = await store.current_revision()
    puts = [PutOp(prefix + b"%03d" % i, b"v") for i in range(128)]
    res = await store.txn([], puts)
    assert res.revision == r0 + 1 and len(res.responses) == 128
    assert (await store.range(prefix, prefix_end(prefix), count_only=True)).count == 128

    too_many = [PutOp(prefix + b"x%03d" % i, b"v") for i in range(129)]
    for args in (
        ([], too_many),
        ([], [], too_many),
        ([Compare.version(prefix + b"c", "=", 0)] * 129, []),
        ([], [RangeOp(prefix + b"%03d" % i) for i in range(129)]),
    ):
        with pytest.raises(TooManyOpsError) as info:
            await store.txn(*args)
        assert info.value.text == "etcdserver: too many operations in txn request"
    # 128 compares plus 128 ops per branch is allowed.
    cmp = [Compare.version(prefix + b"000", "=", 1)] * 128
    assert (await store.txn(cmp, [RangeOp(prefix + b"000")] * 128)).succeeded
    assert await store.current_revision() == r0 + 1


async def test_duplicate_keys(store, prefix):
    k, other = prefix + b"k", prefix + b"other"
    await store.put(k, b"0")
    r0 = await store.current_revision()
    for success in (
        [PutOp(k, b"1"), PutOp(k, b"2")],
        [PutOp(k, b"1"), DeleteOp(k)],
        [DeleteOp(k), PutOp(k, b"1")],
        [PutOp(k, b"1"), DeleteOp(prefix, prefix_end(prefix))],
        [PutOp(k, b"1"), TxnOp([], [PutOp(k, b"2")])],
        [TxnOp([], [PutOp(k, b"2")]), TxnOp([], [PutOp(k, b"3")])],
    ):
        with pytest.raises(DuplicateKeyError) as info:
            await store.txn([], success)
        assert info.value.text == "etcdserver: duplicate key given in txn request"
    assert await store.current_revision() == r0
    assert (await store.get(k)).value == b"0"

    # Allowed: the two branches may write the same key; so may the two branches of a
    # nested txn; deletes may overlap each other; a read may touch a written key.
    assert (await store.txn([], [PutOp(k, b"1")], [PutOp(k, b"2")])).succeeded
    assert (await store.txn([], [TxnOp([], [PutOp(k, b"3")], [PutOp(k, b"4")])])).succeeded
    assert (await store.txn([], [DeleteOp(other), DeleteOp(prefix, prefix_end(prefix))])).succeeded
    assert (await store.txn([], [PutOp(k, b"5"), RangeOp(k)])).responses[1].kvs[0].value == b"5"


async def test_failed_txn_applies_nothing(store, prefix):
    a = prefix + b"a"
    r0 = await store.current_revision()
    with pytest.raises(LeaseNotFoundError):
        await store.txn([], [PutOp(a, b"1"), PutOp(prefix + b"b", b"2", lease=0x7EAD)])
    with pytest.raises(EmptyKeyError):
        await store.txn([], [PutOp(a, b"1"), PutOp(b"", b"2")])
    with pytest.raises(EmptyKeyError):
        await store.txn([Compare.version(b"", "=", 0)], [PutOp(a, b"1")])
    assert await store.get(a) is None
    assert await store.current_revision() == r0


async def test_kubernetes_optimistic_update(store, prefix):
    """Txn(If mod_revision == X).Then(Put).Else(Get), as the API server writes."""
    k = prefix + b"pods/default/p1"

    async def update(expected_mod: int, value: bytes) -> TxnResult:
        return await store.txn(
            [Compare.mod_revision(k, "=", expected_mod)], [PutOp(k, value)], [RangeOp(k)]
        )

    created = await update(0, b"v1")  # create: mod_revision == 0 means "absent"
    assert created.succeeded
    rev1 = created.responses[0].revision
    conflict = await update(0, b"again")
    assert not conflict.succeeded
    current = conflict.responses[0].kvs[0]
    assert (current.value, current.mod_revision) == (b"v1", rev1)
    ok = await update(rev1, b"v2")
    assert ok.succeeded and ok.revision == rev1 + 1
    stale = await update(rev1, b"v3")
    assert not stale.succeeded and stale.responses[0].kvs[0].value == b"v2"
    assert stale.revision == ok.revision
