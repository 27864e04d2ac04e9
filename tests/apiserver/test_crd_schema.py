"""CRDs (kubeplane.apiserver.registry.schema.crd): CRD checks and defaults, and custom resources'
validation, defaulting and pruning, with upstream's messages (field.Error bodies over
kube-openapi's texts, e.g. `Invalid value: "string": spec.replicas in body must be of type
integer: "string"`)."""
from __future__ import annotations

import copy

import pytest

from kubeplane.apiserver.machinery.errors import invalid
from kubeplane.apiserver.registry.schema.crd import CRDSchema, crd_defaults, validate_crd

SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object", "required": ["image"],
            "properties": {
                "replicas": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
                "image": {"type": "string", "minLength": 3, "maxLength": 10, "pattern": "^[a-z]+$"},
                "mode": {"type": "string", "enum": ["a", "b"]},
                "port": {"x-kubernetes-int-or-string": True},
                "ratio": {"type": "number", "exclusiveMinimum": True, "minimum": 0},
                "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 2},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "tmpl": {"type": "object", "x-kubernetes-embedded-resource": True,
                         "properties": {"spec": {"type": "object"}}},
                "opt": {"type": "string", "nullable": True},
                "items": {"type": "array", "items": {"type": "object", "properties": {
                    "name": {"type": "string", "default": "x"}}}},
                "when": {"type": "string", "format": "date-time"},
            },
        },
        "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
    },
}


def causes(obj):
    return [(c.reason, c.field, c.detail) for c in CRDSchema(SCHEMA).validate(obj)]


def test_valid_object():
    assert causes({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "a", "anything": 1},
                   "spec": {"image": "nginx", "replicas": 3, "port": "http", "tags": ["a"],
                            "ratio": 0.5, "opt": None, "free": {"x": {"y": [1]}},
                            "when": "2024-01-01T00:00:00Z",
                            "tmpl": {"apiVersion": "v1", "kind": "Pod", "spec": {}}}}) == []


def test_integral_float_is_an_integer():
    assert causes({"spec": {"image": "abc", "replicas": 2.0}}) == []


@pytest.mark.parametrize("spec,expected", [
    ({"replicas": "x"}, ("FieldValueTypeInvalid", "spec.replicas",
                         'Invalid value: "string": spec.replicas in body must be of type integer: "string"')),
    ({"replicas": 0}, ("FieldValueInvalid", "spec.replicas",
                       "Invalid value: 0: spec.replicas in body should be greater than or equal to 1")),
    ({"replicas": 11}, ("FieldValueInvalid", "spec.replicas",
                        "Invalid value: 11: spec.replicas in body should be less than or equal to 10")),
    ({"ratio": 0}, ("FieldValueInvalid", "spec.ratio",
                    "Invalid value: 0: spec.ratio in body should be greater than 0")),
    ({"mode": "c"}, ("FieldValueNotSupported", "spec.mode",
                     'Unsupported value: "c": supported values: "a", "b"')),
    ({"image": "ab"}, ("FieldValueInvalid", "spec.image",
                       'Invalid value: "ab": spec.image in body should be at least 3 chars long')),
    ({"image": "abcdefghijk"}, ("FieldValueTooLong", "spec.image", "Too long: may not be more than 10 bytes")),
    ({"image": "ABC"}, ("FieldValueInvalid", "spec.image",
                        "Invalid value: \"ABC\": spec.image in body should match '^[a-z]+$'")),
    ({"port": True}, ("FieldValueTypeInvalid", "spec.port",
                      'Invalid value: "boolean": spec.port in body must be of type integer,string: "boolean"')),
    ({"tags": []}, ("FieldValueInvalid", "spec.tags",
                    "Invalid value: 0: spec.tags in body should have at least 1 items")),
    ({"tags": ["a", "b", "c"]}, ("FieldValueTooMany", "spec.tags", "Too many: 3: must have at most 2 items")),
    ({"tags": [1]}, ("FieldValueTypeInvalid", "spec.tags[0]",
                     'Invalid value: "integer": spec.tags[0] in body must be of type string: "integer"')),
    ({"labels": {"k": 1}}, ("FieldValueTypeInvalid", "spec.labels.k",
                            'Invalid value: "integer": spec.labels.k in body must be of type string: "integer"')),
    ({"items": [{"name": None}]}, ("FieldValueTypeInvalid", "spec.items[0].name",
                                   'Invalid value: "null": spec.items[0].name in body must be of type string: "null"')),
    ({"when": "soon"}, ("FieldValueTypeInvalid", "spec.when",
                        'Invalid value: "soon": spec.when in body must be of type date-time: "soon"')),
])
def test_single_violation(spec, expected):
    obj = {"spec": {"image": "abc", **spec}}
    assert causes(obj) == [expected]


