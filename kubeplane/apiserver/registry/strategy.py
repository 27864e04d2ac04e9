"""Per-resource behaviour: defaults, validation, status and generation rules.

Upstream calls this a "strategy" (pkg/registry/<group>/<resource>/strategy.go). Most of
what it does is data: which kinds bump `metadata.generation`, which have a status that
the main resource may not change, which fields default to what. The few semantic checks
that the schema cannot express (a pod needs containers with images; a deployment's
selector must match its template) live in `_CHECKS`, one small function per kind.
"""
from __future__ import annotations

import ipaddress
import random
import re
from typing import Any, Callable

from ..machinery.errors import Cause
from .resources import ResourceInfo
from .schema.zero import fill_zero_fields
from . import strategy_kinds
from .strategy_flowcontrol import (
    flowschema_check,
    flowschema_defaults,
    prioritylevel_check,
    prioritylevel_defaults,
)

# --- names -----------------------------------------------------------------------------

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

# Kinds whose name is a DNS-1123 label (63 chars) rather than a subdomain (253).
_LABEL_NAMED = {"Namespace", "Service"}
# Kinds whose names are only path segments (no '/', '%', not '.' or '..').
_PATH_NAMED = {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}


def name_errors(kind: str, name: str, field: str = "metadata.name") -> list[Cause]:
    if kind in _PATH_NAMED:
        if name in (".", ".."):
            return [Cause("FieldValueInvalid", field, f'Invalid value: "{name}": may not be \'{name}\'')]
        for bad in ("/", "%"):
            if bad in name:
                return [Cause("FieldValueInvalid", field, f'Invalid value: "{name}": may not contain \'{bad}\'')]
        return []
    if kind == "Service":
        if len(name) > 63 or not _DNS1035_LABEL.match(name):
            return [Cause("FieldValueInvalid", field,
                          f'Invalid value: "{name}": a DNS-1035 label must consist of lower case alphanumeric '
                          "characters or '-', start with an alphabetic character, and end with an alphanumeric "
                          "character (e.g. 'my-name',  or 'abc-123', regex used for validation is "
                          "'[a-z]([-a-z0-9]*[a-z0-9])?')")]
        return []
    if kind in _LABEL_NAMED:
        if len(name) > 63 or not _DNS1123_LABEL.match(name):
            return [Cause("FieldValueInvalid", field,
                          f'Invalid value: "{name}": a lowercase RFC 1123 label must consist of lower case '
                          "alphanumeric characters or '-', and must start and end with an alphanumeric character "
                          "(e.g. 'my-name',  or '123-abc', regex used for validation is "
                          "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')")]
        return []
    if len(name) > 253 or not _DNS1123_SUBDOMAIN.match(name):
        return [Cause("FieldValueInvalid", field,
                      f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower case '
                      "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character "
                      "(e.g. 'example.com', regex used for validation is "
                      "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")]
    return []


def _qualified_key_errors(key: str, field: str) -> list[Cause]:
    prefix, slash, name = key.rpartition("/")
    out = []
    if slash and (not prefix or len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)):
        out.append(Cause("FieldValueInvalid", field, f'Invalid value: "{key}": prefix part must be a '
                         "lowercase RFC 1123 subdomain"))
    if not name or len(name) > 63 or not _QUALIFIED_NAME.match(name):
        out.append(Cause("FieldValueInvalid", field,
                         f'Invalid value: "{key}": name part must consist of alphanumeric characters, \'-\', '
                         "'_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or "
                         "'my.name',  or '123-abc', regex used for validation is "
                         "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"))
    return out


