"""One scheduling cycle: PreFilter, Filter, Score, select the host (upstream's schedulePod).

- The number of feasible nodes to find is upstream's numFeasibleNodesToFind: every node
  below 100 nodes; else `percentageOfNodesToScore` (0 = adaptive: 50 - nodes/125, at least
  5) percent of the nodes, at least 100.
- Nodes are visited from a start index that rotates by the number of nodes visited in the
  previous cycle, so successive pods look at different nodes (upstream's
  nextStartNodeIndex).
- Vector filters judge every slot at once; per-node filters run in the rotating order on
  the nodes the vector filters left, until enough feasible nodes are found.
- On failure every node gets the reason of the first plugin (in filter order) that rejects
  it (vector filters by mask arithmetic, no per-node Python); the FitError carries the
  histogram, the rejecting plugins (for the queue's event gating) and each node's status
  code as an array (for preemption).
- One feasible node: no scoring (upstream skips it too). Ties at the best score are broken
  uniformly at random.
"""
from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import messages
from .cache import Cache
from .framework import SKIP, SUCCESS, UNRESOLVABLE, UNSCHEDULABLE, CycleState, Plugin, Status
from .plugins import FILTER_ORDER, SCORE_WEIGHTS
from .podinfo import PodInfo

MIN_FEASIBLE_NODES = 100
MIN_FEASIBLE_PERCENTAGE = 5


