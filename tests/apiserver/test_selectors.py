"""Label/field selectors: parsing, matching and errors as kube-apiserver gives them.

Expected texts come from k8s.io/apimachinery (labels/selector.go, fields/selector.go,
util/validation) and from real servers' replies quoted in upstream issues (e.g.
kubernetes/kubernetes#135136 for ReplicaSets' status.replicas)."""
from __future__ import annotations

import pytest

from kubeplane.apiserver.machinery import jsonpath
from kubeplane.apiserver.machinery.errors import APIError
from kubeplane.apiserver.registry.resources import BUILTIN, ResourceInfo
from kubeplane.apiserver.registry.selectors import (
    FieldSelector,
    LabelSelector,
    allowed_fields,
    field_set,
    parse_selectors,
)

R = {(r.group, r.plural): r for r in BUILTIN}
PODS = R[("", "pods")]

QNAME_RULE = ("must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
              "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
              "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")


def bad(fn, *args) -> str:
    with pytest.raises(APIError) as ei:
        fn(*args)
    assert ei.value.code == 400 and ei.value.reason == "BadRequest"
    return ei.value.message


# --- label selector parsing ----------------------------------------------------------

@pytest.mark.parametrize("text, canonical", [
    ("a=b", "a=b"),
    ("a==b", "a==b"),
    ("a!=b", "a!=b"),
    ("a", "a"),
    ("!a", "!a"),
    ("  a = b ,  c ", "a=b,c"),
    ("z=1,a=2", "a=2,z=1"),                       # requirements sorted by key
    ("x in (foo,,baz),y,z notin ()", "x in (,baz,foo),y,z notin ()"),  # upstream's doc example
    ("a in (c,b,c)", "a in (b,c)"),               # a set: deduplicated, sorted
    ("in in (in)", "in in (in)"),                  # keywords are values in a value context
    ("a=", "a="),
    ("a>1,b<10", "a>1,b<10"),
    ("app.kubernetes.io/name=web", "app.kubernetes.io/name=web"),
    ("", ""),
])
def test_label_parse_canonical(text, canonical):
    assert str(LabelSelector.parse(text)) == canonical


