"""CustomResourceDefinitions: checking a CRD, and the validator of its custom resources.

`validate_crd(crd)` returns upstream's 422 causes for a CustomResourceDefinition
(apiextensions.k8s.io/v1); `crd_defaults(crd)` fills what upstream fills on create (names,
conversion, status with accepted names and conditions).

`CRDSchema(openAPIV3Schema)` compiles one version's schema once and offers:
  validate(obj)       -> causes in upstream's wording (kube-openapi messages wrapped as
                         field errors: "Invalid value: \"string\": spec.replicas in body must be
                         of type integer: \"string\"", "Required value", "Unsupported value", ...)
  apply_defaults(obj) -> obj with `default`s filled in (in place; also for null values of
                         non-nullable fields, as upstream does)
  prune(obj)          -> (obj, unknown paths) with undeclared fields removed (in place)
  schema_node()       -> a SchemaNode over the schema, with apiVersion/kind/metadata declared

Paths: "spec.replicas", "spec.items[0].name", map values "spec.labels.key". At the root,
apiVersion, kind and metadata are never pruned and are validated only as far as the schema
declares them (upstream validates metadata as ObjectMeta elsewhere).
"""
from __future__ import annotations

import copy
import datetime
import ipaddress
import json
import re
import uuid
from typing import Any, Callable

from ...machinery.errors import Cause
from .defs import SchemaNode

_ROOT_KEEP = ("apiVersion", "kind", "metadata")
MAX_SCHEMA_DEPTH = 200


# --- Go-style rendering of bad values (field.Error.ErrorBody) -------------------------------

def _go_num(x: float | int) -> str:
    if isinstance(x, float):
        if x.is_integer() and abs(x) < 1e21:
            return str(int(x))
        r = repr(x)
        return r.replace("e+0", "e+").replace("e-0", "e-")
    return str(x)


def _go_sharp_v(x: Any) -> str:
    if x is None:
        return "interface {}(nil)"
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, (int, float)):
        return _go_num(x)
    if isinstance(x, str):
        return json.dumps(x, ensure_ascii=False)
    if isinstance(x, list):
        return "[]interface {}{" + ", ".join(_go_sharp_v(v) for v in x) + "}"
    if isinstance(x, dict):
        return ("map[string]interface {}{" +
                ", ".join(f"{json.dumps(k, ensure_ascii=False)}:{_go_sharp_v(v)}" for k, v in x.items())
                + "}")
    return str(x)


def go_value(x: Any) -> str:
    """How field.Error prints a bad value: %q strings, %v scalars, %#v otherwise."""
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, (int, float)):
        return _go_num(x)
    if isinstance(x, str):
        return json.dumps(x, ensure_ascii=False)
    return _go_sharp_v(x)


def invalid(path: str, value: Any, detail: str) -> Cause:
    return Cause("FieldValueInvalid", path, f"Invalid value: {go_value(value)}: {detail}")


def required(path: str, detail: str = "") -> Cause:
    return Cause("FieldValueRequired", path, "Required value" + (f": {detail}" if detail else ""))


def forbidden(path: str, detail: str) -> Cause:
    return Cause("FieldValueForbidden", path, f"Forbidden: {detail}")


def not_supported(path: str, value: Any, valid: list[str]) -> Cause:
    detail = ("supported values: " + ", ".join(json.dumps(v, ensure_ascii=False) for v in valid)) if valid else ""
    return Cause("FieldValueNotSupported", path,
                 f"Unsupported value: {go_value(value)}" + (f": {detail}" if detail else ""))


def type_invalid(path: str, actual: str, detail: str) -> Cause:
    return Cause("FieldValueTypeInvalid", path, f"Invalid value: {go_value(actual)}: {detail}")


def too_long(path: str, max_len: int) -> Cause:
    return Cause("FieldValueTooLong", path, f"Too long: may not be more than {max_len} bytes")


def too_many(path: str, actual: int, max_n: int) -> Cause:
    return Cause("FieldValueTooMany", path, f"Too many: {actual}: must have at most {max_n} items")


# --- value types as kube-openapi names them ------------------------------------------------

