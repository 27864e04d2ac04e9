"""Server-side Table output: columns and cells as kube-apiserver 1.28 prints them
(pkg/printers/internalversion/printers.go run with Wide=true; apiextensions'
tableconvertor for CRDs; the default convertor otherwise)."""
from __future__ import annotations

import time

import pytest

from kubeplane.apiserver.machinery.errors import APIError
from kubeplane.apiserver.registry.resources import BUILTIN, ResourceInfo
from kubeplane.apiserver.endpoints.tables import (
    human_duration,
    make_table,
    table_columns,
    table_for_object,
    table_for_watch_event,
    table_row,
)

R = {(r.group, r.plural): r for r in BUILTIN}
PODS, DEPLOYS, SERVICES = R[("", "pods")], R[("apps", "deployments")], R[("", "services")]
NOW = 1_700_000_000.0            # 2023-11-14T22:13:20Z
T0 = "2023-11-14T22:00:00Z"      # 13m20s before NOW


def names(resource: ResourceInfo) -> list[str]:
    return [c["name"] for c in table_columns(resource)]


def cells(resource: ResourceInfo, obj: dict) -> list:
    return table_row(resource, obj, NOW)["cells"]


# --- durations -----------------------------------------------------------------------

@pytest.mark.parametrize("seconds, text", [
    (0, "0s"), (1, "1s"), (70, "70s"), (119, "119s"), (120, "2m"), (150, "2m30s"), (190, "3m10s"),
    (600, "10m"), (70 * 60, "70m"), (179 * 60, "179m"), (3 * 3600, "3h"), (3 * 3600 + 120, "3h2m"),
    (47 * 3600, "47h"), (49 * 3600, "2d1h"), (53 * 3600, "2d5h"), (8 * 86400 + 7200, "8d"),
    (367 * 86400, "367d"), ((365 * 2 * 24 + 25) * 3600, "2y1d"), (3 * 365 * 86400, "3y"),
    ((365 * 8 * 24 + 2) * 3600, "8y"), (-1.5, "0s"), (-2.5, "<invalid>"),
])
def test_human_duration(seconds, text):
    assert human_duration(seconds) == text


# --- pods ----------------------------------------------------------------------------

def pod(status: dict | None = None, spec: dict | None = None, **meta) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "default", "uid": "u1", "resourceVersion": "42",
                         "creationTimestamp": T0, "labels": {"app": "web"}, **meta},
            "spec": spec or {"containers": [{"name": "app", "image": "nginx:1.25"},
                                            {"name": "side", "image": "busybox"}]},
            "status": status or {}}


def running(restarts: int = 0, **extra) -> dict:
    return {"name": "c", "ready": True, "restartCount": restarts, "state": {"running": {"startedAt": T0}}, **extra}


def test_pod_columns():
    cols = table_columns(PODS)
    assert names(PODS) == ["Name", "Ready", "Status", "Restarts", "Age", "IP", "Node", "Nominated Node",
                           "Readiness Gates"]
    assert [c["priority"] for c in cols] == [0, 0, 0, 0, 0, 1, 1, 1, 1]
    assert cols[0]["format"] == "name" and cols[0]["description"].startswith("Name must be unique within a namespace")
    assert cols[4]["description"].startswith("CreationTimestamp is a timestamp")
    assert set(cols[1]) == {"name", "type", "format", "description", "priority"}


def test_pod_running():
    p = pod({"phase": "Running", "podIP": "10.1.0.7", "podIPs": [{"ip": "10.1.0.7"}],
             "conditions": [{"type": "Ready", "status": "True"}],
             "containerStatuses": [
                 running(3, lastState={"terminated": {"exitCode": 1, "finishedAt": "2023-11-14T22:10:00Z"}}),
                 running(1)]},
            {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "node-1"})
    assert cells(PODS, p) == ["web-1", "2/2", "Running", "4 (3m20s ago)", "13m", "10.1.0.7", "node-1",
                              "<none>", "<none>"]