def test_required_and_embedded():
    got = causes({"spec": {"tmpl": {"spec": {}}}})
    assert ("FieldValueRequired", "spec.image", "Required value") in got
    assert ("FieldValueRequired", "spec.tmpl.kind", "Required value: kind is required") in got


def test_causes_make_the_upstream_invalid_message():
    cs = CRDSchema(SCHEMA).validate({"spec": {"image": "abc", "replicas": "x"}})
    err = invalid("stable.example.com", "CronTab", "ct", cs)
    assert err.code == 422
    assert err.message == ('CronTab.stable.example.com "ct" is invalid: spec.replicas: Invalid value: '
                           '"string": spec.replicas in body must be of type integer: "string"')
    assert err.details["causes"][0] == {"reason": "FieldValueTypeInvalid", "field": "spec.replicas",
                                        "message": 'Invalid value: "string": spec.replicas in body must be of type integer: "string"'}


def test_prune_reports_and_removes_unknown_fields():
    obj = {"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "a"},
           "spec": {"image": "abc", "bogus": 1, "free": {"keep": 1}, "labels": {"x": "y"},
                    "items": [{"name": "a", "junk": 2}],
                    "tmpl": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "junk": 1}},
           "extra": {"a": 1}}
    out, unknown = CRDSchema(SCHEMA).prune(obj)
    assert unknown == ["spec.bogus", "spec.items[0].junk", "spec.tmpl.junk", "extra"]
    assert out == {"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "a"},
                   "spec": {"image": "abc", "free": {"keep": 1}, "labels": {"x": "y"},
                            "items": [{"name": "a"}],
                            "tmpl": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}}}


def test_preserve_unknown_at_root_keeps_everything():
    s = CRDSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True})
    obj = {"spec": {"anything": [1, {"a": None}]}}
    assert s.prune(copy.deepcopy(obj)) == (obj, [])
    assert s.validate(obj) == []


def test_defaults_fill_absent_and_null_fields():
    obj = {"spec": {"image": "abc", "items": [{}, {"name": None}, {"name": "z"}]}}
    out = CRDSchema(SCHEMA).apply_defaults(obj)
    assert out["spec"]["replicas"] == 1
    assert out["spec"]["items"] == [{"name": "x"}, {"name": "x"}, {"name": "z"}]
    # a default object is itself defaulted
    s = CRDSchema({"type": "object", "properties": {"spec": {"type": "object", "default": {},
                   "properties": {"a": {"type": "integer", "default": 5}}}}})
    assert s.apply_defaults({}) == {"spec": {"a": 5}}


def test_schema_node_has_metadata_and_list_types():
    s = CRDSchema({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                  "items": {"type": "object", "properties": {"name": {"type": "string"}}}}}}}})
    node = s.schema_node()
    assert node.field("spec").field("ports").list_type == "map"
    assert node.field("spec").field("ports").map_keys == ["name"]
    assert node.field("metadata").field("ownerReferences").merge_key == "uid"


CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "crontabs.stable.example.com"},
    "spec": {"group": "stable.example.com", "scope": "Namespaced",
             "names": {"plural": "crontabs", "kind": "CronTab", "shortNames": ["ct"]},
             "versions": [{"name": "v1", "served": True, "storage": True,
                           "schema": {"openAPIV3Schema": SCHEMA},
                           "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas",
                                                                    "statusReplicasPath": ".status.replicas"}}}]},
}