def json_type(x: Any) -> str:
    if x is None:
        return "null"
    t = type(x)
    if t is bool:
        return "boolean"
    if t is int:
        return "integer"
    if t is float:
        return "integer" if x.is_integer() else "number"
    if t is str:
        return "string"
    if t is list:
        return "array"
    return "object"


def _type_ok(want: str, x: Any) -> bool:
    t = type(x)
    if want == "string":
        return t is str
    if want == "integer":
        return t is int or (t is float and x.is_integer())
    if want == "number":
        return t is int or t is float
    if want == "boolean":
        return t is bool
    if want == "array":
        return t is list
    if want == "object":
        return t is dict
    return True


# --- formats (the common ones of kube-openapi's strfmt registry) ----------------------------

_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
_B64 = re.compile(r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$")


def _format_ok(fmt: str, s: str) -> bool:
    try:
        if fmt == "date-time":
            if not _DATE_TIME.match(s):
                return False
            datetime.datetime.fromisoformat(s[:19])
            return True
        if fmt == "date":
            return bool(_DATE.match(s)) and bool(datetime.date.fromisoformat(s))
        if fmt == "uuid":
            return bool(_UUID.match(s)) and bool(uuid.UUID(s))
        if fmt == "byte":
            return bool(_B64.match(s))
        if fmt == "ipv4":
            return isinstance(ipaddress.ip_address(s), ipaddress.IPv4Address)
        if fmt == "ipv6":
            return isinstance(ipaddress.ip_address(s), ipaddress.IPv6Address)
        if fmt == "cidr":
            ipaddress.ip_network(s, strict=False)
            return "/" in s
    except ValueError:
        return False
    return True  # unknown formats are not checked


# --- the compiled validator ----------------------------------------------------------------

Validator = Callable[[Any, str, list], None]


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _compile(s: dict[str, Any], root: bool = False, depth: int = 0) -> Validator:
    """One schema node -> validator(value, path, causes). `value` is present (maybe None)."""
    if depth > MAX_SCHEMA_DEPTH:
        raise ValueError("schema nested too deeply")
    typ = s.get("type") or ""
    nullable = bool(s.get("nullable"))
    int_or_string = bool(s.get("x-kubernetes-int-or-string"))
    embedded = bool(s.get("x-kubernetes-embedded-resource"))
    enum = s.get("enum")
    fmt = s.get("format")
    props = {k: _compile(v, depth=depth + 1) for k, v in (s.get("properties") or {}).items()}
    req = list(s.get("required") or ())
    ap = s.get("additionalProperties")
    ap_v = _compile(ap, depth=depth + 1) if isinstance(ap, dict) else None
    items = s.get("items")
    items_v = _compile(items, depth=depth + 1) if isinstance(items, dict) else None
    all_of = [_compile(x, depth=depth + 1) for x in s.get("allOf") or ()]
    any_of = [_compile(x, depth=depth + 1) for x in s.get("anyOf") or ()]
    one_of = [_compile(x, depth=depth + 1) for x in s.get("oneOf") or ()]
    not_v = _compile(s["not"], depth=depth + 1) if isinstance(s.get("not"), dict) else None
    minimum, maximum = s.get("minimum"), s.get("maximum")
    ex_min, ex_max = bool(s.get("exclusiveMinimum")), bool(s.get("exclusiveMaximum"))
    multiple_of = s.get("multipleOf")
    min_len, max_len = s.get("minLength"), s.get("maxLength")
    pattern = re.compile(_go_regex(s["pattern"])) if isinstance(s.get("pattern"), str) else None
    min_items, max_items = s.get("minItems"), s.get("maxItems")
    unique = bool(s.get("uniqueItems"))
    min_props, max_props = s.get("minProperties"), s.get("maxProperties")

    def v(x: Any, path: str, out: list) -> None:
        name = path or "<nil>"  # kube-openapi names the root "<nil>"... rarely reached
        if x is None:
            if nullable or (not typ and not int_or_string):
                return
            want = "integer,string" if int_or_string else typ
            out.append(type_invalid(path, "null", f'{name} in body must be of type {want}: "null"'))
            return
        if int_or_string:
            if not (type(x) is str or _type_ok("integer", x)):
                jt = json_type(x)
                out.append(type_invalid(path, jt, f'{name} in body must be of type integer,string: "{jt}"'))
                return
        elif typ and not _type_ok(typ, x):
            jt = json_type(x)
            out.append(type_invalid(path, jt, f'{name} in body must be of type {typ}: "{jt}"'))
            return
        t = type(x)
        if enum is not None and x not in enum:
            out.append(not_supported(path, x, [e if isinstance(e, str) else json.dumps(e) for e in enum]))
        if t is str:
            if fmt and not _format_ok(fmt, x):
                out.append(type_invalid(path, x, f'{name} in body must be of type {fmt}: {json.dumps(x)}'))
            n = len(x)
            if max_len is not None and n > max_len:
                out.append(too_long(path, max_len))
            if min_len is not None and n < min_len:
                out.append(invalid(path, x, f"{name} in body should be at least {min_len} chars long"))
            if pattern is not None and not pattern.search(x):
                out.append(invalid(path, x, f"{name} in body should match '{s['pattern']}'"))
        elif (t is int or t is float) and t is not bool:
            if minimum is not None:
                if ex_min and x <= minimum:
                    out.append(invalid(path, x, f"{name} in body should be greater than {_go_num(minimum)}"))
                elif not ex_min and x < minimum:
                    out.append(invalid(path, x, f"{name} in body should be greater than or equal to {_go_num(minimum)}"))
            if maximum is not None:
                if ex_max and x >= maximum:
                    out.append(invalid(path, x, f"{name} in body should be less than {_go_num(maximum)}"))
                elif not ex_max and x > maximum:
                    out.append(invalid(path, x, f"{name} in body should be less than or equal to {_go_num(maximum)}"))
            if multiple_of and (x / multiple_of) != int(x / multiple_of):
                out.append(invalid(path, x, f"{name} in body should be a multiple of {_go_num(multiple_of)}"))
        elif t is list:
            n = len(x)
            if min_items is not None and n < min_items:
                out.append(invalid(path, n, f"{name} in body should have at least {min_items} items"))
            if max_items is not None and n > max_items:
                out.append(too_many(path, n, max_items))
            if unique and n > 1:
                seen: list[str] = []
                for i, e in enumerate(x):
                    key = json.dumps(e, sort_keys=True)
                    if key in seen:
                        out.append(Cause("FieldValueDuplicate", f"{path}[{i}]", f"Duplicate value: {go_value(e)}"))
                    else:
                        seen.append(key)
            if items_v is not None:
                for i, e in enumerate(x):
                    items_v(e, f"{path}[{i}]", out)
        elif t is dict:
            n = len(x)
            if min_props is not None and n < min_props:
                out.append(invalid(path, n, f"{name} in body should have at least {min_props} properties"))
            if max_props is not None and n > max_props:
                out.append(too_many(path, n, max_props))
            for k in req:
                if k not in x:  # a present null is the property's type error, if any
                    out.append(required(_child(path, k)))
            if embedded:
                if not x.get("kind") and "kind" not in props:
                    out.append(required(_child(path, "kind"), "kind is required"))
                if not x.get("apiVersion") and "apiVersion" not in props:
                    out.append(required(_child(path, "apiVersion"), "apiVersion is required"))
            for k, e in x.items():
                pv = props.get(k)
                if pv is not None:
                    if root and k == "metadata":
                        continue
                    pv(e, _child(path, k), out)
                elif ap_v is not None and not (root and k in _ROOT_KEEP):
                    ap_v(e, _child(path, k), out)
        for a in all_of:
            a(x, path, out)
        if any_of and not any(_passes(a, x, path) for a in any_of):
            out.append(invalid(path, x, f"{name} in body must validate at least one schema (anyOf)"))
        if one_of and sum(1 for a in one_of if _passes(a, x, path)) != 1:
            out.append(invalid(path, x, f"{name} in body must validate one and only one schema (oneOf)"))
        if not_v is not None and _passes(not_v, x, path):
            out.append(invalid(path, x, f"{name} in body must not validate the schema (not)"))
    return v


def _passes(v: Validator, x: Any, path: str) -> bool:
    out: list = []
    v(x, path, out)
    return not out


def _go_regex(p: str) -> str:
    """ECMA/RE2 pattern -> Python: the differences that matter for CRD patterns."""
    return p.replace("\\z", "\\Z").replace("(?P<", "(?P<")


class CRDSchema:
    """The compiled structural schema of one CRD version (see module doc)."""

    def __init__(self, openapi_v3_schema: dict[str, Any] | None):
        self.schema: dict[str, Any] = openapi_v3_schema or {"type": "object",
                                                             "x-kubernetes-preserve-unknown-fields": True}
        self._validate = _compile(self.schema, root=True)

    # validation ------------------------------------------------------------------------
    def validate(self, obj: Any) -> list[Cause]:
        out: list[Cause] = []
        self._validate(obj, "", out)
        return out

    # defaulting ------------------------------------------------------------------------
    def apply_defaults(self, obj: Any) -> Any:
        """Fill `default`s (deep copies) where a declared field is absent, or null and not
        nullable; descends into objects, array items and map values, defaults included."""
        _default(obj, self.schema, 0)
        return obj

    # pruning ---------------------------------------------------------------------------
    def prune(self, obj: Any) -> tuple[Any, list[str]]:
        """Remove fields the schema does not declare (in place); returns the object and the
        removed paths in strict-decoding form ("spec.foo", "spec.items[0].bar")."""
        unknown: list[str] = []
        _prune(obj, self.schema, "", unknown, root=True, depth=0)
        return obj, unknown

    def schema_node(self) -> SchemaNode:
        """A SchemaNode over the schema, with the root's apiVersion, kind and metadata
        declared as upstream does for every custom resource (metadata -> ObjectMeta)."""
        root = dict(self.schema)
        props = dict(root.get("properties") or {})
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        meta = dict(props.get("metadata") or {})
        meta.pop("type", None)
        meta["$ref"] = "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        props["metadata"] = meta
        root["properties"] = props
        root.setdefault("type", "object")
        return SchemaNode(root)


def _default(x: Any, s: dict[str, Any], depth: int) -> None:
    if depth > MAX_SCHEMA_DEPTH:
        return
    if type(x) is dict:
        props = s.get("properties")
        if props:
            for k, ps in props.items():
                if "default" in ps and (k not in x or (x[k] is None and not ps.get("nullable"))):
                    x[k] = copy.deepcopy(ps["default"])
                if k in x:
                    _default(x[k], ps, depth + 1)
        ap = s.get("additionalProperties")
        if isinstance(ap, dict):
            for k, v in x.items():
                if v is None and "default" in ap and not ap.get("nullable"):
                    x[k] = v = copy.deepcopy(ap["default"])
                _default(v, ap, depth + 1)
    elif type(x) is list:
        it = s.get("items")
        if isinstance(it, dict):
            for i, v in enumerate(x):
                if v is None and "default" in it and not it.get("nullable"):
                    x[i] = v = copy.deepcopy(it["default"])
                _default(v, it, depth + 1)


def _prune(x: Any, s: dict[str, Any], path: str, unknown: list[str], root: bool, depth: int) -> None:
    if depth > MAX_SCHEMA_DEPTH:
        return
    if type(x) is dict:
        props = s.get("properties") or {}
        ap = s.get("additionalProperties")
        preserve = bool(s.get("x-kubernetes-preserve-unknown-fields"))
        embedded = bool(s.get("x-kubernetes-embedded-resource"))
        for k in list(x):
            ps = props.get(k)
            if ps is not None:
                if root and k == "metadata":
                    continue
                _prune(x[k], ps, _child(path, k), unknown, False, depth + 1)
            elif isinstance(ap, dict):
                _prune(x[k], ap, _child(path, k), unknown, False, depth + 1)
            elif (root or embedded) and k in _ROOT_KEEP:
                continue
            elif preserve or ap is True:
                continue
            else:
                del x[k]
                unknown.append(_child(path, k))
    elif type(x) is list:
        it = s.get("items")
        if isinstance(it, dict):
            for i, v in enumerate(x):
                _prune(v, it, f"{path}[{i}]", unknown, False, depth + 1)


# --- CustomResourceDefinition checks -------------------------------------------------------

_DNS1123_SUB = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1035_MSG = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start "
                "with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  "
                "or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")
