"""Decode-time checks of built-in objects, as upstream's Go JSON decoding does them.

Upstream decodes a request body into Go structs: a value of the wrong JSON type is a 400
(`Pod in version "v1" cannot be handled as a Pod: json: cannot unmarshal string into Go struct
field PodSpec.spec.containers of type []v1.Container`), and with strict field validation a
field the struct does not declare is reported as `unknown field "spec.foo"`.

Each definition is compiled once (cached per name) into closures; `check()` then walks the
object without building any path string unless it descends into an object or array.

Invariants:
  * null is accepted anywhere (Go decodes null as the zero value);
  * after a type error the value is not descended into (Go skips it too);
  * schema-less values (RawExtension, FieldsV1, apiextensions JSON) are opaque, but their
    depth is still bounded;
  * nesting beyond MAX_DEPTH raises a 400 APIError, never RecursionError.

Paths: the strict path uses indices and dots (`spec.containers[0].bogus`); the Go type-error
path drops indices and map keys (`spec.containers.name`). Internally a map key is joined with
"\\x1f" so both renderings can be derived from one string, only when a finding is made.
"""
from __future__ import annotations

import re
from typing import Any, Callable

from ...machinery.errors import APIError, bad_request
from .defs import definitions

MAX_DEPTH = 200
_MAPSEP = "\x1f"
_REF = "#/$defs/"

Checker = Callable[[Any, str, int, "Findings"], None]


class Findings:
    """What `check` found. type_errors: (strict path, Go error text); unknown: strict paths of
    undeclared fields in document order (unknown_at: where each is);
    duplicates: always empty (the parser already merged
    duplicate keys, so they cannot be seen here)."""

    __slots__ = ("type_errors", "unknown", "unknown_at", "duplicates", "_struct")

    def __init__(self) -> None:
        self.type_errors: list[tuple[str, str]] = []
        self.unknown: list[str] = []
        # (the object, the key) of each unknown field: a path string is ambiguous once a key
        # holds "." or "[" or is empty, so dropping them goes by these
        self.unknown_at: list[tuple[dict, str]] = []
        self.duplicates: list[str] = []
        self._struct = ""  # the Go struct being decoded (for messages)

    def __bool__(self) -> bool:
        return bool(self.type_errors or self.unknown or self.duplicates)

    def __repr__(self) -> str:
        return f"Findings(type_errors={self.type_errors!r}, unknown={self.unknown!r})"


class _TooDeep(Exception):
    pass


def strict_path(p: str) -> str:
    return p.replace(_MAPSEP, ".")


_GO_STRIP = re.compile(r"\[\d+\]|\x1f[^.\[\x1f]*")


def go_path(p: str) -> str:
    return _GO_STRIP.sub("", p)


def _json_kind(x: Any) -> str:
    t = type(x)
    if t is str:
        return "string"
    if t is bool:
        return "bool"
    if t is int or t is float:
        return "number"
    if t is list:
        return "array"
    return "object"


def _go_value(x: Any, int_target: bool) -> str:
    """Go's UnmarshalTypeError.Value: "number 1.5" when a number misses an integer type."""
    k = _json_kind(x)
    if k == "number" and int_target:
        return f"number {x!r}"
    return k


# --- scalar value checks (Go custom unmarshalers) ------------------------------------------

_INT_RANGE = {"int32": (-(1 << 31), (1 << 31) - 1), "int64": (-(1 << 63), (1 << 63) - 1)}

