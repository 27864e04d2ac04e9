"""What the Endpoints and EndpointSlice controllers share (upstream's endpoint utils):
which pods back a Service, their readiness, and a Service port's target on a pod.

A pod is an endpoint when it matches the selector, has an IP (status.podIPs or podIP)
and is not Succeeded/Failed. Its conditions, as upstream: ready = the Ready condition
(or the Service's publishNotReadyAddresses) and not terminating; serving = ready ignoring
termination; terminating = has a deletionTimestamp.
"""
from __future__ import annotations

from typing import Any

from .podutil import is_ready, md
from ..client.selectors import from_map, labels_of

LABEL_SERVICE_NAME = "kubernetes.io/service-name"
LABEL_MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY = "endpointslice-controller.k8s.io"


def service_matcher(svc: dict[str, Any]) -> Any:
    return from_map((svc.get("spec") or {}).get("selector"))


def wants_endpoints(svc: dict[str, Any]) -> bool:
    """Services with a selector, other than ExternalName, get endpoints."""
    spec = svc.get("spec") or {}
    return bool(spec.get("selector")) and spec.get("type") != "ExternalName"


def pod_ips(pod: dict[str, Any]) -> list[str]:
    st = pod.get("status") or {}
    ips = [p.get("ip") for p in st.get("podIPs") or () if p.get("ip")]
    if not ips and st.get("podIP"):
        ips = [st["podIP"]]
    return ips


def ip_family(ip: str) -> str:
    return "IPv6" if ":" in ip else "IPv4"


def candidate(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed") and bool(pod_ips(pod))


def conditions(pod: dict[str, Any], publish_not_ready: bool) -> dict[str, bool]:
    terminating = bool(md(pod).get("deletionTimestamp"))
    serving = publish_not_ready or is_ready(pod)
    return {"ready": serving and not terminating, "serving": serving, "terminating": terminating}


def target_port(svc_port: dict[str, Any], pod: dict[str, Any]) -> int | None:
    """upstream's podutil.FindPort: a number as is; a name looked up among the pod's
    container ports of the same protocol (None: this pod does not serve the port)."""
    tp = svc_port.get("targetPort", svc_port.get("port"))
    if isinstance(tp, int):
        return tp
    if isinstance(tp, str) and tp.isdigit():
        return int(tp)
    proto = svc_port.get("protocol") or "TCP"
    for c in (pod.get("spec") or {}).get("containers") or ():
        for p in c.get("ports") or ():
            if p.get("name") == tp and (p.get("protocol") or "TCP") == proto:
                return int(p.get("containerPort"))
    return None


def pod_ports(svc: dict[str, Any], pod: dict[str, Any]) -> tuple[tuple[str, str, int, str | None], ...]:
    """The (name, protocol, port, appProtocol) this pod serves for the Service's ports,
    sorted; ports whose target cannot be resolved on the pod are left out."""
    out = []
    for sp in (svc.get("spec") or {}).get("ports") or ():
        port = target_port(sp, pod)
        if port is None:
            continue
        out.append((sp.get("name") or "", sp.get("protocol") or "TCP", port, sp.get("appProtocol")))
    return tuple(sorted(out, key=lambda t: (t[0], t[1], t[2])))


def matching_pods(svc: dict[str, Any], pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    m = service_matcher(svc)
    return [p for p in pods if m(labels_of(p)) and candidate(p)]


def target_ref(pod: dict[str, Any]) -> dict[str, Any]:
    m = md(pod)
    return {"kind": "Pod", "namespace": m.get("namespace"), "name": m.get("name"), "uid": m.get("uid")}
