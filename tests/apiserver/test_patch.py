"""Patch semantics: JSON merge patch, strategic merge patch, JSON patch.

Expected results for strategic merge patch come from upstream's own cases
(k8s.io/apimachinery/pkg/util/strategicpatch/patch_test.go, run against a schema built
like its MergeItem test type) and from what kubectl sends for Deployments and Services.
"""
from __future__ import annotations

import copy

import pytest

from kubeplane.apiserver.machinery.errors import APIError
from kubeplane.apiserver.registry.patch import json_merge_patch, json_patch, strategic_merge_patch
from kubeplane.apiserver.registry.schema.defs import SchemaNode

DEPLOYMENT = SchemaNode.for_definition("io.k8s.api.apps.v1.Deployment")
SERVICE = SchemaNode.for_definition("io.k8s.api.core.v1.Service")
POD = SchemaNode.for_definition("io.k8s.api.core.v1.Pod")

# upstream's MergeItem test type, as schema
_ITEM: dict = {"type": "object", "properties": {
    "name": {"type": "string"}, "value": {"type": "string"}, "other": {"type": "string"},
    "simpleMap": {"type": "object", "additionalProperties": {"type": "string"}},
    "nonMergingList": {"type": "array", "items": {"type": "object"}},
    "nonMergingIntList": {"type": "array", "items": {"type": "integer"}},
    "mergingIntList": {"type": "array", "items": {"type": "integer"},
                       "x-kubernetes-patch-strategy": "merge"},
}}
_ITEM["properties"]["mergingList"] = {"type": "array", "items": _ITEM,
                                      "x-kubernetes-patch-strategy": "merge",
                                      "x-kubernetes-patch-merge-key": "name"}
_ITEM["properties"]["retainKeysMap"] = {"type": "object", "properties": copy.copy(_ITEM["properties"]),
                                        "x-kubernetes-patch-strategy": "retainKeys"}
_ITEM["properties"]["retainKeysMergingList"] = {
    "type": "array", "items": _ITEM, "x-kubernetes-patch-strategy": "merge,retainKeys",
    "x-kubernetes-patch-merge-key": "name"}
ITEM = SchemaNode(_ITEM)


def deployment() -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                     "annotations": {"a": "1"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "web", "image": "nginx:1.25",
                         "ports": [{"containerPort": 80, "protocol": "TCP"}],
                         "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                         "args": ["--x", "--y"]},
                        {"name": "sidecar", "image": "busybox"},
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                    "tolerations": [{"key": "k", "operator": "Exists"}],
                },
            },
        },
    }


def containers(obj: dict) -> list:
    return obj["spec"]["template"]["spec"]["containers"]


# --------------------------------------------------------------------------- JSON merge patch

def test_merge_patch_merges_maps_deletes_nulls_replaces_lists():
    d = deployment()
    out = json_merge_patch(d, {"metadata": {"labels": {"tier": "fe", "app": None}},
                               "spec": {"replicas": 3, "template": {"spec": {
                                   "containers": [{"name": "web", "image": "nginx:2"}]}}}})
    assert out["metadata"]["labels"] == {"tier": "fe"}
    assert out["spec"]["replicas"] == 3
    assert containers(out) == [{"name": "web", "image": "nginx:2"}]   # list replaced whole
    assert out["spec"]["strategy"] == d["spec"]["strategy"]
    assert d == deployment()   # input untouched


def test_merge_patch_body_must_be_an_object():
    for body in ([{"op": "add"}], "x", 3, None):
        with pytest.raises(APIError) as e:
            json_merge_patch(deployment(), body)
        assert e.value.code == 400 and e.value.reason == "BadRequest"
    with pytest.raises(APIError) as e:
        json_merge_patch(deployment(), [])
    assert "cannot unmarshal array" in e.value.message


def test_merge_patch_object_replaces_scalar_and_result_is_fresh():
    d = {"a": 1, "b": {"c": [1, 2]}}
    out = json_merge_patch(d, {"a": {"x": None, "y": 1}})
    assert out == {"a": {"y": 1}, "b": {"c": [1, 2]}}
    out["b"]["c"].append(3)
    assert d["b"]["c"] == [1, 2]


# --------------------------------------------------------------------------- strategic merge patch

