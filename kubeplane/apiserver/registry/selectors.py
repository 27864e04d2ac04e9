"""Label and field selectors, as kube-apiserver parses and applies them.

Label selectors follow k8s.io/apimachinery/pkg/labels (Parse, NewRequirement,
Requirement.Matches, String) and metav1.LabelSelectorAsSelector; field selectors follow
k8s.io/apimachinery/pkg/fields plus each resource's field-label conversion (the set of
fields a resource accepts, and the message it gives for the others).

Invariants:
- A parsed selector is immutable; requirements are kept sorted by key (stable), as
  upstream's `Add` sorts them, so `str()` is deterministic and matches upstream's String().
- Matching never raises: labels/fields are `dict[str, str]` (a missing labels dict is {}).
- A field that is absent from an object's field set reads as "" (upstream fields.Set.Get).
- Client input errors are APIError 400 BadRequest with upstream's message text.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from kubeplane.apiserver.machinery import jsonpath
from kubeplane.apiserver.machinery.errors import APIError, bad_request
from kubeplane.apiserver.registry.resources import ResourceInfo

# --- upstream validation (k8s.io/apimachinery/pkg/util/validation) -------------------

_QNAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QNAME_RE = re.compile("^" + _QNAME_FMT + "$")
_QNAME_MSG = ("must consist of alphanumeric characters, '-', '_' or '.', and must start and "
              "end with an alphanumeric character")
_LABEL_VALUE_FMT = "(" + _QNAME_FMT + ")?"
_LABEL_VALUE_RE = re.compile("^" + _LABEL_VALUE_FMT + "$")
_LABEL_VALUE_MSG = ("a valid label must be an empty string or consist of alphanumeric characters, "
                    "'-', '_' or '.', and must start and end with an alphanumeric character")
_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL_FMT + "(\\." + _DNS1123_LABEL_FMT + ")*"
_DNS1123_SUBDOMAIN_RE = re.compile("^" + _DNS1123_SUBDOMAIN_FMT + "$")
_DNS1123_SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                          "characters, '-' or '.', and must start and end with an alphanumeric character")


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    out = msg + " (e.g. "
    for i, ex in enumerate(examples):
        if i:
            out += " or "
        out += f"'{ex}', "
    return out + f"regex used for validation is '{fmt}')"


def _max_len_error(n: int) -> str:
    return f"must be no more than {n} characters"


def qualified_name_errors(value: str) -> list[str]:
    """upstream validation.IsQualifiedName: optional DNS-subdomain prefix, '/', name <= 63."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            if len(prefix) > 253:
                errs.append("prefix part " + _max_len_error(253))
            if not _DNS1123_SUBDOMAIN_RE.match(prefix):
                errs.append("prefix part " + _regex_error(_DNS1123_SUBDOMAIN_MSG, _DNS1123_SUBDOMAIN_FMT,
                                                          "example.com"))
    else:
        return ["a qualified name " + _regex_error(_QNAME_MSG, _QNAME_FMT, "MyName", "my.name", "123-abc")
                + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part " + _max_len_error(63))
    if not _QNAME_RE.match(name):
        errs.append("name part " + _regex_error(_QNAME_MSG, _QNAME_FMT, "MyName", "my.name", "123-abc"))
    return errs


def label_value_errors(value: str) -> list[str]:
    """upstream validation.IsValidLabelValue."""
    errs = []
    if len(value) > 63:
        errs.append(_max_len_error(63))
    if not _LABEL_VALUE_RE.match(value):
        errs.append(_regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def _go_quote(s: str) -> str:
    """Go's %q for a string (close enough: printable text kept, quotes/backslashes escaped)."""
    out = ['"']
    for ch in s:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _invalid(path: str, value: Any, detail: str) -> str:
    """field.Invalid(path, value, detail).Error(); a nil path prints as "<nil>"."""
    if isinstance(value, str):
        shown = _go_quote(value)
    elif isinstance(value, list):
        shown = "[]string{" + ", ".join(_go_quote(v) for v in value) + "}"
    else:
        shown = str(value)
    return f"{path}: Invalid value: {shown}: {detail}"


def _aggregate(msgs: list[str]) -> str:
    seen: list[str] = []
    for m in msgs:
        if m not in seen:
            seen.append(m)
    if len(seen) == 1:
        return seen[0]
    return "[" + ", ".join(seen) + "]"


class _SelectorError(Exception):
    """Internal: an upstream error text, turned into an APIError at the public boundary."""


# --- label selectors -------------------------------------------------------------------

# selection.Operator values
IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS = "in", "notin", "=", "==", "!="
EXISTS, DOES_NOT_EXIST, GREATER_THAN, LESS_THAN = "exists", "!", "gt", "lt"
_BINARY_OPS = (IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS, GREATER_THAN, LESS_THAN)


def _parse_int(s: str) -> int | None:
    if re.fullmatch(r"[+-]?[0-9]+", s) is None:
        return None
    v = int(s)
    return v if -(1 << 63) <= v < (1 << 63) else None


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str
    values: tuple[str, ...] = ()

    @classmethod
    def new(cls, key: str, op: str, values: Iterable[str] = (), path: str | None = None) -> Requirement:
        """upstream labels.NewRequirement: validates and raises _SelectorError with its text."""
        vals = list(values)
        errs: list[str] = []
        base = path  # None -> upstream's nil path
        key_path = f"{base}.key" if base else "key"
        val_path = f"{base}.values" if base else "values"
        kerrs = qualified_name_errors(key)
        if kerrs:
            errs.append(_invalid(key_path, key, "; ".join(kerrs)))
        if op in (IN, NOT_IN):
            if not vals:
                errs.append(_invalid(val_path, vals, "for 'in', 'notin' operators, values set can't be empty"))
        elif op in (EQUALS, DOUBLE_EQUALS, NOT_EQUALS):
            if len(vals) != 1:
                errs.append(_invalid(val_path, vals, "exact-match compatibility requires one single value"))
        elif op in (EXISTS, DOES_NOT_EXIST):
            if vals:
                errs.append(_invalid(val_path, vals, "values set must be empty for exists and does not exist"))
        elif op in (GREATER_THAN, LESS_THAN):
            if len(vals) != 1:
                errs.append(_invalid(val_path, vals, "for 'Gt', 'Lt' operators, exactly one value is required"))
            for i, v in enumerate(vals):
                if _parse_int(v) is None:
                    errs.append(_invalid(f"{val_path}[{i}]", v,
                                         "for 'Gt', 'Lt' operators, the value must be an integer"))
        else:
            supported = ", ".join(_go_quote(o) for o in _BINARY_OPS + (EXISTS, DOES_NOT_EXIST))
            op_path = f"{base}.operator" if base else "operator"
            errs.append(f"{op_path}: Unsupported value: {_go_quote(op)}: supported values: {supported}")
        for i, v in enumerate(vals):
            verrs = label_value_errors(v)
            if verrs:
                errs.append(_invalid(f"{val_path}[{i}][{key}]", v, "; ".join(verrs)))
        if errs:
            raise _SelectorError(_aggregate(errs))
        return cls(key, op, tuple(vals))

    def matches(self, labels: dict[str, str]) -> bool:
        op = self.op
        if op in (IN, EQUALS, DOUBLE_EQUALS):
            v = labels.get(self.key)
            return v is not None and v in self.values
        if op in (NOT_IN, NOT_EQUALS):
            v = labels.get(self.key)
            return v is None or v not in self.values
        if op == EXISTS:
            return self.key in labels
        if op == DOES_NOT_EXIST:
            return self.key not in labels
        if op in (GREATER_THAN, LESS_THAN):
            v = labels.get(self.key)
            if v is None or len(self.values) != 1:
                return False
            have, want = _parse_int(v), _parse_int(self.values[0])
            if have is None or want is None:
                return False
            return have > want if op == GREATER_THAN else have < want
        return False

    def __str__(self) -> str:
        op = self.op
        if op == EXISTS:
            return self.key
        if op == DOES_NOT_EXIST:
            return "!" + self.key
        vals = ",".join(sorted(self.values)) if len(self.values) > 1 else "".join(self.values)
        if op in (IN, NOT_IN):
            return f"{self.key} {op} ({vals})"
        sym = {GREATER_THAN: ">", LESS_THAN: "<"}.get(op, op)
        return f"{self.key}{sym}{vals}"


class LabelSelector:
    """A parsed label selector: the AND of its requirements. `LabelSelector.NOTHING`
    (from a nil metav1.LabelSelector) matches no object."""

    __slots__ = ("requirements", "_nothing")

    NOTHING: LabelSelector  # set below
    EVERYTHING: LabelSelector

    def __init__(self, requirements: Iterable[Requirement] = (), *, nothing: bool = False):
        self.requirements: tuple[Requirement, ...] = tuple(sorted(requirements, key=lambda r: r.key))
        self._nothing = nothing

    # construction ------------------------------------------------------------------

    @classmethod
    def parse(cls, text: str | None) -> LabelSelector:
        """Parse the `labelSelector` query parameter (upstream labels.Parse).
        Raises APIError 400 BadRequest with upstream's message."""
        if not text:
            return cls.EVERYTHING
        try:
            return cls(_LabelParser(text).parse())
        except _SelectorError as e:
            raise bad_request(str(e)) from None

    @classmethod
    def from_dict(cls, label_selector: dict[str, Any] | None) -> LabelSelector:
        """metav1.LabelSelectorAsSelector: None -> NOTHING, {} -> EVERYTHING. Raises
        APIError 400 for an invalid selector (unknown operator, bad key or value)."""
        if label_selector is None:
            return cls.NOTHING
        if not isinstance(label_selector, dict):
            raise bad_request("label selector must be an object")
        match_labels = label_selector.get("matchLabels") or {}
        exprs = label_selector.get("matchExpressions") or []
        if not isinstance(match_labels, dict) or not isinstance(exprs, list):
            raise bad_request("label selector: matchLabels must be an object and matchExpressions a list")
        if not match_labels and not exprs:
            return cls.EVERYTHING
        ops = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST}
        reqs: list[Requirement] = []
        try:
            for k, v in match_labels.items():
                reqs.append(Requirement.new(str(k), EQUALS, [v if isinstance(v, str) else str(v)]))
            for e in exprs:
                if not isinstance(e, dict):
                    raise _SelectorError("label selector requirement must be an object")
                op = e.get("operator")
                if op not in ops:
                    raise _SelectorError(f"{_go_quote(str(op) if op is not None else '')} is not a valid "
                                         "label selector operator")
                values = e.get("values") or []
                if not isinstance(values, list):
                    raise _SelectorError("label selector requirement values must be a list")
                reqs.append(Requirement.new(str(e.get("key", "")), ops[op],
                                            [v if isinstance(v, str) else str(v) for v in values]))
        except _SelectorError as err:
            raise bad_request(str(err)) from None
        return cls(reqs)

    @classmethod
    def from_set(cls, labels: dict[str, str]) -> LabelSelector:
        """labels.SelectorFromSet: exact match of every pair (no validation)."""
        return cls(Requirement(k, EQUALS, (v,)) for k, v in labels.items())

    # queries -----------------------------------------------------------------------

    @property
    def empty(self) -> bool:
        """True when the selector does not restrict anything (NOTHING is not empty)."""
        return not self._nothing and not self.requirements

    @property
    def nothing(self) -> bool:
        return self._nothing

    def matches(self, labels: dict[str, str] | None) -> bool:
        if self._nothing:
            return False
        if labels is None:
            labels = {}
        for r in self.requirements:
            if not r.matches(labels):
                return False
        return True

    def exact_pairs(self) -> list[tuple[str, str]]:
        """(key, value) for every requirement that needs key == value exactly
        (=, == and a single-valued `in`): usable to narrow a list through an index."""
        return [(r.key, r.values[0]) for r in self.requirements
                if r.op in (EQUALS, DOUBLE_EQUALS, IN) and len(r.values) == 1]

    def requires_exact_match(self, key: str) -> str | None:
        """upstream RequiresExactMatch: the first requirement on `key` decides."""
        for r in self.requirements:
            if r.key == key:
                if r.op in (EQUALS, DOUBLE_EQUALS, IN) and len(r.values) == 1:
                    return r.values[0]
                return None
        return None

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)

    def __repr__(self) -> str:
        return "LabelSelector(NOTHING)" if self._nothing else f"LabelSelector({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, LabelSelector) and other._nothing == self._nothing
                and other.requirements == self.requirements)

    def __hash__(self) -> int:
        return hash((self._nothing, self.requirements))


