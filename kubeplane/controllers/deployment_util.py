"""Deployment arithmetic and helpers (upstream's pkg/controller/deployment/util), pure
functions on JSON-shaped objects so they can be tested without a server.

Fenceposts: maxSurge is scaled from a percentage rounding UP, maxUnavailable rounding
DOWN; if both come out 0, maxUnavailable is 1 (a rollout must be able to move).
"""
from __future__ import annotations

import copy
import math
from typing import Any

import orjson

from .base import now_rfc3339, parse_time

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
POD_TEMPLATE_HASH = "pod-template-hash"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
ROLLBACK_TO = "deprecated.deployment.rollback.to"
# annotations a ReplicaSet does not copy from its Deployment
SKIP_ANNOTATIONS = frozenset({LAST_APPLIED, REVISION, REVISION_HISTORY, DESIRED_REPLICAS, MAX_REPLICAS, ROLLBACK_TO})

# condition reasons (upstream's deploymentutil constants)
NEW_RS_CREATED = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
RS_UPDATED = "ReplicaSetUpdated"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"
MIN_AVAILABLE = "MinimumReplicasAvailable"
MIN_UNAVAILABLE = "MinimumReplicasUnavailable"
FAILED_RS_CREATE = "ReplicaSetCreateError"
MAX_INT32 = 2 ** 31 - 1

SAFE_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"


# --- int-or-percent ------------------------------------------------------------------------
def scaled_value(v: int | str | None, total: int, round_up: bool) -> int:
    """apimachinery's GetScaledValueFromIntOrPercent."""
    if v is None:
        return 0
    if isinstance(v, int):
        return v
    s = str(v)
    if not s.endswith("%"):
        try:
            return int(s)
        except ValueError:
            raise ValueError(f"invalid value for IntOrString: invalid value {s!r}") from None
    pct = int(s[:-1])
    x = pct * total / 100
    return math.ceil(x) if round_up else math.floor(x)


def spec_replicas(obj: dict[str, Any]) -> int:
    r = (obj.get("spec") or {}).get("replicas")
    return 1 if r is None else int(r)


