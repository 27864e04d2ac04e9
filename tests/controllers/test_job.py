"""The Job controller against pods run by hollow nodes (their run time and exit code set
by kubeplane.io/ annotations): completions with parallelism, Indexed completion,
backoffLimit, a podFailurePolicy FailJob rule, activeDeadlineSeconds, and kubectl wait
--for=condition=Complete; the finalizer protocol leaves no finalizer behind."""
from __future__ import annotations

import os
import subprocess

import pytest

from ctrl_cluster import condition, get, items, new_namespace, owned_by, wait_for
from kubectls import kubectl_binary
from kubeplane.controllers.job import format_indexes, match_failure_policy, parse_indexes


def job(name: str, *, run="1", exit_code="0", **spec) -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"template": {"metadata": {"annotations": {"kubeplane.io/run-seconds": run,
                                                               "kubeplane.io/exit-code": exit_code}},
                                  "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                                           "containers": [{"name": "c", "image": "busybox"}]}}, **spec}}


def create(cluster, ns: str, body: dict) -> dict:
    r = cluster.call("POST", f"/apis/batch/v1/namespaces/{ns}/jobs", body)
    assert r.status == 201, r.body
    return r.json


def jget(cluster, ns, name):
    return get(cluster, f"/apis/batch/v1/namespaces/{ns}/jobs/{name}")


def test_indexes_and_failure_policy_units():
    assert format_indexes({0, 1, 2, 4, 6, 7}) == "0-2,4,6-7"
    assert parse_indexes("0-2,4,6-7") == {0, 1, 2, 4, 6, 7}
    assert format_indexes(set()) == ""
    j = {"spec": {"podFailurePolicy": {"rules": [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
        {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}}]}}}
    pod = {"metadata": {"name": "p", "namespace": "ns"},
           "status": {"phase": "Failed", "containerStatuses": [{"name": "main", "state": {"terminated": {"exitCode": 42}}}]}}
    assert match_failure_policy(j, pod) == ("FailJob", "Container main for pod ns/p failed with exit code 42 matching "
                                                       "FailJob rule at index 1")
    pod["status"]["conditions"] = [{"type": "DisruptionTarget", "status": "True"}]
    assert match_failure_policy(j, pod)[0] == "Ignore"
    pod["status"] = {"phase": "Failed", "containerStatuses": [{"name": "main", "state": {"terminated": {"exitCode": 1}}}]}
    assert match_failure_policy(j, pod) is None


def test_job_completes_with_parallelism(cluster):
    ns = new_namespace(cluster, "job")
    made = create(cluster, ns, job("work", completions=4, parallelism=2))
    wait_for(lambda: condition(jget(cluster, ns, "work"), "Complete").get("status") == "True", 60,
             what="Complete")
    j = jget(cluster, ns, "work")
    st = j["status"]
    assert st["succeeded"] == 4 and not st.get("failed") and not st.get("active")
    assert st["startTime"] and st["completionTime"]
    c = condition(j, "Complete")
    assert (c["reason"], c["message"]) == ("CompletionsReached", "Reached expected number of succeeded pods")
    assert condition(j, "SuccessCriteriaMet").get("status") == "True"
    pods = owned_by(items(cluster, f"/api/v1/namespaces/{ns}/pods"), made["metadata"]["uid"])
    assert len(pods) == 4
    wait_for(lambda: not any("batch.kubernetes.io/job-tracking" in (p["metadata"].get("finalizers") or ())
                             for p in items(cluster, f"/api/v1/namespaces/{ns}/pods")), 20, what="finalizers removed")


def test_indexed_job(cluster):
    ns = new_namespace(cluster, "idx")
    create(cluster, ns, job("ix", completions=3, parallelism=3, completionMode="Indexed"))
    wait_for(lambda: condition(jget(cluster, ns, "ix"), "Complete").get("status") == "True", 60, what="Complete")
    assert jget(cluster, ns, "ix")["status"]["completedIndexes"] == "0-2"
    pods = items(cluster, f"/api/v1/namespaces/{ns}/pods")
    idx = sorted(p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] for p in pods)
    assert idx == ["0", "1", "2"]
    for p in pods:
        i = p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
        assert p["spec"]["hostname"] == f"ix-{i}" and p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"] == i
        env = p["spec"]["containers"][0]["env"]
        assert env[0]["name"] == "JOB_COMPLETION_INDEX"


def test_backoff_limit_failure_policy_and_deadline(cluster):
    ns = new_namespace(cluster, "fail")
    create(cluster, ns, job("bad", exit_code="1", backoffLimit=0))
    create(cluster, ns, {**job("fatal", exit_code="42"), "spec": {
        **job("fatal", exit_code="42")["spec"], "backoffLimit": 6,
        "podFailurePolicy": {"rules": [{"action": "FailJob",
                                        "onExitCodes": {"operator": "In", "values": [42]}}]}}})
    create(cluster, ns, job("slow", run="never", activeDeadlineSeconds=2))
    for name, reason in (("bad", "BackoffLimitExceeded"), ("fatal", "PodFailurePolicy"), ("slow", "DeadlineExceeded")):
        wait_for(lambda: condition(jget(cluster, ns, name), "Failed").get("status") == "True", 60,
                 what=f"{name} Failed")
        c = condition(jget(cluster, ns, name), "Failed")
        assert c["reason"] == reason, (name, c)
    assert condition(jget(cluster, ns, "bad"), "Failed")["message"] == "Job has reached the specified backoff limit"
    assert jget(cluster, ns, "bad")["status"]["failed"] == 1
    assert "failed with exit code 42 matching FailJob rule at index 0" in condition(jget(cluster, ns, "fatal"), "Failed")["message"]
    assert condition(jget(cluster, ns, "slow"), "Failed")["message"] == "Job was active longer than specified deadline"


def test_kubectl_wait_for_complete(cluster):
    binary = kubectl_binary("1.33")
    if binary is None:
        pytest.skip("kubectl 1.33 is not installed")
    ns = new_namespace(cluster, "kjob")
    env = {**os.environ, "KUBECONFIG": cluster.kubeconfig}
    r = subprocess.run([binary, "-n", ns, "create", "job", "once", "--image=busybox"], capture_output=True, text=True,
                       timeout=30, env=env)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([binary, "-n", ns, "wait", "--for=condition=Complete", "job/once", "--timeout=60s"],
                       capture_output=True, text=True, timeout=90, env=env)
    assert r.returncode == 0 and "condition met" in r.stdout, r.stderr


def test_ttl_after_finished_deletes_the_job(cluster):
    ns = new_namespace(cluster, "ttl")
    create(cluster, ns, job("brief", ttlSecondsAfterFinished=1))
    wait_for(lambda: condition(jget(cluster, ns, "brief"), "Complete").get("status") == "True", 60, what="Complete")
    wait_for(lambda: jget(cluster, ns, "brief") is None, 30, what="the finished Job deleted after its TTL")
