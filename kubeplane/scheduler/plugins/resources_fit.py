"""NodeResourcesFit (filter + LeastAllocated score) and NodeResourcesBalancedAllocation.

Filter (upstream's fitsRequest): `Too many pods` when the node already runs
allocatable.pods pods; `Insufficient <resource>` for each resource the pod requests
(cpu, memory, ephemeral-storage, extended resources) beyond allocatable minus requested.
A node can fail for several resources at once; each counts in the message. Nominated pods
of equal or higher priority (preemptors waiting for their victims to leave) count on
their nominated node (`state["nominated"]`).

LeastAllocated (weights cpu 1, memory 1): per resource (allocatable - requested) * 100 /
allocatable with the *non-zero* requests (best-effort containers count 100m / 200 MiB),
0 when over; the weighted mean over resources the node has.
BalancedAllocation: 100 * (1 - std) of the requested fractions of cpu and memory (actual
requests, capped at 1); with two resources std = |f_cpu - f_mem| / 2.
"""
from __future__ import annotations

import numpy as np

from ..framework import MAX_NODE_SCORE, NODE_ADD, NODE_ALLOCATABLE, POD_DELETE, UNSCHEDULABLE, CycleState, Plugin
from ..resources import CPU, MEMORY, PODS

TOO_MANY_PODS = "Too many pods"


def _requested(state: CycleState, table) -> tuple[np.ndarray, np.ndarray]:
    """requested and pod counts per slot, nominated pods added."""
    req = table.requested[: table.size]
    count = table.pod_count[: table.size]
    nominated = state.get("nominated")
    if nominated:
        req = req.copy()
        count = count.copy()
        for slot, reqs in nominated:
            for r, v in reqs.items():
                if r != PODS:
                    c = table.column(r)
                    req[slot, c] += v
            count[slot] += 1
    return req, count


class NodeResourcesFit(Plugin):
    name = "NodeResourcesFit"
    events = frozenset({NODE_ADD, NODE_ALLOCATABLE, POD_DELETE})
    vector = True

    def filter_vector(self, state: CycleState, pod, table) -> list[tuple[str, np.ndarray, int]]:
        n = table.size
        for r in pod.requests:
            if r != PODS:
                table.column(r)
        req, count = _requested(state, table)
        out = [(TOO_MANY_PODS, count + 1 > table.max_pods[:n], UNSCHEDULABLE)]
        alloc = table.alloc[:n]
        for r, v in pod.requests.items():
            if r == PODS:
                continue
            c = table.col_index[r]
            out.append((f"Insufficient {r}", alloc[:, c] - req[:, c] < v, UNSCHEDULABLE))
        return out

    def score(self, state: CycleState, pod, table, slots: np.ndarray) -> np.ndarray | None:
        alloc, _ = _cpu_mem(state, table, slots)
        req = table.non_zero[slots] + np.array(pod.non_zero, dtype=np.int64)
        if alloc.all():     # the usual case: every node has cpu and memory
            per = np.maximum((alloc - req) * MAX_NODE_SCORE // alloc, 0)
            return (per[:, 0] + per[:, 1]) // 2
        has = alloc > 0
        safe = np.where(has, alloc, 1)
        per = np.where(has & (req <= alloc), ((alloc - req) * MAX_NODE_SCORE) // safe, 0)
        weight = has.sum(axis=1)
        total = (per * has).sum(axis=1)
        return np.where(weight > 0, total // np.maximum(weight, 1), 0)


def _cpu_mem(state: CycleState, table, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(allocatable, requested) cpu and memory of these slots, gathered once per cycle for
    both resource scores (columns 0 and 1 of the table are cpu and memory)."""
    got = state.get("cpu_mem")
    if got is None or got[0] is not slots:
        got = (slots, table.alloc[slots, :2], table.requested[slots, :2])
        state["cpu_mem"] = got
    return got[1], got[2]


class BalancedAllocation(Plugin):
    name = "NodeResourcesBalancedAllocation"
    events = frozenset({NODE_ADD, NODE_ALLOCATABLE, POD_DELETE})

    def score(self, state: CycleState, pod, table, slots: np.ndarray) -> np.ndarray | None:
        alloc, requested = _cpu_mem(state, table, slots)
        preq = np.array([pod.requests.get(CPU, 0), pod.requests.get(MEMORY, 0)], dtype=np.int64)
        if alloc.all():
            frac = np.minimum((requested + preq) / alloc, 1.0)
            return ((1 - np.abs(frac[:, 0] - frac[:, 1]) / 2) * MAX_NODE_SCORE).astype(np.int64)
        falloc = alloc.astype(np.float64)
        has = alloc > 0
        frac = np.minimum(np.where(has, (requested + preq) / np.where(has, falloc, 1.0), 0.0), 1.0)
        both = has.all(axis=1)
        std = np.where(both, np.abs(frac[:, 0] - frac[:, 1]) / 2, 0.0)
        return ((1 - std) * MAX_NODE_SCORE).astype(np.int64)
