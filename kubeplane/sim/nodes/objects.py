"""What a hollow node writes to the API server: its Node, its Lease, its pods' statuses.

Shapes follow the kubelet (pkg/kubelet/kubelet_node_status.go, nodelease, status manager):
the Node is created with its status (capacity, allocatable, conditions, addresses, the
kubelet endpoint, nodeInfo); the Lease in `kube-node-lease` is named after the node, held
by it, 40 s long and owned by the Node; pod statuses carry the conditions a kubelet sets
(PodReadyToStartContainers, Initialized, ContainersReady, Ready), container states,
podIP/hostIP and startTime.

Every node has an ordinal `i`: its name is `<prefix>-<i>`, its kubelet listens on the
loopback address `base + i`, its pod CIDR is `10.(64 + i // 256).(i % 256).0/24` (room
for 49,152 nodes), its zone is `zone-(i mod zones)`. A restarted simulator therefore
gives a node the same address range and zone again.
"""
from __future__ import annotations

import ipaddress
import time
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

HOLLOW_LABEL = "kubeplane.io/hollow-node"        # "true" on every simulated Node
LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION = 40                              # seconds, the kubelet's nodeLeaseDurationSeconds
KUBELET_VERSION = "v1.33.0-kubeplane"
MAX_NODES = 192 * 256


def now_rfc3339(t: float | None = None) -> str:
    """Seconds precision, as metav1.Time serialises."""
    return datetime.fromtimestamp(time.time() if t is None else t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro(t: float | None = None) -> str:
    """Microseconds, as metav1.MicroTime (Lease.spec.renewTime) serialises."""
    return datetime.fromtimestamp(time.time() if t is None else t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class NodeShape:
    """What every hollow node of a simulator has (KWOK's default node: 32 CPUs, 256 GiB, 110 pods)."""
    cpu: str = "32"
    memory: str = "256Gi"
    pods: int = 110
    ephemeral_storage: str = "100Gi"
    zones: int = 3
    region: str = "region-1"
    extra_labels: dict[str, str] = field(default_factory=dict)


def pod_cidr(ordinal: int) -> ipaddress.IPv4Network:
    if not 0 <= ordinal < MAX_NODES:
        raise ValueError(f"node ordinal {ordinal} out of range (0..{MAX_NODES - 1})")
    return ipaddress.IPv4Network(f"10.{64 + ordinal // 256}.{ordinal % 256}.0/24")


def zone(ordinal: int, zones: int) -> str:
    return f"zone-{chr(ord('a') + ordinal % max(1, zones))}" if zones <= 26 else f"zone-{ordinal % zones}"


def node_conditions(ready: bool, t: float) -> list[dict[str, Any]]:
    """The four conditions a kubelet reports, heartbeat time `t`."""
    ts = now_rfc3339(t)

    def cond(type_: str, status: str, reason: str, message: str) -> dict[str, Any]:
        return {"type": type_, "status": status, "lastHeartbeatTime": ts, "lastTransitionTime": ts,
                "reason": reason, "message": message}

    return [
        cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        cond("Ready", "True", "KubeletReady", "kubelet is posting ready status (simulated by kubeplane)") if ready
        else cond("Ready", "False", "KubeletNotReady", "the simulator stopped this node"),
    ]


def node_object(name: str, ordinal: int, shape: NodeShape, host: str, port: int, t: float) -> dict[str, Any]:
    cidr = str(pod_cidr(ordinal))
    resources = {"cpu": shape.cpu, "memory": shape.memory, "pods": str(shape.pods),
                 "ephemeral-storage": shape.ephemeral_storage}
    labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
              "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64",
              "node.kubernetes.io/instance-type": "hollow", "topology.kubernetes.io/region": shape.region,
              "topology.kubernetes.io/zone": zone(ordinal, shape.zones), HOLLOW_LABEL: "true",
              **shape.extra_labels}
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels,
                     "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                                     "kubeplane.io/simulated": "a hollow node of kubeplane sim nodes"}},
        "spec": {"podCIDR": cidr, "podCIDRs": [cidr], "providerID": f"kubeplane://{name}"},
        "status": node_status(name, ordinal, shape, host, port, t, ready=True) | {
            "capacity": resources, "allocatable": dict(resources)},
    }


def node_status(name: str, ordinal: int, shape: NodeShape, host: str, port: int, t: float,
                ready: bool) -> dict[str, Any]:
    """The part of the status a heartbeat posts (capacity is written once, at registration)."""
    return {
        "conditions": node_conditions(ready, t),
        "addresses": [{"type": "InternalIP", "address": host}, {"type": "Hostname", "address": name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        "nodeInfo": {"machineID": f"{ordinal:032x}", "systemUUID": f"{ordinal:08x}-0000-0000-0000-000000000000",
                     "bootID": f"{ordinal:08x}-b007-0000-0000-000000000000", "kernelVersion": "6.1.0-kubeplane",
                     "osImage": "kubeplane hollow node", "containerRuntimeVersion": "kubeplane-sim://0.1",
                     "kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": KUBELET_VERSION,
                     "operatingSystem": "linux", "architecture": "amd64"},
    }


def lease_object(name: str, node_uid: str | None, t: float, resource_version: str | None = None) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name, "namespace": LEASE_NAMESPACE}
    if node_uid:
        md["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": name, "uid": node_uid}]
    if resource_version:
        md["resourceVersion"] = resource_version
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": md,
            "spec": {"holderIdentity": name, "leaseDurationSeconds": LEASE_DURATION, "renewTime": now_micro(t)}}


