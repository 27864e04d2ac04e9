"""The informer's local cache: objects by key, plus secondary indexes.

An `Indexer` maps meta_key(obj) -> obj and keeps, for every registered index function
fn(obj) -> list of values, the sets value -> keys. Invariant: after every add, update,
delete or replace, each index holds exactly the keys whose object yields that value
(the old object's values are removed before the new object's are added). Objects are
stored as given (plain dicts); callers must not mutate what they get back.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .resources import meta_key

IndexFunc = Callable[[dict[str, Any]], list[str]]


def namespace_index(obj: dict[str, Any]) -> list[str]:
    """client-go's MetaNamespaceIndexFunc."""
    ns = (obj.get("metadata") or {}).get("namespace")
    return [ns] if ns else []


def node_name_index(obj: dict[str, Any]) -> list[str]:
    """Pods by spec.nodeName ("" for unscheduled pods, so those can be listed too)."""
    return [(obj.get("spec") or {}).get("nodeName") or ""]


def label_index(label: str) -> IndexFunc:
    """An index on one label's value (objects without the label are not indexed)."""
    def fn(obj: dict[str, Any]) -> list[str]:
        v = ((obj.get("metadata") or {}).get("labels") or {}).get(label)
        return [v] if v is not None else []
    return fn


class Indexer:
    NAMESPACE = "namespace"
    NODE_NAME = "nodeName"

    def __init__(self, indexers: dict[str, IndexFunc] | None = None):
        self._items: dict[str, dict[str, Any]] = {}
        self._funcs: dict[str, IndexFunc] = {}
        self._indices: dict[str, dict[str, set[str]]] = {}
        self.add_indexers({self.NAMESPACE: namespace_index, **(indexers or {})})

    # --- reads -----------------------------------------------------------------------------
    def get(self, key: str) -> dict[str, Any] | None:
        return self._items.get(key)

    def get_by_name(self, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self._items.get(f"{namespace}/{name}" if namespace else name)

    def list(self) -> list[dict[str, Any]]:
        return list(self._items.values())

    def keys(self) -> list[str]:
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def by_index(self, name: str, value: str) -> list[dict[str, Any]]:
        """The objects whose index function `name` yields `value`."""
        keys = self._index(name).get(value, ())
        return [self._items[k] for k in keys]

    def index_keys(self, name: str, value: str) -> list[str]:
        return list(self._index(name).get(value, ()))

    def index_values(self, name: str) -> list[str]:
        """The values index `name` currently holds (client-go's ListIndexFuncValues)."""
        return list(self._index(name))

    def _index(self, name: str) -> dict[str, set[str]]:
        try:
            return self._indices[name]
        except KeyError:
            raise KeyError(f"no index named {name!r}") from None

    # --- index management ------------------------------------------------------------------
    def add_indexers(self, indexers: dict[str, IndexFunc]) -> None:
        """Register index functions; existing objects are indexed at once (client-go
        refuses after start; here it is always allowed). Re-registering a name is an error."""
        for name, fn in indexers.items():
            if name in self._funcs:
                if self._funcs[name] is fn:
                    continue
                raise ValueError(f"index {name!r} already exists")
            self._funcs[name] = fn
            idx: dict[str, set[str]] = {}
            for k, obj in self._items.items():
                for v in fn(obj):
                    idx.setdefault(v, set()).add(k)
            self._indices[name] = idx

    # --- writes (the informer's) -----------------------------------------------------------
    def _unindex(self, key: str, obj: dict[str, Any]) -> None:
        for name, fn in self._funcs.items():
            idx = self._indices[name]
            for v in fn(obj):
                ks = idx.get(v)
                if ks is not None:
                    ks.discard(key)
                    if not ks:
                        del idx[v]

    def _reindex(self, key: str, obj: dict[str, Any]) -> None:
        for name, fn in self._funcs.items():
            idx = self._indices[name]
            for v in fn(obj):
                idx.setdefault(v, set()).add(key)

    def update(self, obj: dict[str, Any], key: str | None = None) -> dict[str, Any] | None:
        """Add or replace one object; returns the old one (None if it is new)."""
        key = key or meta_key(obj)
        old = self._items.get(key)
        if old is not None:
            self._unindex(key, old)
        self._items[key] = obj
        self._reindex(key, obj)
        return old

    add = update

    def delete(self, key: str) -> dict[str, Any] | None:
        old = self._items.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        return old

    def replace(self, objs: Iterable[dict[str, Any]]) -> None:
        """The whole content at once (after a LIST or a WatchList's initial events)."""
        self._items = {}
        self._indices = {name: {} for name in self._funcs}
        for obj in objs:
            self.update(obj)