def test_smp_merges_containers_by_name():
    d = deployment()
    out = strategic_merge_patch(d, {"spec": {"template": {"spec": {"containers": [
        {"name": "web", "image": "nginx:1.26"}]}}}}, DEPLOYMENT)
    cs = containers(out)
    assert [c["name"] for c in cs] == ["web", "sidecar"]
    assert cs[0]["image"] == "nginx:1.26"
    assert cs[0]["ports"] == [{"containerPort": 80, "protocol": "TCP"}]   # kept
    assert cs[1] == {"name": "sidecar", "image": "busybox"}
    assert d == deployment()


def test_smp_new_item_is_appended_and_nested_env_merges():
    out = strategic_merge_patch(deployment(), {"spec": {"template": {"spec": {"containers": [
        {"name": "web", "env": [{"name": "B", "value": "two"}, {"name": "C", "value": "3"}]}]}}}},
        DEPLOYMENT)
    env = containers(out)[0]["env"]
    assert {e["name"]: e["value"] for e in env} == {"A": "1", "B": "two", "C": "3"}


def test_smp_delete_directive_in_list_item():
    out = strategic_merge_patch(deployment(), {"spec": {"template": {"spec": {"containers": [
        {"name": "sidecar", "$patch": "delete"}]}}}}, DEPLOYMENT)
    assert [c["name"] for c in containers(out)] == ["web"]


def test_smp_replace_directive_in_list():
    out = strategic_merge_patch(deployment(), {"spec": {"template": {"spec": {"containers": [
        {"$patch": "replace"}, {"name": "only", "image": "x"}]}}}}, DEPLOYMENT)
    assert containers(out) == [{"name": "only", "image": "x"}]


def test_smp_replace_and_delete_directives_in_maps():
    out = strategic_merge_patch(deployment(), {"metadata": {"labels": {"$patch": "replace",
                                                                        "new": "v"}}}, DEPLOYMENT)
    assert out["metadata"]["labels"] == {"new": "v"}
    out = strategic_merge_patch(deployment(), {"metadata": {"annotations": {"$patch": "delete"}}},
                                DEPLOYMENT)
    assert out["metadata"]["annotations"] == {}     # upstream: an empty map, not absent


def test_smp_null_deletes_and_lists_without_strategy_are_replaced():
    out = strategic_merge_patch(deployment(), {"spec": {"strategy": {"rollingUpdate": None},
                                                        "template": {"spec": {
                                                            "tolerations": [{"key": "z"}]}}}},
                                DEPLOYMENT)
    assert out["spec"]["strategy"] == {"type": "RollingUpdate"}
    assert out["spec"]["template"]["spec"]["tolerations"] == [{"key": "z"}]
    # args: atomic list of scalars, replaced even inside a merged container
    out = strategic_merge_patch(deployment(), {"spec": {"template": {"spec": {"containers": [
        {"name": "web", "args": ["--z"]}]}}}}, DEPLOYMENT)
    assert containers(out)[0]["args"] == ["--z"]


def test_smp_retain_keys_strategy_switch_like_kubectl_apply():
    # kubectl apply switching RollingUpdate -> Recreate sends $retainKeys for the strategy
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate",
                                   "rollingUpdate": None}}}
    out = strategic_merge_patch(deployment(), patch, DEPLOYMENT)
    assert out["spec"]["strategy"] == {"type": "Recreate"}


def test_smp_retain_keys_on_volume_items():
    patch = {"spec": {"template": {"spec": {"volumes": [
        {"name": "data", "$retainKeys": ["name", "hostPath"], "hostPath": {"path": "/d"}}]}}}}
    out = strategic_merge_patch(deployment(), patch, DEPLOYMENT)
    assert out["spec"]["template"]["spec"]["volumes"] == [{"name": "data", "hostPath": {"path": "/d"}}]


def test_smp_retain_keys_must_list_every_patched_key():
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate",
                                   "rollingUpdate": {"maxSurge": 1}}}}
    with pytest.raises(APIError) as e:
        strategic_merge_patch(deployment(), patch, DEPLOYMENT)
    assert e.value.code == 400 and e.value.message == "invalid patch format of retainKeys"


def test_smp_set_element_order_like_kubectl_apply():
    # kubectl apply: containers reordered and one added
    patch = {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "new"}, {"name": "web"}],
        "containers": [{"name": "new", "image": "redis"}]}}}}
    out = strategic_merge_patch(deployment(), patch, DEPLOYMENT)
    assert [c["name"] for c in containers(out)] == ["sidecar", "new", "web"]
    assert containers(out)[2]["image"] == "nginx:1.25"