def test_crd_defaults_like_upstream():
    crd = crd_defaults(copy.deepcopy(CRD), now="2024-01-01T00:00:00Z")
    assert crd["spec"]["names"] == {"plural": "crontabs", "kind": "CronTab", "shortNames": ["ct"],
                                    "singular": "crontab", "listKind": "CronTabList"}
    assert crd["spec"]["conversion"] == {"strategy": "None"}
    st = crd["status"]
    assert st["acceptedNames"] == {"kind": "CronTab", "listKind": "CronTabList", "plural": "crontabs",
                                   "shortNames": ["ct"], "singular": "crontab"}
    assert [(c["type"], c["status"], c["reason"]) for c in st["conditions"]] == [
        ("NamesAccepted", "True", "NoConflicts"), ("Established", "True", "InitialNamesAccepted")]
    assert st["storedVersions"] == ["v1"]
    assert validate_crd(crd) == []


def _crd_errors(mutate):
    crd = copy.deepcopy(CRD)
    mutate(crd)
    crd_defaults(crd)
    return [(c.reason, c.field, c.detail) for c in validate_crd(crd)]


def test_crd_name_must_match():
    errs = _crd_errors(lambda c: c["metadata"].__setitem__("name", "foo.stable.example.com"))
    assert errs == [("FieldValueInvalid", "metadata.name",
                     'Invalid value: "foo.stable.example.com": must be spec.names.plural+"."+spec.group')]


def test_crd_group_scope_versions():
    errs = _crd_errors(lambda c: (c["spec"].__setitem__("group", "example"),
                                  c["metadata"].__setitem__("name", "crontabs.example"),
                                  c["spec"].__setitem__("scope", "Global")))
    assert ("FieldValueInvalid", "spec.group",
            'Invalid value: "example": should be a domain with at least one dot') in errs
    assert ("FieldValueNotSupported", "spec.scope",
            'Unsupported value: "Global": supported values: "Cluster", "Namespaced"') in errs

    def two_storage(c):
        v2 = copy.deepcopy(c["spec"]["versions"][0])
        v2["name"] = "v2"
        c["spec"]["versions"].append(v2)
    errs = _crd_errors(two_storage)
    assert [e for e in errs if e[1] == "spec.versions"][0][2].endswith(
        "must have exactly one version marked as storage version")


def test_crd_schema_required_and_structural():
    errs = _crd_errors(lambda c: c["spec"]["versions"][0].pop("schema"))
    assert errs == [("FieldValueRequired", "spec.versions[0].schema.openAPIV3Schema",
                     "Required value: schemas are required")]
    errs = _crd_errors(lambda c: c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
                       .__setitem__("extra", {"description": "no type"}))
    assert ("FieldValueRequired", "spec.versions[0].schema.openAPIV3Schema.properties[extra].type",
            "Required value: must not be empty for specified object fields") in errs
    errs = _crd_errors(lambda c: c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
                       .__setitem__("bad", {"type": "string", "default": 5}))
    assert ("FieldValueTypeInvalid", "spec.versions[0].schema.openAPIV3Schema.properties[bad].default") in \
        [e[:2] for e in errs]


def test_crd_names_checked():
    errs = _crd_errors(lambda c: c["spec"]["names"].update(plural="CronTabs", shortNames=["c t"]))
    fields = {e[1] for e in errs}
    assert {"metadata.name", "spec.names.plural", "spec.names.shortNames[0]"} <= fields


def test_deep_crd_schema_is_not_a_recursion_error():
    s: dict = {"type": "object"}
    for _ in range(3000):
        s = {"type": "object", "properties": {"a": s}}
    errs = _crd_errors(lambda c: c["spec"]["versions"][0]["schema"].__setitem__("openAPIV3Schema", s))
    assert errs  # rejected, with causes
