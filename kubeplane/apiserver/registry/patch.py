"""PATCH bodies applied to objects: JSON merge patch, strategic merge patch, JSON patch.

Pure functions over parsed JSON (dicts, lists, scalars). None of them mutates its inputs;
each returns a new object. Bad input raises `APIError` with upstream's status:

* a body of the wrong shape (not an object for merge/strategic patches, not a list of
  objects for JSON patch) -> 400 BadRequest, like upstream's decode step;
* a strategic merge patch whose directives are malformed -> 400 BadRequest with the
  message of k8s.io/apimachinery/pkg/util/mergepatch (upstream returns some of these as
  500 with the same text; a client's bad patch is a bad request here);
* a list of lists in a strategic merge patch -> 422, as upstream's
  interpretStrategicMergePatchError;
* a JSON patch that decodes but does not apply (failed `test`, missing path, unknown op)
  -> 422 Invalid "the server rejected our request due to an error in our request": upstream
  wraps jsonpatch's Apply error in NewGenericServerResponse(422, ...), which keeps neither
  the detail nor any cause;
* more than 10000 JSON patch operations -> 413, as upstream.

Strategic merge patch follows k8s.io/apimachinery/pkg/util/strategicpatch (mergeMap and
friends) driven by the schema's x-kubernetes-patch-strategy / -merge-key instead of Go
struct tags; see `strategic_merge_patch`.
"""
from __future__ import annotations

import re
from typing import Any

from ..machinery.codec import json_copy
from ..machinery.errors import APIError, bad_request, too_large
from .schema.defs import SchemaNode

PATCH_DIRECTIVE = "$patch"
RETAIN_KEYS = "$retainKeys"
DELETE_FROM_PRIMITIVE_LIST = "$deleteFromPrimitiveList"
SET_ELEMENT_ORDER = "$setElementOrder"
MAX_JSON_PATCH_OPERATIONS = 10000
UNPROCESSABLE = "the server rejected our request due to an error in our request"

_MISSING = object()


def deep_copy(v: Any) -> Any:
    """Copy a JSON value (dicts and lists are copied, scalars shared)."""
    if isinstance(v, dict):
        return {k: deep_copy(x) for k, x in v.items()}
    if isinstance(v, list):
        return [deep_copy(x) for x in v]
    return v


def go_kind(v: Any) -> str:
    """The JSON kind in Go's json.UnmarshalTypeError wording."""
    if isinstance(v, dict):
        return "object"
    if isinstance(v, list):
        return "array"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    return "null"


def _unprocessable() -> APIError:
    # upstream: errors.NewGenericServerResponse(422, "", GroupResource{}, "", err.Error(), 0, false)
    return APIError(422, "Invalid", UNPROCESSABLE, {})


def _skey(v: Any) -> Any:
    """A hashable identity with Go's interface equality: 1 != 1.0 != True, "1" != 1."""
    if isinstance(v, bool):
        return ("b", v)
    if isinstance(v, int):
        return ("i", v)
    if isinstance(v, float):
        return ("f", v)
    if isinstance(v, str):
        return ("s", v)
    if v is None:
        return ("n", None)
    if isinstance(v, dict):
        return ("m", tuple((k, _skey(x)) for k, x in sorted(v.items())))
    if isinstance(v, list):
        return ("l", tuple(_skey(x) for x in v))
    return ("?", repr(v))


# --------------------------------------------------------------------------- JSON merge patch

def json_merge_patch(obj: dict, patch: Any) -> dict:
    """RFC 7386 merge patch: objects merge recursively, null deletes, anything else replaces.

    The body must be a JSON object (an API object is an object); a list or scalar is a
    400 like upstream's "error decoding patch".
    """
    if not isinstance(patch, dict):
        raise bad_request(f"error decoding patch: json: cannot unmarshal {go_kind(patch)} "
                          "into Go value of type map[string]interface {}")
    if not isinstance(obj, dict):
        raise bad_request("the object to patch is not a JSON object")
    try:
        # one copy of each input up front, then an in-place merge: the result shares
        # nothing with the caller's objects (handlers go on to mutate it)
        return _merge_into(json_copy(obj), json_copy(patch))
    except RecursionError:
        raise bad_request("error decoding patch: the patch is nested too deeply") from None