def test_pod_pending_and_waiting():
    assert cells(PODS, pod({"phase": "Pending"}))[1:5] == ["0/2", "Pending", "0", "13m"]
    creating = pod({"phase": "Pending", "containerStatuses": [
        {"name": "a", "ready": False, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}},
        {"name": "b", "ready": False, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]},
        nodeName="ignored")
    assert cells(PODS, creating)[:4] == ["web-1", "0/2", "ContainerCreating", "0"]
    crash = pod({"phase": "Running", "containerStatuses": [
        {"name": "a", "ready": False, "restartCount": 5, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]},
        {"containers": [{"name": "a"}]})
    assert cells(PODS, crash)[1:4] == ["0/1", "CrashLoopBackOff", "5"]
    gated = pod({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                                                      "reason": "SchedulingGated"}]})
    assert cells(PODS, gated)[2] == "SchedulingGated"
    evicted = pod({"phase": "Failed", "reason": "Evicted"})
    row = table_row(PODS, evicted, NOW)
    assert row["cells"][2] == "Evicted"
    assert row["conditions"] == [{"type": "Completed", "status": "True", "reason": "Failed",
                                  "message": "The pod failed."}]


def test_pod_init_containers():
    spec = {"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "a"}]}
    done = {"name": "i1", "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
    waiting = {"name": "i2", "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}
    assert cells(PODS, pod({"phase": "Pending", "initContainerStatuses": [done, waiting]}, spec))[2] == "Init:1/2"
    failed = {"name": "i2", "restartCount": 2, "state": {"terminated": {"exitCode": 3}}}
    assert cells(PODS, pod({"phase": "Pending", "initContainerStatuses": [done, failed]}, spec))[2:4] == \
        ["Init:ExitCode:3", "2"]
    backoff = {"name": "i1", "restartCount": 1, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
    assert cells(PODS, pod({"phase": "Pending", "initContainerStatuses": [backoff]}, spec))[2] == \
        "Init:CrashLoopBackOff"


def test_pod_completed_and_terminating():
    completed = pod({"phase": "Succeeded", "containerStatuses": [
        {"name": "a", "ready": False, "restartCount": 0,
         "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}, {"containers": [{"name": "a"}]})
    row = table_row(PODS, completed, NOW)
    assert row["cells"][1:3] == ["0/1", "Completed"]
    assert row["conditions"][0]["reason"] == "Succeeded"
    # one container finished, another still running and the pod not Ready: NotReady
    mixed = pod({"phase": "Running", "containerStatuses": [
        running(), {"name": "b", "ready": False, "restartCount": 0,
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]})
    assert cells(PODS, mixed)[1:3] == ["1/2", "NotReady"]
    terminating = pod({"phase": "Running", "containerStatuses": [running(), running()]},
                      deletionTimestamp="2023-11-14T22:13:00Z")
    assert cells(PODS, terminating)[1:3] == ["2/2", "Terminating"]
    lost = pod({"phase": "Running", "reason": "NodeLost"}, deletionTimestamp="2023-11-14T22:13:00Z")
    assert cells(PODS, lost)[2] == "Unknown"


def test_pod_readiness_gates_and_nominated():
    p = pod({"phase": "Running", "nominatedNodeName": "n2",
             "conditions": [{"type": "example.com/ok", "status": "True"}, {"type": "Ready", "status": "True"}]},
            {"containers": [{"name": "a"}], "readinessGates": [{"conditionType": "example.com/ok"},
                                                                {"conditionType": "example.com/other"}]})
    assert cells(PODS, p)[5:] == ["<none>", "<none>", "n2", "1/2"]


# --- workloads -----------------------------------------------------------------------

def test_deployment():
    d = {"metadata": {"name": "web", "namespace": "default", "creationTimestamp": "2023-11-12T17:13:20Z"},
         "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"},
                                              "matchExpressions": [{"key": "tier", "operator": "In",
                                                                    "values": ["fe"]}]},
                  "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"},
                                                       {"name": "log", "image": "fluentbit"}]}}},
         "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}}
    assert names(DEPLOYS) == ["Name", "Ready", "Up-to-date", "Available", "Age", "Containers", "Images", "Selector"]
    assert cells(DEPLOYS, d) == ["web", "2/3", 3, 2, "2d5h", "nginx,log", "nginx:1.25,fluentbit",
                                 "app=web,tier in (fe)"]
    fresh = {"metadata": {"name": "new", "creationTimestamp": T0}, "spec": {"template": {"spec": {}}}}
    assert cells(DEPLOYS, fresh) == ["new", "0/1", 0, 0, "13m", "", "", ""]


def test_replicaset_statefulset_daemonset_job():
    rs = {"metadata": {"name": "web-5d9", "creationTimestamp": T0},
          "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web", "pod-template-hash": "5d9"}},
                   "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}},
          "status": {"replicas": 2, "readyReplicas": 1}}
    assert names(R[("apps", "replicasets")]) == ["Name", "Desired", "Current", "Ready", "Age", "Containers",
                                                "Images", "Selector"]
    assert cells(R[("apps", "replicasets")], rs) == ["web-5d9", 2, 2, 1, "13m", "c", "i",
                                                    "app=web,pod-template-hash=5d9"]
    sts = {"metadata": {"name": "db", "creationTimestamp": T0}, "spec": {"replicas": 3},
           "status": {"readyReplicas": 3}}
    assert cells(R[("apps", "statefulsets")], sts) == ["db", "3/3", "13m", "", ""]
    ds = {"metadata": {"name": "agent", "creationTimestamp": T0},
          "spec": {"template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}}}},
          "status": {"desiredNumberScheduled": 4, "currentNumberScheduled": 4, "numberReady": 3,
                     "updatedNumberScheduled": 4, "numberAvailable": 3}}
    assert cells(R[("apps", "daemonsets")], ds) == ["agent", 4, 4, 3, 4, 3, "kubernetes.io/os=linux", "13m",
                                                   "", "", "<none>"]
    jobs = R[("batch", "jobs")]
    assert names(jobs) == ["Name", "Completions", "Duration", "Age", "Containers", "Images", "Selector"]
    done = {"metadata": {"name": "pi", "creationTimestamp": T0}, "spec": {"completions": 1},
            "status": {"succeeded": 1, "startTime": T0, "completionTime": "2023-11-14T22:00:42Z"}}
    assert cells(jobs, done)[:4] == ["pi", "1/1", "42s", "13m"]
    active = {"metadata": {"name": "w", "creationTimestamp": T0}, "spec": {"parallelism": 3},
              "status": {"startTime": "2023-11-14T22:10:20Z"}}
    assert cells(jobs, active)[:3] == ["w", "0/1 of 3", "3m"]
    cj = {"metadata": {"name": "nightly", "creationTimestamp": T0},
          "spec": {"schedule": "0 3 * * *", "suspend": False}, "status": {"active": [{"name": "x"}]}}
    assert cells(R[("batch", "cronjobs")], cj)[:6] == ["nightly", "0 3 * * *", "False", 1, "<none>", "13m"]


# --- services and friends ------------------------------------------------------------

def svc(spec: dict, status: dict | None = None) -> dict:
    return {"metadata": {"name": "web", "namespace": "default", "creationTimestamp": T0},
            "spec": spec, "status": status or {}}


def test_services():
    assert names(SERVICES) == ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age", "Selector"]
    cluster_ip = svc({"type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                      "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
                      "selector": {"k8s-app": "kube-dns"}})
    assert cells(SERVICES, cluster_ip) == ["web", "ClusterIP", "10.96.0.10", "<none>", "53/UDP,53/TCP", "13m",
                                           "k8s-app=kube-dns"]
    node_port = svc({"type": "NodePort", "clusterIPs": ["10.96.1.1"], "ports": [{"port": 80, "nodePort": 30080}]})
    assert cells(SERVICES, node_port)[1:5] == ["NodePort", "10.96.1.1", "<none>", "80:30080/TCP"]
    lb_pending = svc({"type": "LoadBalancer", "clusterIPs": ["10.96.2.2"], "ports": [{"port": 443, "nodePort": 31443}]})
    assert cells(SERVICES, lb_pending)[3] == "<pending>"
    lb = svc({"type": "LoadBalancer", "clusterIPs": ["10.96.2.2"], "externalIPs": ["1.1.1.1"]},
             {"loadBalancer": {"ingress": [{"ip": "5.6.7.8"}, {"hostname": "lb.example.com"}]}})
    assert cells(SERVICES, lb)[3] == "5.6.7.8,lb.example.com,1.1.1.1"
    headless = svc({"clusterIP": "None", "clusterIPs": ["None"]})
    assert cells(SERVICES, headless)[1:5] == ["ClusterIP", "None", "<none>", "<none>"]
    ext = svc({"type": "ExternalName", "externalName": "db.example.com"})
    assert cells(SERVICES, ext)[1:4] == ["ExternalName", "<none>", "db.example.com"]
    ep = {"metadata": {"name": "web", "creationTimestamp": T0},
          "subsets": [{"addresses": [{"ip": f"10.0.0.{i}"} for i in range(1, 6)], "ports": [{"port": 8080}]}]}
    assert cells(R[("", "endpoints")], ep) == ["web", "10.0.0.1:8080,10.0.0.2:8080,10.0.0.3:8080 + 2 more...", "13m"]
    assert cells(R[("", "endpoints")], {"metadata": {"name": "e", "creationTimestamp": T0}})[1] == "<none>"
    eps = {"metadata": {"name": "web-abc", "creationTimestamp": T0}, "addressType": "IPv4",
           "ports": [{"name": "http", "port": 80}], "endpoints": [{"addresses": ["10.0.0.1"]}]}
    assert cells(R[("discovery.k8s.io", "endpointslices")], eps) == ["web-abc", "IPv4", "80", "10.0.0.1", "13m"]


def test_config_secret_sa_ns_lease():
    cm = {"metadata": {"name": "c", "creationTimestamp": T0}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}}
    assert cells(R[("", "configmaps")], cm) == ["c", 3, "13m"]
    sec = {"metadata": {"name": "s", "creationTimestamp": T0}, "type": "kubernetes.io/tls",
           "data": {"tls.crt": "", "tls.key": ""}}
    assert cells(R[("", "secrets")], sec) == ["s", "kubernetes.io/tls", 2, "13m"]
    assert names(R[("", "secrets")]) == ["Name", "Type", "Data", "Age"]
    sa = {"metadata": {"name": "default", "creationTimestamp": T0}}
    assert cells(R[("", "serviceaccounts")], sa) == ["default", 0, "13m"]
    ns = {"metadata": {"name": "kube-system", "creationTimestamp": T0}, "status": {"phase": "Active"}}
    assert cells(R[("", "namespaces")], ns) == ["kube-system", "Active", "13m"]
    lease = {"metadata": {"name": "kube-scheduler", "creationTimestamp": T0},
             "spec": {"holderIdentity": "host_1234"}}
    assert cells(R[("coordination.k8s.io", "leases")], lease) == ["kube-scheduler", "host_1234", "13m"]


def test_nodes():
    nodes = R[("", "nodes")]
    n = {"metadata": {"name": "cp-1", "creationTimestamp": T0,
                      "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "master"}},
         "spec": {"unschedulable": True},
         "status": {"conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                    "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}, {"type": "Hostname", "address": "cp-1"}],
                    "nodeInfo": {"kubeletVersion": "v1.28.3", "osImage": "Debian GNU/Linux 12",
                                 "kernelVersion": "6.1.0", "containerRuntimeVersion": "containerd://1.7.8"}}}
    assert cells(nodes, n) == ["cp-1", "Ready,SchedulingDisabled", "control-plane,master", "13m", "v1.28.3",
                               "192.168.1.10", "<none>", "Debian GNU/Linux 12", "6.1.0", "containerd://1.7.8"]
    bare = {"metadata": {"name": "w", "creationTimestamp": T0}}
    assert cells(nodes, bare)[1:3] == ["Unknown", "<none>"]