_DNS1123_SUB_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                    "characters, '-' or '.', and must start and end with an alphanumeric character "
                    "(e.g. 'example.com', regex used for validation is "
                    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
_PRINTER_TYPES = ("boolean", "date", "integer", "number", "string")
_PRINTER_FORMATS = ("byte", "date", "date-time", "double", "float", "int32", "int64", "password")


def _dns1035(v: str) -> list[str]:
    errs = []
    if len(v) > 63:
        errs.append("must be no more than 63 characters")
    if not _DNS1035.match(v):
        errs.append(_DNS1035_MSG)
    return errs


def _versions_value(versions: Any) -> str:
    return "[]apiextensions.CustomResourceDefinitionVersion{...}" if versions else \
        "[]apiextensions.CustomResourceDefinitionVersion(nil)"


def validate_crd(crd: dict[str, Any]) -> list[Cause]:
    """Upstream's static checks of a v1 CRD (after crd_defaults), as 422 causes."""
    errs: list[Cause] = []
    meta = crd.get("metadata") or {}
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group = spec.get("group") or ""
    plural = names.get("plural") or ""
    name = meta.get("name") or ""
    if name != f"{plural}.{group}":
        errs.append(invalid("metadata.name", name, 'must be spec.names.plural+"."+spec.group'))
    if not group:
        errs.append(required("spec.group"))
    elif len(group) > 253 or not _DNS1123_SUB.match(group):
        errs.append(invalid("spec.group", group, _DNS1123_SUB_MSG))
    elif "." not in group:
        errs.append(invalid("spec.group", group, "should be a domain with at least one dot"))
    scope = spec.get("scope") or ""
    if not scope:
        errs.append(required("spec.scope"))
    elif scope not in ("Cluster", "Namespaced"):
        errs.append(not_supported("spec.scope", scope, ["Cluster", "Namespaced"]))

    versions = spec.get("versions") or []
    storage = 0
    seen: set[str] = set()
    unique = True
    for i, ver in enumerate(versions):
        vp = f"spec.versions[{i}]"
        if not isinstance(ver, dict):
            continue
        vname = ver.get("name") or ""
        if ver.get("storage"):
            storage += 1
        if vname in seen:
            unique = False
        seen.add(vname)
        if not vname:
            errs.append(required(f"{vp}.name"))
        elif _dns1035(vname):
            errs.append(invalid(f"{vp}.name", vname, ",".join(_dns1035(vname))))
        schema = (ver.get("schema") or {}).get("openAPIV3Schema")
        if schema is None:
            errs.append(required(f"{vp}.schema.openAPIV3Schema", "schemas are required"))
        else:
            sub = ver.get("subresources") or {}
            errs.extend(_validate_schema_root(schema, f"{vp}.schema.openAPIV3Schema",
                                              status="status" in sub))
        scale = (ver.get("subresources") or {}).get("scale")
        if scale is not None:
            errs.extend(_validate_scale(scale, f"{vp}.subresources.scale"))
        for j, col in enumerate(ver.get("additionalPrinterColumns") or ()):
            errs.extend(_validate_column(col, f"{vp}.additionalPrinterColumns[{j}]"))
    if not versions:
        errs.append(invalid("spec.versions", None, "must have exactly one version marked as storage version"))
    else:
        if not unique:
            errs.append(Cause("FieldValueInvalid", "spec.versions",
                              f"Invalid value: {_versions_value(versions)}: must contain unique version names"))
        if storage != 1:
            errs.append(Cause("FieldValueInvalid", "spec.versions",
                              f"Invalid value: {_versions_value(versions)}: must have exactly one version "
                              "marked as storage version"))
    if spec.get("preserveUnknownFields"):
        errs.append(invalid("spec.preserveUnknownFields", True, "cannot set to true, set "
                            "x-kubernetes-preserve-unknown-fields to true in spec.versions[*].schema instead"))

    for k in ("plural", "singular", "kind", "listKind"):
        if not names.get(k):
            errs.append(required(f"spec.names.{k}"))
    errs.extend(_validate_names(names, "spec.names"))
    conv = spec.get("conversion")
    if isinstance(conv, dict):
        strategy = conv.get("strategy") or ""
        if not strategy:
            errs.append(required("spec.conversion.strategy"))
        elif strategy not in ("None", "Webhook"):
            errs.append(not_supported("spec.conversion.strategy", strategy, ["None", "Webhook"]))
        elif strategy == "Webhook" and not (conv.get("webhook") or {}).get("clientConfig"):
            errs.append(required("spec.conversion.webhook", "must be set when strategy is set to Webhook"))
    return errs


