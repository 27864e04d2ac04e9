"""Server-side Table output (meta.k8s.io/v1 Table), what `kubectl get` asks for with
`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`.

Columns and cells follow kube-apiserver 1.28 (pkg/printers/internalversion/printers.go,
which the server always runs with Wide=true, so priority-1 columns are filled too);
resources without a printer there (Roles, ClusterRoles, LimitRanges, CRDs, ...) get
upstream's default convertor: "Name" and "Created At" (RFC 3339). Custom resources get
the CRD version's additionalPrinterColumns after "Name", or "Age" when it has none
(apiextensions-apiserver's tableconvertor and its serveDefaultColumnsIfEmpty).

Invariants: every row has exactly one cell per column definition; building a row never
raises on a malformed object (missing or mistyped fields read as empty); `now` is Unix
seconds and only feeds ages/durations, so a table is a pure function of its inputs.
"""
from __future__ import annotations

import datetime as _dt
import functools
import math
import time
from decimal import Decimal
from typing import Any, Callable

import orjson

from kubeplane.apiserver.machinery import jsonpath
from kubeplane.apiserver.machinery.errors import bad_request
from kubeplane.apiserver.registry.resources import ResourceInfo
from kubeplane.apiserver.registry.selectors import LabelSelector

TABLE_API_VERSION = "meta.k8s.io/v1"
INCLUDE_NONE, INCLUDE_METADATA, INCLUDE_OBJECT = "None", "Metadata", "Object"

Row = dict[str, Any]
RowFn = Callable[[dict[str, Any], float], "tuple[list[Any], list[dict[str, str]] | None]"]

# --- helpers -------------------------------------------------------------------------


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _s(v: Any) -> str:
    return v if isinstance(v, str) else "" if v is None else str(v)


def _i(v: Any, default: int = 0) -> int:
    if isinstance(v, bool):
        return default
    if isinstance(v, int):
        return v
    if isinstance(v, float) and math.isfinite(v):
        return int(v)
    return default


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration ("5s", "2m30s", "10m", "3h",
    "2d5h", "3y"); more than a second in the future is "<invalid>"."""
    ns = int(round(seconds * 1e9))
    secs = -((-ns) // 10**9) if ns < 0 else ns // 10**9
    if secs < -1:
        return "<invalid>"
    if secs < 0:
        return "0s"
    if secs < 120:
        return f"{secs}s"
    minutes = ns // (60 * 10**9)
    if minutes < 10:
        s = secs % 60
        return f"{minutes}m" if s == 0 else f"{minutes}m{s}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = ns // (3600 * 10**9)
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if dy == 0 else f"{hours // 24 // 365}y{dy}d"
    return f"{hours // 24 // 365}y"


@functools.lru_cache(maxsize=16384)
def parse_time(value: str) -> float | None:
    """RFC 3339 (metav1.Time / MicroTime) to Unix seconds; None when unparsable."""
    try:
        t = _dt.datetime.fromisoformat(value)
    except (ValueError, TypeError):
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.timezone.utc)
    return t.timestamp()


def _ts(v: Any) -> float | None:
    return parse_time(v) if isinstance(v, str) and v else None


def since(value: Any, now: float) -> str:
    """upstream translateTimestampSince: "<unknown>" for a zero (absent) time."""
    t = _ts(value)
    return "<unknown>" if t is None else human_duration(now - t)


def format_labels(labels: Any) -> str:
    """labels.FormatLabels: sorted k=v joined by ',', "<none>" when empty."""
    d = _d(labels)
    if not d:
        return "<none>"
    return ",".join(f"{k}={_s(d[k])}" for k in sorted(d))


def format_label_selector(sel: Any) -> str:
    """metav1.FormatLabelSelector: "<error>" when invalid, "<none>" when empty."""
    try:
        s = str(LabelSelector.from_dict(sel if isinstance(sel, dict) or sel is None else {}))
    except Exception:  # APIError: an invalid stored selector
        return "<error>"
    return s or "<none>"


def _containers(spec: dict[str, Any]) -> tuple[str, str]:
    cs = [c for c in _l(spec.get("containers")) if isinstance(c, dict)]
    return ",".join(_s(c.get("name")) for c in cs), ",".join(_s(c.get("image")) for c in cs)


def _go_float(f: float) -> str:
    """Go's %v for a float64 (shortest digits, exponent form outside [1e-4, 1e6))."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "-0" if math.copysign(1, f) < 0 else "0"
    sign, digits, exp = Decimal(repr(f)).as_tuple()
    ds = list(digits)
    while len(ds) > 1 and ds[-1] == 0:
        ds.pop()
        exp += 1  # type: ignore[operator]
    nd, dp = len(ds), len(ds) + exp  # type: ignore[operator]
    x = dp - 1
    text = "".join(map(str, ds))
    neg = "-" if sign else ""
    if x < -4 or x >= 6:
        mant = text[0] + ("." + text[1:] if nd > 1 else "")
        return f"{neg}{mant}e{'-' if x < 0 else '+'}{abs(x):02d}"
    if dp <= 0:
        return f"{neg}0.{'0' * -dp}{text}"
    if dp >= nd:
        return neg + text + "0" * (dp - nd)
    return f"{neg}{text[:dp]}.{text[dp:]}"


def _go_text(v: Any) -> str:
    """How client-go's jsonpath prints one value (maps and lists as JSON)."""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _go_float(v)
    return orjson.dumps(v, option=orjson.OPT_SORT_KEYS).decode()


# --- column definitions -------------------------------------------------------------

_DEF_PREFIX = {
    "meta": "io.k8s.apimachinery.pkg.apis.meta.v1.", "core": "io.k8s.api.core.v1.",
    "apps": "io.k8s.api.apps.v1.", "batch": "io.k8s.api.batch.v1.",
    "coord": "io.k8s.api.coordination.v1.", "discovery": "io.k8s.api.discovery.v1.",
    "rbac": "io.k8s.api.rbac.v1.", "autoscaling": "io.k8s.api.autoscaling.v2.",
    "policy": "io.k8s.api.policy.v1.", "networking": "io.k8s.api.networking.v1.",
    "storage": "io.k8s.api.storage.v1.", "scheduling": "io.k8s.api.scheduling.v1.", "node": "io.k8s.api.node.v1.",
    "admission": "io.k8s.api.admissionregistration.v1.",
}


@functools.lru_cache(maxsize=None)
def _doc(ref: str) -> str:
    """Description of "<alias>.<Type>.<field>" from the built-in schema definitions
    (upstream uses the same doc comments through SwaggerDoc())."""
    alias, typ, field = ref.split(".", 2)
    try:
        from kubeplane.apiserver.registry.schema.defs import definitions
        prop = definitions()[_DEF_PREFIX[alias] + typ]["properties"][field]
        return _s(prop.get("description"))
    except Exception:  # schema package unavailable or renamed: descriptions are cosmetic
        return ""


_NAME = ("Name", "string", "doc:meta.ObjectMeta.name", 0, "name")
_AGE = ("Age", "string", "doc:meta.ObjectMeta.creationTimestamp", 0, "")
_CONTAINERS = ("Containers", "string", "Names of each container in the template.", 1, "")
_IMAGES = ("Images", "string", "Images referenced by each container in the template.", 1, "")


def _col(name: str, type_: str, desc: str, priority: int = 0, fmt: str = "") -> tuple:
    return (name, type_, desc, priority, fmt)


def _column(spec: tuple) -> dict[str, Any]:
    name, type_, desc, priority, fmt = spec
    if desc.startswith("doc:"):
        desc = _doc(desc[4:])
    return {"name": name, "type": type_, "format": fmt, "description": desc, "priority": priority}


