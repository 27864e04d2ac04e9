"""TaintToleration.

Filter: a node whose NoSchedule or NoExecute taint the pod does not tolerate is
UnschedulableAndUnresolvable, reason `node(s) had untolerated taint {key: value}` naming
the first such taint. Score: the number of PreferNoSchedule taints the pod does not
tolerate (tolerations with effect PreferNoSchedule or empty count), normalised reversed
(fewest untolerated taints -> 100). Both are computed once per distinct taint set and
spread to nodes by the table's taint-set id.
"""
from __future__ import annotations

import numpy as np

from ..framework import NODE_ADD, NODE_TAINTS, UNRESOLVABLE, CycleState, Plugin, default_normalize
from ...client.selectors import tolerated


def untolerated_hard(tols: list[dict], taints) -> tuple[str, str] | None:
    for key, value, effect in taints:
        if effect in ("NoSchedule", "NoExecute") and not tolerated(tols, {"key": key, "value": value, "effect": effect}):
            return key, value
    return None


class TaintToleration(Plugin):
    name = "TaintToleration"
    events = frozenset({NODE_ADD, NODE_TAINTS})
    vector = True

    def filter_vector(self, state: CycleState, pod, table) -> list[tuple[str, np.ndarray, int]]:
        sets = table.taint_sets
        if len(sets) == 1:
            return []
        bad: dict[str, list[int]] = {}
        for i, taints in enumerate(sets):
            hit = untolerated_hard(pod.tolerations, taints) if taints else None
            if hit is not None:
                bad.setdefault(f"node(s) had untolerated taint {{{hit[0]}: {hit[1]}}}", []).append(i)
        ids = table.taint_set[: table.size]
        return [(reason, np.isin(ids, idx), UNRESOLVABLE) for reason, idx in bad.items()]

    def score(self, state: CycleState, pod, table, slots: np.ndarray) -> np.ndarray | None:
        tols = [t for t in pod.tolerations if (t.get("effect") or "") in ("", "PreferNoSchedule")]
        counts = np.zeros(len(table.taint_sets), dtype=np.int64)
        for i, taints in enumerate(table.taint_sets):
            counts[i] = sum(1 for k, v, e in taints
                            if e == "PreferNoSchedule" and not tolerated(tols, {"key": k, "value": v, "effect": e}))
        if not counts.any():
            return None   # every node scores 100 after reversing: no difference to make
        return default_normalize(counts[table.taint_set[slots]], reverse=True)