QUANTITY_FORMAT_ERR = ("quantities must match the regular expression "
                       "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
QUANTITY_SUFFIX_ERR = "unable to parse quantity's suffix"
_QUANTITY_SUFFIXES = {"", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u", "m", "k", "M", "G", "T",
                      "P", "E"}
_DIGITS = "0123456789"


def quantity_error(s: str) -> str | None:
    """None when `s` parses as a resource.Quantity, else upstream's error text (the steps of
    apimachinery's parseQuantityString and suffix interpretation)."""
    s = s.strip()
    if not s:
        return QUANTITY_FORMAT_ERR
    n, i = len(s), 0
    if s[0] in "+-":
        i = 1
    while i < n and s[i] == "0":
        i += 1
    if i >= n:
        return None
    while i < n and s[i] in _DIGITS:
        i += 1
    if i >= n:
        return None
    if s[i] == ".":
        i += 1
        while i < n and s[i] in _DIGITS:
            i += 1
        if i >= n:
            return None
    start = i
    while i < n and s[i] in "eEinumkKMGTP":
        i += 1
    if i < n and s[i] in "+-":
        i += 1
    while i < n and s[i] in _DIGITS:
        i += 1
    if i < n:
        return QUANTITY_FORMAT_ERR
    suffix = s[start:]
    if suffix in _QUANTITY_SUFFIXES:
        return None
    if len(suffix) > 1 and suffix[0] in "eE":
        exp = suffix[1:]
        if exp.lstrip("+-").isdigit() and len(exp) - len(exp.lstrip("+-")) <= 1:
            return None
    return QUANTITY_SUFFIX_ERR


_RFC3339 = "2006-01-02T15:04:05Z07:00"
_RFC3339_MICRO = "2006-01-02T15:04:05.000000Z07:00"
_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def time_error(s: str, micro: bool = False) -> str | None:
    """None when Go's time.Parse(RFC3339 or RFC3339Micro) accepts `s`, else its error text."""
    layout = _RFC3339_MICRO if micro else _RFC3339
    # (layout element, kind) in order; kinds: digits N, literal, frac, zone
    elems: list[tuple[str, str]] = [("2006", "4"), ("-", "lit"), ("01", "2"), ("-", "lit"),
                                    ("02", "2"), ("T", "lit"), ("15", "2"), (":", "lit"),
                                    ("04", "2"), (":", "lit"), ("05", "2")]
    if micro:
        elems.append((".000000", "micro"))
    elems.append(("Z07:00", "zone"))
    rest = s
    vals: list[int] = []

    def bad(elem: str, value: str) -> str:
        return f'parsing time "{s}" as "{layout}": cannot parse "{value}" as "{elem}"'

    for idx, (elem, kind) in enumerate(elems):
        if kind == "lit":
            if not rest.startswith(elem):
                return bad(elem, rest)
            rest = rest[len(elem):]
        elif kind in ("4", "2"):
            w = int(kind)
            if len(rest) < w or not rest[:w].isascii() or not rest[:w].isdigit():
                return bad(elem, rest)
            vals.append(int(rest[:w]))
            rest = rest[w:]
            if elem == "05" and not micro and rest[:1] in (".", ","):
                j = 1
                while j < len(rest) and rest[j] in _DIGITS:
                    j += 1
                if j == 1:
                    return bad(elems[idx + 1][0], rest)
                rest = rest[j:]
        elif kind == "micro":
            if len(rest) < 7 or rest[0] not in ".," or not rest[1:7].isdigit():
                return bad(elem, rest)
            rest = rest[7:]
        else:  # zone
            if rest[:1] == "Z":
                rest = rest[1:]
            elif (len(rest) >= 6 and rest[0] in "+-" and rest[1:3].isdigit() and rest[3] == ":"
                  and rest[4:6].isdigit()):
                if int(rest[1:3]) > 24 or int(rest[4:6]) > 59:
                    return f'parsing time "{s}": time zone offset out of range'
                rest = rest[6:]
            else:
                return bad(elem, rest)
    if rest:
        return f'parsing time "{s}": extra text: "{rest}"'
    year, month, day, hour, minute, sec = vals
    if not 1 <= month <= 12:
        return f'parsing time "{s}": month out of range'
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    if day < 1 or day > _DAYS[month - 1] or (month == 2 and day == 29 and not leap):
        return f'parsing time "{s}": day out of range'
    if hour > 23:
        return f'parsing time "{s}": hour out of range'
    if minute > 59:
        return f'parsing time "{s}": minute out of range'
    if sec > 59:
        return f'parsing time "{s}": second out of range'
    return None


_B64 = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


def base64_error(s: str) -> str | None:
    """None when Go's base64.StdEncoding accepts `s` (as encoding/json decodes []byte), else
    `illegal base64 data at input byte N` with Go's offset."""
    data = s.encode()
    n = len(data)
    si = 0
    while True:
        j = 0
        qstart = si
        while j < 4:
            # Go skips \r and \n anywhere
            while si < n and data[si] in (10, 13):
                si += 1
            if si == n:
                if j == 0:
                    return None
                return f"illegal base64 data at input byte {qstart if j != 1 else si - j}"
            c = data[si]
            si += 1
            if c in _B64:
                j += 1
                continue
            if c != 61:  # not '='
                return f"illegal base64 data at input byte {si - 1}"
            # padding
            if j < 2:
                return f"illegal base64 data at input byte {si - 1}"
            if j == 2:
                while si < n and data[si] in (10, 13):
                    si += 1
                if si == n:
                    return f"illegal base64 data at input byte {n}"
                if data[si] != 61:
                    return f"illegal base64 data at input byte {si - 1}"
                si += 1
            while si < n and data[si] in (10, 13):
                si += 1
            if si < n:
                return f"illegal base64 data at input byte {si}"
            return None
        if si >= n:
            return None


# --- compilation ---------------------------------------------------------------------------

def _check_opaque_depth(v: Any, depth: int, limit: int = MAX_DEPTH) -> None:
    """Iterative depth bound for values the schema does not describe (`v` at `depth`, each
    nested dict/list one deeper; _TooDeep past `limit`). Level by level: managedFields'
    fieldsV1 goes through here on every write."""
    if depth > limit:
        raise _TooDeep()
    t = type(v)
    level = [v] if t is dict or t is list else []
    while level:
        depth += 1
        nxt: list = []
        for x in level:
            for y in (x.values() if type(x) is dict else x):
                t = type(y)
                if t is dict or t is list:
                    nxt.append(y)
        if nxt and depth > limit:
            raise _TooDeep()
        level = nxt


def _opaque(v: Any, path: str, depth: int, f: Findings) -> None:
    _check_opaque_depth(v, depth)


def _resolve(schema: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    name = None
    defs = definitions()
    while "$ref" in schema:
        ref = schema["$ref"]
        name = ref[len(_REF):] if ref.startswith(_REF) else None
        nxt = defs.get(name) if name else None
        if nxt is None:
            return {}, None
        schema = nxt
    return schema, name


def _types(schema: dict[str, Any]) -> set[str]:
    t = schema.get("type")
    if isinstance(t, str):
        return {t}
    if isinstance(t, list):
        return set(t) - {"null"}
    return set()


def _go_type(schema: dict[str, Any], name: str | None) -> str:
    """Go's reflect type string for a schema (best effort: v1.Container, []v1.Container,
    map[string]string, int32, ...)."""
    if name:
        parts = name.split(".")
        if name.endswith("IntOrString"):
            return "intstr.IntOrString"
        if name.endswith("Quantity"):
            return "resource.Quantity"
        return f"{parts[-2]}.{parts[-1]}"
    t = _types(schema)
    if "array" in t:
        item, iname = _resolve(schema.get("items") or {})
        return "[]" + _go_type(item, iname)
    if "object" in t:
        ap = schema.get("additionalProperties")
        if isinstance(ap, dict):
            item, iname = _resolve(ap)
            return "map[string]" + _go_type(item, iname)
        return "map[string]interface {}"
    if "string" in t:
        return "[]uint8" if schema.get("format") == "byte" else "string"
    if "integer" in t:
        return schema.get("format") or "int64"
    if "number" in t:
        return "float64"
    if "boolean" in t:
        return "bool"
    return "interface {}"


# An entry says, for one position: which Python types pass the cheap test, the checker to
# run on such a value (or None), and how to report any other non-null value.
Bad = Callable[[Any, str, Findings], None]
Entry = tuple[frozenset, "Checker | None", Bad]

_compiled: dict[str, Checker] = {}
_SCALAR_TYPES = {"string": (str,), "boolean": (bool,), "integer": (int,), "number": (int, float)}


def _std_bad(gotype: str, int_target: bool) -> Bad:
    def bad(x: Any, path: str, f: Findings) -> None:
        f.type_errors.append((strict_path(path), _unmarshal_msg(_go_value(x, int_target), f, path,
                                                                gotype)))
    return bad


def _unmarshal_msg(value: str, f: Findings, path: str, gotype: str) -> str:
    return f"json: cannot unmarshal {value} into Go struct field {f._struct}.{go_path(path)} of type {gotype}"


def _msg_bad(msg: str) -> Bad:
    def bad(x: Any, path: str, f: Findings) -> None:
        f.type_errors.append((strict_path(path), msg))
    return bad


def _entry(schema: dict[str, Any]) -> Entry:
    """Compile one position (a property, an array item or a map value)."""
    schema, name = _resolve(schema)
    gotype = _go_type(schema, name)
    if name and name.endswith("intstr.IntOrString"):
        def int32_range(x: Any, path: str, depth: int, f: Findings) -> None:
            if type(x) is int and not -(1 << 31) <= x < (1 << 31):
                f.type_errors.append((strict_path(path), _unmarshal_msg(f"number {x}", f, path, "int32")))
        return frozenset((str, int)), int32_range, _std_bad("int32", True)
    if name and name.endswith("resource.Quantity"):
        def quantity(x: Any, path: str, depth: int, f: Findings) -> None:
            if type(x) is str:
                err = quantity_error(x)
                if err:
                    f.type_errors.append((strict_path(path), err))
        return frozenset((str, int, float)), quantity, _msg_bad(QUANTITY_FORMAT_ERR)
    if name in ("io.k8s.apimachinery.pkg.apis.meta.v1.Time",
                "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime"):
        micro = name.endswith("MicroTime")

        def time_(x: Any, path: str, depth: int, f: Findings) -> None:
            err = time_error(x, micro)
            if err:
                f.type_errors.append((strict_path(path), err))
        return frozenset((str,)), time_, _std_bad("string", False)
    t = _types(schema)
    if len(t) != 1:
        return frozenset((str, int, float, bool, dict, list)), _opaque, _std_bad(gotype, False)
    (kind,) = t
    if kind == "object":
        if not schema.get("properties") and not isinstance(schema.get("additionalProperties"), dict):
            # RawExtension, FieldsV1, free-form objects: Go keeps the raw JSON, any type
            return frozenset((str, int, float, bool, dict, list)), _opaque, _std_bad(gotype, False)
        if name is not None:
            return frozenset((dict,)), _compile_def(name), _std_bad(gotype, False)
        return frozenset((dict,)), _compile_object(schema, name or "", None), _std_bad(gotype, False)
    if kind == "array":
        return frozenset((list,)), _compile_array(schema), _std_bad(gotype, False)
    if kind == "string" and schema.get("format") == "byte":
        def b64(x: Any, path: str, depth: int, f: Findings) -> None:
            err = base64_error(x)
            if err:
                f.type_errors.append((strict_path(path), err))
        return frozenset((str,)), b64, _std_bad(gotype, False)
    if kind == "integer":
        lo, hi = _INT_RANGE.get(schema.get("format") or "int64", _INT_RANGE["int64"])

        def int_range(x: Any, path: str, depth: int, f: Findings) -> None:
            if not lo <= x <= hi:
                f.type_errors.append((strict_path(path), _unmarshal_msg(f"number {x}", f, path, gotype)))
        return frozenset((int,)), int_range, _std_bad(gotype, True)
    return frozenset(_SCALAR_TYPES.get(kind, ())), None, _std_bad(gotype, False)


def _compile_array(schema: dict[str, Any]) -> Checker:
    items = schema.get("items")
    if not isinstance(items, dict):
        return _opaque
    ok, sub, bad = _entry(items)

    def check(v: list, path: str, depth: int, f: Findings) -> None:
        if depth > MAX_DEPTH:
            raise _TooDeep()
        d1 = depth + 1
        for i, x in enumerate(v):
            if type(x) in ok:
                if sub is not None:
                    sub(x, f"{path}[{i}]", d1, f)
            elif x is not None:
                bad(x, f"{path}[{i}]", f)
    return check


def _compile_object(schema: dict[str, Any], name: str, props_out: dict | None) -> Checker:
    """A struct (declared properties) or a map (additionalProperties) or opaque."""
    props = schema.get("properties")
    struct = name.rsplit(".", 1)[-1] if name else ""
    if props:
        table: dict[str, Entry] = {} if props_out is None else props_out

        def check(v: dict, path: str, depth: int, f: Findings) -> None:
            if depth > MAX_DEPTH:
                raise _TooDeep()
            d1 = depth + 1
            outer = f._struct
            f._struct = struct
            for k, x in v.items():
                e = table.get(k)
                if e is None:
                    f.unknown.append(f"{strict_path(path)}.{k}" if path else k)
                    f.unknown_at.append((v, k))
                    if type(x) is dict or type(x) is list:
                        _check_opaque_depth(x, d1)
                    continue
                if type(x) in e[0]:
                    if e[1] is not None:
                        e[1](x, f"{path}.{k}" if path else k, d1, f)
                elif x is not None:
                    e[2](x, f"{path}.{k}" if path else k, f)
            f._struct = outer
        # fill after registering, so recursive definitions terminate
        if props_out is None:
            for k, s in props.items():
                table[k] = _entry(s)
        return check
    ap = schema.get("additionalProperties")
    if isinstance(ap, dict):
        ok, sub, bad = _entry(ap)

        def check_map(v: dict, path: str, depth: int, f: Findings) -> None:
            if depth > MAX_DEPTH:
                raise _TooDeep()
            d1 = depth + 1
            for k, x in v.items():
                if type(x) in ok:
                    if sub is not None:
                        sub(x, f"{path}{_MAPSEP}{k}", d1, f)
                elif x is not None:
                    bad(x, f"{path}{_MAPSEP}{k}", f)
        return check_map
    return _opaque


def _compile_def(name: str) -> Checker:
    c = _compiled.get(name)
    if c is not None:
        return c
    schema = definitions()[name]
    props = schema.get("properties")
    if props:
        table: dict[str, Entry] = {}
        c = _compile_object(schema, name, table)
        _compiled[name] = c
        for k, s in props.items():
            table[k] = _entry(s)
        return c
    c = _compile_object(schema, name, None)
    _compiled[name] = c
    return c


def check(obj: dict[str, Any], def_name: str) -> Findings:
    """Walk `obj` against definition `def_name` (e.g. "io.k8s.api.core.v1.Pod").

    Raises KeyError for an unknown definition and a 400 APIError when the object nests deeper
    than MAX_DEPTH. Everything else about the body is reported in the returned Findings."""
    c = _compile_def(def_name)
    f = Findings()
    try:
        if type(obj) is dict:
            c(obj, "", 0, f)
    except _TooDeep:
        raise bad_request(f"the object is nested too deeply: more than {MAX_DEPTH} levels "
                          "of objects and arrays") from None
    return f


def check_depth(obj: Any, limit: int = MAX_DEPTH) -> bool:
    """True when `obj` nests at most `limit` levels of dicts/lists (iterative, any size)."""
    try:
        _check_opaque_depth(obj, 0, limit)
    except _TooDeep:
        return False
    return True


def decode_error(kind: str, version: str, finding: tuple[str, str]) -> APIError:
    """400 for a type error, as upstream's decoder reports it:
    `Pod in version "v1" cannot be handled as a Pod: <Go error>`."""
    return bad_request(f'{kind} in version "{version}" cannot be handled as a {kind}: {finding[1]}')


def strict_error(findings: Findings) -> APIError:
    """400 for fieldValidation=Strict: `strict decoding error: unknown field "spec.foo", ...`."""
    parts = [f'unknown field "{p}"' for p in findings.unknown]
    parts += [f'duplicate field "{p}"' for p in findings.duplicates]
    return bad_request("strict decoding error: " + ", ".join(parts))


def warnings(findings: Findings) -> list[str]:
    """Texts for `Warning: 299 - "..."` headers with fieldValidation=Warn."""
    return ([f'unknown field "{p}"' for p in findings.unknown]
            + [f'duplicate field "{p}"' for p in findings.duplicates])