def _validate_names(names: dict[str, Any], p: str) -> list[Cause]:
    errs: list[Cause] = []
    for k in ("plural", "singular"):
        v = names.get(k) or ""
        if v and _dns1035(v):
            errs.append(invalid(f"{p}.{k}", v, ",".join(_dns1035(v))))
    for k in ("kind", "listKind"):
        v = names.get(k) or ""
        if v and _dns1035(v.lower()):
            errs.append(invalid(f"{p}.{k}", v, "may have mixed case, but should otherwise match: "
                                + ",".join(_dns1035(v.lower()))))
    for i, v in enumerate(names.get("shortNames") or ()):
        if not isinstance(v, str) or _dns1035(v):
            errs.append(invalid(f"{p}.shortNames[{i}]", v, ",".join(_dns1035(str(v)))))
    if names.get("kind") and names.get("kind") == names.get("listKind"):
        errs.append(invalid(f"{p}.listKind", names["listKind"], "kind and listKind may not be the same"))
    for i, v in enumerate(names.get("categories") or ()):
        if not isinstance(v, str) or _dns1035(v):
            errs.append(invalid(f"{p}.categories[{i}]", v, ",".join(_dns1035(str(v)))))
    return errs


def _simple_jsonpath(s: str, p: str) -> list[Cause]:
    if not s:
        return [invalid(p, s, "must not be empty")]
    if s[0] != ".":
        return [invalid(p, s, "must be a simple json path starting with .")]
    return []