def test_events_core_and_new_api():
    core = {"metadata": {"name": "web-1.17a", "namespace": "default", "creationTimestamp": T0},
            "involvedObject": {"kind": "Pod", "name": "web-1", "fieldPath": "spec.containers{app}"},
            "reason": "Pulled", "message": "Container image pulled\n", "type": "Normal",
            "source": {"component": "kubelet", "host": "node-1"},
            "firstTimestamp": "2023-11-14T22:01:00Z", "lastTimestamp": "2023-11-14T22:11:20Z", "count": 4}
    ev = R[("", "events")]
    assert names(ev) == ["Last Seen", "Type", "Reason", "Object", "Subobject", "Source", "Message", "First Seen",
                         "Count", "Name"]
    assert cells(ev, core) == ["2m", "Normal", "Pulled", "pod/web-1", "spec.containers{app}", "kubelet, node-1",
                               "Container image pulled", "12m", 4, "web-1.17a"]
    new = {"metadata": {"name": "n.1", "namespace": "default", "creationTimestamp": T0},
           "regarding": {"kind": "Node", "name": "n1"}, "reason": "Ready", "note": "ok", "type": "Normal",
           "eventTime": "2023-11-14T22:13:10.000000Z", "reportingController": "kubelet", "reportingInstance": "n1"}
    assert cells(R[("events.k8s.io", "events")], new) == ["10s", "Normal", "Ready", "node/n1", "", "kubelet, n1",
                                                         "ok", "10s", 1, "n.1"]


