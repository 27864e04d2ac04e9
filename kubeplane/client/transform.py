"""Transforms: what an informer drops from each object before caching it.

managedFields are often a third of a pod's JSON and no controller reads them; dropping
them is the default (client-go users set the same with SetTransform). A transform gets
the decoded dict and returns the dict to keep; it may modify it in place.
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

Transform = Callable[[dict[str, Any]], dict[str, Any]]


def strip_managed_fields(obj: dict[str, Any]) -> dict[str, Any]:
    md = obj.get("metadata")
    if md is not None:
        md.pop("managedFields", None)
    return obj


def strip(*paths: str) -> Transform:
    """A transform dropping dotted paths, e.g. strip("metadata.managedFields",
    "metadata.annotations.kubectl.kubernetes.io/last-applied-configuration") — the last
    path component is taken whole, so keys containing dots work there."""
    split = [p.split(".", 1) for p in paths]

    def fn(obj: dict[str, Any]) -> dict[str, Any]:
        for parts in split:
            _drop(obj, parts[0], parts[1] if len(parts) > 1 else None)
        return obj
    return fn


def _drop(d: Any, head: str, rest: str | None) -> None:
    if not isinstance(d, dict):
        return
    if rest is None:
        d.pop(head, None)
        return
    if head in d:
        sub = d[head]
        nxt = rest.split(".", 1)
        if isinstance(sub, dict) and rest in sub:
            sub.pop(rest, None)
        else:
            _drop(sub, nxt[0], nxt[1] if len(nxt) > 1 else None)


def chain(*fns: Transform) -> Transform:
    def fn(obj: dict[str, Any]) -> dict[str, Any]:
        for f in fns:
            obj = f(obj)
        return obj
    return fn


def intern_strings(obj: dict[str, Any], max_len: int = 64) -> dict[str, Any]:
    """Make equal short string values one shared object (sys.intern), in place.

    Informers cache thousands of objects that repeat the same values (image names,
    "IfNotPresent", "/dev/termination-log", node names, label values); the JSON decoder
    makes a fresh str for each. Sharing them cuts a cached pod's memory by about a third
    (bench informer) for about 0.4 µs per value of CPU. Dict keys are already shared by
    orjson's key cache. Opt in: `chain(strip_managed_fields, intern_strings)`."""
    _intern_walk(obj, max_len)
    return obj


def _intern_walk(o: Any, max_len: int) -> None:
    intern = sys.intern
    stack = [o]
    while stack:
        cur = stack.pop()
        items = cur.items() if type(cur) is dict else enumerate(cur)
        for k, v in items:
            t = type(v)
            if t is str:
                if len(v) <= max_len:
                    cur[k] = intern(v)
            elif t is dict or t is list:
                stack.append(v)


def strip_and_intern(obj: dict[str, Any]) -> dict[str, Any]:
    """strip_managed_fields, then intern_strings."""
    return intern_strings(strip_managed_fields(obj))
