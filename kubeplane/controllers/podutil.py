"""Pod and owner helpers shared by the workload controllers (upstream's podutil and
controller_utils): readiness, availability, controller references, pods from templates,
and the order in which a ReplicaSet picks pods to delete.
"""
from __future__ import annotations

import copy
import functools
import math
import time
from typing import Any

from .base import parse_time

PHASE_ORDINAL = {"Pending": 0, "Unknown": 1, "Running": 2}
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"


def md(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def is_active(pod: dict[str, Any]) -> bool:
    """upstream's IsPodActive: not Succeeded/Failed and not being deleted."""
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not md(pod).get("deletionTimestamp")


def ready_condition(pod: dict[str, Any]) -> dict[str, Any] | None:
    for c in (pod.get("status") or {}).get("conditions") or ():
        if c.get("type") == "Ready":
            return c
    return None


def is_ready(pod: dict[str, Any]) -> bool:
    c = ready_condition(pod)
    return c is not None and c.get("status") == "True"


def ready_since(pod: dict[str, Any]) -> float | None:
    """When the pod became ready (its Ready condition's lastTransitionTime), if ready."""
    c = ready_condition(pod)
    if c is None or c.get("status") != "True":
        return None
    return parse_time(c.get("lastTransitionTime"))


def is_available(pod: dict[str, Any], min_ready_seconds: int, now: float | None = None) -> bool:
    """upstream's IsPodAvailable: ready, and for at least minReadySeconds."""
    if not is_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    since = ready_since(pod)
    if since is None:
        return False
    return since + min_ready_seconds <= (time.time() if now is None else now)


def controller_ref(obj: dict[str, Any]) -> dict[str, Any] | None:
    for ref in md(obj).get("ownerReferences") or ():
        if ref.get("controller"):
            return ref
    return None


def owner_reference(owner: dict[str, Any], api_version: str, kind: str) -> dict[str, Any]:
    """A controller reference to `owner` (controller and blockOwnerDeletion true)."""
    m = md(owner)
    return {"apiVersion": api_version, "kind": kind, "name": m.get("name"), "uid": m.get("uid"),
            "controller": True, "blockOwnerDeletion": True}


def pod_from_template(template: dict[str, Any], owner: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any]:
    """upstream's GetPodFromTemplate: the template's labels, annotations, finalizers and
    spec; generateName "<owner>-"; one controller reference."""
    t = template or {}
    tmd = t.get("metadata") or {}
    meta: dict[str, Any] = {"generateName": md(owner).get("name", "") + "-", "namespace": md(owner).get("namespace"),
                            "ownerReferences": [ref]}
    for k in ("labels", "annotations", "finalizers"):
        if tmd.get(k):
            meta[k] = copy.deepcopy(tmd[k])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": copy.deepcopy(t.get("spec") or {})}


def _max_restarts(pod: dict[str, Any]) -> int:
    return max((c.get("restartCount") or 0 for c in (pod.get("status") or {}).get("containerStatuses") or ()),
               default=0)


def _log_rank(t: float, now: float) -> int:
    """upstream's logarithmicRankDiff term: floor(log2(age in ns)), -1 for no age."""
    d = (now - t) * 1e9
    return int(math.log2(d)) if d > 0 else -1


def _deletion_cost(pod: dict[str, Any]) -> int:
    v = (md(pod).get("annotations") or {}).get(DELETION_COST)
    try:
        return int(v) if v is not None else 0
    except ValueError:
        return 0


def _cmp_times(t1: float | None, t2: float | None, uid1: str, uid2: str, now: float) -> int:
    """Steps 6 and 8 of upstream's Less for two different times: the more recent first,
    on a log2 scale of the age (LogarithmicScaleDown); one bucket: the smaller UID first;
    a missing time first."""
    if t1 is None or t2 is None:
        return -1 if t1 is None else 1
    diff = _log_rank(t1, now) - _log_rank(t2, now)
    if diff == 0:
        return -1 if uid1 < uid2 else (1 if uid1 > uid2 else 0)
    return diff


def compare_for_deletion(a: tuple[dict[str, Any], int], b: tuple[dict[str, Any], int], now: float) -> int:
    """upstream's ActivePodsWithRanks.Less as a comparator on (pod, rank): negative when
    `a` is deleted before `b` (LogarithmicScaleDown and PodDeletionCost on, their
    defaults). 1. unassigned before assigned; 2. Pending < Unknown < Running; 3. not
    ready before ready; 4. lower pod-deletion-cost first; 5. higher rank (more pods of
    the same owner on the node) first; 6. both ready: more recently ready first; 7. more
    container restarts first; 8. newer first."""
    pa, ra = a
    pb, rb = b
    na, nb = (pa.get("spec") or {}).get("nodeName") or "", (pb.get("spec") or {}).get("nodeName") or ""
    if na != nb and (not na or not nb):
        return -1 if not na else 1
    pha = PHASE_ORDINAL.get((pa.get("status") or {}).get("phase") or "", -1)
    phb = PHASE_ORDINAL.get((pb.get("status") or {}).get("phase") or "", -1)
    if pha != phb:
        return -1 if pha < phb else 1
    rda, rdb = is_ready(pa), is_ready(pb)
    if rda != rdb:
        return -1 if not rda else 1
    ca, cb = _deletion_cost(pa), _deletion_cost(pb)
    if ca != cb:
        return -1 if ca < cb else 1
    if ra != rb:
        return -1 if ra > rb else 1
    ua, ub = md(pa).get("uid") or "", md(pb).get("uid") or ""
    if rda and rdb:
        ta, tb = ready_since(pa), ready_since(pb)
        if ta != tb:
            c = _cmp_times(ta, tb, ua, ub, now)
            if c:
                return c
    xa, xb = _max_restarts(pa), _max_restarts(pb)
    if xa != xb:
        return -1 if xa > xb else 1
    ta, tb = parse_time(md(pa).get("creationTimestamp")), parse_time(md(pb).get("creationTimestamp"))
    if ta != tb:
        return _cmp_times(ta, tb, ua, ub, now)
    return 0


def pods_to_delete(filtered: list[dict[str, Any]], related: list[dict[str, Any]], diff: int,
                   now: float | None = None) -> list[dict[str, Any]]:
    """upstream's getPodsToDelete: rank each pod by how many related active pods share its
    node, sort with compare_for_deletion, take the first `diff`."""
    now = time.time() if now is None else now
    if diff >= len(filtered):
        return list(filtered)
    on_node: dict[str, int] = {}
    for p in related:
        if is_active(p):
            n = (p.get("spec") or {}).get("nodeName") or ""
            on_node[n] = on_node.get(n, 0) + 1
    pairs = [(p, on_node.get((p.get("spec") or {}).get("nodeName") or "", 0)) for p in filtered]
    pairs.sort(key=functools.cmp_to_key(lambda a, b: compare_for_deletion(a, b, now)))
    return [p for p, _ in pairs[:diff]]