def test_pvc_bindings_quota():
    pvc = {"metadata": {"name": "data", "creationTimestamp": T0},
           "spec": {"volumeName": "pv-1", "storageClassName": "standard", "volumeMode": "Filesystem"},
           "status": {"phase": "Bound", "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
                      "capacity": {"storage": "10Gi"}}}
    assert cells(R[("", "persistentvolumeclaims")], pvc) == ["data", "Bound", "pv-1", "10Gi", "RWO,RWX",
                                                            "standard", "13m", "Filesystem"]
    rb = {"metadata": {"name": "rb", "creationTimestamp": T0}, "roleRef": {"kind": "Role", "name": "view"},
          "subjects": [{"kind": "User", "name": "alice"}, {"kind": "Group", "name": "devs"},
                       {"kind": "ServiceAccount", "name": "ci", "namespace": "build"}]}
    assert cells(R[("rbac.authorization.k8s.io", "rolebindings")], rb) == ["rb", "Role/view", "13m", "alice", "devs",
                                                                          "build/ci"]
    quota = {"metadata": {"name": "q", "creationTimestamp": T0},
             "status": {"hard": {"pods": "10", "limits.cpu": "4", "requests.cpu": "2"},
                        "used": {"pods": "3", "requests.cpu": "500m"}}}
    assert cells(R[("", "resourcequotas")], quota) == ["q", "13m", "pods: 3/10, requests.cpu: 500m/2",
                                                      "limits.cpu: 0/4"]


