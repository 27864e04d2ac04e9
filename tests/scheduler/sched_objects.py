"""Plain-dict Nodes and Pods for the scheduler's unit tests."""
from __future__ import annotations

from typing import Any

from kubeplane.scheduler.algorithm import FitError, Profile
from kubeplane.scheduler.cache import Cache
from kubeplane.scheduler.podinfo import pod_info


def node(name: str, cpu: str = "4", memory: str = "8Gi", pods: int = 110, labels: dict | None = None,
         taints: list | None = None, unschedulable: bool = False, extra: dict | None = None) -> dict[str, Any]:
    alloc = {"cpu": cpu, "memory": memory, "pods": str(pods), "ephemeral-storage": "100Gi", **(extra or {})}
    lab = {"kubernetes.io/hostname": name, **(labels or {})}
    spec: dict[str, Any] = {}
    if taints:
        spec["taints"] = taints
    if unschedulable:
        spec["unschedulable"] = True
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": lab},
            "spec": spec, "status": {"allocatable": alloc, "capacity": alloc}}


def pod(name: str, cpu: str | None = None, memory: str | None = None, ns: str = "default", node_name: str = "",
        labels: dict | None = None, priority: int | None = None, **spec_extra: Any) -> dict[str, Any]:
    req = {}
    if cpu:
        req["cpu"] = cpu
    if memory:
        req["memory"] = memory
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "x", "resources": {"requests": req} if req else {}}]}
    if node_name:
        spec["nodeName"] = node_name
    if priority is not None:
        spec["priority"] = priority
    spec.update(spec_extra)
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}", "labels": labels or {},
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": spec, "status": {"phase": "Pending"}}


def cluster(nodes: list[dict], pods: list[dict] = (), seed: int = 1) -> Profile:
    cache = Cache()
    for n in nodes:
        cache.set_node(n)
    for p in pods:
        cache.set_pod(pod_info(p))
    import random
    return Profile(cache, rng=random.Random(seed))


def schedule(profile: Profile, p: dict) -> str:
    return profile.schedule(pod_info(p)).node


def failure(profile: Profile, p: dict) -> FitError:
    try:
        got = profile.schedule(pod_info(p))
    except FitError as err:
        return err
    raise AssertionError(f"expected no fit, got {got.node}")


def scores(profile: Profile, plugin: str, p: dict, names: list[str]) -> list[int]:
    """One plugin's normalised scores for these nodes (PreFilter run first)."""
    from kubeplane.scheduler.framework import CycleState
    import numpy as np
    info = pod_info(p)
    state = CycleState()
    profile.prefilter(state, info)
    slots = np.array([profile.cache.nodes[n].slot for n in names], dtype=np.int64)
    out = profile.plugins[plugin].score(state, info, profile.cache.table, slots)
    return None if out is None else [int(x) for x in out]