def _merge_into(target: Any, patch: Any) -> Any:
    """RFC 7386 on values this module owns: `target` is changed in place and returned."""
    if not isinstance(patch, dict):
        return patch
    out = target if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = _merge_into(out.get(k), v)
    return out


# --------------------------------------------------------------------------- strategic merge patch

class _SMPError(Exception):
    def __init__(self, message: str, code: int = 400):
        super().__init__(message)
        self.message = message
        self.code = code


def go_value(v: Any) -> str:
    """Go's `%+v` of a decoded JSON value: map[k:v ...] with sorted keys, [a b], <nil>,
    floats in shortest form with an exponent below 1e-4 and from 1e6 on."""
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{go_value(v[k])}" for k in sorted(v)) + "]"
    if isinstance(v, list):
        return "[" + " ".join(go_value(x) for x in v) + "]"
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v == v and v not in (float("inf"), float("-inf")):
        if v == 0:
            return "0"
        from decimal import Decimal

        sign, digits, exp = Decimal(repr(v)).normalize().as_tuple()
        ds = "".join(map(str, digits))
        e10 = len(ds) + int(exp) - 1
        if e10 < -4 or e10 >= 6:
            mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
            return f"{'-' if sign else ''}{mant}e{'-' if e10 < 0 else '+'}{abs(e10):02d}"
        return f"{v:.{max(0, len(ds) - e10 - 1)}f}"
    return str(v)


def _go_type(v: Any) -> str:
    if isinstance(v, dict):
        return "map[string]interface {}"
    if isinstance(v, list):
        return "[]interface {}"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int64"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    return "<nil>"


def _no_merge_key(m: Any, key: str) -> _SMPError:
    return _SMPError(f"map: {go_value(m)} does not contain declared merge key: {key}")


def _bad_arg_type(expected: str, actual: Any) -> _SMPError:
    return _SMPError(f"expected a {expected}, but received a {_go_type(actual)}")


def _strategy(node: SchemaNode | None) -> tuple[str, str]:
    """(patch strategy without retainKeys, merge key) of a field."""
    if node is None:
        return "", ""
    parts = [p.strip() for p in (node.patch_strategy or "").split(",") if p.strip()]
    other = [p for p in parts if p != "retainKeys"]
    return (other[0] if other else ""), (node.merge_key or "")


def _child(node: SchemaNode | None, key: str) -> SchemaNode | None:
    return node.field(key) if node is not None else None


def strategic_merge_patch(obj: dict, patch: dict, schema: SchemaNode | None) -> dict:
    """Apply a strategic merge patch (what `kubectl patch` and client-side `kubectl apply` send).

    Semantics (upstream strategicpatch.StrategicMergeMapPatch):
    - maps merge key by key; `null` deletes a key; a key absent from the object takes the
      patch value (its directives processed as if merged into an empty value);
    - `$patch: replace` in a map replaces the map, `$patch: delete` empties it;
      a field with strategy `replace` is replaced whole;
    - lists whose field has strategy `merge` merge: lists of maps by the merge key (items
      with `$patch: delete` remove every item with that key, an item `{"$patch": "replace"}`
      makes the list exactly the other patch items), lists of scalars as an ordered union;
      other lists are replaced whole;
    - `$deleteFromPrimitiveList/<field>: [...]` removes those scalars from the list (a
      field the object lacks is left alone; upstream would store the list itself);
    - `$setElementOrder/<field>: [...]` orders the merged list (patch items in that order,
      server-only items kept in their relative place);
    - `$retainKeys: [...]` drops keys of the object not listed (every non-null patch key
      must be listed, else 400).
    With `schema` None (structure unknown) the patch is applied as a JSON merge patch.
    """
    if not isinstance(patch, dict):
        raise bad_request(f"json: cannot unmarshal {go_kind(patch)} into Go value of type "
                          "map[string]interface {}")
    if schema is None:
        return json_merge_patch(obj, patch)
    if not isinstance(obj, dict):
        raise bad_request("the object to patch is not a JSON object")
    try:
        return _merge_map(json_copy(obj), json_copy(patch), schema)
    except _SMPError as e:
        if e.code == 422:
            raise _unprocessable() from None
        raise bad_request(e.message) from None
    except RecursionError:
        raise bad_request("the patch is nested too deeply") from None