LabelSelector.NOTHING = LabelSelector(nothing=True)
LabelSelector.EVERYTHING = LabelSelector()


# tokens
_T_ERROR, _T_END, _T_CLOSE, _T_COMMA, _T_NOT, _T_DEQ, _T_EQ, _T_GT, _T_ID, _T_IN, _T_LT, _T_NEQ, \
    _T_NOTIN, _T_OPEN = range(14)
_TOKENS = {")": _T_CLOSE, ",": _T_COMMA, "!": _T_NOT, "==": _T_DEQ, "=": _T_EQ, ">": _T_GT,
           "in": _T_IN, "<": _T_LT, "!=": _T_NEQ, "notin": _T_NOTIN, "(": _T_OPEN}
_SPECIAL = set("=!(),><")
_WS = set(" \t\r\n")


def _lex(s: str) -> list[tuple[int, str]]:
    """Upstream's label Lexer, run to the end of the input."""
    out: list[tuple[int, str]] = []
    i, n = 0, len(s)
    while True:
        while i < n and s[i] in _WS:
            i += 1
        if i >= n:
            out.append((_T_END, ""))
            return out
        if s[i] in _SPECIAL:
            buf = ""
            last: tuple[int, str] | None = None
            while i < n and s[i] in _SPECIAL:
                buf += s[i]
                if buf in _TOKENS:
                    last = (_TOKENS[buf], buf)
                    i += 1
                elif last is not None:
                    break
                else:
                    i += 1
            out.append(last if last is not None else (_T_ERROR, f"error expected: keyword found '{buf}'"))
        else:
            j = i
            while j < n and s[j] not in _SPECIAL and s[j] not in _WS:
                j += 1
            word = s[i:j]
            i = j
            out.append((_TOKENS[word], word) if word in ("in", "notin") else (_T_ID, word))


