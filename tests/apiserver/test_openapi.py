"""OpenAPI documents (kubeplane.apiserver.registry.schema.openapi).

The key client expectation is kubectl's field-validation probe (cli-runtime
query_param_verifier_v3.go / query_param_verifier.go): in the group-version document, the
first PATCH operation whose `x-kubernetes-group-version-kind` equals the GVK must list a
`fieldValidation` parameter. `supports_query_param*` below re-implement that lookup.
"""
from __future__ import annotations

import time

import orjson
import pytest

from kubeplane.apiserver.registry.resources import BUILTIN, ResourceInfo
from kubeplane.apiserver.registry.schema.openapi import (
    OpenAPICache,
    crd_def_name,
    etag,
    gv_path,
    openapi_v2,
    openapi_v3_group_version,
    openapi_v3_index,
)

CRD = {"metadata": {"name": "crontabs.stable.example.com"},
       "spec": {"group": "stable.example.com", "scope": "Namespaced",
                "names": {"kind": "CronTab", "plural": "crontabs"},
                "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                    "type": "object", "properties": {"spec": {"type": "object", "properties": {
                        "cronSpec": {"type": "string"}, "port": {"x-kubernetes-int-or-string": True},
                        "note": {"type": "string", "nullable": True},
                        "x": {"type": "string", "anyOf": [{"pattern": "^a"}]}}}}}}}]}}
CR = ResourceInfo("stable.example.com", "v1", "CronTab", "crontabs", "crontab", True,
                  subresources=("status", "scale"), crd=CRD, crd_version=CRD["spec"]["versions"][0])
RESOURCES = BUILTIN + [CR]


def supports_query_param_v3(doc: dict, gvk: tuple[str, str, str], param: str) -> bool:
    g, v, k = gvk
    for item in doc["paths"].values():
        op = item.get("patch")
        if op is None:
            continue
        ext = op.get("x-kubernetes-group-version-kind") or {}
        if (ext.get("group"), ext.get("version"), ext.get("kind")) != (g, v, k):
            continue
        return any(p.get("name") == param for p in op.get("parameters", []))
    return False


def supports_query_param_v2(doc: dict, gvk: tuple[str, str, str], param: str) -> bool:
    for item in doc["paths"].values():
        op = item.get("patch") or {}
        ext = op.get("x-kubernetes-group-version-kind") or {}
        if (ext.get("group"), ext.get("version"), ext.get("kind")) != gvk:
            continue
        return any(p.get("name") == param for p in op.get("parameters", []))
    return False


@pytest.fixture(scope="module")
def v2() -> dict:
    return orjson.loads(openapi_v2(RESOURCES))


@pytest.fixture(scope="module")
def v3docs() -> dict[str, dict]:
    gvs = {(r.group, r.version) for r in RESOURCES}
    return {gv_path(g, v): orjson.loads(openapi_v3_group_version(g, v, RESOURCES)) for g, v in gvs}


def _walk_refs(x, acc):
    if isinstance(x, dict):
        for k, v in x.items():
            if k == "$ref" and isinstance(v, str):
                acc.add(v)
            elif k == "properties" and isinstance(v, dict):  # a map: keys may be "$ref"
                for pv in v.values():
                    _walk_refs(pv, acc)
            else:
                _walk_refs(v, acc)
    elif isinstance(x, list):
        for y in x:
            _walk_refs(y, acc)


def _walk_types(x, acc):
    if isinstance(x, dict):
        if "type" in x and not isinstance(x["type"], (str, dict)):
            acc.append(x["type"])
        for k, v in x.items():
            if k not in ("properties",):
                _walk_types(v, acc)
            else:
                for pv in v.values():
                    _walk_types(pv, acc)
    elif isinstance(x, list):
        for y in x:
            _walk_types(y, acc)


def test_v2_every_resource_supports_field_validation(v2):
    assert v2["swagger"] == "2.0"
    for r in RESOURCES:
        assert supports_query_param_v2(v2, (r.group, r.version, r.kind), "fieldValidation"), r.kind
    # kubectl's CRD fallback looks at Namespace
    assert supports_query_param_v2(v2, ("", "v1", "Namespace"), "fieldValidation")


def test_v3_every_resource_supports_field_validation(v3docs):
    for r in RESOURCES:
        doc = v3docs[gv_path(r.group, r.version)]
        assert doc["openapi"].startswith("3.0")
        assert supports_query_param_v3(doc, (r.group, r.version, r.kind), "fieldValidation"), r.kind


def test_v2_refs_resolve_and_types_are_single(v2):
    refs: set[str] = set()
    _walk_refs(v2, refs)
    assert refs and all(r.startswith("#/definitions/") for r in refs)
    missing = {r for r in refs if r[len("#/definitions/"):] not in v2["definitions"]}
    assert not missing
    bad: list = []
    _walk_types(v2["definitions"], bad)
    assert bad == []


def test_v3_refs_resolve_within_each_document(v3docs):
    for key, doc in v3docs.items():
        refs: set[str] = set()
        _walk_refs(doc, refs)
        assert all(r.startswith("#/components/schemas/") for r in refs), key
        missing = {r for r in refs if r[len("#/components/schemas/"):] not in doc["components"]["schemas"]}
        assert not missing, (key, missing)