def _fresh(pv: Any, node: SchemaNode | None) -> Any:
    """A patch value for a key the object lacks: directives processed, nulls dropped."""
    if isinstance(pv, dict):
        return _merge_map({}, pv, node)
    if isinstance(pv, list):
        return _merge_slice_handler([], pv, node, False)
    return pv


def _merge_map(original: dict, patch: dict, node: SchemaNode | None) -> dict:
    """Merge `patch` into `original` (both owned copies; `original` is modified)."""
    if PATCH_DIRECTIVE in patch:
        directive = patch[PATCH_DIRECTIVE]
        if directive == "replace":
            del patch[PATCH_DIRECTIVE]
            return _merge_map({}, patch, node)
        if directive == "delete":
            return {}
        raise _SMPError(f"unknown patch type: {go_value(directive)} in map: {go_value(patch)}")
    _apply_retain_keys(original, patch)
    _apply_set_element_order(original, patch, node)
    for k, pv in patch.items():
        if k.startswith(DELETE_FROM_PRIMITIVE_LIST):
            key = _extract_key(k, DELETE_FROM_PRIMITIVE_LIST)
            if not isinstance(pv, list):
                raise _SMPError("invalid patch format of primitive list")
            ov = original.get(key, _MISSING)
            if isinstance(ov, list):
                original[key] = _delete_from_slice(ov, pv)
            continue
        if pv is None:
            original.pop(k, None)
            continue
        child = _child(node, k)
        ov = original.get(k)
        if isinstance(pv, dict) and isinstance(ov, dict):
            strategy, _ = _strategy(child)
            if strategy == "replace":
                original[k] = _fresh(pv, child)
            else:
                original[k] = _merge_map(ov, pv, child)
        elif isinstance(pv, list) and isinstance(ov, list):
            original[k] = _merge_slice_handler(ov, pv, child, False)
        else:
            # absent from the object, a scalar, or a different type: the patch value wins
            original[k] = _fresh(pv, child)
    return original


def _extract_key(s: str, prefix: str) -> str:
    head, sep, rest = s.partition("/")
    if not sep or head != prefix:
        if prefix == DELETE_FROM_PRIMITIVE_LIST:
            raise _SMPError("invalid patch format of primitive list")
        raise _SMPError("invalid patch format of setElementOrder list")
    return rest


def _apply_retain_keys(original: dict, patch: dict) -> None:
    if RETAIN_KEYS not in patch:
        return
    retain = patch.pop(RETAIN_KEYS)
    if not isinstance(retain, list):
        raise _SMPError("invalid patch format of retainKeys")
    keep = {_skey(v) for v in retain}
    for k, v in patch.items():
        if v is None or k.startswith(DELETE_FROM_PRIMITIVE_LIST) or k.startswith(SET_ELEMENT_ORDER):
            continue
        if _skey(k) not in keep:
            raise _SMPError("invalid patch format of retainKeys")
    for k in list(original):
        if _skey(k) not in keep:
            del original[k]


def _apply_set_element_order(original: dict, patch: dict, node: SchemaNode | None) -> None:
    """Process `$setElementOrder/<field>` with the patch list of that field (both removed
    from `patch`); precedence of order: $setElementOrder > patch list > live list."""
    for key in [k for k in patch if k.startswith(SET_ELEMENT_ORDER)]:
        order = patch.pop(key)
        if not isinstance(order, list):
            raise _bad_arg_type("[]interface {}", order)
        okey = _extract_key(key, SET_ELEMENT_ORDER)
        ov = original.get(okey, _MISSING)
        pv = patch.get(okey, _MISSING)
        if ov is not _MISSING and not isinstance(ov, list):
            raise _bad_arg_type("[]interface {}", ov)
        if pv is not _MISSING and not isinstance(pv, list):
            raise _bad_arg_type("[]interface {}", pv)
        child = _child(node, okey)
        _, merge_key = _strategy(child)
        _validate_with_set_order(pv if pv is not _MISSING else [], order, merge_key)
        if ov is not _MISSING and pv is _MISSING:
            merged = ov
        elif ov is _MISSING and pv is not _MISSING:
            merged = _merge_slice_handler([], pv, child, False)
        elif ov is not _MISSING:
            merged = _merge_slice_handler(ov, pv, child, False)
        else:
            continue
        patch.pop(okey, None)
        server = ov if ov is not _MISSING else []
        kind = _slice_kind(server, pv if pv is not _MISSING else [])
        if kind is None:
            original[okey] = merged
            continue
        patch_items, server_only = _partition(merged, order, merge_key, kind)
        original[okey] = _normalize_order(patch_items, server_only, order, server, merge_key, kind)