# --- row printers (one per resource) -------------------------------------------------

_POD_SUCCEEDED = [{"type": "Completed", "status": "True", "reason": "Succeeded",
                   "message": "The pod has completed successfully."}]
_POD_FAILED = [{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}]


def _pod(obj: dict[str, Any], now: float) -> tuple[list[Any], list[dict[str, str]] | None]:
    meta, spec, status = _d(obj.get("metadata")), _d(obj.get("spec")), _d(obj.get("status"))
    restarts = 0
    total = len(_l(spec.get("containers")))
    ready = 0
    last_restart: float | None = None
    phase = _s(status.get("phase"))
    reason = _s(status.get("reason")) or phase
    for cond in _l(status.get("conditions")):
        cond = _d(cond)
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"
    conditions = _POD_SUCCEEDED if phase == "Succeeded" else _POD_FAILED if phase == "Failed" else None

    def note_restart(cs: dict[str, Any]) -> None:
        nonlocal last_restart
        t = _ts(_d(_d(cs.get("lastState")).get("terminated")).get("finishedAt"))
        if t is not None and (last_restart is None or t > last_restart):
            last_restart = t

    initializing = False
    n_init = len(_l(spec.get("initContainers")))
    for i, cs in enumerate(_l(status.get("initContainerStatuses"))):
        cs = _d(cs)
        restarts += _i(cs.get("restartCount"))
        note_restart(cs)
        state = _d(cs.get("state"))
        term, wait = state.get("terminated"), state.get("waiting")
        if isinstance(term, dict) and _i(term.get("exitCode")) == 0:
            continue
        if isinstance(term, dict):
            if not term.get("reason"):
                sig = _i(term.get("signal"))
                reason = f"Init:Signal:{sig}" if sig else f"Init:ExitCode:{_i(term.get('exitCode'))}"
            else:
                reason = "Init:" + _s(term.get("reason"))
        elif isinstance(wait, dict) and wait.get("reason") and wait.get("reason") != "PodInitializing":
            reason = "Init:" + _s(wait.get("reason"))
        else:
            reason = f"Init:{i}/{n_init}"
        initializing = True
        break
    if not initializing:
        restarts = 0
        has_running = False
        for cs in reversed(_l(status.get("containerStatuses"))):
            cs = _d(cs)
            restarts += _i(cs.get("restartCount"))
            note_restart(cs)
            state = _d(cs.get("state"))
            term, wait = state.get("terminated"), state.get("waiting")
            if isinstance(wait, dict) and wait.get("reason"):
                reason = _s(wait.get("reason"))
            elif isinstance(term, dict) and term.get("reason"):
                reason = _s(term.get("reason"))
            elif isinstance(term, dict):
                sig = _i(term.get("signal"))
                reason = f"Signal:{sig}" if sig else f"ExitCode:{_i(term.get('exitCode'))}"
            elif cs.get("ready") is True and isinstance(state.get("running"), dict):
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            pod_ready = any(_d(c).get("type") == "Ready" and _d(c).get("status") == "True"
                            for c in _l(status.get("conditions")))
            reason = "Running" if pod_ready else "NotReady"
    if meta.get("deletionTimestamp"):
        reason = "Unknown" if status.get("reason") == "NodeLost" else "Terminating"
    restarts_cell = str(restarts)
    if last_restart is not None:
        restarts_cell = f"{restarts} ({human_duration(now - last_restart)} ago)"

    ips = _l(status.get("podIPs"))
    pod_ip = _s(_d(ips[0]).get("ip")) if ips else _s(status.get("podIP"))
    gates = _l(spec.get("readinessGates"))
    gates_cell = "<none>"
    if gates:
        conds = {_d(c).get("type"): _d(c).get("status") for c in reversed(_l(status.get("conditions")))}
        true = sum(1 for g in gates if conds.get(_d(g).get("conditionType")) == "True")
        gates_cell = f"{true}/{len(gates)}"
    return ([_s(meta.get("name")), f"{ready}/{total}", reason, restarts_cell,
             since(meta.get("creationTimestamp"), now), pod_ip or "<none>",
             _s(spec.get("nodeName")) or "<none>", _s(status.get("nominatedNodeName")) or "<none>",
             gates_cell], conditions)


def _deployment(obj: dict[str, Any], now: float) -> tuple[list[Any], None]:
    meta, spec, status = _d(obj.get("metadata")), _d(obj.get("spec")), _d(obj.get("status"))
    try:
        selector = str(LabelSelector.from_dict(spec.get("selector")))
    except Exception:
        selector = "<invalid>"
    names, images = _containers(_d(_d(spec.get("template")).get("spec")))
    return ([_s(meta.get("name")), f"{_i(status.get('readyReplicas'))}/{_i(spec.get('replicas'), 1)}",
             _i(status.get("updatedReplicas")), _i(status.get("availableReplicas")),
             since(meta.get("creationTimestamp"), now), names, images, selector], None)


def _replicaset(obj: dict[str, Any], now: float) -> tuple[list[Any], None]:
    meta, spec, status = _d(obj.get("metadata")), _d(obj.get("spec")), _d(obj.get("status"))
    names, images = _containers(_d(_d(spec.get("template")).get("spec")))
    return ([_s(meta.get("name")), _i(spec.get("replicas"), 1), _i(status.get("replicas")),
             _i(status.get("readyReplicas")), since(meta.get("creationTimestamp"), now), names, images,
             format_label_selector(spec.get("selector"))], None)


def _statefulset(obj: dict[str, Any], now: float) -> tuple[list[Any], None]:
    meta, spec, status = _d(obj.get("metadata")), _d(obj.get("spec")), _d(obj.get("status"))
    names, images = _containers(_d(_d(spec.get("template")).get("spec")))
    return ([_s(meta.get("name")), f"{_i(status.get('readyReplicas'))}/{_i(spec.get('replicas'), 1)}",
             since(meta.get("creationTimestamp"), now), names, images], None)


def _daemonset(obj: dict[str, Any], now: float) -> tuple[list[Any], None]:
    meta, spec, status = _d(obj.get("metadata")), _d(obj.get("spec")), _d(obj.get("status"))
    pod_spec = _d(_d(spec.get("template")).get("spec"))
    names, images = _containers(pod_spec)
    return ([_s(meta.get("name")), _i(status.get("desiredNumberScheduled")),
             _i(status.get("currentNumberScheduled")), _i(status.get("numberReady")),
             _i(status.get("updatedNumberScheduled")), _i(status.get("numberAvailable")),
             format_labels(pod_spec.get("nodeSelector")), since(meta.get("creationTimestamp"), now),
             names, images, format_label_selector(spec.get("selector"))], None)


def _service_external_ip(spec: dict[str, Any], status: dict[str, Any]) -> str:
    svc_type = _s(spec.get("type")) or "ClusterIP"
    external = [_s(x) for x in _l(spec.get("externalIPs"))]
    if svc_type in ("ClusterIP", "NodePort"):
        return ",".join(external) if external else "<none>"
    if svc_type == "LoadBalancer":
        seen: set[str] = set()
        for ing in _l(_d(status.get("loadBalancer")).get("ingress")):
            ing = _d(ing)
            if ing.get("ip"):
                seen.add(_s(ing.get("ip")))
            elif ing.get("hostname"):
                seen.add(_s(ing.get("hostname")))
        lb = sorted(seen)  # wide output: not clipped
        if external:
            return ",".join(lb + external)
        return ",".join(lb) if lb else "<pending>"
    if svc_type == "ExternalName":
        return _s(spec.get("externalName"))
    return "<unknown>"


