"""Watch conformance: start revisions, ranges, prev_kv, tombstones, filters, ordering,
progress notifications, cancel, many watchers."""

from __future__ import annotations

import asyncio

import pytest

from kubeplane.store.errors import InvalidWatchRangeError
from kubeplane.store.types import ALL_KEYS, DeleteOp, EventType, KeyValue, PutOp, prefix_end

from store_helpers import EventReader, collect_events, events_until, next_events, next_response, summary

PUT, DELETE = EventType.PUT, EventType.DELETE


async def test_watch_from_revision_is_inclusive(store, prefix):
    k = prefix + b"k"
    r1 = (await store.put(k, b"1")).revision
    r2 = (await store.put(k, b"2")).revision
    async with await store.watch(k, start_revision=r1) as w:
        events = await collect_events(w, 2)
        assert summary(events) == [("PUT", k, b"1", r1), ("PUT", k, b"2", r2)]
        r3 = (await store.put(k, b"3")).revision
        assert summary(await collect_events(w, 1)) == [("PUT", k, b"3", r3)]
    async with await store.watch(k, start_revision=r2) as w:
        assert summary(await collect_events(w, 2)) == [("PUT", k, b"2", r2), ("PUT", k, b"3", r3)]


async def test_watch_from_now_sees_only_later_changes(store, prefix):
    k = prefix + b"k"
    await store.put(k, b"old")
    async with await store.watch(k) as w:
        r = (await store.put(k, b"new")).revision
        resp = await next_events(w)
        assert summary(resp.events) == [("PUT", k, b"new", r)]
        assert resp.revision >= r


async def test_watch_event_fields(store, prefix):
    k = prefix + b"k"
    async with await store.watch(k, prev_kv=True) as w:
        r1 = (await store.put(k, b"1")).revision
        r2 = (await store.put(k, b"2")).revision
        r3 = (await store.delete(k)).revision
        created, updated, deleted = await collect_events(w, 3)
    assert created.type == PUT and created.kv == KeyValue(k, r1, r1, 1, b"1") and created.prev_kv is None
    assert updated.kv == KeyValue(k, r1, r2, 2, b"2") and updated.prev_kv == created.kv
    # A delete event carries a tombstone: key and mod_revision only.
    assert deleted.type == DELETE and deleted.kv == KeyValue(k, 0, r3, 0, b"")
    assert deleted.prev_kv == updated.kv


async def test_watch_without_prev_kv(store, prefix):
    k = prefix + b"k"
    await store.put(k, b"1")
    async with await store.watch(k) as w:
        await store.put(k, b"2")
        await store.delete(k)
        events = await collect_events(w, 2)
    assert [e.prev_kv for e in events] == [None, None]


async def test_watch_key_prefix_and_ranges(store, prefix):
    p = prefix + b"dir/"
    single = await store.watch(p + b"a")
    ranged = await store.watch(p + b"a", p + b"c")
    prefixed = await store.watch(p, prefix_end(p))
    from_key = await store.watch(p + b"b", ALL_KEYS)
    try:
        for name in (b"a", b"aa", b"b", b"c", b"zz"):
            await store.put(p + name, name)
        stop = (await store.put(p + b"zzz-stop", b"stop")).revision
        await store.put(prefix + b"elsewhere", b"x")  # outside all but from_key
        await store.put(p + b"a", b"a2")

        assert [e.kv.value for e in await collect_events(single, 2)] == [b"a", b"a2"]
        assert [e.kv.value for e in await collect_events(ranged, 4)] == [b"a", b"aa", b"b", b"a2"]
        reader = EventReader(prefixed)
        got = await reader.until(p + b"zzz-stop")
        assert [e.kv.value for e in got] == [b"a", b"aa", b"b", b"c", b"zz", b"stop"]
        assert got[-1].kv.mod_revision == stop
        assert [e.kv.value for e in await reader.take(1)] == [b"a2"]
        got = await EventReader(from_key).until(p + b"zzz-stop")
        assert [e.kv.value for e in got] == [b"b", b"c", b"zz", b"stop"]
    finally:
        for w in (single, ranged, prefixed, from_key):
            await w.cancel()


async def test_watch_filters(store, prefix):
    k = prefix + b"k"
    no_puts = await store.watch(k, filter_put=True)
    no_deletes = await store.watch(k, filter_delete=True)
    try:
        r1 = (await store.put(k, b"1")).revision
        r2 = (await store.delete(k)).revision
        r3 = (await store.put(k, b"2")).revision
        r4 = (await store.delete(k)).revision
        assert [(e.type, e.kv.mod_revision) for e in await collect_events(no_puts, 2)] == [(DELETE, r2), (DELETE, r4)]
        assert [(e.type, e.kv.mod_revision) for e in await collect_events(no_deletes, 2)] == [(PUT, r1), (PUT, r3)]
    finally:
        await no_puts.cancel()
        await no_deletes.cancel()


