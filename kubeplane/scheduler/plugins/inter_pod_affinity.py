"""InterPodAffinity (upstream's plugins/interpodaffinity).

PreFilter counts, per topology pair (key, value of the node an existing pod runs on):
- pairs where an existing pod's required anti-affinity term matches the incoming pod;
- pairs with existing pods matching each of the incoming pod's required affinity terms
  and anti-affinity terms.
Filter, in upstream's order:
1. every required affinity term needs a matching pod in the node's domain, else
   `node(s) didn't match pod affinity rules` (UnschedulableAndUnresolvable); when no pod
   anywhere matches any term and the pod matches its own terms, it may go anywhere (the
   first pod of a group);
2. no pod matching a required anti-affinity term in the domain, else `node(s) didn't match
   pod anti-affinity rules`;
3. no existing pod's anti-affinity forbids the domain, else `node(s) didn't satisfy existing
   pods anti-affinity rules` (both Unschedulable: removing pods can help).
Score: for each node, the sum over the incoming pod's preferred terms (+weight for
affinity, -weight for anti-affinity) and the existing pods' preferred terms that match the
incoming pod, per topology pair; normalised to 0..100 between the lowest and the highest.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from ..framework import (MAX_NODE_SCORE, NODE_ADD, NODE_LABELS, POD_ADD, POD_DELETE, POD_UPDATE, SKIP,
                         UNRESOLVABLE, UNSCHEDULABLE, CycleState, Plugin, Status)

AFFINITY = "node(s) didn't match pod affinity rules"
ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"
EXISTING_ANTI_AFFINITY = "node(s) didn't satisfy existing pods anti-affinity rules"


def _namespaces(terms) -> frozenset[str] | None:
    out: set[str] = set()
    for t in terms:
        if t.ns_selector is not None:
            return None
        out |= t.namespaces
    return frozenset(out)


class InterPodAffinity(Plugin):
    name = "InterPodAffinity"
    events = frozenset({POD_ADD, POD_UPDATE, POD_DELETE, NODE_ADD, NODE_LABELS})

    def prefilter(self, state: CycleState, pod) -> Status | None:
        existing = Counter()
        for other in self.cache.anti_affinity_pods.values():
            node = self.cache.nodes[self.cache.pods[other.key][1]]
            for t in other.anti_affinity:
                if t.matches(pod) and t.topology_key in node.labels:
                    existing[(t.topology_key, node.labels[t.topology_key])] += 1
        if not pod.affinity and not pod.anti_affinity and not existing:
            return Status(SKIP)
        aff = [Counter() for _ in pod.affinity]
        anti = Counter()
        terms = pod.affinity + pod.anti_affinity
        if terms:
            for other, node in self.cache.pods_in(_namespaces(terms)):
                if other.terminating:
                    continue
                for i, t in enumerate(pod.affinity):
                    if t.matches(other) and t.topology_key in node.labels:
                        aff[i][(t.topology_key, node.labels[t.topology_key])] += 1
                for t in pod.anti_affinity:
                    if t.matches(other) and t.topology_key in node.labels:
                        anti[(t.topology_key, node.labels[t.topology_key])] += 1
        first_of_group = (bool(pod.affinity) and not any(aff) and all(t.matches(pod) for t in pod.affinity))
        state[self.name] = (existing, aff, anti, first_of_group)
        return None

    def filter_node(self, state: CycleState, pod, node) -> Status | None:
        existing, aff, anti, first_of_group = state[self.name]
        labels = node.labels
        if pod.affinity and not first_of_group:
            for t, counts in zip(pod.affinity, aff):
                v = labels.get(t.topology_key)
                if v is None or counts[(t.topology_key, v)] <= 0:
                    return Status(UNRESOLVABLE, (AFFINITY,), self.name)
        elif pod.affinity:
            if any(t.topology_key not in labels for t in pod.affinity):
                return Status(UNRESOLVABLE, (AFFINITY,), self.name)
        for t in pod.anti_affinity:
            v = labels.get(t.topology_key)
            if v is not None and anti[(t.topology_key, v)] > 0:
                return Status(UNSCHEDULABLE, (ANTI_AFFINITY,), self.name)
        if existing:
            for (k, v), n in existing.items():
                if n > 0 and labels.get(k) == v:
                    return Status(UNSCHEDULABLE, (EXISTING_ANTI_AFFINITY,), self.name)
        return None

    def score(self, state: CycleState, pod, table, slots: np.ndarray) -> np.ndarray | None:
        pref = pod.preferred_affinity + pod.preferred_anti_affinity
        if not pref and not self.cache.affinity_pods:
            return None
        topo: Counter = Counter()
        if pref:
            for other, node in self.cache.pods_in(_namespaces(pref)):
                for t in pod.preferred_affinity:
                    if t.topology_key in node.labels and t.matches(other):
                        topo[(t.topology_key, node.labels[t.topology_key])] += t.weight
                for t in pod.preferred_anti_affinity:
                    if t.topology_key in node.labels and t.matches(other):
                        topo[(t.topology_key, node.labels[t.topology_key])] -= t.weight
        for other in self.cache.affinity_pods.values():
            node = self.cache.nodes[self.cache.pods[other.key][1]]
            for terms, sign in ((other.preferred_affinity, 1), (other.preferred_anti_affinity, -1),
                                (other.affinity, 1)):
                for t in terms:
                    if t.topology_key in node.labels and t.matches(pod):
                        topo[(t.topology_key, node.labels[t.topology_key])] += sign * t.weight
        if not topo:
            return None
        infos = table.infos
        raw = np.fromiter((sum(w for (k, v), w in topo.items() if infos[s].labels.get(k) == v) for s in slots),
                          dtype=np.int64, count=len(slots))
        lo, hi = int(raw.min()), int(raw.max())
        if hi == lo:
            return np.zeros(len(slots), dtype=np.int64)
        return (MAX_NODE_SCORE * (raw - lo)) // (hi - lo)
