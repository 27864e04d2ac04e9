"""Decode-time checks of built-in objects (kubeplane.apiserver.registry.schema.validate).

Expected texts are upstream's: Go encoding/json UnmarshalTypeError messages with the error
context kube-apiserver's decoder adds, apimachinery's Quantity errors, time.Parse errors,
base64 CorruptInputError, and the strict-decoding wording.
"""
from __future__ import annotations

import copy
import time

import pytest

from kubeplane.apiserver.machinery.errors import APIError
from kubeplane.apiserver.registry.schema.validate import (
    MAX_DEPTH,
    QUANTITY_FORMAT_ERR,
    QUANTITY_SUFFIX_ERR,
    base64_error,
    check,
    check_depth,
    decode_error,
    quantity_error,
    strict_error,
    time_error,
    warnings,
)

POD_DEF = "io.k8s.api.core.v1.Pod"

POD = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "web-1", "namespace": "default", "labels": {"app": "web"},
                 "annotations": {"a": "b"},
                 "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
                                      "uid": "0b1c", "controller": True}],
                 "creationTimestamp": "2024-01-01T00:00:00Z",
                 "managedFields": [{"manager": "kubectl", "operation": "Apply",
                                    "fieldsType": "FieldsV1",
                                    "fieldsV1": {"f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {".": {}}}}}}]},
    "spec": {
        "containers": [{
            "name": "web", "image": "nginx", "args": ["--port", "8080"],
            "env": [{"name": "A", "value": "1"},
                    {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
            "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": 0.1}},
            "livenessProbe": {"httpGet": {"path": "/", "port": 8080}},
            "readinessProbe": {"httpGet": {"path": "/", "port": "http"}},
            "securityContext": {"capabilities": {"drop": ["ALL"]}, "runAsUser": 1000},
        }],
        "volumes": [{"name": "data", "emptyDir": {}}],
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "terminationGracePeriodSeconds": 30,
    },
    "status": {"phase": "Pending"},
}


def test_valid_pod_has_no_findings():
    f = check(POD, POD_DEF)
    assert f.type_errors == [] and f.unknown == [] and not f


def test_nulls_are_accepted_anywhere():
    p = {"metadata": {"name": None, "labels": None}, "spec": {"containers": [None, {"name": None, "ports": None}]}}
    assert not check(p, POD_DEF)


def test_unknown_fields_strict_paths_in_document_order():
    p = copy.deepcopy(POD)
    p["spec"]["foo"] = 1
    p["spec"]["containers"][0]["bogus"] = {"deep": 1}
    p["metadata"]["extra"] = "x"
    p["spec"]["bar"] = 2
    f = check(p, POD_DEF)
    assert f.unknown == ["metadata.extra", "spec.containers[0].bogus", "spec.foo", "spec.bar"]
    err = strict_error(f)
    assert err.code == 400 and err.reason == "BadRequest"
    assert err.message == ('strict decoding error: unknown field "metadata.extra", unknown field '
                           '"spec.containers[0].bogus", unknown field "spec.foo", unknown field "spec.bar"')
    assert warnings(f)[0] == 'unknown field "metadata.extra"'


def test_status_apiversion_kind_are_declared():
    assert check({"apiVersion": "v1", "kind": "Pod", "status": {"podIP": "1.2.3.4"}}, POD_DEF).unknown == []


def test_wrong_type_for_array_upstream_message():
    p = copy.deepcopy(POD)
    p["spec"]["containers"] = "x"
    f = check(p, POD_DEF)
    assert f.type_errors == [("spec.containers", "json: cannot unmarshal string into Go struct field "
                              "PodSpec.spec.containers of type []v1.Container")]
    e = decode_error("Pod", "v1", f.type_errors[0])
    assert e.code == 400 and e.reason == "BadRequest"
    assert e.message == ('Pod in version "v1" cannot be handled as a Pod: json: cannot unmarshal string '
                         'into Go struct field PodSpec.spec.containers of type []v1.Container')


@pytest.mark.parametrize("mutate,path,msg", [
    (lambda p: p["spec"]["containers"][0].__setitem__("name", 5), "spec.containers[0].name",
     "json: cannot unmarshal number into Go struct field Container.spec.containers.name of type string"),
    (lambda p: p.__setitem__("metadata", "x"), "metadata",
     "json: cannot unmarshal string into Go struct field Pod.metadata of type v1.ObjectMeta"),
    (lambda p: p["metadata"]["labels"].__setitem__("x", 3), "metadata.labels.x",
     "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.labels of type string"),
    (lambda p: p["spec"]["containers"][0]["ports"][0].__setitem__("containerPort", 1.5),
     "spec.containers[0].ports[0].containerPort",
     "json: cannot unmarshal number 1.5 into Go struct field ContainerPort.spec.containers.ports.containerPort of type int32"),
    (lambda p: p["spec"]["containers"][0]["ports"][0].__setitem__("containerPort", 3000000000),
     "spec.containers[0].ports[0].containerPort",
     "json: cannot unmarshal number 3000000000 into Go struct field ContainerPort.spec.containers.ports.containerPort of type int32"),
    (lambda p: p["spec"].__setitem__("terminationGracePeriodSeconds", "30"), "spec.terminationGracePeriodSeconds",
     "json: cannot unmarshal string into Go struct field PodSpec.spec.terminationGracePeriodSeconds of type int64"),
    (lambda p: p["spec"].__setitem__("hostNetwork", "true"), "spec.hostNetwork",
     "json: cannot unmarshal string into Go struct field PodSpec.spec.hostNetwork of type bool"),
    (lambda p: p["spec"]["containers"][0]["args"].__setitem__(1, 8080), "spec.containers[0].args[1]",
     "json: cannot unmarshal number into Go struct field Container.spec.containers.args of type string"),
    (lambda p: p["spec"].__setitem__("nodeSelector", ["a"]), "spec.nodeSelector",
     "json: cannot unmarshal array into Go struct field PodSpec.spec.nodeSelector of type map[string]string"),
    # IntOrString: the inner json.Unmarshal into int32 gets the outer field context
    (lambda p: p["spec"]["containers"][0]["livenessProbe"]["httpGet"].__setitem__("port", True),
     "spec.containers[0].livenessProbe.httpGet.port",
     "json: cannot unmarshal bool into Go struct field HTTPGetAction.spec.containers.livenessProbe.httpGet.port of type int32"),
    (lambda p: p["spec"]["containers"][0]["resources"]["limits"].__setitem__("cpu", "abc"),
     "spec.containers[0].resources.limits.cpu", QUANTITY_FORMAT_ERR),
    (lambda p: p["spec"]["containers"][0]["resources"]["limits"].__setitem__("cpu", True),
     "spec.containers[0].resources.limits.cpu", QUANTITY_FORMAT_ERR),
    (lambda p: p["metadata"].__setitem__("creationTimestamp", "yesterday"), "metadata.creationTimestamp",
     'parsing time "yesterday" as "2006-01-02T15:04:05Z07:00": cannot parse "yesterday" as "2006"'),
    (lambda p: p["metadata"].__setitem__("creationTimestamp", 5), "metadata.creationTimestamp",
     "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.creationTimestamp of type string"),
])
def test_type_errors(mutate, path, msg):
    p = copy.deepcopy(POD)
    mutate(p)
    f = check(p, POD_DEF)
    assert f.type_errors == [(path, msg)]


def test_type_error_value_not_descended():
    p = copy.deepcopy(POD)
    p["spec"]["containers"][0]["ports"] = {"bogus": 1}
    f = check(p, POD_DEF)
    assert len(f.type_errors) == 1 and f.unknown == []


def test_secret_base64():
    f = check({"data": {"a": "aGVsbG8=", "b": "abc", "c": "a$bc"}}, "io.k8s.api.core.v1.Secret")
    assert f.type_errors == [("data.b", "illegal base64 data at input byte 0"),
                             ("data.c", "illegal base64 data at input byte 1")]
    assert decode_error("Secret", "v1", f.type_errors[0]).message == \
        'Secret in version "v1" cannot be handled as a Secret: illegal base64 data at input byte 0'


@pytest.mark.parametrize("s,err", [
    ("aGVsbG8=", None), ("aGVsbG8", "illegal base64 data at input byte 4"), ("", None),
    ("aGVs\nbG8=", None), ("aGVsbG8=x", "illegal base64 data at input byte 8"),
    ("a===", "illegal base64 data at input byte 1"), ("aG=", "illegal base64 data at input byte 3"),
])
def test_base64_offsets(s, err):
    assert base64_error(s) == err


@pytest.mark.parametrize("s,err", [
    ("100m", None), ("1Gi", None), ("0.5", None), ("1e3", None), ("-1", None), ("+2k", None),
    ("1.", None), ("", QUANTITY_FORMAT_ERR), ("abc", QUANTITY_FORMAT_ERR), ("1 Gi", QUANTITY_FORMAT_ERR),
    ("1Gb", QUANTITY_FORMAT_ERR), ("1kk", QUANTITY_SUFFIX_ERR), ("1Ki2", QUANTITY_SUFFIX_ERR), ("5e", QUANTITY_SUFFIX_ERR),
])
def test_quantity(s, err):
    assert quantity_error(s) == err


def test_time_and_microtime():
    assert time_error("2024-02-29T10:00:00Z") is None
    assert time_error("2024-02-29T10:00:00.123+02:00") is None
    assert time_error("2023-02-29T10:00:00Z") == 'parsing time "2023-02-29T10:00:00Z": day out of range'
    assert time_error("2024-01-01 10:00:00Z") == \
        'parsing time "2024-01-01 10:00:00Z" as "2006-01-02T15:04:05Z07:00": cannot parse " 10:00:00Z" as "T"'
    assert time_error("2024-01-01T10:00:00.000000Z", micro=True) is None
    assert time_error("2024-01-01T10:00:00Z", micro=True) == (
        'parsing time "2024-01-01T10:00:00Z" as "2006-01-02T15:04:05.000000Z07:00": '
        'cannot parse "Z" as ".000000"')
    f = check({"spec": {"renewTime": "2024-01-01T10:00:00Z"}}, "io.k8s.api.coordination.v1.Lease")
    assert f.type_errors and f.type_errors[0][0] == "spec.renewTime"


def test_opaque_values_accept_anything():
    crd = {"spec": {"versions": [{"name": "v1", "schema": {"openAPIV3Schema": {
        "type": "object", "default": [1, "x"], "example": "anything", "x-custom": 1}}}]}}
    f = check(crd, "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition")
    # x-custom is not a JSONSchemaProps field: unknown, as upstream reports it
    assert f.type_errors == []
    assert f.unknown == ["spec.versions[0].schema.openAPIV3Schema.x-custom"]


def _nest(n: int):
    x: object = 1
    for i in range(n):
        x = [x] if i % 2 else {"a": x}
    return x


@pytest.mark.parametrize("where", ["unknown", "opaque", "schema"])
def test_depth_guard_never_recursion_error(where):
    deep = _nest(10_000)
    if where == "unknown":
        obj, def_name = {"spec": {"foo": deep}}, POD_DEF
    elif where == "opaque":
        obj, def_name = {"metadata": {"managedFields": [{"fieldsV1": deep}]}}, POD_DEF
    else:
        s: dict = {"type": "object"}
        for _ in range(5000):
            s = {"type": "object", "properties": {"a": s}}
        obj = {"spec": {"versions": [{"name": "v1", "schema": {"openAPIV3Schema": s}}]}}
        def_name = "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition"
    with pytest.raises(APIError) as ei:
        check(obj, def_name)
    assert ei.value.code == 400
    assert check_depth(deep) is False
    assert check_depth(_nest(MAX_DEPTH - 1)) is True


def test_every_builtin_definition_compiles():
    from kubeplane.apiserver.registry.resources import BUILTIN
    for r in BUILTIN:
        assert not check({"metadata": {"name": "x"}}, r.def_name), r.kind


def test_speed_of_a_pod():
    p = copy.deepcopy(POD)
    check(p, POD_DEF)
    n = 2000
    t = time.perf_counter()
    for _ in range(n):
        check(p, POD_DEF)
    per = (time.perf_counter() - t) / n
    assert per < 300e-6  # ~40 µs here; generous for slow CI machines
