"""Resource quantities and a pod's requests, as the scheduler counts them.

Quantities become integers: cpu in millicores (rounded up, as upstream's MilliValue),
every other resource in its base unit (bytes, counts; rounded up). A pod's request is
upstream's `resource.PodRequests`: the sum over its containers, raised to the largest
init container (restartable "sidecar" init containers add to everything after them),
plus `spec.overhead`. A container that sets a limit but no request requests its limit
(the API server's defaulting does the same; done here too so pods from any server count
alike). The "non-zero" request used by scoring gives a container without a cpu or
memory request 100m cpu and 200 MiB memory (upstream's DefaultMilliCPURequest and
DefaultMemoryRequest), so best-effort pods still spread.
"""
from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any

CPU, MEMORY, EPHEMERAL, PODS = "cpu", "memory", "ephemeral-storage", "pods"
DEFAULT_MILLI_CPU = 100
DEFAULT_MEMORY = 200 * 1024 * 1024

_SUFFIX = {"": 1, "m": Decimal("0.001"), "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15,
           "E": 10**18, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_QTY = re.compile(r"^([+-]?[0-9.]+)([eE][+-]?[0-9]+|[a-zA-Z]{0,2})$")


def parse_quantity(text: Any, milli: bool = False) -> int:
    """A Kubernetes quantity ("100m", "1.5Gi", "2e3", 4) as an integer, rounded up;
    `milli` gives thousandths (cpu). Unparsable input counts as 0: the API server
    validates quantities, so only a foreign server could send one."""
    if isinstance(text, (int, float)):
        value = Decimal(str(text))
    else:
        m = _QTY.match(str(text).strip())
        if not m:
            return 0
        try:
            num = Decimal(m.group(1))
            suf = m.group(2)
            if suf[:1] in ("e", "E"):
                value = num * (Decimal(10) ** int(suf[1:]))
            elif suf in _SUFFIX:
                value = num * Decimal(_SUFFIX[suf])
            else:
                return 0
        except (InvalidOperation, ValueError):
            return 0
    if milli:
        value *= 1000
    return int(math.ceil(value))


def _amount(name: str, q: Any) -> int:
    return parse_quantity(q, milli=(name == CPU))


def container_requests(c: dict[str, Any]) -> dict[str, int]:
    res = c.get("resources") or {}
    req = res.get("requests") or {}
    lim = res.get("limits") or {}
    out = {k: _amount(k, v) for k, v in lim.items()}
    out.update({k: _amount(k, v) for k, v in req.items()})
    return {k: v for k, v in out.items() if v}


def _add(into: dict[str, int], d: dict[str, int]) -> None:
    for k, v in d.items():
        into[k] = into.get(k, 0) + v


def _max(into: dict[str, int], d: dict[str, int]) -> None:
    for k, v in d.items():
        if v > into.get(k, 0):
            into[k] = v


def _pod_sum(spec: dict[str, Any], per_container) -> dict[str, int]:
    reqs: dict[str, int] = {}
    for c in spec.get("containers") or ():
        _add(reqs, per_container(c))
    sidecars: dict[str, int] = {}
    init_max: dict[str, int] = {}
    for c in spec.get("initContainers") or ():
        r = per_container(c)
        if c.get("restartPolicy") == "Always":
            _add(reqs, r)
            _add(sidecars, r)
            eff = dict(sidecars)
        else:
            eff = dict(r)
            _add(eff, sidecars)
        _max(init_max, eff)
    _max(reqs, init_max)
    overhead = spec.get("overhead") or {}
    _add(reqs, {k: _amount(k, v) for k, v in overhead.items()})
    return reqs


def pod_requests(pod: dict[str, Any]) -> dict[str, int]:
    """The pod's effective request per resource name (zeros left out)."""
    return {k: v for k, v in _pod_sum(pod.get("spec") or {}, container_requests).items() if v}


def _non_zero(c: dict[str, Any]) -> dict[str, int]:
    r = container_requests(c)
    return {CPU: r.get(CPU) or DEFAULT_MILLI_CPU, MEMORY: r.get(MEMORY) or DEFAULT_MEMORY}


def pod_non_zero_requests(pod: dict[str, Any]) -> tuple[int, int]:
    """(milli-cpu, memory) with upstream's defaults for containers that request none."""
    r = _pod_sum(pod.get("spec") or {}, _non_zero)
    return r.get(CPU, 0), r.get(MEMORY, 0)


def node_allocatable(node: dict[str, Any]) -> dict[str, int]:
    """status.allocatable (else status.capacity) as integers."""
    st = node.get("status") or {}
    alloc = st.get("allocatable") or st.get("capacity") or {}
    return {k: _amount(k, v) for k, v in alloc.items()}
