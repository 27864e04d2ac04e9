"""Compaction conformance: reads and watches below the compacted revision fail."""

from __future__ import annotations

import pytest

from kubeplane.store.errors import CompactedError, FutureRevisionError
from kubeplane.store.types import prefix_end

from store_helpers import next_response


async def test_compaction_rules(store, prefix):
    k = prefix + b"k"
    r1 = (await store.put(k, b"1")).revision
    r2 = (await store.put(k, b"2")).revision
    r3 = (await store.put(prefix + b"other", b"x")).revision

    assert await store.compact(r2) == r3  # the header revision
    with pytest.raises(CompactedError) as info:
        await store.range(k, revision=r1)
    assert info.value.text == "etcdserver: mvcc: required revision has been compacted"
    assert info.value.grpc_code == "OUT_OF_RANGE"
    # The compacted revision itself stays readable, and so does everything after it.
    assert (await store.get(k, revision=r2)).value == b"2"
    assert (await store.range(prefix, prefix_end(prefix), revision=r3)).count == 2
    assert (await store.get(k)).value == b"2"
    # Compaction never changes the current revision.
    assert await store.current_revision() == r3

    # Compacting at or below the compacted revision again fails; above works.
    for rev in (r2, r1):
        with pytest.raises(CompactedError):
            await store.compact(rev)
    with pytest.raises(FutureRevisionError) as info:
        await store.compact(r3 + 100)
    assert info.value.text == "etcdserver: mvcc: required revision is a future revision"
    assert await store.compact(r3, physical=True) == r3
    assert (await store.status()).compact_revision == r3
    assert (await store.get(k)).value == b"2"


async def test_compaction_drops_deleted_keys_history(store, prefix):
    k = prefix + b"k"
    r1 = (await store.put(k, b"1")).revision
    r2 = (await store.delete(k)).revision
    r3 = (await store.put(prefix + b"after", b"x")).revision
    await store.compact(r2)
    assert await store.get(k, revision=r2) is None
    assert await store.get(k) is None
    with pytest.raises(CompactedError):
        await store.get(k, revision=r1)
    # A key re-created after compaction starts a new life.
    r4 = (await store.put(k, b"new")).revision
    kv = await store.get(k)
    assert (kv.create_revision, kv.version) == (r4, 1)
    assert r4 == r3 + 1


async def test_watch_from_compacted_revision_fails_on_iteration(store, prefix):
    k = prefix + b"k"
    r1 = (await store.put(k, b"1")).revision
    r2 = (await store.put(k, b"2")).revision
    await store.compact(r2)
    w = await store.watch(k, start_revision=r1)  # watch() itself does not raise
    try:
        with pytest.raises(CompactedError) as info:
            await next_response(w)
        assert info.value.compact_revision == r2
        with pytest.raises(StopAsyncIteration):
            await next_response(w)
    finally:
        await w.cancel()
    # Watching from the compacted revision itself works.
    async with await store.watch(k, start_revision=r2) as w2:
        resp = await next_response(w2)
        assert [(e.kv.value, e.kv.mod_revision) for e in resp.events] == [(b"2", r2)]
