"""A small JSONPath evaluator: the subset CRDs use in additionalPrinterColumns and
selectableFields (upstream evaluates both with k8s.io/client-go/util/jsonpath).

    compile(".status.conditions[?(@.type==\"Ready\")].status")(obj) -> ["True"]

Supported: `.field`, `['field']` / `["field"]`, `\\.` inside a field name, `[n]` and
`[-n]`, slices `[a:b]` / `[a:b:step]`, `[*]` and `.*`, unions `[0,2]` / `['a','b']`,
recursive descent `..field`, and filters `[?(@.a.b OP literal)]` with OP one of
== != < > <= >= (literals: quoted strings, numbers, true, false, null) or
`[?(@.a.b)]` (the field exists). The whole path may be wrapped in `{...}`.

Evaluation never raises: a missing key, an index out of range or a step applied to the
wrong kind of value simply yields nothing for that branch (upstream's AllowMissingKeys).
Results come back in document order. An unparsable path raises ValueError at compile time.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

Step = Callable[[list[Any]], list[Any]]

_MISSING = object()


def compile(path: str) -> Callable[[Any], list[Any]]:  # noqa: A001 - the natural name
    """Compile `path` into a function obj -> list of matched values."""
    return _compile_cached(path)


@functools.lru_cache(maxsize=1024)
def _compile_cached(path: str) -> Callable[[Any], list[Any]]:
    if not isinstance(path, str):
        raise ValueError("jsonpath must be a string")
    text = path.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1].strip()
    if not text:
        raise ValueError(f"invalid jsonpath {path!r}: empty")
    steps = _Parser(text, path).parse()

    def run(obj: Any) -> list[Any]:
        nodes = [obj]
        for step in steps:
            if not nodes:
                break
            nodes = step(nodes)
        return nodes

    return run


def first(path: str, obj: Any, default: Any = None) -> Any:
    """The first match of `path` in obj, or default."""
    out = compile(path)(obj)
    return out[0] if out else default


# --- steps ---------------------------------------------------------------------------

def _field(name: str) -> Step:
    def step(nodes: list[Any]) -> list[Any]:
        out = []
        for n in nodes:
            if isinstance(n, dict):
                v = n.get(name, _MISSING)
                if v is not _MISSING:
                    out.append(v)
        return out
    return step


def _wildcard(nodes: list[Any]) -> list[Any]:
    out: list[Any] = []
    for n in nodes:
        if isinstance(n, dict):
            out.extend(n.values())
        elif isinstance(n, list):
            out.extend(n)
    return out


def _index(i: int) -> Step:
    def step(nodes: list[Any]) -> list[Any]:
        out = []
        for n in nodes:
            if isinstance(n, list) and -len(n) <= i < len(n):
                out.append(n[i])
        return out
    return step


def _slice(start: int | None, stop: int | None, stride: int | None) -> Step:
    def step(nodes: list[Any]) -> list[Any]:
        out: list[Any] = []
        for n in nodes:
            if isinstance(n, list):
                out.extend(n[start:stop:stride])
        return out
    return step


def _union(steps: list[Step]) -> Step:
    def step(nodes: list[Any]) -> list[Any]:
        out: list[Any] = []
        for n in nodes:
            for s in steps:
                out.extend(s([n]))
        return out
    return step


def _descendants(value: Any, out: list[Any]) -> None:
    out.append(value)
    if isinstance(value, dict):
        for v in value.values():
            _descendants(v, out)
    elif isinstance(value, list):
        for v in value:
            _descendants(v, out)


def _recursive(inner: Step) -> Step:
    """`..x`: apply `inner` to every node at or below the current ones."""
    def step(nodes: list[Any]) -> list[Any]:
        every: list[Any] = []
        for n in nodes:
            _descendants(n, every)
        return inner(every)
    return step


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": lambda a, b: _eq(a, b),
    "!=": lambda a, b: not _eq(a, b),
    "<": lambda a, b: _ordered(a, b) and a < b,
    ">": lambda a, b: _ordered(a, b) and a > b,
    "<=": lambda a, b: _ordered(a, b) and a <= b,
    ">=": lambda a, b: _ordered(a, b) and a >= b,
}


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _eq(a: Any, b: Any) -> bool:
    if _is_num(a) and _is_num(b):
        return a == b
    return type(a) is type(b) and a == b


def _ordered(a: Any, b: Any) -> bool:
    return (_is_num(a) and _is_num(b)) or (isinstance(a, str) and isinstance(b, str))


def _filter(sub: list[Step], op: str | None, literal: Any) -> Step:
    def matches(item: Any) -> bool:
        vals = [item]
        for s in sub:
            vals = s(vals)
            if not vals:
                return False
        if op is None:
            return True
        cmp = _OPS[op]
        return any(cmp(v, literal) for v in vals)

    def step(nodes: list[Any]) -> list[Any]:
        out = []
        for n in nodes:
            items = n if isinstance(n, list) else [n] if isinstance(n, dict) else []
            out.extend(i for i in items if matches(i))
        return out
    return step


# --- parser --------------------------------------------------------------------------

_FIELD_STOP = set(".[]{}()@=!<>, \t'\"")


class _Parser:
    def __init__(self, text: str, original: str):
        self.s = text
        self.i = 0
        self.original = original

    def error(self, why: str) -> ValueError:
        return ValueError(f"invalid jsonpath {self.original!r}: {why} at position {self.i}")

    def peek(self, k: int = 0) -> str:
        j = self.i + k
        return self.s[j] if j < len(self.s) else ""

    def parse(self, stop: str = "") -> list[Step]:
        steps: list[Step] = []
        if self.peek() == "$":
            self.i += 1
        elif self.peek() == "@" and stop:
            self.i += 1
        while self.i < len(self.s) and self.peek() not in stop:
            c = self.peek()
            if c == ".":
                if self.peek(1) == ".":
                    self.i += 2
                    if self.peek() == "[":
                        steps.append(_recursive(self.bracket()))
                    else:
                        steps.append(_recursive(self.dotted()))
                else:
                    self.i += 1
                    steps.append(self.dotted())
            elif c == "[":
                steps.append(self.bracket())
            elif c in " \t" and stop:
                break
            else:
                raise self.error(f"unexpected {c!r}")
        return steps

    def dotted(self) -> Step:
        if self.peek() == "*":
            self.i += 1
            return _wildcard
        name = self.name()
        if not name:
            raise self.error("expected a field name")
        return _field(name)

    def name(self) -> str:
        out = []
        while self.i < len(self.s):
            c = self.s[self.i]
            if c == "\\" and self.i + 1 < len(self.s):
                out.append(self.s[self.i + 1])
                self.i += 2
                continue
            if c in _FIELD_STOP:
                break
            out.append(c)
            self.i += 1
        return "".join(out)

    def skip_ws(self) -> None:
        while self.peek() in (" ", "\t"):
            self.i += 1

    def bracket(self) -> Step:
        assert self.peek() == "["
        self.i += 1
        self.skip_ws()
        if self.peek() == "?":
            step = self.filter()
        elif self.peek() == "*":
            self.i += 1
            step = _wildcard
        else:
            parts = [self.subscript()]
            self.skip_ws()
            while self.peek() == ",":
                self.i += 1
                self.skip_ws()
                parts.append(self.subscript())
                self.skip_ws()
            step = parts[0] if len(parts) == 1 else _union(parts)
        self.skip_ws()
        if self.peek() != "]":
            raise self.error("expected ']'")
        self.i += 1
        return step

    def subscript(self) -> Step:
        c = self.peek()
        if c in ("'", '"'):
            return _field(self.quoted())
        nums: list[int | None] = []
        colons = 0
        while True:
            self.skip_ws()
            nums.append(self.integer())
            self.skip_ws()
            if self.peek() == ":":
                colons += 1
                if colons > 2:
                    raise self.error("too many ':' in slice")
                self.i += 1
                continue
            break
        if colons == 0:
            if nums[0] is None:
                raise self.error("expected an index, a quoted key, '*' or a filter")
            return _index(nums[0])
        while len(nums) < 3:
            nums.append(None)
        if nums[2] == 0:
            raise self.error("slice step cannot be zero")
        return _slice(nums[0], nums[1], nums[2])

    def integer(self) -> int | None:
        start = self.i
        if self.peek() == "-":
            self.i += 1
        while self.peek().isdigit():
            self.i += 1
        text = self.s[start:self.i]
        if text in ("", "-"):
            self.i = start
            return None
        return int(text)

    def quoted(self) -> str:
        q = self.peek()
        self.i += 1
        out = []
        while self.i < len(self.s):
            c = self.s[self.i]
            if c == "\\" and self.i + 1 < len(self.s):
                out.append(self.s[self.i + 1])
                self.i += 2
                continue
            if c == q:
                self.i += 1
                return "".join(out)
            out.append(c)
            self.i += 1
        raise self.error("unterminated string")

    def filter(self) -> Step:
        self.i += 1  # '?'
        self.skip_ws()
        if self.peek() != "(":
            raise self.error("expected '(' after '?'")
        self.i += 1
        self.skip_ws()
        if self.peek() != "@":
            raise self.error("filter must start with '@'")
        sub = self.parse(stop=")=!<> \t")
        self.skip_ws()
        op: str | None = None
        literal: Any = None
        if self.peek() != ")":
            two = self.s[self.i:self.i + 2]
            if two in ("==", "!=", "<=", ">="):
                op = two
                self.i += 2
            elif self.peek() in ("<", ">"):
                op = self.peek()
                self.i += 1
            else:
                raise self.error("expected a comparison operator")
            self.skip_ws()
            literal = self.literal()
            self.skip_ws()
        if self.peek() != ")":
            raise self.error("expected ')'")
        self.i += 1
        return _filter(sub, op, literal)

    def literal(self) -> Any:
        c = self.peek()
        if c in ("'", '"'):
            return self.quoted()
        start = self.i
        while self.i < len(self.s) and self.s[self.i] not in ") \t":
            self.i += 1
        word = self.s[start:self.i]
        if word == "true":
            return True
        if word == "false":
            return False
        if word in ("null", "nil"):
            return None
        try:
            return int(word)
        except ValueError:
            pass
        try:
            return float(word)
        except ValueError:
            raise self.error(f"unrecognized literal {word!r}") from None
