"""PodTopologySpread (upstream's plugins/podtopologyspread).

Constraints come from spec.topologySpreadConstraints; a pod without any gets the system
defaults (zone maxSkew 5, hostname maxSkew 3, both ScheduleAnyway) when the cache knows a
selector for it (`cache.default_selector(pod)`: the Services / ReplicaSets / StatefulSets
that select it), as upstream's `defaultingType: System`.

Filter (DoNotSchedule constraints): counted over nodes that pass the pod's node affinity
(nodeAffinityPolicy Honor, the default) and carry every constraint's key: the matching
pods (same namespace, not terminating) per domain. A node without a constraint's key is
`node(s) didn't match pod topology spread constraints (missing required label)`
(UnschedulableAndUnresolvable); one where count + self-match - min over domains >
maxSkew is `node(s) didn't match pod topology spread constraints` (Unschedulable). With
fewer domains than minDomains the minimum is 0.

Score (ScheduleAnyway constraints): per node sum over constraints of
count * log(domains + 2) + (maxSkew - 1), rounded; normalised so the least loaded domain
gets 100: 100 * (max + min - s) / max; nodes missing a key get 0.
"""
from __future__ import annotations

import math
from collections import Counter

import numpy as np

from ..framework import (MAX_NODE_SCORE, NODE_ADD, NODE_LABELS, NODE_TAINTS, POD_ADD, POD_DELETE, POD_UPDATE,
                         SKIP, UNRESOLVABLE, UNSCHEDULABLE, CycleState, Plugin, Status)
from ..podinfo import SpreadConstraint
from ...client.selectors import tolerated
from .node_affinity import node_matches

REASON = "node(s) didn't match pod topology spread constraints"
MISSING = "node(s) didn't match pod topology spread constraints (missing required label)"
HOSTNAME = "kubernetes.io/hostname"
ZONE = "topology.kubernetes.io/zone"


def _node_eligible(pod, c: SpreadConstraint, node) -> bool:
    if c.honor_affinity and not node_matches(pod, node.labels, node.name):
        return False
    if c.honor_taints:
        for t in node.taints:
            if t.get("effect") in ("NoSchedule", "NoExecute") and not tolerated(pod.tolerations, t):
                return False
    return True


class PodTopologySpread(Plugin):
    name = "PodTopologySpread"
    events = frozenset({POD_ADD, POD_UPDATE, POD_DELETE, NODE_ADD, NODE_LABELS, NODE_TAINTS})

    def _constraints(self, pod, hard: bool) -> list[SpreadConstraint]:
        if pod.spread:
            return [c for c in pod.spread if c.hard == hard]
        if hard:
            return []
        sel = self.cache.default_selector(pod)
        if sel is None:
            return []
        return [SpreadConstraint(3, HOSTNAME, False, sel, 1, True, False),
                SpreadConstraint(5, ZONE, False, sel, 1, True, False)]

    def _counts(self, pod, cons: list[SpreadConstraint], nodes, require_all: bool = True) -> list[Counter]:
        counts = [Counter() for _ in cons]
        ns = self.cache.by_namespace.get(pod.namespace) or {}
        per_node: dict[str, list] = {}
        for key, other in ns.items():
            if not other.terminating:
                per_node.setdefault(self.cache.pods[key][1], []).append(other)
        for node in nodes:
            labels = node.labels
            if require_all and any(c.topology_key not in labels for c in cons):
                continue
            pods = per_node.get(node.name, ())
            for i, c in enumerate(cons):
                if c.topology_key not in labels or not _node_eligible(pod, c, node):
                    continue
                pair = labels[c.topology_key]
                counts[i][pair] += sum(1 for o in pods if c.selector(o.labels))
        return counts

    def _nodes(self):
        return [n for n in self.cache.nodes.values() if n.node is not None]

    def prefilter(self, state: CycleState, pod) -> Status | None:
        cons = self._constraints(pod, True)
        if not cons:
            return Status(SKIP)
        counts = self._counts(pod, cons, self._nodes())
        mins = []
        for c, cnt in zip(cons, counts):
            m = min(cnt.values()) if cnt else 0
            if len(cnt) < c.min_domains:
                m = 0
            mins.append(m)
        state[self.name] = (cons, counts, mins)
        return None

    def filter_node(self, state: CycleState, pod, node) -> Status | None:
        cons, counts, mins = state[self.name]
        labels = node.labels
        for c, cnt, m in zip(cons, counts, mins):
            v = labels.get(c.topology_key)
            if v is None:
                return Status(UNRESOLVABLE, (MISSING,), self.name)
            self_match = 1 if c.selector(pod.labels) else 0
            if cnt.get(v, 0) + self_match - m > c.max_skew:
                return Status(UNSCHEDULABLE, (REASON,), self.name)
        return None

    def score(self, state: CycleState, pod, table, slots: np.ndarray) -> np.ndarray | None:
        cons = self._constraints(pod, False)
        if not cons:
            return None
        infos = table.infos
        feasible = [infos[s] for s in slots]
        # the system defaults do not require every key (upstream's requireAllTopologies)
        require_all = bool(pod.spread)
        ignored = np.fromiter((require_all and any(c.topology_key not in n.labels for c in cons) for n in feasible),
                              dtype=bool, count=len(feasible))
        counts = self._counts(pod, cons, self._nodes(), require_all)
        # topology weights from the domains among the feasible nodes
        weights = []
        for c in cons:
            if c.topology_key == HOSTNAME:
                size = int((~ignored).sum())
            else:
                size = len({n.labels[c.topology_key] for n, ig in zip(feasible, ignored)
                            if not ig and c.topology_key in n.labels})
            weights.append(math.log(size + 2))
        raw = np.zeros(len(slots), dtype=np.int64)
        for j, n in enumerate(feasible):
            if ignored[j]:
                continue
            s = 0.0
            for c, cnt, w in zip(cons, counts, weights):
                v = n.labels.get(c.topology_key)
                if v is not None:
                    s += cnt.get(v, 0) * w + (c.max_skew - 1)
            raw[j] = round(s)
        valid = raw[~ignored]
        if not len(valid):
            return np.zeros(len(slots), dtype=np.int64)
        lo, hi = int(valid.min()), int(valid.max())
        if hi == 0:
            out = np.full(len(slots), MAX_NODE_SCORE, dtype=np.int64)
        else:
            out = MAX_NODE_SCORE * (hi + lo - raw) // hi
        out[ignored] = 0
        return out
