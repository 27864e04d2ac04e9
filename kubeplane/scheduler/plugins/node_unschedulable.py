"""NodeUnschedulable: nodes with spec.unschedulable take only pods that tolerate the
`node.kubernetes.io/unschedulable:NoSchedule` taint (UnschedulableAndUnresolvable)."""
from __future__ import annotations

import numpy as np

from ..framework import NODE_ADD, NODE_SCHEDULABLE, UNRESOLVABLE, CycleState, Plugin
from ...client.selectors import tolerated

REASON = "node(s) were unschedulable"
TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}


class NodeUnschedulable(Plugin):
    name = "NodeUnschedulable"
    events = frozenset({NODE_ADD, NODE_SCHEDULABLE})
    vector = True

    def filter_vector(self, state: CycleState, pod, table) -> list[tuple[str, np.ndarray, int]]:
        if tolerated(pod.tolerations, TAINT):
            return []
        return [(REASON, table.unschedulable[: table.size], UNRESOLVABLE)]