async def test_events_in_order_exactly_once(store, prefix):
    p = prefix + b"w/"
    async with await store.watch(p, prefix_end(p), prev_kv=True) as w:
        expected = []
        for i in range(20):
            key = p + b"%02d" % (i % 5)
            if i % 7 == 6:
                rev = (await store.delete(key)).revision
                expected.append(("DELETE", key, b"", rev))
            else:
                rev = (await store.put(key, b"v%d" % i)).revision
                expected.append(("PUT", key, b"v%d" % i, rev))
        # One txn: several events, one revision, in op order, delivered together.
        r = await store.current_revision()
        txn = await store.txn([], [PutOp(p + b"t1", b"x"), PutOp(p + b"t0", b"y"), DeleteOp(p + b"00")])
        assert txn.revision == r + 1
        expected += [("PUT", p + b"t1", b"x", r + 1), ("PUT", p + b"t0", b"y", r + 1), ("DELETE", p + b"00", b"", r + 1)]
        stop = (await store.put(p + b"stop", b"")).revision
        expected.append(("PUT", p + b"stop", b"", stop))
        got = await events_until(w, p + b"stop")
    assert summary(got) == expected
    revisions = [e.kv.mod_revision for e in got]
    assert revisions == sorted(revisions)


async def test_txn_events_arrive_in_one_response(store, prefix):
    p = prefix + b"t/"
    async with await store.watch(p, prefix_end(p)) as w:
        res = await store.txn([], [PutOp(p + b"a", b"1"), PutOp(p + b"b", b"2"), PutOp(p + b"c", b"3")])
        resp = await next_events(w)
        assert [e.kv.key for e in resp.events] == [p + b"a", p + b"b", p + b"c"]
        assert {e.kv.mod_revision for e in resp.events} == {res.revision}
        assert resp.revision >= res.revision


async def test_watch_future_start_revision(store, prefix):
    k = prefix + b"k"
    r = await store.current_revision()
    async with await store.watch(k, start_revision=r + 2) as w:
        await store.put(k, b"too early")  # r + 1
        r2 = (await store.put(k, b"wanted")).revision
        assert r2 == r + 2
        assert summary(await collect_events(w, 1)) == [("PUT", k, b"wanted", r2)]


async def test_request_progress(store, prefix):
    k = prefix + b"k"
    async with await store.watch(k) as w:
        r = (await store.put(k, b"1")).revision
        await next_events(w)
        await store.put(prefix + b"unwatched", b"x")
        current = await store.current_revision()
        await w.request_progress()
        resp = await next_response(w)
        assert resp.is_progress_notify and resp.events == []
        assert resp.revision == current > r


async def test_periodic_progress_notify(store, prefix):
    """Targets run with a 0.5 s progress-notify interval (tests/store/conftest.py)."""
    k = prefix + b"k"
    quiet = await store.watch(k)  # did not ask: gets nothing
    async with await store.watch(k, progress_notify=True) as w:
        await store.put(prefix + b"unwatched", b"x")
        current = await store.current_revision()
        resp = await next_response(w, timeout=3.0)
        assert resp.is_progress_notify
        assert resp.revision == current
        r = (await store.put(k, b"v")).revision
        resp = await next_events(w, timeout=3.0)
        assert resp.events[0].kv.mod_revision == r
        resp = await next_response(w, timeout=3.0)
        assert resp.is_progress_notify and resp.revision >= r
    try:
        resp = await next_response(quiet, timeout=1.5)
        assert resp.events and resp.events[0].kv.mod_revision == r
    finally:
        await quiet.cancel()


async def test_cancel_stops_iteration(store, prefix):
    k = prefix + b"k"
    w = await store.watch(k)
    await store.put(k, b"1")
    await next_events(w)
    waiter = asyncio.ensure_future(next_response(w, timeout=5.0))
    await asyncio.sleep(0.05)
    await w.cancel()
    with pytest.raises(StopAsyncIteration):
        await waiter  # a consumer blocked in iteration is released
    await store.put(k, b"2")
    with pytest.raises(StopAsyncIteration):
        await next_response(w, timeout=1.0)
    await w.cancel()  # cancelling twice is harmless
    async for _ in w:  # and iteration is simply over
        raise AssertionError("no responses after cancel")


async def test_invalid_watch_range(store, prefix):
    for end in (prefix + b"a", prefix + b"b"):  # range_end before or equal to key
        with pytest.raises(InvalidWatchRangeError) as info:
            await store.watch(prefix + b"b", end)
        assert info.value.text == "mvcc: watcher range is empty"
        assert info.value.grpc_code == "INVALID_ARGUMENT"


async def test_many_concurrent_watchers(store, prefix):
    p = prefix + b"many/"
    watchers = [await store.watch(p, prefix_end(p), start_revision=0) for _ in range(40)]
    try:
        expected = []
        for i in range(10):
            rev = (await store.put(p + b"%d" % (i % 3), b"%d" % i)).revision
            expected.append(("PUT", p + b"%d" % (i % 3), b"%d" % i, rev))
        results = await asyncio.gather(*(collect_events(w, 10) for w in watchers))
        for events in results:
            assert summary(events) == expected
    finally:
        await asyncio.gather(*(w.cancel() for w in watchers))


async def test_store_close_ends_watches(store_factory, prefix):
    store = await store_factory()
    w = await store.watch(prefix + b"k")
    waiter = asyncio.ensure_future(next_response(w, timeout=5.0))
    await asyncio.sleep(0.05)
    await store.close()
    with pytest.raises(StopAsyncIteration):
        await waiter
