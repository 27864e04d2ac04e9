"""The filter and score plugins against upstream's documented behaviour (plain dicts, no
server). Expected numbers are worked out from upstream's formulas in the plugin docs."""
import pytest

from sched_objects import cluster, failure, node, pod, schedule, scores

GPU = "example.com/gpu"


# NodeResourcesFit ---------------------------------------------------------------------------
def test_fit_picks_the_only_node_with_room():
    prof = cluster([node("small", cpu="1"), node("big", cpu="8")], [pod("old", cpu="500m", node_name="small")])
    assert schedule(prof, pod("p", cpu="2")) == "big"


@pytest.mark.parametrize("p,reasons", [
    (pod("p", cpu="5"), {"Insufficient cpu": 2}),
    (pod("p", memory="9Gi"), {"Insufficient memory": 2}),
    (pod("p", cpu="5", memory="9Gi"), {"Insufficient cpu": 2, "Insufficient memory": 2}),
    ({**pod("p"), "spec": {"containers": [{"name": "c", "resources": {"limits": {GPU: "1"}}}]}},
     {f"Insufficient {GPU}": 2}),
])
def test_fit_reasons_count_every_insufficient_resource(p, reasons):
    err = failure(cluster([node("a"), node("b")]), p)
    assert err.counts == reasons
    assert err.plugins == {"NodeResourcesFit"}


def test_too_many_pods():
    prof = cluster([node("a", pods=1)], [pod("x", node_name="a")])
    assert failure(prof, pod("p")).message() == "0/1 nodes are available: 1 Too many pods."


def test_extended_resources_fit_where_offered():
    p = {**pod("p"), "spec": {"containers": [{"name": "c", "resources": {"limits": {GPU: "2"}}}]}}
    prof = cluster([node("plain"), node("gpu", extra={GPU: "4"})])
    assert schedule(prof, p) == "gpu"


def test_least_allocated_and_balanced_scores():
    # upstream's least_allocated_test "differently sized nodes": pod 1 cpu / 2000 bytes;
    # node1 4 cpu / 10000, node2 6 cpu / 10000
    prof = cluster([node("n1", cpu="4", memory="10000"), node("n2", cpu="6", memory="10000")])
    p = pod("p", cpu="1", memory="2000")
    assert scores(prof, "NodeResourcesFit", p, ["n1", "n2"]) == [77, 81]      # (75+80)/2, (83+80)/2
    assert scores(prof, "NodeResourcesBalancedAllocation", p, ["n1", "n2"]) == [97, 98]


def test_least_allocated_counts_best_effort_pods_with_defaults():
    prof = cluster([node("n1", cpu="1", memory="1Gi")])
    # 100m of 1000m and 200Mi of 1Gi used by the pod's default non-zero request
    assert scores(prof, "NodeResourcesFit", pod("p"), ["n1"]) == [(90 + 80) // 2]


# NodeUnschedulable, NodeName -------------------------------------------------------------------------
def test_unschedulable_node_needs_the_toleration():
    prof = cluster([node("cordoned", unschedulable=True)])
    assert failure(prof, pod("p")).message() == "0/1 nodes are available: 1 node(s) were unschedulable."
    tol = [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]
    assert schedule(prof, pod("q", tolerations=tol)) == "cordoned"


# TaintToleration -----------------------------------------------------------------------------
def test_taints_filter_and_message_names_the_taint():
    t = [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]
    prof = cluster([node("a", taints=t), node("b", taints=t), node("c", cpu="1")])
    err = failure(prof, pod("p", cpu="2"))
    assert err.message() == ("0/3 nodes are available: 1 Insufficient cpu, "
                             "2 node(s) had untolerated taint {dedicated: db}.")
    tol = [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]
    assert schedule(prof, pod("q", cpu="2", tolerations=tol)) in ("a", "b")


@pytest.mark.parametrize("tol,ok", [
    ({"key": "k", "operator": "Exists"}, True),
    ({"operator": "Exists"}, True),
    ({"key": "k", "value": "v"}, True),
    ({"key": "k", "value": "other"}, False),
    ({"key": "k", "operator": "Exists", "effect": "NoExecute"}, False),
])
def test_toleration_matching(tol, ok):
    prof = cluster([node("a", taints=[{"key": "k", "value": "v", "effect": "NoSchedule"}])])
    if ok:
        assert schedule(prof, pod("p", tolerations=[tol])) == "a"
    else:
        failure(prof, pod("p", tolerations=[tol]))


def test_prefer_no_schedule_scores_reversed():
    soft = {"key": "k", "value": "v", "effect": "PreferNoSchedule"}
    prof = cluster([node("clean"), node("one", taints=[soft]),
                    node("two", taints=[soft, {"key": "j", "value": "", "effect": "PreferNoSchedule"}])])
    assert scores(prof, "TaintToleration", pod("p"), ["clean", "one", "two"]) == [100, 50, 0]
    assert schedule(prof, pod("p")) == "clean"


# NodeAffinity -----------------------------------------------------------------------------
def _required(*exprs):
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": list(exprs)}]}}}


@pytest.mark.parametrize("expr,want", [
    ({"key": "zone", "operator": "In", "values": ["b"]}, {"n2"}),
    ({"key": "zone", "operator": "NotIn", "values": ["a"]}, {"n2", "n3"}),
    ({"key": "zone", "operator": "Exists"}, {"n1", "n2"}),
    ({"key": "zone", "operator": "DoesNotExist"}, {"n3"}),
    ({"key": "cores", "operator": "Gt", "values": ["8"]}, {"n2"}),
    ({"key": "cores", "operator": "Lt", "values": ["8"]}, {"n1"}),
])
def test_required_node_affinity_operators(expr, want):
    nodes = [node("n1", labels={"zone": "a", "cores": "4"}), node("n2", labels={"zone": "b", "cores": "16"}),
             node("n3")]
    got = set()
    for seed in range(12):
        prof = cluster(nodes, seed=seed)
        got.add(schedule(prof, pod("p", affinity=_required(expr))))
    assert got == want


def test_node_selector_and_affinity_message():
    prof = cluster([node("n1", labels={"disk": "hdd"}), node("n2")])
    err = failure(prof, pod("p", nodeSelector={"disk": "ssd"}))
    assert err.message() == "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector."
    assert err.plugins == {"NodeAffinity"}


def test_match_fields_on_node_name():
    aff = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}]}}}
    assert schedule(cluster([node("n1"), node("n2")]), pod("p", affinity=aff)) == "n2"