def _service(obj: dict[str, Any], now: float) -> tuple[list[Any], None]:
    meta, spec, status = _d(obj.get("metadata")), _d(obj.get("spec")), _d(obj.get("status"))
    ips = _l(spec.get("clusterIPs"))
    internal = _s(ips[0]) if ips else _s(spec.get("clusterIP"))
    ports = []
    for p in _l(spec.get("ports")):
        p = _d(p)
        proto = _s(p.get("protocol")) or "TCP"
        node_port = _i(p.get("nodePort"))
        ports.append(f"{_i(p.get('port'))}:{node_port}/{proto}" if node_port > 0
                     else f"{_i(p.get('port'))}/{proto}")
    return ([_s(meta.get("name")), _s(spec.get("type")) or "ClusterIP", internal or "<none>",
             _service_external_ip(spec, status), ",".join(ports) or "<none>",
             since(meta.get("creationTimestamp"), now), format_labels(spec.get("selector"))], None)


def _format_endpoints(subsets: list[Any]) -> str:
    if not subsets:
        return "<none>"
    out: list[str] = []
    more, count, limit = False, 0, 3
    for ss in subsets:
        ss = _d(ss)
        addrs = [_d(a) for a in _l(ss.get("addresses"))]
        ports = _l(ss.get("ports"))
        if not ports:
            count += len(addrs)
            for a in addrs:
                if len(out) == limit:
                    more = True
                    break
                out.append(_s(a.get("ip")))
            continue
        for port in ports:
            count += len(addrs)
            for a in addrs:
                if len(out) == limit:
                    more = True
                    break
                ip = _s(a.get("ip"))
                host = f"[{ip}]" if ":" in ip else ip
                out.append(f"{host}:{_i(_d(port).get('port'))}")
    ret = ",".join(out)
    return f"{ret} + {count - limit} more..." if more else ret


def _endpoints(obj: dict[str, Any], now: float) -> tuple[list[Any], None]:
    meta = _d(obj.get("metadata"))
    return ([_s(meta.get("name")), _format_endpoints(_l(obj.get("subsets"))),
             since(meta.get("creationTimestamp"), now)], None)


def _list_with_more(items: list[str], more: bool, count: int, limit: int) -> str:
    ret = ",".join(items)
    if more:
        return f"{ret} + {count - limit} more..."
    return ret or "<unset>"


def _endpointslice(obj: dict[str, Any], now: float) -> tuple[list[Any], None]:
    meta = _d(obj.get("metadata"))
    ports: list[str] = []
    more, count = False, 0
    for p in _l(obj.get("ports")):
        p = _d(p)
        if len(ports) < 3:
            if p.get("port") is not None:
                ports.append(str(_i(p.get("port"))))
            elif p.get("name") is not None:
                ports.append(_s(p.get("name")))
            else:
                ports.append("*")
        elif len(ports) == 3:
            more = True
        count += 1
    ports_cell = _list_with_more(ports, more, count, 3)
    addrs: list[str] = []
    more, count = False, 0
    for ep in _l(obj.get("endpoints")):
        for a in _l(_d(ep).get("addresses")):
            if len(addrs) < 3:
                addrs.append(_s(a))
            elif len(addrs) == 3:
                more = True
            count += 1
    return ([_s(meta.get("name")), _s(obj.get("addressType")), ports_cell,
             _list_with_more(addrs, more, count, 3), since(meta.get("creationTimestamp"), now)], None)


def _configmap(obj: dict[str, Any], now: float) -> tuple[list[Any], None]:
    meta = _d(obj.get("metadata"))
    return ([_s(meta.get("name")), len(_d(obj.get("data"))) + len(_d(obj.get("binaryData"))),
             since(meta.get("creationTimestamp"), now)], None)


def _secret(obj: dict[str, Any], now: float) -> tuple[list[Any], None]:
    meta = _d(obj.get("metadata"))
    keys = set(_d(obj.get("data"))) | set(_d(obj.get("stringData")))
    return ([_s(meta.get("name")), _s(obj.get("type")) or "Opaque", len(keys),
             since(meta.get("creationTimestamp"), now)], None)


def _serviceaccount(obj: dict[str, Any], now: float) -> tuple[list[Any], None]:
    meta = _d(obj.get("metadata"))
    return ([_s(meta.get("name")), len(_l(obj.get("secrets"))), since(meta.get("creationTimestamp"), now)],
            None)


def _namespace(obj: dict[str, Any], now: float) -> tuple[list[Any], None]:
    meta = _d(obj.get("metadata"))
    return ([_s(meta.get("name")), _s(_d(obj.get("status")).get("phase")),
             since(meta.get("creationTimestamp"), now)], None)


def _node(obj: dict[str, Any], now: float) -> tuple[list[Any], None]:
    meta, spec, status = _d(obj.get("metadata")), _d(obj.get("spec")), _d(obj.get("status"))
    states = []
    for cond in _l(status.get("conditions")):
        cond = _d(cond)
        if cond.get("type") == "Ready":
            states = ["Ready" if cond.get("status") == "True" else "NotReady"]
    if not states:
        states = ["Unknown"]
    if spec.get("unschedulable") is True:
        states.append("SchedulingDisabled")
    roles: set[str] = set()
    for k, v in _d(meta.get("labels")).items():
        if k.startswith("node-role.kubernetes.io/") and len(k) > len("node-role.kubernetes.io/"):
            roles.add(k[len("node-role.kubernetes.io/"):])
        elif k == "kubernetes.io/role" and v:
            roles.add(_s(v))
    info = _d(status.get("nodeInfo"))

    def address(kind: str) -> str:
        for a in _l(status.get("addresses")):
            if _d(a).get("type") == kind:
                return _s(_d(a).get("address"))
        return "<none>"
    return ([_s(meta.get("name")), ",".join(states), ",".join(sorted(roles)) or "<none>",
             since(meta.get("creationTimestamp"), now), _s(info.get("kubeletVersion")),
             address("InternalIP"), address("ExternalIP"), _s(info.get("osImage")) or "<unknown>",
             _s(info.get("kernelVersion")) or "<unknown>",
             _s(info.get("containerRuntimeVersion")) or "<unknown>"], None)


def _event(obj: dict[str, Any], now: float, new_api: bool = False) -> tuple[list[Any], None]:
    """Core v1 Events; events.k8s.io/v1 ones (new_api) read their renamed fields."""
    meta = _d(obj.get("metadata"))
    if new_api:
        ref, message = _d(obj.get("regarding")), _s(obj.get("note"))
        first_ts, last_ts = obj.get("deprecatedFirstTimestamp"), obj.get("deprecatedLastTimestamp")
        count, source = _i(obj.get("deprecatedCount")), _d(obj.get("deprecatedSource"))
        controller = _s(obj.get("reportingController"))
    else:
        ref, message = _d(obj.get("involvedObject")), _s(obj.get("message"))
        first_ts, last_ts = obj.get("firstTimestamp"), obj.get("lastTimestamp")
        count, source = _i(obj.get("count")), _d(obj.get("source"))
        controller = _s(obj.get("reportingComponent"))
    first = since(first_ts, now) if _ts(first_ts) is not None else since(obj.get("eventTime"), now)
    last = since(last_ts, now) if _ts(last_ts) is not None else first
    series = obj.get("series")
    if isinstance(series, dict):
        last = since(series.get("lastObservedTime"), now)
        count = _i(series.get("count"))
    elif count == 0:
        count = 1
    kind, name = _s(ref.get("kind")).lower(), _s(ref.get("name"))
    target = f"{kind}/{name}" if name else kind
    component = _s(source.get("component")) or controller
    instance = _s(source.get("host")) or _s(obj.get("reportingInstance"))
    source_cell = f"{component}, {instance}" if instance else component
    return ([last, _s(obj.get("type")), _s(obj.get("reason")), target, _s(ref.get("fieldPath")),
             source_cell, message.strip(), first, count, _s(meta.get("name"))], None)


