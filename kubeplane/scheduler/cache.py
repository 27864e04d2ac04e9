"""The scheduler's cache: nodes and the pods assigned to them, assumed pods included.

Invariants:
- every pod in `pods` is counted on exactly one NodeInfo (its `node`), whether it came
  from the API (spec.nodeName set) or was *assumed* by the scheduler (decided, binding in
  flight). An assumed pod is counted until its binding is seen (the informer's update
  confirms it) or fails (`forget`), so the next decisions see its requests at once.
- a NodeInfo exists for a node name while the node exists or pods still point at it; a
  NodeInfo without a Node object (`node is None`) is not schedulable (`valid` false).
- `NodeTable` mirrors every NodeInfo in numpy rows (one slot per NodeInfo, slots reused
  after removal): allocatable and requested per resource column, non-zero requests for
  scoring, pod counts, flags and a taint-set id. Every change to a NodeInfo updates its row
  in the same call, so vector filters and scores always see the same numbers as the
  per-node code.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .podinfo import PodInfo
from ..client.selectors import Matcher
from .resources import CPU, EPHEMERAL, MEMORY, PODS, node_allocatable

BASE_COLUMNS = (CPU, MEMORY, EPHEMERAL)


@dataclass(slots=True)
class NodeInfo:
    name: str
    slot: int
    node: dict[str, Any] | None = None
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict[str, Any]] = field(default_factory=list)
    allocatable: dict[str, int] = field(default_factory=dict)
    unschedulable: bool = False
    pods: dict[str, PodInfo] = field(default_factory=dict)
    requested: dict[str, int] = field(default_factory=dict)

    def free(self, resource: str) -> int:
        return self.allocatable.get(resource, 0) - self.requested.get(resource, 0)


class NodeTable:
    """numpy rows over node slots (see the module docstring)."""

    def __init__(self, capacity: int = 64) -> None:
        self.columns: list[str] = list(BASE_COLUMNS)
        self.col_index = {c: i for i, c in enumerate(self.columns)}
        self.capacity = capacity
        self.infos: list[NodeInfo | None] = []
        self.valid = np.zeros(capacity, dtype=bool)
        self.alloc = np.zeros((capacity, len(self.columns)), dtype=np.int64)
        self.requested = np.zeros((capacity, len(self.columns)), dtype=np.int64)
        self.non_zero = np.zeros((capacity, 2), dtype=np.int64)
        self.pod_count = np.zeros(capacity, dtype=np.int64)
        self.max_pods = np.zeros(capacity, dtype=np.int64)
        self.unschedulable = np.zeros(capacity, dtype=bool)
        self.taint_set = np.zeros(capacity, dtype=np.int64)
        self.taint_sets: list[tuple[tuple[str, str, str], ...]] = [()]
        self._taint_ids: dict[tuple[tuple[str, str, str], ...], int] = {(): 0}
        self.free_slots: list[int] = []

    @property
    def size(self) -> int:
        return len(self.infos)

    def _grow(self) -> None:
        cap = self.capacity * 2
        for name in ("valid", "alloc", "requested", "non_zero", "pod_count", "max_pods", "unschedulable", "taint_set"):
            old = getattr(self, name)
            new = np.zeros((cap,) + old.shape[1:], dtype=old.dtype)
            new[: self.capacity] = old
            setattr(self, name, new)
        self.capacity = cap

    def column(self, resource: str) -> int:
        """The column of a resource, added (zeros everywhere) on first use."""
        i = self.col_index.get(resource)
        if i is None:
            i = len(self.columns)
            self.columns.append(resource)
            self.col_index[resource] = i
            self.alloc = np.hstack([self.alloc, np.zeros((self.capacity, 1), dtype=np.int64)])
            self.requested = np.hstack([self.requested, np.zeros((self.capacity, 1), dtype=np.int64)])
            for info in self.infos:
                if info is not None:
                    self.alloc[info.slot, i] = info.allocatable.get(resource, 0)
                    self.requested[info.slot, i] = info.requested.get(resource, 0)
        return i

    def new_slot(self, info_name: str) -> NodeInfo:
        if self.free_slots:
            slot = self.free_slots.pop()
        else:
            slot = len(self.infos)
            if slot >= self.capacity:
                self._grow()
            self.infos.append(None)
        info = NodeInfo(info_name, slot)
        self.infos[slot] = info
        return info

    def release(self, info: NodeInfo) -> None:
        s = info.slot
        self.infos[s] = None
        self.valid[s] = False
        self.alloc[s] = 0
        self.requested[s] = 0
        self.non_zero[s] = 0
        self.pod_count[s] = 0
        self.max_pods[s] = 0
        self.unschedulable[s] = False
        self.taint_set[s] = 0
        self.free_slots.append(s)

    def taint_id(self, taints: list[dict[str, Any]]) -> int:
        sig = tuple(sorted((t.get("key") or "", t.get("value") or "", t.get("effect") or "") for t in taints))
        i = self._taint_ids.get(sig)
        if i is None:
            i = len(self.taint_sets)
            self.taint_sets.append(sig)
            self._taint_ids[sig] = i
        return i

    def write_node(self, info: NodeInfo) -> None:
        s = info.slot
        self.valid[s] = info.node is not None
        for r, v in info.allocatable.items():
            if r != PODS:
                c = self.column(r)      # may replace the arrays: look them up after
                self.alloc[s, c] = v
        for r, i in self.col_index.items():
            if r not in info.allocatable:
                self.alloc[s, i] = 0
        self.max_pods[s] = info.allocatable.get(PODS, 0)
        self.unschedulable[s] = info.unschedulable
        self.taint_set[s] = self.taint_id(info.taints)

    def add_pod(self, info: NodeInfo, p: PodInfo, sign: int) -> None:
        s = info.slot
        for r, v in p.requests.items():
            if r != PODS:
                c = self.column(r)
                self.requested[s, c] += sign * v
        self.non_zero[s, 0] += sign * p.non_zero[0]
        self.non_zero[s, 1] += sign * p.non_zero[1]
        self.pod_count[s] += sign

    def valid_slots(self) -> np.ndarray:
        return np.flatnonzero(self.valid[: self.size])


class Cache:
    """Nodes and assigned pods (see the module docstring)."""

    def __init__(self) -> None:
        self.table = NodeTable()
        self.nodes: dict[str, NodeInfo] = {}
        self.pods: dict[str, tuple[PodInfo, str]] = {}     # key -> (pod, node name)
        self.assumed: set[str] = set()
        self.node_count = 0
        # pods with required anti-affinity terms, and with any affinity terms at all
        self.anti_affinity_pods: dict[str, PodInfo] = {}
        self.affinity_pods: dict[str, PodInfo] = {}
        self.by_namespace: dict[str, dict[str, PodInfo]] = {}
        # Services / ReplicaSets / StatefulSets: key -> (namespace, selector), for the
        # default topology spread constraints
        self.owner_selectors: dict[str, tuple[str, Matcher]] = {}
        self.generation = 0

    # nodes -----------------------------------------------------------------------
    def _info(self, name: str) -> NodeInfo:
        info = self.nodes.get(name)
        if info is None:
            info = self.table.new_slot(name)
            self.nodes[name] = info
        return info

    def set_node(self, node: dict[str, Any]) -> NodeInfo:
        """Add or update a node; returns its NodeInfo."""
        name = (node.get("metadata") or {}).get("name", "")
        info = self._info(name)
        if info.node is None:
            self.node_count += 1
        spec = node.get("spec") or {}
        info.node = node
        info.labels = dict((node.get("metadata") or {}).get("labels") or {})
        info.taints = list(spec.get("taints") or ())
        info.allocatable = node_allocatable(node)
        info.unschedulable = bool(spec.get("unschedulable"))
        self.table.write_node(info)
        self.generation += 1
        return info

    def remove_node(self, name: str) -> None:
        info = self.nodes.get(name)
        if info is None or info.node is None:
            return
        self.node_count -= 1
        info.node = None
        self.generation += 1
        if info.pods:   # pods still point at it: keep the counts, not schedulable
            self.table.valid[info.slot] = False
        else:
            del self.nodes[name]
            self.table.release(info)

    # pods ------------------------------------------------------------------------
    def _attach(self, p: PodInfo, node: str) -> None:
        info = self._info(node)
        info.pods[p.key] = p
        for r, v in p.requests.items():
            info.requested[r] = info.requested.get(r, 0) + v
        self.table.add_pod(info, p, +1)
        self.pods[p.key] = (p, node)
        self.by_namespace.setdefault(p.namespace, {})[p.key] = p
        if p.anti_affinity:
            self.anti_affinity_pods[p.key] = p
        if p.has_pod_affinity:
            self.affinity_pods[p.key] = p
        self.generation += 1

    def _detach(self, key: str) -> PodInfo | None:
        entry = self.pods.pop(key, None)
        if entry is None:
            return None
        p, node = entry
        info = self.nodes[node]
        del info.pods[key]
        for r, v in p.requests.items():
            info.requested[r] = info.requested.get(r, 0) - v
        self.table.add_pod(info, p, -1)
        self.anti_affinity_pods.pop(key, None)
        self.affinity_pods.pop(key, None)
        ns = self.by_namespace.get(p.namespace)
        if ns is not None:
            ns.pop(key, None)
            if not ns:
                del self.by_namespace[p.namespace]
        if info.node is None and not info.pods:
            del self.nodes[node]
            self.table.release(info)
        self.generation += 1
        return p

    def set_pod(self, p: PodInfo) -> None:
        """An assigned pod as the API reports it (confirms an assumed one)."""
        self.assumed.discard(p.key)
        self._detach(p.key)
        self._attach(p, p.node_name)

    def confirm(self, p: PodInfo) -> bool:
        """The API shows an assumed pod bound where the scheduler put it: swap in the API's
        version without recounting (a bound pod's requests do not change). False when
        it was not assumed there."""
        entry = self.pods.get(p.key)
        if p.key not in self.assumed or entry is None or entry[1] != p.node_name:
            return False
        self.assumed.discard(p.key)
        self.pods[p.key] = (p, p.node_name)
        self.nodes[p.node_name].pods[p.key] = p
        self.by_namespace[p.namespace][p.key] = p
        if p.key in self.anti_affinity_pods:
            self.anti_affinity_pods[p.key] = p
        if p.key in self.affinity_pods:
            self.affinity_pods[p.key] = p
        self.generation += 1
        return True

    def remove_pod(self, key: str) -> PodInfo | None:
        self.assumed.discard(key)
        return self._detach(key)

    def assume(self, p: PodInfo, node: str) -> None:
        self._detach(p.key)
        self._attach(p, node)
        self.assumed.add(p.key)

    def forget(self, key: str) -> None:
        """A binding failed: the assumed pod stops counting."""
        if key in self.assumed:
            self.assumed.discard(key)
            self._detach(key)

    def pods_in(self, namespaces: frozenset[str] | None) -> list[tuple[PodInfo, NodeInfo]]:
        """Assigned pods (with their NodeInfo) in these namespaces, or in all when None."""
        if namespaces is None:
            return [(p, self.nodes[n]) for p, n in self.pods.values()]
        out = []
        for ns in namespaces:
            for key, p in (self.by_namespace.get(ns) or {}).items():
                out.append((p, self.nodes[self.pods[key][1]]))
        return out

    def default_selector(self, p: PodInfo) -> Matcher | None:
        """upstream's DefaultSelector: every Service, ReplicaSet and StatefulSet of the pod's
        namespace that selects it, ANDed; None when nothing selects it."""
        found = [m for ns, m in self.owner_selectors.values() if ns == p.namespace and m(p.labels)]
        if not found:
            return None
        return lambda labels: all(m(labels) for m in found)

    def node_of(self, key: str) -> str | None:
        entry = self.pods.get(key)
        return entry[1] if entry else None

    def is_assumed(self, key: str) -> bool:
        return key in self.assumed

    def sizes(self) -> dict[str, int]:
        return {"nodes": self.node_count, "pods": len(self.pods), "assumed_pods": len(self.assumed)}
