"""The scheduling framework's vocabulary: Status codes, CycleState and the Plugin base.

A plugin implements the extension points it needs (upstream's PreFilter, Filter,
PreScore, Score + NormalizeScore), in one of two shapes chosen for speed in Python:

- ``filter_vector(state, pod, table) -> list[(reason, failed_mask, code)]``: judge every
  node slot at once with numpy arrays kept by the cache (NodeResourcesFit, taints, ...);
- ``filter_node(state, pod, node) -> Status | None``: one node at a time (affinity,
  spread), called only for nodes that passed every vector filter, in upstream's rotating
  order, until enough feasible nodes are found.

``prefilter`` returns SKIP when the plugin has nothing to check for this pod (upstream's
PreFilter Skip); its filters are then not run. ``score(state, pod, table, slots)`` returns
the plugin's normalised scores (0..100) for the feasible slots, or None to skip.
Plugins are stateless between cycles: per-pod data lives in the CycleState.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

if TYPE_CHECKING:
    from .cache import Cache, NodeInfo, NodeTable
    from .podinfo import PodInfo

SUCCESS, ERROR, UNSCHEDULABLE, UNRESOLVABLE, SKIP = 0, 1, 2, 3, 5
MAX_NODE_SCORE = 100

# cluster events that can make a pod schedulable again (upstream's ClusterEvent, simplified)
NODE_ADD = "NodeAdd"
NODE_LABELS = "NodeUpdate:Label"
NODE_TAINTS = "NodeUpdate:Taint"
NODE_ALLOCATABLE = "NodeUpdate:Allocatable"
NODE_SCHEDULABLE = "NodeUpdate:Unschedulable"
POD_ADD = "AssignedPodAdd"
POD_UPDATE = "AssignedPodUpdate"
POD_DELETE = "AssignedPodDelete"


@dataclass(frozen=True, slots=True)
class Status:
    code: int
    reasons: tuple[str, ...] = ()
    plugin: str = ""

    @property
    def ok(self) -> bool:
        return self.code == SUCCESS

    def message(self) -> str:
        return ", ".join(self.reasons)


OK = Status(SUCCESS)


class CycleState(dict):
    """Per scheduling cycle data, keyed by plugin name; `skip` holds the plugins whose
    PreFilter said Skip."""

    def __init__(self) -> None:
        super().__init__()
        self.skip: set[str] = set()
        self.skip_score: set[str] = set()


class Plugin:
    name: ClassVar[str] = ""
    # the events (above) after which a pod this plugin rejected may fit
    events: ClassVar[frozenset[str]] = frozenset()
    vector: ClassVar[bool] = False

    def __init__(self, cache: "Cache") -> None:
        self.cache = cache

    def prefilter(self, state: CycleState, pod: "PodInfo") -> Status | None:
        return None

    def filter_vector(self, state: CycleState, pod: "PodInfo",
                      table: "NodeTable") -> list[tuple[str, np.ndarray, int]]:
        return []

    def filter_node(self, state: CycleState, pod: "PodInfo", node: "NodeInfo") -> Status | None:
        return None

    def score(self, state: CycleState, pod: "PodInfo", table: "NodeTable",
              slots: np.ndarray) -> np.ndarray | None:
        return None


def default_normalize(scores: np.ndarray, reverse: bool = False) -> np.ndarray:
    """upstream's helper.DefaultNormalizeScore(MaxNodeScore, reverse, scores)."""
    top = int(scores.max()) if len(scores) else 0
    if top == 0:
        if reverse:
            return np.full(len(scores), MAX_NODE_SCORE, dtype=np.int64)
        return scores.astype(np.int64)
    out = (MAX_NODE_SCORE * scores.astype(np.int64)) // top
    if reverse:
        out = MAX_NODE_SCORE - out
    return out
