"""Request bodies in, response bodies out: content types, JSON/YAML decoding, Accept.

Every decoding failure is a 4xx `APIError`; nothing below here sees undecoded input.
"""
from __future__ import annotations

from typing import Any

import orjson
import yaml

from . import errors

JSON = "application/json"
YAML = "application/yaml"
PROTOBUF = "application/vnd.kubernetes.protobuf"
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, APPLY_PATCH)
BODY_TYPES = "application/json, application/yaml"     # what a custom resource's body may be (415 lists them)
# built-in kinds also take (and answer) protobuf: what upstream's 415 and 406 list for them
BUILTIN_BODY_TYPES = "application/json, application/yaml, application/vnd.kubernetes.protobuf"
SERVED_TYPES = "application/json, application/yaml"   # what a custom resource's response may be (406)
BUILTIN_SERVED_TYPES = BUILTIN_BODY_TYPES             # a built-in kind's (406 lists them)

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[misc,valid-type]
    """The safe loader with go-yaml v2's choices for values that JSON has no type for:
    a timestamp stays the text it was written as, `!!binary` is its decoded text; map keys
    are made strings as they are read (as sigs.k8s.io/yaml does), so that `1` and `true`
    stay two keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[str, Any]:
        if not isinstance(node, yaml.MappingNode):
            raise yaml.constructor.ConstructorError(None, None, f"expected a mapping node, but found {node.id}",
                                                    node.start_mark)
        self.flatten_mapping(node)
        mapping: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                raise yaml.constructor.ConstructorError("while constructing a mapping", node.start_mark,
                                                        "found unhashable key", key_node.start_mark) from None
            value = self.construct_object(value_node, deep=deep)
            mapping[_yaml_key(key, value)] = value
        return mapping


_Loader.add_constructor("tag:yaml.org,2002:timestamp", lambda loader, node: loader.construct_scalar(node))
_Loader.add_constructor("tag:yaml.org,2002:binary",
                        lambda loader, node: yaml.SafeLoader.construct_yaml_binary(loader, node)
                        .decode("utf-8", "replace"))


def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _yaml(body: bytes) -> Any:
    try:
        loader = _Loader(body)
        try:
            # One document only; count aliases so that an alias bomb cannot expand.
            node = loader.get_single_node()
            if node is None:
                return None
            _check_aliases(node)
            return _to_json(loader.construct_document(node))
        finally:
            loader.dispose()
    except RecursionError:
        raise errors.bad_request("error converting YAML to JSON: yaml: exceeded max depth") from None
    except yaml.YAMLError as e:
        raise errors.bad_request(f"error converting YAML to JSON: yaml: {_one_line(e)}") from None


def _check_aliases(root: yaml.Node) -> None:
    """Reject documents whose expansion is much larger than the text (billion laughs)."""
    seen: dict[int, int] = {}

    def size(n: yaml.Node, depth: int) -> int:
        if depth > 1000:
            raise errors.bad_request("error converting YAML to JSON: yaml: exceeded max depth")
        k = id(n)
        if k in seen:
            return seen[k]
        seen[k] = 1
        if isinstance(n, yaml.SequenceNode):
            s = 1 + sum(size(c, depth + 1) for c in n.value)
        elif isinstance(n, yaml.MappingNode):
            s = 1 + sum(size(a, depth + 1) + size(b, depth + 1) for a, b in n.value)
        else:
            s = 1
        seen[k] = s
        if s > 2_000_000:
            raise errors.bad_request("error converting YAML to JSON: yaml: document contains excessive aliasing")
        return s

    size(root, 0)


_INT_MIN, _UINT_MAX = -(1 << 63), (1 << 64) - 1


def _to_json(doc: Any) -> Any:
    """What sigs.k8s.io/yaml's YAMLToJSON makes of a decoded YAML document: map keys become
    strings (ints, floats and bools written as go-yaml writes them; any other key is a 400),
    integers beyond 64 bits become floats, NaN and infinities are a 400 (encoding/json has
    no form for them), sets are a 400. Everything below the decoder may rely on the result
    being what a JSON body could have been. Containers shared through YAML aliases are
    converted once (the alias check bounded their expanded size)."""
    done: dict[int, Any] = {}

    def conv(v: Any) -> Any:
        t = type(v)
        if t is str or t is bool or v is None:
            return v
        if t is int:
            return v if _INT_MIN <= v <= _UINT_MAX else float(v)
        if t is float:
            if v != v or v in (float("inf"), float("-inf")):
                raise errors.bad_request(f"error converting YAML to JSON: json: unsupported value: {_go_float(v, 64)}")
            return v
        k = id(v)
        if k in done:
            return done[k]
        if t is list:
            out_l: list[Any] = []
            done[k] = out_l
            out_l.extend(conv(x) for x in v)
            return out_l
        if t is dict:
            out_d: dict[str, Any] = {}
            done[k] = out_d
            for key, val in v.items():
                out_d[_yaml_key(key, val)] = conv(val)
            return out_d
        raise errors.bad_request(f"error converting YAML to JSON: yaml: unsupported value of type {t.__name__}")

    return conv(doc)


def _go_float(f: float, bits: int) -> str:
    """Go's strconv.FormatFloat(f, 'g', -1, bits) (+Inf/NaN as go-yaml spells them for keys)."""
    import math
    import struct

    if f != f:
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "0"
    for p in range(1, 18):
        text = "%.*e" % (p - 1, f)
        g = float(text)
        if bits == 32 and struct.unpack("f", struct.pack("f", g))[0] == struct.unpack("f", struct.pack("f", f))[0]:
            break
        if bits == 64 and g == f:
            break
    mant, _, exp_s = text.partition("e")
    exp = int(exp_s)
    if exp < -4 or exp >= 6:
        return f"{mant}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    digits = mant.replace(".", "").lstrip("-")
    return "%.*f" % (max(len(digits) - 1 - exp, 0), float(text))


