"""Defaults and validation of the cluster-infrastructure kinds: PersistentVolume,
HorizontalPodAutoscaler (autoscaling/v2), PodDisruptionBudget, Ingress, IngressClass,
NetworkPolicy, StorageClass, CSIDriver, PriorityClass, RuntimeClass, the admission webhook
configurations and ControllerRevision.

Defaults follow upstream's SetDefaults_* (pkg/apis/<group>/<version>/defaults.go), checks the
parts of pkg/apis/<group>/validation that a schema cannot express (required fields, one-of
choices, ranges, names) with upstream's field paths and texts. Update checks (immutable
fields) are in `UPDATE_CHECKS`: they see the old and the new object. The kinds that embed a
pod template (ReplicationController, PodTemplate) live in strategy.py beside the pod rules.
"""
from __future__ import annotations

import re
from typing import Any, Callable

from ..machinery.errors import Cause

Check = Callable[[dict[str, Any]], list[Cause]]
UpdateCheck = Callable[[dict[str, Any], dict[str, Any]], list[Cause]]

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_PERCENT = re.compile(r"^[0-9]+%$")

# upstream's scheduling.HighestUserDefinablePriority and the built-in classes
HIGHEST_USER_PRIORITY = 1_000_000_000
SYSTEM_PRIORITY_CLASSES = {
    "system-node-critical": (2_000_001_000, "Used for system critical pods that must not be moved from their "
                                            "current node."),
    "system-cluster-critical": (2_000_000_000, "Used for system critical pods that must run in the cluster, but "
                                               "can be moved to another node if necessary."),
}


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _required(field: str, detail: str = "") -> Cause:
    return Cause("FieldValueRequired", field, "Required value" + (f": {detail}" if detail else ""))


def _go(v: Any) -> str:
    """A value as upstream's field errors print it: strings quoted, numbers bare."""
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _invalid(field: str, value: Any, detail: str) -> Cause:
    return Cause("FieldValueInvalid", field, f"Invalid value: {_go(value)}: {detail}")


def _unsupported(field: str, value: Any, allowed: tuple[str, ...]) -> Cause:
    return Cause("FieldValueNotSupported", field, f"Unsupported value: {_go(value)}: supported values: "
                 + ", ".join(f'"{a}"' for a in allowed))


def _immutable(field: str, value: Any) -> Cause:
    return _invalid(field, value, "field is immutable")


def _one_of(field: str, value: Any, allowed: tuple[str, ...]) -> list[Cause]:
    return [] if value is None or value in allowed else [_unsupported(field, value, allowed)]


def _non_negative(field: str, value: Any) -> list[Cause]:
    if isinstance(value, int) and not isinstance(value, bool) and value < 0:
        return [_invalid(field, value, "must be greater than or equal to 0")]
    return []


# --- defaults --------------------------------------------------------------------------

def pv_defaults(obj: dict[str, Any], create: bool) -> None:
    spec = obj.setdefault("spec", {})
    if isinstance(spec, dict):
        spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
        spec.setdefault("volumeMode", "Filesystem")
        if isinstance(spec.get("hostPath"), dict):
            spec["hostPath"].setdefault("type", "")
    if create:
        obj["status"] = {"phase": "Pending"}


def _scaling_rules(rules: Any, up: bool) -> dict[str, Any]:
    """upstream's GenerateHPAScaleUpRules / GenerateHPAScaleDownRules."""
    rules = dict(rules) if isinstance(rules, dict) else {}
    if up:
        rules.setdefault("stabilizationWindowSeconds", 0)
        default = [{"type": "Pods", "value": 4, "periodSeconds": 15},
                   {"type": "Percent", "value": 100, "periodSeconds": 15}]
    else:
        default = [{"type": "Percent", "value": 100, "periodSeconds": 15}]
    rules.setdefault("selectPolicy", "Max")
    if not rules.get("policies"):
        rules["policies"] = default
    return rules


