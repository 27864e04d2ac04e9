"""EndpointSlices and Endpoints for a Service in front of a Deployment's pods (run by
the hollow nodes, which give them IPs and readiness): upstream's labels, owner, ports by
name, readiness; scaled to zero, one empty placeholder slice; a Service without a
selector gets nothing."""
from __future__ import annotations

from ctrl_cluster import deployment, get, items, new_namespace, wait_for


def test_service_endpoints_follow_pods(cluster):
    ns = new_namespace(cluster, "eps")
    d = deployment("api", 3)
    d["spec"]["template"]["spec"]["containers"][0]["ports"] = [{"name": "http", "containerPort": 8080}]
    d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 1     # scaled to 0: gone within a second
    assert cluster.call("POST", f"/apis/apps/v1/namespaces/{ns}/deployments", d).status == 201
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api", "labels": {"team": "a"}},
           "spec": {"selector": {"app": "api"}, "ports": [{"name": "web", "port": 80, "targetPort": "http"}]}}
    r = cluster.call("POST", f"/api/v1/namespaces/{ns}/services", svc)
    assert r.status == 201, r.body
    svc_uid = r.json["metadata"]["uid"]
    none = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "manual"}, "spec": {"ports": [{"port": 1}]}}
    assert cluster.call("POST", f"/api/v1/namespaces/{ns}/services", none).status == 201
    slices_path = f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices"

    def ready_endpoints():
        ss = items(cluster, slices_path + "?labelSelector=kubernetes.io%2Fservice-name%3Dapi")
        out = [e for s in ss for e in s.get("endpoints") or () if e["conditions"].get("ready")]
        return (ss, out) if len(out) == 3 and len(ss) == 1 else None
    # (before the pods had IPs the Service had an empty placeholder slice: it is replaced)
    [s], eps = wait_for(ready_endpoints, 40, what="one slice with 3 ready endpoints")
    assert s["addressType"] == "IPv4"
    assert s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == "endpointslice-controller.k8s.io"
    assert s["metadata"]["labels"]["team"] == "a" and s["metadata"]["generateName"] == "api-"
    [ref] = s["metadata"]["ownerReferences"]
    assert (ref["kind"], ref["uid"], ref["controller"]) == ("Service", svc_uid, True)
    assert s["ports"] == [{"name": "web", "protocol": "TCP", "port": 8080}]
    for e in eps:
        assert e["conditions"] == {"ready": True, "serving": True, "terminating": False}
        assert e["targetRef"]["kind"] == "Pod" and e["nodeName"].startswith("hollow-node-")
    ips = sorted(e["addresses"][0] for e in eps)

    def endpoints_ready():
        e = get(cluster, f"/api/v1/namespaces/{ns}/endpoints/api")
        subs = (e or {}).get("subsets") or []
        return subs if subs and len(subs[0].get("addresses") or []) == 3 else None
    [sub] = wait_for(endpoints_ready, 20, what="Endpoints with 3 addresses")
    assert sorted(a["ip"] for a in sub["addresses"]) == ips
    assert sub["ports"] == [{"name": "web", "port": 8080, "protocol": "TCP"}]

    r = cluster.call("PATCH", f"/apis/apps/v1/namespaces/{ns}/deployments/api/scale", {"spec": {"replicas": 0}},
                     content_type="application/merge-patch+json")
    assert r.status == 200, r.body

    def placeholder():
        ss = items(cluster, slices_path + "?labelSelector=kubernetes.io%2Fservice-name%3Dapi")
        return len(ss) == 1 and not ss[0].get("endpoints") and not ss[0].get("ports")
    wait_for(placeholder, 40, what="one empty placeholder slice")
    wait_for(lambda: not (get(cluster, f"/api/v1/namespaces/{ns}/endpoints/api") or {}).get("subsets"), 20,
             what="Endpoints without subsets")
    assert not items(cluster, slices_path + "?labelSelector=kubernetes.io%2Fservice-name%3Dmanual")
    assert get(cluster, f"/api/v1/namespaces/{ns}/endpoints/manual") is None

    assert cluster.call("DELETE", f"/api/v1/namespaces/{ns}/services/api").status == 200
    wait_for(lambda: get(cluster, f"/api/v1/namespaces/{ns}/endpoints/api") is None, 20,
             what="Endpoints deleted with the Service")
    wait_for(lambda: not items(cluster, slices_path + "?labelSelector=kubernetes.io%2Fservice-name%3Dapi"), 20,
             what="slices deleted with the Service (owner reference)")