def _validate_with_set_order(patch_list: list, order: list, merge_key: str) -> None:
    """The patch list's items must appear in $setElementOrder in the same relative order."""
    if not order or not patch_list:
        return
    if merge_key:
        non_delete = []
        for v in patch_list:
            if not isinstance(v, dict):
                raise _bad_arg_type("map[string]interface {}", v)
            if v.get(PATCH_DIRECTIVE) != "delete":
                non_delete.append(v)
    else:
        non_delete = patch_list
    pi = si = 0
    while pi < len(non_delete) and si < len(order):
        item = non_delete[pi]
        if isinstance(item, dict) and PATCH_DIRECTIVE in item:
            pi += 1
            continue
        if _merge_key_equal(item, order[si], merge_key):
            pi += 1
        si += 1
    if pi < len(non_delete) and si >= len(order):
        raise _SMPError(f"The order in patch list:\n{go_value(patch_list)}\n doesn't match "
                        f"{SET_ELEMENT_ORDER} list:\n{go_value(order)}\n")


def _merge_key_equal(left: Any, right: Any, merge_key: str) -> bool:
    if not merge_key:
        return _skey(left) == _skey(right)
    for side in (left, right):
        if not isinstance(side, dict):
            raise _bad_arg_type("map[string]interface {}", side)
        if merge_key not in side:
            raise _no_merge_key(side, merge_key)
    return _skey(left[merge_key]) == _skey(right[merge_key])


def _merge_slice_handler(original: list, patch: list, node: SchemaNode | None,
                         is_delete_list: bool) -> list:
    strategy, merge_key = _strategy(node)
    if strategy == "merge":
        return _merge_slice(original, patch, node.items() if node is not None else None,
                            merge_key, is_delete_list)
    return patch


def _slice_kind(*lists: list) -> str | None:
    """The common element kind of the lists ("map", "string", "int64", ...), None if empty."""
    kind = None
    for lst in lists:
        for v in lst:
            if isinstance(v, list):
                raise _SMPError("lists of lists are not supported", 422)
            k = "map" if isinstance(v, dict) else _go_type(v)
            if kind is None:
                kind = k
            elif kind != k:
                raise _SMPError(f"list element types are not identical: {go_value(list(lists))}")
    return kind


def _merge_slice(original: list, patch: list, elem: SchemaNode | None, merge_key: str,
                 is_delete_list: bool) -> list:
    if not original and not patch:
        return original
    kind = _slice_kind(original, patch)
    if kind != "map":
        if is_delete_list:
            return _delete_from_slice(original, patch)
        merged = _dedup(original + patch)
    else:
        if not merge_key:
            raise _SMPError("cannot merge lists without merge key for type map")
        original, patch = _merge_special_elements(original, patch, merge_key, elem)
        merged = _merge_without_special(original, patch, merge_key, elem)
    patch_items, server_only = _partition(merged, patch, merge_key, kind)
    return _normalize_order(patch_items, server_only, patch, original, merge_key, kind)


def _dedup(items: list) -> list:
    seen: set = set()
    out = []
    for v in items:
        k = _skey(v)
        if k not in seen:
            seen.add(k)
            out.append(v)
    return out


def _delete_from_slice(current: list, to_delete: list) -> list:
    gone = {_skey(v) for v in to_delete}
    return [v for v in current if _skey(v) not in gone]