def test_preferred_node_affinity_weights():
    aff = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 2, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}},
        {"weight": 8, "preference": {"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}}]}}
    prof = cluster([node("ssd", labels={"disk": "ssd"}), node("gpu", labels={"gpu": "1"}),
                    node("both", labels={"disk": "ssd", "gpu": "1"}), node("none")])
    assert scores(prof, "NodeAffinity", pod("p", affinity=aff), ["ssd", "gpu", "both", "none"]) == [20, 80, 100, 0]
    assert schedule(prof, pod("p", affinity=aff)) == "both"


# InterPodAffinity -----------------------------------------------------------------------------
ZONES = [node("a1", labels={"zone": "a"}), node("a2", labels={"zone": "a"}), node("b1", labels={"zone": "b"})]


def _pod_aff(kind, app, key="zone", required=True, weight=10):
    term = {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key}
    if required:
        return {kind: {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
    return {kind: {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": weight, "podAffinityTerm": term}]}}


def test_required_pod_affinity_follows_the_zone():
    prof = cluster(ZONES, [pod("db", labels={"app": "db"}, node_name="b1")])
    assert schedule(prof, pod("web", affinity=_pod_aff("podAffinity", "db"))) == "b1"


def test_required_pod_affinity_without_a_match():
    prof = cluster(ZONES, [pod("db", labels={"app": "db"}, node_name="b1")])
    err = failure(prof, pod("web", affinity=_pod_aff("podAffinity", "cache")))
    assert err.message() == "0/3 nodes are available: 3 node(s) didn't match pod affinity rules."


def test_first_pod_of_a_group_matching_itself_may_go_anywhere():
    prof = cluster(ZONES)
    schedule(prof, pod("web", labels={"app": "web"}, affinity=_pod_aff("podAffinity", "web")))


def test_required_anti_affinity_avoids_the_zone():
    prof = cluster(ZONES, [pod("web1", labels={"app": "web"}, node_name="a1")])
    assert schedule(prof, pod("web2", affinity=_pod_aff("podAntiAffinity", "web"))) == "b1"
    prof = cluster(ZONES, [pod("w1", labels={"app": "web"}, node_name="a1"),
                           pod("w2", labels={"app": "web"}, node_name="b1")])
    err = failure(prof, pod("w3", affinity=_pod_aff("podAntiAffinity", "web")))
    assert err.message() == "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules."


def test_existing_pods_anti_affinity_is_respected():
    guard = pod("guard", node_name="a1", affinity=_pod_aff("podAntiAffinity", "noisy", key="kubernetes.io/hostname"))
    prof = cluster(ZONES[:2], [guard])
    assert schedule(prof, pod("n", labels={"app": "noisy"})) == "a2"
    prof = cluster(ZONES[:1], [guard])
    assert failure(prof, pod("n", labels={"app": "noisy"})).message() == (
        "0/1 nodes are available: 1 node(s) didn't satisfy existing pods anti-affinity rules.")


def test_preferred_pod_affinity_scores():
    prof = cluster(ZONES, [pod("db", labels={"app": "db"}, node_name="a1")])
    p = pod("web", affinity=_pod_aff("podAffinity", "db", required=False))
    assert scores(prof, "InterPodAffinity", p, ["a1", "a2", "b1"]) == [100, 100, 0]
    p = pod("web", affinity=_pod_aff("podAntiAffinity", "db", required=False))
    assert scores(prof, "InterPodAffinity", p, ["a1", "a2", "b1"]) == [0, 0, 100]


# PodTopologySpread ---------------------------------------------------------------------------
def _spread(key="zone", skew=1, hard=True, app="web"):
    return [{"maxSkew": skew, "topologyKey": key, "whenUnsatisfiable": "DoNotSchedule" if hard else "ScheduleAnyway",
             "labelSelector": {"matchLabels": {"app": app}}}]


def test_hard_spread_goes_to_the_emptier_zone():
    prof = cluster(ZONES, [pod("w1", labels={"app": "web"}, node_name="a1")])
    p = pod("w2", labels={"app": "web"}, topologySpreadConstraints=_spread())
    assert schedule(prof, p) == "b1"


def test_hard_spread_messages():
    nodes = ZONES[:2] + [node("b1", cpu="8", labels={"zone": "b"}), node("nolabel", cpu="8")]
    prof = cluster(nodes, [pod("w1", labels={"app": "web"}, node_name="b1"),
                           pod("w2", labels={"app": "web"}, node_name="b1")])
    # zone a has 0, zone b 2: with maxSkew 1 only zone a is allowed, and zone a's nodes are
    # too small; NodeResourcesFit comes first in the filter order
    p = pod("w3", cpu="5", labels={"app": "web"}, topologySpreadConstraints=_spread())
    err = failure(prof, p)
    assert err.message() == ("0/4 nodes are available: 1 node(s) didn't match pod topology spread constraints, "
                             "1 node(s) didn't match pod topology spread constraints (missing required label), "
                             "2 Insufficient cpu.")


def test_min_domains_counts_missing_domains_as_zero():
    prof = cluster(ZONES[:2], [pod("w1", labels={"app": "web"}, node_name="a1")])
    c = _spread()
    c[0]["minDomains"] = 2
    err = failure(prof, pod("w2", labels={"app": "web"}, topologySpreadConstraints=c))
    assert "2 node(s) didn't match pod topology spread constraints" in err.message()


def test_soft_spread_scores_prefer_the_emptier_domain():
    prof = cluster(ZONES, [pod("w1", labels={"app": "web"}, node_name="a1"),
                           pod("w2", labels={"app": "web"}, node_name="a2")])
    p = pod("w3", labels={"app": "web"}, topologySpreadConstraints=_spread(hard=False))
    # zone a: 2 pods, b: 0; weight log(2+2); raw a = round(2*1.386) = 3, b = 0
    assert scores(prof, "PodTopologySpread", p, ["a1", "a2", "b1"]) == [0, 0, 100]


def test_default_spread_needs_a_selecting_owner():
    from kubeplane.client.selectors import label_selector
    prof = cluster(ZONES, [pod("w1", labels={"app": "web"}, node_name="a1")])
    assert scores(prof, "PodTopologySpread", pod("w2", labels={"app": "web"}), ["a1", "b1"]) is None
    prof.cache.owner_selectors["default/svc"] = ("default", label_selector({"matchLabels": {"app": "web"}}))
    # nodes without a zone label: only the hostname constraint counts (maxSkew 3, weight
    # log(3+2)): a1 = round(1.609 + 2) = 4, a2 = b1 = 2 -> 100*(4+2-s)/4
    got = scores(prof, "PodTopologySpread", pod("w2", labels={"app": "web"}), ["a1", "a2", "b1"])
    assert got == [50, 100, 100]
    z = "topology.kubernetes.io/zone"
    prof = cluster([node("a1", labels={z: "a"}), node("a2", labels={z: "a"}), node("b1", labels={z: "b"})],
                   [pod("w1", labels={"app": "web"}, node_name="a1")])
    prof.cache.owner_selectors["default/svc"] = ("default", label_selector({"matchLabels": {"app": "web"}}))
    # + zone (maxSkew 5, weight log(2+2)): a1 = round(1.609+2+1.386+4) = 9, a2 = 7, b1 = 6
    got = scores(prof, "PodTopologySpread", pod("w2", labels={"app": "web"}), ["a1", "a2", "b1"])
    assert got == [100 * 6 // 9, 100 * 8 // 9, 100]