class _LabelParser:
    """Upstream's recursive-descent label selector parser (same errors, same results)."""

    def __init__(self, text: str):
        self.items = _lex(text)
        self.pos = 0

    def look(self, values: bool) -> tuple[int, str]:
        tok, lit = self.items[self.pos]
        if values and tok in (_T_IN, _T_NOTIN):
            tok = _T_ID
        return tok, lit

    def take(self, values: bool) -> tuple[int, str]:
        r = self.look(values)
        self.pos += 1
        return r

    def parse(self) -> list[Requirement]:
        reqs: list[Requirement] = []
        while True:
            tok, lit = self.look(True)
            if tok in (_T_ID, _T_NOT):
                try:
                    reqs.append(self.requirement())
                except _SelectorError as e:
                    raise _SelectorError(f"unable to parse requirement: {e}") from None
                t, lit2 = self.take(True)
                if t == _T_END:
                    return reqs
                if t == _T_COMMA:
                    t2, lit3 = self.look(True)
                    if t2 not in (_T_ID, _T_NOT):
                        raise _SelectorError(f"found '{lit3}', expected: identifier after ','")
                else:
                    raise _SelectorError(f"found '{lit2}', expected: ',' or 'end of string'")
            elif tok == _T_END:
                return reqs
            else:
                raise _SelectorError(f"found '{lit}', expected: !, identifier, or 'end of string'")

    def requirement(self) -> Requirement:
        op: str | None = None
        tok, lit = self.take(True)
        if tok == _T_NOT:
            op = DOES_NOT_EXIST
            tok, lit = self.take(True)
        if tok != _T_ID:
            raise _SelectorError(f"found '{lit}', expected: identifier")
        key = lit
        kerrs = qualified_name_errors(key)
        if kerrs:
            raise _SelectorError(_invalid("<nil>", key, "; ".join(kerrs)))
        t, _ = self.look(True)
        if t in (_T_END, _T_COMMA):
            return Requirement.new(key, op or EXISTS)
        if op == DOES_NOT_EXIST:
            return Requirement.new(key, op)
        tok, lit = self.take(False)
        ops = {_T_IN: IN, _T_EQ: EQUALS, _T_DEQ: DOUBLE_EQUALS, _T_GT: GREATER_THAN, _T_LT: LESS_THAN,
               _T_NOTIN: NOT_IN, _T_NEQ: NOT_EQUALS}
        if tok not in ops:
            raise _SelectorError(f"found '{lit}', expected: {', '.join(_BINARY_OPS)}")
        op = ops[tok]
        values = self.set_values() if op in (IN, NOT_IN) else self.exact_value()
        return Requirement.new(key, op, sorted(values))

    def set_values(self) -> set[str]:
        tok, lit = self.take(True)
        if tok != _T_OPEN:
            raise _SelectorError(f"found '{lit}' expected: '('")
        tok, lit = self.look(True)
        if tok in (_T_ID, _T_COMMA):
            s = self.identifiers()
            if self.take(True)[0] != _T_CLOSE:
                raise _SelectorError(f"found '{lit}', expected: ')'")
            return s
        if tok == _T_CLOSE:
            self.take(True)
            return {""}
        raise _SelectorError(f"found '{lit}', expected: ',', ')' or identifier")

    def identifiers(self) -> set[str]:
        s: set[str] = set()
        while True:
            tok, lit = self.take(True)
            if tok == _T_ID:
                s.add(lit)
                t2, lit2 = self.look(True)
                if t2 == _T_COMMA:
                    continue
                if t2 == _T_CLOSE:
                    return s
                raise _SelectorError(f"found '{lit2}', expected: ',' or ')'")
            if tok == _T_COMMA:
                if not s:
                    s.add("")
                t2, _ = self.look(True)
                if t2 == _T_CLOSE:
                    s.add("")
                    return s
                if t2 == _T_COMMA:
                    self.take(True)
                    s.add("")
            else:
                raise _SelectorError(f"found '{lit}', expected: ',', or identifier")

    def exact_value(self) -> set[str]:
        tok, _ = self.look(True)
        if tok in (_T_END, _T_COMMA):
            return {""}
        tok, lit = self.take(True)
        if tok == _T_ID:
            return {lit}
        raise _SelectorError(f"found '{lit}', expected: identifier")