def _merge_special_elements(original: list, patch: list, merge_key: str,
                            elem: SchemaNode | None) -> tuple[list, list]:
    """Handle list items carrying `$patch`; return (original, patch without them)."""
    rest = []
    replace = False
    for v in patch:
        if PATCH_DIRECTIVE not in v:
            rest.append(v)
            continue
        directive = v[PATCH_DIRECTIVE]
        if directive == "delete":
            if merge_key not in v:
                raise _no_merge_key(v, merge_key)
            for o in original:
                if not isinstance(o, dict):
                    raise _SMPError("value for key is not a map.")
            want = _skey(v[merge_key])
            original = [o for o in original
                        if not (merge_key in o and _skey(o[merge_key]) == want)]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise _SMPError("merging lists cannot yet be specified in the patch")
        else:
            raise _SMPError(f"unknown patch type: {go_value(directive)} in map: {go_value(v)}")
    if replace:
        return [_fresh(v, elem) for v in rest], []
    return original, rest


def _merge_without_special(original: list, patch: list, merge_key: str,
                           elem: SchemaNode | None) -> list:
    merged = list(original)
    for v in patch:
        if merge_key not in v:
            raise _no_merge_key(v, merge_key)
        want = _skey(v[merge_key])
        for i, o in enumerate(merged):
            if not isinstance(o, dict):
                raise _SMPError(f"value for key {i} is not a map.")
            if merge_key in o and _skey(o[merge_key]) == want:
                merged[i] = _merge_map(o, v, elem)
                break
        else:
            merged.append(_fresh(v, elem))
    return merged


def _item_id(item: Any, merge_key: str, kind: str) -> Any:
    if kind == "map":
        return _skey(item.get(merge_key)) if isinstance(item, dict) else ("n", None)
    return _skey(item)


def _partition(merged: list, by: list, merge_key: str, kind: str) -> tuple[list, list]:
    """Split `merged` into (items present in `by`, server-only items)."""
    if kind == "map":
        for lst in (merged, by):
            for v in lst:
                if not isinstance(v, dict):
                    raise _bad_arg_type("map[string]interface {}", v)
                if merge_key not in v:
                    raise _no_merge_key(v, merge_key)
    present = {_item_id(v, merge_key, kind) for v in by}
    inside = [v for v in merged if _item_id(v, merge_key, kind) in present]
    outside = [v for v in merged if _item_id(v, merge_key, kind) not in present]
    return inside, outside


def _normalize_order(patch_items: list, server_only: list, patch_order: list,
                     server_order: list, merge_key: str, kind: str) -> list:
    """Upstream normalizeElementOrder: patch items sorted by `patch_order`, server-only
    items by `server_order`, then interleaved by their places in `server_order`."""
    patch_items = _sort_by(patch_items, patch_order, merge_key, kind)
    server_only = _sort_by(server_only, server_order, merge_key, kind)
    index = {}
    for i, v in enumerate(server_order):
        index.setdefault(_item_id(v, merge_key, kind), i)
    out = []
    i = j = 0
    while i < len(server_only) or j < len(patch_items):
        if i >= len(server_only):
            out.append(patch_items[j])
            j += 1
        elif j >= len(patch_items):
            out.append(server_only[i])
            i += 1
        else:
            li = index.get(_item_id(server_only[i], merge_key, kind), -1)
            ri = index.get(_item_id(patch_items[j], merge_key, kind), -1)
            if li >= 0 and ri >= 0 and li < ri:
                out.append(server_only[i])
                i += 1
            else:
                out.append(patch_items[j])
                j += 1
    return out


def _sort_by(items: list, order: list, merge_key: str, kind: str) -> list:
    pos = {}
    for i, v in enumerate(order):
        pos.setdefault(_item_id(v, merge_key, kind), i)
    deleting = []
    if kind == "map":
        deleting = [v for v in items if v.get(PATCH_DIRECTIVE) == "delete"]
        items = [v for v in items if v.get(PATCH_DIRECTIVE) != "delete"]
    found = [v for v in items if _item_id(v, merge_key, kind) in pos]
    rest = [v for v in items if _item_id(v, merge_key, kind) not in pos]
    found.sort(key=lambda v: pos[_item_id(v, merge_key, kind)])
    return found + rest + deleting


# --------------------------------------------------------------------------- JSON patch (RFC 6902)

_INDEX = re.compile(r"^[+-]?[0-9]+$")


class _PatchFailed(Exception):
    pass


