"""API Priority and Fairness core (kubeplane.apiserver.flowcontrol), without a server:
matching, the bootstrap configuration, shuffle sharding, fair queuing, seats, the
rejection reasons, reconfiguration, dangling schemas and the metrics."""
from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from kubeplane.apiserver.flowcontrol import (FlowController, Rejected, RequestDigest, UserInfo, bootstrap,
                                             flow_distinguisher, matches)
from kubeplane.apiserver.flowcontrol.queueset import HIGH_R, R_DECREMENT, RetryAfter, deal, hash_flow_id

AUTH = "system:authenticated"


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def user(name: str, *groups: str) -> UserInfo:
    return UserInfo(name, tuple(groups) or (AUTH,))


def res(u: UserInfo, verb: str, resource: str, namespace: str = "", group: str = "", sub: str = "",
        name: str = "") -> RequestDigest:
    return RequestDigest(u, verb, True, group, resource, sub, namespace, name)


def nonres(u: UserInfo, verb: str, path: str) -> RequestDigest:
    return RequestDigest(u, verb, False, path=path)


def pl(name: str, shares: int, queues: int | None = 64, hand: int = 1, qll: int = 50, uid: str = "") -> dict:
    if queues is None:
        lr = {"type": "Reject"}
    else:
        lr = {"type": "Queue", "queuing": {"queues": queues, "handSize": hand, "queueLengthLimit": qll}}
    return {"metadata": {"name": name, "uid": uid or f"uid-pl-{name}"},
            "spec": {"type": "Limited", "limited": {"nominalConcurrencyShares": shares, "limitResponse": lr}}}


def fs(name: str, level: str, precedence: int = 100, users: tuple[str, ...] = (), dist: str | None = "ByUser",
       uid: str = "") -> dict:
    subjects = ([{"kind": "User", "user": {"name": u}} for u in users] if users
                else [{"kind": "Group", "group": {"name": AUTH}}])
    spec = {"priorityLevelConfiguration": {"name": level}, "matchingPrecedence": precedence,
            "rules": [{"subjects": subjects,
                       "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"],
                                          "clusterScope": True, "namespaces": ["*"]}],
                       "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}]}]}
    if dist:
        spec["distinguisherMethod"] = {"type": dist}
    return {"metadata": {"name": name, "uid": uid or f"uid-fs-{name}"}, "spec": spec}


def controller(server_cl: int, levels: list[dict], schemas: list[dict], clock=None, registry=None) -> FlowController:
    fc = FlowController(server_cl, registry=registry, clock=clock or FakeClock())
    fc.apply(schemas, levels)
    return fc


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


# --- matching ----------------------------------------------------------------------------------

def rule_spec(subjects: list[dict], resource_rules=None, non_resource_rules=None) -> dict:
    r: dict = {"subjects": subjects}
    if resource_rules is not None:
        r["resourceRules"] = resource_rules
    if non_resource_rules is not None:
        r["nonResourceRules"] = non_resource_rules
    return {"rules": [r]}