@pytest.mark.parametrize("text, message", [
    ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
    ("a=b c", "found 'c', expected: ',' or 'end of string'"),
    ("=a", "found '=', expected: !, identifier, or 'end of string'"),
    ("a=b,", "found '', expected: identifier after ','"),
    ("a,,b", "found ',', expected: identifier after ','"),
    ("a in b", "unable to parse requirement: found 'b' expected: '('"),
    ("a in (b", "unable to parse requirement: found '', expected: ',' or ')'"),
    ("!a=b", "found '=', expected: ',' or 'end of string'"),
    ("a>b", "unable to parse requirement: values[0]: Invalid value: \"b\": for 'Gt', 'Lt' operators, "
            "the value must be an integer"),
    ("a+b=c", 'unable to parse requirement: <nil>: Invalid value: "a+b": name part ' + QNAME_RULE),
    ("/a", 'unable to parse requirement: <nil>: Invalid value: "/a": prefix part must be non-empty'),
    ("a" * 64, 'unable to parse requirement: <nil>: Invalid value: "' + "a" * 64
     + '": name part must be no more than 63 characters'),
    ("a/b/c", 'unable to parse requirement: <nil>: Invalid value: "a/b/c": a qualified name ' + QNAME_RULE
     + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"),
])
def test_label_parse_errors(text, message):
    assert bad(LabelSelector.parse, text) == message


def test_label_value_errors():
    msg = bad(LabelSelector.parse, "a=b$")
    assert msg.startswith('unable to parse requirement: values[0][a]: Invalid value: "b$": a valid label '
                          "must be an empty string or consist of alphanumeric characters")
    assert msg.endswith("regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")
    long = "v" * 64
    assert bad(LabelSelector.parse, "a=" + long) == (
        f'unable to parse requirement: values[0][a]: Invalid value: "{long}": must be no more than 63 characters')
    # the longest valid key: a 253-char DNS prefix and a 63-char name
    prefix = ".".join(["p" * 63] * 3 + ["q" * 61])
    assert len(prefix) == 253
    assert LabelSelector.parse(f"{prefix}/{'n' * 63}=x").matches({f"{prefix}/{'n' * 63}": "x"})


# --- label matching ------------------------------------------------------------------

@pytest.mark.parametrize("text, labels, want", [
    ("a=b", {"a": "b"}, True),
    ("a=b", {"a": "c"}, False),
    ("a=b", {}, False),
    ("a!=b", {}, True),                 # != and notin match when the key is absent
    ("a!=b", {"a": "b"}, False),
    ("a notin (x,y)", {}, True),
    ("a notin (x,y)", {"a": "x"}, False),
    ("a in (x,y)", {"a": "y"}, True),
    ("a in (x,y)", {"b": "y"}, False),
    ("a", {"a": ""}, True),
    ("!a", {"a": ""}, False),
    ("!a", {"b": "1"}, True),
    ("a=", {"a": ""}, True),
    ("a=", {}, False),
    ("a>5", {"a": "6"}, True),
    ("a>5", {"a": "5"}, False),
    ("a<5", {"a": "x"}, False),
    ("a=b,c", {"a": "b"}, False),
    ("a=b,c", {"a": "b", "c": "d"}, True),
    ("", {"x": "y"}, True),
])
def test_label_matching(text, labels, want):
    assert LabelSelector.parse(text).matches(labels) is want


def test_label_empty_and_exact_pairs():
    assert LabelSelector.parse("").empty and LabelSelector.parse(None).matches(None)
    s = LabelSelector.parse("app=web,tier in (fe),env in (a,b),x!=y,z")
    assert not s.empty
    assert s.exact_pairs() == [("app", "web"), ("tier", "fe")]
    assert s.requires_exact_match("app") == "web" and s.requires_exact_match("env") is None
    assert not s.matches(None)


# --- metav1.LabelSelector ------------------------------------------------------------

def test_from_dict():
    s = LabelSelector.from_dict({"matchLabels": {"app": "web"},
                                 "matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a"]},
                                                      {"key": "old", "operator": "DoesNotExist"},
                                                      {"key": "env", "operator": "Exists"},
                                                      {"key": "zone", "operator": "NotIn", "values": ["x"]}]})
    # the string kubectl scale reads from status.selector, as upstream's Selector.String()
    assert str(s) == "app=web,env,!old,tier in (a,b),zone notin (x)"
    assert s.matches({"app": "web", "tier": "a", "env": "1"})
    assert not s.matches({"app": "web", "tier": "a", "env": "1", "old": "y"})
    assert not s.matches({"app": "web", "tier": "a", "env": "1", "zone": "x"})
    empty = LabelSelector.from_dict({})
    assert empty.empty and empty.matches({"any": "thing"})
    nothing = LabelSelector.from_dict(None)   # a nil selector selects nothing
    assert not nothing.empty and not nothing.matches({}) and str(nothing) == ""


def test_from_dict_errors():
    assert bad(LabelSelector.from_dict, {"matchExpressions": [{"key": "a", "operator": "Foo"}]}) == \
        '"Foo" is not a valid label selector operator'
    assert bad(LabelSelector.from_dict, {"matchExpressions": [{"key": "a", "operator": "In"}]}) == \
        "values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty"
    assert bad(LabelSelector.from_dict, {"matchExpressions": [
        {"key": "a", "operator": "Exists", "values": ["x"]}]}) == \
        'values: Invalid value: []string{"x"}: values set must be empty for exists and does not exist'
    assert bad(LabelSelector.from_dict, {"matchLabels": {"a b": "c"}}).startswith(
        'key: Invalid value: "a b": name part must consist')
    assert bad(LabelSelector.from_dict, "app=web") == "label selector must be an object"