def test_group_version_split(v3docs):
    apps = v3docs["apis/apps/v1"]
    assert all(p.startswith("/apis/apps/v1/") for p in apps["paths"])
    schemas = apps["components"]["schemas"]
    assert "io.k8s.api.apps.v1.Deployment" in schemas and "io.k8s.api.core.v1.PodTemplateSpec" in schemas
    assert "io.k8s.api.batch.v1.Job" not in schemas
    core = v3docs["api/v1"]
    assert "/api/v1/namespaces/{namespace}/pods/{name}/status" in core["paths"]
    assert "/api/v1/pods" in core["paths"]  # list across namespaces
    assert "/api/v1/watch/namespaces/{namespace}/pods/{name}" in core["paths"]


def test_builtin_schema_conversion(v2, v3docs):
    d = v2["definitions"]
    assert d["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["type"] == "string"
    assert d["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["format"] == "int-or-string"
    assert d["io.k8s.apimachinery.pkg.api.resource.Quantity"]["type"] == "string"
    pod = d["io.k8s.api.core.v1.Pod"]
    assert pod["x-kubernetes-group-version-kind"] == [{"group": "", "kind": "Pod", "version": "v1"}]
    assert "enum" not in pod["properties"]["kind"]
    containers = d["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["items"] == {"$ref": "#/definitions/io.k8s.api.core.v1.Container"}
    assert v3docs["api/v1"]["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"][
        "containers"]["items"] == {"$ref": "#/components/schemas/io.k8s.api.core.v1.Container"}


def test_operations_shape(v3docs):
    item = v3docs["api/v1"]["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]
    assert set(item) >= {"get", "put", "patch", "delete", "parameters"}
    patch = item["patch"]
    assert patch["operationId"] == "patchCoreV1NamespacedPod"
    assert patch["x-kubernetes-action"] == "patch"
    assert {p["name"] for p in patch["parameters"]} == {"dryRun", "fieldManager", "fieldValidation", "force"}
    assert "application/strategic-merge-patch+json" in patch["requestBody"]["content"]
    assert {p["name"] for p in item["parameters"]} == {"name", "namespace", "pretty"}
    lst = v3docs["api/v1"]["paths"]["/api/v1/namespaces/{namespace}/pods"]["get"]
    assert lst["x-kubernetes-action"] == "list"
    assert {"labelSelector", "fieldSelector", "limit", "continue", "resourceVersion", "watch"} <= \
        {p["name"] for p in lst["parameters"]}
    scale = v3docs["apis/apps/v1"]["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]
    assert scale["patch"]["x-kubernetes-group-version-kind"] == {"group": "autoscaling", "kind": "Scale",
                                                                 "version": "v1"}
    nodes = v3docs["api/v1"]["paths"]["/api/v1/nodes/{name}"]
    assert nodes["get"]["operationId"] == "readCoreV1Node"


def test_custom_resource_schema(v2, v3docs):
    name = crd_def_name("stable.example.com", "v1", "CronTab")
    assert name == "com.example.stable.v1.CronTab"
    doc = v3docs["apis/stable.example.com/v1"]
    s = doc["components"]["schemas"][name]
    assert s["x-kubernetes-group-version-kind"] == [{"group": "stable.example.com", "kind": "CronTab",
                                                     "version": "v1"}]
    assert s["properties"]["metadata"]["$ref"] == \
        "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    assert s["properties"]["spec"]["properties"]["note"]["nullable"] is True
    assert name + "List" in doc["components"]["schemas"]
    patch = doc["paths"]["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}"]["patch"]
    assert "application/strategic-merge-patch+json" not in patch["requestBody"]["content"]
    # v2: structural form without nullable / junctors, int-or-string without a type
    s2 = v2["definitions"][name]["properties"]["spec"]["properties"]
    assert "nullable" not in s2["note"] and "type" not in s2["note"]
    assert "anyOf" not in s2["x"]
    assert s2["port"] == {"x-kubernetes-int-or-string": True}


def test_v3_index_hashes_match_documents():
    index = orjson.loads(openapi_v3_index(RESOURCES))["paths"]
    assert set(index) == {gv_path(r.group, r.version) for r in RESOURCES}
    url = index["apis/apps/v1"]["serverRelativeURL"]
    data = openapi_v3_group_version("apps", "v1", RESOURCES)
    assert url == f"/openapi/v3/apis/apps/v1?hash={etag(data)}"
    assert len(etag(data)) == 128 and etag(data).isupper()


def test_cache_builds_once_and_invalidates_by_version():
    cache = OpenAPICache(BUILTIN, version=1)
    b1, e1 = cache.v2()
    assert cache.v2()[0] is b1
    assert cache.v3("apis/stable.example.com/v1") is None
    idx1, _ = cache.v3_index()
    cache.refresh(RESOURCES, 1)  # same version: kept
    assert cache.v3("apis/stable.example.com/v1") is None
    cache.refresh(RESOURCES, 2)
    assert cache.v3("/apis/stable.example.com/v1/") is not None
    assert cache.v2()[1] != e1
    assert b"apis/stable.example.com/v1" in cache.v3_index()[0] and idx1 != cache.v3_index()[0]


def test_generation_is_fast():
    openapi_v2(RESOURCES)  # warm the converted built-in definitions
    t = time.perf_counter()
    openapi_v2(RESOURCES)
    for g, v in {(r.group, r.version) for r in RESOURCES}:
        openapi_v3_group_version(g, v, RESOURCES)
    assert time.perf_counter() - t < 1.0
