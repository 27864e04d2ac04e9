"""DefaultPreemption (upstream's PostFilter plugin), run when a pod fits nowhere.

- A pod with preemptionPolicy Never does not preempt; nor does one whose nominated node
  still has a terminating lower-priority pod (its victims are leaving).
- Candidate nodes are those whose failure was Unschedulable (resolvable by removing
  pods); UnschedulableAndUnresolvable nodes get "Preemption is not helpful for
  scheduling."
- On each candidate, every pod of lower priority is removed (simulated in the cache); if
  the pod then fits, the removed pods are reprieved one by one, highest priority first,
  while it still fits; the rest are the victims. (PodDisruptionBudgets are not consulted.)
- The chosen node: the lowest highest-victim priority, then the lowest sum of victim
  priorities, then the fewest victims, then the first found.
- The caller deletes the victims, sets the preemptor's status.nominatedNodeName, and the
  preemptor waits in the unschedulable queue until the victims' deletions move it.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from . import messages
from .algorithm import FitError, Profile
from .framework import UNSCHEDULABLE
from .podinfo import PodInfo

MIN_CANDIDATES_PERCENT = 10
MIN_CANDIDATES = 100


@dataclass
class Candidate:
    node: str
    victims: list[PodInfo]


def _fits(profile: Profile, pod: PodInfo, slot: int) -> tuple[bool, tuple[str, ...]]:
    state = profile.new_state(pod)
    profile.prefilter(state, pod)
    st = profile.fits_slot(state, pod, slot)
    return st is None, (st.reasons if st is not None else ())


def select_victims(profile: Profile, pod: PodInfo, node: str) -> tuple[list[PodInfo] | None, tuple[str, ...]]:
    cache = profile.cache
    info = cache.nodes[node]
    lower = [p for p in info.pods.values() if p.priority < pod.priority]
    if not lower:
        return None, (messages.NO_VICTIMS,)
    assumed = {p.key for p in lower if cache.is_assumed(p.key)}
    for p in lower:
        cache.remove_pod(p.key)
    victims: list[PodInfo] = []
    try:
        ok, reasons = _fits(profile, pod, info.slot)
        if not ok:
            return None, reasons or (messages.NO_VICTIMS,)
        for p in sorted(lower, key=lambda p: (-p.priority, p.created)):
            cache.set_pod(_as_assigned(p, node))
            ok, _ = _fits(profile, pod, info.slot)
            if not ok:
                cache.remove_pod(p.key)
                victims.append(p)
        return victims, ()
    finally:
        kept = {k for k in info.pods}
        for p in lower:
            if p.key not in kept:
                if p.key in assumed:
                    cache.assume(p, node)
                else:
                    cache.set_pod(_as_assigned(p, node))


def _as_assigned(p: PodInfo, node: str) -> PodInfo:
    if p.node_name == node:
        return p
    from dataclasses import replace
    return replace(p, node_name=node)


def preempt(profile: Profile, pod: PodInfo, err: FitError) -> tuple[Candidate | None, str]:
    """A node and its victims, or None and the "preemption: ..." message."""
    if pod.preemption_never:
        return None, "preemption: " + messages.NEVER
    cache = profile.cache
    nominated = profile.nominated.get(pod.key, (None, pod.nominated_node))[1]
    if nominated and nominated in cache.nodes:
        # its victims are still leaving: wait for them rather than preempt again
        if any(p.terminating and p.priority < pod.priority for p in cache.nodes[nominated].pods.values()):
            return None, "preemption: " + messages.TERMINATING
    counts: Counter = Counter()
    codes = err.codes if err.codes is not None else np.zeros(0, dtype=np.int8)
    potential = [cache.table.infos[s].name for s in np.flatnonzero(codes == UNSCHEDULABLE).tolist()]
    unresolvable = int(((codes != 0) & (codes != UNSCHEDULABLE)).sum())
    if unresolvable:
        counts[messages.NOT_HELPFUL] += unresolvable
    want = max(len(potential) * MIN_CANDIDATES_PERCENT // 100, MIN_CANDIDATES)
    candidates: list[Candidate] = []
    for node in potential:
        if len(candidates) >= want:
            break
        victims, reasons = select_victims(profile, pod, node)
        if victims is None:
            for r in reasons:
                counts[r] += 1
            continue
        candidates.append(Candidate(node, victims))
    if not candidates:
        return None, messages.preemption_failure(cache.node_count, dict(counts))

    def rank(c: Candidate) -> tuple[int, int, int]:
        top = max((v.priority for v in c.victims), default=-(2**31))
        return top, sum(v.priority + 2**31 for v in c.victims), len(c.victims)

    return min(candidates, key=rank), ""
