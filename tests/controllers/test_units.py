"""Upstream behaviours of the controllers that need no server: the Deployment's surge and
unavailable arithmetic, proportional scaling, the ReplicaSet's deletion ranking and
slow-start batches, expectations, selectors, --controllers, the template hash's form,
and the work queue's metrics."""
from __future__ import annotations

import asyncio
import datetime as dt
import random
import re

import pytest

from kubeplane.controllers import deployment_util as du
from kubeplane.controllers.expectations import Expectations
from kubeplane.controllers.manager import OptionError, enabled_controllers
from kubeplane.controllers.metrics import Metrics
from kubeplane.controllers.podutil import pods_to_delete
from kubeplane.controllers.queue import MeteredQueue
from kubeplane.controllers.replicaset import slow_start_batch
from kubeplane.client.selectors import label_selector, from_map

NOW = 1_800_000_000.0


def ts(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def dep(replicas: int, surge="25%", unavailable="25%", strategy="RollingUpdate", status_replicas=0) -> dict:
    spec = {"replicas": replicas, "strategy": {"type": strategy}}
    if strategy == "RollingUpdate":
        spec["strategy"]["rollingUpdate"] = {"maxSurge": surge, "maxUnavailable": unavailable}
    return {"metadata": {"name": "d", "generation": 1}, "spec": spec, "status": {"replicas": status_replicas}}


def rs(name: str, replicas: int, created: float = NOW, available: int = 0, max_replicas: int | None = None) -> dict:
    ann = {du.MAX_REPLICAS: str(max_replicas)} if max_replicas is not None else {}
    return {"metadata": {"name": name, "creationTimestamp": ts(created), "annotations": ann},
            "spec": {"replicas": replicas}, "status": {"availableReplicas": available, "replicas": replicas}}


# --- fenceposts: surge rounds up, unavailable rounds down, never both 0 ---------------------
@pytest.mark.parametrize("surge,unavailable,desired,want", [
    ("25%", "25%", 10, (3, 2)),       # 2.5 -> 3 up, 2 down
    ("25%", "25%", 3, (1, 0)),        # 0.75 -> 1 up, 0 down
    ("25%", "25%", 1, (1, 0)),
    ("0%", "0%", 10, (0, 1)),         # both zero: unavailable becomes 1
    (0, 0, 5, (0, 1)),
    (2, "50%", 5, (2, 2)),            # 2.5 -> 2 down
    ("10%", 1, 0, (0, 1)),            # 0 replicas: surge 0, unavailable 1
    ("1%", "99%", 100, (1, 99)),
    ("3", "1", 10, (3, 1)),           # an int as a string
])
def test_resolve_fenceposts(surge, unavailable, desired, want):
    assert du.resolve_fenceposts(surge, unavailable, desired) == want


def test_max_unavailable_is_capped_and_zero_for_recreate():
    assert du.max_unavailable(dep(2, surge=0, unavailable=5)) == 2
    assert du.max_unavailable(dep(0)) == 0
    assert du.max_unavailable(dep(10, strategy="Recreate")) == 0
    assert du.max_surge(dep(10, strategy="Recreate")) == 0


def test_new_rs_new_replicas_respects_the_surge():
    d = dep(10)                                   # surge 3 -> at most 13 pods
    old, new = rs("old", 10), rs("new", 0)
    assert du.new_rs_new_replicas(d, [old, new], new) == 3
    old, new = rs("old", 8), rs("new", 3)         # 11 now: 2 more allowed
    assert du.new_rs_new_replicas(d, [old, new], new) == 5
    old, new = rs("old", 10), rs("new", 3)        # at 13: no growth
    assert du.new_rs_new_replicas(d, [old, new], new) == 3
    old, new = rs("old", 0), rs("new", 9)         # never past replicas
    assert du.new_rs_new_replicas(d, [old, new], new) == 10
    assert du.new_rs_new_replicas(dep(7, strategy="Recreate"), [rs("new", 0)], rs("new", 0)) == 7


def test_proportional_scaling_in_the_middle_of_a_rollout():
    # upstream's TestScale "proportional scaling: 5 -> 10" style case: a rollout with
    # old=5 (max-replicas 6) and new=1 scaled from 5 to 10 (surge 25% -> 3, allowed 13)
    d = dep(10)
    old = rs("old", 5, created=NOW - 100, max_replicas=6)
    new = rs("new", 1, created=NOW, max_replicas=6)
    sizes, op = du.proportional_sizes(d, [old, new])
    assert op == "up"
    assert sum(sizes.values()) == 13
    assert sizes == {"old": 11, "new": 2}          # 5*13/6 = 10.83 -> 11 (+6), 1*13/6 = 2.17 -> 2 (+1)
    # scaling down spreads the removal the same way, larger sets first
    d = dep(2, surge=0, unavailable=1)
    old = rs("old", 6, created=NOW - 100, max_replicas=10)
    new = rs("new", 4, created=NOW, max_replicas=10)
    sizes, op = du.proportional_sizes(d, [old, new])
    assert op == "down" and sum(sizes.values()) == 2 and min(sizes.values()) >= 0
    assert sizes == {"old": 1, "new": 1}


def test_proportion_leftover_goes_to_the_first_set():
    d = dep(3, surge=0, unavailable=1)
    a, b, c = rs("a", 1, NOW - 3, max_replicas=2), rs("b", 1, NOW - 2, max_replicas=2), rs("c", 0, NOW - 1)
    sizes, op = du.proportional_sizes(d, [a, b, c])
    assert op == "up" and sum(sizes.values()) == 3


def test_hash_has_upstreams_form_and_changes_with_collisions():
    t = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
    h = du.compute_hash(t, None)
    assert re.fullmatch(r"[bcdfghjklmnpqrstvwxz2456789]{1,10}", h)
    assert du.compute_hash(t, None) == h == du.compute_hash(t, 0)
    assert du.compute_hash(t, 1) != h
    labelled = {"metadata": {"labels": {"app": "web", du.POD_TEMPLATE_HASH: h}}, "spec": t["spec"]}
    assert du.compute_hash(labelled, None) == h and du.equal_ignore_hash(labelled, t)
    assert du.compute_hash({**t, "spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}, None) != h


def test_conditions_keep_transition_time_when_only_reason_changes():
    st: dict = {}
    du.set_condition(st, {**du.new_condition("Progressing", "True", du.NEW_RS_CREATED, "x"),
                          "lastTransitionTime": "2020-01-01T00:00:00Z"})
    du.set_condition(st, du.new_condition("Progressing", "True", du.RS_UPDATED, "y"))
    [c] = st["conditions"]
    assert c["reason"] == du.RS_UPDATED and c["lastTransitionTime"] == "2020-01-01T00:00:00Z"
    du.set_condition(st, du.new_condition("Progressing", "False", du.TIMED_OUT, "z"))
    assert st["conditions"][0]["lastTransitionTime"] != "2020-01-01T00:00:00Z"


def test_deployment_complete_and_timed_out():
    d = dep(3)
    assert du.deployment_complete(d, {"replicas": 3, "updatedReplicas": 3, "availableReplicas": 3,
                                      "observedGeneration": 1})
    assert not du.deployment_complete(d, {"replicas": 4, "updatedReplicas": 3, "availableReplicas": 3,
                                          "observedGeneration": 1})
    d["spec"]["progressDeadlineSeconds"] = 10
    cond = {"type": "Progressing", "status": "True", "reason": du.RS_UPDATED, "lastUpdateTime": ts(NOW - 11)}
    assert du.deployment_timed_out(d, {"conditions": [cond]}, NOW)
    assert not du.deployment_timed_out(d, {"conditions": [{**cond, "lastUpdateTime": ts(NOW - 5)}]}, NOW)
    assert not du.deployment_timed_out(d, {"conditions": [{**cond, "reason": du.NEW_RS_AVAILABLE}]}, NOW)


# --- the ReplicaSet's deletion ranking (upstream's ActivePodsWithRanks) ----------------------
def pod(name: str, node: str = "", phase: str = "Running", ready: bool = True, ready_at: float = NOW - 1000,
        created: float = NOW - 2000, restarts: int = 0, cost: int | None = None, uid: str | None = None) -> dict:
    p = {"metadata": {"name": name, "uid": uid or name, "creationTimestamp": ts(created), "annotations": {}},
         "spec": {"nodeName": node},
         "status": {"phase": phase, "containerStatuses": [{"restartCount": restarts}],
                    "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                    "lastTransitionTime": ts(ready_at)}]}}
    if cost is not None:
        p["metadata"]["annotations"]["controller.kubernetes.io/pod-deletion-cost"] = str(cost)
    return p


def names(pods):
    return [p["metadata"]["name"] for p in pods]


def test_deletion_order_follows_upstreams_steps():
    pods = [
        pod("running-old", "n3", ready_at=NOW - 100000, created=NOW - 200000),
        pod("unassigned", "", phase="Pending", ready=False),
        pod("pending", "n1", phase="Pending", ready=False),
        pod("unknown", "n1", phase="Unknown", ready=False),
        pod("not-ready", "n1", ready=False),
        pod("cheap", "n2", cost=-10),
        pod("restarts", "n3", restarts=5, ready_at=NOW - 100000, created=NOW - 200000),
    ]
    random.Random(1).shuffle(pods)
    order = names(pods_to_delete(pods, pods, 6, now=NOW))
    assert order == ["unassigned", "pending", "unknown", "not-ready", "cheap", "restarts"]


def test_deletion_prefers_doubled_up_nodes_then_recently_ready_then_newer():
    related = [pod("a1", "a"), pod("a2", "a"), pod("a3", "a"), pod("b1", "b")]
    assert names(pods_to_delete(related, related, 1, now=NOW))[0].startswith("a")
    # same rank: the more recently ready goes first (log2 buckets of the ready age)
    p_old = pod("ready-long-ago", "x", ready_at=NOW - 10000)
    p_new = pod("ready-just-now", "y", ready_at=NOW - 10)
    assert names(pods_to_delete([p_old, p_new], [p_old, p_new], 1, now=NOW)) == ["ready-just-now"]
    # same log2 bucket of ready age: the smaller UID
    p1 = pod("p1", "x", ready_at=NOW - 1000, uid="b")
    p2 = pod("p2", "y", ready_at=NOW - 1001, uid="a")
    assert names(pods_to_delete([p1, p2], [p1, p2], 1, now=NOW)) == ["p2"]
    # equal ready times: more restarts first, then newer first
    q1 = pod("young", "x", created=NOW - 100)
    q2 = pod("old", "y", created=NOW - 100000)
    assert names(pods_to_delete([q2, q1], [q1, q2], 1, now=NOW)) == ["young"]
    assert names(pods_to_delete([q1, q2], [q1, q2], 5, now=NOW)) == ["young", "old"]  # diff >= len: all


def test_slow_start_batches_double_and_stop_at_the_first_failure():
    async def run(count, fail_at):
        calls = []

        async def fn():
            calls.append(1)
            if len(calls) == fail_at:
                raise RuntimeError("quota")
        ok, err = await slow_start_batch(count, 1, fn)
        return ok, err, len(calls)
    assert asyncio.run(run(10, None)) == (10, None, 10)               # 1+2+4+3
    ok, err, calls = asyncio.run(run(10, 4))                          # batches 1, 2, then 4 (4th call fails)
    assert (ok, calls) == (6, 7) and isinstance(err, RuntimeError)
    assert asyncio.run(run(0, None)) == (0, None, 0)


def test_expectations():
    t = [0.0]
    e = Expectations(ttl=300, clock=lambda: t[0])
    assert e.satisfied("ns/rs")
    e.expect_creations("ns/rs", 2)
    assert not e.satisfied("ns/rs")
    e.creation_observed("ns/rs")
    assert not e.satisfied("ns/rs")
    e.creation_observed("ns/rs")
    assert e.satisfied("ns/rs")
    e.expect_deletions("ns/rs", ["ns/p1", "ns/p2"])
    e.deletion_observed("ns/rs", "ns/p1")
    e.deletion_observed("ns/rs", "ns/p1")            # the same delete seen twice counts once
    assert e.pending("ns/rs") == (0, 1) and not e.satisfied("ns/rs")
    t[0] = 301.0                                       # a lost event: expired after the TTL
    assert e.satisfied("ns/rs")


def test_selectors():
    m = label_selector({"matchLabels": {"app": "web"},
                             "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]},
                                                  {"key": "env", "operator": "NotIn", "values": ["prod"]},
                                                  {"key": "x", "operator": "DoesNotExist"}]})
    assert m({"app": "web", "tier": "a"})
    assert not m({"app": "web", "tier": "c"})
    assert not m({"app": "web", "tier": "a", "env": "prod"})
    assert not m({"app": "web", "tier": "a", "x": ""})
    assert label_selector({})({"any": "thing"}) and not label_selector(None)({})
    assert not from_map({})({"a": "b"}) and from_map({"a": "b"})({"a": "b", "c": "d"})


def test_controllers_flag_as_upstream():
    assert "deployment" in enabled_controllers("*")
    assert "deployment" not in enabled_controllers("*,-deployment")
    assert enabled_controllers("replicaset") == ["replicaset"]
    with pytest.raises(OptionError, match='"nope" is not in the list of known controllers'):
        enabled_controllers("*,-nope")


def test_queue_metrics_use_upstreams_names():
    async def run():
        m = Metrics()
        q = MeteredQueue("deployment", m)
        q.add("a")
        q.add("a")                      # already queued: not an add
        q.add("b")
        key = await q.get()
        text = m.text().decode()
        assert 'workqueue_depth{name="deployment"} 1.0' in text
        assert 'workqueue_adds_total{name="deployment"} 2.0' in text
        assert 'workqueue_queue_duration_seconds_count{name="deployment"} 1.0' in text
        assert q.longest_running_seconds() > 0 and q.unfinished_seconds() > 0
        q.add_rate_limited(key)
        q.done(key)
        text = m.text().decode()
        assert 'workqueue_retries_total{name="deployment"} 1.0' in text
        assert 'workqueue_work_duration_seconds_count{name="deployment"} 1.0' in text
        assert 'workqueue_longest_running_processor_seconds{name="deployment"} 0.0' in text
        for name in ("workqueue_unfinished_work_seconds", "workqueue_queue_duration_seconds_bucket"):
            assert name in text
        q.shut_down()
    asyncio.run(run())