def _validate_scale(scale: dict[str, Any], p: str) -> list[Cause]:
    errs: list[Cause] = []
    for k, prefix, where in (("specReplicasPath", ".spec.", ".spec"), ("statusReplicasPath", ".status.", ".status")):
        v = scale.get(k) or ""
        if not v:
            errs.append(required(f"{p}.{k}"))
        elif _simple_jsonpath(v, f"{p}.{k}"):
            errs.extend(_simple_jsonpath(v, f"{p}.{k}"))
        elif not v.startswith(prefix):
            errs.append(invalid(f"{p}.{k}", v, f"should be a json path under {where}"))
    ls = scale.get("labelSelectorPath")
    if ls:
        if _simple_jsonpath(ls, f"{p}.labelSelectorPath"):
            errs.extend(_simple_jsonpath(ls, f"{p}.labelSelectorPath"))
        elif not ls.startswith(".status."):
            errs.append(invalid(f"{p}.labelSelectorPath", ls, "should be a json path under .status"))
    return errs


def _validate_column(col: dict[str, Any], p: str) -> list[Cause]:
    errs: list[Cause] = []
    if not col.get("name"):
        errs.append(required(f"{p}.name"))
    t = col.get("type") or ""
    if not t:
        errs.append(required(f"{p}.type", "must be one of " + ",".join(_PRINTER_TYPES)))
    elif t not in _PRINTER_TYPES:
        errs.append(invalid(f"{p}.type", t, "must be one of " + ",".join(_PRINTER_TYPES)))
    f = col.get("format") or ""
    if f and f not in _PRINTER_FORMATS:
        errs.append(invalid(f"{p}.format", f, "must be one of " + ",".join(_PRINTER_FORMATS)))
    jp = col.get("jsonPath") or ""
    if not jp:
        errs.append(required(f"{p}.jsonPath"))
    return errs