def test_smp_set_element_order_mismatch_is_400():
    patch = {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
        "containers": [{"name": "sidecar", "image": "a"}, {"name": "web", "image": "b"}]}}}}
    with pytest.raises(APIError) as e:
        strategic_merge_patch(deployment(), patch, DEPLOYMENT)
    assert e.value.code == 400 and "doesn't match" in e.value.message


def test_smp_finalizers_union_and_delete_from_primitive_list():
    d = deployment()
    d["metadata"]["finalizers"] = ["a/x", "b/y"]
    out = strategic_merge_patch(d, {"metadata": {"finalizers": ["b/y", "c/z"]}}, DEPLOYMENT)
    assert out["metadata"]["finalizers"] == ["a/x", "b/y", "c/z"]
    out = strategic_merge_patch(d, {"metadata": {
        "$deleteFromPrimitiveList/finalizers": ["a/x"]}}, DEPLOYMENT)
    assert out["metadata"]["finalizers"] == ["b/y"]


def test_smp_service_ports_merge_by_port():
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
           "spec": {"selector": {"app": "web"}, "ports": [
               {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
               {"name": "https", "port": 443, "protocol": "TCP"}]}}
    out = strategic_merge_patch(svc, {"spec": {"ports": [{"port": 80, "targetPort": 9090}],
                                               "selector": {"version": "v2"}}}, SERVICE)
    assert out["spec"]["ports"][0] == {"name": "http", "port": 80, "targetPort": 9090,
                                       "protocol": "TCP"}
    assert len(out["spec"]["ports"]) == 2
    assert out["spec"]["selector"] == {"app": "web", "version": "v2"}


def test_smp_missing_merge_key_is_400():
    with pytest.raises(APIError) as e:
        strategic_merge_patch(deployment(), {"spec": {"template": {"spec": {
            "containers": [{"image": "x"}]}}}}, DEPLOYMENT)
    assert e.value.code == 400
    assert "does not contain declared merge key: name" in e.value.message


def test_smp_bad_shapes():
    with pytest.raises(APIError) as e:
        strategic_merge_patch(deployment(), [{"op": "add"}], DEPLOYMENT)
    assert e.value.code == 400
    with pytest.raises(APIError) as e:
        strategic_merge_patch(deployment(), {"metadata": {"$patch": "bogus"}}, DEPLOYMENT)
    assert e.value.code == 400 and "unknown patch type: bogus" in e.value.message
    with pytest.raises(APIError) as e:
        strategic_merge_patch(deployment(), {"spec": {"template": {"spec": {"containers": [
            {"name": "web", "$patch": "merge"}]}}}}, DEPLOYMENT)
    assert e.value.code == 400
    with pytest.raises(APIError) as e:     # upstream: ErrNoListOfLists -> 422
        strategic_merge_patch({"metadata": {"finalizers": ["a"]}},
                              {"metadata": {"finalizers": [["x"]]}}, DEPLOYMENT)
    assert e.value.code == 422
    with pytest.raises(APIError) as e:
        strategic_merge_patch(deployment(), {"spec": {"$retainKeys": "replicas"}}, DEPLOYMENT)
    assert e.value.code == 400


def test_smp_without_schema_is_json_merge_patch():
    obj = {"spec": {"items": [{"name": "a", "v": 1}], "m": {"x": 1}}}
    out = strategic_merge_patch(obj, {"spec": {"items": [{"name": "b"}], "m": {"x": None}}}, None)
    assert out == {"spec": {"items": [{"name": "b"}], "m": {}}}


def test_smp_new_key_drops_nulls_and_directives():
    out = strategic_merge_patch({"metadata": {"name": "p"}},
                                {"spec": {"containers": [{"name": "c", "image": "i", "tty": None},
                                                         {"name": "gone", "$patch": "delete"}]}},
                                POD)
    assert out["spec"] == {"containers": [{"name": "c", "image": "i"}]}


def test_smp_inputs_not_mutated():
    d, p = deployment(), {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"},
                                   "template": {"spec": {"containers": [
                                       {"name": "sidecar", "$patch": "delete"}]}}}}
    p0 = copy.deepcopy(p)
    strategic_merge_patch(d, p, DEPLOYMENT)
    assert d == deployment() and p == p0


