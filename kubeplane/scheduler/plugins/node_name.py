"""NodeName: a pod that names a node (spec.nodeName) fits only that node."""
from __future__ import annotations

import numpy as np

from ..framework import NODE_ADD, SKIP, UNRESOLVABLE, CycleState, Plugin, Status

REASON = "node(s) didn't match the requested node name"


class NodeName(Plugin):
    name = "NodeName"
    events = frozenset({NODE_ADD})
    vector = True

    def prefilter(self, state: CycleState, pod) -> Status | None:
        return None if pod.node_name else Status(SKIP)

    def filter_vector(self, state: CycleState, pod, table) -> list[tuple[str, np.ndarray, int]]:
        fail = np.ones(table.size, dtype=bool)
        info = self.cache.nodes.get(pod.node_name)
        if info is not None:
            fail[info.slot] = False
        return [(REASON, fail, UNRESOLVABLE)]