_ACCESS_MODES = (("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"),
                 ("ReadWriteOncePod", "RWOP"))


def _pvc(obj: dict[str, Any], now: float) -> tuple[list[Any], None]:
    meta, spec, status = _d(obj.get("metadata")), _d(obj.get("spec")), _d(obj.get("status"))
    phase = "Terminating" if meta.get("deletionTimestamp") else _s(status.get("phase"))
    capacity = modes = ""
    if spec.get("volumeName"):
        have = set(_l(status.get("accessModes")))
        modes = ",".join(short for full, short in _ACCESS_MODES if full in have)
        capacity = _s(_d(status.get("capacity")).get("storage")) or "0"
    annotations = _d(meta.get("annotations"))
    if "volume.beta.kubernetes.io/storage-class" in annotations:
        klass = _s(annotations["volume.beta.kubernetes.io/storage-class"])
    else:
        klass = _s(spec.get("storageClassName"))
    volume_mode = _s(spec.get("volumeMode")) or "<unset>"
    return ([_s(meta.get("name")), phase, _s(spec.get("volumeName")), capacity, modes, klass,
             since(meta.get("creationTimestamp"), now), volume_mode], None)


def _job(obj: dict[str, Any], now: float) -> tuple[list[Any], None]:
    meta, spec, status = _d(obj.get("metadata")), _d(obj.get("spec")), _d(obj.get("status"))
    succeeded = _i(status.get("succeeded"))
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{_i(spec.get('completions'))}"
    else:
        parallelism = _i(spec.get("parallelism"))
        completions = f"{succeeded}/1 of {parallelism}" if parallelism > 1 else f"{succeeded}/1"
    start, end = _ts(status.get("startTime")), _ts(status.get("completionTime"))
    duration = "" if start is None else human_duration((now if end is None else end) - start)
    pod_spec = _d(_d(spec.get("template")).get("spec"))
    names, images = _containers(pod_spec)
    return ([_s(meta.get("name")), completions, duration, since(meta.get("creationTimestamp"), now),
             names, images, format_label_selector(spec.get("selector"))], None)


def _cronjob(obj: dict[str, Any], now: float) -> tuple[list[Any], None]:
    meta, spec, status = _d(obj.get("metadata")), _d(obj.get("spec")), _d(obj.get("status"))
    suspend = spec.get("suspend")
    suspend_cell = "<unset>" if not isinstance(suspend, bool) else "True" if suspend else "False"
    last = "<none>" if not status.get("lastScheduleTime") else since(status.get("lastScheduleTime"), now)
    job_spec = _d(_d(spec.get("jobTemplate")).get("spec"))
    names, images = _containers(_d(_d(job_spec.get("template")).get("spec")))
    return ([_s(meta.get("name")), _s(spec.get("schedule")), suspend_cell, len(_l(status.get("active"))),
             last, since(meta.get("creationTimestamp"), now), names, images,
             format_label_selector(job_spec.get("selector"))], None)


def _lease(obj: dict[str, Any], now: float) -> tuple[list[Any], None]:
    meta = _d(obj.get("metadata"))
    return ([_s(meta.get("name")), _s(_d(obj.get("spec")).get("holderIdentity")),
             since(meta.get("creationTimestamp"), now)], None)


def _binding(obj: dict[str, Any], now: float) -> tuple[list[Any], None]:
    meta, ref = _d(obj.get("metadata")), _d(obj.get("roleRef"))
    users, groups, sas = [], [], []
    for s in _l(obj.get("subjects")):
        s = _d(s)
        kind = s.get("kind")
        if kind == "ServiceAccount":
            sas.append(f"{_s(s.get('namespace'))}/{_s(s.get('name'))}")
        elif kind == "User":
            users.append(_s(s.get("name")))
        elif kind == "Group":
            groups.append(_s(s.get("name")))
    return ([_s(meta.get("name")), f"{_s(ref.get('kind'))}/{_s(ref.get('name'))}",
             since(meta.get("creationTimestamp"), now), ", ".join(users), ", ".join(groups),
             ", ".join(sas)], None)


def _resourcequota(obj: dict[str, Any], now: float) -> tuple[list[Any], None]:
    meta, status = _d(obj.get("metadata")), _d(obj.get("status"))
    hard, used = _d(status.get("hard")), _d(status.get("used"))
    requests, limits = [], []
    for res in sorted(hard):
        text = f"{res}: {_s(used.get(res)) or '0'}/{_s(hard[res])}"
        pieces = res.split(".")
        (limits if len(pieces) > 1 and pieces[0] == "limits" else requests).append(text)
    return ([_s(meta.get("name")), since(meta.get("creationTimestamp"), now), ", ".join(requests),
             ", ".join(limits)], None)


