"""The fast paths of fieldmanager give what the general path gives.

- created_fields (a create's FieldsV1 from one walk) equals set_to_fields of the tracked
  paths compare({}, obj) finds;
- compare's C-speed skip of unchanged subtrees (_unchanged) finds the same differences as
  the full walk, including true vs 1, 1 vs 1.0 and NaN.
Objects are random mutations of a few typed objects (seeded, so failures reproduce).
"""
from __future__ import annotations

import copy
import random

import pytest

from kubeplane.apiserver.registry import fieldmanager as fm
from kubeplane.apiserver.registry.schema.defs import SchemaNode

POD = SchemaNode.for_definition("io.k8s.api.core.v1.Pod")
SERVICE = SchemaNode.for_definition("io.k8s.api.core.v1.Service")
CR = SchemaNode({"type": "object", "properties": {"spec": {"type": "object", "properties": {
    "items": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["a", "b"],
              "items": {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}}},
    "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
    "m": {"type": "object", "x-kubernetes-map-type": "atomic", "additionalProperties": {"type": "string"}}}}}})

POD_OBJ = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "p", "namespace": "d", "uid": "u", "labels": {"a": "b"}, "annotations": {"x": "<&>"}},
           "spec": {"containers": [{"name": "a", "image": "x", "env": [{"name": "E", "value": "1"}],
                                    "ports": [{"containerPort": 80}, {"containerPort": 80, "protocol": "UDP"}]},
                                   {"name": "a", "args": ["y"]}, {"image": "no-name"}],
                    "volumes": [{"name": "v", "emptyDir": {}}], "nodeSelector": {"k": "v"}},
           "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}
SERVICE_OBJ = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "finalizers": ["a", "a"]},
               "spec": {"ports": [{"port": 80, "protocol": "TCP"}, {"port": 80}], "selector": {"a": "b"},
                        "clusterIPs": ["1.2.3.4"]}}
CR_OBJ = {"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "c"},
          "spec": {"items": [{"a": "x", "b": 1}, {"a": "x", "b": 1, "c": 2}, {"c": 3}], "tags": ["a", "b", "a"],
                   "m": {"k": "v"}, "free": {"q": [1, {"r": True}]}}}
CASES = [(POD_OBJ, POD), (SERVICE_OBJ, SERVICE), (CR_OBJ, CR), (POD_OBJ, None)]
VALUES = [None, True, False, 0, 1, 1.0, 2.5, float("nan"), "", "s", [], {}, [1, 1], ["a"], {"a": 1},
          {"name": "x"}, [{"name": "a"}, {"name": "a"}], [None], {"x": None}]


def _paths(v, p=()):
    yield p
    if isinstance(v, dict):
        for k, c in v.items():
            yield from _paths(c, p + (k,))
    elif isinstance(v, list):
        for i, c in enumerate(v):
            yield from _paths(c, p + (i,))


def _mutate(obj, rng: random.Random, n: int):
    obj = copy.deepcopy(obj)
    for _ in range(n):
        ps = [p for p in _paths(obj) if p]
        if not ps:
            break
        p = rng.choice(ps)
        parent = obj
        for k in p[:-1]:
            parent = parent[k]
        r = rng.random()
        if r < 0.3:
            parent.pop(p[-1])
        elif r < 0.7 or not isinstance(parent[p[-1]], (dict, list)):
            parent[p[-1]] = copy.deepcopy(rng.choice(VALUES))
        elif isinstance(parent[p[-1]], dict):
            parent[p[-1]][rng.choice(["name", "x", "a", "b", "image"])] = copy.deepcopy(rng.choice(VALUES))
        else:
            parent[p[-1]].append(copy.deepcopy(rng.choice(VALUES)))
    return obj


def _diff(old, new, schema):
    d = fm.compare(old, new, schema)
    return d.added, d.modified, d.removed


@pytest.mark.parametrize("seed", range(4))
def test_created_fields_equal_the_general_path(seed: int):
    rng = random.Random(seed)
    for _ in range(150):
        base, schema = rng.choice(CASES)
        obj = _mutate(base, rng, rng.randint(0, 5))
        ignored = fm._ignored(rng.choice([(), ("status",), ("spec.containers", "metadata")]))
        d = fm.compare({}, obj, schema)
        want = fm.set_to_fields(fm._tracked(d.added | d.modified, ignored) - fm._tracked(d.removed, ignored))
        assert fm.created_fields(obj, schema, ignored) == want, obj


@pytest.mark.parametrize("seed", range(4))
def test_unchanged_skip_finds_the_same_differences(seed: int, monkeypatch: pytest.MonkeyPatch):
    rng = random.Random(100 + seed)
    for _ in range(150):
        base, schema = rng.choice(CASES)
        old = _mutate(base, rng, rng.randint(0, 3))
        new = _mutate(old, rng, rng.randint(0, 3))
        if rng.random() < 0.3:
            new = copy.deepcopy(old)
        fast = _diff(old, new, schema)
        with monkeypatch.context() as m:
            m.setattr(fm, "_unchanged", lambda a, b: False)
            assert fast == _diff(old, new, schema), (old, new)


def test_unchanged_tells_types_apart():
    assert fm._unchanged({"a": [1, {"b": "c"}]}, {"a": [1, {"b": "c"}]})
    assert not fm._unchanged({"a": True}, {"a": 1})       # == says equal; _same does not
    assert not fm._unchanged([1], [1.0])                  # "not sure": the walk decides (same)
    nan = float("nan")
    assert not fm._unchanged([nan], [nan])                # NaN is never the same as itself
    assert fm.compare({"x": [nan]}, {"x": [nan]}, None).modified == {("f:x",)}


def test_create_takes_the_fast_path_with_the_same_entry():
    obj = copy.deepcopy(POD_OBJ)
    out = fm.update_managed_fields(None, obj, "m", api_version="v1", now="2024-01-01T00:00:00Z", schema=POD,
                                   reset_fields=["status"])
    general = fm._record_update([], {}, fm._without_managed_fields(obj), fm._wrap(POD),
                                fm._Entry("m", "Update", "v1", "", "2024-01-01T00:00:00Z", set()),
                                fm._ignored(["status"]), "2024-01-01T00:00:00Z")
    assert out["metadata"]["managedFields"] == fm.encode_managed_fields(general)
    assert "managedFields" not in obj["metadata"]          # the input is left alone


def test_created_fields_memo_keys_on_schema_ignored_fields_and_types():
    obj = copy.deepcopy(POD_OBJ)
    for schema, ignored in [(POD, []), (POD, fm._ignored(["status"])), (None, []), (POD, fm._ignored(["spec.volumes"])),
                            (POD, [])]:
        d = fm.compare({}, obj, schema)
        want = fm.set_to_fields(fm._tracked(d.added | d.modified, ignored))
        assert fm.created_fields(obj, schema, ignored) == want
        assert fm.created_fields(obj, schema, ignored) == want      # (from the memo)
    a = {"spec": {"x": [True]}, "metadata": {}}
    b = {"spec": {"x": [1]}, "metadata": {}}
    assert fm.created_fields(a, CR, []) == fm.created_fields(b, CR, [])   # leaves own the same either way
    out = fm.created_fields(obj, POD, [])
    out["f:spec"].clear()                                                   # results are not shared
    assert fm.created_fields(obj, POD, [])["f:spec"]