def metadata_errors(info: ResourceInfo, obj: dict[str, Any]) -> list[Cause]:
    """ObjectMeta checks shared by every kind (labels, annotations, finalizers)."""
    md = obj.get("metadata") or {}
    out: list[Cause] = []
    labels = md.get("labels") or {}
    if isinstance(labels, dict):
        for k, v in labels.items():
            out += _qualified_key_errors(k, "metadata.labels")
            if not isinstance(v, str) or len(v) > 63 or not _LABEL_VALUE.match(v):
                shown = v if isinstance(v, str) and len(v) <= 100 else (str(v)[:100] + "...")
                out.append(Cause("FieldValueInvalid", "metadata.labels",
                                 f'Invalid value: "{shown}": a valid label must be an empty string or consist of '
                                 "alphanumeric characters, '-', '_' or '.', and must start and end with an "
                                 "alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used "
                                 "for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
                                 + (" and must be no more than 63 characters" if isinstance(v, str) and len(v) > 63 else "")))
    ann = md.get("annotations") or {}
    if isinstance(ann, dict):
        total = 0
        for k, v in ann.items():
            out += _qualified_key_errors(k, "metadata.annotations")
            total += len(k) + len(v or "")
        if total > 256 * 1024:
            out.append(Cause("FieldValueTooLong", "metadata.annotations",
                             "Too long: may not be more than 262144 bytes"))
    for i, f in enumerate(md.get("finalizers") or []):
        if not isinstance(f, str) or (("/" not in f) and f not in _STANDARD_FINALIZERS and not _QUALIFIED_NAME.match(f)):
            out.append(Cause("FieldValueInvalid", f"metadata.finalizers[{i}]", f'Invalid value: "{f}"'))
    return out


_STANDARD_FINALIZERS = {"kubernetes", "orphan", "foregroundDeletion"}

# --- defaults --------------------------------------------------------------------------


def _pod_spec_defaults(spec: dict[str, Any]) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for group in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(group) or []:
            if not isinstance(c, dict):
                continue
            c.setdefault("resources", {})
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("terminationMessagePolicy", "File")
            image = c.get("image") or ""
            if "imagePullPolicy" not in c and isinstance(image, str):
                tag = image.rsplit("/", 1)[-1]
                latest = "@" not in tag and (":" not in tag or tag.endswith(":latest"))
                c["imagePullPolicy"] = "Always" if latest else "IfNotPresent"
            for p in c.get("ports") or []:
                if isinstance(p, dict):
                    p.setdefault("protocol", "TCP")


def _pod_defaults(obj: dict[str, Any], create: bool) -> None:
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    _pod_spec_defaults(spec)
    if create:
        # ServiceAccount and DefaultTolerationSeconds admission, as a default cluster has them.
        spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
        spec.setdefault("serviceAccount", spec["serviceAccountName"])
        spec.setdefault("enableServiceLinks", True)
        # (priority and preemptionPolicy: the Priority admission plugin, endpoints/admission.py)
        tol = spec.setdefault("tolerations", [])
        if isinstance(tol, list):
            for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
                if not any(isinstance(t, dict) and t.get("key") == key for t in tol):
                    tol.append({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300})
        status = obj.setdefault("status", {})
        if isinstance(status, dict):
            status.setdefault("phase", "Pending")
            status.setdefault("qosClass", _qos(spec))


