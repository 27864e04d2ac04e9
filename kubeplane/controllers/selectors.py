"""Label selectors as controllers evaluate them (apimachinery's labels.Selector).

Two forms: a `metav1.LabelSelector` ({matchLabels, matchExpressions}; apps/v1, batch/v1)
and a plain map (core/v1 ReplicationController and Service selectors). Invariants, as
upstream's LabelSelectorAsSelector and SelectorFromSet:
- a LabelSelector that is None matches nothing; an empty one ({}) matches everything;
- a plain map that is None or empty matches nothing (a Service without a selector has
  no endpoints; an RC's validation forbids it anyway);
- In/NotIn/Exists/DoesNotExist follow upstream: NotIn and DoesNotExist match objects
  that lack the key.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

Labels = dict[str, str]
Matcher = Callable[[Labels], bool]


def _nothing(_: Labels) -> bool:
    return False


def _everything(_: Labels) -> bool:
    return True


def from_label_selector(sel: dict[str, Any] | None) -> Matcher:
    """A matcher for a metav1.LabelSelector (None matches nothing, {} everything)."""
    if sel is None:
        return _nothing
    must = dict(sel.get("matchLabels") or {})
    exprs = [(e.get("key", ""), e.get("operator", ""), frozenset(e.get("values") or ()))
             for e in sel.get("matchExpressions") or ()]
    if not must and not exprs:
        return _everything

    def match(labels: Labels) -> bool:
        for k, v in must.items():
            if labels.get(k) != v:
                return False
        for key, op, values in exprs:
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
            else:                     # an unknown operator never matches (validation rejects it)
                return False
        return True
    return match


def from_map(sel: dict[str, str] | None) -> Matcher:
    """A matcher for a plain map selector (None or empty matches nothing)."""
    if not sel:
        return _nothing
    items = tuple(sel.items())
    return lambda labels: all(labels.get(k) == v for k, v in items)


def selector_of(obj: dict[str, Any]) -> Matcher:
    """The selector of a workload object: core/v1 kinds carry a plain map, apps/batch a
    LabelSelector."""
    sel = (obj.get("spec") or {}).get("selector")
    if (obj.get("apiVersion") or "v1") == "v1":
        return from_map(sel)
    return from_label_selector(sel)


def labels_of(obj: dict[str, Any]) -> Labels:
    return (obj.get("metadata") or {}).get("labels") or {}