def json_patch(obj: dict, ops: Any) -> dict:
    """Apply an RFC 6902 JSON patch (add, remove, replace, move, copy, test).

    Follows gopkg.in/evanphx/json-patch.v4 as upstream uses it: array indices may be
    negative (counted from the end), "-" appends, `test` of a missing path passes only for
    a null value, numbers compare by value. A body that is not a list of objects is 400
    (jsonpatch.DecodePatch); any operation that cannot be applied is 422 with upstream's
    generic message; more than 10000 operations is 413.
    """
    if not isinstance(ops, list):
        raise bad_request(f"json: cannot unmarshal {go_kind(ops)} into Go value of type jsonpatch.Patch")
    for op in ops:
        if not isinstance(op, dict):
            raise bad_request(f"json: cannot unmarshal {go_kind(op)} into Go value of type "
                              "jsonpatch.Operation")
    if len(ops) > MAX_JSON_PATCH_OPERATIONS:
        raise too_large(f"The allowed maximum operations in a JSON patch is "
                        f"{MAX_JSON_PATCH_OPERATIONS}, got {len(ops)}")
    doc: Any = json_copy(obj)
    try:
        for op in ops:
            doc = _apply_op(doc, op)
    except (_PatchFailed, RecursionError):
        raise _unprocessable() from None
    if not isinstance(doc, dict):
        raise _unprocessable()
    return doc


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str):
        raise _PatchFailed("path must be a string")
    if path == "":
        return []
    if not path.startswith("/"):
        raise _PatchFailed(f"invalid JSON pointer {path!r}")
    return [t.replace("~1", "/").replace("~0", "~") for t in path[1:].split("/")]


def _index(token: str, length: int, adding: bool) -> int:
    if not _INDEX.match(token):
        raise _PatchFailed(f"invalid array index {token!r}")
    i = int(token)
    if i < 0:
        i += length
    if i < 0 or i > length or (i == length and not adding):
        raise _PatchFailed(f"array index {token} out of bounds")
    return i


def _container(doc: Any, tokens: list[str]) -> Any:
    cur = doc
    for t in tokens:
        if isinstance(cur, dict):
            if t not in cur:
                raise _PatchFailed("doc is missing path")
            cur = cur[t]
        elif isinstance(cur, list):
            cur = cur[_index(t, len(cur), False)]
        else:
            raise _PatchFailed("doc is missing path")
    return cur


def _get(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        return doc
    parent = _container(doc, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise _PatchFailed("doc is missing key")
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(last, len(parent), False)]
    raise _PatchFailed("doc is missing path")


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _container(doc, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        else:
            parent.insert(_index(last, len(parent), True), value)
    else:
        raise _PatchFailed("add operation does not apply: doc is missing path")
    return doc


def _remove(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        raise _PatchFailed("cannot remove the whole document")
    parent = _container(doc, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise _PatchFailed("Unable to remove nonexistent key")
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(last, len(parent), False))
    raise _PatchFailed("remove operation does not apply: doc is missing path")


def _json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _value(op: dict) -> Any:
    if "value" not in op:
        raise _PatchFailed(f"{op.get('op')} operation missing value")
    return deep_copy(op["value"])


def _apply_op(doc: Any, op: dict) -> Any:
    kind = op.get("op")
    tokens = _pointer(op.get("path"))
    if kind == "add":
        return _add(doc, tokens, _value(op))
    if kind == "remove":
        _remove(doc, tokens)
        return doc
    if kind == "replace":
        value = _value(op)
        if not tokens:
            return value
        _get(doc, tokens)  # must exist
        parent = _container(doc, tokens[:-1])
        if isinstance(parent, dict):
            parent[tokens[-1]] = value
        else:
            parent[_index(tokens[-1], len(parent), False)] = value
        return doc
    if kind == "move":
        src = _pointer(op.get("from"))
        if src == tokens:
            return doc
        if tokens[:len(src)] == src:
            raise _PatchFailed("cannot move a value into itself")
        value = _get(doc, src)
        _remove(doc, src)
        return _add(doc, tokens, value)
    if kind == "copy":
        src = _pointer(op.get("from"))
        return _add(doc, tokens, deep_copy(_get(doc, src)))
    if kind == "test":
        want = op.get("value")
        try:
            got = _get(doc, tokens)
        except _PatchFailed:
            if want is None:
                return doc
            raise
        if not _json_equal(got, want):
            raise _PatchFailed(f"testing value {op.get('path')} failed")
        return doc
    raise _PatchFailed(f"Unexpected kind: {kind}")