# upstream patch_test.go cases (original, patch, result) on the MergeItem schema
UPSTREAM_CASES = [
    ("unique scalars when merging lists",
     {"mergingIntList": [1, 2]}, {"mergingIntList": [2, 3]}, {"mergingIntList": [1, 2, 3]}),
    ("delete all items from merging list",
     {"mergingList": [{"name": "1"}, {"name": "2"}]}, {"mergingList": [{"$patch": "replace"}]},
     {"mergingList": []}),
    ("add key and delete all keys from map",
     {"name": "1", "value": "1"}, {"other": "a", "$patch": "replace"}, {"other": "a"}),
    # upstream deleteMatchingEntries: one delete directive removes every duplicate
    ("a delete directive removes all duplicate entries",
     {"mergingList": [{"name": "1"}, {"name": "1"}, {"name": "2", "value": "a"},
                      {"name": "3"}, {"name": "3"}]},
     {"mergingList": [{"name": "1", "$patch": "delete"}, {"name": "3", "$patch": "delete"}]},
     {"mergingList": [{"name": "2", "value": "a"}]}),
    ("retainKeys map can delete a field when no retainKeys directive present",
     {"retainKeysMap": {"name": "foo", "value": "a"}}, {"retainKeysMap": {"value": None}},
     {"retainKeysMap": {"name": "foo"}}),
    ("retainKeys list can change a field",
     {"retainKeysMergingList": [{"name": "bar"}, {"name": "foo", "value": "a"}]},
     {"retainKeysMergingList": [{"name": "foo", "value": "b"}]},
     {"retainKeysMergingList": [{"name": "bar"}, {"name": "foo", "value": "b"}]}),
    ("preserve the order from the patch in a merging list",
     {"mergingList": [{"name": "1"}, {"name": "2", "value": "b"}, {"name": "3"}]},
     {"mergingList": [{"name": "3", "value": "c"}, {"name": "1", "value": "a"},
                      {"name": "2", "other": "x"}]},
     {"mergingList": [{"name": "3", "value": "c"}, {"name": "1", "value": "a"},
                      {"name": "2", "value": "b", "other": "x"}]}),
    ("preserve the order from the patch in a merging list 2",
     {"mergingList": [{"name": "1"}, {"name": "2", "value": "b"}, {"name": "3"}]},
     {"mergingList": [{"name": "3", "value": "c"}, {"name": "1", "value": "a"}]},
     {"mergingList": [{"name": "2", "value": "b"}, {"name": "3", "value": "c"},
                      {"name": "1", "value": "a"}]}),
    ("preserve the order from the patch in a merging int list",
     {"mergingIntList": [1, 2, 3]}, {"mergingIntList": [3, 1]}, {"mergingIntList": [2, 3, 1]}),
    ("$setElementOrder contains item that is not present in the list to be merged",
     {"mergingList": [{"name": "1"}, {"name": "3"}]},
     {"$setElementOrder/mergingList": [{"name": "3"}, {"name": "2"}, {"name": "1"}],
      "mergingList": [{"name": "3", "value": "3"}, {"name": "1", "value": "1"}]},
     {"mergingList": [{"name": "3", "value": "3"}, {"name": "1", "value": "1"}]}),
    ("$setElementOrder on an int list alone",
     {"mergingIntList": [1, 3]}, {"$setElementOrder/mergingIntList": [3, 2, 1]},
     {"mergingIntList": [3, 1]}),
    ("delete items in lists of scalars",
     {"mergingIntList": [1, 2, 3, 4]},
     {"$setElementOrder/mergingIntList": [1, 2], "$deleteFromPrimitiveList/mergingIntList": [3]},
     {"mergingIntList": [1, 2, 4]}),
    ("add and delete items in lists of scalars",
     {"mergingIntList": [1, 2, 3, 4]},
     {"$setElementOrder/mergingIntList": [1, 2, 4], "$deleteFromPrimitiveList/mergingIntList": [3],
      "mergingIntList": [4]},
     {"mergingIntList": [1, 2, 4]}),
    ("merge lists of maps (three-way result)",
     {"mergingList": [{"name": "1", "other": "a"}, {"name": "2", "value": "2", "other": "b"}]},
     {"$setElementOrder/mergingList": [{"name": "4"}, {"name": "1"}, {"name": "2"}, {"name": "3"}],
      "mergingList": [{"name": "4", "value": "4"}, {"name": "3", "value": "3"}]},
     {"mergingList": [{"name": "4", "value": "4"}, {"name": "1", "other": "a"},
                      {"name": "2", "value": "2", "other": "b"}, {"name": "3", "value": "3"}]}),
    ("replace list of scalars",
     {"nonMergingIntList": [1, 2]}, {"nonMergingIntList": [2, 3]}, {"nonMergingIntList": [2, 3]}),
    ("delete field from nested map",
     {"simpleMap": {"key1": "1", "key2": "1", "other": "a"}}, {"simpleMap": {"key2": None}},
     {"simpleMap": {"key1": "1", "other": "a"}}),
]