# --- field selectors -----------------------------------------------------------------

def test_field_parse_and_match():
    f = FieldSelector.for_resource("spec.nodeName=node1,status.phase!=Running", PODS)
    assert str(f) == "spec.nodeName=node1,status.phase!=Running"
    assert f.exact("spec.nodeName") == "node1" and f.exact("status.phase") is None
    assert f.matches({"spec.nodeName": "node1", "status.phase": "Pending"})
    assert not f.matches({"spec.nodeName": "node1", "status.phase": "Running"})
    assert not f.matches({"spec.nodeName": "node2"})
    # an absent field reads as "": `spec.nodeName=` finds unscheduled pods
    unscheduled = FieldSelector.for_resource("spec.nodeName=", PODS)
    assert unscheduled.matches({}) and not unscheduled.matches({"spec.nodeName": "n"})
    assert FieldSelector.for_resource("metadata.name==a", PODS).exact("metadata.name") == "a"
    assert FieldSelector.for_resource("", PODS).empty and FieldSelector.parse(None).matches({"x": "1"})
    # spec.host is an old client's name for spec.nodeName
    assert FieldSelector.for_resource("spec.host=n1", PODS).exact("spec.nodeName") == "n1"


def test_field_escapes():
    f = FieldSelector.parse(r"metadata.name=a\,b\=c\\d,x=1")
    assert f.exact("metadata.name") == "a,b=c\\d" and f.exact("x") == "1"
    assert str(FieldSelector.parse(r"a=x\,y")) == r"a=x\,y"


@pytest.mark.parametrize("text, message", [
    ("a", "invalid selector: 'a'; can't understand 'a'"),
    ("x=1,b", "invalid selector: 'x=1,b'; can't understand 'b'"),
    ("x=a=b", "invalid field selector: unescaped character in value: 61"),
    (r"x=a\q", r"invalid field selector: invalid escape sequence: \q"),
    ("x=a\\", "invalid field selector: invalid escape sequence: \\"),
])
def test_field_syntax_errors(text, message):
    assert bad(FieldSelector.parse, text) == message


@pytest.mark.parametrize("key, selector, message", [
    (("", "pods"), "spec.foo=1", "field label not supported: spec.foo"),
    (("", "nodes"), "metadata.namespace=x", "field label not supported: metadata.namespace"),
    (("batch", "jobs"), "spec.foo=1", 'field label "spec.foo" not supported for batchv1.Job'),
    (("apps", "deployments"), "spec.replicas=1",
     '"spec.replicas" is not a known field selector: only "metadata.name", "metadata.namespace"'),
    (("apps", "replicasets"), "status.replicas=0",
     '"status.replicas" is not a known field selector: only "metadata.name", "metadata.namespace"'),
    (("", "configmaps"), "data.x=1",
     '"data.x" is not a known field selector: only "metadata.name", "metadata.namespace"'),
    (("events.k8s.io", "events"), "involvedObject.kind=Pod", "field label not supported: involvedObject.kind"),
    (("", "events"), "regarding.kind=Pod", "field label not supported: regarding.kind"),
])
def test_field_unsupported(key, selector, message):
    assert bad(FieldSelector.for_resource, selector, R[key]) == message


def test_field_errors_in_sorted_term_order():
    # upstream sorts the terms before converting them: the first bad one in that order wins
    assert bad(FieldSelector.for_resource, "z.z=1,b.b=2", PODS) == "field label not supported: b.b"


def test_parse_selectors_together():
    ls, fs = parse_selectors(PODS, "app=web", "spec.nodeName=n")
    assert ls.exact_pairs() == [("app", "web")] and fs.exact("spec.nodeName") == "n"


# --- field sets ----------------------------------------------------------------------

