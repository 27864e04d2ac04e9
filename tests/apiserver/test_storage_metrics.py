"""ObjectStore's storage request metrics: upstream's etcd_request_* series per
operation, group and resource, and apiserver_storage_size_bytes."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from kubeplane.apiserver.machinery import errors
from kubeplane.apiserver.registry.resources import BUILTIN
from kubeplane.apiserver.registry.storage import (
    REQUEST_BUCKETS,
    ObjectStore,
    key_of,
    labels_of_key,
    prefix_of,
)
from kubeplane.store.mvcc import EmbeddedStore

PODS = next(i for i in BUILTIN if i.plural == "pods")
DEPLOYMENTS = next(i for i in BUILTIN if i.plural == "deployments")
NODES = next(i for i in BUILTIN if i.plural == "nodes")


def pod(name: str) -> dict:
    return {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": name, "namespace": "ns1"}, "spec": {}}


@pytest.fixture
async def store(tmp_path: Path):
    s = EmbeddedStore(tmp_path / "store")
    await s.start()
    try:
        yield s
    finally:
        await s.close()


def requests(reg: CollectorRegistry, op: str, group: str, resource: str) -> float | None:
    return reg.get_sample_value("etcd_requests_total", {"operation": op, "group": group, "resource": resource})


async def test_requests_by_operation_group_resource(store):
    reg = CollectorRegistry()
    objects = ObjectStore(store, registry=reg)

    created = await objects.create(PODS, "ns1", "a", pod("a"))
    await objects.create(PODS, "ns1", "b", pod("b"))
    got = await objects.get(PODS, "ns1", "a")
    assert got["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    kvs, _, _, _ = await objects.list(PODS, "ns1")
    assert len(kvs) == 2
    kv = await objects.get_kv(key_of(PODS, "ns1", "b"))  # no ResourceInfo: labelled from the key
    await objects.update(PODS, "ns1", "b", pod("b"), kv.mod_revision)
    await objects.delete(PODS, "ns1", "a", int(got["metadata"]["resourceVersion"]))
    await objects.list(DEPLOYMENTS, None)
    await objects.get_kv(key_of(DEPLOYMENTS, "ns1", "x"))
    await objects.current_revision(PODS)

    assert requests(reg, "create", "", "pods") == 2
    assert requests(reg, "get", "", "pods") == 2
    assert requests(reg, "list", "", "pods") == 2  # the list and the current revision read
    assert requests(reg, "update", "", "pods") == 1
    assert requests(reg, "delete", "", "pods") == 1
    assert requests(reg, "list", "apps", "deployments") == 1
    assert requests(reg, "get", "apps", "deployments") == 1
    labels = {"operation": "create", "group": "", "resource": "pods"}
    assert reg.get_sample_value("etcd_request_duration_seconds_count", labels) == 2
    assert reg.get_sample_value("etcd_request_duration_seconds_bucket", {**labels, "le": "+Inf"}) == 2
    assert reg.get_sample_value("etcd_request_duration_seconds_bucket", {**labels, "le": "60.0"}) == 2
    assert 0 < reg.get_sample_value("etcd_request_duration_seconds_sum", labels) < 5
    assert reg.get_sample_value("etcd_request_errors_total", labels) is None

    text = generate_latest(reg).decode()
    assert "# TYPE etcd_request_duration_seconds histogram" in text
    assert "# TYPE etcd_requests_total counter" in text
    assert 'etcd_request_duration_seconds_bucket{group="",le="0.005",operation="get",resource="pods"}' in text
    assert text.count('etcd_request_duration_seconds_bucket{group="",le=') == 5 * (len(REQUEST_BUCKETS) + 1)  # five pods series


async def test_conflicts_are_not_errors_but_store_failures_are(store):
    reg = CollectorRegistry()
    objects = ObjectStore(store, registry=reg)
    await objects.create(PODS, "ns1", "a", pod("a"))
    with pytest.raises(errors.APIError) as e:
        await objects.create(PODS, "ns1", "a", pod("a"))
    assert e.value.code == 409
    with pytest.raises(errors.APIError) as e:
        await objects.update(PODS, "ns1", "a", pod("a"), 1)
    assert e.value.code == 409
    assert reg.get_sample_value("etcd_request_errors_total",
                                {"operation": "create", "group": "", "resource": "pods"}) is None

    for i in range(3):
        await objects.create(NODES, None, f"n{i}", {"kind": "Node", "apiVersion": "v1", "metadata": {"name": f"n{i}"}})
    rev = await store.current_revision()
    await store.compact(rev)
    with pytest.raises(errors.APIError) as e:
        await objects.list(NODES, None, revision=rev - 2)
    assert e.value.code == 410
    labels = {"operation": "list", "group": "", "resource": "nodes"}
    assert reg.get_sample_value("etcd_request_errors_total", labels) == 1
    assert reg.get_sample_value("etcd_requests_total", labels) == 1

    deleted = await objects.delete_prefix(prefix_of(NODES, None))
    assert deleted == 3
    assert requests(reg, "delete", "", "nodes") == 1


async def test_storage_size(store):
    reg = CollectorRegistry()
    objects = ObjectStore(store, registry=reg)
    assert reg.get_sample_value("apiserver_storage_size_bytes", {"storage_cluster_id": "etcd-0"}) is None
    await objects.create(PODS, "ns1", "a", pod("a"))
    await objects.refresh_storage_size()
    size = reg.get_sample_value("apiserver_storage_size_bytes", {"storage_cluster_id": "etcd-0"})
    assert size == (await store.status()).db_size > 0


async def test_without_registry_nothing_is_measured(store):
    objects = ObjectStore(store)
    assert objects.metrics is None
    await objects.create(PODS, "ns1", "a", pod("a"))
    assert (await objects.get(PODS, "ns1", "a"))["metadata"]["name"] == "a"
    await objects.refresh_storage_size()  # a no-op


def test_labels_of_key():
    assert labels_of_key(b"/registry/pods/ns1/a") == ("", "pods")
    assert labels_of_key(b"/registry/deployments/ns1/a") == ("apps", "deployments")
    assert labels_of_key(b"/registry/leases/kube-system/x") == ("coordination.k8s.io", "leases")
    assert labels_of_key(b"/registry/events/ns/e") == ("", "events")
    assert labels_of_key(b"/registry/example.com/widgets/ns1/w") == ("example.com", "widgets")
    assert labels_of_key(b"/registry/example.com/widgets/") == ("example.com", "widgets")
    assert labels_of_key(b"/registry/nodes/n1") == ("", "nodes")