def num_feasible_nodes_to_find(num_nodes: int, percentage: int = 0) -> int:
    if num_nodes < MIN_FEASIBLE_NODES:
        return num_nodes
    if percentage == 0:
        percentage = max(50 - num_nodes // 125, MIN_FEASIBLE_PERCENTAGE)
    n = num_nodes * percentage // 100
    return max(n, MIN_FEASIBLE_NODES)


class FitError(Exception):
    """No node fits; `message()` is upstream's text."""

    def __init__(self, num_nodes: int, counts: dict[str, int], plugins: set[str],
                 codes: np.ndarray | None, prefilter: str = "") -> None:
        super().__init__()
        self.num_nodes = num_nodes
        self.counts = counts
        self.plugins = plugins
        self.codes = codes      # per slot: the first failing plugin's code (0 = not a node)
        self.prefilter = prefilter
        self.postfilter = ""

    def message(self) -> str:
        if self.num_nodes == 0 and not self.counts:
            return messages.NO_NODES
        return messages.fit_error(self.num_nodes, self.counts, self.prefilter, self.postfilter)

    __str__ = message


@dataclass
class Result:
    node: str
    evaluated: int
    feasible: int
    timings: dict[str, float] = field(default_factory=dict)


class Profile:
    """The default-scheduler profile: its plugins and the rotating start index."""

    def __init__(self, cache: Cache, percentage: int = 0, rng: random.Random | None = None,
                 observe: Callable[[str, str, float], None] | None = None) -> None:
        self.cache = cache
        self.percentage = percentage
        self.rng = rng or random.Random()
        made: dict[type, Plugin] = {}
        for cls in FILTER_ORDER + tuple(c for c, _ in SCORE_WEIGHTS):
            if cls not in made:
                made[cls] = cls(cache)
        self.filters = [made[c] for c in FILTER_ORDER]
        self.scorers = [(made[c], w) for c, w in SCORE_WEIGHTS]
        self.plugins = {p.name: p for p in made.values()}
        self.next_start = 0
        self.nominated: dict[str, tuple[PodInfo, str]] = {}   # key -> (pod, nominated node)
        self.observe = observe or (lambda point, status, seconds: None)

    # nominated pods --------------------------------------------------------------------
    def nominate(self, p: PodInfo, node: str) -> None:
        self.nominated[p.key] = (p, node)

    def unnominate(self, key: str) -> None:
        self.nominated.pop(key, None)

    def _nominated_for(self, pod: PodInfo) -> list[tuple[int, dict[str, int]]]:
        out = []
        for key, (p, node) in self.nominated.items():
            if key != pod.key and p.priority >= pod.priority and node in self.cache.nodes:
                out.append((self.cache.nodes[node].slot, p.requests))
        return out

    # the cycle -----------------------------------------------------------------------------
    def prefilter(self, state: CycleState, pod: PodInfo) -> None:
        t0 = time.perf_counter()
        for p in self.filters:
            st = p.prefilter(state, pod)
            if st is not None and st.code == SKIP:
                state.skip.add(p.name)
        self.observe("PreFilter", "Success", time.perf_counter() - t0)

    def _vector(self, state: CycleState, pod: PodInfo) -> tuple[np.ndarray, list]:
        table = self.cache.table
        ok = table.valid[: table.size].copy()
        fails = []
        for p in self.filters:
            if p.vector and p.name not in state.skip:
                f = p.filter_vector(state, pod, table)
                for _, mask, _ in f:
                    ok &= ~mask
                fails.append((p, f))
        return ok, fails

    def _node_filters(self, state: CycleState) -> list[Plugin]:
        return [p for p in self.filters if not p.vector and p.name not in state.skip]

    def _run_node(self, state: CycleState, pod: PodInfo, filters: list[Plugin], slot: int) -> Status | None:
        info = self.cache.table.infos[slot]
        for p in filters:
            st = p.filter_node(state, pod, info)
            if st is not None and st.code != SUCCESS:
                return st
        return None

    def new_state(self, pod: PodInfo) -> CycleState:
        state = CycleState()
        if self.nominated:
            state["nominated"] = self._nominated_for(pod)
        return state

    def fits_slot(self, state: CycleState, pod: PodInfo, slot: int) -> Status | None:
        """Every filter on one node (the state's PreFilter data must be current)."""
        table = self.cache.table
        if not table.valid[slot]:
            return Status(UNRESOLVABLE, ("node(s) not found",))
        for p in self.filters:
            if p.name in state.skip:
                continue
            if p.vector:
                reasons = tuple(r for r, mask, _ in p.filter_vector(state, pod, table) if mask[slot])
                if reasons:
                    code = max(c for r, mask, c in p.filter_vector(state, pod, table) if mask[slot])
                    return Status(code, reasons, p.name)
            else:
                st = p.filter_node(state, pod, table.infos[slot])
                if st is not None and st.code != SUCCESS:
                    return st
        return None

    def schedule(self, pod: PodInfo) -> Result:
        cache = self.cache
        num_nodes = cache.node_count
        if num_nodes == 0:
            raise FitError(0, {}, set(), None)
        state = self.new_state(pod)
        self.prefilter(state, pod)
        # a pod nominated by an earlier preemption tries its node first
        nominated = self.nominated.get(pod.key, (None, pod.nominated_node))[1]
        if nominated and nominated in cache.nodes:
            slot = cache.nodes[nominated].slot
            if cache.table.valid[slot] and self.fits_slot(state, pod, slot) is None:
                return Result(nominated, 1, 1)
        t0 = time.perf_counter()
        ok, vector_fails = self._vector(state, pod)
        size = len(ok)
        start = self.next_start % size if size else 0
        cand = np.flatnonzero(ok)
        if start:
            cand = np.concatenate([cand[cand >= start], cand[cand < start]])
        want = num_feasible_nodes_to_find(num_nodes, self.percentage)
        node_filters = self._node_filters(state)
        node_status: dict[int, Status] = {}
        last = -1
        if not node_filters:
            feasible = cand[:want]
            if len(feasible) == want and want < len(cand):
                last = int(feasible[-1])
        else:
            found: list[int] = []
            for s in cand.tolist():
                st = self._run_node(state, pod, node_filters, s)
                if st is not None:
                    node_status[s] = st
                    continue
                found.append(s)
                if len(found) >= want:
                    last = s
                    break
            feasible = np.array(found, dtype=np.int64)
        processed = ((last - start) % size + 1) if last >= 0 else size
        self.next_start = (start + processed) % max(size, 1)
        self.observe("Filter", "Success", time.perf_counter() - t0)
        if len(feasible) == 0:
            raise self._diagnose(state, pod, vector_fails, node_filters, node_status)
        infos = cache.table.infos
        if len(feasible) == 1:
            return Result(infos[int(feasible[0])].name, processed, 1)
        t1 = time.perf_counter()
        total = np.zeros(len(feasible), dtype=np.int64)
        for p, w in self.scorers:
            if p.name in state.skip_score:
                continue
            s = p.score(state, pod, cache.table, feasible)
            if s is not None:
                total += s * w
        best = total.max()
        top = np.flatnonzero(total == best)
        pick = int(feasible[top[0] if len(top) == 1 else top[self.rng.randrange(len(top))]])
        self.observe("Score", "Success", time.perf_counter() - t1)
        return Result(infos[pick].name, processed, len(feasible))

    def _diagnose(self, state: CycleState, pod: PodInfo, vector_fails, node_filters: list[Plugin],
                  node_status: dict[int, Status]) -> FitError:
        table = self.cache.table
        valid = table.valid[: table.size]
        failed = np.zeros(len(valid), dtype=bool)
        counts: Counter = Counter()
        plugins: set[str] = set()
        codes = np.zeros(len(valid), dtype=np.int8)
        by_plugin = {p.name: f for p, f in vector_fails}
        # per-node filters for every node the vector filters rejected too: a node's reason
        # is its first failing plugin in filter order, whichever shape that plugin has
        for s in np.flatnonzero(valid).tolist():
            if s not in node_status:
                st = self._run_node(state, pod, node_filters, s)
                if st is not None:
                    node_status[s] = st
        for p in self.filters:
            if p.name in state.skip:
                continue
            if p.vector:
                f = by_plugin.get(p.name) or []
                if not f:
                    continue
                any_fail = np.zeros(len(valid), dtype=bool)
                for _, mask, _ in f:
                    any_fail |= mask
                new = any_fail & valid & ~failed
                if not new.any():
                    continue
                plugins.add(p.name)
                for reason, mask, code in f:
                    hit = mask & new
                    n = int(hit.sum())
                    if n:
                        counts[reason] += n
                        codes[hit] = np.maximum(codes[hit], code)
                failed |= new
            else:
                for s, st in node_status.items():
                    if st.plugin == p.name and not failed[s]:
                        failed[s] = True
                        plugins.add(p.name)
                        for r in st.reasons:
                            counts[r] += 1
                        codes[s] = st.code
        return FitError(self.cache.node_count, dict(counts), plugins, codes)


def is_resolvable(st: Status) -> bool:
    return st.code == UNSCHEDULABLE
