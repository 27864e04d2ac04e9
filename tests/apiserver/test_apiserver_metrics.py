"""/metrics after a short mixed load: every series issue 5 names is there, under
upstream's names, with upstream's labels, and the values follow the load."""
from __future__ import annotations

import threading
import time

from prometheus_client.parser import text_string_to_metric_families

from server_procs import ServerProc

REQUEST = {"verb", "dry_run", "group", "version", "resource", "subresource", "scope", "component"}
RESOURCE = REQUEST - {"dry_run"}

# name -> the label names upstream gives it
WANTED = {
    "apiserver_request_duration_seconds": REQUEST | {"le"},
    "apiserver_request_total": REQUEST | {"code"},
    "apiserver_request_sli_duration_seconds": RESOURCE | {"le"},
    "apiserver_current_inflight_requests": {"request_kind"},
    "apiserver_longrunning_requests": RESOURCE,
    "apiserver_response_sizes": RESOURCE | {"le"},
    "apiserver_watch_events_total": {"group", "version", "kind"},
    "apiserver_watch_events_sizes": {"group", "version", "kind", "le"},
    "apiserver_terminated_watchers_total": {"group", "resource"},
    "apiserver_resource_objects": {"group", "resource"},
    "apiserver_storage_objects": {"resource"},
    "apiserver_registered_watchers": {"group", "version", "kind"},
    "apiserver_watch_cache_events_received_total": {"resource"},
    "apiserver_watch_cache_events_dispatched_total": {"resource"},
    "apiserver_watch_cache_initializations_total": {"resource"},
    "apiserver_watch_cache_capacity": {"resource"},
    "apiserver_watch_cache_resource_version": {"resource"},
    "apiserver_watch_cache_read_wait_seconds": {"resource", "le"},
    "apiserver_watch_cache_consistent_read_total": {"resource", "success", "fallback"},
    "apiserver_cache_list_total": {"resource_prefix", "index"},
    # (apiserver_flowcontrol_rejected_requests_total appears with the first rejection, as
    # upstream's; test_fairness.py and test_flow_control.py check it)
    "apiserver_flowcontrol_dispatched_requests_total": {"flow_schema", "priority_level"},
    "apiserver_flowcontrol_current_inqueue_requests": {"flow_schema", "priority_level"},
    "apiserver_flowcontrol_current_executing_requests": {"flow_schema", "priority_level"},
    "apiserver_flowcontrol_current_executing_seats": {"flow_schema", "priority_level"},
    "apiserver_flowcontrol_request_wait_duration_seconds": {"flow_schema", "priority_level", "execute", "le"},
    "apiserver_flowcontrol_request_execution_seconds": {"flow_schema", "priority_level", "type", "le"},
    "apiserver_flowcontrol_nominal_limit_seats": {"priority_level"},
    "apiserver_flowcontrol_request_concurrency_limit": {"priority_level"},
    "etcd_request_duration_seconds": {"operation", "group", "resource", "le"},
    "etcd_disk_wal_fsync_duration_seconds": {"le"},
    "etcd_disk_backend_commit_duration_seconds": {"le"},
    "etcd_mvcc_db_total_size_in_bytes": set(),
    "etcd_mvcc_db_total_size_in_use_in_bytes": set(),
    "etcd_server_quota_backend_bytes": set(),
    "etcd_server_proposals_committed_total": set(),
    "etcd_debugging_mvcc_keys_total": set(),
    "process_resident_memory_bytes": set(),
}