# --- pods -----------------------------------------------------------------------------------
def _cond(type_: str, status: str, t: str, reason: str | None = None) -> dict[str, Any]:
    c = {"type": type_, "status": status, "lastProbeTime": None, "lastTransitionTime": t}
    if reason:
        c["reason"] = reason
    return c


def container_id(uid: str, name: str, restarts: int) -> str:
    return f"kubeplane://{uid.replace('-', '')[:24]}{restarts:04d}{zlib.crc32(name.encode()):08x}"


def _image_id(image: str) -> str:
    return f"kubeplane-sim://{image}"


def running_status(pod: "PodView", node_ip: str, started: float, restarts: int = 0,
                   last_exit: tuple[int, float, float] | None = None) -> dict[str, Any]:
    """All containers running and ready, the pod Running."""
    ts = now_rfc3339(started)
    statuses = []
    for c in pod.containers:
        st: dict[str, Any] = {"name": c[0], "image": c[1], "imageID": _image_id(c[1]),
                              "containerID": container_id(pod.uid, c[0], restarts), "ready": True, "started": True,
                              "restartCount": restarts, "state": {"running": {"startedAt": ts}}}
        if last_exit is not None:
            st["lastState"] = {"terminated": _terminated(pod.uid, c[0], restarts - 1, *last_exit)}
        statuses.append(st)
    status: dict[str, Any] = {
        "phase": "Running",
        "conditions": [_cond("PodReadyToStartContainers", "True", ts), _cond("Initialized", "True", ts),
                       _cond("ContainersReady", "True", ts), _cond("Ready", "True", ts)],
        "hostIP": node_ip, "hostIPs": [{"ip": node_ip}], "podIP": pod.ip, "podIPs": [{"ip": pod.ip}],
        "startTime": now_rfc3339(pod.start_time or started), "containerStatuses": statuses,
    }
    if pod.init_containers:
        status["initContainerStatuses"] = [
            {"name": c[0], "image": c[1], "imageID": _image_id(c[1]), "ready": True, "started": False,
             "containerID": container_id(pod.uid, c[0], 0), "restartCount": 0,
             "state": {"terminated": _terminated(pod.uid, c[0], 0, 0, started, started)}}
            for c in pod.init_containers]
    return status


def _terminated(uid: str, name: str, restarts: int, code: int, started: float, finished: float) -> dict[str, Any]:
    return {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
            "startedAt": now_rfc3339(started), "finishedAt": now_rfc3339(finished),
            "containerID": container_id(uid, name, restarts)}


def exited_status(pod: "PodView", code: int, started: float, finished: float, restarts: int,
                  phase: str | None, backoff: bool) -> dict[str, Any]:
    """Every container exited with `code`. `phase` set: the pod is done (Succeeded/Failed,
    or the phase a deleted pod ends in); `backoff`: the containers wait in CrashLoopBackOff
    to be restarted."""
    ts = now_rfc3339(finished)
    reason = "PodCompleted" if phase in ("Succeeded", "Failed") else None
    statuses = []
    for c in pod.containers:
        term = _terminated(pod.uid, c[0], restarts, code, started, finished)
        st: dict[str, Any] = {"name": c[0], "image": c[1], "imageID": _image_id(c[1]), "ready": False,
                              "started": False, "restartCount": restarts,
                              "containerID": container_id(pod.uid, c[0], restarts)}
        if backoff:
            st["state"] = {"waiting": {"reason": "CrashLoopBackOff",
                                       "message": f"back-off restarting failed container {c[0]} in pod "
                                                  f"{pod.name}_{pod.namespace}({pod.uid})"}}
            st["lastState"] = {"terminated": term}
        else:
            st["state"] = {"terminated": term}
        statuses.append(st)
    status: dict[str, Any] = {
        "conditions": [_cond("ContainersReady", "False", ts, reason or "ContainersNotReady"),
                       _cond("Ready", "False", ts, reason or "ContainersNotReady")],
        "containerStatuses": statuses,
    }
    if phase is not None:
        status["phase"] = phase
        if phase in ("Succeeded", "Failed"):
            status["conditions"].insert(0, _cond("PodReadyToStartContainers", "False", ts))
    return status


@dataclass(slots=True)
class PodView:
    """The few fields of a Pod the simulator keeps (never the whole object)."""
    namespace: str
    name: str
    uid: str
    containers: tuple[tuple[str, str], ...]          # (name, image)
    init_containers: tuple[tuple[str, str], ...]
    restart_policy: str
    ip: str = ""
    start_time: float = 0.0

    @classmethod
    def of(cls, pod: dict[str, Any]) -> "PodView":
        md, spec = pod.get("metadata") or {}, pod.get("spec") or {}

        def names(key: str) -> tuple[tuple[str, str], ...]:
            return tuple((c.get("name", ""), c.get("image", "")) for c in spec.get(key) or [])

        return cls(md.get("namespace", ""), md.get("name", ""), md.get("uid", ""), names("containers"),
                   names("initContainers"), spec.get("restartPolicy") or "Always")