def _yaml_key(key: Any, val: Any) -> str:
    t = type(key)
    if t is str:
        return key
    if t is bool:
        return "true" if key else "false"
    if t is int:
        return str(key)
    if t is float:
        s = _go_float(key, 32)
        return {"+Inf": ".inf", "-Inf": "-.inf", "NaN": ".nan"}.get(s, s)
    gotype = "%!s(<nil>)" if key is None else {"tuple": "[]interface {}"}.get(t.__name__, t.__name__)
    shown = "<nil>" if key is None else repr(key)
    val_s = orjson.dumps(val).decode() if isinstance(val, str) else ("<nil>" if val is None else "...")
    raise errors.bad_request(f"error converting YAML to JSON: unsupported map key of type: {gotype}, "
                             f"key: {shown}, value: {val_s}")


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())


def go_json_syntax_error(e: orjson.JSONDecodeError) -> str:
    """A JSON syntax error in about the words of Go's encoding/json."""
    return f"invalid character at offset {e.pos}: {_one_line(e)}" if e.pos is not None else _one_line(e)


def decode_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise errors.bad_request(f"couldn't get version/kind; json parse error: {_one_line(e)}") from None


class Duplicates:
    """Keys repeated within one JSON object of a body, as upstream's strict decoder reports
    them (`duplicate field "spec.paused"`): `paths` in document order, and `order`, the
    document position of every field path, to merge them with unknown-field findings.

    For a patch (`patch()`), upstream reports the patch's repeats first, then the unknown
    fields of the patched object, and a repeat inside an unknown field is still reported."""

    __slots__ = ("paths", "at", "order", "label", "shadow")

    def __init__(self, paths: list[str], at: list[int], order: dict[str, int], label: str = "duplicate field",
                 shadow: bool = True):
        self.paths = paths              # each repeat, in document order
        self.at = at                    # where each repeat is in the document
        self.order = order              # where each field path first is
        self.label = label
        self.shadow = shadow

    def patch(self, label: str = "duplicate field") -> "Duplicates":
        return Duplicates(self.paths, self.at, self.order, label, shadow=False)

    def visible(self, unknown: list[str]) -> list[str]:
        """The duplicates not inside an unknown field (whose value the decoder skips)."""
        return [p for p, _ in self._visible(unknown)]

    def _visible(self, unknown: list[str]) -> list[tuple[str, int]]:
        pairs = list(zip(self.paths, self.at))
        if not unknown or not self.shadow:
            return pairs
        return [(p, a) for p, a in pairs
                if not any(p == u or p.startswith(u + ".") or p.startswith(u + "[") for u in unknown)]

    def merged(self, unknown: list[str]) -> list[str]:
        """`unknown field` and `duplicate field` texts in document order (Strict's message,
        Warn's warnings)."""
        if not self.shadow:       # a patch: its repeats, then the patched object's unknown fields
            return [f'{self.label} "{p}"' for p in self.paths] + [f'unknown field "{u}"' for u in unknown]
        found = [(self.order.get(u, 1 << 62), i, f'unknown field "{u}"') for i, u in enumerate(unknown)]
        found += [(a, i, f'{self.label} "{p}"') for i, (p, a) in enumerate(self._visible(unknown))]
        found.sort(key=lambda x: x[:2])
        return [t for _, _, t in found]


    def strict(self, unknown: list[str]) -> list[str]:
        """The parts of Strict's `strict decoding error: ...` message."""
        return self.merged(unknown)