def test_pod_field_set():
    pod = {"metadata": {"name": "p", "namespace": "ns"},
           "spec": {"nodeName": "n1", "restartPolicy": "Always", "schedulerName": "default-scheduler",
                    "serviceAccountName": "default", "hostNetwork": True},
           "status": {"phase": "Running", "podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}],
                      "nominatedNodeName": "n2"}}
    assert field_set(PODS, pod) == {
        "metadata.name": "p", "metadata.namespace": "ns", "spec.nodeName": "n1", "spec.restartPolicy": "Always",
        "spec.schedulerName": "default-scheduler", "spec.serviceAccountName": "default",
        "spec.hostNetwork": "true", "status.phase": "Running", "status.podIP": "10.0.0.1",
        "status.nominatedNodeName": "n2"}
    bare = field_set(PODS, {"metadata": {"name": "q", "namespace": "ns"}})
    assert bare["spec.hostNetwork"] == "false" and bare["spec.nodeName"] == ""
    assert "status.podIPs" in allowed_fields(PODS)   # accepted, but (as upstream) never set


def test_field_sets_per_resource():
    node = R[("", "nodes")]
    assert field_set(node, {"metadata": {"name": "n"}, "spec": {"unschedulable": True}}) == \
        {"metadata.name": "n", "spec.unschedulable": "true"}
    assert field_set(node, {"metadata": {"name": "n"}})["spec.unschedulable"] == "false"
    assert allowed_fields(node) == {"metadata.name", "spec.unschedulable"}
    assert field_set(R[("", "namespaces")], {"metadata": {"name": "d"}, "status": {"phase": "Active"}}) == \
        {"metadata.name": "d", "status.phase": "Active"}
    assert field_set(R[("", "secrets")], {"metadata": {"name": "s", "namespace": "d"},
                                          "type": "kubernetes.io/tls"})["type"] == "kubernetes.io/tls"
    svc = field_set(R[("", "services")], {"metadata": {"name": "s", "namespace": "d"},
                                          "spec": {"clusterIP": "10.96.0.1", "type": "NodePort"}})
    assert svc["spec.clusterIP"] == "10.96.0.1" and svc["spec.type"] == "NodePort"
    assert field_set(R[("apps", "replicasets")], {"metadata": {}, "status": {"replicas": 3}})["status.replicas"] == "3"
    assert field_set(R[("batch", "jobs")], {"metadata": {}, "status": {"succeeded": 2}})["status.successful"] == "2"
    assert field_set(R[("apps", "deployments")], {"metadata": {"name": "d", "namespace": "x"}}) == \
        {"metadata.name": "d", "metadata.namespace": "x"}
    # cluster-scoped kinds have no metadata.namespace field: it reads as ""
    cr = R[("rbac.authorization.k8s.io", "clusterroles")]
    assert field_set(cr, {"metadata": {"name": "admin"}}) == {"metadata.name": "admin"}
    assert FieldSelector.for_resource("metadata.namespace=", cr).matches(field_set(cr, {"metadata": {"name": "a"}}))


def test_event_field_sets():
    core = field_set(R[("", "events")], {
        "metadata": {"name": "e", "namespace": "d"},
        "involvedObject": {"kind": "Pod", "name": "p", "namespace": "d", "uid": "u1", "apiVersion": "v1",
                           "resourceVersion": "7", "fieldPath": "spec.containers{a}"},
        "reason": "Started", "type": "Normal", "reportingComponent": "kubelet", "source": {}})
    assert core["involvedObject.kind"] == "Pod" and core["involvedObject.fieldPath"] == "spec.containers{a}"
    assert core["reportingComponent"] == "kubelet"
    assert core["source"] == "kubelet"          # source.component, falling back to the reporting controller
    assert core["reason"] == "Started" and core["type"] == "Normal"
    new = field_set(R[("events.k8s.io", "events")], {
        "metadata": {"name": "e", "namespace": "d"}, "regarding": {"kind": "Node", "name": "n1"},
        "reason": "Ready", "type": "Normal", "reportingController": "kubelet"})
    assert new["regarding.kind"] == "Node" and new["regarding.name"] == "n1" and new["regarding.uid"] == ""
    assert new["reportingController"] == "kubelet"
    ok = FieldSelector.for_resource("regarding.kind=Node,reason=Ready", R[("events.k8s.io", "events")])
    assert ok.matches(new)


