"""The Python clients' Deployment flows against the controllers: kr8s scales a
Deployment and waits for it (the equivalent of kr8s' own scale test: its test suite is
not shipped in the package), and lightkube's `Client.wait(for_conditions=["Available"])`
returns once the Deployment controller sets the condition."""
from __future__ import annotations

import asyncio

import pytest

from ctrl_cluster import get, new_namespace, wait_for


def test_kr8s_scales_a_deployment(cluster):
    kr8s = pytest.importorskip("kr8s")
    ns = new_namespace(cluster, "kr8s")

    async def go() -> None:
        api = await kr8s.asyncio.api(kubeconfig=cluster.kubeconfig)
        dep = await kr8s.asyncio.objects.Deployment({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "k", "namespace": ns},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "k"}},
                     "template": {"metadata": {"labels": {"app": "k"}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}, api=api)
        await dep.create()
        await dep.wait("condition=Available", timeout=60)
        await dep.scale(3)
        for _ in range(300):
            await dep.refresh()
            if dep.replicas == 3 and (dep.status.get("readyReplicas") or 0) == 3:
                break
            await asyncio.sleep(0.2)
        assert dep.status.readyReplicas == 3
        assert await dep.ready()
        pods = await dep.pods()
        assert len([p for p in pods if not p.metadata.get("deletionTimestamp")]) == 3
        await dep.scale(1)
        await dep.wait("condition=Available", timeout=60)
        await dep.delete()

    asyncio.run(go())
    wait_for(lambda: get(cluster, f"/apis/apps/v1/namespaces/{ns}/deployments/k") is None, 20, what="deleted")


def test_lightkube_waits_for_available(cluster):
    pytest.importorskip("lightkube")
    from lightkube import Client, KubeConfig
    from lightkube.models.apps_v1 import DeploymentSpec
    from lightkube.models.core_v1 import Container, PodSpec, PodTemplateSpec
    from lightkube.models.meta_v1 import LabelSelector, ObjectMeta
    from lightkube.resources.apps_v1 import Deployment

    ns = new_namespace(cluster, "lk")
    client = Client(KubeConfig.from_file(cluster.kubeconfig), namespace=ns)
    client.create(Deployment(
        metadata=ObjectMeta(name="l"),
        spec=DeploymentSpec(replicas=2, selector=LabelSelector(matchLabels={"app": "l"}),
                            template=PodTemplateSpec(metadata=ObjectMeta(labels={"app": "l"}),
                                                     spec=PodSpec(containers=[Container(name="c", image="nginx")])))))
    d = client.wait(Deployment, "l", for_conditions=["Available"])
    [avail] = [c for c in d.status.conditions if c.type == "Available"]
    assert (avail.status, avail.reason) == ("True", "MinimumReplicasAvailable")
    d = wait_for(lambda: (x := client.get(Deployment, "l")).status.availableReplicas == 2 and x, 30,
                 what="2 available")
    assert d.status.updatedReplicas == 2 and d.status.observedGeneration == d.metadata.generation
