"""Field ownership (metadata.managedFields) and server-side apply, after upstream's
sigs.k8s.io/structured-merge-diff and k8s.io/apiserver/.../handlers/fieldmanager.

Model. A *path* is a tuple of path elements, each kept in its FieldsV1 spelling:
"f:<field>", "k:<compact JSON of the key fields, sorted>" (an item of a list-map),
"v:<JSON value>" (an item of a set), "i:<index>". A *field set* is a Python set of paths
(its members). FieldsV1 is the trie of a set: a node that is a member and has children
carries ".": {}; a member without children is {}.

What a value contributes to a set (upstream TypedValue.ToFieldSet): every scalar; an
atomic list or map as a whole; every list item (".") and everything in it; map entries
that are not declared properties of a struct (labels' keys, unknown fields) even when
they have children. Lists are "map" or "set" by x-kubernetes-list-type, else by the patch
strategy (merge + key = map, merge = set), else atomic; maps are atomic only with
x-kubernetes-map-type: atomic. With no schema, maps are granular (every key a member)
and lists atomic. `metadata` at the root always uses ObjectMeta's schema.

Never tracked (upstream stripMeta, plus deletionTimestamp): apiVersion, kind, metadata
itself, metadata.{name, namespace, creationTimestamp, selfLink, uid, generation,
managedFields, resourceVersion, deletionTimestamp}; nor anything under the caller's
`reset_fields` / `ignore_fields` (e.g. ["status"] on the main resource).

Speed (every create and update runs this): schema lookups are memoized per schema
position (`_S`); a create builds its FieldsV1 in one walk (`created_fields`) instead of
path sets; `compare` skips subtrees that are unchanged at C speed (`_unchanged`). Each
fast path is checked against the general one in tests/apiserver/test_fieldmanager_fast.py.

Left out of upstream: version conversion of managers' sets (all versions are treated as
one), the cap of 10 update managers ("ancient-changes"), last-applied-configuration
interplay, defaulting of the applied config (only the key default protocol=TCP of port
lists is known).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable

import orjson

from ..machinery.errors import APIError, bad_request
from .patch import deep_copy
from .schema.defs import SchemaNode, definitions

Path = tuple[str, ...]

OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
BEFORE_FIRST_APPLY = "before-first-apply"
_KEY_DEFAULTS = {"protocol": "TCP"}   # list-map key fields with a schema default upstream

_STRIPPED: frozenset[Path] = frozenset({
    ("f:apiVersion",), ("f:kind",), ("f:metadata",),
    *(("f:metadata", "f:" + n) for n in (
        "name", "namespace", "creationTimestamp", "selfLink", "uid", "generation",
        "managedFields", "resourceVersion", "deletionTimestamp")),
})

_MISSING = object()


# --------------------------------------------------------------------------- JSON as Go writes it

_GO_STR: dict[str, str] = {}


def _go_str(s: str) -> str:
    out = _GO_STR.get(s)
    if out is None:
        out = json.dumps(s, ensure_ascii=False)
        out = (out.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
               .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))
        if len(s) <= 256:           # field names and key values repeat: remember them
            if len(_GO_STR) >= 16384:
                _GO_STR.clear()
            _GO_STR[s] = out
    return out


def go_json(v: Any) -> str:
    """Compact JSON with Go's encoding/json choices (sorted keys, HTML escaping)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) < 1e21 else json.dumps(v)
    if isinstance(v, str):
        return _go_str(v)
    if isinstance(v, list):
        return "[" + ",".join(go_json(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(f"{_go_str(k)}:{go_json(v[k])}" for k in sorted(v)) + "}"
    raise TypeError(f"not a JSON value: {type(v).__name__}")


# --------------------------------------------------------------------------- schema classification

_UNSET: Any = object()


class _S:
    """A schema position as field tracking sees it: a SchemaNode with its lookups
    (children, list kind, map type, struct-ness) computed once and remembered.

    Nodes are shared: one tree per root schema (see `_wrap`), and every pure `$ref` to a
    built-in definition maps to one node per definition, so recursive schemas stay finite.
    Only declared properties get their own memo entry; any other key shares the
    additionalProperties child, so memory does not grow with the objects seen."""

    __slots__ = ("node", "props", "required", "atomic_map", "lkind", "_struct", "_is_array",
                 "_fields", "_add", "_items", "_meta")

    def __init__(self, node: SchemaNode):
        self.node = node
        self.props: dict[str, Any] = node.properties
        self.required: list[str] = node.required
        self.atomic_map = node.map_type == "atomic"
        self.lkind = _list_kind_of(node)
        self._struct: Any = _UNSET
        self._is_array: Any = _UNSET
        self._fields: dict[str, _S | None] = {}
        self._add: Any = _UNSET
        self._items: Any = _UNSET
        self._meta: Any = _UNSET

    # (types are looked at only when needed, as before: SchemaNode.types can fail on odd schemas)
    @property
    def struct(self) -> bool:
        """A struct-typed field: Go objects always carry it (see _zero_value)."""
        if self._struct is _UNSET:
            self._struct = bool(self.props) and not self.atomic_map and \
                "object" in (self.node.types or {"object"})
        return self._struct

    @property
    def is_array(self) -> bool:
        if self._is_array is _UNSET:
            self._is_array = "array" in self.node.types
        return self._is_array

    def field(self, name: str) -> _S | None:
        if name in self.props:
            f = self._fields.get(name, _UNSET)
            if f is _UNSET:
                f = self._fields[name] = _wrap_node(self.node.field(name))
            return f
        return self.additional()

    def additional(self) -> _S | None:
        if self._add is _UNSET:
            self._add = _wrap_node(self.node.additional())
        return self._add

    def items(self) -> _S | None:
        if self._items is _UNSET:
            self._items = _wrap_node(self.node.items())
        return self._items

    def meta(self) -> _S | None:
        """`metadata` at the root: ObjectMeta unless the schema declares its fields."""
        if self._meta is _UNSET:
            m = self.field("metadata")
            self._meta = m if m is not None and m.props else _object_meta()
        return self._meta


_DEFS: dict[str, _S] = {}                          # pure $ref nodes, by definition name
_ROOTS: dict[int, tuple[dict, _S]] = {}            # other roots, by id of their schema dict


def _wrap_node(sn: SchemaNode | None) -> _S | None:
    if sn is None:
        return None
    if sn.name is not None and definitions().get(sn.name) is sn.schema:
        out = _DEFS.get(sn.name)
        if out is None:
            out = _DEFS[sn.name] = _S(sn)
        return out
    return _S(sn)


def _wrap(schema: Any) -> _S | None:
    """The memoized tree for a root schema (a SchemaNode, or an _S already)."""
    if schema is None or isinstance(schema, _S):
        return schema
    if schema.name is not None and definitions().get(schema.name) is schema.schema:
        return _wrap_node(schema)
    hit = _ROOTS.get(id(schema.schema))
    if hit is not None and hit[0] is schema.schema:     # (the dict is held: its id is not reused)
        return hit[1]
    if len(_ROOTS) >= 64:
        _ROOTS.clear()
    out = _S(schema)
    _ROOTS[id(schema.schema)] = (schema.schema, out)
    return out


def _object_meta() -> _S | None:
    return _wrap_node(SchemaNode.for_definition(OBJECT_META))


def _child(node: _S | None, key: str, at_root: bool) -> _S | None:
    if at_root and key == "metadata":
        return node.meta() if node is not None else _object_meta()
    return node.field(key) if node is not None else None


def _declared(node: _S | None, key: str, at_root: bool) -> bool:
    if at_root and key == "metadata":
        return True
    return node is not None and key in node.props


def _atomic_map(node: _S | None) -> bool:
    return node is not None and node.atomic_map


_ATOMIC: tuple[str, list[str]] = ("atomic", [])


def _list_kind(node: _S | None) -> tuple[str, list[str]]:
    """("map", keys) | ("set", []) | ("atomic", [])."""
    return node.lkind if node is not None else _ATOMIC


def _list_kind_of(node: SchemaNode) -> tuple[str, list[str]]:
    lt = node.list_type
    strategy = [p.strip() for p in (node.patch_strategy or "").split(",")]
    if lt is None and "merge" in strategy:
        lt = "map" if node.merge_key else "set"
    if lt == "map":
        keys = node.map_keys or ([node.merge_key] if node.merge_key else [])
        return ("map", keys) if keys else _ATOMIC
    if lt == "set":
        return "set", []
    return _ATOMIC


def _item_pe(item: Any, index: int, kind: str, keys: list[str]) -> str:
    if kind == "set":
        return "v:" + go_json(item)
    if isinstance(item, dict):
        if len(keys) == 1:          # the common case (containers by name), without a dict
            k = keys[0]
            if k in item and not isinstance(item[k], (dict, list)):
                return "k:{" + _go_str(k) + ":" + go_json(item[k]) + "}"
            if k in _KEY_DEFAULTS:
                return "k:{" + _go_str(k) + ":" + go_json(_KEY_DEFAULTS[k]) + "}"
            return f"i:{index}"
        key = {}
        for k in keys:
            if k in item and not isinstance(item[k], (dict, list)):
                key[k] = item[k]
            elif k in _KEY_DEFAULTS:
                key[k] = _KEY_DEFAULTS[k]
        if key:
            return "k:" + go_json(key)
    return f"i:{index}"


def _granular(v: Any, node: _S | None) -> str | None:
    """"map" / "list" when `v` is walked into, None when it is a leaf."""
    if isinstance(v, dict):
        return None if node is not None and node.atomic_map else "map"
    if isinstance(v, list):
        return "list" if node is not None and node.lkind[0] != "atomic" else None
    return None


# --------------------------------------------------------------------------- field sets

def field_set(obj: Any, schema: SchemaNode | None) -> set[Path]:
    """The paths `obj` sets (upstream ToFieldSet), untracked paths included."""
    out: set[Path] = set()
    _to_set(obj, _wrap(schema), (), out)
    return out


def _to_set(v: Any, node: _S | None, path: Path, out: set[Path]) -> None:
    g = _granular(v, node)
    if g == "map":
        for k, cv in v.items():
            p = path + ("f:" + k,)
            _to_set(cv, _child(node, k, not path), p, out)
            if not _declared(node, k, not path):
                out.add(p)
    elif g == "list":
        kind, keys = _list_kind(node)
        items = node.items() if node is not None else None
        for i, item in enumerate(v):
            p = path + (_item_pe(item, i, kind, keys),)
            _to_set(item, items, p, out)
            out.add(p)
    elif path:
        out.add(path)


@dataclass
class _Diff:
    added: set[Path] = field(default_factory=set)
    modified: set[Path] = field(default_factory=set)
    removed: set[Path] = field(default_factory=set)


def compare(old: Any, new: Any, schema: SchemaNode | None) -> _Diff:
    """Paths added, modified and removed from `old` to `new` (upstream TypedValue.Compare):
    leaves by value; a non-leaf item or field is added/removed when it appears/disappears."""
    d = _Diff()
    _cmp(old, new, _wrap(schema), (), d)
    return d


def _all_paths(v: Any, node: _S | None, path: Path, out: set[Path]) -> None:
    if path:
        out.add(path)
    g = _granular(v, node)
    if g == "map":
        for k, cv in v.items():
            _all_paths(cv, _child(node, k, not path), path + ("f:" + k,), out)
    elif g == "list":
        kind, keys = _list_kind(node)
        items = node.items() if node is not None else None
        for i, item in enumerate(v):
            _all_paths(item, items, path + (_item_pe(item, i, kind, keys),), out)


def _zero_value(parent: _S | None, key: str, node: _S | None,
                at_root: bool) -> Any:
    """What a Go object always carries for a field it lacks here: {} for a struct-typed
    field, null for a required list; _MISSING otherwise. Upstream compares Go objects, in
    which such fields always exist, so they are never recorded as added or removed
    themselves (only their contents are). Pointer structs are treated alike (a small
    deviation: upstream records "." for those when they appear)."""
    if node is None or not _declared(parent, key, at_root):
        return _MISSING
    if node.struct:
        return {}
    if parent is not None and key in parent.required and node.is_array:
        return None
    return _MISSING


def _index_items(v: list, node: _S | None) -> dict[str, Any]:
    kind, keys = _list_kind(node)
    out: dict[str, Any] = {}
    for i, item in enumerate(v):
        out.setdefault(_item_pe(item, i, kind, keys), item)
    return out


def _cmp(old: Any, new: Any, node: _S | None, path: Path, d: _Diff) -> None:
    if old is _MISSING:
        _all_paths(new, node, path, d.added)
        return
    if new is _MISSING:
        _all_paths(old, node, path, d.removed)
        return
    go, gn = _granular(old, node), _granular(new, node)
    if old is None and gn:           # null and a container: the container's items count
        go, old = gn, ({} if gn == "map" else [])
    if new is None and go:
        gn, new = go, ({} if go == "map" else [])
    if go == gn == "map" and (old or new):
        for k in list(old) + [k for k in new if k not in old]:
            child = _child(node, k, not path)
            lv, rv = old.get(k, _MISSING), new.get(k, _MISSING)
            if lv is _MISSING or rv is _MISSING:
                zero = _zero_value(node, k, child, not path)
                if zero is not _MISSING:
                    lv = zero if lv is _MISSING else lv
                    rv = zero if rv is _MISSING else rv
            elif _unchanged(lv, rv):
                continue
            _cmp(lv, rv, child, path + ("f:" + k,), d)
    elif go == gn == "list" and (old or new):
        items = node.items() if node is not None else None
        lo, ln = _index_items(old, node), _index_items(new, node)
        for pe in list(lo) + [pe for pe in ln if pe not in lo]:
            lv, rv = lo.get(pe, _MISSING), ln.get(pe, _MISSING)
            if lv is not _MISSING and rv is not _MISSING and _unchanged(lv, rv):
                continue
            _cmp(lv, rv, items, path + (pe,), d)
    elif path and not _same(old, new):
        d.modified.add(path)


def _unchanged(a: Any, b: Any) -> bool:
    """True when `a` and `b` are the same value by `_same`, so that comparing them finds no
    difference; decided at C speed where possible. False may also mean "not sure" (the
    caller then walks them). Scalars: same type and ==. Containers: == and the same JSON
    encoding (== alone takes true for 1 and 1 for 1.0), unless the encoding has a null,
    which could be a NaN (equal to itself inside containers for ==, but not for _same)."""
    t = type(a)
    if t is not type(b):
        return False
    if t is dict or t is list:
        if a != b:
            return False
        try:
            ea = orjson.dumps(a)
            return b"null" not in ea and ea == orjson.dumps(b)
        except TypeError:
            return False
    return t is not float and a == b


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


# --------------------------------------------------------------------------- creates

_ROOT_STRIPPED = frozenset(p[0][2:] for p in _STRIPPED if len(p) == 1)
_META_STRIPPED = frozenset(p[1][2:] for p in _STRIPPED if len(p) == 2)


def created_fields(obj: dict, schema: SchemaNode | None, ignored: list[Path]) -> dict:
    """FieldsV1 of what a create of `obj` (without managedFields) gives its manager:
    `set_to_fields(_tracked(compare({}, obj, schema).added, ignored))`, built in one walk
    without path sets (the walk mirrors _cmp/_all_paths for an old value of {} / zero),
    children visited in FieldsV1 order so that the output needs no sorting pass."""
    root = _wrap(schema)
    if isinstance(obj, dict) and obj and not _atomic_map(root):
        return _fresh_map(obj, root, True, _ROOT_STRIPPED, _ignore_trie(ignored))
    return {}


# A top-level field's FieldsV1 by its value: objects made from one template (a controller's
# pods) share their spec. Key: (root schema, field, ignored subtrie, the value's JSON);
# values holding a null (could be a NaN) or non-JSON types are not remembered.
_CREATED: dict[tuple, bytes] = {}
_JSON_ONLY = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS


def _fresh_top(root: _S | None, k: str, v: Any, member: bool, zero: Any, child: _S | None,
               ign: dict | None) -> dict | None:
    """_fresh_all / _fresh_cmp for a root field, remembered by value."""
    key = None
    if type(v) is dict or type(v) is list:
        try:
            vj = orjson.dumps(v, option=_JSON_ONLY)
            key = (root, k, orjson.dumps(ign) if ign else None, vj) if b"null" not in vj else None
        except TypeError:
            key = None
        if key is not None:
            hit = _CREATED.get(key)
            if hit is not None:
                return orjson.loads(hit) if hit else None
    if zero is _MISSING:
        f = _fresh_all(v, child, member, None, ign)
    else:
        f = _fresh_cmp(zero, v, child, member, None, ign)
    if key is not None:
        if len(_CREATED) >= _CODEC_CACHE:
            _CREATED.clear()
        _CREATED[key] = orjson.dumps(f) if f is not None else b""
    return f


def _ignore_trie(ignored: list[Path]) -> dict:
    """{pe: True (drop the subtree) or a nested trie} for the ignored prefixes."""
    t: dict = {}
    for p in ignored:
        node = t
        for pe in p[:-1]:
            nxt = node.setdefault(pe, {})
            if nxt is True:
                break
            node = nxt
        else:
            node[p[-1]] = True
    return t


def _node(sub: dict | None, member: bool) -> dict | None:
    """A FieldsV1 node: a member is {} or {".": {}, children...}; a non-member is its
    children, or nothing (None) without any."""
    if member:
        return {".": {}, **sub} if sub else {}
    return sub or None


def _fresh_map(v: dict, node: _S | None, at_root: bool, strip: frozenset | None,
               ign: dict | None) -> dict:
    """_cmp({}, v) for a map: every entry is new; declared struct and required-list
    fields compare against their zero value (see _zero_value). Children in order."""
    out: dict = {}
    for k in sorted(v):
        pe = "f:" + k
        sub_ign = None
        if ign:
            sub_ign = ign.get(pe)
            if sub_ign is True:
                continue
        child = _child(node, k, at_root)
        member = strip is None or k not in strip
        child_strip = _META_STRIPPED if at_root and k == "metadata" else None
        zero = _zero_value(node, k, child, at_root)
        if at_root and child_strip is None:
            f = _fresh_top(node, k, v[k], member, zero, child, sub_ign)
        elif zero is _MISSING:
            f = _fresh_all(v[k], child, member, child_strip, sub_ign)
        else:
            f = _fresh_cmp(zero, v[k], child, member, child_strip, sub_ign)
        if f is not None:
            out[pe] = f
    return out


def _ordered_items(v: list, node: _S) -> list[tuple[str, Any]]:
    """(path element, item) for a granular list's items, in FieldsV1 order."""
    kind, keys = node.lkind
    pes = [(_item_pe(item, i, kind, keys), item) for i, item in enumerate(v)]
    if len(pes) > 1:
        t = pes[0][0][0]
        if any(pe[0] != t for pe, _ in pes):
            pes.sort(key=lambda x: _pe_order(x[0]))
        elif t != "i":          # (indices are in order already; k:/v: by their text)
            pes.sort(key=lambda x: x[0])
    return pes


def _fresh_all(v: Any, node: _S | None, member: bool, strip: frozenset | None,
               ign: dict | None) -> dict | None:
    """_all_paths(v): the path and everything under it."""
    sub: dict = {}
    if isinstance(v, dict):
        if node is None or not node.atomic_map:
            for k in sorted(v):
                cpe = "f:" + k
                ci = None
                if ign:
                    ci = ign.get(cpe)
                    if ci is True:
                        continue
                f = _fresh_all(v[k], node.field(k) if node is not None else None,
                               strip is None or k not in strip, None, ci)
                if f is not None:
                    sub[cpe] = f
    elif isinstance(v, list) and node is not None and node.lkind[0] != "atomic":
        items = node.items()
        for pe, item in _ordered_items(v, node):
            f = _fresh_all(item, items, True, None, None)
            have = sub.get(pe)
            if have is None:
                sub[pe] = f
            else:               # a duplicate item: the union of both (all members here)
                _union(have, f)
                sub[pe] = _finish(have)
    return _node(sub, member)


def _union(into: dict, other: dict) -> None:
    for k, v in other.items():
        if k in into:
            _union(into[k], v)
        else:
            into[k] = v


def _finish(t: dict) -> dict:
    """A union of FieldsV1 tries put back in order ("." first, then children)."""
    keys = [k for k in t if k != "."]
    keys.sort(key=_pe_order)
    out: dict = {".": {}} if keys and "." in t else {}
    for k in keys:
        out[k] = _finish(t[k])
    return out


def _fresh_cmp(zero: Any, v: Any, node: _S | None, member: bool, strip: frozenset | None,
               ign: dict | None) -> dict | None:
    """_cmp(zero, v) where zero is {} (a struct field) or None (a required list)."""
    go, gn = _granular(zero, node), _granular(v, node)
    old = zero
    if old is None and gn:
        go, old = gn, ({} if gn == "map" else [])
    if v is None and go:
        gn, v = go, ({} if go == "map" else [])
    if go == gn == "map" and (old or v):
        return _fresh_map(v, node, False, strip, ign) or None
    if go == gn == "list" and (old or v):
        items = node.items()             # type: ignore[union-attr]
        sub: dict = {}
        for pe, item in _ordered_items(v, node):    # type: ignore[arg-type]
            if pe not in sub:            # (_index_items: the first item of a key counts)
                sub[pe] = _fresh_all(item, items, True, None, None)
        return sub or None
    if not _same(old, v):
        return _node(None, member)
    return None


# --------------------------------------------------------------------------- FieldsV1

def _canon_pe(key: str) -> str:
    if len(key) < 2 or key[1] != ":":
        raise ValueError(f"invalid path element {key!r}")
    t, body = key[0], key[2:]
    if t == "f":
        return key
    if t == "k":
        v = json.loads(body)
        if not isinstance(v, dict):
            raise ValueError(f"invalid key {key!r}")
        return "k:" + go_json(v)
    if t == "v":
        return "v:" + go_json(json.loads(body))
    if t == "i":
        return f"i:{int(body)}"
    raise ValueError(f"unknown path element type {key!r}")


# Objects of one shape share their FieldsV1: decoding and encoding are remembered by value
# (bounded; cleared when full). Keys: the FieldsV1's JSON / the frozen field set.
_DECODED: dict[bytes, frozenset[Path]] = {}
_ENCODED: dict[frozenset[Path], bytes] = {}
_CODEC_CACHE = 512


def fields_to_set(fields: Any) -> set[Path]:
    """Decode FieldsV1 into a field set; ValueError when malformed."""
    key = None
    if isinstance(fields, dict):
        try:
            key = orjson.dumps(fields)
        except TypeError:
            key = None
        hit = _DECODED.get(key) if key is not None else None
        if hit is not None:
            return set(hit)
    out = _fields_to_set(fields)
    if key is not None:
        if len(_DECODED) >= _CODEC_CACHE:
            _DECODED.clear()
        _DECODED[key] = frozenset(out)
    return out


def _fields_to_set(fields: Any) -> set[Path]:
    out: set[Path] = set()
    if fields is None:
        return out
    if not isinstance(fields, dict):
        raise ValueError("fieldsV1 must be an object")
    stack: list[tuple[dict, Path]] = [(fields, ())]
    while stack:
        node, prefix = stack.pop()
        for key, sub in node.items():
            if key == ".":
                if prefix:
                    out.add(prefix)
                continue
            if not isinstance(sub, dict):
                raise ValueError(f"invalid fieldsV1 node under {key!r}")
            p = prefix + (_canon_pe(key),)
            if not sub:
                out.add(p)
            else:
                stack.append((sub, p))
    return out


def _pe_order(pe: str) -> tuple:
    t = pe[0]
    if t == "i":
        return (3, int(pe[2:]), "")
    return ({"f": 0, "k": 1, "v": 2}.get(t, 4), 0, pe[2:])


def set_to_fields(paths: Iterable[Path]) -> dict:
    """Encode a field set as FieldsV1 ("." first, then children in upstream's order)."""
    key = frozenset(paths)
    hit = _ENCODED.get(key)
    if hit is not None:
        return orjson.loads(hit)
    out = _set_to_fields(key)
    if len(_ENCODED) >= _CODEC_CACHE:
        _ENCODED.clear()
    _ENCODED[key] = orjson.dumps(out)
    return out


def _set_to_fields(paths: Iterable[Path]) -> dict:
    trie: dict = {}
    members: set[Path] = set()
    for p in paths:
        if not p:
            continue
        members.add(p)
        node = trie
        for pe in p:
            node = node.setdefault(pe, {})

    def emit(node: dict, prefix: Path) -> dict:
        out: dict = {}
        for pe in sorted(node, key=_pe_order):
            p = prefix + (pe,)
            sub = emit(node[pe], p)
            if sub and p in members:
                out[pe] = {".": {}, **sub}
            else:
                out[pe] = sub
        return out

    return emit(trie, ())


def path_string(path: Path) -> str:
    """Upstream fieldpath.Path.String(): `.spec.containers[name="nginx"].image`."""
    out = []
    for pe in path:
        t, body = pe[0], pe[2:]
        if t == "f":
            out.append("." + body)
        elif t == "k":
            key = json.loads(body)
            out.append("[" + ",".join(f"{k}={_to_string(key[k])}" for k in sorted(key)) + "]")
        elif t == "v":
            out.append(f"[={_to_string(json.loads(body))}]")
        else:
            out.append(f"[{body}]")
    return "".join(out)


def _to_string(v: Any) -> str:
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    return go_json(v)


# --------------------------------------------------------------------------- managers

@dataclass
class _Entry:
    manager: str
    operation: str
    api_version: str
    subresource: str
    time: str | None
    fields: set[Path]

    @property
    def identity(self) -> tuple[str, str, str, str]:
        """Upstream BuildManagerIdentifier: appliers are one manager across versions."""
        version = "" if self.operation == "Apply" else self.api_version
        return (self.manager, self.operation, version, self.subresource)

    def describe(self) -> str:
        """Upstream printManager (conflict messages)."""
        if self.operation == "Update":
            return f"{json.dumps(self.manager, ensure_ascii=False)} using {self.api_version}"
        return json.dumps(self.manager, ensure_ascii=False)

    def encode(self, fields_v1: dict | None = None) -> dict[str, Any]:
        """The managedFields entry; `fields_v1` when the caller has it already."""
        out: dict[str, Any] = {"manager": self.manager, "operation": self.operation,
                               "apiVersion": self.api_version}
        if self.time:
            out["time"] = self.time
        out["fieldsType"] = "FieldsV1"
        out["fieldsV1"] = set_to_fields(self.fields) if fields_v1 is None else fields_v1
        if self.subresource:
            out["subresource"] = self.subresource
        return out


def decode_managed_fields(entries: Any) -> list[_Entry]:
    """Parse metadata.managedFields; ValueError when malformed. Later duplicates of one
    manager identity replace earlier ones (upstream decodes into a map)."""
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise ValueError("managedFields must be a list")
    out: dict[tuple, _Entry] = {}
    for e in entries:
        if not isinstance(e, dict):
            raise ValueError("managedFields entries must be objects")
        strs = {k: e.get(k) or "" for k in ("manager", "operation", "apiVersion", "subresource")}
        if not all(isinstance(v, str) for v in strs.values()):
            raise ValueError("managedFields entry fields must be strings")
        t = e.get("time")
        entry = _Entry(strs["manager"], strs["operation"], strs["apiVersion"],
                       strs["subresource"], t if isinstance(t, str) else None,
                       fields_to_set(e.get("fieldsV1")))
        out[entry.identity] = entry
    return list(out.values())


def _seconds(t: str | None) -> float:
    if not t:
        return 0
    try:
        return datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() // 1
    except ValueError:
        return 0


def encode_managed_fields(entries: Iterable[_Entry]) -> list[dict[str, Any]]:
    """Entries in upstream's order: operation, time (seconds), manager, apiVersion, subresource."""
    live = [e for e in entries if e.fields]
    live.sort(key=lambda e: (e.operation, _seconds(e.time), e.manager, e.api_version,
                             e.subresource))
    return [e.encode() for e in live]


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- helpers

def _ignored(paths: Iterable[str]) -> list[Path]:
    return [tuple("f:" + p for p in name.split(".")) for name in paths if name]


def _tracked(paths: set[Path], ignored: list[Path]) -> set[Path]:
    return {p for p in paths
            if p not in _STRIPPED and not any(p[:len(i)] == i for i in ignored)}


def _without_managed_fields(obj: dict) -> dict:
    out = dict(obj)
    meta = out.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta:
        out["metadata"] = {k: v for k, v in meta.items() if k != "managedFields"}
    return out


def _with_managed_fields(obj: dict, entries: list[_Entry]) -> dict:
    out = deep_copy(obj)
    meta = out.get("metadata")
    if meta is None:
        meta = out["metadata"] = {}
    elif not isinstance(meta, dict):
        return out      # malformed metadata: left for validation to report
    encoded = encode_managed_fields(entries)
    if encoded:
        meta["managedFields"] = encoded
    else:
        meta.pop("managedFields", None)
    return out


def _set_managed_fields(obj: dict, encoded: list[dict[str, Any]]) -> dict:
    """`obj` with metadata.managedFields set to `encoded` (removed when empty). A new top
    level and metadata; everything else is shared with `obj` (callers hand `new` over)."""
    out = dict(obj)
    meta = out.get("metadata")
    if meta is None:
        meta = out["metadata"] = {}
    elif not isinstance(meta, dict):
        return out      # malformed metadata: left for validation to report
    else:
        meta = out["metadata"] = dict(meta)
    if encoded:
        meta["managedFields"] = encoded
    else:
        meta.pop("managedFields", None)
    return out


def _meta(obj: Any) -> dict:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    return meta if isinstance(meta, dict) else {}


def _record_update(entries: list[_Entry], old: Any, new: Any, schema: _S | None,
                   ident: _Entry, ignored: list[Path], now: str) -> list[_Entry]:
    """Upstream Updater.Update + managedFieldsUpdater: the fields this operation changed go
    to `ident` (merged with its earlier set) and leave every other manager; removed fields
    leave everyone; the entry's time moves only when its set changed."""
    d = compare(old, new, schema)
    changed = _tracked(d.added | d.modified, ignored)
    removed = _tracked(d.removed, ignored)
    own = changed - removed
    former = next((e for e in entries if e.identity == ident.identity), None)
    before = set(former.fields) if former else None
    for e in entries:
        e.fields -= changed
        e.fields -= removed
    if own:
        if former is None:
            former = ident
            entries.append(former)
        former.fields |= own
        if before is None or former.fields != before:
            former.time = now
            former.api_version = ident.api_version
    return [e for e in entries if e.fields]


# --------------------------------------------------------------------------- public API

def update_managed_fields(old: dict | None, new: dict, manager: str, operation: str = "Update",
                          subresource: str = "", api_version: str = "", now: str | None = None,
                          *, schema: SchemaNode | None = None,
                          reset_fields: Iterable[str] = ()) -> dict:
    """`new` with metadata.managedFields updated for a create/update/patch by `manager`.

    `old` is the stored object (None on create). The base ownership is `new`'s own
    managedFields when the client sent a non-empty, well-formed list on the main resource
    (upstream lets clients edit them; `[{}]` therefore clears all ownership), else `old`'s.
    `reset_fields` are dotted field names never tracked ("status" on the main resource of
    a type with a status subresource; the other top-level fields on /status).
    """
    if not isinstance(new, dict):
        raise bad_request("the object is not a JSON object")
    now = now or now_rfc3339()
    ignored = _ignored(reset_fields)
    entries = None
    sent = _meta(new).get("managedFields")
    if not subresource and isinstance(sent, list) and sent:
        try:
            entries = decode_managed_fields(sent)
        except ValueError:
            entries = None
    if entries is None:
        try:
            entries = decode_managed_fields(_meta(old).get("managedFields")) if old else []
        except ValueError:
            entries = []
    new_s = _without_managed_fields(new)
    old_s = _without_managed_fields(old) if isinstance(old, dict) else {}
    ident = _Entry(manager, operation, api_version, subresource, now, set())
    try:
        if not entries and not old_s:
            # a create (the common case): the manager owns every tracked field; FieldsV1
            # straight from one walk (same result as the general path below)
            fields_v1 = created_fields(new_s, schema, ignored)
            return _set_managed_fields(new, [ident.encode(fields_v1)] if fields_v1 else [])
        entries = _record_update(entries, old_s, new_s, schema, ident, ignored, now)
    except RecursionError:
        raise bad_request("the object is nested too deeply") from None
    return _set_managed_fields(new, encode_managed_fields(entries))


def apply(live: dict | None, applied: dict, manager: str, force: bool = False,
          schema: SchemaNode | None = None, api_version: str = "", now: str | None = None,
          ignore_fields: Iterable[str] = (), subresource: str = "") -> dict:
    """Server-side apply of the configuration `applied` by `manager` onto `live` (None:
    create). Returns the new object with metadata.managedFields.

    - The configuration merges into the live object: scalars and atomic lists/maps are
      replaced, maps merge by key, list-maps by their keys, sets by value.
    - The manager's Apply entry becomes exactly the fields the configuration sets. Fields
      it applied before and no longer sets are removed from the object unless another
      manager (or the new configuration) still owns them; containers emptied that way go.
    - A field the configuration changes (value differs from live) that another manager
      owns is a conflict: 409 Conflict with upstream's message and FieldManagerConflict
      causes, unless `force`, which moves the field to the applier. Applying the same
      value as another manager is no conflict: both then own the field.
    - An object without managedFields first has all its fields attributed to
      "before-first-apply" (operation Update), as upstream.
    - Nulls in the configuration are dropped; fields under `ignore_fields` are neither
      applied nor tracked. metadata.managedFields in the configuration is a 400.
    """
    if not isinstance(applied, dict):
        raise bad_request("the applied configuration is not a JSON object")
    meta = applied.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        raise bad_request("metadata must be an object")
    if isinstance(meta, dict) and meta.get("managedFields") is not None:
        raise bad_request("metadata.managedFields must be nil")
    now = now or now_rfc3339()
    ignored = _ignored(ignore_fields)
    try:
        return _apply(live, applied, manager, force, _wrap(schema), api_version, now, ignored,
                      subresource)
    except RecursionError:
        raise bad_request("the applied configuration is nested too deeply") from None


def _drop(v: Any, ignored: list[Path], path: Path = ()) -> Any:
    """The configuration without nulls and ignored fields."""
    if isinstance(v, dict):
        out = {}
        for k, x in v.items():
            p = path + ("f:" + k,)
            if x is None or p in ignored:
                continue
            out[k] = _drop(x, ignored, p)
        return out
    if isinstance(v, list):
        return [_drop(x, [], path) for x in v if x is not None]
    return v


def _apply(live: dict | None, applied: dict, manager: str, force: bool,
           schema: _S | None, api_version: str, now: str, ignored: list[Path],
           subresource: str) -> dict:
    config = _drop(applied, ignored)
    if isinstance(live, dict):
        live_s = _without_managed_fields(live)
        try:
            entries = decode_managed_fields(_meta(live).get("managedFields"))
        except ValueError:
            entries = []
        if not entries:
            first = _Entry(BEFORE_FIRST_APPLY, "Update", api_version, "", now, set())
            entries = _record_update([], {}, live_s, schema, first, ignored, now)
    else:
        live_s, entries = {}, []
    before = {e.identity: set(e.fields) for e in entries}

    merged = _merge(live_s, config, schema, ())
    new_set = _tracked(field_set(config, schema), ignored)
    me = _Entry(manager, "Apply", api_version, subresource, now, new_set)
    former = next((e for e in entries if e.identity == me.identity), None)
    others = [e for e in entries if e is not former]

    if former is not None:
        owned = set(new_set)
        for e in others:
            owned |= e.fields
        kept = {p[:i] for p in owned for i in range(1, len(p) + 1)}
        for p in sorted(former.fields - kept, key=len):
            _remove_path(merged, p, schema, kept)

    d = compare(live_s, merged, schema)
    changed = _tracked(d.added | d.modified, ignored)
    removed = _tracked(d.removed, ignored)
    conflicts = [(e, sorted(e.fields & changed, key=_path_key)) for e in others]
    conflicts = [(e, ps) for e, ps in conflicts if ps]
    if conflicts and not force:
        raise _conflict_error(conflicts)
    for e in others:
        e.fields -= changed
        e.fields -= removed
    if former is not None:
        former.fields = new_set
        former.api_version = api_version
        me = former
    else:
        entries.append(me)
    after = {e.identity: e.fields for e in entries if e.fields}
    if former is not None and _same(merged, live_s) and after == {
            k: v for k, v in before.items() if v}:
        pass    # nothing changed: keep the applier's time
    else:
        me.time = now
    return _with_managed_fields(merged, [e for e in entries if e.fields])


def _path_key(p: Path) -> tuple:
    return tuple(_pe_order(pe) for pe in p)


def _conflict_error(conflicts: list[tuple[_Entry, list[Path]]]) -> APIError:
    """Upstream internal.NewConflictError: 409 Conflict, one cause per conflicting path."""
    def ident_json(e: _Entry) -> str:
        m, op, ver, sub = e.identity
        d = {"manager": m, "operation": op}
        if ver:
            d["apiVersion"] = ver
        if sub:
            d["subresource"] = sub
        return json.dumps(d)

    conflicts = sorted(conflicts, key=lambda c: ident_json(c[0]))
    flat = [(e, p) for e, ps in conflicts for p in ps]
    causes = [{"reason": "FieldManagerConflict", "message": f"conflict with {e.describe()}",
               "field": path_string(p)} for e, p in flat]
    if len(flat) == 1:
        e, p = flat[0]
        msg = f"Apply failed with 1 conflict: conflict with {e.describe()}: {path_string(p)}"
    else:
        lines = []
        for e, ps in conflicts:
            lines.append(f"conflicts with {e.describe()}:")
            lines.extend(f"- {path_string(p)}" for p in ps)
        msg = f"Apply failed with {len(flat)} conflicts: " + "\n".join(lines)
    return APIError(409, "Conflict", msg, {"causes": causes})


# --------------------------------------------------------------------------- merge and removal

def _merge(lhs: Any, rhs: Any, node: _S | None, path: Path) -> Any:
    """Merge the configuration `rhs` into `lhs` (upstream TypedValue.Merge); new values."""
    if isinstance(rhs, dict):
        if _atomic_map(node) or not isinstance(lhs, dict):
            return deep_copy(rhs)
        out = dict(lhs)
        for k, rv in rhs.items():
            out[k] = _merge(lhs.get(k, _MISSING), rv, _child(node, k, not path),
                            path + ("f:" + k,))
        return out
    if isinstance(rhs, list):
        kind, keys = _list_kind(node)
        if kind == "atomic" or not isinstance(lhs, list):
            return deep_copy(rhs)
        return _merge_list(lhs, rhs, node, kind, keys, path)
    return rhs


def _merge_list(lhs: list, rhs: list, node: _S | None, kind: str, keys: list[str],
                path: Path) -> list:
    """Associative merge keeping upstream's order: the configuration's order for its
    items, live-only items in place between them."""
    items = node.items() if node is not None else None
    lpes = [_item_pe(v, i, kind, keys) for i, v in enumerate(lhs)]
    rmap: dict[str, Any] = {}
    rpes: list[str] = []
    for i, v in enumerate(rhs):
        pe = _item_pe(v, i, kind, keys)
        if pe not in rmap:
            rmap[pe] = v
            rpes.append(pe)
    lmap: dict[str, Any] = {}
    for pe, v in zip(lpes, lhs):
        lmap.setdefault(pe, v)
    shared = [pe for pe in rpes if pe in lmap]
    si = 0
    out = []
    li = ri = 0
    while li < len(lpes) or ri < len(rpes):
        next_shared = shared[si] if si < len(shared) else None
        if li < len(lpes) and ri < len(rpes):
            pe = lpes[li]
            if pe == rpes[ri]:
                out.append(_merge(lmap[pe], rmap[pe], items, path + (pe,)))
                li, ri, si = li + 1, ri + 1, si + 1
                continue
            if pe in rmap and next_shared is not None and next_shared != pe:
                li += 1
                continue
        if li < len(lpes) and lpes[li] not in rmap:
            out.append(lhs[li])
            li += 1
            continue
        if ri < len(rpes):
            pe = rpes[ri]
            out.append(_merge(lmap.get(pe, _MISSING), rmap[pe], items, path + (pe,)))
            ri += 1
            if next_shared == pe:
                si += 1
            continue
        li += 1     # a live item the configuration already placed: skip the duplicate
    return out


def _remove_path(obj: dict, path: Path, schema: _S | None, kept: set[Path]) -> None:
    """Remove the value at `path` from `obj` in place, then every container on the way up
    that it leaves empty and nobody owns (upstream RemoveItems drops emptied containers)."""
    chain: list[tuple[Any, Any, _S | None]] = []   # (container, key/index, node)
    cur: Any = obj
    node = schema
    for depth, pe in enumerate(path):
        t, body = pe[0], pe[2:]
        if t == "f":
            if not isinstance(cur, dict) or body not in cur:
                return
            chain.append((cur, body, node))
            node = _child(node, body, depth == 0)
            cur = cur[body]
        else:
            if not isinstance(cur, list):
                return
            kind, keys = _list_kind(node)
            idx = next((i for i, v in enumerate(cur) if _item_pe(v, i, kind, keys) == pe), None)
            if idx is None:
                return
            chain.append((cur, idx, node))
            node = node.items() if node is not None else None
            cur = cur[idx]
    if len(chain) >= 2 and path[-1].startswith("f:") and isinstance(chain[-2][0], list) \
            and path[-1][2:] in _list_kind(chain[-2][2])[1] and path[:-1] in kept:
        return      # a key field of an item someone still owns: the item keeps its identity
    for depth in range(len(chain) - 1, -1, -1):
        container, key, _ = chain[depth]
        if depth < len(chain) - 1:
            value = container[key]
            if not (isinstance(value, (dict, list)) and not value) or path[:depth + 1] in kept:
                return
        del container[key]