_FORBIDDEN_KEYS = {"id": "id is not supported", "additionalItems": "additionalItems is not supported",
                   "patternProperties": "patternProperties is not supported",
                   "definitions": "definitions is not supported",
                   "dependencies": "dependencies is not supported", "$ref": "$ref is not supported"}
_ROOT_ALLOWED = {"description", "type", "format", "title", "maximum", "exclusiveMaximum", "minimum",
                 "exclusiveMinimum", "maxLength", "minLength", "pattern", "maxItems", "minItems",
                 "uniqueItems", "multipleOf", "required", "items", "properties", "externalDocs",
                 "example", "x-kubernetes-preserve-unknown-fields", "x-kubernetes-validations",
                 "x-kubernetes-embedded-resource", "x-kubernetes-int-or-string",
                 "x-kubernetes-list-type", "x-kubernetes-map-type", "nullable", "enum",
                 "additionalProperties", "minProperties", "maxProperties", "allOf", "anyOf", "oneOf", "not"}


def _validate_schema_root(schema: Any, p: str, status: bool) -> list[Cause]:
    errs: list[Cause] = []
    if not isinstance(schema, dict):
        return [invalid(p, schema, "must be an object")]
    if status and schema.get("type") not in (None, "object"):
        errs.append(invalid(f"{p}.type", schema.get("type"),
                            'only "object" is allowed as the type at the root of the schema if the status subresource is enabled'))
    if not schema.get("type") and not schema.get("x-kubernetes-preserve-unknown-fields") \
            and not schema.get("x-kubernetes-int-or-string"):
        errs.append(required(f"{p}.type", "must not be empty at the root"))
    elif schema.get("type") not in (None, "object"):
        errs.append(invalid(f"{p}.type", schema.get("type"), 'must be object at the root'))
    if schema.get("nullable"):
        errs.append(forbidden(f"{p}.nullable", "must be false at the root"))
    errs.extend(_validate_schema(schema, p, 0, structural=True))
    # root metadata may only restrict name and generateName
    meta = (schema.get("properties") or {}).get("metadata")
    if isinstance(meta, dict):
        for k in (meta.get("properties") or {}):
            if k not in ("name", "generateName"):
                errs.append(forbidden(f"{p}.properties[metadata].properties[{k}]", "not allowed"))
    if not errs:
        try:
            CRDSchema(schema)
        except (ValueError, re.error, TypeError) as e:
            errs.append(invalid(p.rsplit(".", 1)[0], "", f"error building validator: {e}"))
    return errs