# --- field selectors -------------------------------------------------------------------

@dataclass(frozen=True)
class FieldTerm:
    field: str
    value: str
    negate: bool = False  # "!=" when True

    def __str__(self) -> str:
        esc = self.value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")
        return f"{self.field}{'!=' if self.negate else '='}{esc}"


def _split_terms(text: str) -> list[str]:
    terms, start, in_slash = [], 0, False
    for i, c in enumerate(text):
        if in_slash:
            in_slash = False
        elif c == "\\":
            in_slash = True
        elif c == ",":
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return terms


def _split_term(term: str) -> tuple[str, str, str] | None:
    for i in range(len(term)):
        for op in ("!=", "==", "="):
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op):]
    return None


def _unescape(value: str) -> str:
    if "\\" not in value and "," not in value and "=" not in value:
        return value
    out, in_slash = [], False
    for c in value:
        if in_slash:
            if c in "\\,=":
                out.append(c)
            else:
                raise _SelectorError(f"invalid field selector: invalid escape sequence: \\{c}")
            in_slash = False
            continue
        if c == "\\":
            in_slash = True
        elif c in ",=":
            raise _SelectorError(f"invalid field selector: unescaped character in value: {ord(c)}")
        else:
            out.append(c)
    if in_slash:
        raise _SelectorError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