def _samples(text: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for fam in text_string_to_metric_families(text):
        for smp in fam.samples:
            out.setdefault(smp.name, []).append(smp)
    return out


def _mixed_load(server: ServerProc, ns: str) -> None:
    # a watch that sees events while the writes happen
    stop = threading.Event()

    def watch() -> None:
        server.call("GET", f"/api/v1/namespaces/{ns}/configmaps?watch=1&timeoutSeconds=3")
        stop.set()
    t = threading.Thread(target=watch)
    t.start()
    time.sleep(0.3)
    for i in range(5):
        assert server.call("POST", f"/api/v1/namespaces/{ns}/configmaps",
                           {"metadata": {"name": f"m{i}"}, "data": {"a": "b"}}).status == 201
    assert server.call("GET", f"/api/v1/namespaces/{ns}/configmaps/m0").status == 200
    assert server.call("GET", f"/api/v1/namespaces/{ns}/configmaps").status == 200        # consistent
    assert server.call("GET", f"/api/v1/namespaces/{ns}/configmaps?resourceVersion=0").status == 200
    assert server.call("PATCH", f"/api/v1/namespaces/{ns}/configmaps/m1", {"data": {"x": "y"}},
                       content_type="application/merge-patch+json").status == 200
    assert server.call("DELETE", f"/api/v1/namespaces/{ns}/configmaps/m2").status == 200
    assert server.call("GET", f"/api/v1/namespaces/{ns}/configmaps/nope").status == 404
    assert server.call("POST", f"/api/v1/namespaces/{ns}/configmaps?dryRun=All",
                       {"metadata": {"name": "dry"}}).status == 201
    assert server.call("GET", "/healthz").status == 200
    # an ordinary user goes through global-default's queues (exempt requests do not wait)
    assert server.call("GET", f"/api/v1/namespaces/{ns}/configmaps",
                       headers={"Impersonate-User": "metrics-user"}).status == 200
    t.join(10)
    assert stop.is_set()


def test_every_named_series_after_a_mixed_load(server: ServerProc, ns: str):
    _mixed_load(server, ns)
    r = server.call("GET", "/metrics")
    assert r.status == 200
    assert r.headers["content-type"].startswith("text/plain")
    samples = _samples(r.body.decode())
    missing = []
    for name, labels in WANTED.items():
        found = [s for s in samples.get(name, []) + samples.get(name + "_bucket", []) + samples.get(name + "_total", [])]
        if not found:
            missing.append(name)
            continue
        have = set(found[0].labels)
        assert have == labels, f"{name}: labels {sorted(have)}, upstream has {sorted(labels)}"
    assert not missing, f"missing series: {missing}"

    def value(name: str, **labels: str) -> float:
        return sum(s.value for s in samples.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items()))

    cm = {"group": "", "version": "v1", "resource": "configmaps"}
    assert value("apiserver_request_total", verb="POST", code="201", dry_run="", **cm) >= 5
    assert value("apiserver_request_total", verb="POST", code="201", dry_run="All", **cm) >= 1
    assert value("apiserver_request_total", verb="GET", code="404", **cm) >= 1
    assert value("apiserver_request_total", verb="PATCH", code="200", **cm) >= 1
    assert value("apiserver_request_total", verb="LIST", scope="namespace", **cm) >= 2
    assert value("apiserver_request_total", verb="WATCH", **cm) >= 1
    assert value("apiserver_request_total", verb="GET", resource="", subresource="/healthz") >= 1
    assert value("apiserver_request_duration_seconds_count", verb="POST", **cm) >= 5
    assert value("apiserver_response_sizes_count", verb="GET", **cm) >= 2
    assert value("apiserver_watch_events_total", group="", version="v1", kind="ConfigMap") >= 5
    assert value("apiserver_watch_events_sizes_count", kind="ConfigMap") >= 5
    assert value("apiserver_resource_objects", group="", resource="namespaces") >= 5
    assert value("apiserver_watch_cache_events_received_total", resource="configmaps") >= 6
    assert value("apiserver_flowcontrol_dispatched_requests_total", priority_level="exempt") >= 10
    assert value("apiserver_flowcontrol_nominal_limit_seats", priority_level="global-default") > 0
    assert value("apiserver_flowcontrol_dispatched_requests_total", priority_level="global-default",
                 flow_schema="global-default") >= 1
    assert value("apiserver_flowcontrol_request_wait_duration_seconds_count", priority_level="global-default",
                 execute="true") >= 1
    assert value("etcd_request_duration_seconds_count", resource="configmaps") >= 5
    assert value("etcd_server_proposals_committed_total") > 0
    assert value("etcd_disk_wal_fsync_duration_seconds_count") > 0
    assert value("etcd_mvcc_db_total_size_in_bytes") > 0
