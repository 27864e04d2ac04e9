"""NodeAffinity: spec.nodeSelector and required node affinity filter (both must match;
UnschedulableAndUnresolvable, `node(s) didn't match Pod's node affinity/selector`);
preferred terms score the sum of the weights of the terms a node matches, normalised so
the best node gets 100."""
from __future__ import annotations

import numpy as np

from ..framework import NODE_ADD, NODE_LABELS, SKIP, UNRESOLVABLE, CycleState, Plugin, Status, default_normalize

REASON = "node(s) didn't match Pod's node affinity/selector"


def node_matches(pod, labels: dict[str, str], name: str) -> bool:
    """The pod's nodeSelector and required node affinity accept this node."""
    for k, v in pod.node_selector.items():
        if labels.get(k) != v:
            return False
    return pod.required_node is None or pod.required_node(labels, name)


class NodeAffinity(Plugin):
    name = "NodeAffinity"
    events = frozenset({NODE_ADD, NODE_LABELS})

    def prefilter(self, state: CycleState, pod) -> Status | None:
        if not pod.node_selector and pod.required_node is None:
            return Status(SKIP)
        return None

    def filter_node(self, state: CycleState, pod, node) -> Status | None:
        if node_matches(pod, node.labels, node.name):
            return None
        return Status(UNRESOLVABLE, (REASON,), self.name)

    def score(self, state: CycleState, pod, table, slots: np.ndarray) -> np.ndarray | None:
        if not pod.preferred_node:
            return None
        infos = table.infos
        raw = np.fromiter((sum(w for w, t in pod.preferred_node if t(infos[s].labels, infos[s].name))
                           for s in slots), dtype=np.int64, count=len(slots))
        return default_normalize(raw)