class FieldSelector:
    """A parsed field selector: the AND of `field=value` / `field!=value` terms."""

    __slots__ = ("terms",)

    EVERYTHING: FieldSelector

    def __init__(self, terms: Iterable[FieldTerm] = ()):
        self.terms: tuple[FieldTerm, ...] = tuple(terms)

    @classmethod
    def parse(cls, text: str | None, allowed: set[str] | None = None,
              reject: Callable[[str], str] | None = None,
              rename: dict[str, str] | None = None) -> FieldSelector:
        """Parse the `fieldSelector` query parameter (upstream fields.ParseSelector, then the
        resource's field-label conversion). `allowed` None accepts every field; otherwise an
        unknown field gives 400 with `reject(field)` or upstream's generic
        "field label not supported: <field>". `rename` maps legacy names (spec.host)."""
        if not text:
            return cls.EVERYTHING
        try:
            terms: list[FieldTerm] = []
            for part in sorted(_split_terms(text)):
                if not part:
                    continue
                split = _split_term(part)
                if split is None:
                    raise _SelectorError(f"invalid selector: '{text}'; can't understand '{part}'")
                lhs, op, rhs = split
                terms.append(FieldTerm(lhs, _unescape(rhs), op == "!="))
            if allowed is not None or rename:
                checked = []
                for t in terms:
                    name = (rename or {}).get(t.field, t.field)
                    if allowed is not None and name not in allowed:
                        raise _SelectorError(reject(t.field) if reject else
                                             f"field label not supported: {t.field}")
                    checked.append(FieldTerm(name, t.value, t.negate) if name != t.field else t)
                terms = checked
        except _SelectorError as e:
            raise bad_request(str(e)) from None
        return cls(terms)

    @classmethod
    def for_resource(cls, text: str | None, resource: ResourceInfo) -> FieldSelector:
        """Parse with the fields `resource` accepts and upstream's message for the rest."""
        allowed, reject, rename = _field_rules(resource)
        return cls.parse(text, allowed, reject, rename)

    @property
    def empty(self) -> bool:
        return not self.terms

    def matches(self, fields: dict[str, str]) -> bool:
        for t in self.terms:
            if (fields.get(t.field, "") == t.value) == t.negate:
                return False
        return True

    def exact(self, field: str) -> str | None:
        """The value `field` must equal (upstream RequiresExactMatch), or None."""
        for t in self.terms:
            if t.field == field and not t.negate:
                return t.value
        return None

    def fields(self) -> set[str]:
        return {t.field for t in self.terms}

    def __str__(self) -> str:
        return ",".join(str(t) for t in self.terms)

    def __repr__(self) -> str:
        return f"FieldSelector({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FieldSelector) and other.terms == self.terms

    def __hash__(self) -> int:
        return hash(self.terms)


