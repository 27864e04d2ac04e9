"""The scheduling loop with an in-memory Api: assume then bind, failures reported once,
a rejected binding forgotten and retried, preemption deleting its victims."""
import asyncio

from kubeplane.scheduler.scheduler import Scheduler
from sched_objects import node, pod


class FakeApi:
    def __init__(self, sched_ref, fail_binds=0):
        self.ref = sched_ref
        self.bound = {}
        self.statuses = []
        self.events = []
        self.deleted = []
        self.fail_binds = fail_binds

    async def bind(self, p, node_name):
        await asyncio.sleep(0.001)
        if self.fail_binds:
            self.fail_binds -= 1
            raise RuntimeError("conflict")
        self.bound[p.key] = node_name
        # the informer then reports the bound pod
        self.ref[0].on_pod_update(p.pod, {**p.pod, "spec": {**p.pod["spec"], "nodeName": node_name}})

    async def update_status(self, p, cond, nominated):
        self.statuses.append((p.key, cond and cond["message"], nominated))

    async def delete_victim(self, v, preemptor, node_name):
        self.deleted.append(v.key)
        self.ref[0].on_pod_delete(v.pod)

    def event(self, p, type_, reason, message):
        self.events.append((p.key, reason, message))


async def _run(s, until, timeout=5.0):
    task = asyncio.create_task(s.run())
    try:
        for _ in range(int(timeout / 0.01)):
            if until():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("timed out")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_pods_are_bound_and_counted():
    ref = []
    api = FakeApi(ref)
    s = Scheduler(api, seed=1)
    ref.append(s)
    for i in range(4):
        s.on_node_add(node(f"n{i}", cpu="2"))
    for i in range(8):
        s.on_pod_add(pod(f"p{i}", cpu="1"))
    await _run(s, lambda: len(api.bound) == 8)
    per_node = {}
    for n in api.bound.values():
        per_node[n] = per_node.get(n, 0) + 1
    assert sorted(per_node.values()) == [2, 2, 2, 2]
    assert s.cache.sizes() == {"nodes": 4, "pods": 8, "assumed_pods": 0}
    assert sum(1 for e in api.events if e[1] == "Scheduled") == 8


async def test_unschedulable_pod_gets_condition_and_event_then_fits_after_a_node_arrives():
    ref = []
    api = FakeApi(ref)
    s = Scheduler(api, seed=1)
    ref.append(s)
    s.on_node_add(node("small", cpu="1"))
    s.on_pod_add(pod("big", cpu="3"))
    await _run(s, lambda: api.statuses)
    msg = "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.."
    assert api.statuses == [("default/big", msg, None)]
    assert ("default/big", "FailedScheduling", msg) in api.events
    assert s.queue.counts["unschedulable"] == 1
    s.on_node_add(node("large", cpu="4"))           # NodeAdd moves it
    await _run(s, lambda: api.bound)
    assert api.bound == {"default/big": "large"}


async def test_a_rejected_binding_is_forgotten_and_retried():
    ref = []
    api = FakeApi(ref, fail_binds=1)
    s = Scheduler(api, seed=1, initial_backoff=0.05)
    ref.append(s)
    s.on_node_add(node("n", cpu="1"))
    s.on_pod_add(pod("p", cpu="1"))
    await _run(s, lambda: api.bound)
    assert api.bound == {"default/p": "n"}
    assert any("binding rejected" in (m or "") for _, m, _ in api.statuses)


async def test_preemption_deletes_the_victim_and_the_preemptor_lands():
    ref = []
    api = FakeApi(ref)
    s = Scheduler(api, seed=1)
    ref.append(s)
    s.on_node_add(node("n", cpu="2"))
    s.on_pod_add(pod("victim", cpu="2", priority=1, node_name="n"))
    s.on_pod_add(pod("boss", cpu="2", priority=1000))
    await _run(s, lambda: api.bound)
    assert api.deleted == ["default/victim"]
    assert api.bound == {"default/boss": "n"}
    assert ("default/boss", "0/1 nodes are available: 1 Insufficient cpu.", "n") in api.statuses


async def test_gated_pods_wait_until_their_gates_are_removed():
    ref = []
    api = FakeApi(ref)
    s = Scheduler(api, seed=1)
    ref.append(s)
    s.on_node_add(node("n", cpu="2"))
    gated = pod("g", cpu="1", schedulingGates=[{"name": "example.com/wait"}])
    s.on_pod_add(gated)
    assert "default/g" not in s.queue and s.gated == {"default/g"}
    open_ = pod("g", cpu="1")
    s.on_pod_update(gated, open_)
    assert s.gated == set()
    await _run(s, lambda: api.bound)
    assert api.bound == {"default/g": "n"}