@pytest.mark.parametrize("name,original,patch,result", UPSTREAM_CASES,
                         ids=[c[0] for c in UPSTREAM_CASES])
def test_smp_upstream_cases(name, original, patch, result):
    assert strategic_merge_patch(original, patch, ITEM) == result


# --------------------------------------------------------------------------- JSON patch

def test_json_patch_ops():
    d = deployment()
    out = json_patch(d, [
        {"op": "replace", "path": "/spec/replicas", "value": 5},
        {"op": "add", "path": "/metadata/labels/tier", "value": "fe"},
        {"op": "add", "path": "/spec/template/spec/containers/0/env/-",
         "value": {"name": "C", "value": "3"}},
        {"op": "remove", "path": "/metadata/annotations/a"},
        {"op": "copy", "from": "/metadata/labels/app", "path": "/metadata/labels/copied"},
        {"op": "move", "from": "/spec/template/spec/containers/1",
         "path": "/spec/template/spec/containers/0"},
        {"op": "test", "path": "/spec/replicas", "value": 5},
        {"op": "add", "path": "/metadata/annotations/a~1b", "value": "slash"},
    ])
    assert out["spec"]["replicas"] == 5
    assert out["metadata"]["labels"] == {"app": "web", "tier": "fe", "copied": "web"}
    assert out["metadata"]["annotations"] == {"a/b": "slash"}
    assert [c["name"] for c in containers(out)] == ["sidecar", "web"]
    assert containers(out)[1]["env"][-1] == {"name": "C", "value": "3"}
    assert d == deployment()


def test_json_patch_negative_index_and_test_of_missing_null():
    out = json_patch({"a": [1, 2, 3]}, [{"op": "remove", "path": "/a/-1"},
                                        {"op": "test", "path": "/nothing", "value": None}])
    assert out == {"a": [1, 2]}


@pytest.mark.parametrize("ops", [
    [{"op": "test", "path": "/spec/replicas", "value": 3}],
    [{"op": "test", "path": "/metadata/name", "value": "web", }, {"op": "test", "path": "/x/y", "value": 1}],
    [{"op": "remove", "path": "/spec/nothere"}],
    [{"op": "replace", "path": "/spec/nothere", "value": 1}],
    [{"op": "add", "path": "/no/such/parent", "value": 1}],
    [{"op": "add", "path": "/spec/template/spec/containers/9", "value": {}}],
    [{"op": "frobnicate", "path": "/spec"}],
    [{"op": "add", "path": "/spec/x"}],
    [{"op": "replace", "path": "", "value": [1]}],
    [{"op": "test", "path": "/spec/replicas", "value": True}],
])
def test_json_patch_that_does_not_apply_is_422(ops):
    with pytest.raises(APIError) as e:
        json_patch(deployment(), ops)
    # upstream: NewGenericServerResponse(422, ...)
    assert e.value.code == 422 and e.value.reason == "Invalid"
    assert e.value.message == "the server rejected our request due to an error in our request"


def test_json_patch_bad_body_is_400_and_too_many_ops_413():
    for body in ({"op": "add"}, "x", [1], [[]]):
        with pytest.raises(APIError) as e:
            json_patch(deployment(), body)
        assert e.value.code == 400, body
    with pytest.raises(APIError) as e:
        json_patch(deployment(), [{"op": "test", "path": "/kind", "value": "Deployment"}] * 10001)
    assert e.value.code == 413
    assert "The allowed maximum operations in a JSON patch is 10000, got 10001" in e.value.message


def test_json_patch_failure_leaves_input_untouched():
    d = deployment()
    with pytest.raises(APIError):
        json_patch(d, [{"op": "replace", "path": "/spec/replicas", "value": 9},
                       {"op": "test", "path": "/spec/replicas", "value": 1}])
    assert d == deployment()
