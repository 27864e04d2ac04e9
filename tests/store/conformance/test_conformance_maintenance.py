"""Maintenance conformance: info, status, members, snapshot, defragment, alarms."""

from __future__ import annotations

from kubeplane.store.types import prefix_end


async def test_info(store):
    info = store.info
    assert info.implementation and info.version
    assert isinstance(info.progress_requests_reliable, bool)


async def test_status(store, prefix):
    r = (await store.put(prefix + b"k", b"v")).revision
    status = await store.status()
    assert status.version
    assert status.revision == r == await store.current_revision()
    assert status.db_size > 0
    assert 0 < status.db_size_in_use <= status.db_size
    assert 0 <= status.compact_revision <= status.revision
    assert status.alarms == []


async def test_status_reports_compacted_revision(store, prefix):
    await store.put(prefix + b"a", b"1")
    r = (await store.put(prefix + b"a", b"2")).revision
    await store.put(prefix + b"b", b"3")
    before = (await store.status()).compact_revision
    assert before < r
    await store.compact(r)
    assert (await store.status()).compact_revision == r
    r2 = (await store.put(prefix + b"c", b"4")).revision
    await store.compact(r2)
    assert (await store.status()).compact_revision == r2


async def test_members(store):
    members = await store.members()
    assert len(members) >= 1
    ids = [m.id for m in members]
    assert all(ids) and len(set(ids)) == len(ids)
    assert all(isinstance(m.name, str) and isinstance(m.client_urls, list) for m in members)
    status = await store.status()
    assert status.member_id in ids
    assert status.leader in ids


async def test_snapshot(store, prefix):
    await store.put(prefix + b"k", b"snapshot me" * 100)
    total = 0
    chunks = 0
    async for blob in store.snapshot():
        assert isinstance(blob, bytes)
        total += len(blob)
        chunks += 1
        assert chunks < 100_000
    assert total > 1000


async def test_defragment_keeps_data(store, prefix):
    for i in range(20):
        await store.put(prefix + b"%02d" % i, b"x" * 1000)
    await store.delete(prefix + b"00", prefix + b"10")
    r = await store.current_revision()
    await store.defragment()
    res = await store.range(prefix, prefix_end(prefix))
    assert [kv.key for kv in res.kvs] == [prefix + b"%02d" % i for i in range(10, 20)]
    assert await store.current_revision() == r
    assert (await store.status()).db_size > 0


async def test_disarm_without_alarms(store):
    assert await store.alarms() == []
    await store.disarm()
    assert await store.alarms() == []
