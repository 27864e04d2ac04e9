"""One cycle: how many nodes are looked at, the rotating start, messages, preemption."""
import pytest

from kubeplane.scheduler import messages
from kubeplane.scheduler.algorithm import num_feasible_nodes_to_find
from kubeplane.scheduler.podinfo import pod_info
from kubeplane.scheduler.preemption import preempt
from sched_objects import cluster, failure, node, pod, schedule


@pytest.mark.parametrize("nodes,want", [(10, 10), (99, 99), (100, 100), (200, 100), (1000, 420), (5000, 500),
                                        (6000, 300), (20000, 1000)])
def test_num_feasible_nodes_to_find(nodes, want):
    assert num_feasible_nodes_to_find(nodes) == want


def test_percentage_of_nodes_to_score_is_honoured():
    assert num_feasible_nodes_to_find(1000, 50) == 500
    assert num_feasible_nodes_to_find(1000, 1) == 100


def test_only_enough_nodes_are_evaluated_and_the_start_rotates():
    prof = cluster([node(f"n{i:03}") for i in range(300)])     # 300 nodes: 48% = 144 to find
    r1 = prof.schedule(pod_info(pod("a")))
    assert r1.evaluated == 144 and r1.feasible == 144
    assert prof.next_start == 144
    prof.schedule(pod_info(pod("b")))
    assert prof.next_start == 288
    # with a per-node filter too, rejected nodes count as evaluated
    sel = {"nodeSelector": {"kubernetes.io/hostname": "n010"}}
    r3 = prof.schedule(pod_info(pod("c", **sel)))
    assert r3.node == "n010" and r3.evaluated == 300 and prof.next_start == 288


def test_histogram_sorts_as_strings():
    # upstream sorts "<count> <reason>" strings: "10 ..." before "4990 ..."
    msg = messages.fit_error(5000, {"Insufficient cpu": 4990, "node(s) had untolerated taint {a: b}": 10})
    assert msg == ("0/5000 nodes are available: 10 node(s) had untolerated taint {a: b}, 4990 Insufficient cpu.")


def test_no_nodes():
    err = failure(cluster([]), pod("p"))
    assert err.message() == "no nodes available to schedule pods"


def test_preemption_picks_the_node_with_the_cheapest_victims():
    nodes = [node("n1", cpu="2"), node("n2", cpu="2")]
    pods = [pod("v-low", cpu="2", priority=1, node_name="n1"), pod("v-high", cpu="2", priority=50, node_name="n2")]
    prof = cluster(nodes, pods)
    p = pod_info(pod("boss", cpu="2", priority=100))
    err = failure(prof, pod("boss", cpu="2", priority=100))
    cand, msg = preempt(prof, p, err)
    assert msg == "" and cand.node == "n1" and [v.name for v in cand.victims] == ["v-low"]
    # the simulation left the cache as it was
    assert set(prof.cache.nodes["n1"].pods) == {"default/v-low"}


def test_preemption_reprieves_pods_that_can_stay():
    prof = cluster([node("n1", cpu="4")], [pod("keep", cpu="1", priority=5, node_name="n1"),
                                          pod("go", cpu="3", priority=1, node_name="n1")])
    err = failure(prof, pod("boss", cpu="3", priority=100))
    cand, _ = preempt(prof, pod_info(pod("boss", cpu="3", priority=100)), err)
    assert [v.name for v in cand.victims] == ["go"]


def test_preemption_messages():
    t = [{"key": "k", "value": "v", "effect": "NoSchedule"}]
    prof = cluster([node("tainted", taints=t), node("full", cpu="1")], [pod("x", cpu="1", priority=10, node_name="full")])
    p = pod("p", cpu="1", priority=5)
    err = failure(prof, p)
    cand, msg = preempt(prof, pod_info(p), err)
    assert cand is None
    assert msg == ("preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, "
                   "1 Preemption is not helpful for scheduling.")  # the outer message adds another "."
    err.postfilter = msg
    assert err.message() == ("0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {k: v}. "
                             + msg + ".")
    never = pod("p", cpu="1", priority=50, preemptionPolicy="Never")
    _, msg = preempt(prof, pod_info(never), failure(prof, never))
    assert msg == "preemption: not eligible due to preemptionPolicy=Never."


def test_nominated_pods_reserve_their_node():
    prof = cluster([node("n1", cpu="2"), node("n2", cpu="2")])
    prof.nominate(pod_info(pod("waiting", cpu="2", priority=100)), "n1")
    assert schedule(prof, pod("low", cpu="2", priority=0)) == "n2"
    # the nominated pod itself goes to its node first
    assert schedule(prof, pod("waiting", cpu="2", priority=100)) == "n1"
