"""Pod timings as data: the package's stages.yaml, rules, per-pod annotations, bad files;
and the pieces of a hollow node's objects that carry arithmetic (pod CIDRs, zones, IPs)."""
from __future__ import annotations

import random

import pytest

from kubeplane.sim.nodes.objects import PodView, exited_status, pod_cidr, running_status, zone
from kubeplane.client import Config
from kubeplane.sim.nodes.simulator import HollowNode, SimOptions, Simulator
from kubeplane.sim.nodes.stages import Stages, StagesError, Timing


def pod(annotations=None, owner=None, policy=None, labels=None, ns="default"):
    md = {"name": "p", "namespace": ns, "uid": "u1", "annotations": annotations or {}, "labels": labels or {}}
    if owner:
        md["ownerReferences"] = [{"kind": owner, "name": "o", "uid": "o1", "controller": True, "apiVersion": "v1"}]
    spec = {"containers": [{"name": "c", "image": "nginx"}]}
    if policy:
        spec["restartPolicy"] = policy
    return {"metadata": md, "spec": spec}


def test_defaults_and_shipped_rules():
    s = Stages.default()
    t = s.timing(pod())
    assert (t.startSeconds, t.runSeconds, t.exitCode, t.stopSeconds) == (1.0, None, 0, None)
    assert s.timing(pod(owner="Job")).runSeconds == 5
    assert s.timing(pod(policy="Never")).runSeconds == 5
    assert s.timing(pod(owner="ReplicaSet")).runSeconds is None


def test_annotations_override_rules():
    s = Stages.default()
    t = s.timing(pod({"kubeplane.io/run-seconds": "2.5", "kubeplane.io/exit-code": "3",
                      "kubeplane.io/start-seconds": "0", "kubeplane.io/stop-seconds": "1"}, owner="Job"))
    assert (t.runSeconds, t.exitCode, t.startSeconds, t.stopSeconds) == (2.5, 3, 0.0, 1.0)
    assert s.timing(pod({"kubeplane.io/run-seconds": "never"}, owner="Job")).runSeconds is None


def test_bad_annotations_are_ignored(caplog):
    s = Stages.default()
    t = s.timing(pod({"kubeplane.io/run-seconds": "soon", "kubeplane.io/exit-code": "300",
                      "kubeplane.io/start-seconds": "-1"}, owner="Job"))
    assert (t.runSeconds, t.exitCode, t.startSeconds) == (5, 0, 1.0)
    assert "kubeplane.io/run-seconds='soon'" in caplog.text


def test_rules_match_on_labels_namespace_policy():
    s = Stages({"defaults": {"startSeconds": 2}, "rules": [
        {"name": "slow team", "match": {"namespace": "slow", "labels": {"tier": "db"}}, "set": {"startSeconds": 30}},
        {"name": "fail", "match": {"restartPolicy": "OnFailure"}, "set": {"exitCode": 1, "runSeconds": 1}}]})
    assert s.timing(pod(ns="slow", labels={"tier": "db", "x": "y"})).startSeconds == 30
    assert s.timing(pod(ns="slow", labels={"tier": "web"})).startSeconds == 2
    assert s.timing(pod(ns="other", labels={"tier": "db"})).startSeconds == 2
    t = s.timing(pod(policy="OnFailure"))
    assert (t.exitCode, t.runSeconds) == (1, 1)


@pytest.mark.parametrize("doc, msg", [
    ([], "must be a map with `defaults` and `rules`"),
    ({"defaults": {"startSecs": 1}}, "defaults.startSecs: unknown field"),
    ({"defaults": {"startSeconds": -1}}, "defaults.startSeconds: must be a number of seconds >= 0, not -1"),
    ({"defaults": {"exitCode": 256}}, "defaults.exitCode: must be an integer 0..255, not 256"),
    ({"defaults": {"startSeconds": None}}, "defaults.startSeconds: may not be null"),
    ({"rules": [{"match": {"kind": "Job"}}]}, "rules[0].match: unknown key(s) kind"),
    ({"rules": [{"match": {"labels": "a=b"}}]}, "rules[0].match.labels: must be a map"),
    ({"stages": []}, "unknown key(s) stages"),
])
def test_bad_stage_files_are_named(doc, msg):
    with pytest.raises(StagesError) as e:
        Stages(doc, "f.yaml")
    assert msg in str(e.value) and str(e.value).startswith("f.yaml")