class YAMLDuplicates(Duplicates):
    """Keys repeated within one mapping of a YAML body, as go-yaml reports them: `line 5:
    key "name" already set in map`, one warning each; Strict's message has them as one
    `yaml: unmarshal errors:` part, then the unknown fields sorted (upstream finds those
    in the JSON the YAML became, whose keys are sorted)."""

    def __init__(self, lines: list[str]):
        super().__init__(lines, list(range(len(lines))), {})

    def merged(self, unknown: list[str]) -> list[str]:
        return self.paths + [f'unknown field "{u}"' for u in sorted(unknown)]

    def strict(self, unknown: list[str]) -> list[str]:
        return ["yaml: unmarshal errors:\n  " + "\n  ".join(self.paths)] + \
            [f'unknown field "{u}"' for u in sorted(unknown)]


def yaml_duplicates(body: bytes) -> YAMLDuplicates | None:
    """The repeated keys of a YAML body's mappings (the loader keeps the last), or None."""
    try:
        loader = _Loader(body)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except (yaml.YAMLError, RecursionError):
        return None
    lines: list[str] = []
    seen_nodes: set[int] = set()
    stack = [root] if root is not None else []
    while stack:
        n = stack.pop()
        if id(n) in seen_nodes:          # aliases: each node once
            continue
        seen_nodes.add(id(n))
        if isinstance(n, yaml.MappingNode):
            keys: set[tuple[str, str]] = set()
            for k, v in n.value:
                if isinstance(k, yaml.ScalarNode):
                    if (k.tag, k.value) in keys:
                        lines.append(f"line {k.start_mark.line + 1}: key {orjson.dumps(k.value).decode()} "
                                     "already set in map")
                    keys.add((k.tag, k.value))
                stack += (k, v)
        elif isinstance(n, yaml.SequenceNode):
            stack += n.value
    if not lines:
        return None
    lines.sort(key=lambda t: int(t.split(":", 1)[0][5:]))
    return YAMLDuplicates(lines)


_NOTHING: Any = object()


class _Dup(Exception):
    pass


def _dup_hook(pairs: list[tuple[str, Any]]) -> None:
    if len(pairs) > 1 and len(dict(pairs)) != len(pairs):
        raise _Dup
    return None


class _Pairs(list):
    """An object as the list of its (key, value) pairs, keys repeated as written."""