def is_rolling(d: dict[str, Any]) -> bool:
    return ((d.get("spec") or {}).get("strategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"


def resolve_fenceposts(max_surge: Any, max_unavailable: Any, desired: int) -> tuple[int, int]:
    surge = scaled_value(max_surge, desired, True)
    unavailable = scaled_value(max_unavailable, desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def _rolling_params(d: dict[str, Any]) -> tuple[Any, Any]:
    ru = ((d.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {}
    return ru.get("maxSurge", "25%"), ru.get("maxUnavailable", "25%")


def max_surge(d: dict[str, Any]) -> int:
    if not is_rolling(d):
        return 0
    s, u = _rolling_params(d)
    return resolve_fenceposts(s, u, spec_replicas(d))[0]


def max_unavailable(d: dict[str, Any]) -> int:
    """upstream's MaxUnavailable: 0 unless RollingUpdate with replicas > 0; never more
    than replicas."""
    replicas = spec_replicas(d)
    if not is_rolling(d) or replicas == 0:
        return 0
    s, u = _rolling_params(d)
    return min(resolve_fenceposts(s, u, replicas)[1], replicas)


# --- replica set sums ----------------------------------------------------------------------
def rs_spec(rs: dict[str, Any] | None) -> int:
    return 0 if rs is None else spec_replicas(rs)


def _status(rs: dict[str, Any] | None, field: str) -> int:
    return 0 if rs is None else int((rs.get("status") or {}).get(field) or 0)


def replica_count(rss: list[dict[str, Any] | None]) -> int:
    return sum(rs_spec(rs) for rs in rss if rs is not None)


def actual_count(rss: list[dict[str, Any] | None]) -> int:
    return sum(_status(rs, "replicas") for rs in rss)


def ready_count(rss: list[dict[str, Any] | None]) -> int:
    return sum(_status(rs, "readyReplicas") for rs in rss)


def available_count(rss: list[dict[str, Any] | None]) -> int:
    return sum(_status(rs, "availableReplicas") for rs in rss)


def active(rss: list[dict[str, Any] | None]) -> list[dict[str, Any]]:
    return [rs for rs in rss if rs is not None and rs_spec(rs) > 0]


def new_rs_new_replicas(d: dict[str, Any], all_rss: list[dict[str, Any] | None], new_rs: dict[str, Any]) -> int:
    """upstream's NewRSNewReplicas: how far the new set may grow now."""
    if is_rolling(d):
        desired = spec_replicas(d)
        current = replica_count(all_rss)
        max_total = desired + max_surge(d)
        if current >= max_total:
            return rs_spec(new_rs)
        up = min(max_total - current, desired - rs_spec(new_rs))
        return rs_spec(new_rs) + up
    return spec_replicas(d)


# --- ordering ------------------------------------------------------------------------------
def _created(rs: dict[str, Any]) -> tuple[float, str]:
    m = rs.get("metadata") or {}
    return (parse_time(m.get("creationTimestamp")) or 0.0, m.get("name") or "")


def by_creation(rss: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """ReplicaSetsByCreationTimestamp: oldest first, ties by name."""
    return sorted(rss, key=_created)


def by_size_older(rss: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """ReplicaSetsBySizeOlder: larger first; ties: older first."""
    return sorted(rss, key=lambda r: (-rs_spec(r), _created(r)))


def by_size_newer(rss: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """ReplicaSetsBySizeNewer: larger first; ties: newer first."""
    return sorted(rss, key=lambda r: (-rs_spec(r), -_created(r)[0], _invert(_created(r)[1])))


def _invert(s: str) -> tuple[int, ...]:
    return tuple(-ord(c) for c in s)


def revision(rs: dict[str, Any]) -> int:
    v = ((rs.get("metadata") or {}).get("annotations") or {}).get(REVISION)
    try:
        return int(v) if v is not None else 0
    except ValueError:
        return 0


def by_revision(rss: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """ReplicaSetsByRevision: lowest revision first; ties: older first."""
    return sorted(rss, key=lambda r: (revision(r), _created(r)))


# --- templates and hashes ------------------------------------------------------------------
def _without_hash(template: dict[str, Any]) -> dict[str, Any]:
    t = copy.deepcopy(template or {})
    labels = (t.get("metadata") or {}).get("labels")
    if labels:
        labels.pop(POD_TEMPLATE_HASH, None)
        if not labels:
            t["metadata"].pop("labels")
    if "metadata" in t and not t["metadata"]:
        t.pop("metadata")
    return t


def equal_ignore_hash(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """upstream's EqualIgnoreHash: the templates are equal apart from the
    pod-template-hash label."""
    return _without_hash(a) == _without_hash(b)


def compute_hash(template: dict[str, Any], collision_count: int | None) -> str:
    """A stable hash of the template (kubeplane's ComputeHash): fnv-1a 32 over the
    template's canonical JSON (sorted keys) followed by the collision count's decimal
    digits, written as upstream does: the decimal string of the 32-bit value, each digit
    mapped to rand.SafeEncodeString's alphabet (no vowels, so never a word). Upstream
    hashes Go's spew dump of the typed struct instead, so the value differs from
    upstream's for the same template; the form and its properties are the same."""
    data = orjson.dumps(_without_hash(template), option=orjson.OPT_SORT_KEYS)
    if collision_count:
        data += str(int(collision_count)).encode()
    h = 0x811C9DC5
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return "".join(SAFE_ALPHANUMS[ord(c) % len(SAFE_ALPHANUMS)] for c in str(h))


# --- conditions ----------------------------------------------------------------------------
def get_condition(status: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    for c in status.get("conditions") or ():
        if c.get("type") == ctype:
            return c
    return None


def new_condition(ctype: str, status: str, reason: str, message: str) -> dict[str, Any]:
    now = now_rfc3339()
    return {"type": ctype, "status": status, "lastUpdateTime": now, "lastTransitionTime": now,
            "reason": reason, "message": message}


def set_condition(status: dict[str, Any], cond: dict[str, Any]) -> None:
    """upstream's SetDeploymentCondition: no change when status and reason are equal;
    keep lastTransitionTime when only the reason changes."""
    cur = get_condition(status, cond["type"])
    if cur is not None and cur.get("status") == cond["status"] and cur.get("reason") == cond["reason"]:
        return
    if cur is not None and cur.get("status") == cond["status"]:
        cond = {**cond, "lastTransitionTime": cur.get("lastTransitionTime")}
    status["conditions"] = [c for c in status.get("conditions") or () if c.get("type") != cond["type"]] + [cond]


def remove_condition(status: dict[str, Any], ctype: str) -> None:
    status["conditions"] = [c for c in status.get("conditions") or () if c.get("type") != ctype]


def has_progress_deadline(d: dict[str, Any]) -> bool:
    v = (d.get("spec") or {}).get("progressDeadlineSeconds")
    return v is not None and int(v) != MAX_INT32


def deployment_complete(d: dict[str, Any], status: dict[str, Any]) -> bool:
    r = spec_replicas(d)
    return (int(status.get("updatedReplicas") or 0) == r and int(status.get("replicas") or 0) == r
            and int(status.get("availableReplicas") or 0) == r
            and int(status.get("observedGeneration") or 0) >= int((d.get("metadata") or {}).get("generation") or 0))


def deployment_progressing(d: dict[str, Any], new: dict[str, Any]) -> bool:
    old = d.get("status") or {}
    g = lambda s, k: int(s.get(k) or 0)   # noqa: E731
    old_old = g(old, "replicas") - g(old, "updatedReplicas")
    new_old = g(new, "replicas") - g(new, "updatedReplicas")
    return (g(new, "updatedReplicas") > g(old, "updatedReplicas") or g(new, "readyReplicas") > g(old, "readyReplicas")
            or g(new, "availableReplicas") > g(old, "availableReplicas") or new_old < old_old)


def deployment_timed_out(d: dict[str, Any], status: dict[str, Any], now: float) -> bool:
    if not has_progress_deadline(d):
        return False
    cond = get_condition(status, "Progressing")
    if cond is None or cond.get("reason") == NEW_RS_AVAILABLE:
        return False
    if cond.get("reason") == TIMED_OUT:
        return True
    since = parse_time(cond.get("lastUpdateTime"))
    return since is not None and since + int(d["spec"]["progressDeadlineSeconds"]) < now


# --- proportional scaling ------------------------------------------------------------------
def _round(x: float) -> int:
    """Go's math.Round: half away from zero."""
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


def max_replicas_annotation(rs: dict[str, Any]) -> int | None:
    v = ((rs.get("metadata") or {}).get("annotations") or {}).get(MAX_REPLICAS)
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


def desired_replicas_annotation(rs: dict[str, Any]) -> int | None:
    v = ((rs.get("metadata") or {}).get("annotations") or {}).get(DESIRED_REPLICAS)
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


def replica_set_fraction(rs: dict[str, Any], d: dict[str, Any]) -> int:
    if spec_replicas(d) == 0:
        return -rs_spec(rs)
    deployment_replicas = spec_replicas(d) + max_surge(d)
    annotated = max_replicas_annotation(rs)
    if annotated is None:
        annotated = int((d.get("status") or {}).get("replicas") or 0)
    if annotated == 0:          # upstream divides by zero into +Inf; the cap below bounds it the same way
        return deployment_replicas
    return _round(rs_spec(rs) * deployment_replicas / annotated) - rs_spec(rs)


def proportion(rs: dict[str, Any] | None, d: dict[str, Any], to_add: int, added: int) -> int:
    """upstream's GetProportion."""
    if rs is None or rs_spec(rs) == 0 or to_add == 0 or to_add == added:
        return 0
    frac = replica_set_fraction(rs, d)
    allowed = to_add - added
    return min(frac, allowed) if to_add > 0 else max(frac, allowed)


def proportional_sizes(d: dict[str, Any], rss: list[dict[str, Any]]) -> tuple[dict[str, int], str]:
    """The new size of every active set when a rolling Deployment is scaled in the
    middle of a rollout (upstream's scale()): the difference to replicas+maxSurge is
    spread in proportion to each set's size; the leftover goes to the first set in
    size order. Returns ({name: size}, "up"|"down"|"")."""
    total = replica_count(rss)
    allowed = spec_replicas(d) + max_surge(d) if spec_replicas(d) > 0 else 0
    to_add = allowed - total
    op = ""
    if to_add > 0:
        rss, op = by_size_newer(rss), "up"
    elif to_add < 0:
        rss, op = by_size_older(rss), "down"
    added = 0
    sizes: dict[str, int] = {}
    for rs in rss:
        name = rs["metadata"]["name"]
        if to_add != 0:
            p = proportion(rs, d, to_add, added)
            sizes[name] = rs_spec(rs) + p
            added += p
        else:
            sizes[name] = rs_spec(rs)
    if rss and to_add != 0:
        first = rss[0]["metadata"]["name"]
        sizes[first] = max(0, sizes[first] + to_add - added)
    return sizes, op


def is_saturated(d: dict[str, Any], rs: dict[str, Any] | None) -> bool:
    if rs is None:
        return False
    r = spec_replicas(d)
    return (desired_replicas_annotation(rs) == r and rs_spec(rs) == r
            and int((rs.get("status") or {}).get("availableReplicas") or 0) == r)


def parse_or_zero(text: str | None) -> float:
    return parse_time(text) or 0.0
