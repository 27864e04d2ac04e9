"""The controller suites reuse the API server suites' process helpers (server_procs,
kubectls) from tests/apiserver, and share one cluster per session: `kubeplane serve`
with the controller manager, the scheduler and two hollow nodes."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "apiserver"))


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    from ctrl_cluster import start_cluster

    s = start_cluster(tmp_path_factory.mktemp("ctrl") / "data")
    # a CronJob made at once, so that its first minute boundary has usually passed by the
    # time test_cronjob.py looks (the tests never wait a whole minute for it)
    from ctrl_cluster import new_namespace

    s.cron_namespace = new_namespace(s, "cron")
    cj = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "tick"},
          "spec": {"schedule": "* * * * *", "timeZone": "Europe/Paris", "concurrencyPolicy": "Forbid",
                   "jobTemplate": {"metadata": {"labels": {"from": "cron"}}, "spec": {"template": {
                       "metadata": {"annotations": {"kubeplane.io/run-seconds": "1"}},
                       "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}}}
    r = s.call("POST", f"/apis/batch/v1/namespaces/{s.cron_namespace}/cronjobs", cj)
    assert r.status == 201, r.body
    try:
        yield s
    finally:
        s.stop()