def hpa_defaults(obj: dict[str, Any], create: bool) -> None:
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    spec.setdefault("minReplicas", 1)
    if not spec.get("metrics"):
        spec["metrics"] = [{"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]
    behavior = spec.get("behavior")
    if isinstance(behavior, dict):
        behavior["scaleUp"] = _scaling_rules(behavior.get("scaleUp"), True)
        behavior["scaleDown"] = _scaling_rules(behavior.get("scaleDown"), False)
    # status.currentMetrics has no omitempty in Go: upstream writes null when it is unset
    status = obj.setdefault("status", {})
    if isinstance(status, dict) and "currentMetrics" not in status:
        status["currentMetrics"] = None


def ingressclass_defaults(obj: dict[str, Any], create: bool) -> None:
    params = _d(_d(obj.get("spec")).get("parameters"))
    if params:
        params.setdefault("scope", "Cluster")


def networkpolicy_defaults(obj: dict[str, Any], create: bool) -> None:
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    for direction in ("ingress", "egress"):
        for rule in _l(spec.get(direction)):
            for port in _l(_d(rule).get("ports")):
                if isinstance(port, dict):
                    port.setdefault("protocol", "TCP")
    if not spec.get("policyTypes"):
        spec["policyTypes"] = ["Ingress"] + (["Egress"] if spec.get("egress") else [])


def storageclass_defaults(obj: dict[str, Any], create: bool) -> None:
    obj.setdefault("reclaimPolicy", "Delete")
    obj.setdefault("volumeBindingMode", "Immediate")


def csidriver_defaults(obj: dict[str, Any], create: bool) -> None:
    spec = obj.setdefault("spec", {})
    if isinstance(spec, dict):
        for k, v in (("attachRequired", True), ("podInfoOnMount", False), ("volumeLifecycleModes", ["Persistent"]),
                     ("storageCapacity", False), ("fsGroupPolicy", "ReadWriteOnceWithFSType"),
                     ("requiresRepublish", False), ("seLinuxMount", False)):
            spec.setdefault(k, v)


def priorityclass_defaults(obj: dict[str, Any], create: bool) -> None:
    obj.setdefault("preemptionPolicy", "PreemptLowerPriority")


def _webhook_defaults(mutating: bool) -> Callable[[dict[str, Any], bool], None]:
    def defaults(obj: dict[str, Any], create: bool) -> None:
        for hook in _l(obj.get("webhooks")):
            if not isinstance(hook, dict):
                continue
            hook.setdefault("failurePolicy", "Fail")
            hook.setdefault("matchPolicy", "Equivalent")
            if hook.get("namespaceSelector") is None:
                hook["namespaceSelector"] = {}
            if hook.get("objectSelector") is None:
                hook["objectSelector"] = {}
            hook.setdefault("timeoutSeconds", 10)
            if mutating:
                hook.setdefault("reinvocationPolicy", "Never")
            for rule in _l(hook.get("rules")):
                if isinstance(rule, dict):
                    rule.setdefault("scope", "*")
            svc = _d(_d(hook.get("clientConfig")).get("service"))
            if svc:
                svc.setdefault("port", 443)
    return defaults


DEFAULTS: dict[str, Callable[[dict[str, Any], bool], None]] = {
    "persistentvolumes": pv_defaults,
    "horizontalpodautoscalers": hpa_defaults,
    "ingressclasses": ingressclass_defaults,
    "networkpolicies": networkpolicy_defaults,
    "storageclasses": storageclass_defaults,
    "csidrivers": csidriver_defaults,
    "priorityclasses": priorityclass_defaults,
    "validatingwebhookconfigurations": _webhook_defaults(False),
    "mutatingwebhookconfigurations": _webhook_defaults(True),
}

# --- create (and update) checks -------------------------------------------------------------

_PV_SOURCES = ("gcePersistentDisk", "awsElasticBlockStore", "hostPath", "glusterfs", "nfs", "rbd", "iscsi",
               "cinder", "cephfs", "fc", "flocker", "flexVolume", "azureFile", "vsphereVolume", "quobyte",
               "azureDisk", "photonPersistentDisk", "portworxVolume", "scaleIO", "local", "storageos", "csi")


def pv_check(obj: dict[str, Any]) -> list[Cause]:
    spec = _d(obj.get("spec"))
    out: list[Cause] = []
    if not spec.get("accessModes"):
        out.append(_required("spec.accessModes"))
    if not _d(spec.get("capacity")).get("storage"):
        out.append(_required("spec.capacity"))
    sources = [s for s in _PV_SOURCES if spec.get(s) is not None]
    if not sources:
        out.append(_required("spec", "must specify a volume type"))
    elif len(sources) > 1:
        out.append(Cause("FieldValueForbidden", f"spec.{sources[1]}", "Forbidden: may not specify more than 1 "
                                                                      "volume type"))
    out += _one_of("spec.persistentVolumeReclaimPolicy", spec.get("persistentVolumeReclaimPolicy"),
                   ("Delete", "Recycle", "Retain"))
    out += _one_of("spec.volumeMode", spec.get("volumeMode"), ("Block", "Filesystem"))
    return out


def controllerrevision_check(obj: dict[str, Any]) -> list[Cause]:
    return _non_negative("revision", obj.get("revision"))


def hpa_check(obj: dict[str, Any]) -> list[Cause]:
    spec = _d(obj.get("spec"))
    out: list[Cause] = []
    ref = _d(spec.get("scaleTargetRef"))
    if not ref.get("kind"):
        out.append(_required("spec.scaleTargetRef.kind"))
    if not ref.get("name"):
        out.append(_required("spec.scaleTargetRef.name"))
    lo, hi = spec.get("minReplicas"), spec.get("maxReplicas")
    if isinstance(lo, int) and lo < 1:
        out.append(_invalid("spec.minReplicas", lo, "must be greater than or equal to 1"))
    if not isinstance(hi, int) or hi < 1:
        out.append(_invalid("spec.maxReplicas", hi or 0, "must be greater than 0"))
    elif isinstance(lo, int) and hi < lo:
        out.append(_invalid("spec.maxReplicas", hi, "must be greater than or equal to `minReplicas`"))
    for i, m in enumerate(_l(spec.get("metrics"))):
        out += _one_of(f"spec.metrics[{i}].type", _d(m).get("type"),
                       ("ContainerResource", "External", "Object", "Pods", "Resource"))
    return out


def _int_or_percent(field: str, value: Any) -> list[Cause]:
    if isinstance(value, int):
        return _non_negative(field, value)
    if isinstance(value, str):
        if not _PERCENT.match(value):
            return [_invalid(field, value, "a valid percent string must be a numeric string followed by an ending "
                                           "'%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')")]
        if int(value[:-1]) > 100:
            return [_invalid(field, value, "must not be greater than 100%")]
    return []


def pdb_check(obj: dict[str, Any]) -> list[Cause]:
    spec = _d(obj.get("spec"))
    out: list[Cause] = []
    lo, hi = spec.get("minAvailable"), spec.get("maxUnavailable")
    if lo is not None and hi is not None:
        out.append(_invalid("spec", f"{{minAvailable: {lo}, maxUnavailable: {hi}}}",
                            "minAvailable and maxUnavailable cannot be both set"))
    out += _int_or_percent("spec.minAvailable", lo)
    out += _int_or_percent("spec.maxUnavailable", hi)
    out += _one_of("spec.unhealthyPodEvictionPolicy", spec.get("unhealthyPodEvictionPolicy"),
                   ("AlwaysAllow", "IfHealthyBudget"))
    return out


def _ingress_backend(field: str, backend: Any) -> list[Cause]:
    b = _d(backend)
    svc, res = b.get("service"), b.get("resource")
    if svc is not None and res is not None:
        return [_invalid(field, "", "cannot set both resource and service backends")]
    if res is not None:
        r = _d(res)
        return [_required(f"{field}.resource.{k}") for k in ("kind", "name") if not r.get(k)]
    if svc is None:
        return [_invalid(field, "", "resource or service backend is required")]
    s, out = _d(svc), []
    if not s.get("name"):
        out.append(_required(f"{field}.service.name"))
    port = _d(s.get("port"))
    name, number = port.get("name"), port.get("number")
    if name and number:
        out.append(_invalid(field, "", "cannot set both port name & port number"))
    elif number is not None and not name:
        if not isinstance(number, int) or not 1 <= number <= 65535:
            out.append(_invalid(f"{field}.service.port.number", number, "must be between 1 and 65535, inclusive"))
    elif not name:
        out.append(_required(f"{field}.service.port", "port name or number is required"))
    return out


def ingress_check(obj: dict[str, Any]) -> list[Cause]:
    spec = _d(obj.get("spec"))
    out: list[Cause] = []
    rules = _l(spec.get("rules"))
    if spec.get("defaultBackend") is None and not rules:
        out.append(_invalid("spec", "{}", "either `defaultBackend` or `rules` must be specified"))
    if spec.get("defaultBackend") is not None:
        out += _ingress_backend("spec.defaultBackend", spec["defaultBackend"])
    for i, rule in enumerate(rules):
        rule = _d(rule)
        host = rule.get("host")
        if host and isinstance(host, str):
            bare = host[2:] if host.startswith("*.") else host
            if not _DNS1123_SUBDOMAIN.match(bare):
                out.append(_invalid(f"spec.rules[{i}].host", host,
                                    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                                    "characters, '-' or '.', and must start and end with an alphanumeric character "
                                    "(e.g. 'example.com', regex used for validation is "
                                    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"))
        http = rule.get("http")
        if http is None:
            continue
        paths = _l(_d(http).get("paths"))
        if not paths:
            out.append(_required(f"spec.rules[{i}].http.paths"))
        for j, p in enumerate(paths):
            p, f = _d(p), f"spec.rules[{i}].http.paths[{j}]"
            pt = p.get("pathType")
            if pt is None:
                out.append(_required(f"{f}.pathType", "pathType must be specified"))
            elif pt not in ("Exact", "ImplementationSpecific", "Prefix"):
                out.append(_unsupported(f"{f}.pathType", pt, ("Exact", "ImplementationSpecific", "Prefix")))
            elif pt in ("Exact", "Prefix") and not str(p.get("path") or "").startswith("/"):
                out.append(_invalid(f"{f}.path", p.get("path") or "", "must be an absolute path"))
            out += _ingress_backend(f"{f}.backend", p.get("backend"))
    return out


def ingressclass_check(obj: dict[str, Any]) -> list[Cause]:
    spec = _d(obj.get("spec"))
    out: list[Cause] = []
    if not spec.get("controller"):
        out.append(_required("spec.controller"))
    params = spec.get("parameters")
    if isinstance(params, dict):
        for k in ("kind", "name"):
            if not params.get(k):
                out.append(_required(f"spec.parameters.{k}"))
        out += _one_of("spec.parameters.scope", params.get("scope"), ("Cluster", "Namespace"))
        if params.get("scope") == "Namespace" and not params.get("namespace"):
            out.append(_required("spec.parameters.namespace", "`parameters.scope` is set to 'Namespace'"))
    return out


def networkpolicy_check(obj: dict[str, Any]) -> list[Cause]:
    spec = _d(obj.get("spec"))
    out: list[Cause] = []
    types = _l(spec.get("policyTypes"))
    for i, t in enumerate(types):
        out += _one_of(f"spec.policyTypes[{i}]", t, ("Egress", "Ingress"))
    if len(types) > 2:
        out.append(_invalid("spec.policyTypes", str(types), "may not specify more than two policyTypes"))
    return out


def storageclass_check(obj: dict[str, Any]) -> list[Cause]:
    out: list[Cause] = []
    if not obj.get("provisioner"):
        out.append(_required("provisioner"))
    out += _one_of("reclaimPolicy", obj.get("reclaimPolicy"), ("Delete", "Retain"))
    out += _one_of("volumeBindingMode", obj.get("volumeBindingMode"), ("Immediate", "WaitForFirstConsumer"))
    return out


def csidriver_check(obj: dict[str, Any]) -> list[Cause]:
    spec = _d(obj.get("spec"))
    out = _one_of("spec.fsGroupPolicy", spec.get("fsGroupPolicy"), ("File", "None", "ReadWriteOnceWithFSType"))
    for i, m in enumerate(_l(spec.get("volumeLifecycleModes"))):
        out += _one_of(f"spec.volumeLifecycleModes[{i}]", m, ("Ephemeral", "Persistent"))
    return out


def priorityclass_check(obj: dict[str, Any]) -> list[Cause]:
    name = _d(obj.get("metadata")).get("name") or ""
    value = obj.get("value")
    out: list[Cause] = []
    if name.startswith("system-"):
        known = SYSTEM_PRIORITY_CLASSES.get(name)
        if known is None:
            why = f"{name} is not a known system priority class"
        elif value != known[0]:
            why = f"value of {name} PriorityClass must be {known[0]}"
        elif obj.get("globalDefault"):
            why = f"globalDefault of {name} PriorityClass must be false"
        else:
            why = ""
        if why:
            out.append(Cause("FieldValueForbidden", "metadata.name", "Forbidden: priority class names with "
                             f"'system-' prefix are reserved for system use only. error: {why}"))
    elif isinstance(value, int) and value > HIGHEST_USER_PRIORITY:
        out.append(Cause("FieldValueForbidden", "value", "Forbidden: maximum allowed value of a user defined "
                         f"priority is {HIGHEST_USER_PRIORITY}"))
    out += _one_of("preemptionPolicy", obj.get("preemptionPolicy"), ("Never", "PreemptLowerPriority"))
    return out


def runtimeclass_check(obj: dict[str, Any]) -> list[Cause]:
    handler = obj.get("handler")
    if not handler:
        return [_required("handler")]
    if not isinstance(handler, str) or len(handler) > 63 or not _DNS1123_LABEL.match(handler):
        return [_invalid("handler", handler, "a lowercase RFC 1123 label must consist of lower case alphanumeric "
                                             "characters or '-', and must start and end with an alphanumeric "
                                             "character (e.g. 'my-name',  or '123-abc', regex used for validation "
                                             "is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")]
    return []


def webhooks_check(obj: dict[str, Any]) -> list[Cause]:
    out: list[Cause] = []
    seen: set[str] = set()
    for i, hook in enumerate(_l(obj.get("webhooks"))):
        hook, f = _d(hook), f"webhooks[{i}]"
        name = hook.get("name") or ""
        if not name:
            out.append(_required(f"{f}.name"))
        elif name.count(".") < 2 or not _DNS1123_SUBDOMAIN.match(name):
            out.append(_invalid(f"{f}.name", name, "should be a domain with at least three segments separated by "
                                                   "dots"))
        elif name in seen:
            out.append(Cause("FieldValueDuplicate", f"{f}.name", f'Duplicate value: "{name}"'))
        seen.add(name)
        cc = _d(hook.get("clientConfig"))
        if (cc.get("url") is None) == (cc.get("service") is None):
            out.append(_required(f"{f}.clientConfig", "exactly one of url or service is required"))
        elif isinstance(cc.get("url"), str) and not cc["url"].startswith("https://"):
            out.append(_invalid(f"{f}.clientConfig.url", cc["url"], "'https' is the only allowed URL scheme"))
        se = hook.get("sideEffects")
        if se is None:
            out.append(_required(f"{f}.sideEffects", 'must specify one of "None", "NoneOnDryRun"'))
        else:
            out += _one_of(f"{f}.sideEffects", se, ("None", "NoneOnDryRun"))
        if not hook.get("admissionReviewVersions"):
            out.append(_required(f"{f}.admissionReviewVersions", 'must specify one of "v1", "v1beta1"'))
        out += _one_of(f"{f}.failurePolicy", hook.get("failurePolicy"), ("Fail", "Ignore"))
        out += _one_of(f"{f}.matchPolicy", hook.get("matchPolicy"), ("Equivalent", "Exact"))
        out += _one_of(f"{f}.reinvocationPolicy", hook.get("reinvocationPolicy"), ("IfNeeded", "Never"))
        t = hook.get("timeoutSeconds")
        if isinstance(t, int) and not 1 <= t <= 30:
            out.append(_invalid(f"{f}.timeoutSeconds", t, "the timeout value must be between 1 and 30 seconds"))
        for j, rule in enumerate(_l(hook.get("rules"))):
            out += _one_of(f"{f}.rules[{j}].scope", _d(rule).get("scope"), ("*", "Cluster", "Namespaced"))
    return out


CHECKS: dict[str, Check] = {
    "persistentvolumes": pv_check,
    "controllerrevisions": controllerrevision_check,
    "horizontalpodautoscalers": hpa_check,
    "poddisruptionbudgets": pdb_check,
    "ingresses": ingress_check,
    "ingressclasses": ingressclass_check,
    "networkpolicies": networkpolicy_check,
    "storageclasses": storageclass_check,
    "csidrivers": csidriver_check,
    "priorityclasses": priorityclass_check,
    "runtimeclasses": runtimeclass_check,
    "validatingwebhookconfigurations": webhooks_check,
    "mutatingwebhookconfigurations": webhooks_check,
}

# --- update checks: immutable fields --------------------------------------------------------


def priorityclass_update(old: dict[str, Any], new: dict[str, Any]) -> list[Cause]:
    out: list[Cause] = []
    if old.get("value") != new.get("value"):
        out.append(Cause("FieldValueForbidden", "value", "Forbidden: may not be changed in an update."))
    if old.get("preemptionPolicy") != new.get("preemptionPolicy"):
        out.append(_immutable("preemptionPolicy", new.get("preemptionPolicy")))
    return out


def storageclass_update(old: dict[str, Any], new: dict[str, Any]) -> list[Cause]:
    out: list[Cause] = []
    for field in ("parameters", "provisioner", "reclaimPolicy"):
        if old.get(field) != new.get(field):
            out.append(Cause("FieldValueForbidden", field, f"Forbidden: updates to {field} are forbidden."))
    if old.get("volumeBindingMode") != new.get("volumeBindingMode"):
        out.append(_immutable("volumeBindingMode", new.get("volumeBindingMode")))
    return out


def runtimeclass_update(old: dict[str, Any], new: dict[str, Any]) -> list[Cause]:
    return [_immutable("handler", new.get("handler"))] if old.get("handler") != new.get("handler") else []


def ingressclass_update(old: dict[str, Any], new: dict[str, Any]) -> list[Cause]:
    oc, nc = _d(old.get("spec")).get("controller"), _d(new.get("spec")).get("controller")
    return [_immutable("spec.controller", nc)] if oc != nc else []


def controllerrevision_update(old: dict[str, Any], new: dict[str, Any]) -> list[Cause]:
    return [_immutable("data", "...")] if old.get("data") != new.get("data") else []


def csidriver_update(old: dict[str, Any], new: dict[str, Any]) -> list[Cause]:
    oa, na = _d(old.get("spec")).get("attachRequired"), _d(new.get("spec")).get("attachRequired")
    return [_immutable("spec.attachRequired", na)] if oa != na else []


UPDATE_CHECKS: dict[str, UpdateCheck] = {
    "priorityclasses": priorityclass_update,
    "storageclasses": storageclass_update,
    "runtimeclasses": runtimeclass_update,
    "ingressclasses": ingressclass_update,
    "controllerrevisions": controllerrevision_update,
    "csidrivers": csidriver_update,
}

# Kinds whose metadata.generation tracks spec changes (as recorded from upstream: a new
# object of these kinds carries generation 1).
GENERATION = {"poddisruptionbudgets", "ingresses", "ingressclasses", "networkpolicies", "priorityclasses",
              "validatingwebhookconfigurations", "mutatingwebhookconfigurations", "replicationcontrollers",
              "podtemplates"}
