"""Label selectors, node selector terms and tolerations, with upstream's matching rules
(apimachinery's labels.Selector and the core/v1 helpers that the scheduler and the
controllers both evaluate).

- LabelSelector (matchLabels + matchExpressions In/NotIn/Exists/DoesNotExist): an empty
  selector matches everything, a missing (None) one nothing (pod affinity terms and
  topology spread constraints treat a nil selector so).
- NodeSelectorTerm: matchExpressions (In, NotIn, Exists, DoesNotExist, Gt, Lt) on labels and
  matchFields (only `metadata.name`); the terms of a NodeSelector are ORed, the
  requirements of one term ANDed; a term with no requirements matches nothing.
- Toleration.ToleratesTaint: the effect must match (an empty effect tolerates all), the key
  must match (an empty key with Exists tolerates every key), `Exists` ignores the value,
  `Equal` (the default) compares it.
- A plain map selector (core/v1 ReplicationController and Service): None or empty matches
  nothing (a Service without a selector has no endpoints; an RC's validation forbids it).
"""
from __future__ import annotations

from typing import Any, Callable

Labels = dict[str, str]
Matcher = Callable[[Labels], bool]


def _always(_: dict[str, str]) -> bool:
    return True


def _never(_: dict[str, str]) -> bool:
    return False


def label_selector(sel: dict[str, Any] | None) -> Matcher:
    """A function labels -> bool for a metav1.LabelSelector."""
    if sel is None:
        return _never
    reqs: list[tuple[str, str, frozenset[str]]] = []
    for k, v in (sel.get("matchLabels") or {}).items():
        reqs.append((k, "In", frozenset([str(v)])))
    for e in sel.get("matchExpressions") or ():
        reqs.append((e.get("key", ""), e.get("operator", ""), frozenset(str(x) for x in e.get("values") or ())))
    if not reqs:
        return _always

    def match(labels: dict[str, str]) -> bool:
        for key, op, values in reqs:
            has = key in labels
            if op == "In":
                if not has or labels[key] not in values:
                    return False
            elif op == "NotIn":
                if has and labels[key] in values:
                    return False
            elif op == "Exists":
                if not has:
                    return False
            elif op == "DoesNotExist":
                if has:
                    return False
            else:
                return False
        return True

    return match


def _requirement(e: dict[str, Any]) -> Callable[[dict[str, str]], bool]:
    key, op = e.get("key", ""), e.get("operator", "")
    values = [str(x) for x in e.get("values") or ()]
    vset = frozenset(values)
    if op == "In":
        return lambda ls: key in ls and ls[key] in vset
    if op == "NotIn":
        return lambda ls: key not in ls or ls[key] not in vset
    if op == "Exists":
        return lambda ls: key in ls
    if op == "DoesNotExist":
        return lambda ls: key not in ls
    if op in ("Gt", "Lt") and len(values) == 1:
        try:
            bound = int(values[0])
        except ValueError:
            return _never

        def cmp(ls: dict[str, str]) -> bool:
            try:
                v = int(ls[key])
            except (KeyError, ValueError):
                return False
            return v > bound if op == "Gt" else v < bound

        return cmp
    return _never


def node_selector_term(term: dict[str, Any]) -> Callable[[dict[str, str], str], bool]:
    """A function (labels, node name) -> bool for one NodeSelectorTerm."""
    label_reqs = [_requirement(e) for e in term.get("matchExpressions") or ()]
    field_reqs = []
    for e in term.get("matchFields") or ():
        if e.get("key") != "metadata.name":
            return lambda ls, name: False
        field_reqs.append(_requirement({**e, "key": "metadata.name"}))
    if not label_reqs and not field_reqs:
        return lambda ls, name: False

    def match(labels: dict[str, str], name: str) -> bool:
        if not all(r(labels) for r in label_reqs):
            return False
        return all(r({"metadata.name": name}) for r in field_reqs)

    return match


def node_selector(ns: dict[str, Any] | None) -> Callable[[dict[str, str], str], bool] | None:
    """ORed NodeSelectorTerms; None when there is nothing to check."""
    if ns is None:
        return None
    terms = [node_selector_term(t) for t in ns.get("nodeSelectorTerms") or ()]
    return lambda labels, name: any(t(labels, name) for t in terms)


def tolerates(tol: dict[str, Any], taint: dict[str, Any]) -> bool:
    eff = tol.get("effect") or ""
    if eff and eff != taint.get("effect"):
        return False
    key = tol.get("key") or ""
    if key and key != taint.get("key"):
        return False
    op = tol.get("operator") or "Equal"
    if op == "Exists":
        return True
    if op == "Equal":
        return (tol.get("value") or "") == (taint.get("value") or "")
    return False


def tolerated(tols: list[dict[str, Any]], taint: dict[str, Any]) -> bool:
    return any(tolerates(t, taint) for t in tols)


def from_map(sel: dict[str, str] | None) -> Matcher:
    """A matcher for a plain map selector (None or empty matches nothing)."""
    if not sel:
        return _never
    items = tuple(sel.items())
    return lambda labels: all(labels.get(k) == v for k, v in items)


def selector_of(obj: dict[str, Any]) -> Matcher:
    """The selector of a workload object: core/v1 kinds carry a plain map, apps/batch a
    LabelSelector."""
    sel = (obj.get("spec") or {}).get("selector")
    if (obj.get("apiVersion") or "v1") == "v1":
        return from_map(sel)
    return label_selector(sel)


def labels_of(obj: dict[str, Any]) -> Labels:
    return (obj.get("metadata") or {}).get("labels") or {}
