"""Lease conformance: grant, keep-alive, revoke, TTL, listing, expiry, errors."""

from __future__ import annotations

import asyncio

import pytest

from kubeplane.store.errors import LeaseExistsError, LeaseNotFoundError, LeaseTTLTooLargeError
from kubeplane.store.types import EventType, prefix_end

from store_helpers import collect_events, wait_until

UNKNOWN = 0x5EED0000DEAD


async def test_grant_ttl_keep_alive_revoke(store, prefix):
    grant = await store.lease_grant(30)
    assert grant.id > 0 and grant.ttl == 30
    info = await store.lease_time_to_live(grant.id)
    assert info.id == grant.id and info.granted_ttl == 30 and 0 < info.ttl <= 30
    assert grant.id in await store.lease_leases()
    assert await store.lease_keep_alive(grant.id) == 30

    k1, k2 = prefix + b"a", prefix + b"b"
    await store.put(k1, b"1", lease=grant.id)
    await store.put(k2, b"2", lease=grant.id)
    await store.put(prefix + b"free", b"3")
    info = await store.lease_time_to_live(grant.id, keys=True)
    assert sorted(info.keys) == [k1, k2]
    assert (await store.lease_time_to_live(grant.id)).keys == []  # only when asked

    r0 = await store.current_revision()
    rev = await store.lease_revoke(grant.id)
    # Revoking deletes the attached keys in one write.
    assert rev == r0 + 1 == await store.current_revision()
    left = await store.range(prefix, prefix_end(prefix))
    assert [kv.key for kv in left.kvs] == [prefix + b"free"]
    assert grant.id not in await store.lease_leases()
    assert (await store.lease_time_to_live(grant.id)).ttl == -1


async def test_revoking_a_lease_without_keys_does_not_advance_revision(store, prefix):
    lease = (await store.lease_grant(30)).id
    r0 = await store.current_revision()
    assert await store.lease_revoke(lease) == r0
    assert await store.current_revision() == r0


async def test_grant_with_id(store, prefix):
    wanted = 0x1D0000 + int.from_bytes(prefix[-6:], "big") % 100000
    grant = await store.lease_grant(20, wanted)
    try:
        assert grant.id == wanted
        with pytest.raises(LeaseExistsError) as info:
            await store.lease_grant(20, wanted)
        assert info.value.text == "etcdserver: lease already exists"
        assert info.value.grpc_code == "FAILED_PRECONDITION"
    finally:
        await store.lease_revoke(wanted)


async def test_grant_ttl_limits(store):
    with pytest.raises(LeaseTTLTooLargeError) as info:
        await store.lease_grant(9_000_000_001)
    assert info.value.text == "etcdserver: too large lease TTL"
    # The largest TTL is fine.
    big = await store.lease_grant(9_000_000_000)
    assert big.ttl == 9_000_000_000
    await store.lease_revoke(big.id)
    # etcd raises a tiny TTL to its minimum (1.5 x election timeout, 2 s by default).
    small = await store.lease_grant(1)
    assert 1 <= small.ttl <= 2
    await store.lease_revoke(small.id)


async def test_unknown_lease(store, prefix):
    with pytest.raises(LeaseNotFoundError) as info:
        await store.lease_keep_alive(UNKNOWN)
    assert info.value.text == "etcdserver: requested lease not found"
    with pytest.raises(LeaseNotFoundError):
        await store.lease_revoke(UNKNOWN)
    info = await store.lease_time_to_live(UNKNOWN, keys=True)
    assert (info.id, info.ttl, info.keys) == (UNKNOWN, -1, [])
    with pytest.raises(LeaseNotFoundError):
        await store.put(prefix + b"k", b"v", lease=UNKNOWN)
    assert UNKNOWN not in await store.lease_leases()


async def test_lease_expiry_deletes_attached_keys(store, prefix):
    grant = await store.lease_grant(1)
    k1, k2 = prefix + b"a", prefix + b"b"
    r1 = (await store.put(k1, b"1", lease=grant.id)).revision
    await store.put(k2, b"2", lease=grant.id)
    await store.put(prefix + b"free", b"3")
    async with await store.watch(prefix, prefix_end(prefix), start_revision=r1, prev_kv=True) as w:
        put_events = await collect_events(w, 3)
        assert [e.type for e in put_events] == [EventType.PUT] * 3

        async def gone():
            return (await store.range(prefix, prefix_end(prefix), count_only=True)).count == 1

        await wait_until(gone, timeout=grant.ttl + 8)
        deletes = await collect_events(w, 2)
    assert sorted((e.type, e.kv.key) for e in deletes) == [(EventType.DELETE, k1), (EventType.DELETE, k2)]
    assert deletes[0].kv.mod_revision == deletes[1].kv.mod_revision  # one write
    assert sorted(e.prev_kv.value for e in deletes) == [b"1", b"2"]
    assert (await store.get(prefix + b"free")).value == b"3"
    assert (await store.lease_time_to_live(grant.id)).ttl == -1
    assert grant.id not in await store.lease_leases()
    with pytest.raises(LeaseNotFoundError):
        await store.lease_keep_alive(grant.id)


async def test_keep_alive_extends_life(store, prefix):
    grant = await store.lease_grant(1)
    k = prefix + b"k"
    await store.put(k, b"v", lease=grant.id)
    try:
        # Renew well within the TTL for longer than the TTL: the key must survive.
        for _ in range(4):
            await asyncio.sleep(grant.ttl / 3)
            assert await store.lease_keep_alive(grant.id) == grant.ttl
        assert await store.get(k) is not None
        assert (await store.lease_time_to_live(grant.id)).ttl > 0
    finally:
        await store.lease_revoke(grant.id)