def test_stage_file_errors(tmp_path):
    with pytest.raises(StagesError, match="No such file"):
        Stages.load(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("defaults: [unclosed")
    with pytest.raises(StagesError, match="not YAML"):
        Stages.load(str(bad))


def test_timing_arithmetic():
    t = Timing(startSeconds=1, startJitter=0.5, backoffSeconds=10, backoffMaxSeconds=300)
    rng = random.Random(1)
    assert all(1 <= t.start_delay(rng) <= 1.5 for _ in range(100))
    assert [t.backoff(n) for n in (1, 2, 3, 4, 7, 50)] == [0, 10, 20, 40, 300, 300]
    assert t.stop_delay(30) == 30 and Timing(stopSeconds=2).stop_delay(30) == 2
    assert Timing(stopSeconds=60).stop_delay(5) == 5


def test_node_addresses_and_cidrs():
    assert str(pod_cidr(0)) == "10.64.0.0/24" and str(pod_cidr(257)) == "10.65.1.0/24"
    with pytest.raises(ValueError):
        pod_cidr(192 * 256)
    assert [zone(i, 3) for i in range(4)] == ["zone-a", "zone-b", "zone-c", "zone-a"]
    n = HollowNode("n", 1)
    ips = [n.allocate_ip() for _ in range(253)]
    assert len(set(ips)) == 253 and ips[0] == "10.64.1.2" and ips[-1] == "10.64.1.254"
    n.release_ip("10.64.1.7")
    assert n.allocate_ip() == "10.64.1.7"
    assert SimOptions(prefix="hn").node_name(7) == "hn-7"
    with pytest.raises(ValueError, match="must be loopback addresses"):
        Simulator(Config(servers=["http://127.0.0.1:1"]), SimOptions(count=1, kubelet_address="10.0.0.1"))
    with pytest.raises(ValueError, match="out of range"):
        Simulator(Config(servers=["http://127.0.0.1:1"]), SimOptions(count=2, first=192 * 256 - 1))


def test_pod_statuses_have_the_kubelets_shape():
    p = pod()
    p["spec"]["initContainers"] = [{"name": "init", "image": "busybox"}]
    v = PodView.of(p)
    v.ip = "10.64.0.2"
    s = running_status(v, "127.1.0.1", 1_700_000_000.0)
    assert s["phase"] == "Running" and s["podIP"] == "10.64.0.2" and s["hostIP"] == "127.1.0.1"
    assert [c["type"] for c in s["conditions"]] == ["PodReadyToStartContainers", "Initialized", "ContainersReady",
                                                    "Ready"]
    cs = s["containerStatuses"][0]
    assert cs["ready"] and cs["started"] and cs["state"]["running"]["startedAt"] == "2023-11-14T22:13:20Z"
    assert s["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    done = exited_status(v, 3, 1_700_000_000.0, 1_700_000_005.0, 0, "Failed", False)
    assert done["phase"] == "Failed"
    term = done["containerStatuses"][0]["state"]["terminated"]
    assert (term["exitCode"], term["reason"], term["finishedAt"]) == (3, "Error", "2023-11-14T22:13:25Z")
    backoff = exited_status(v, 1, 1_700_000_000.0, 1_700_000_005.0, 1, None, True)
    assert "phase" not in backoff
    assert backoff["containerStatuses"][0]["state"]["waiting"]["reason"] == "CrashLoopBackOff"