def json_duplicates(body: bytes, parsed: Any = _NOTHING) -> Duplicates | None:
    """The repeated keys of a JSON body (which decode_json, like Go, resolved to the last
    value), or None when there are none.

    With `parsed` (what decode_json made of `body`, not yet changed), a cheap test first:
    the body's colons against those of `parsed` encoded again. Without repeats they are
    the same (structural colons, one per key, and those inside strings); every repeat
    removes at least one. An escaped colon (\\u003a) could make up for a repeat, so then the
    slow path decides: one pass of the stdlib parser (about 20 us per KB), the paths only
    built when a repeat exists."""
    import json

    if parsed is not _NOTHING and b"\\u003" not in body:
        try:
            if orjson.dumps(parsed).count(b":") == body.count(b":"):
                return None
        except TypeError:
            pass
    try:
        json.loads(body, object_pairs_hook=_dup_hook)
        return None
    except _Dup:
        pass
    except (ValueError, RecursionError):
        return None
    try:
        tree = json.loads(body, object_pairs_hook=_Pairs)
    except (ValueError, RecursionError):
        return None
    paths: list[str] = []
    at: list[int] = []
    order: dict[str, int] = {}
    stack: list[tuple[str, Any, bool]] = [("", tree, False)]
    n = 0
    while stack:            # depth-first, children pushed in reverse: pops in document order
        path, v, repeated = stack.pop()
        n += 1
        order.setdefault(path, n)
        if repeated:
            paths.append(path)
            at.append(n)
        if type(v) is _Pairs:
            seen: set[str] = set()
            kids = []
            for k, child in v:
                kids.append((f"{path}.{k}" if path else k, child, k in seen))
                seen.add(k)
            stack.extend(reversed(kids))
        elif type(v) is list:
            stack.extend(reversed([(f"{path}[{i}]", x, False) for i, x in enumerate(v)]))
    return Duplicates(paths, at, order)


_COPY_OPTS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS


def json_copy(v: Any) -> Any:
    """A deep copy of a value decoded from JSON (what the store gives back), about 5x
    faster than copy.deepcopy: encoded and decoded again by orjson. Anything orjson would
    not give back as it was (datetimes from YAML, str/int subclasses, ints beyond 64 bits)
    falls back to copy.deepcopy. Not for values that may hold NaN or infinities (orjson
    writes them as null); JSON itself has none."""
    try:
        return orjson.loads(orjson.dumps(v, option=_COPY_OPTS))
    except TypeError:
        import copy

        return copy.deepcopy(v)


def decode_body(content_type: str, body: bytes, *, patch: bool = False, protobuf_kind: str | None = None) -> Any:
    """Decode a create/update body (JSON or YAML) or, with patch=True, any patch body.

    `protobuf_kind`: the kind a built-in target expects, so an `application/vnd.kubernetes.protobuf`
    body is decoded too (machinery/protobuf.py) into the very dict a JSON body of the same
    object gives; for a custom resource it is a 415, as upstream (CRs are JSON only)."""
    mt = media_type(content_type) if content_type else JSON
    if mt == PROTOBUF and not patch:
        if protobuf_kind is None:
            raise errors.unsupported_media_type(BODY_TYPES)
        return decode_protobuf(body, protobuf_kind)
    if not body.strip():
        raise errors.bad_request("the body of the request is empty" if not patch
                                 else "the body of the request was empty")
    if patch:
        if mt not in PATCH_TYPES:
            raise errors.unsupported_media_type(", ".join(PATCH_TYPES))
        if mt == APPLY_PATCH:
            return _yaml(body)
        return decode_json(body)
    if mt in (JSON, "*/*", "application/*"):
        return decode_json(body)
    if mt in (YAML, "application/x-yaml", "text/yaml"):
        return _yaml(body)
    raise errors.unsupported_media_type(BODY_TYPES if protobuf_kind is None else BUILTIN_BODY_TYPES)


