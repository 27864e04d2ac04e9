"""The EndpointSlice reconciler's plan without a server: at most 100 endpoints per
slice, endpoints that stay stay in their slice, new ones fill free room first, empty
slices go, one placeholder when nothing serves; and named target ports per pod."""
from __future__ import annotations

from kubeplane.controllers.endpointslice import EndpointSliceController
from kubeplane.controllers.endpointutil import pod_ports, target_port

PORTS = (("http", "TCP", 8080, None),)


def ep(uid: str, ready: bool = True) -> dict:
    return {"addresses": [f"10.0.0.{abs(hash(uid)) % 250}"], "conditions": {"ready": ready, "serving": ready,
                                                                            "terminating": False},
            "targetRef": {"kind": "Pod", "uid": uid, "name": uid, "namespace": "ns"}}


def slice_(name: str, eps: list[dict], ports=PORTS) -> dict:
    return {"metadata": {"name": name}, "addressType": "IPv4", "endpoints": eps,
            "ports": [{"name": n, "protocol": pr, "port": p} for n, pr, p, _ in ports]}


def planner(cap: int = 100) -> EndpointSliceController:
    c = EndpointSliceController.__new__(EndpointSliceController)     # plan() needs no informers
    c.max_endpoints = cap
    return c


def test_new_service_is_packed_into_slices_of_at_most_100():
    want = {PORTS: {f"p{i}": ep(f"p{i}") for i in range(250)}}
    plan = planner().plan(want, [])
    assert [len(eps) for _, eps in plan["create"]] == [100, 100, 50]
    assert plan["update"] == [] and plan["delete"] == []


def test_a_changed_pod_rewrites_only_its_slice():
    a = slice_("a", [ep(f"p{i}") for i in range(100)])
    b = slice_("b", [ep(f"p{i}") for i in range(100, 150)])
    want = {PORTS: {f"p{i}": ep(f"p{i}") for i in range(150)}}
    want[PORTS]["p120"] = ep("p120", ready=False)
    plan = planner().plan(want, [a, b])
    assert [s["metadata"]["name"] for s in plan["update"]] == ["b"] and not plan["create"] and not plan["delete"]
    assert [e["conditions"]["ready"] for e in plan["update"][0]["endpoints"] if e["targetRef"]["uid"] == "p120"] == [False]


def test_new_endpoints_fill_free_room_and_empty_slices_go():
    a = slice_("a", [ep("p1"), ep("p2")])
    b = slice_("b", [ep("p3")])
    c = slice_("c", [ep("p6")])
    want = {PORTS: {"p1": ep("p1"), "p2": ep("p2"), "p4": ep("p4"), "p5": ep("p5")}}
    plan = planner(cap=3).plan(want, [a, b, c])
    # p3 and p6 went; p4 and p5 fill the free room (a slice that emptied is reused, as
    # upstream turns a delete plus a create into an update); what stays empty is deleted
    got = {s["metadata"]["name"]: [e["targetRef"]["uid"] for e in s["endpoints"]] for s in plan["update"]}
    assert got == {"a": ["p1", "p2", "p4"], "b": ["p5"]}
    assert [s["metadata"]["name"] for s in plan["delete"]] == ["c"] and plan["create"] == []


def test_placeholder_when_nothing_serves():
    assert planner().plan({}, []) == {"create": [((), [])], "update": [], "delete": []}
    a = slice_("a", [ep("p1")])
    plan = planner().plan({}, [a])
    assert plan["delete"] == [a] and plan["create"] == [((), [])]
    empty = slice_("e", [], ports=())
    assert planner().plan({}, [empty]) == {"create": [], "update": [], "delete": []}


def test_named_target_ports_resolve_per_pod():
    svc = {"spec": {"ports": [{"name": "web", "port": 80, "targetPort": "http"},
                              {"name": "metrics", "port": 9090, "targetPort": 9100}]}}
    pod1 = {"spec": {"containers": [{"ports": [{"name": "http", "containerPort": 8080}]}]}}
    pod2 = {"spec": {"containers": [{"ports": [{"name": "http", "containerPort": 9000, "protocol": "TCP"}]}]}}
    pod3 = {"spec": {"containers": [{"ports": [{"name": "other", "containerPort": 1}]}]}}
    assert pod_ports(svc, pod1) == (("metrics", "TCP", 9100, None), ("web", "TCP", 8080, None))
    assert pod_ports(svc, pod2) == (("metrics", "TCP", 9100, None), ("web", "TCP", 9000, None))
    assert pod_ports(svc, pod3) == (("metrics", "TCP", 9100, None),)
    assert target_port({"port": 53, "protocol": "UDP", "targetPort": "dns"},
                       {"spec": {"containers": [{"ports": [{"name": "dns", "containerPort": 53}]}]}}) is None