def crd_resource(namespaced: bool = True) -> ResourceInfo:
    version = {"name": "v1", "served": True, "storage": True,
               "selectableFields": [{"jsonPath": ".spec.color"}, {"jsonPath": ".spec.size"},
                                    {"jsonPath": ".spec.enabled"}]}
    crd = {"metadata": {"name": "widgets.example.com"},
           "spec": {"group": "example.com", "scope": "Namespaced" if namespaced else "Cluster",
                    "names": {"kind": "Widget", "plural": "widgets"}, "versions": [version]}}
    return ResourceInfo("example.com", "v1", "Widget", "widgets", "widget", namespaced, crd=crd, crd_version=version)


def test_crd_selectable_fields():
    res = crd_resource()
    assert allowed_fields(res) == {"metadata.name", "metadata.namespace", "spec.color", "spec.size", "spec.enabled"}
    obj = {"metadata": {"name": "w", "namespace": "d"}, "spec": {"color": "red", "size": 3, "enabled": False}}
    assert field_set(res, obj) == {"metadata.name": "w", "metadata.namespace": "d", "spec.color": "red",
                                   "spec.size": "3", "spec.enabled": "false"}
    # a missing value is "" (upstream's strategy test "missing value")
    assert field_set(res, {"metadata": {"name": "w"}, "spec": {}})["spec.color"] == ""
    f = FieldSelector.for_resource("spec.color=red,spec.size!=4", res)
    assert f.matches(field_set(res, obj))
    assert bad(FieldSelector.for_resource, "spec.shape=round", res) == "field label not supported: spec.shape"
    cluster = crd_resource(namespaced=False)
    assert bad(FieldSelector.for_resource, "metadata.namespace=x", cluster) == \
        "field label not supported: metadata.namespace"


def test_jsonpath_subset():
    obj = {"spec": {"replicas": 3, "list": [{"x": 1}, {"x": 2}]},
           "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Other", "status": "False"}]},
           "metadata": {"labels": {"app": "web", "app.kubernetes.io/name": "n"}},
           "items": [{"name": "a"}, {"name": "b"}]}
    assert jsonpath.compile(".spec.replicas")(obj) == [3]
    assert jsonpath.compile('.status.conditions[?(@.type=="Ready")].status')(obj) == ["True"]
    assert jsonpath.compile(".metadata.labels.app")(obj) == ["web"]
    assert jsonpath.compile(".spec.list[0].x")(obj) == [1]
    assert jsonpath.compile(".spec.list[-1].x")(obj) == [2]
    assert jsonpath.compile(".items[*].name")(obj) == ["a", "b"]
    assert jsonpath.compile("{.items[0:1].name}")(obj) == ["a"]
    assert jsonpath.compile(".metadata.labels['app.kubernetes.io/name']")(obj) == ["n"]
    assert jsonpath.compile(r".metadata.labels.app\.kubernetes\.io/name")(obj) == ["n"]
    assert jsonpath.compile("..name")(obj) == ["a", "b"]
    assert jsonpath.compile(".status.conditions[?(@.status!='True')].type")(obj) == ["Other"]
    assert jsonpath.compile(".nope.deeper")(obj) == [] and jsonpath.compile(".spec.replicas.x")(obj) == []
    assert jsonpath.compile(".spec.list[5].x")(obj) == []
    for broken in ["", "spec", ".spec[", ".spec[?(x)]", ".a[1:2:3:4]", ".a[?(@.b==)]", ".a['x]"]:
        with pytest.raises(ValueError):
            jsonpath.compile(broken)