FieldSelector.EVERYTHING = FieldSelector()


# --- per-resource selectable fields ----------------------------------------------------

_META = ("metadata.name", "metadata.namespace")
_EVENT_CORE = ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
               "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
               "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type")
_REF_FIELDS = ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")
_EVENT_NEW = tuple("regarding." + f for f in _REF_FIELDS) + ("reason", "reportingController", "type")

# (group, plural) -> fields accepted by the resource's field-label conversion (beyond
# none: upstream lists metadata.* explicitly where it registers a conversion).
_CONVERSIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "pods"): _META + ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
                           "spec.serviceAccountName", "spec.hostNetwork", "status.phase",
                           "status.podIP", "status.podIPs", "status.nominatedNodeName"),
    ("", "nodes"): ("metadata.name", "spec.unschedulable"),
    ("", "events"): _META + _EVENT_CORE,
    ("", "namespaces"): ("metadata.name", "status.phase"),
    ("", "secrets"): _META + ("type",),
    ("", "services"): _META + ("spec.clusterIP", "spec.type"),
    ("", "replicationcontrollers"): _META + ("status.replicas",),
    ("events.k8s.io", "events"): _META + _EVENT_NEW,
    ("batch", "jobs"): _META + ("status.successful",),
}


def _default_reject(field: str) -> str:
    """runtime.DefaultMetaV1FieldSelectorConversion's message (kinds without a conversion)."""
    return f'"{field}" is not a known field selector: only "metadata.name", "metadata.namespace"'


def _field_rules(resource: ResourceInfo) -> tuple[set[str], Callable[[str], str], dict[str, str]]:
    key = (resource.group, resource.plural)
    if resource.crd is not None:
        allowed = {"metadata.name"}
        if resource.namespaced:
            allowed.add("metadata.namespace")
        allowed |= set(crd_selectable_fields(resource))
        return allowed, lambda f: f"field label not supported: {f}", {}
    if key in _CONVERSIONS:
        allowed = set(_CONVERSIONS[key])
        if key == ("batch", "jobs"):
            return allowed, lambda f: f'field label "{f}" not supported for batchv1.Job', {}
        rename = {"spec.host": "spec.nodeName"} if key == ("", "pods") else {}
        return allowed, lambda f: f"field label not supported: {f}", rename
    return set(_META), _default_reject, {}


def allowed_fields(resource: ResourceInfo) -> set[str]:
    """The field names `resource` accepts in a fieldSelector (as kube-apiserver 1.28+).

    Note: like upstream, apps/v1 ReplicaSets accept only metadata.* (no field-label
    conversion is registered for status.replicas, kubernetes/kubernetes#135136)."""
    return set(_field_rules(resource)[0])