def _default(obj: dict[str, Any], now: float) -> tuple[list[Any], None]:
    meta = _d(obj.get("metadata"))
    t = _ts(meta.get("creationTimestamp"))
    created = "0001-01-01T00:00:00Z" if t is None else \
        _dt.datetime.fromtimestamp(int(t), _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return [_s(meta.get("name")), created], None


_DEFAULT_COLUMNS = [_NAME, _col("Created At", "date", "doc:meta.ObjectMeta.creationTimestamp")]

_PRINTERS: dict[tuple[str, str], tuple[list[tuple], RowFn]] = {
    ("", "pods"): ([
        _NAME,
        _col("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
        _col("Status", "string", "The aggregate status of the containers in this pod."),
        _col("Restarts", "string", "The number of times the containers in this pod have been restarted "
                                   "and when the last container in this pod has restarted."),
        _AGE,
        _col("IP", "string", "doc:core.PodStatus.podIP", 1),
        _col("Node", "string", "doc:core.PodSpec.nodeName", 1),
        _col("Nominated Node", "string", "doc:core.PodStatus.nominatedNodeName", 1),
        _col("Readiness Gates", "string", "doc:core.PodSpec.readinessGates", 1),
    ], _pod),
    ("apps", "deployments"): ([
        _NAME, _col("Ready", "string", "Number of the pod with ready state"),
        _col("Up-to-date", "string", "doc:apps.DeploymentStatus.updatedReplicas"),
        _col("Available", "string", "doc:apps.DeploymentStatus.availableReplicas"),
        _AGE, _CONTAINERS, _IMAGES, _col("Selector", "string", "doc:apps.DeploymentSpec.selector", 1),
    ], _deployment),
    ("apps", "replicasets"): ([
        _NAME, _col("Desired", "integer", "doc:apps.ReplicaSetSpec.replicas"),
        _col("Current", "integer", "doc:apps.ReplicaSetStatus.replicas"),
        _col("Ready", "integer", "doc:apps.ReplicaSetStatus.readyReplicas"),
        _AGE, _CONTAINERS, _IMAGES, _col("Selector", "string", "doc:apps.ReplicaSetSpec.selector", 1),
    ], _replicaset),
    ("apps", "statefulsets"): ([
        _NAME, _col("Ready", "string", "Number of the pod with ready state"), _AGE, _CONTAINERS, _IMAGES,
    ], _statefulset),
    ("apps", "daemonsets"): ([
        _NAME, _col("Desired", "integer", "doc:apps.DaemonSetStatus.desiredNumberScheduled"),
        _col("Current", "integer", "doc:apps.DaemonSetStatus.currentNumberScheduled"),
        _col("Ready", "integer", "doc:apps.DaemonSetStatus.numberReady"),
        _col("Up-to-date", "integer", "doc:apps.DaemonSetStatus.updatedNumberScheduled"),
        _col("Available", "integer", "doc:apps.DaemonSetStatus.numberAvailable"),
        _col("Node Selector", "string", "doc:core.PodSpec.nodeSelector"),
        _AGE, _CONTAINERS, _IMAGES, _col("Selector", "string", "doc:apps.DaemonSetSpec.selector", 1),
    ], _daemonset),
    ("", "services"): ([
        _NAME, _col("Type", "string", "doc:core.ServiceSpec.type"),
        _col("Cluster-IP", "string", "doc:core.ServiceSpec.clusterIP"),
        _col("External-IP", "string", "doc:core.ServiceSpec.externalIPs"),
        _col("Port(s)", "string", "doc:core.ServiceSpec.ports"),
        _AGE, _col("Selector", "string", "doc:core.ServiceSpec.selector", 1),
    ], _service),
    ("", "endpoints"): ([_NAME, _col("Endpoints", "string", "doc:core.Endpoints.subsets"), _AGE],
                        _endpoints),
    ("discovery.k8s.io", "endpointslices"): ([
        _NAME, _col("AddressType", "string", "doc:discovery.EndpointSlice.addressType"),
        _col("Ports", "string", "doc:discovery.EndpointSlice.ports"),
        _col("Endpoints", "string", "doc:discovery.EndpointSlice.endpoints"), _AGE,
    ], _endpointslice),
    ("", "configmaps"): ([_NAME, _col("Data", "string", "doc:core.ConfigMap.data"), _AGE], _configmap),
    ("", "secrets"): ([_NAME, _col("Type", "string", "doc:core.Secret.type"),
                       _col("Data", "string", "doc:core.Secret.data"), _AGE], _secret),
    ("", "serviceaccounts"): ([_NAME, _col("Secrets", "string", "doc:core.ServiceAccount.secrets"), _AGE],
                              _serviceaccount),
    ("", "namespaces"): ([_NAME, _col("Status", "string", "The status of the namespace"), _AGE], _namespace),
    ("", "nodes"): ([
        _NAME, _col("Status", "string", "The status of the node"),
        _col("Roles", "string", "The roles of the node"), _AGE,
        _col("Version", "string", "doc:core.NodeSystemInfo.kubeletVersion"),
        _col("Internal-IP", "string", "doc:core.NodeStatus.addresses", 1),
        _col("External-IP", "string", "doc:core.NodeStatus.addresses", 1),
        _col("OS-Image", "string", "doc:core.NodeSystemInfo.osImage", 1),
        _col("Kernel-Version", "string", "doc:core.NodeSystemInfo.kernelVersion", 1),
        _col("Container-Runtime", "string", "doc:core.NodeSystemInfo.containerRuntimeVersion", 1),
    ], _node),
    ("", "events"): ([
        _col("Last Seen", "string", "doc:core.Event.lastTimestamp"),
        _col("Type", "string", "doc:core.Event.type"),
        _col("Reason", "string", "doc:core.Event.reason"),
        _col("Object", "string", "doc:core.Event.involvedObject"),
        _col("Subobject", "string", "doc:core.ObjectReference.fieldPath", 1),
        _col("Source", "string", "doc:core.Event.source", 1),
        _col("Message", "string", "doc:core.Event.message"),
        _col("First Seen", "string", "doc:core.Event.firstTimestamp", 1),
        _col("Count", "string", "doc:core.Event.count", 1),
        _col("Name", "string", "doc:meta.ObjectMeta.name", 1, "name"),
    ], _event),
    ("", "persistentvolumeclaims"): ([
        _NAME, _col("Status", "string", "doc:core.PersistentVolumeClaimStatus.phase"),
        _col("Volume", "string", "doc:core.PersistentVolumeClaimSpec.volumeName"),
        _col("Capacity", "string", "doc:core.PersistentVolumeClaimStatus.capacity"),
        _col("Access Modes", "string", "doc:core.PersistentVolumeClaimStatus.accessModes"),
        _col("StorageClass", "string", "StorageClass of the pvc"), _AGE,
        _col("VolumeMode", "string", "doc:core.PersistentVolumeClaimSpec.volumeMode", 1),
    ], _pvc),
    ("batch", "jobs"): ([
        _NAME, _col("Completions", "string", "doc:batch.JobStatus.succeeded"),
        _col("Duration", "string", "Time required to complete the job."), _AGE, _CONTAINERS, _IMAGES,
        _col("Selector", "string", "doc:batch.JobSpec.selector", 1),
    ], _job),
    ("batch", "cronjobs"): ([
        _NAME, _col("Schedule", "string", "doc:batch.CronJobSpec.schedule"),
        _col("Suspend", "boolean", "doc:batch.CronJobSpec.suspend"),
        _col("Active", "integer", "doc:batch.CronJobStatus.active"),
        _col("Last Schedule", "string", "doc:batch.CronJobStatus.lastScheduleTime"),
        _AGE, _CONTAINERS, _IMAGES, _col("Selector", "string", "doc:batch.JobSpec.selector", 1),
    ], _cronjob),
    ("coordination.k8s.io", "leases"): ([_NAME, _col("Holder", "string", "doc:coord.LeaseSpec.holderIdentity"),
                                         _AGE], _lease),
    ("rbac.authorization.k8s.io", "rolebindings"): ([
        _NAME, _col("Role", "string", "doc:rbac.RoleBinding.roleRef"), _AGE,
        _col("Users", "string", "Users in the roleBinding", 1),
        _col("Groups", "string", "Groups in the roleBinding", 1),
        _col("ServiceAccounts", "string", "ServiceAccounts in the roleBinding", 1),
    ], _binding),
    ("rbac.authorization.k8s.io", "clusterrolebindings"): ([
        _NAME, _col("Role", "string", "doc:rbac.ClusterRoleBinding.roleRef"), _AGE,
        _col("Users", "string", "Users in the clusterRoleBinding", 1),
        _col("Groups", "string", "Groups in the clusterRoleBinding", 1),
        _col("ServiceAccounts", "string", "ServiceAccounts in the clusterRoleBinding", 1),
    ], _binding),
    ("", "resourcequotas"): ([
        _NAME, _AGE,
        _col("Request", "string", "Request represents a minimum amount of cpu/memory that a container "
                                  "may consume."),
        _col("Limit", "string", "Limits control the maximum amount of cpu/memory that a container may "
                                "use independent of contention on the node."),
    ], _resourcequota),
}
_PRINTERS[("events.k8s.io", "events")] = (_PRINTERS[("", "events")][0],
                                          lambda obj, now: _event(obj, now, new_api=True))

# --- printers of the cluster-infrastructure kinds (printers.go, same release) ---------------

def _pv(obj: dict[str, Any], now: float) -> tuple[list[Any], None]:
    meta, spec, status = _d(obj.get("metadata")), _d(obj.get("spec")), _d(obj.get("status"))
    claim = _d(spec.get("claimRef"))
    claim_cell = f"{_s(claim.get('namespace'))}/{_s(claim.get('name'))}" if claim else ""
    have = set(_l(spec.get("accessModes")))
    modes = ",".join(short for full, short in _ACCESS_MODES if full in have)
    annotations = _d(meta.get("annotations"))
    klass = _s(annotations.get("volume.beta.kubernetes.io/storage-class")) \
        if "volume.beta.kubernetes.io/storage-class" in annotations else _s(spec.get("storageClassName"))
    phase = "Terminating" if meta.get("deletionTimestamp") else _s(status.get("phase"))
    return ([_s(meta.get("name")), _s(_d(spec.get("capacity")).get("storage")), modes,
             _s(spec.get("persistentVolumeReclaimPolicy")), phase, claim_cell, klass, _s(status.get("reason")),
             since(meta.get("creationTimestamp"), now), _s(spec.get("volumeMode")) or "<unset>"], None)


def _rc(obj: dict[str, Any], now: float) -> tuple[list[Any], None]:
    meta, spec, status = _d(obj.get("metadata")), _d(obj.get("spec")), _d(obj.get("status"))
    names, images = _containers(_d(_d(spec.get("template")).get("spec")))
    sel = _d(spec.get("selector"))
    selector = ",".join(f"{k}={_s(sel[k])}" for k in sorted(sel))
    return ([_s(meta.get("name")), _i(spec.get("replicas"), 1), _i(status.get("replicas")),
             _i(status.get("readyReplicas")), since(meta.get("creationTimestamp"), now), names, images,
             selector], None)


def _podtemplate(obj: dict[str, Any], now: float) -> tuple[list[Any], None]:
    tmpl = _d(obj.get("template"))
    names, images = _containers(_d(tmpl.get("spec")))
    return ([_s(_d(obj.get("metadata")).get("name")), names, images,
             format_labels(_d(tmpl.get("metadata")).get("labels"))], None)


def _controllerrevision(obj: dict[str, Any], now: float) -> tuple[list[Any], None]:
    meta = _d(obj.get("metadata"))
    controller = "<none>"
    for ref in _l(meta.get("ownerReferences")):
        ref = _d(ref)
        if ref.get("controller") is True:
            group = _s(ref.get("apiVersion")).rpartition("/")[0]
            kind = f"{_s(ref.get('kind'))}.{group}" if group else _s(ref.get("kind"))
            controller = f"{kind.lower()}/{_s(ref.get('name'))}"
            break
    return ([_s(meta.get("name")), controller, _i(obj.get("revision")),
             since(meta.get("creationTimestamp"), now)], None)


def _hpa_metric(spec: dict[str, Any], status: dict[str, Any] | None) -> str:
    """One metric of formatHPAMetrics: current/target, "<unknown>" for a current not yet read."""
    kind = spec.get("type")
    key = {"Resource": "resource", "ContainerResource": "containerResource", "Pods": "pods",
           "Object": "object", "External": "external"}.get(_s(kind), "")
    target = _d(_d(spec.get(key)).get("target"))
    current = _d(_d(_d(status).get(key)).get("current")) if status else {}
    if target.get("averageUtilization") is not None:
        cur = f"{current['averageUtilization']}%" if current.get("averageUtilization") is not None else "<unknown>"
        return f"{cur}/{target['averageUtilization']}%"
    if target.get("averageValue") is not None:
        return f"{_s(current.get('averageValue')) or '<unknown>'}/{_s(target['averageValue'])}"
    if target.get("value") is not None:
        return f"{_s(current.get('value')) or '<unknown>'}/{_s(target['value'])}"
    return "<unknown type>"


def _hpa(obj: dict[str, Any], now: float) -> tuple[list[Any], None]:
    meta, spec, status = _d(obj.get("metadata")), _d(obj.get("spec")), _d(obj.get("status"))
    ref = _d(spec.get("scaleTargetRef"))
    metrics = [_d(m) for m in _l(spec.get("metrics"))]
    current = [_d(m) for m in _l(status.get("currentMetrics"))]
    cells = [_hpa_metric(m, current[i] if i < len(current) else None) for i, m in enumerate(metrics)]
    targets = "<none>" if not cells else ", ".join(cells[:3]) + (f" + {len(cells) - 3} more..." if len(cells) > 3
                                                                 else "")
    min_pods = _s(spec.get("minReplicas")) if spec.get("minReplicas") is not None else "<unset>"
    return ([_s(meta.get("name")), f"{_s(ref.get('kind'))}/{_s(ref.get('name'))}", targets, min_pods,
             _i(spec.get("maxReplicas")), _i(status.get("currentReplicas")),
             since(meta.get("creationTimestamp"), now)], None)


def _pdb(obj: dict[str, Any], now: float) -> tuple[list[Any], None]:
    meta, spec, status = _d(obj.get("metadata")), _d(obj.get("spec")), _d(obj.get("status"))
    lo, hi = spec.get("minAvailable"), spec.get("maxUnavailable")
    return ([_s(meta.get("name")), "N/A" if lo is None else _s(lo), "N/A" if hi is None else _s(hi),
             _i(status.get("disruptionsAllowed")), since(meta.get("creationTimestamp"), now)], None)


def _ingress(obj: dict[str, Any], now: float) -> tuple[list[Any], None]:
    meta, spec, status = _d(obj.get("metadata")), _d(obj.get("spec")), _d(obj.get("status"))
    hosts = [_s(_d(r).get("host")) or "*" for r in _l(spec.get("rules"))]
    hosts_cell = "*" if not hosts else ",".join(hosts[:3]) + (f" + {len(hosts) - 3} more..." if len(hosts) > 3
                                                              else "")
    addrs = [_s(_d(i).get("ip")) or _s(_d(i).get("hostname")) for i in _l(_d(status.get("loadBalancer")).get("ingress"))]
    return ([_s(meta.get("name")), _s(spec.get("ingressClassName")) or "<none>", hosts_cell, ",".join(addrs),
             "80, 443" if spec.get("tls") else "80", since(meta.get("creationTimestamp"), now)], None)


def _ingressclass(obj: dict[str, Any], now: float) -> tuple[list[Any], None]:
    meta, spec = _d(obj.get("metadata")), _d(obj.get("spec"))
    params = spec.get("parameters")
    cell = "<none>"
    if isinstance(params, dict):
        cell = _s(params.get("kind")) + (f".{_s(params['apiGroup'])}" if params.get("apiGroup") is not None else "") \
            + f"/{_s(params.get('name'))}"
    return ([_s(meta.get("name")), _s(spec.get("controller")), cell, since(meta.get("creationTimestamp"), now)],
            None)


def _networkpolicy(obj: dict[str, Any], now: float) -> tuple[list[Any], None]:
    meta = _d(obj.get("metadata"))
    return ([_s(meta.get("name")), format_label_selector(_d(obj.get("spec")).get("podSelector")),
             since(meta.get("creationTimestamp"), now)], None)


def _storageclass(obj: dict[str, Any], now: float) -> tuple[list[Any], None]:
    meta = _d(obj.get("metadata"))
    ann = _d(meta.get("annotations"))
    default = "true" in (_s(ann.get("storageclass.kubernetes.io/is-default-class")),
                         _s(ann.get("storageclass.beta.kubernetes.io/is-default-class")))
    name = _s(meta.get("name")) + (" (default)" if default else "")
    expand = obj.get("allowVolumeExpansion")
    return ([name, _s(obj.get("provisioner")), _s(obj.get("reclaimPolicy")) or "Delete",
             _s(obj.get("volumeBindingMode")) or "Immediate", expand is True,
             since(meta.get("creationTimestamp"), now)], None)


def _csidriver(obj: dict[str, Any], now: float) -> tuple[list[Any], None]:
    meta, spec = _d(obj.get("metadata")), _d(obj.get("spec"))
    audiences = [_s(_d(t).get("audience")) for t in _l(spec.get("tokenRequests"))]
    modes = ",".join(_s(m) for m in _l(spec.get("volumeLifecycleModes")))
    return ([_s(meta.get("name")), spec.get("attachRequired") is not False, spec.get("podInfoOnMount") is True,
             spec.get("storageCapacity") is True, ",".join(audiences) if audiences else "<unset>",
             spec.get("requiresRepublish") is True, modes or "<none>", since(meta.get("creationTimestamp"), now)],
            None)


def _priorityclass(obj: dict[str, Any], now: float) -> tuple[list[Any], None]:
    meta = _d(obj.get("metadata"))
    return ([_s(meta.get("name")), _i(obj.get("value")), obj.get("globalDefault") is True,
             since(meta.get("creationTimestamp"), now)], None)


def _runtimeclass(obj: dict[str, Any], now: float) -> tuple[list[Any], None]:
    meta = _d(obj.get("metadata"))
    return [_s(meta.get("name")), _s(obj.get("handler")), since(meta.get("creationTimestamp"), now)], None


def _webhooks(obj: dict[str, Any], now: float) -> tuple[list[Any], None]:
    meta = _d(obj.get("metadata"))
    return [_s(meta.get("name")), len(_l(obj.get("webhooks"))), since(meta.get("creationTimestamp"), now)], None


_WEBHOOK_COLUMNS = [_NAME, _col("Webhooks", "integer", "Webhooks indicates the number of webhooks in this "
                                                       "configuration"), _AGE]
_PRINTERS.update({
    ("", "persistentvolumes"): ([
        _NAME, _col("Capacity", "string", "doc:core.PersistentVolumeSpec.capacity"),
        _col("Access Modes", "string", "doc:core.PersistentVolumeSpec.accessModes"),
        _col("Reclaim Policy", "string", "doc:core.PersistentVolumeSpec.persistentVolumeReclaimPolicy"),
        _col("Status", "string", "doc:core.PersistentVolumeStatus.phase"),
        _col("Claim", "string", "doc:core.PersistentVolumeSpec.claimRef"),
        _col("StorageClass", "string", "StorageClass of the pv"),
        _col("Reason", "string", "doc:core.PersistentVolumeStatus.reason"), _AGE,
        _col("VolumeMode", "string", "doc:core.PersistentVolumeSpec.volumeMode", 1),
    ], _pv),
    ("", "replicationcontrollers"): ([
        _NAME, _col("Desired", "integer", "doc:core.ReplicationControllerSpec.replicas"),
        _col("Current", "integer", "doc:core.ReplicationControllerStatus.replicas"),
        _col("Ready", "integer", "doc:core.ReplicationControllerStatus.readyReplicas"),
        _AGE, _CONTAINERS, _IMAGES, _col("Selector", "string", "doc:core.ReplicationControllerSpec.selector", 1),
    ], _rc),
    ("", "podtemplates"): ([
        _NAME, _col("Containers", "string", "Names of each container in the template."),
        _col("Images", "string", "Images referenced by each container in the template."),
        _col("Pod Labels", "string", "The labels for the pod template."),
    ], _podtemplate),
    ("apps", "controllerrevisions"): ([
        _NAME, _col("Controller", "string", "Controller of the object"),
        _col("Revision", "string", "doc:apps.ControllerRevision.revision"), _AGE,
    ], _controllerrevision),
    ("autoscaling", "horizontalpodautoscalers"): ([
        _NAME, _col("Reference", "string", "doc:autoscaling.HorizontalPodAutoscalerSpec.scaleTargetRef"),
        _col("Targets", "string", "doc:autoscaling.HorizontalPodAutoscalerSpec.metrics"),
        _col("MinPods", "string", "doc:autoscaling.HorizontalPodAutoscalerSpec.minReplicas"),
        _col("MaxPods", "integer", "doc:autoscaling.HorizontalPodAutoscalerSpec.maxReplicas"),
        _col("Replicas", "string", "doc:autoscaling.HorizontalPodAutoscalerStatus.currentReplicas"), _AGE,
    ], _hpa),
    ("policy", "poddisruptionbudgets"): ([
        _NAME, _col("Min Available", "string", "doc:policy.PodDisruptionBudgetSpec.minAvailable"),
        _col("Max Unavailable", "string", "doc:policy.PodDisruptionBudgetSpec.maxUnavailable"),
        _col("Allowed Disruptions", "integer", "doc:policy.PodDisruptionBudgetStatus.disruptionsAllowed"), _AGE,
    ], _pdb),
    ("networking.k8s.io", "ingresses"): ([
        _NAME, _col("Class", "string", "doc:networking.IngressSpec.ingressClassName"),
        _col("Hosts", "string", "Hosts that incoming requests are matched against before the ingress rule"),
        _col("Address", "string", "Address is a list containing ingress points for the load-balancer"),
        _col("Ports", "string", "Ports of TLS configurations that open"), _AGE,
    ], _ingress),
    ("networking.k8s.io", "ingressclasses"): ([
        _NAME, _col("Controller", "string", "Controller that is responsible for handling this class"),
        _col("Parameters", "string", "A reference to a resource with additional parameters"), _AGE,
    ], _ingressclass),
    ("networking.k8s.io", "networkpolicies"): ([
        _NAME, _col("Pod-Selector", "string", "doc:networking.NetworkPolicySpec.podSelector"), _AGE,
    ], _networkpolicy),
    ("storage.k8s.io", "storageclasses"): ([
        _NAME, _col("Provisioner", "string", "Indicates the type of the provisioner."),
        _col("ReclaimPolicy", "string", "Indicates the type of the reclaim policy."),
        _col("VolumeBindingMode", "string", "Indicates how PersistentVolumeClaims should be bound."),
        _col("AllowVolumeExpansion", "string", "Indicates whether the storage class allow volume expand."), _AGE,
    ], _storageclass),
    ("storage.k8s.io", "csidrivers"): ([
        _NAME, _col("AttachRequired", "boolean", "doc:storage.CSIDriverSpec.attachRequired"),
        _col("PodInfoOnMount", "boolean", "doc:storage.CSIDriverSpec.podInfoOnMount"),
        _col("StorageCapacity", "boolean", "doc:storage.CSIDriverSpec.storageCapacity"),
        _col("TokenRequests", "string", "doc:storage.CSIDriverSpec.tokenRequests"),
        _col("RequiresRepublish", "boolean", "doc:storage.CSIDriverSpec.requiresRepublish"),
        _col("Modes", "string", "doc:storage.CSIDriverSpec.volumeLifecycleModes"), _AGE,
    ], _csidriver),
    ("scheduling.k8s.io", "priorityclasses"): ([
        _NAME, _col("Value", "integer", "doc:scheduling.PriorityClass.value"),
        _col("Global-Default", "boolean", "doc:scheduling.PriorityClass.globalDefault"), _AGE,
    ], _priorityclass),
    ("node.k8s.io", "runtimeclasses"): ([
        _NAME, _col("Handler", "string", "doc:node.RuntimeClass.handler"), _AGE,
    ], _runtimeclass),
    ("admissionregistration.k8s.io", "validatingwebhookconfigurations"): (_WEBHOOK_COLUMNS, _webhooks),
    ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"): (_WEBHOOK_COLUMNS, _webhooks),
})


# --- custom resources ---------------------------------------------------------------

def _crd_columns(resource: ResourceInfo) -> list[dict[str, Any]]:
    """additionalPrinterColumns of the served version; "Age" when there are none."""
    cols = [c for c in _l((resource.crd_version or {}).get("additionalPrinterColumns")) if isinstance(c, dict)]
    if not cols:
        cols = [{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp",
                 "description": _doc("meta.ObjectMeta.creationTimestamp")}]
    return cols


def _crd_table(resource: ResourceInfo) -> tuple[list[dict[str, Any]], RowFn]:
    columns = [_column(_NAME)]
    getters: list[tuple[str, Callable[[Any], list[Any]] | None]] = []
    for c in _crd_columns(resource):
        path = _s(c.get("jsonPath"))
        try:
            getter: Callable[[Any], list[Any]] | None = jsonpath.compile(path)
        except ValueError:
            getter = None  # upstream falls back to a broken column; every cell is null
        desc = _s(c.get("description")) or f"Custom resource definition column (in JSONPath format): {path}"
        type_ = _s(c.get("type"))
        columns.append({"name": _s(c.get("name")), "type": type_, "format": _s(c.get("format")),
                        "description": desc, "priority": _i(c.get("priority"))})
        getters.append((type_, getter))

    def row(obj: dict[str, Any], now: float) -> tuple[list[Any], None]:
        cells: list[Any] = [_s(_d(obj.get("metadata")).get("name"))]
        for type_, getter in getters:
            found = getter(obj) if getter is not None else []
            cells.append(_crd_cell(type_, found[0], now) if found else None)
        return cells, None
    return columns, row


def _crd_cell(type_: str, value: Any, now: float) -> Any:
    """apiextensions tableconvertor: strings printed as jsonpath prints them, other
    types converted or null when the value does not fit."""
    if value is None:
        return None
    if type_ == "string":
        return _go_text(value)
    if type_ == "integer":
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value
        if isinstance(value, float) and math.isfinite(value):
            return int(value)
        return None
    if type_ == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return float(value)
    if type_ == "boolean":
        return value if isinstance(value, bool) else None
    if type_ == "date":
        if not isinstance(value, str):
            return None
        t = parse_time(value)
        return "<invalid>" if t is None else human_duration(now - t)
    return None


# --- public API -----------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _builtin_columns(key: tuple[str, str]) -> tuple[dict[str, Any], ...]:
    specs = _PRINTERS[key][0] if key in _PRINTERS else _DEFAULT_COLUMNS
    return tuple(_column(s) for s in specs)


def _printer(resource: ResourceInfo) -> tuple[list[dict[str, Any]], RowFn]:
    if resource.crd is not None:
        return _crd_table(resource)
    key = (resource.group, resource.plural)
    cols = [dict(c) for c in _builtin_columns(key)]
    return cols, (_PRINTERS[key][1] if key in _PRINTERS else _default)


def table_columns(resource: ResourceInfo) -> list[dict[str, Any]]:
    """columnDefinitions for `resource`: [{name, type, format, description, priority}]."""
    return _printer(resource)[0]


def _partial(obj: dict[str, Any], include_object: str, api_version: str) -> Any:
    if include_object in (INCLUDE_METADATA, ""):
        return {"kind": "PartialObjectMetadata", "apiVersion": api_version,
                "metadata": _d(obj.get("metadata"))}
    if include_object == INCLUDE_OBJECT:
        return obj
    if include_object == INCLUDE_NONE:
        return None
    raise bad_request(f'unrecognized includeObject value: "{include_object}"')


def check_include_object(include_object: str | None) -> str:
    """Validate the `includeObject` table option ("" means Metadata)."""
    value = include_object or INCLUDE_METADATA
    if value not in (INCLUDE_NONE, INCLUDE_METADATA, INCLUDE_OBJECT):
        raise bad_request(f'unrecognized includeObject value: "{include_object}"')
    return value


def _safe_row(fn: RowFn, obj: dict[str, Any], now: float, width: int) -> tuple[list[Any], Any]:
    try:
        cells, conditions = fn(obj, now)
    except Exception:  # a malformed stored object must not fail the whole list
        cells, conditions = [_s(_d(obj.get("metadata")).get("name"))], None
    if len(cells) != width:
        cells = (list(cells) + [None] * width)[:width]
    return cells, conditions


def _row(fn: RowFn, obj: dict[str, Any], now: float, width: int, include_object: str,
         api_version: str) -> Row:
    cells, conditions = _safe_row(fn, obj, now, width)
    row: Row = {"cells": cells}
    if conditions:
        row["conditions"] = conditions
    row["object"] = _partial(obj, include_object, api_version)
    return row


def table_row(resource: ResourceInfo, obj: dict[str, Any], now: float | None = None,
              include_object: str = INCLUDE_METADATA, api_version: str = TABLE_API_VERSION) -> Row:
    """One row: {"cells": [...], "conditions"?: [...], "object": <per include_object>}."""
    columns, fn = _printer(resource)
    include_object = check_include_object(include_object)
    return _row(fn, obj, time.time() if now is None else now, len(columns), include_object, api_version)


def make_table(resource: ResourceInfo, objs: list[dict[str, Any]], list_metadata: dict[str, Any] | None = None,
               include_object: str = INCLUDE_METADATA, now: float | None = None,
               api_version: str = TABLE_API_VERSION, no_headers: bool = False) -> dict[str, Any]:
    """The Table for a list (or a single GET: pass [obj] and {"resourceVersion": ...}).

    list_metadata keys resourceVersion, continue, remainingItemCount are copied when set.
    include_object: "None" | "Metadata" (default, PartialObjectMetadata) | "Object".
    no_headers leaves columnDefinitions null, as upstream does for TableOptions.noHeaders."""
    include_object = check_include_object(include_object)
    now = time.time() if now is None else now
    columns, fn = _printer(resource)
    width = len(columns)
    meta: dict[str, Any] = {}
    for k in ("resourceVersion", "continue", "remainingItemCount"):
        v = (list_metadata or {}).get(k)
        if v not in (None, ""):
            meta[k] = v
    return {"kind": "Table", "apiVersion": api_version, "metadata": meta,
            "columnDefinitions": None if no_headers else columns,
            "rows": [_row(fn, o, now, width, include_object, api_version) for o in objs]}


def table_for_object(resource: ResourceInfo, obj: dict[str, Any], include_object: str = INCLUDE_METADATA,
                     now: float | None = None, api_version: str = TABLE_API_VERSION) -> dict[str, Any]:
    """Table for a single-object GET (metadata.resourceVersion is the object's)."""
    rv = _d(obj.get("metadata")).get("resourceVersion")
    return make_table(resource, [obj], {"resourceVersion": rv}, include_object, now, api_version)


def table_for_watch_event(resource: ResourceInfo, obj: dict[str, Any], include_object: str = INCLUDE_METADATA,
                          first: bool = False, now: float | None = None,
                          api_version: str = TABLE_API_VERSION) -> dict[str, Any]:
    """The object of one watch event when the client asked for as=Table: a one-row Table.
    Upstream sends columnDefinitions with the first event only (later ones carry null:
    the watch handler flips TableOptions.NoHeaders after the first object)."""
    rv = _d(obj.get("metadata")).get("resourceVersion")
    return make_table(resource, [obj], {"resourceVersion": rv}, include_object, now, api_version,
                      no_headers=not first)


__all__ = ["INCLUDE_METADATA", "INCLUDE_NONE", "INCLUDE_OBJECT", "TABLE_API_VERSION", "check_include_object",
           "format_label_selector", "format_labels", "human_duration", "make_table", "parse_time", "since",
           "table_columns", "table_for_object", "table_for_watch_event", "table_row"]
