"""The scheduling queue: order, backoff, event gating, flushes (a fake clock)."""
import asyncio

import pytest

from kubeplane.scheduler import framework as fw
from kubeplane.scheduler.podinfo import pod_info
from kubeplane.scheduler.queue import SchedulingQueue
from sched_objects import pod


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


INTEREST = {fw.NODE_ADD: {"NodeResourcesFit", "TaintToleration"}, fw.POD_DELETE: {"NodeResourcesFit"},
            fw.POD_ADD: {"InterPodAffinity"}}


def make():
    clock = Clock()
    return SchedulingQueue(lambda ev: INTEREST.get(ev, set()), clock=clock), clock


def pop(q):
    return asyncio.run(asyncio.wait_for(q.pop(), 1))


def test_priority_then_arrival_order():
    q, clock = make()
    for name, prio in (("low", 0), ("high", 100), ("low2", 0), ("mid", 10)):
        q.add(pod_info(pod(name, priority=prio)))
        clock.t += 1
    assert [pop(q).info.name for _ in range(4)] == ["high", "mid", "low", "low2"]


def test_backoff_doubles_from_one_second_to_ten():
    q, clock = make()
    q.add(pod_info(pod("p")))
    waits = []
    for _ in range(6):
        qp = pop(q)
        q.requeue(qp, set(), error=True)
        waits.append(q.backoff_expiry(qp) - clock.t)
        assert q.counts["backoff"] == 1
        clock.t += 0.5
        assert q.flush_backoff() == 0 or waits[-1] <= 0.5
        clock.t += 20
        assert q.flush_backoff() == 1
    assert waits == [1, 2, 4, 8, 10, 10]


def test_unschedulable_pods_move_only_on_events_their_plugins_registered():
    q, clock = make()
    q.add(pod_info(pod("cpu")))
    q.add(pod_info(pod("aff")))
    a, b = pop(q), pop(q)
    q.requeue(a, {"NodeResourcesFit"})
    q.requeue(b, {"InterPodAffinity"})
    q.move_request_cycle = -1
    assert q.counts["unschedulable"] == 2
    clock.t += 60                      # past their backoff
    assert q.move(fw.NODE_ADD) == 1    # helps NodeResourcesFit only
    assert pop(q).info.name == "cpu"
    assert q.move(fw.POD_ADD) == 1
    assert pop(q).info.name == "aff"


def test_moved_pod_still_backing_off_goes_to_backoff():
    q, clock = make()
    q.add(pod_info(pod("p")))
    qp = pop(q)
    q.requeue(qp, {"NodeResourcesFit"})
    q.move_request_cycle = -1
    q.unschedulable  # noqa: B018
    assert q.move(fw.POD_DELETE) == 1
    assert q.counts == {"active": 0, "backoff": 1, "unschedulable": 0}


def test_an_event_during_the_cycle_sends_the_failure_to_backoff():
    q, clock = make()
    q.add(pod_info(pod("p")))
    qp = pop(q)
    q.move(fw.NODE_ADD)                # while the pod was being scheduled
    q.requeue(qp, {"NodeResourcesFit"})
    assert q.counts["backoff"] == 1 and q.counts["unschedulable"] == 0


def test_unschedulable_flush_after_five_minutes_and_update_moves():
    q, clock = make()
    q.add(pod_info(pod("p")))
    qp = pop(q)
    q.move_request_cycle = -1
    q.requeue(qp, {"NodeAffinity"})
    clock.t += 299
    assert q.flush_unschedulable() == 0
    clock.t += 2
    assert q.flush_unschedulable() == 1 and q.counts["active"] == 1
    qp = pop(q)
    q.requeue(qp, {"NodeAffinity"})
    q.move_request_cycle = -1
    clock.t += 100
    q.update(pod_info(pod("p", labels={"changed": "yes"})))   # the pod itself changed
    assert q.counts["active"] == 1


def test_delete_removes_it_everywhere():
    q, clock = make()
    q.add(pod_info(pod("p")))
    q.delete("default/p")
    assert "default/p" not in q and q.counts["active"] == 0

    async def nothing():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(q.pop(), 0.05)
    asyncio.run(nothing())