def crd_selectable_fields(resource: ResourceInfo) -> dict[str, str]:
    """{field name: JSONPath} from the served CRD version's selectableFields
    (".spec.color" -> "spec.color")."""
    out: dict[str, str] = {}
    version = resource.crd_version or {}
    for sf in version.get("selectableFields") or ():
        path = sf.get("jsonPath") if isinstance(sf, dict) else None
        if isinstance(path, str) and path.startswith("."):
            out[path[1:]] = path
    return out


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _s(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return v if isinstance(v, str) else str(v)


def _selectable_value(v: Any) -> str:
    """How the CR strategy renders a selectable field's value."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (str, int)):
        return str(v)
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else repr(v)
    return ""


def field_set(resource: ResourceInfo, obj: dict[str, Any]) -> dict[str, str]:
    """The selectable fields of `obj` with their values (upstream's GetAttrs field set).
    Fields absent from the result read as "" when matching."""
    meta = _d(obj.get("metadata"))
    out = {"metadata.name": _s(meta.get("name"))}
    if resource.namespaced:
        out["metadata.namespace"] = _s(meta.get("namespace"))
    group, plural = resource.group, resource.plural
    if resource.crd is not None:
        for name, path in crd_selectable_fields(resource).items():
            try:
                vals = jsonpath.compile(path)(obj)
            except ValueError:
                vals = []
            out[name] = _selectable_value(vals[0]) if len(vals) == 1 else ""
        return out
    spec, status = _d(obj.get("spec")), _d(obj.get("status"))
    if group == "" and plural == "pods":
        ips = status.get("podIPs")
        pod_ip = ""
        if isinstance(ips, list) and ips and isinstance(ips[0], dict):
            pod_ip = _s(ips[0].get("ip"))
        elif status.get("podIP"):
            pod_ip = _s(status.get("podIP"))
        out.update({
            "spec.nodeName": _s(spec.get("nodeName")),
            "spec.restartPolicy": _s(spec.get("restartPolicy")),
            "spec.schedulerName": _s(spec.get("schedulerName")),
            "spec.serviceAccountName": _s(spec.get("serviceAccountName")),
            "spec.hostNetwork": "true" if spec.get("hostNetwork") is True else "false",
            "status.phase": _s(status.get("phase")),
            "status.podIP": pod_ip,
            "status.nominatedNodeName": _s(status.get("nominatedNodeName")),
        })
    elif group == "" and plural == "nodes":
        out["spec.unschedulable"] = "true" if spec.get("unschedulable") is True else "false"
    elif group == "" and plural == "namespaces":
        out["status.phase"] = _s(status.get("phase"))
    elif group == "" and plural == "secrets":
        out["type"] = _s(obj.get("type"))
    elif group == "" and plural == "services":
        out["spec.clusterIP"] = _s(spec.get("clusterIP"))
        out["spec.type"] = _s(spec.get("type"))
    elif group == "" and plural == "replicationcontrollers":
        out["status.replicas"] = _s(status.get("replicas", 0))
    elif group == "apps" and plural == "replicasets":
        out["status.replicas"] = _s(status.get("replicas", 0))
    elif group == "batch" and plural == "jobs":
        out["status.successful"] = _s(status.get("succeeded", 0))
    elif plural == "events" and group == "":
        ref = _d(obj.get("involvedObject"))
        for f in _REF_FIELDS:
            out["involvedObject." + f] = _s(ref.get(f))
        controller = _s(obj.get("reportingComponent") or obj.get("reportingController"))
        out["reason"] = _s(obj.get("reason"))
        out["reportingComponent"] = controller
        out["source"] = _s(_d(obj.get("source")).get("component")) or controller
        out["type"] = _s(obj.get("type"))
    elif plural == "events" and group == "events.k8s.io":
        ref = _d(obj.get("regarding"))
        for f in _REF_FIELDS:
            out["regarding." + f] = _s(ref.get(f))
        out["reason"] = _s(obj.get("reason"))
        out["reportingController"] = _s(obj.get("reportingController"))
        out["type"] = _s(obj.get("type"))
    return out


def parse_selectors(resource: ResourceInfo, label_selector: str | None,
                    field_selector: str | None) -> tuple[LabelSelector, FieldSelector]:
    """Both query parameters of a list/watch, validated for `resource`."""
    return LabelSelector.parse(label_selector), FieldSelector.for_resource(field_selector, resource)


__all__ = ["APIError", "FieldSelector", "FieldTerm", "LabelSelector", "Requirement", "allowed_fields",
           "crd_selectable_fields", "field_set", "label_value_errors", "parse_selectors",
           "qualified_name_errors"]
