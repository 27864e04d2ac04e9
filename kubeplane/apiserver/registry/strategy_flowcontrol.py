"""Defaults and validation of flowcontrol.apiserver.k8s.io/v1 FlowSchema and
PriorityLevelConfiguration (upstream's pkg/apis/flowcontrol v1 defaults and validation,
the parts that keep a bad object from reaching the flow controller)."""
from __future__ import annotations

from typing import Any

from ..machinery.errors import Cause

def flowschema_defaults(obj: dict[str, Any], create: bool) -> None:
    spec = obj.get("spec")
    if isinstance(spec, dict) and spec.get("matchingPrecedence") in (None, 0):
        spec["matchingPrecedence"] = 1000


def prioritylevel_defaults(obj: dict[str, Any], create: bool) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    lim = spec.get("limited")
    if spec.get("type") == "Limited" and isinstance(lim, dict):
        if lim.get("nominalConcurrencyShares") is None:
            lim["nominalConcurrencyShares"] = 30
        lim.setdefault("lendablePercent", 0)
        lr = lim.setdefault("limitResponse", {"type": "Reject"})
        if isinstance(lr, dict) and lr.get("type") == "Queue":
            q = lr.setdefault("queuing", {})
            if isinstance(q, dict):
                q.setdefault("queues", 64)
                q.setdefault("handSize", 8)
                q.setdefault("queueLengthLimit", 50)
    ex = spec.get("exempt")
    if spec.get("type") == "Exempt" and isinstance(ex, dict):
        ex.setdefault("nominalConcurrencyShares", 0)
        ex.setdefault("lendablePercent", 0)


def _required(field: str) -> Cause:
    return Cause("FieldValueRequired", field, "Required value")


def _unsupported(field: str, value: Any, allowed: tuple[str, ...]) -> Cause:
    return Cause("FieldValueNotSupported", field, f'Unsupported value: "{value}": supported values: '
                 + ", ".join(f'"{a}"' for a in allowed))


def flowschema_check(obj: dict[str, Any]) -> list[Cause]:
    out: list[Cause] = []
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [_required("spec")]
    p = spec.get("matchingPrecedence")
    if isinstance(p, int) and not 1 <= p <= 10000:
        out.append(Cause("FieldValueInvalid", "spec.matchingPrecedence",
                         f"Invalid value: {p}: must be between 1 and 10000, inclusive"))
    plc = spec.get("priorityLevelConfiguration")
    if not isinstance(plc, dict) or not plc.get("name"):
        out.append(_required("spec.priorityLevelConfiguration.name"))
    dm = spec.get("distinguisherMethod")
    if isinstance(dm, dict) and dm.get("type") not in ("ByUser", "ByNamespace"):
        out.append(_unsupported("spec.distinguisherMethod.type", dm.get("type"), ("ByNamespace", "ByUser")))
    for i, rule in enumerate(spec.get("rules") or []):
        base = f"spec.rules[{i}]"
        if not isinstance(rule, dict):
            continue
        if not rule.get("subjects"):
            out.append(_required(f"{base}.subjects"))
        for j, subj in enumerate(rule.get("subjects") or []):
            if not isinstance(subj, dict):
                continue
            kind = subj.get("kind")
            if kind not in ("User", "Group", "ServiceAccount"):
                out.append(_unsupported(f"{base}.subjects[{j}].kind", kind, ("Group", "ServiceAccount", "User")))
            elif not isinstance(subj.get(kind[0].lower() + kind[1:]), dict):
                field = {"User": "user", "Group": "group", "ServiceAccount": "serviceAccount"}[kind]
                out.append(_required(f"{base}.subjects[{j}].{field}"))
        if not rule.get("resourceRules") and not rule.get("nonResourceRules"):
            out.append(Cause("FieldValueRequired", base, "Required value: at least one of resourceRules and "
                             "nonResourceRules has to be non-empty"))
        for j, rr in enumerate(rule.get("resourceRules") or []):
            if isinstance(rr, dict):
                for f in ("verbs", "apiGroups", "resources"):
                    if not rr.get(f):
                        out.append(_required(f"{base}.resourceRules[{j}].{f}"))
                if not rr.get("clusterScope") and not rr.get("namespaces"):
                    out.append(Cause("FieldValueRequired", f"{base}.resourceRules[{j}].namespaces",
                                     "Required value: resource rules that are not cluster scoped must supply "
                                     "at least one namespace"))
        for j, nr in enumerate(rule.get("nonResourceRules") or []):
            if isinstance(nr, dict):
                for f in ("verbs", "nonResourceURLs"):
                    if not nr.get(f):
                        out.append(_required(f"{base}.nonResourceRules[{j}].{f}"))
    return out


def prioritylevel_check(obj: dict[str, Any]) -> list[Cause]:
    out: list[Cause] = []
    spec = obj.get("spec")
    name = (obj.get("metadata") or {}).get("name")
    if not isinstance(spec, dict):
        return [_required("spec")]
    typ = spec.get("type")
    if typ not in ("Exempt", "Limited"):
        return [_unsupported("spec.type", typ, ("Exempt", "Limited"))]
    if name == "exempt" and typ != "Exempt":
        out.append(Cause("FieldValueInvalid", "spec.type", f'Invalid value: "{typ}": must be \'Exempt\' if and '
                         "only if name is 'exempt'"))
    if typ == "Limited":
        lim = spec.get("limited")
        if not isinstance(lim, dict):
            return out + [Cause("FieldValueRequired", "spec.limited", "Required value: must not be empty when "
                                "type is Limited")]
        if spec.get("exempt") is not None:
            out.append(Cause("FieldValueForbidden", "spec.exempt", "Forbidden: must be nil if the type is Limited"))
        lp = lim.get("lendablePercent")
        if isinstance(lp, int) and not 0 <= lp <= 100:
            out.append(Cause("FieldValueInvalid", "spec.limited.lendablePercent",
                             f"Invalid value: {lp}: must be between 0 and 100, inclusive"))
        lr = lim.get("limitResponse") or {}
        lt = lr.get("type")
        if lt not in ("Queue", "Reject"):
            out.append(_unsupported("spec.limited.limitResponse.type", lt, ("Queue", "Reject")))
        elif lt == "Queue":
            q = lr.get("queuing") or {}
            queues, hand, qll = q.get("queues", 0), q.get("handSize", 0), q.get("queueLengthLimit", 0)
            base = "spec.limited.limitResponse.queuing"
            if isinstance(queues, int) and not 0 < queues <= 512:
                out.append(Cause("FieldValueInvalid", f"{base}.queues",
                                 f"Invalid value: {queues}: must be positive and at most 512"))
            if isinstance(hand, int) and (hand <= 0 or (isinstance(queues, int) and hand > queues)):
                out.append(Cause("FieldValueInvalid", f"{base}.handSize",
                                 f"Invalid value: {hand}: should not be greater than queues ({queues})"
                                 if hand > 0 else f"Invalid value: {hand}: must be positive"))
            if isinstance(qll, int) and qll <= 0:
                out.append(Cause("FieldValueInvalid", f"{base}.queueLengthLimit",
                                 f"Invalid value: {qll}: must be positive"))
        elif lr.get("queuing") is not None:
            out.append(Cause("FieldValueForbidden", "spec.limited.limitResponse.queuing",
                             "Forbidden: must be nil if limited.limitResponse.type is not Limited"))
    elif spec.get("limited") is not None:
        out.append(Cause("FieldValueForbidden", "spec.limited", "Forbidden: must be nil if the type is not Limited"))
    return out
