"""Leader election on a Lease in `kubeplane serve`: two candidates, one leader; handover
when the leader releases, when it stops renewing, and when its lease is taken away."""
from __future__ import annotations

import asyncio

import pytest

from kubeplane.client import LEASES, Client, Config, LeaderElector

TIMING = {"lease_duration": 1.5, "renew_deadline": 1.0, "retry_period": 0.2}


async def until(pred, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(0.02)


def candidate(c: Client, ns: str, ident: str, log: list[str], **kw) -> LeaderElector:
    async def lead() -> None:
        log.append(f"start {ident}")
        await asyncio.Event().wait()

    return LeaderElector(c, namespace=ns, name="lock", identity=ident, on_started_leading=lead,
                         on_stopped_leading=lambda: log.append(f"stop {ident}"), **{**TIMING, **kw})


async def test_one_leader_then_handover_on_release(cfg: Config, ns: str):
    log: list[str] = []
    async with Client(cfg) as c:
        slow = {"lease_duration": 5.0, "renew_deadline": 3.0}     # expiry would take 5 s
        a, b = candidate(c, ns, "a", log, **slow), candidate(c, ns, "b", log, **slow)
        ta, tb = asyncio.create_task(a.run()), asyncio.create_task(b.run())
        await until(lambda: a.is_leader or b.is_leader)
        await asyncio.sleep(1.0)                       # several renew periods: still exactly one
        assert [a.is_leader, b.is_leader].count(True) == 1
        leader, follower, tl = (a, b, ta) if a.is_leader else (b, a, tb)
        assert follower.leader == leader.identity
        lease = await c.get(LEASES.path(ns, "lock"))
        assert lease["spec"]["holderIdentity"] == leader.identity
        assert lease["spec"]["leaseDurationSeconds"] == 5
        tl.cancel()
        with pytest.raises(asyncio.CancelledError):
            await tl
        assert log[-1] == f"stop {leader.identity}" and not leader.is_leader
        released = await c.get(LEASES.path(ns, "lock"))
        await until(lambda: follower.is_leader, timeout=2.5)   # released: no 5 s lease_duration wait
        assert log[-1] == f"start {follower.identity}"
        assert released["spec"].get("holderIdentity", "") in ("", follower.identity)
        lease = await c.get(LEASES.path(ns, "lock"))
        assert lease["spec"]["leaseTransitions"] >= 1
        (tb if follower is b else ta).cancel()
        await asyncio.gather(ta, tb, return_exceptions=True)


async def test_follower_takes_over_a_leader_that_stopped_renewing(cfg: Config, ns: str):
    log: list[str] = []
    async with Client(cfg) as c:
        a = candidate(c, ns, "a", log, release_on_cancel=False)
        ta = asyncio.create_task(a.run())
        await until(lambda: a.is_leader)
        b = candidate(c, ns, "b", log)
        tb = asyncio.create_task(b.run())
        await asyncio.sleep(0.5)
        assert not b.is_leader
        ta.cancel()                                    # a dies without releasing
        await asyncio.gather(ta, return_exceptions=True)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await until(lambda: b.is_leader, timeout=5.0)
        assert loop.time() - t0 >= 1.0                 # it waited for the lease to expire
        tb.cancel()
        await asyncio.gather(tb, return_exceptions=True)


async def test_leader_steps_down_when_it_cannot_renew(cfg: Config, ns: str):
    """Someone else overwrites the lease: the leader's renewals fail, it gives up
    within renew_deadline, cancels its work, and campaigns again."""
    log: list[str] = []
    async with Client(cfg) as c:
        a = candidate(c, ns, "a", log)
        ta = asyncio.create_task(a.run())
        await until(lambda: a.is_leader)
        lease = await c.get(LEASES.path(ns, "lock"))
        lease["spec"]["holderIdentity"] = "intruder"
        lease["spec"]["leaseDurationSeconds"] = 3
        await c.update(LEASES.path(ns, "lock"), lease)
        await until(lambda: not a.is_leader, timeout=6.0)
        assert log == ["start a", "stop a"]
        assert a.leader == "intruder"
        await until(lambda: a.is_leader, timeout=10.0)  # the intruder never renews: a wins it back
        assert log == ["start a", "stop a", "start a"]
        ta.cancel()
        await asyncio.gather(ta, return_exceptions=True)


def test_timing_must_be_consistent():
    with pytest.raises(ValueError, match="lease_duration"):
        LeaderElector(None, name="x", identity="i", lease_duration=5, renew_deadline=5)
    with pytest.raises(ValueError, match="retry_period"):
        LeaderElector(None, name="x", identity="i", lease_duration=15, renew_deadline=2, retry_period=2)