ALL_RES = [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"], "clusterScope": True, "namespaces": ["*"]}]


def test_match_subjects_users_groups_wildcards():
    alice, bob = user("alice"), user("bob", "devs", AUTH)
    by_user = rule_spec([{"kind": "User", "user": {"name": "alice"}}], ALL_RES)
    assert matches(by_user, res(alice, "get", "pods", "ns"))
    assert not matches(by_user, res(bob, "get", "pods", "ns"))
    any_user = rule_spec([{"kind": "User", "user": {"name": "*"}}], ALL_RES)
    assert matches(any_user, res(bob, "get", "pods", "ns"))
    by_group = rule_spec([{"kind": "Group", "group": {"name": "devs"}}], ALL_RES)
    assert matches(by_group, res(bob, "get", "pods", "ns"))
    assert not matches(by_group, res(alice, "get", "pods", "ns"))
    any_group = rule_spec([{"kind": "Group", "group": {"name": "*"}}], ALL_RES)
    assert matches(any_group, res(UserInfo("nobody", ()), "get", "pods", "ns"))


def test_match_service_accounts():
    sa = lambda ns, n: user(f"system:serviceaccount:{ns}:{n}", "system:serviceaccounts", AUTH)  # noqa: E731
    one = rule_spec([{"kind": "ServiceAccount", "serviceAccount": {"namespace": "kube-system", "name": "ctl"}}],
                    ALL_RES)
    assert matches(one, res(sa("kube-system", "ctl"), "get", "pods", "x"))
    assert not matches(one, res(sa("kube-system", "other"), "get", "pods", "x"))
    assert not matches(one, res(sa("default", "ctl"), "get", "pods", "x"))
    every = rule_spec([{"kind": "ServiceAccount", "serviceAccount": {"namespace": "kube", "name": "*"}}], ALL_RES)
    assert matches(every, res(sa("kube", "anything"), "get", "pods", "x"))
    assert not matches(every, res(sa("kube-system", "anything"), "get", "pods", "x"))   # not a prefix match
    assert not matches(every, res(user("kube:someone"), "get", "pods", "x"))


def test_match_resource_rules():
    u = user("u")
    spec = rule_spec([{"kind": "User", "user": {"name": "u"}}], [
        {"verbs": ["get", "update"], "apiGroups": ["apps"], "resources": ["deployments", "deployments/scale"],
         "namespaces": ["a", "b"]},
        {"verbs": ["list"], "apiGroups": [""], "resources": ["nodes"], "clusterScope": True},
    ])
    assert matches(spec, res(u, "get", "deployments", "a", "apps"))
    assert matches(spec, res(u, "update", "deployments", "b", "apps", sub="scale"))
    assert not matches(spec, res(u, "update", "deployments", "b", "apps", sub="status"))    # subresource
    assert not matches(spec, res(u, "delete", "deployments", "a", "apps"))                  # verb
    assert not matches(spec, res(u, "get", "deployments", "a", ""))                         # group
    assert not matches(spec, res(u, "get", "deployments", "c", "apps"))                     # namespace
    assert not matches(spec, res(u, "get", "deployments", "", "apps"))                      # cluster scope
    assert matches(spec, res(u, "list", "nodes"))
    assert not matches(spec, res(u, "list", "nodes", "a"))       # namespaced request, no namespaces listed
    # "*" resources include subresources; "*" namespaces any namespace but no cluster scope
    wide = rule_spec([{"kind": "User", "user": {"name": "u"}}],
                     [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"], "namespaces": ["*"]}])
    assert matches(wide, res(u, "patch", "pods", "zz", sub="status"))
    assert not matches(wide, res(u, "list", "namespaces"))
    # the wildcard counts only as a list's sole member (as upstream)
    mixed = rule_spec([{"kind": "User", "user": {"name": "u"}}],
                      [{"verbs": ["get", "*"], "apiGroups": ["*"], "resources": ["*"], "namespaces": ["*"]}])
    assert matches(mixed, res(u, "get", "pods", "ns"))
    assert not matches(mixed, res(u, "list", "pods", "ns"))
    # resource requests never match nonResourceRules and vice versa
    nr_only = rule_spec([{"kind": "User", "user": {"name": "u"}}], None,
                        [{"verbs": ["*"], "nonResourceURLs": ["*"]}])
    assert not matches(nr_only, res(u, "get", "pods", "ns"))
    assert matches(nr_only, nonres(u, "get", "/version"))
    assert not matches(wide, nonres(u, "get", "/version"))


def test_match_non_resource_urls():
    u = user("u")
    spec = rule_spec([{"kind": "User", "user": {"name": "u"}}], None,
                     [{"verbs": ["get"], "nonResourceURLs": ["/healthz", "/apis/*", "/metrics/"]}])
    assert matches(spec, nonres(u, "get", "/healthz"))
    assert matches(spec, nonres(u, "get", "/healthz/etcd"))       # lies under /healthz
    assert not matches(spec, nonres(u, "get", "/healthzx"))
    assert matches(spec, nonres(u, "get", "/apis/apps"))
    assert not matches(spec, nonres(u, "get", "/apis"))
    assert matches(spec, nonres(u, "get", "/metrics/cadvisor"))
    assert not matches(spec, nonres(u, "post", "/healthz"))
    assert not matches(spec, nonres(u, "get", "/version"))


def test_flow_distinguisher():
    d = res(user("alice"), "get", "pods", "ns1")
    assert flow_distinguisher({"distinguisherMethod": {"type": "ByUser"}}, d) == "alice"
    assert flow_distinguisher({"distinguisherMethod": {"type": "ByNamespace"}}, d) == "ns1"
    assert flow_distinguisher({"distinguisherMethod": {"type": "ByNamespace"}}, res(user("a"), "list", "nodes")) == ""
    assert flow_distinguisher({}, d) == ""


# --- bootstrap ---------------------------------------------------------------------------------

def test_bootstrap_objects():
    fss = bootstrap.mandatory_flow_schemas() + bootstrap.suggested_flow_schemas()
    pls = bootstrap.mandatory_priority_levels() + bootstrap.suggested_priority_levels()
    assert {f["metadata"]["name"]: f["spec"]["matchingPrecedence"] for f in fss} == {
        "exempt": 1, "probes": 2, "system-leader-election": 100, "endpoint-controller": 150,
        "workload-leader-election": 200, "system-node-high": 400, "system-nodes": 500,
        "kube-controller-manager": 800, "kube-scheduler": 800, "kube-system-service-accounts": 900,
        "service-accounts": 9000, "global-default": 9900, "catch-all": 10000}
    for o in fss + pls:
        assert o["apiVersion"] == "flowcontrol.apiserver.k8s.io/v1"
        assert o["metadata"]["annotations"] == {"apf.kubernetes.io/autoupdate-spec": "true"}
    queuing = {p["metadata"]["name"]: (p["spec"]["limited"]["nominalConcurrencyShares"],
                                       p["spec"]["limited"]["lendablePercent"],
                                       tuple(p["spec"]["limited"]["limitResponse"]["queuing"].values()))
               for p in pls if p["spec"]["type"] == "Limited" and "queuing" in p["spec"]["limited"]["limitResponse"]}
    assert queuing == {"system": (30, 33, (64, 6, 50)), "node-high": (40, 25, (64, 6, 50)),
                       "leader-election": (10, 0, (16, 4, 50)), "workload-high": (40, 50, (128, 6, 50)),
                       "workload-low": (100, 90, (128, 6, 50)), "global-default": (20, 50, (128, 6, 50))}
    by_name = {p["metadata"]["name"]: p["spec"] for p in pls}
    assert by_name["catch-all"] == {"type": "Limited", "limited": {
        "nominalConcurrencyShares": 5, "lendablePercent": 0, "limitResponse": {"type": "Reject"}}}
    assert by_name["exempt"] == {"type": "Exempt", "exempt": {"nominalConcurrencyShares": 0, "lendablePercent": 0}}
    dist = {f["metadata"]["name"]: (f["spec"].get("distinguisherMethod") or {}).get("type") for f in fss}
    assert dist["kube-scheduler"] == "ByNamespace" and dist["global-default"] == "ByUser"
    assert dist["exempt"] is None and dist["probes"] is None
    bootstrap.suggested_flow_schemas()[0]["spec"]["matchingPrecedence"] = 1     # fresh objects per call
    assert bootstrap.suggested_flow_schemas()[0]["spec"]["matchingPrecedence"] == 500


NODE = user("system:node:n1", "system:nodes", AUTH)
SA_KS = lambda n: user(f"system:serviceaccount:kube-system:{n}", "system:serviceaccounts",  # noqa: E731
                       "system:serviceaccounts:kube-system", AUTH)


@pytest.mark.parametrize("digest, schema, level", [
    (res(NODE, "update", "leases", "kube-node-lease", "coordination.k8s.io", name="n1"), "system-node-high",
     "node-high"),
    (res(NODE, "patch", "nodes", "", sub="status", name="n1"), "system-node-high", "node-high"),
    (res(NODE, "get", "pods", "default"), "system-nodes", "system"),
    (res(user("system:kube-scheduler"), "list", "pods"), "kube-scheduler", "workload-high"),
    (res(user("system:kube-scheduler"), "update", "leases", "kube-system", "coordination.k8s.io"),
     "system-leader-election", "leader-election"),
    (res(user("system:kube-controller-manager"), "update", "endpoints", "default"), "endpoint-controller",
     "workload-high"),
    (res(user("system:kube-controller-manager"), "create", "replicasets", "default", "apps"),
     "kube-controller-manager", "workload-high"),
    (res(SA_KS("endpoint-controller"), "update", "endpoints", "web"), "endpoint-controller", "workload-high"),
    (res(SA_KS("some-ctl"), "update", "configmaps", "web"), "workload-leader-election", "leader-election"),
    (res(SA_KS("some-ctl"), "list", "pods"), "kube-system-service-accounts", "workload-high"),
    (res(user("system:serviceaccount:default:app", "system:serviceaccounts", "system:serviceaccounts:default",
              AUTH), "get", "configmaps", "default"), "service-accounts", "workload-low"),
    (res(user("alice"), "list", "pods", "default"), "global-default", "global-default"),
    (nonres(user("alice"), "get", "/version"), "global-default", "global-default"),
    (res(user("admin", "system:masters", AUTH), "delete", "nodes"), "exempt", "exempt"),
    (nonres(user("system:anonymous", "system:unauthenticated"), "get", "/healthz"), "probes", "exempt"),
    (nonres(user("system:anonymous", "system:unauthenticated"), "get", "/readyz"), "probes", "exempt"),
    (nonres(user("system:anonymous", "system:unauthenticated"), "get", "/apis"), "global-default",
     "global-default"),
    (res(UserInfo("stranger", ()), "get", "pods", "x"), "catch-all", "catch-all"),   # matches nothing: fallback
])
def test_bootstrap_classification(digest, schema, level):
    c = FlowController().classify(digest)
    assert (c.flow_schema, c.priority_level) == (schema, level)
    assert c.exempt == (level == "exempt")


def test_bootstrap_limits():
    levels = FlowController(600).levels()
    # nominalCL = ceil(600 * shares / 245): shares 0+5+30+40+10+40+100+20
    assert {n: v["nominal"] for n, v in levels.items()} == {
        "exempt": 0, "catch-all": 13, "system": 74, "node-high": 98, "leader-election": 25,
        "workload-high": 98, "workload-low": 245, "global-default": 49}
    assert levels["catch-all"]["mode"] == "Reject" and levels["exempt"]["mode"] == "Exempt"
    assert levels["global-default"]["queues"] == 128


# --- shuffle sharding --------------------------------------------------------------------------

def test_shuffle_sharding_deterministic_and_spread():
    h = hash_flow_id("global-default", "alice")
    assert h == hash_flow_id("global-default", "alice") and h != hash_flow_id("global-default", "bob")
    assert h != hash_flow_id("global-defaul", "talice")          # the separator matters
    assert deal(h, 128, 6) == deal(h, 128, 6)
    assert deal(0, 64, 6) == [0, 1, 2, 3, 4, 5]
    # every hash below 5*4*3 deals a different ordered hand of 3 distinct cards of 5
    hands = {tuple(deal(x, 5, 3)) for x in range(60)}
    assert len(hands) == 60 and all(len(set(hd)) == 3 and max(hd) < 5 for hd in hands)
    # many flows cover the deck evenly
    counts = Counter(c for i in range(6000) for c in deal(hash_flow_id("fs", f"user-{i}"), 64, 6))
    assert len(counts) == 64
    mean = 6000 * 6 / 64
    assert all(0.75 * mean < n < 1.25 * mean for n in counts.values()), counts


def test_flows_spread_over_their_hand_when_queueing():
    """One flow's waiting requests go to the least loaded queues of its hand."""
    fc = controller(2, [pl("lvl", 5, queues=16, hand=4)], [fs("all", "lvl")])

    async def run():
        first = await fc.admit(res(user("heavy"), "get", "pods", "x"))
        tasks = [asyncio.ensure_future(fc.admit(res(user("heavy"), "get", "pods", "x"), 1, 30)) for _ in range(8)]
        await settle()
        qs = fc._levels["lvl"].qs
        used = sorted(len(q.waiting) for q in qs.queues if q.waiting)
        assert used == [2, 2, 2, 2]
        hand = set(deal(hash_flow_id("all", "heavy"), 16, 4))
        assert {q.index for q in qs.queues if q.waiting} == hand
        for t in tasks:
            t.cancel()
        first.release()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(run())


# --- fair queuing ------------------------------------------------------------------------------

def two_flows_on_distinct_queues(schema: str, queues: int) -> tuple[str, str]:
    names = [f"user-{i}" for i in range(50)]
    q = {n: deal(hash_flow_id(schema, n), queues, 1)[0] for n in names}
    light = next(n for n in names[1:] if q[n] != q[names[0]])
    return names[0], light


async def test_fairness_light_flow_overtakes_heavy_backlog():
    clock = FakeClock()
    # server 2, shares lvl 5 + catch-all 5 -> lvl has 1 seat
    fc = controller(2, [pl("lvl", 5, queues=64, hand=1)], [fs("all", "lvl")], clock=clock)
    heavy, light = two_flows_on_distinct_queues("all", 64)
    order: list[tuple[str, object]] = []

    async def req(name: str) -> None:
        t = await fc.admit(res(user(name), "get", "pods", "x"), 1, 30)
        order.append((name, t))

    current = await fc.admit(res(user(heavy), "get", "pods", "x"))
    tasks = [asyncio.ensure_future(req(heavy)) for _ in range(10)]
    await settle()
    clock.t += 0.001                     # the light flow arrives after the heavy backlog
    tasks += [asyncio.ensure_future(req(light)) for _ in range(2)]
    await settle()
    assert fc.levels()["lvl"]["waiting"] == 12
    clock.t += 0.002
    for _ in range(12):
        current.release()
        await settle()
        current = order[-1][1]
        clock.t += 0.003
    current.release()
    await asyncio.gather(*tasks)
    names = [n for n, _ in order]
    assert len(names) == 12
    assert [i for i, n in enumerate(names) if n == light] == [0, 2], names    # FIFO would give [10, 11]
    assert fc.levels()["lvl"]["executing"] == 0


async def test_long_running_flow_is_charged_for_its_service_time():
    """Finish corrects R by the real service time: a flow whose requests ran long yields
    to one whose requests were quick."""
    clock = FakeClock()
    fc = controller(2, [pl("lvl", 5, queues=64, hand=1)], [fs("all", "lvl")], clock=clock)
    slow, quick = two_flows_on_distinct_queues("all", 64)
    t_slow = await fc.admit(res(user(slow), "get", "pods", "x"))
    clock.t += 1.0                       # the slow flow's request runs 1 s
    order: list[str] = []

    async def req(name: str):
        t = await fc.admit(res(user(name), "get", "pods", "x"), 1, 30)
        order.append(name)
        return t

    tasks = [asyncio.ensure_future(req(slow))]
    await settle()
    clock.t += 0.0001                    # the quick flow comes later: without the correction the
    tasks.append(asyncio.ensure_future(req(quick)))     # slow flow would go first
    await settle()
    t_slow.release()
    await settle()
    assert order == [quick]
    (await tasks[1]).release()
    (await tasks[0]).release()


async def test_wide_request_waits_for_its_seats():
    clock = FakeClock()
    # server 20, shares 5 + 5 -> lvl has 10 seats
    fc = controller(20, [pl("lvl", 5, queues=8, hand=2)], [fs("all", "lvl")], clock=clock)
    small = [await fc.admit(res(user(f"u{i}"), "get", "pods", "x")) for i in range(5)]
    big = asyncio.ensure_future(fc.admit(res(user("big"), "list", "pods"), 10, 30))
    await settle()
    assert not big.done() and fc.levels()["lvl"]["seats_waiting"] == 10
    for t in small[:4]:
        t.release()
    await settle()
    assert not big.done() and fc.levels()["lvl"]["seats_in_use"] == 1
    small[4].release()
    await settle()
    ticket = big.result()
    assert ticket.seats == 10 and fc.levels()["lvl"]["seats_in_use"] == 10
    ticket.release()
    ticket.release()                      # idempotent
    assert fc.levels()["lvl"]["seats_in_use"] == 0
    capped = await fc.admit(res(user("huge"), "list", "pods"), 50)
    assert capped.seats == 10             # a request never asks for more than the level has
    capped.release()


async def test_queue_full_rejection():
    fc = controller(2, [pl("lvl", 5, queues=1, hand=1, qll=2)], [fs("all", "lvl")])
    d = res(user("alice"), "get", "pods", "x")
    running = await fc.admit(d)
    waiters = [asyncio.ensure_future(fc.admit(d, 1, 30)) for _ in range(2)]
    await settle()
    with pytest.raises(Rejected) as e:
        await fc.admit(d, 1, 30)
    r = e.value
    assert (r.reason, r.flow_schema, r.priority_level) == ("queue-full", "all", "lvl")
    assert (r.flow_schema_uid, r.priority_level_uid) == ("uid-fs-all", "uid-pl-lvl")
    assert 1 <= r.retry_after <= 32
    running.release()
    await settle()
    for w in waiters:
        (await w).release()
    assert fc.levels()["lvl"]["executing"] == 0


async def test_time_out_and_reject_level():
    fc = controller(2, [pl("lvl", 5, queues=4, hand=1), pl("rej", 5, queues=None)],
                    [fs("to-lvl", "lvl", 100, users=("alice",)), fs("to-rej", "rej", 200, users=("bob",))])
    d = res(user("alice"), "get", "pods", "x")
    running = await fc.admit(d)
    with pytest.raises(Rejected) as e:
        await fc.admit(d, 1, 0.05)
    assert e.value.reason == "time-out"
    assert fc.levels()["lvl"]["waiting"] == 0
    running.release()
    b = res(user("bob"), "get", "pods", "x")
    first = await fc.admit(b)
    with pytest.raises(Rejected) as e:
        await fc.admit(b)
    assert (e.value.reason, e.value.priority_level) == ("concurrency-limit", "rej")
    first.release()
    (await fc.admit(b)).release()


async def test_cancelled_waiter_leaves_its_queue():
    registry = CollectorRegistry()
    fc = controller(2, [pl("lvl", 5, queues=4, hand=1)], [fs("all", "lvl")], registry=registry)
    d = res(user("alice"), "get", "pods", "x")
    running = await fc.admit(d)
    waiter = asyncio.ensure_future(fc.admit(d, 1, 30))
    await settle()
    assert fc.levels()["lvl"]["waiting"] == 1
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert fc.levels()["lvl"]["waiting"] == 0
    running.release()
    assert fc.levels()["lvl"]["executing"] == 0         # nothing was dispatched to the gone waiter
    labels = {"priority_level": "lvl", "flow_schema": "all"}
    assert registry.get_sample_value("apiserver_flowcontrol_rejected_requests_total",
                                     {**labels, "reason": "cancelled"}) == 1
    assert registry.get_sample_value("apiserver_flowcontrol_current_inqueue_requests", labels) == 0


async def test_cancel_after_dispatch_gives_seats_back():
    fc = controller(2, [pl("lvl", 5, queues=4, hand=1)], [fs("all", "lvl")])
    d = res(user("alice"), "get", "pods", "x")
    running = await fc.admit(d)
    waiter = asyncio.ensure_future(fc.admit(d, 1, 30))
    await settle()
    running.release()                    # dispatches the waiter; it has not resumed yet
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert fc.levels()["lvl"]["executing"] == 0 and fc.levels()["lvl"]["seats_in_use"] == 0


async def test_cancel_racing_a_dispatch_counts_once():
    """The waiter is cancelled and, before its handler runs, seats free up: the dispatch
    skips it and the handler does nothing more."""
    registry = CollectorRegistry()
    fc = controller(2, [pl("lvl", 5, queues=4, hand=1)], [fs("all", "lvl")], registry=registry)
    d = res(user("alice"), "get", "pods", "x")
    running = await fc.admit(d)
    waiter = asyncio.ensure_future(fc.admit(d, 1, 30))
    await settle()
    waiter.cancel()
    running.release()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert fc.levels()["lvl"]["executing"] == fc.levels()["lvl"]["waiting"] == 0
    labels = {"priority_level": "lvl", "flow_schema": "all"}
    assert registry.get_sample_value("apiserver_flowcontrol_rejected_requests_total",
                                     {**labels, "reason": "cancelled"}) == 1
    assert registry.get_sample_value("apiserver_flowcontrol_dispatched_requests_total", labels) == 1


async def test_exempt_never_queues():
    fc = FlowController(600, clock=FakeClock())
    admin = res(user("admin", "system:masters", AUTH), "get", "pods", "x")
    tickets = [await fc.admit(admin, 1, 0.0) for _ in range(2000)]
    assert all(t.exempt and t.priority_level_name == "exempt" for t in tickets)
    assert fc.levels()["exempt"]["executing"] == 2000
    for t in tickets:
        t.release()
    assert fc.levels()["exempt"]["executing"] == 0


# --- reconfiguration ---------------------------------------------------------------------------

async def test_live_reconfiguration_keeps_and_dispatches_waiters():
    fc = controller(2, [pl("lvl", 5, queues=4, hand=1)], [fs("all", "lvl")])
    d = res(user("alice"), "get", "pods", "x")
    running = await fc.admit(d)
    waiters = [asyncio.ensure_future(fc.admit(d, 1, 30)) for _ in range(2)]
    await settle()
    assert fc.levels()["lvl"]["waiting"] == 2
    # shares 5 -> 25 (catch-all 5): lvl gets ceil(2 * 25 / 30) = 2 seats, then a 6-seat server
    fc.apply([fs("all", "lvl")], [pl("lvl", 25, queues=8, hand=2)])
    await settle()
    assert fc.levels()["lvl"]["limit"] == 2 and sum(w.done() for w in waiters) == 1
    fc.server_concurrency_limit = 6
    fc.apply([fs("all", "lvl")], [pl("lvl", 25, queues=8, hand=2)])
    await settle()
    assert fc.levels()["lvl"]["limit"] == 5 and all(w.done() for w in waiters)
    assert fc.levels()["lvl"]["queues"] == 8
    for t in [running] + [w.result() for w in waiters]:
        t.release()
    # fewer queues: the surplus ones go (they are empty)
    fc.apply([fs("all", "lvl")], [pl("lvl", 25, queues=2, hand=1)])
    assert fc.levels()["lvl"]["queues"] == 2


async def test_removed_level_drains_then_goes():
    # server 3, shares 5 + 5 + catch-all 5: lvl and other have 1 seat each; other 2 without lvl
    fc = controller(3, [pl("lvl", 5, queues=4, hand=1), pl("other", 5, queues=4, hand=1)],
                    [fs("to-lvl", "lvl", 100, users=("alice",)), fs("to-other", "other", 200)])
    a = res(user("alice"), "get", "pods", "x")
    running = await fc.admit(a)
    waiter = asyncio.ensure_future(fc.admit(a, 1, 30))
    await settle()
    before = fc.levels()["other"]["nominal"]
    fc.apply([fs("to-other", "other", 200)], [pl("other", 5, queues=4, hand=1)])
    assert fc.levels()["lvl"]["quiescing"] and fc.classify(a).priority_level == "other"
    running.release()
    await settle()
    t = waiter.result()                  # the waiter was served by the draining level
    assert t.priority_level_name == "lvl"
    t.release()
    assert "lvl" not in fc.levels()
    assert (before, fc.levels()["other"]["nominal"]) == (1, 2)     # its shares no longer count


def test_dangling_and_broken():
    fc = controller(10, [pl("lvl", 5), pl("bad", 5, queues=4, hand=8)],
                    [fs("orphan", "nope", 10, users=("bob",)), fs("to-bad", "bad", 20), fs("all", "lvl", 100)])
    assert fc.dangling() == {"orphan": True, "to-bad": True, "all": False}
    assert "handSize 8 is greater than deckSize 4" in fc.broken["bad"]
    cond = fc.flow_schema_conditions()
    assert cond["orphan"] == {"type": "Dangling", "status": "True", "reason": "NotFound",
                              "message": 'This FlowSchema references the PriorityLevelConfiguration object named '
                                         '"nope" but there is no such object'}
    assert cond["all"]["status"] == "False" and cond["all"]["reason"] == "Found"
    assert cond["all"]["message"].endswith('named "lvl" and it exists')
    assert fc.classify(res(user("bob"), "get", "pods", "x")).flow_schema == "all"
    # the mandatory objects are imagined
    assert fc.classify(res(user("root", "system:masters"), "get", "pods", "x")).priority_level == "exempt"
    assert fc.classify(res(UserInfo("x", ()), "get", "pods", "x")).flow_schema == "catch-all"
    assert {"exempt", "catch-all", "lvl"} == set(fc.levels())


def test_precedence_then_name():
    fc = controller(10, [pl("a", 5), pl("b", 5)], [fs("zz", "a", 50), fs("aa", "b", 50), fs("first", "a", 10,
                                                                                             users=("carol",))])
    assert fc.classify(res(user("dave"), "get", "pods", "x")).flow_schema == "aa"
    assert fc.classify(res(user("carol"), "get", "pods", "x")).flow_schema == "first"


# --- retry-after ---------------------------------------------------------------------------------

def test_retry_after_adapts():
    r = RetryAfter()
    assert [r.record(100.1) for _ in range(5)] == [1] * 5
    assert r.record(101.0) == 2           # 5 >= 3 x 1 rejections in the last second: doubled
    for _ in range(10):
        r.record(101.5)
    assert r.record(103.0) == 4           # 11 >= 3 x 2 in the last 2 s
    assert r.record(110.0) == 3           # quiet: fewer than 4 in the last 4 s
    r2 = RetryAfter()
    for s in range(200):
        for _ in range(200):
            r2.record(float(s))
    assert r2.value == 32


# --- metrics -------------------------------------------------------------------------------------

async def test_metrics_series_and_labels():
    clock = FakeClock()
    registry = CollectorRegistry()
    fc = FlowController(600, registry=registry, clock=clock)
    alice = res(user("alice"), "list", "pods", "default")
    watch = res(user("alice"), "watch", "pods", "default")
    admin = res(user("admin", "system:masters", AUTH), "get", "pods", "x")
    t1 = await fc.admit(alice, 3)
    clock.t += 0.25
    t1.release()
    t2 = await fc.admit(watch)
    t3 = await fc.admit(admin)
    clock.t += 0.01
    t2.release()
    lv = fc._levels["catch-all"]
    stranger = res(UserInfo("stranger", ()), "get", "pods", "x")
    held = [await fc.admit(stranger) for _ in range(13)]
    with pytest.raises(Rejected):
        await fc.admit(stranger)
    assert lv.qs.tot_executing == 13
    for t in held:
        t.release()

    g = registry.get_sample_value
    gd = {"priority_level": "global-default", "flow_schema": "global-default"}
    P = "apiserver_flowcontrol_"
    assert g(P + "dispatched_requests_total", gd) == 2
    assert g(P + "dispatched_requests_total", {"priority_level": "exempt", "flow_schema": "exempt"}) == 1
    assert g(P + "rejected_requests_total", {"priority_level": "catch-all", "flow_schema": "catch-all",
                                             "reason": "concurrency-limit"}) == 1
    assert g(P + "current_executing_requests", {"priority_level": "exempt", "flow_schema": "exempt"}) == 1
    assert g(P + "current_executing_requests", gd) == 0
    assert g(P + "current_inqueue_requests", gd) == 0
    assert g(P + "request_execution_seconds_count", {**gd, "type": "regular"}) == 1
    assert g(P + "request_execution_seconds_bucket", {**gd, "type": "regular", "le": "0.2"}) == 0
    assert g(P + "request_execution_seconds_bucket", {**gd, "type": "regular", "le": "0.5"}) == 1
    assert g(P + "request_execution_seconds_count", {**gd, "type": "watch"}) == 1
    assert g(P + "request_wait_duration_seconds_count", {**gd, "execute": "true"}) == 2
    assert g(P + "work_estimated_seats_bucket", {**gd, "le": "4.0"}) == 2
    assert g(P + "work_estimated_seats_bucket", {**gd, "le": "2.0"}) == 1
    assert g(P + "request_queue_length_after_enqueue_count", gd) == 2
    assert g(P + "nominal_limit_seats", {"priority_level": "global-default"}) == 49
    assert g(P + "request_concurrency_limit", {"priority_level": "global-default"}) == 49
    assert g(P + "lower_limit_seats", {"priority_level": "global-default"}) == 24     # 49 - round(24.5)
    assert g(P + "upper_limit_seats", {"priority_level": "global-default"}) == 649
    assert g(P + "current_limit_seats", {"priority_level": "catch-all"}) == 13
    assert g(P + "seat_fair_frac") == 1
    # 250 ms at 3/49 seats, then 10 ms at 1/49 (nanoseconds are the observations)
    seat = g(P + "priority_level_seat_utilization_bucket",
             {"phase": "executing", "priority_level": "global-default", "le": "0.1"})
    assert seat == pytest.approx(0.26e9, rel=1e-6)
    assert g(P + "priority_level_request_utilization_count",
             {"phase": "waiting", "priority_level": "global-default"}) > 0
    assert g(P + "read_vs_write_current_requests_count", {"phase": "executing", "request_kind": "readOnly"}) > 0

    text = generate_latest(registry).decode()
    labels = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            labels.setdefault(fam.name, set()).add(frozenset(k for k in s.labels if k != "le"))
    PF = frozenset({"priority_level", "flow_schema"})
    want = {
        "rejected_requests": {PF | {"reason"}}, "dispatched_requests": {PF},
        "current_inqueue_requests": {PF}, "current_inqueue_seats": {PF}, "current_executing_requests": {PF},
        "current_executing_seats": {PF}, "request_concurrency_in_use": {PF},
        "request_wait_duration_seconds": {PF | {"execute"}}, "request_execution_seconds": {PF | {"type"}},
        "request_queue_length_after_enqueue": {PF}, "work_estimated_seats": {PF},
        "request_concurrency_limit": {frozenset({"priority_level"})},
        "nominal_limit_seats": {frozenset({"priority_level"})}, "current_limit_seats": {frozenset({"priority_level"})},
        "lower_limit_seats": {frozenset({"priority_level"})}, "upper_limit_seats": {frozenset({"priority_level"})},
        "target_seats": {frozenset({"priority_level"})}, "current_r": {frozenset({"priority_level"})},
        "dispatch_r": {frozenset({"priority_level"})}, "demand_seats": {frozenset({"priority_level"})},
        "priority_level_seat_utilization": {frozenset({"phase", "priority_level"})},
        "priority_level_request_utilization": {frozenset({"phase", "priority_level"})},
        "read_vs_write_current_requests": {frozenset({"phase", "request_kind"})},
        "seat_fair_frac": {frozenset()},
    }
    for name, sets in want.items():
        assert labels.get(P + name) == sets, name
    t3.release()


async def test_epoch_advance():
    clock = FakeClock()
    registry = CollectorRegistry()
    fc = controller(2, [pl("lvl", 5, queues=4, hand=1)], [fs("all", "lvl")], clock=clock, registry=registry)
    qs = fc._levels["lvl"].qs
    running = await fc.admit(res(user("a"), "get", "pods", "x"))
    qs.r = HIGH_R - 0.001
    waiter = asyncio.ensure_future(fc.admit(res(user("b"), "get", "pods", "x"), 1, 30))
    await settle()
    clock.t += 1.0
    running.release()
    await settle()
    assert HIGH_R - R_DECREMENT < qs.r < HIGH_R - R_DECREMENT + 1      # wound back, still advancing
    assert waiter.done()
    assert registry.get_sample_value("apiserver_flowcontrol_epoch_advance_total",
                                     {"priority_level": "lvl", "success": "true"}) == 1
    (await waiter).release()
