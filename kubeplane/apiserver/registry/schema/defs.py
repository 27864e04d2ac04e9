"""Built-in type definitions and a walker over them.

The definitions come from kubernetes-validate (`$defs` of one Kubernetes version, JSON
Schema 2020-12 with Kubernetes' `x-kubernetes-*` extensions). `SchemaNode` wraps one
schema dict, resolving `$ref`, so that callers can walk an object's fields:

    node = SchemaNode.for_definition("io.k8s.api.core.v1.Pod")
    node.field("spec").field("containers").merge_key   # -> "name"

CRD schemas (inline openAPIV3Schema, no `$ref`) are wrapped the same way with
`SchemaNode(schema_dict)`. A missing schema is `None`; callers treat it as "unknown
structure" (atomic for apply, replace-on-patch for lists).
"""
from __future__ import annotations

import functools
import os
from typing import Any

import orjson

KUBE_VERSION = "v1.33.0"
_REF_PREFIX = "#/$defs/"


def _schema_dir(strict: bool = False) -> str:
    import kubernetes_validate

    base = os.path.join(os.path.dirname(kubernetes_validate.__file__), "kubernetes-json-schema")
    return os.path.join(base, f"{KUBE_VERSION}-local" + ("-strict" if strict else ""))


@functools.cache
def definitions() -> dict[str, dict[str, Any]]:
    """All definitions by name (e.g. "io.k8s.api.core.v1.Pod"); loaded once, ~1.4 MB."""
    with open(os.path.join(_schema_dir(), "_definitions.json"), "rb") as f:
        return orjson.loads(f.read())["$defs"]


def resolve(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    """Follow `$ref` chains (built-in definitions only)."""
    while schema is not None and "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith(_REF_PREFIX):
            return None
        schema = definitions().get(ref[len(_REF_PREFIX):])
    return schema


def types_of(schema: dict[str, Any]) -> set[str]:
    """The JSON types a schema allows, "null" removed (kubernetes-validate writes
    `"type": ["string", "null"]`; `oneOf` is used for IntOrString and Quantity)."""
    t = schema.get("type")
    if isinstance(t, str):
        out = {t}
    elif isinstance(t, list):
        out = set(t)
    else:
        out = set()
        for alt in [*(schema.get("oneOf") or ()), *(schema.get("anyOf") or ())]:
            alt = resolve(alt) or {}
            out |= types_of(alt)
    out.discard("null")
    return out


class SchemaNode:
    """One schema position. All accessors return None when the schema does not say."""

    __slots__ = ("schema", "name")

    def __init__(self, schema: dict[str, Any], name: str | None = None):
        self.schema = resolve(schema) or {}
        self.name = name  # definition name when this node is a top-level definition

    @classmethod
    def for_definition(cls, def_name: str) -> SchemaNode | None:
        s = definitions().get(def_name)
        return cls(s, def_name) if s is not None else None

    def _child(self, s: dict[str, Any] | None) -> SchemaNode | None:
        if s is None:
            return None
        name = None
        if "$ref" in s and s["$ref"].startswith(_REF_PREFIX):
            name = s["$ref"][len(_REF_PREFIX):]
        node = SchemaNode(s, name)
        # a property's own x-kubernetes-* keys sit beside its $ref; keep them visible
        if "$ref" in s and len(s) > 1:
            merged = dict(node.schema)
            merged.update({k: v for k, v in s.items() if k != "$ref"})
            node.schema = merged
        return node

    @property
    def types(self) -> set[str]:
        return types_of(self.schema)

    @property
    def properties(self) -> dict[str, Any]:
        return self.schema.get("properties") or {}

    def field(self, name: str) -> SchemaNode | None:
        """The schema of property `name`, or of map values when the object is a map."""
        props = self.schema.get("properties")
        if props and name in props:
            return self._child(props[name])
        return self.additional()

    def additional(self) -> SchemaNode | None:
        ap = self.schema.get("additionalProperties")
        return self._child(ap) if isinstance(ap, dict) else None

    def items(self) -> SchemaNode | None:
        it = self.schema.get("items")
        return self._child(it) if isinstance(it, dict) else None

    @property
    def required(self) -> list[str]:
        return self.schema.get("required") or []

    @property
    def patch_strategy(self) -> str | None:
        """"merge", "replace", "retainKeys" or "merge,retainKeys" (strategic merge patch)."""
        return self.schema.get("x-kubernetes-patch-strategy")

    @property
    def merge_key(self) -> str | None:
        return self.schema.get("x-kubernetes-patch-merge-key")

    @property
    def list_type(self) -> str | None:
        """"atomic", "set" or "map" (server-side apply)."""
        return self.schema.get("x-kubernetes-list-type")

    @property
    def map_keys(self) -> list[str]:
        return self.schema.get("x-kubernetes-list-map-keys") or []

    @property
    def map_type(self) -> str | None:
        """"atomic" or "granular" for objects (server-side apply)."""
        return self.schema.get("x-kubernetes-map-type")

    @property
    def preserve_unknown_fields(self) -> bool:
        return bool(self.schema.get("x-kubernetes-preserve-unknown-fields"))

    @property
    def int_or_string(self) -> bool:
        return bool(self.schema.get("x-kubernetes-int-or-string")) or self.types == {"string", "integer"}

    def __repr__(self) -> str:
        return f"SchemaNode({self.name or sorted(self.types)})"