def _qos(spec: dict[str, Any]) -> str:
    any_set = False
    guaranteed = True
    for c in spec.get("containers") or []:
        res = c.get("resources") or {} if isinstance(c, dict) else {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        if req or lim:
            any_set = True
        for r in ("cpu", "memory"):
            if r not in lim or (r in req and req[r] != lim[r]):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def _template_defaults(obj: dict[str, Any]) -> None:
    spec = obj.get("spec")
    if isinstance(spec, dict):
        tmpl = spec.get("template")
        if isinstance(tmpl, dict):
            tmpl.setdefault("metadata", {}) if "metadata" not in tmpl else None
            if isinstance(tmpl.get("spec"), dict):
                _pod_spec_defaults(tmpl["spec"])


def _rc_defaults(obj: dict[str, Any], create: bool) -> None:
    """upstream's SetDefaults_ReplicationController: the selector and the labels default
    to the template's labels, replicas to 1."""
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    tmpl = spec.get("template")
    labels = ((tmpl.get("metadata") or {}).get("labels") or {}) if isinstance(tmpl, dict) else {}
    if isinstance(labels, dict) and labels:
        if not spec.get("selector"):
            spec["selector"] = dict(labels)
        md = obj.setdefault("metadata", {})
        if isinstance(md, dict) and not md.get("labels"):
            md["labels"] = dict(labels)
    spec.setdefault("replicas", 1)
    _template_defaults(obj)


def _podtemplate_defaults(obj: dict[str, Any], create: bool) -> None:
    tmpl = obj.get("template")
    if isinstance(tmpl, dict) and isinstance(tmpl.get("spec"), dict):
        _pod_spec_defaults(tmpl["spec"])


def _deployment_defaults(obj: dict[str, Any], create: bool) -> None:
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    spec.setdefault("replicas", 1)
    strategy = spec.setdefault("strategy", {})
    if isinstance(strategy, dict):
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            ru = strategy.setdefault("rollingUpdate", {})
            if isinstance(ru, dict):
                ru.setdefault("maxUnavailable", "25%")
                ru.setdefault("maxSurge", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    _template_defaults(obj)


def _replicaset_defaults(obj: dict[str, Any], create: bool) -> None:
    spec = obj.setdefault("spec", {})
    if isinstance(spec, dict):
        spec.setdefault("replicas", 1)
    _template_defaults(obj)


def _statefulset_defaults(obj: dict[str, Any], create: bool) -> None:
    spec = obj.setdefault("spec", {})
    if isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        spec.setdefault("podManagementPolicy", "OrderedReady")
        spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("persistentVolumeClaimRetentionPolicy",
                        {"whenDeleted": "Retain", "whenScaled": "Retain"})
    _template_defaults(obj)


def _daemonset_defaults(obj: dict[str, Any], create: bool) -> None:
    spec = obj.setdefault("spec", {})
    if isinstance(spec, dict):
        spec.setdefault("updateStrategy", {"type": "RollingUpdate",
                                           "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        spec.setdefault("revisionHistoryLimit", 10)
    _template_defaults(obj)


def _job_selector(obj: dict[str, Any]) -> None:
    """upstream's generateSelector (unless spec.manualSelector): the template gets the
    job-name and controller-uid labels, the selector matches the controller uid, and a
    Job without labels takes its template's."""
    md = obj.get("metadata") or {}
    spec = obj.get("spec")
    uid, name = md.get("uid"), md.get("name")
    if not isinstance(spec, dict) or spec.get("manualSelector") is True or not uid or not name:
        return
    tmpl = spec.get("template")
    if not isinstance(tmpl, dict):
        return
    tmd = tmpl.setdefault("metadata", {})
    if not isinstance(tmd, dict):
        return
    labels = tmd.get("labels")
    if not isinstance(labels, dict):
        labels = tmd["labels"] = {}
    for key, value in (("batch.kubernetes.io/controller-uid", uid), ("batch.kubernetes.io/job-name", name),
                       ("controller-uid", uid), ("job-name", name)):
        labels.setdefault(key, value)
    sel = spec.get("selector")
    if sel is None:
        sel = spec["selector"] = {}
    if isinstance(sel, dict):
        ml = sel.get("matchLabels")
        if not isinstance(ml, dict):
            ml = sel["matchLabels"] = {}
        ml.setdefault("batch.kubernetes.io/controller-uid", uid)
    if not md.get("labels"):
        md["labels"] = dict(labels)


def _job_defaults(obj: dict[str, Any], create: bool) -> None:
    if create:
        _job_selector(obj)
    spec = obj.setdefault("spec", {})
    if isinstance(spec, dict):
        spec.setdefault("parallelism", 1)
        spec.setdefault("completions", 1)
        spec.setdefault("backoffLimit", 6)
        spec.setdefault("completionMode", "NonIndexed")
        spec.setdefault("suspend", False)
        spec.setdefault("manualSelector", False) if False else None
        tmpl = spec.get("template")
        if isinstance(tmpl, dict) and isinstance(tmpl.get("spec"), dict):
            tmpl["spec"].setdefault("restartPolicy", "Never") if "restartPolicy" not in tmpl["spec"] else None
    _template_defaults(obj)


def _cronjob_defaults(obj: dict[str, Any], create: bool) -> None:
    spec = obj.setdefault("spec", {})
    if isinstance(spec, dict):
        spec.setdefault("concurrencyPolicy", "Allow")
        spec.setdefault("suspend", False)
        spec.setdefault("successfulJobsHistoryLimit", 3)
        spec.setdefault("failedJobsHistoryLimit", 1)


_SERVICE_NET = ipaddress.ip_network("10.96.0.0/12")


def _service_defaults(obj: dict[str, Any], create: bool) -> None:
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    spec.setdefault("type", "ClusterIP")
    if spec["type"] != "ExternalName":
        spec.setdefault("sessionAffinity", "None")
        if create and not spec.get("clusterIP"):
            # Random allocation from the service range; a repair loop comes with controllers.
            ip = str(_SERVICE_NET[random.randrange(10, _SERVICE_NET.num_addresses - 1)])
            spec["clusterIP"] = ip
        if spec.get("clusterIP") and "clusterIPs" not in spec:
            spec["clusterIPs"] = [spec["clusterIP"]]
        if spec.get("clusterIP") != "None" or True:
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
    for p in spec.get("ports") or []:
        if isinstance(p, dict):
            p.setdefault("protocol", "TCP")
            if "targetPort" not in p and "port" in p:
                p["targetPort"] = p["port"]
            if spec["type"] in ("NodePort", "LoadBalancer") and "nodePort" not in p:
                p["nodePort"] = random.randrange(30000, 32768)
    obj.setdefault("status", {"loadBalancer": {}})


def _namespace_defaults(obj: dict[str, Any], create: bool) -> None:
    md = obj.setdefault("metadata", {})
    name = md.get("name")
    if name:
        labels = md.get("labels")
        if not isinstance(labels, dict):
            labels = md["labels"] = {}
        labels["kubernetes.io/metadata.name"] = name
    if create:
        spec = obj.setdefault("spec", {})
        if isinstance(spec, dict):
            spec.setdefault("finalizers", ["kubernetes"])
        obj["status"] = {"phase": "Active"}


def _canonical_base64(values: Any) -> None:
    """Rewrite []byte values (a map of base64 strings) the way upstream's decode and
    re-encode leaves them: Go's decoder skips \r and \n inside the text (the TLS Secret
    example of the Kubernetes docs wraps its lines), the encoder writes none. Values the
    schema check let through are valid base64; anything else is left for it to report."""
    if not isinstance(values, dict):
        return
    import base64
    import binascii

    for k, v in values.items():
        if isinstance(v, str) and ("\n" in v or "\r" in v):
            try:
                values[k] = base64.b64encode(base64.b64decode(v.replace("\r", "").replace("\n", ""))).decode()
            except (binascii.Error, ValueError):
                pass


def _secret_defaults(obj: dict[str, Any], create: bool) -> None:
    obj.setdefault("type", "Opaque")
    _canonical_base64(obj.get("data"))
    sd = obj.pop("stringData", None)
    if isinstance(sd, dict):
        import base64

        data = obj.setdefault("data", {})
        if isinstance(data, dict):
            for k, v in sd.items():
                data[k] = base64.b64encode(str(v).encode()).decode()


def _configmap_defaults(obj: dict[str, Any], create: bool) -> None:
    _canonical_base64(obj.get("binaryData"))


def _pvc_defaults(obj: dict[str, Any], create: bool) -> None:
    spec = obj.setdefault("spec", {})
    if isinstance(spec, dict):
        spec.setdefault("volumeMode", "Filesystem")
    if create:
        obj["status"] = {"phase": "Pending"}


def _node_defaults(obj: dict[str, Any], create: bool) -> None:
    md = obj.setdefault("metadata", {})
    name = md.get("name")
    if create and name:
        labels = md.get("labels")
        if not isinstance(labels, dict):
            labels = md["labels"] = {}
        # upstream's kubelet sets these; a node created by hand gets them from us.
        labels.setdefault("kubernetes.io/hostname", name)


DEFAULTS: dict[str, Callable[[dict[str, Any], bool], None]] = {
    "pods": _pod_defaults,
    "deployments": _deployment_defaults,
    "replicasets": _replicaset_defaults,
    "statefulsets": _statefulset_defaults,
    "daemonsets": _daemonset_defaults,
    "jobs": _job_defaults,
    "cronjobs": _cronjob_defaults,
    "services": _service_defaults,
    "namespaces": _namespace_defaults,
    "secrets": _secret_defaults,
    "configmaps": _configmap_defaults,
    "persistentvolumeclaims": _pvc_defaults,
    "nodes": _node_defaults,
    "flowschemas": flowschema_defaults,
    "prioritylevelconfigurations": prioritylevel_defaults,
    "replicationcontrollers": _rc_defaults,
    "podtemplates": _podtemplate_defaults,
    **strategy_kinds.DEFAULTS,
}

# --- semantic checks ---------------------------------------------------------------------


def _containers_errors(spec: Any, base: str) -> list[Cause]:
    out: list[Cause] = []
    if not isinstance(spec, dict):
        return [Cause("FieldValueRequired", base, "Required value")]
    containers = spec.get("containers")
    if not containers:
        return [Cause("FieldValueRequired", f"{base}.containers", "Required value")]
    seen: set[str] = set()
    for i, c in enumerate(containers):
        f = f"{base}.containers[{i}]"
        if not isinstance(c, dict):
            continue
        out.extend(_container_name_image_errors(c, f, seen))
    rp = spec.get("restartPolicy")
    if rp is not None and rp not in ("Always", "OnFailure", "Never"):
        out.append(Cause("FieldValueNotSupported", f"{base}.restartPolicy",
                         f'Unsupported value: "{rp}": supported values: "Always", "OnFailure", "Never"'))
    return out


def _container_name_image_errors(c: dict[str, Any], f: str, seen: set[str]) -> list[Cause]:
    """A container's (or ephemeral container's) name, a DNS label not in `seen` (added
    to it), and its image; `f` is the container's field path."""
    out: list[Cause] = []
    name = c.get("name")
    if not name:
        out.append(Cause("FieldValueRequired", f"{f}.name", "Required value"))
    elif not isinstance(name, str) or len(name) > 63 or not _DNS1123_LABEL.match(name):
        out.append(Cause("FieldValueInvalid", f"{f}.name",
                         f'Invalid value: "{name}": a lowercase RFC 1123 label must consist of lower case '
                         "alphanumeric characters or '-', and must start and end with an alphanumeric character "
                         "(e.g. 'my-name',  or '123-abc', regex used for validation is "
                         "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"))
    elif name in seen:
        out.append(Cause("FieldValueDuplicate", f"{f}.name", f'Duplicate value: "{name}"'))
    else:
        seen.add(name)
    if not c.get("image"):
        out.append(Cause("FieldValueRequired", f"{f}.image", "Required value"))
    return out


def _pod_check(obj: dict[str, Any]) -> list[Cause]:
    return _containers_errors(obj.get("spec"), "spec") + _ephemeral_errors(obj.get("spec"))


# Container fields an ephemeral container may not set (upstream validateEphemeralContainers).
_EPHEMERAL_FORBIDDEN = ("ports", "livenessProbe", "readinessProbe", "startupProbe", "lifecycle", "resources",
                        "resizePolicy", "restartPolicy")


def _ephemeral_errors(spec: Any) -> list[Cause]:
    """spec.ephemeralContainers: named (DNS label, unique among all of the pod's
    containers), an image, none of the fields a running pod cannot grant, and a
    targetContainerName that names one of the pod's containers."""
    if not isinstance(spec, dict) or not isinstance(spec.get("ephemeralContainers"), list):
        return []
    others = {c.get("name") for g in ("containers", "initContainers") for c in spec.get(g) or []
              if isinstance(c, dict)}
    seen = set(others)
    out: list[Cause] = []
    for i, c in enumerate(spec["ephemeralContainers"]):
        f = f"spec.ephemeralContainers[{i}]"
        if not isinstance(c, dict):
            continue
        out.extend(_container_name_image_errors(c, f, seen))
        for k in _EPHEMERAL_FORBIDDEN:
            if c.get(k):
                out.append(Cause("FieldValueForbidden", f"{f}.{k}", "Forbidden: cannot be set for an Ephemeral "
                                                                    "Container"))
        target = c.get("targetContainerName")
        if target and target not in others:
            out.append(Cause("FieldValueNotFound", f"{f}.targetContainerName", f'Not found: "{target}"'))
    return out


def ephemeral_update_errors(old: dict[str, Any], new: dict[str, Any]) -> list[Cause]:
    """Ephemeral containers are added, never removed or changed (upstream
    ValidatePodEphemeralContainersUpdate)."""
    def by_name(o: dict[str, Any]) -> dict[str, Any]:
        lst = (o.get("spec") or {}).get("ephemeralContainers") or []
        return {c.get("name"): c for c in lst if isinstance(c, dict)}

    new_by_name = by_name(new)
    new_index = {c.get("name"): i for i, c in enumerate((new.get("spec") or {}).get("ephemeralContainers") or [])
                 if isinstance(c, dict)}
    out = []
    for name, c in by_name(old).items():
        if name not in new_by_name:
            out.append(Cause("FieldValueForbidden", "spec.ephemeralContainers",
                             f'Forbidden: existing ephemeral containers "{name}" may not be removed'))
        elif new_by_name[name] != c:
            out.append(Cause("FieldValueForbidden", f"spec.ephemeralContainers[{new_index[name]}]",
                             f'Forbidden: existing ephemeral containers "{name}" may not be changed'))
    return out


def _selector_matches_template(obj: dict[str, Any], require_selector: bool = True) -> list[Cause]:
    from .selectors import LabelSelector

    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [Cause("FieldValueRequired", "spec", "Required value")]
    out: list[Cause] = []
    sel = spec.get("selector")
    tmpl = spec.get("template") if isinstance(spec.get("template"), dict) else {}
    labels = ((tmpl.get("metadata") or {}).get("labels") or {}) if isinstance(tmpl, dict) else {}
    if not sel and require_selector:
        out.append(Cause("FieldValueRequired", "spec.selector", "Required value"))
    elif isinstance(sel, dict) and sel:
        try:
            matches = LabelSelector.from_dict(sel).matches(labels)
        except Exception:
            matches = False
        if not (sel.get("matchLabels") or sel.get("matchExpressions")):
            out.append(Cause("FieldValueInvalid", "spec.selector",
                             "Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), "
                             "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment"))
        elif not matches:
            out.append(Cause("FieldValueInvalid", "spec.template.metadata.labels",
                             f"Invalid value: {_go_map(labels)}: `selector` does not match template `labels`"))
    out += _containers_errors(tmpl.get("spec") if isinstance(tmpl, dict) else None, "spec.template.spec")
    reps = spec.get("replicas")
    if isinstance(reps, int) and reps < 0:
        out.append(Cause("FieldValueInvalid", "spec.replicas",
                         f"Invalid value: {reps}: must be greater than or equal to 0"))
    return out


def _go_map(d: dict[str, Any]) -> str:
    return "map[string]string{" + ", ".join(f'"{k}":"{v}"' for k, v in sorted(d.items())) + "}"


def _rc_check(obj: dict[str, Any]) -> list[Cause]:
    """upstream's ValidateReplicationControllerSpec: a selector (a plain map) that the
    template's labels match, pods that restart Always."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [Cause("FieldValueRequired", "spec", "Required value")]
    out: list[Cause] = []
    sel = spec.get("selector") if isinstance(spec.get("selector"), dict) else {}
    tmpl = spec.get("template")
    if not sel:
        out.append(Cause("FieldValueRequired", "spec.selector", "Required value"))
    if not isinstance(tmpl, dict):
        return out + [Cause("FieldValueRequired", "spec.template", "Required value")]
    labels = (tmpl.get("metadata") or {}).get("labels") or {}
    if sel and isinstance(labels, dict) and any(labels.get(k) != v for k, v in sel.items()):
        out.append(Cause("FieldValueInvalid", "spec.template.metadata.labels",
                         f"Invalid value: {_go_map(labels)}: `selector` does not match template `labels`"))
    out += _containers_errors(tmpl.get("spec"), "spec.template.spec")
    rp = (tmpl.get("spec") or {}).get("restartPolicy") if isinstance(tmpl.get("spec"), dict) else None
    if rp not in (None, "Always"):
        out = [c for c in out if c.field != "spec.template.spec.restartPolicy"]
        out.append(Cause("FieldValueNotSupported", "spec.template.spec.restartPolicy",
                         f'Unsupported value: "{rp}": supported values: "Always"'))
    reps = spec.get("replicas")
    if isinstance(reps, int) and reps < 0:
        out.append(Cause("FieldValueInvalid", "spec.replicas",
                         f"Invalid value: {reps}: must be greater than or equal to 0"))
    return out


def _podtemplate_check(obj: dict[str, Any]) -> list[Cause]:
    tmpl = obj.get("template")
    if not isinstance(tmpl, dict):
        return [Cause("FieldValueRequired", "template", "Required value")]
    return _containers_errors(tmpl.get("spec"), "template.spec")


def _job_check(obj: dict[str, Any]) -> list[Cause]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [Cause("FieldValueRequired", "spec", "Required value")]
    tmpl = spec.get("template") or {}
    out = _containers_errors(tmpl.get("spec") if isinstance(tmpl, dict) else None, "spec.template.spec")
    rp = ((tmpl.get("spec") or {}) if isinstance(tmpl, dict) else {}).get("restartPolicy")
    if rp not in (None, "OnFailure", "Never"):
        out.append(Cause("FieldValueNotSupported", "spec.template.spec.restartPolicy",
                         f'Unsupported value: "{rp}": supported values: "OnFailure", "Never"'))
    return out


def _cronjob_check(obj: dict[str, Any]) -> list[Cause]:
    spec = obj.get("spec")
    if not isinstance(spec, dict) or not spec.get("schedule"):
        return [Cause("FieldValueRequired", "spec.schedule", "Required value")]
    jt = spec.get("jobTemplate")
    if not isinstance(jt, dict):
        return [Cause("FieldValueRequired", "spec.jobTemplate", "Required value")]
    return [Cause(c.reason, c.field.replace("spec.", "spec.jobTemplate.spec.", 1), c.detail)
            for c in _job_check({"spec": jt.get("spec")})]


def _service_check(obj: dict[str, Any]) -> list[Cause]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return []
    out: list[Cause] = []
    t = spec.get("type", "ClusterIP")
    if t not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
        out.append(Cause("FieldValueNotSupported", "spec.type",
                         f'Unsupported value: "{t}": supported values: "ClusterIP", "ExternalName", '
                         '"LoadBalancer", "NodePort"'))
    ports = spec.get("ports") or []
    if not ports and t != "ExternalName" and spec.get("clusterIP") != "None":
        out.append(Cause("FieldValueRequired", "spec.ports", "Required value"))
    for i, p in enumerate(ports):
        if isinstance(p, dict):
            port = p.get("port")
            if not isinstance(port, int) or not 1 <= port <= 65535:
                out.append(Cause("FieldValueInvalid", f"spec.ports[{i}].port",
                                 f"Invalid value: {port}: must be between 1 and 65535, inclusive"))
            if len(ports) > 1 and not p.get("name"):
                out.append(Cause("FieldValueRequired", f"spec.ports[{i}].name", "Required value"))
    return out


def _configmap_check(obj: dict[str, Any]) -> list[Cause]:
    out: list[Cause] = []
    for field in ("data", "binaryData"):
        d = obj.get(field)
        if isinstance(d, dict):
            for k in d:
                if not _CONFIG_KEY.match(k) or len(k) > 253:
                    out.append(Cause("FieldValueInvalid", f"{field}[{k}]",
                                     f'Invalid value: "{k}": a valid config key must consist of alphanumeric '
                                     "characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or "
                                     "'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"))
    return out


def _secret_check(obj: dict[str, Any]) -> list[Cause]:
    # (base64 of data values: the schema check, with Go's decoder rules, ran before)
    return _configmap_check(obj)


_CHECKS: dict[str, Callable[[dict[str, Any]], list[Cause]]] = {
    "pods": _pod_check,
    "deployments": _selector_matches_template,
    "replicasets": _selector_matches_template,
    "statefulsets": _selector_matches_template,
    "daemonsets": _selector_matches_template,
    "jobs": _job_check,
    "cronjobs": _cronjob_check,
    "services": _service_check,
    "configmaps": _configmap_check,
    "secrets": _secret_check,
    "flowschemas": flowschema_check,
    "prioritylevelconfigurations": prioritylevel_check,
    "replicationcontrollers": _rc_check,
    "podtemplates": _podtemplate_check,
    **strategy_kinds.CHECKS,
}

# --- the strategy ------------------------------------------------------------------------

# Kinds whose metadata.generation tracks spec changes (upstream: those with a spec that a
# controller reconciles, CRDs and custom resources).
_GENERATION = {"deployments", "replicasets", "statefulsets", "daemonsets", "jobs", "cronjobs",
               "customresourcedefinitions", "flowschemas", "prioritylevelconfigurations", "endpointslices"}


class Strategy:
    """What differs between resources, looked up by ResourceInfo."""

    def __init__(self, info: ResourceInfo):
        self.info = info
        self.defaults = DEFAULTS.get(info.plural) if info.crd is None else None
        self.check = _CHECKS.get(info.plural) if info.crd is None else None
        self.update_check = strategy_kinds.UPDATE_CHECKS.get(info.plural) if info.crd is None else None
        self.tracks_generation = info.crd is not None or (info.group in ("", "apps", "batch", "apiextensions.k8s.io",
                                                                          "flowcontrol.apiserver.k8s.io",
                                                                          "discovery.k8s.io")
                                                          and info.plural in _GENERATION) \
            or info.plural in strategy_kinds.GENERATION
        self.has_status = "status" in info.subresources

    def apply_defaults(self, obj: dict[str, Any], create: bool) -> None:
        if self.defaults is not None:
            self.defaults(obj, create)

    def fill_zero_fields(self, obj: dict[str, Any]) -> None:
        """The fields upstream's Go encoding always writes (schema/zero.py), built-ins only."""
        if self.info.crd is None:
            fill_zero_fields(obj, self.info.def_name)
            if self.info.plural == "replicationcontrollers":
                # omitempty in Go, though the type schema marks a zero default: never written as 0
                spec = obj.get("spec")
                if isinstance(spec, dict) and spec.get("minReadySeconds") == 0:
                    del spec["minReadySeconds"]

    def validate(self, obj: dict[str, Any]) -> list[Cause]:
        out = metadata_errors(self.info, obj)
        if self.check is not None:
            out += self.check(obj)
        return out

    def validate_update(self, old: dict[str, Any], new: dict[str, Any]) -> list[Cause]:
        """Checks that need the old object too (immutable fields of the newer kinds)."""
        return self.update_check(old, new) if self.update_check is not None else []

    def spec_changed(self, old: dict[str, Any], new: dict[str, Any]) -> bool:
        """Whether an update changes what generation counts: everything but metadata and status."""
        keys = (set(old) | set(new)) - {"metadata", "status", "apiVersion", "kind"}
        return any(old.get(k) != new.get(k) for k in keys)