def _validate_schema(s: Any, p: str, depth: int, structural: bool, in_junctor: bool = False) -> list[Cause]:
    errs: list[Cause] = []
    if depth > MAX_SCHEMA_DEPTH:
        return [invalid(p, "", "schema nested too deeply")]
    if not isinstance(s, dict):
        return [invalid(p, s, "must be an object")]
    for k, msg in _FORBIDDEN_KEYS.items():
        if k in s:
            errs.append(forbidden(f"{p}.{k}", msg))
    if s.get("type") == "null":
        errs.append(forbidden(f"{p}.type", "type cannot be set to null"))
    if s.get("uniqueItems") is True:
        errs.append(forbidden(f"{p}.uniqueItems", "uniqueItems cannot be set to true since the runtime complexity becomes quadratic"))
    t = s.get("type")
    if t is not None and t not in ("object", "array", "string", "integer", "number", "boolean"):
        errs.append(not_supported(f"{p}.type", t, ["array", "boolean", "integer", "number", "object", "string"]))
    if "x-kubernetes-preserve-unknown-fields" in s and s["x-kubernetes-preserve-unknown-fields"] is not True:
        errs.append(invalid(f"{p}.x-kubernetes-preserve-unknown-fields", s["x-kubernetes-preserve-unknown-fields"],
                            "must be true or undefined"))
    if s.get("x-kubernetes-int-or-string") and t:
        errs.append(invalid(f"{p}.type", t, "must be empty if x-kubernetes-int-or-string is true"))
    if s.get("x-kubernetes-embedded-resource") and t != "object":
        errs.append(invalid(f"{p}.type", t or "", "must be object if x-kubernetes-embedded-resource is true"))
    if isinstance(s.get("pattern"), str):
        try:
            re.compile(_go_regex(s["pattern"]))
        except re.error as e:
            errs.append(invalid(f"{p}.pattern", s["pattern"], f"must be a valid regular expression, but isn't: {e}"))
    props = s.get("properties")
    ap = s.get("additionalProperties")
    if props and ap is not None and (ap is False or isinstance(ap, dict)):
        errs.append(forbidden(f"{p}.additionalProperties", "additionalProperties and properties are mutual exclusive"))
    if isinstance(props, dict):
        for k, ps in props.items():
            cp = f"{p}.properties[{k}]"
            if structural and not in_junctor and isinstance(ps, dict) and not ps.get("type") \
                    and not ps.get("x-kubernetes-int-or-string") and not ps.get("x-kubernetes-preserve-unknown-fields"):
                errs.append(required(f"{cp}.type", "must not be empty for specified object fields"))
            errs.extend(_validate_schema(ps, cp, depth + 1, structural, in_junctor))
    if isinstance(ap, dict):
        cp = f"{p}.additionalProperties"
        if structural and not in_junctor and not ap.get("type") and not ap.get("x-kubernetes-int-or-string") \
                and not ap.get("x-kubernetes-preserve-unknown-fields"):
            errs.append(required(f"{cp}.type", "must not be empty for specified object fields"))
        errs.extend(_validate_schema(ap, cp, depth + 1, structural, in_junctor))
    items = s.get("items")
    if items is not None:
        if isinstance(items, list):
            errs.append(forbidden(f"{p}.items", "items must be a schema object and not an array"))
        else:
            if structural and not in_junctor and isinstance(items, dict) and not items.get("type") \
                    and not items.get("x-kubernetes-int-or-string") \
                    and not items.get("x-kubernetes-preserve-unknown-fields"):
                errs.append(required(f"{p}.items.type", "must not be empty for specified array items"))
            errs.extend(_validate_schema(items, f"{p}.items", depth + 1, structural, in_junctor))
    elif t == "array" and structural and not in_junctor:
        errs.append(required(f"{p}.items", "must be specified"))
    for j in ("allOf", "anyOf", "oneOf"):
        for i, sub in enumerate(s.get(j) or ()):
            errs.extend(_validate_schema(sub, f"{p}.{j}[{i}]", depth + 1, structural, True))
    if isinstance(s.get("not"), dict):
        errs.extend(_validate_schema(s["not"], f"{p}.not", depth + 1, structural, True))
    if "default" in s and not in_junctor:
        d = s["default"]
        try:
            node_errs = CRDSchema(_without_default(s)).validate(d)
        except (ValueError, re.error, TypeError):
            node_errs = []
        for e in node_errs:
            errs.append(Cause(e.reason, f"{p}.default" + (("." + e.field) if e.field else ""), e.detail))
    return errs


