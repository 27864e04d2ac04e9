"""pods/binding as upstream's BindingREST (setPodHostAndAnnotations): node name set,
PodScheduled=True, the Binding's annotations copied, a UID precondition, no second
binding, no binding of a gated pod."""
import pytest

from server_procs import ServerProc

NS = "default"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = ServerProc(tmp_path_factory.mktemp("binding") / "data").start()   # --scheduler=false
    yield s
    s.stop()


def _pod(server, name, **spec):
    r = server.call("POST", f"/api/v1/namespaces/{NS}/pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "nginx"}], **spec}})
    assert r.status == 201, r
    return r.json


def _bind(server, name, node, **meta):
    return server.call("POST", f"/api/v1/namespaces/{NS}/pods/{name}/binding", {
        "apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, **meta},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node}})


def test_binding_sets_node_condition_and_annotations(server):
    pod = _pod(server, "b1")
    r = _bind(server, "b1", "n1", uid=pod["metadata"]["uid"], annotations={"example.com/by": "test"})
    assert r.status == 201 and r.json["status"] == "Success"
    got = server.call("GET", f"/api/v1/namespaces/{NS}/pods/b1").json
    assert got["spec"]["nodeName"] == "n1"
    assert got["metadata"]["annotations"]["example.com/by"] == "test"
    cond = next(c for c in got["status"]["conditions"] if c["type"] == "PodScheduled")
    assert cond["status"] == "True"
    again = _bind(server, "b1", "n2")
    assert again.status == 409 and again.json["reason"] == "Conflict"
    assert again.json["message"] == 'Operation cannot be fulfilled on pods "b1": pod b1 is already assigned to node "n1"'


def test_binding_uid_precondition(server):
    _pod(server, "b2")
    r = _bind(server, "b2", "n1", uid="not-the-uid")
    assert r.status == 409
    assert "Precondition failed: UID in precondition: not-the-uid" in r.json["message"]
    assert server.call("GET", f"/api/v1/namespaces/{NS}/pods/b2").json["spec"].get("nodeName") is None


def test_gated_pod_cannot_be_bound(server):
    _pod(server, "b3", schedulingGates=[{"name": "example.com/gate"}])
    r = _bind(server, "b3", "n1")
    assert r.status == 409 and "non-empty .spec.schedulingGates" in r.json["message"]