def _summarize(data: bytes, limit: int = 256) -> str:
    """apimachinery's summarizeData: how a body upstream could not decode is quoted in the
    400 (text when it looks like JSON, else hex), cut at 256 bytes."""
    if not data:
        return "<empty>"
    if data[:1] == b"{":
        text = data[:limit].decode("utf-8", "replace")
    else:
        text = data[:limit].hex()
    return text + (" ..." if len(data) > limit else "")


def decode_protobuf(body: bytes, kind: str) -> dict[str, Any]:
    """A protobuf create/update body -> the object as a JSON body of it decodes (kind and
    apiVersion first). Every fault of the bytes (wrong magic, truncation, an unknown kind,
    values out of range) is a 400 worded as upstream's transformDecodeError; whether the
    kind suits the URL is the caller's check, as for JSON."""
    from . import protobuf

    if not body:
        raise errors.bad_request("the body of the request is empty")
    try:
        return protobuf.decode(body)[2]
    except protobuf.ProtobufError as e:
        raise errors.APIError(e.status, "BadRequest" if e.status == 400 else "",
                              f"the object provided is unrecognized (must be of type {kind}): {e.message} "
                              f"({_summarize(body)})") from None


# --- Accept --------------------------------------------------------------------------

class Accept:
    """What the client asked the response to be: plain JSON, a Table, partial metadata,
    YAML or protobuf (at most one of them is set)."""

    __slots__ = ("table", "metadata", "yaml", "protobuf")

    def __init__(self) -> None:
        self.table = False        # meta.k8s.io/v1 Table
        self.metadata = False     # PartialObjectMetadata(List)
        self.yaml = False
        self.protobuf = False     # application/vnd.kubernetes.protobuf (built-in kinds only)


def negotiate(accept: str, protobuf: bool = False) -> Accept:
    """Pick the first acceptable alternative, as upstream: Table and PartialObjectMetadata
    when asked with g=meta.k8s.io;v=v1 (v1beta1 also served), protobuf when `protobuf`
    (the resource is a built-in kind; custom resources are JSON only upstream, so their
    protobuf alternatives are passed over), JSON otherwise; nothing acceptable: 406.
    Protobuf Tables and PartialObjectMetadata are not offered: such an alternative is
    passed over for the next one (Go clients list the JSON form after it)."""
    out = Accept()
    if not accept:
        return out
    for alt in accept.split(","):
        parts = [p.strip() for p in alt.split(";")]
        mt = parts[0].lower()
        params = {}
        for p in parts[1:]:
            k, _, v = p.partition("=")
            params[k.strip().lower()] = v.strip()
        if mt in (JSON, "*/*", "application/*"):
            if params.get("as") == "Table" and params.get("g") == "meta.k8s.io" and params.get("v") in ("v1", "v1beta1"):
                out.table = True
                return out
            if params.get("as") in ("PartialObjectMetadata", "PartialObjectMetadataList") and \
                    params.get("g") == "meta.k8s.io":
                out.metadata = True
                return out
            if "as" in params:
                continue   # a conversion we do not offer: try the next alternative
            return out
        if mt in (YAML,):
            out.yaml = True
            return out
        if mt == PROTOBUF and protobuf and "as" not in params:
            out.protobuf = True
            return out
    raise errors.not_acceptable(BUILTIN_SERVED_TYPES if protobuf else SERVED_TYPES)


def encode(obj: Any, accept: Accept | None = None) -> tuple[bytes, str]:
    """The response body: JSON ends with "\n" as Go's json.Encoder writes it (upstream's
    serializer; clients compare bodies and error strings byte for byte)."""
    if accept is not None and accept.yaml:
        return yaml.safe_dump(obj, sort_keys=False).encode(), YAML
    if accept is not None and accept.protobuf:
        from . import protobuf

        return protobuf.encode(obj), PROTOBUF
    return orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE), JSON