def _without_default(s: dict[str, Any]) -> dict[str, Any]:
    out = dict(s)
    out.pop("default", None)
    return out


def crd_defaults(crd: dict[str, Any], now: str | None = None) -> dict[str, Any]:
    """Upstream's defaults and the status a new CRD shows once established (in place):
    spec.names.singular/listKind, spec.conversion.strategy None, per-version served/storage
    untouched, status.acceptedNames = spec.names, conditions NamesAccepted and Established,
    storedVersions = [the storage version]."""
    # A JSON null is Go's zero value (an empty struct): validation then names what is missing.
    if not isinstance(crd.get("spec"), dict):
        crd["spec"] = {}
    spec = crd["spec"]
    if not isinstance(spec.get("names"), dict):
        spec["names"] = {}
    names = spec["names"]
    kind = names.get("kind") or ""
    if not names.get("singular") and kind:
        names["singular"] = kind.lower()
    if not names.get("listKind") and kind:
        names["listKind"] = kind + "List"
    if not spec.get("conversion"):
        spec["conversion"] = {"strategy": "None"}
    conv = spec["conversion"]
    if isinstance(conv, dict) and conv.get("strategy") == "Webhook" and isinstance(conv.get("webhook"), dict):
        conv["webhook"].setdefault("conversionReviewVersions", ["v1"])
    if now is None:
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if not isinstance(crd.get("status"), dict):
        crd["status"] = {}
    status = crd["status"]
    accepted = {k: names[k] for k in ("categories", "kind", "listKind", "plural", "shortNames", "singular")
                if names.get(k)}
    status["acceptedNames"] = accepted
    status["conditions"] = [
        {"lastTransitionTime": now, "message": "no conflicts found", "reason": "NoConflicts",
         "status": "True", "type": "NamesAccepted"},
        {"lastTransitionTime": now, "message": "the initial names have been accepted",
         "reason": "InitialNamesAccepted", "status": "True", "type": "Established"},
    ]
    stored = [v.get("name") for v in spec.get("versions") or () if isinstance(v, dict) and v.get("storage")]
    prev = [v for v in status.get("storedVersions") or () if isinstance(v, str)]
    status["storedVersions"] = prev + [v for v in stored if v and v not in prev]
    return crd