def test_default_table():
    for key in [("rbac.authorization.k8s.io", "clusterroles"), ("rbac.authorization.k8s.io", "roles"),
                ("", "limitranges"), ("apiextensions.k8s.io", "customresourcedefinitions")]:
        assert names(R[key]) == ["Name", "Created At"]
        assert table_columns(R[key])[1]["type"] == "date"
    role = {"metadata": {"name": "admin", "creationTimestamp": "2023-01-02T03:04:05.123456Z"}}
    assert cells(R[("rbac.authorization.k8s.io", "clusterroles")], role) == ["admin", "2023-01-02T03:04:05Z"]


# --- custom resources ----------------------------------------------------------------

def crd_resource(columns: list | None) -> ResourceInfo:
    version = {"name": "v1", "served": True, "storage": True}
    if columns is not None:
        version["additionalPrinterColumns"] = columns
    crd = {"metadata": {"name": "widgets.example.com"}, "spec": {"group": "example.com", "versions": [version]}}
    return ResourceInfo("example.com", "v1", "Widget", "widgets", "widget", True, crd=crd, crd_version=version)


def test_crd_printer_columns():
    res = crd_resource([
        {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
        {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
         "description": "Readiness"},
        {"name": "Ratio", "type": "number", "jsonPath": ".spec.ratio", "priority": 1},
        {"name": "On", "type": "boolean", "jsonPath": ".spec.on"},
        {"name": "Meta", "type": "string", "jsonPath": ".spec.meta"},
        {"name": "Big", "type": "string", "jsonPath": ".spec.big"},
        {"name": "Missing", "type": "string", "jsonPath": ".spec.nope"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ])
    cols = table_columns(res)
    assert [c["name"] for c in cols] == ["Name", "Replicas", "Ready", "Ratio", "On", "Meta", "Big", "Missing", "Age"]
    assert cols[2]["description"] == "Readiness"
    assert cols[1]["description"] == "Custom resource definition column (in JSONPath format): .spec.replicas"
    assert cols[3]["priority"] == 1 and cols[0]["format"] == "name"
    obj = {"metadata": {"name": "w1", "creationTimestamp": T0},
           "spec": {"replicas": 2.0, "ratio": 3, "on": True, "meta": {"b": 1, "a": [1, "x"]}, "big": 1e6},
           "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    assert cells(res, obj) == ["w1", 2, "True", 3.0, True, '{"a":[1,"x"],"b":1}', "1e+06", None, "13m"]
    wrong_types = {"metadata": {"name": "w2"}, "spec": {"replicas": "two", "on": "yes"}}
    assert cells(res, wrong_types)[1] is None and cells(res, wrong_types)[4] is None


def test_crd_without_columns_gets_age():
    res = crd_resource(None)
    assert [(c["name"], c["type"]) for c in table_columns(res)] == [("Name", "string"), ("Age", "date")]
    assert cells(res, {"metadata": {"name": "w", "creationTimestamp": T0}}) == ["w", "13m"]
    bad_date = {"metadata": {"name": "w", "creationTimestamp": "yesterday"}}
    assert cells(res, bad_date) == ["w", "<invalid>"]


# --- the Table object ----------------------------------------------------------------

def test_make_table_shapes():
    p = pod({"phase": "Running"})
    t = make_table(PODS, [p], {"resourceVersion": "100", "continue": "abc", "remainingItemCount": 5}, now=NOW)
    assert t["kind"] == "Table" and t["apiVersion"] == "meta.k8s.io/v1"
    assert t["metadata"] == {"resourceVersion": "100", "continue": "abc", "remainingItemCount": 5}
    assert len(t["columnDefinitions"]) == len(t["rows"][0]["cells"]) == 9
    obj = t["rows"][0]["object"]
    assert obj == {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": p["metadata"]}
    assert make_table(PODS, [p], {"resourceVersion": "1"}, "Object", NOW)["rows"][0]["object"] is p
    assert make_table(PODS, [p], {}, "None", NOW)["rows"][0]["object"] is None
    assert make_table(PODS, [p], {}, "", NOW)["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    empty = make_table(PODS, [], {"resourceVersion": "7", "continue": ""}, now=NOW)
    assert empty["rows"] == [] and empty["metadata"] == {"resourceVersion": "7"}
    with pytest.raises(APIError) as ei:
        make_table(PODS, [p], {}, "Everything", NOW)
    assert ei.value.code == 400 and ei.value.message == 'unrecognized includeObject value: "Everything"'
    single = table_for_object(PODS, p, now=NOW)
    assert single["metadata"] == {"resourceVersion": "42"} and len(single["rows"]) == 1


def test_watch_event_tables():
    p = pod({"phase": "Running"})
    first = table_for_watch_event(PODS, p, "Metadata", first=True, now=NOW)
    later = table_for_watch_event(PODS, p, "Metadata", first=False, now=NOW)
    assert first["columnDefinitions"] == table_columns(PODS)
    assert later["columnDefinitions"] is None          # upstream: headers with the first event only
    assert later["rows"][0]["cells"] == first["rows"][0]["cells"]
    assert later["metadata"] == {"resourceVersion": "42"}


def test_malformed_objects_do_not_raise():
    junk = [{"metadata": {"name": "x"}, "spec": "nope", "status": {"containerStatuses": "bad"}},
            {"metadata": None}, {"metadata": {"name": "y"}, "spec": {"containers": [1, None]},
                                 "status": {"initContainerStatuses": [{"state": {"terminated": "x"}}]}}]
    for res in [PODS, DEPLOYS, SERVICES] + [r for r in BUILTIN]:
        t = make_table(res, junk, {}, now=NOW)
        assert all(len(r["cells"]) == len(t["columnDefinitions"]) for r in t["rows"])


def test_500_pods_fast():
    pods = []
    for i in range(500):
        pods.append(pod({"phase": "Running", "podIPs": [{"ip": f"10.0.{i // 250}.{i % 250}"}],
                         "conditions": [{"type": "Ready", "status": "True"}],
                         "containerStatuses": [running(i % 3), running()]},
                        {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": f"node-{i % 7}"},
                        creationTimestamp=f"2023-11-14T{10 + i % 12:02d}:00:{i % 60:02d}Z"))
    make_table(PODS, pods[:1], {}, now=NOW)          # warm the column cache
    start = time.perf_counter()
    t = make_table(PODS, pods, {"resourceVersion": "1"}, now=NOW)
    elapsed = time.perf_counter() - start
    assert len(t["rows"]) == 500 and t["rows"][499]["cells"][2] == "Running"
    assert elapsed < 0.1, f"500 pod rows took {elapsed * 1000:.1f} ms"
