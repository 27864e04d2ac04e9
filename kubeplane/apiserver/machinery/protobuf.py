"""Kubernetes protobuf on the wire: ``application/vnd.kubernetes.protobuf`` bodies <-> JSON-shaped dicts.

The message classes are built on first use from ``protobuf_table.json.gz`` (written by
``scripts/gen-proto-table`` from upstream's generated.proto files and Go struct tags, 1.33) with
``descriptor_pool`` + ``message_factory.GetMessageClass``, so parsing and serializing run in
the protobuf package's C implementation (upb); Python only walks the parsed message to build
the dict (decode) or builds the nested keyword tree the message constructor takes (encode).

Wire format (upstream's ``runtime/serializer/protobuf``): the 4 bytes ``k8s\\x00``, then a
``runtime.Unknown`` {typeMeta {apiVersion, kind}, raw = the object's message, contentEncoding
"", contentType ""}.  A watch stream is a sequence of frames: 4-byte big-endian length, then a
``metav1.WatchEvent`` {type, object = RawExtension{raw = an enveloped object}}.

JSON shape rules (what upstream's encoding/json writes for the Go value that gogo-protobuf
would have unmarshalled; the table gives each field's JSON name and Go flags p/o/i):

- Go non-pointer scalars are always on the wire (gogo writes them even when zero); in JSON a
  zero one is left out when its tag has omitempty, else written as 0/""/false.
- Pointers, ``[]byte``, slices and maps have presence; absent on the wire means nil: left out
  with omitempty, else ``null``.  An empty slice or map is nil after protobuf (no elements on
  the wire), so JSON ``[]``/``{}`` without omitempty come back as ``null`` (as upstream).
- Non-pointer structs are always written (encoding/json never omits a struct), as ``{}`` and
  their own always-written fields when absent.
- ``json:",inline"`` fields (Volume.volumeSource, ...) are a nested message on the wire and
  merged into the parent in JSON.
- Map keys come out sorted (encoding/json sorts them), and keys in Go struct order, so
  ``orjson.dumps`` of a decoded object is upstream's JSON body (without its newline).
- Special types: metav1.Time (seconds; JSON RFC 3339 UTC, second precision, zero = null),
  MicroTime (6-digit microseconds), Duration (Go duration string), resource.Quantity (its
  string; zero "0"), intstr.IntOrString (int or string), runtime.RawExtension and
  metav1.FieldsV1 (raw bytes that hold JSON, embedded; nil = null), bytes (base64), named
  slices such as ExtraValue (a bare JSON array).

Errors on input are :class:`ProtobufError` with upstream's message text and the HTTP status
the API server answers with.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import gzip
import json
import re
import struct
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Iterator

import orjson
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message

from .protobuf_errors import describe as describe_parse_error
from .protobuf_gen import (BYTES as _BYTES, MAP_BYTES as _MAP_BYTES, MAP_MESSAGE as _MAP_MESSAGE,
                           MAP_SCALAR as _MAP_SCALAR, MESSAGE as _MESSAGE, REP_BYTES as _REP_BYTES,
                           REP_MESSAGE as _REP_MESSAGE, REP_SCALAR as _REP_SCALAR, SCALAR as _SCALAR, Generator, Slow)

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"
STREAM_CONTENT_TYPE = "application/vnd.kubernetes.protobuf;stream=watch"

_META = "k8s.io.apimachinery.pkg.apis.meta.v1"
_RUNTIME = "k8s.io.apimachinery.pkg.runtime"
_TIME = f".{_META}.Time"
_MICROTIME = f".{_META}.MicroTime"
_DURATION = f".{_META}.Duration"
_FIELDSV1 = f".{_META}.FieldsV1"
_QUANTITY = ".k8s.io.apimachinery.pkg.api.resource.Quantity"
_INTORSTRING = ".k8s.io.apimachinery.pkg.util.intstr.IntOrString"
_RAWEXT = f".{_RUNTIME}.RawExtension"


class ProtobufError(ValueError):
    """A body kubeplane cannot decode (or an object it cannot encode).

    ``message`` is the text upstream's serializer gives for the same fault (the API server
    wraps it in a Status); ``status`` is the HTTP code upstream answers with (400 for bad
    bodies)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


# --- the table and the descriptor pool -------------------------------------------------------

_TYPES = {
    "double": descriptor_pb2.FieldDescriptorProto.TYPE_DOUBLE,
    "float": descriptor_pb2.FieldDescriptorProto.TYPE_FLOAT,
    "int32": descriptor_pb2.FieldDescriptorProto.TYPE_INT32,
    "int64": descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
    "uint32": descriptor_pb2.FieldDescriptorProto.TYPE_UINT32,
    "uint64": descriptor_pb2.FieldDescriptorProto.TYPE_UINT64,
    "sint32": descriptor_pb2.FieldDescriptorProto.TYPE_SINT32,
    "sint64": descriptor_pb2.FieldDescriptorProto.TYPE_SINT64,
    "fixed32": descriptor_pb2.FieldDescriptorProto.TYPE_FIXED32,
    "fixed64": descriptor_pb2.FieldDescriptorProto.TYPE_FIXED64,
    "sfixed32": descriptor_pb2.FieldDescriptorProto.TYPE_SFIXED32,
    "sfixed64": descriptor_pb2.FieldDescriptorProto.TYPE_SFIXED64,
    "bool": descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
    "string": descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
    "bytes": descriptor_pb2.FieldDescriptorProto.TYPE_BYTES,
}
_ZERO: dict[str, Any] = {t: 0 for t in _TYPES}
_ZERO.update({"double": 0.0, "float": 0.0, "bool": False, "string": "", "bytes": b""})


def load_table() -> dict[str, Any]:
    """The shipped table (see scripts/gen-proto-table for its layout)."""
    data = resources.files(__package__ or "kubeplane.apiserver.machinery").joinpath(
        "protobuf_table.json.gz").read_bytes()
    return json.loads(gzip.decompress(data))


def _entry_name(field_name: str) -> str:
    """protoc's name for a map field's entry message: labels -> LabelsEntry."""
    return field_name[:1].upper() + field_name[1:] + "Entry"


def _file_protos(table: dict[str, Any]) -> list[descriptor_pb2.FileDescriptorProto]:
    """One FileDescriptorProto per proto package, in dependency order."""
    by_package = {p["package"]: p for p in table["packages"]}
    deps: dict[str, set[str]] = {}
    for p in table["packages"]:
        needed = set()
        for rows in p["messages"].values():
            for row in rows:
                t = row[3]
                if t.startswith("map<"):
                    t = t[4:-1].split(",", 1)[1]
                if t.startswith("."):
                    pkg = t[1:].rsplit(".", 1)[0]
                    if pkg != p["package"]:
                        needed.add(pkg)
        deps[p["package"]] = needed
    ordered: list[str] = []

    def visit(pkg: str) -> None:
        if pkg in ordered:
            return
        for d in sorted(deps[pkg]):
            visit(d)
        ordered.append(pkg)

    for pkg in by_package:
        visit(pkg)

    protos = []
    for pkg in ordered:
        p = by_package[pkg]
        # Edition 2023 with proto2's wire behaviour (explicit presence, expanded repeated scalars)
        # plus UTF-8 verification of strings: proto2 would hand invalid UTF-8 back as bytes.
        fp = descriptor_pb2.FileDescriptorProto(name=pkg.replace(".", "/") + "/generated.proto", package=pkg,
                                                syntax="editions", edition=descriptor_pb2.EDITION_2023)
        fp.options.features.repeated_field_encoding = descriptor_pb2.FeatureSet.EXPANDED
        fp.options.features.utf8_validation = descriptor_pb2.FeatureSet.VERIFY
        fp.options.features.field_presence = descriptor_pb2.FeatureSet.EXPLICIT
        fp.dependency.extend(d.replace(".", "/") + "/generated.proto" for d in sorted(deps[pkg]))
        for msg_name, rows in p["messages"].items():
            mp = fp.message_type.add(name=msg_name)
            for name, number, label, type_name, _json, _flags in rows:
                fd = mp.field.add(name=name, number=number)
                if type_name.startswith("map<"):
                    key, value = type_name[4:-1].split(",", 1)
                    entry = mp.nested_type.add(name=_entry_name(name))
                    entry.options.map_entry = True
                    entry.field.add(name="key", number=1, type=_TYPES[key],
                                    label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
                    vf = entry.field.add(name="value", number=2,
                                         label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
                    if value in _TYPES:
                        vf.type = _TYPES[value]
                    else:
                        vf.type = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
                        vf.type_name = value
                    fd.label = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
                    fd.type = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
                    fd.type_name = f".{pkg}.{msg_name}.{entry.name}"
                    continue
                fd.label = (descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED if label == "repeated"
                            else descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
                if type_name in _TYPES:
                    fd.type = _TYPES[type_name]
                else:
                    fd.type = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
                    fd.type_name = type_name
        protos.append(fp)
    return protos


# --- per-message plans -----------------------------------------------------------------------

# Field kinds: _SCALAR ... _MAP_MESSAGE (0-8) come from protobuf_gen.
_INLINE, _SKIP = 9, 10  # decode only: a json:",inline" message; a field JSON does not show
_UNSET = object()


@dataclass
class _Field:
    """One field of a message as the codec uses it."""

    name: str  # proto field name (attribute and constructor keyword)
    json: str | None  # JSON name; None when inline (or not in JSON)
    kind: int
    pointer: bool
    omitempty: bool
    inline: bool
    type_name: str  # scalar type, or the value message's full name (leading dot)
    zero: Any = None  # a scalar's zero value
    plan: "_Plan | None" = None  # the (value) message's plan


@dataclass
class _Plan:
    """How one message maps to JSON."""

    full_name: str
    cls: type[Message] | None = None
    fields: list[_Field] = field(default_factory=list)
    # json -> (field, the inline fields it sits in, outermost first: () for a field of its own)
    by_json: dict[str, tuple[_Field, tuple[_Field, ...]]] = field(default_factory=dict)
    json_order: list[str] = field(default_factory=list)  # Go struct order of the JSON keys (inline expanded)
    in_number_order: bool = True  # ListFields (number order) already gives json_order
    # What JSON holds for fields absent on the wire: a value, or the plan of a non-pointer struct.
    absent: list[tuple[str, Any]] = field(default_factory=list)
    defaults: dict[str, Any] = field(default_factory=dict)  # constructor keywords gogo always writes
    special: str | None = None  # Time, MicroTime, Duration, Quantity, IntOrString, RawExtension, FieldsV1, wrapper
    done: bool = False
    # decode: field descriptor -> (json key, kind, skip when zero, value plan)
    dec: dict[Any, tuple[str | None, int, bool, "_Plan | None"]] = field(default_factory=dict)
    absent_inline: list[tuple[str, "_Plan"]] = field(default_factory=list)  # non-pointer inline messages
    rank: dict[str, int] = field(default_factory=dict)  # JSON key -> position in Go's struct order
    empty: bytes | None = None  # cached JSON of the empty message
    # encode: JSON key -> (proto name, kind, value plan, inline parents, what a JSON null sets or _UNSET)
    enc: dict[str, tuple[str, int, "_Plan | None", tuple["_Field", ...], Any]] = field(default_factory=dict)
    # the generated functions (protobuf_gen), compiled on first use
    fast_dec: Any = None
    fast_enc: Any = None


class _Registry:
    """The pool, the classes, the plans and the (group, version, kind) map, built once."""

    def __init__(self, table: dict[str, Any]) -> None:
        self.table = table
        self.pool = descriptor_pool.DescriptorPool()
        for fp in _file_protos(table):
            self.pool.Add(fp)
        self.plans: dict[str, _Plan] = {}
        self.kinds: dict[tuple[str, str, str], str] = {}
        self.meta_kinds: dict[str, str] = {}
        wrappers = set()
        for p in table["packages"]:
            for w in p["wrappers"]:
                wrappers.add(f".{p['package']}.{w}")
            for k in p["kinds"]:
                full = f".{p['package']}.{k}"
                if p["package"] == _META:
                    self.meta_kinds[k] = full
                elif p["group"] is not None:
                    self.kinds[(p["group"], p["version"], k)] = full
        for p in table["packages"]:
            for msg_name in p["messages"]:
                full = f".{p['package']}.{msg_name}"
                self.plans[full] = _Plan(full)
        special = {_TIME: "Time", _MICROTIME: "MicroTime", _DURATION: "Duration", _QUANTITY: "Quantity",
                   _INTORSTRING: "IntOrString", _RAWEXT: "RawExtension", _FIELDSV1: "FieldsV1"}
        for p in table["packages"]:
            for msg_name, rows in p["messages"].items():
                full = f".{p['package']}.{msg_name}"
                plan = self.plans[full]
                plan.cls = message_factory.GetMessageClass(self.pool.FindMessageTypeByName(full[1:]))
                plan.special = special.get(full, "wrapper" if full in wrappers else None)
                for name, number, label, type_name, json_name, flags in rows:
                    if type_name.startswith("map<"):
                        value = type_name[4:-1].split(",", 1)[1]
                        kind = _MAP_SCALAR if value in _TYPES and value != "bytes" else (
                            _MAP_BYTES if value == "bytes" else _MAP_MESSAGE)
                        type_name = value
                    elif label == "repeated":
                        kind = _REP_SCALAR if type_name in _TYPES and type_name != "bytes" else (
                            _REP_BYTES if type_name == "bytes" else _REP_MESSAGE)
                    else:
                        kind = _SCALAR if type_name in _TYPES and type_name != "bytes" else (
                            _BYTES if type_name == "bytes" else _MESSAGE)
                    f = _Field(name, json_name, kind, "p" in flags, "o" in flags, "i" in flags, type_name,
                               _ZERO.get(type_name), self.plans.get(type_name))
                    plan.fields.append(f)
        for plan in self.plans.values():
            self._finish(plan, set())
        self.kind_names = frozenset(self.kinds.values())
        self.memo_fields: dict[str, frozenset[str]] = {}

    def _finish(self, plan: _Plan, seen: set[str]) -> None:
        """JSON order, inline maps, absent-field JSON and always-written defaults (needs the inline
        and non-pointer sub-plans finished first; Go forbids non-pointer struct cycles)."""
        if plan.done or plan.full_name in seen:
            return
        seen.add(plan.full_name)
        plan.done = True
        if plan.special is not None:
            # What gogo writes for a zero non-pointer value of these types.
            plan.defaults = {"Quantity": {"string": "0"}, "IntOrString": {"type": 0, "intVal": 0, "strVal": ""},
                             "Duration": {"duration": 0}}.get(plan.special, {})
            return
        numbers = [f.name for f in plan.fields]
        for f in plan.fields:
            if f.inline and f.kind == _MESSAGE and f.plan is not None:
                self._finish(f.plan, seen)
                for j in f.plan.json_order:
                    sub, parents = f.plan.by_json[j]
                    plan.by_json[j] = (sub, (f, *parents))
                    plan.json_order.append(j)
            elif f.json is not None:
                plan.by_json[f.json] = (f, ())
                plan.json_order.append(f.json)
                if f.kind == _MESSAGE and not f.pointer and f.plan is not None:
                    self._finish(f.plan, seen)
        desc = plan.cls.DESCRIPTOR
        by_number = sorted(plan.fields, key=lambda f: desc.fields_by_name[f.name].number)
        plan.in_number_order = [f.name for f in by_number] == numbers and not any(f.inline for f in plan.fields)
        plan.rank = {k: i for i, k in enumerate(plan.json_order)}
        for key, (f, parents) in plan.by_json.items():
            if f.kind == _SCALAR and not f.pointer:
                null: Any = f.zero
            elif f.kind == _MESSAGE and not f.pointer:
                null = f.plan.defaults  # filled in by now: the sub-plan was finished first
            else:
                null = _UNSET
            plan.enc[key] = (f.name, f.kind, f.plan, parents, null)
        for f in plan.fields:
            # Keyed by the descriptor object ListFields hands back (upb keeps one per field while
            # it is referenced): a dict hit on it is ~60 ns cheaper than on fd.name.
            fd = desc.fields_by_name[f.name]
            if f.inline and f.kind == _MESSAGE:
                plan.dec[fd] = (None, _INLINE, False, f.plan)
                if not f.pointer:
                    plan.absent_inline.append((f.name, f.plan))
            elif f.json is None:
                plan.dec[fd] = (None, _SKIP, False, None)
            else:
                plan.dec[fd] = (f.json, f.kind, f.kind == _SCALAR and not f.pointer and f.omitempty, f.plan)
        for f in plan.fields:
            if f.inline or f.json is None:
                if f.inline and f.kind == _MESSAGE and not f.pointer and f.plan is not None:
                    plan.defaults[f.name] = f.plan.defaults
                continue
            if f.kind in (_SCALAR,):
                if not f.pointer:
                    plan.defaults[f.name] = f.zero
                    if not f.omitempty:
                        plan.absent.append((f.json, f.zero))
                elif not f.omitempty:
                    plan.absent.append((f.json, None))
            elif f.kind == _MESSAGE:
                if not f.pointer:
                    plan.defaults[f.name] = f.plan.defaults
                    plan.absent.append((f.json, f.plan))  # the JSON of the empty message
                elif not f.omitempty:
                    plan.absent.append((f.json, None))
            elif not f.omitempty:  # bytes, slices, maps: nil
                plan.absent.append((f.json, None))


_registry: _Registry | None = None
_generator: Generator | None = None
_lock = threading.Lock()


def registry() -> _Registry:
    """The registry, built on first use (~0.1-0.3 s)."""
    global _registry
    if _registry is None:
        with _lock:
            if _registry is None:
                _registry = _Registry(load_table())
    return _registry


def generator() -> Generator:
    """The per-message function generator (protobuf_gen), made once."""
    global _generator
    if _generator is None:
        with _lock:
            if _generator is None:
                helpers = {"format_time": format_time, "format_micro_time": format_micro_time,
                           "format_duration": format_duration, "parse_time": parse_time,
                           "parse_duration": parse_duration, "MAGIC": MAGIC, "load_raw": _load_raw, "b64": _b64,
                           "unb64": _unb64, "json_dumps": json.dumps, "empty_json": _empty_json}
                _generator = Generator(helpers, _empty_json, _zero_bytes, _memoized)
    return _generator


def _memoized(plan: "_Plan") -> frozenset[str]:
    """The fields whose messages the generated functions memoize (protobuf_gen.Memo): a kind's
    own message fields but metadata and status, i.e. its spec (template) part, which objects
    stamped from one template share."""
    reg = registry()
    memo = reg.memo_fields.get(plan.full_name)
    if memo is None:
        kinds = reg.kind_names
        memo = frozenset(f.name for f in plan.fields if plan.full_name in kinds and f.kind == _MESSAGE
                         and f.name not in ("metadata", "status"))
        reg.memo_fields[plan.full_name] = memo
    return memo


def _zero_bytes(plan: "_Plan") -> bytes:
    """The bare message gogo writes for a zero non-pointer struct of this type."""
    return plan.cls(**plan.defaults).SerializeToString(deterministic=True)


def message_types() -> dict[tuple[str, str, str], str]:
    """(group, version, kind) -> full proto message name, for every built-in kind of k8s.io/api
    (core is group ""); metav1 kinds (Status, WatchEvent, DeleteOptions, ...) are in
    :func:`meta_kinds` and are accepted under any group/version."""
    return dict(registry().kinds)


def meta_kinds() -> dict[str, str]:
    """kind -> full proto message name of the metav1 kinds."""
    return dict(registry().meta_kinds)


def message_class(api_version: str, kind: str) -> type[Message]:
    """The generated message class of a kind, or ProtobufError (upstream's not-registered text)."""
    return _plan_for(api_version, kind).cls


def _plan_for(api_version: str, kind: str) -> _Plan:
    reg = registry()
    group, _, version = api_version.rpartition("/")
    full = reg.kinds.get((group, version, kind)) or reg.meta_kinds.get(kind)
    if full is None:
        raise ProtobufError(f'no kind "{kind}" is registered for version "{api_version}" in scheme '
                            f'"pkg/api/legacyscheme/scheme.go:30"')
    return reg.plans[full]


# --- special types ---------------------------------------------------------------------------

def format_time(seconds: int) -> str:
    """metav1.Time's JSON: RFC 3339 in UTC, whole seconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def format_micro_time(seconds: int, nanos: int) -> str:
    """metav1.MicroTime's JSON: RFC 3339 in UTC with 6-digit microseconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + ".%06dZ" % (nanos // 1000)


_RFC3339 = re.compile(r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$")


def parse_time(text: str) -> tuple[int, int]:
    """RFC 3339 -> (seconds since the epoch, nanoseconds)."""
    m = _RFC3339.match(text)
    if not m:
        raise ProtobufError(f'parsing time "{text}" as "2006-01-02T15:04:05Z07:00": cannot parse')
    y, mo, d, h, mi, s = (int(x) for x in m.group(1, 2, 3, 4, 5, 6))
    secs = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))
    if m.group(9):
        offset = (int(m.group(10)) * 60 + int(m.group(11))) * 60
        secs -= offset if m.group(9) == "+" else -offset
    frac = m.group(7) or ""
    nanos = int((frac + "000000000")[:9]) if frac else 0
    return secs, nanos


def _fmt_frac(v: int, prec: int) -> tuple[str, int]:
    digits = ""
    printed = False
    for _ in range(prec):
        digit = v % 10
        printed = printed or digit != 0
        if printed:
            digits = str(digit) + digits
        v //= 10
    return ("." + digits if printed else ""), v


def format_duration(ns: int) -> str:
    """Go's time.Duration.String() (metav1.Duration's JSON)."""
    if ns == 0:
        return "0s"
    u = -ns if ns < 0 else ns
    if u < 1_000_000_000:
        if u < 1_000:
            out = f"{u}ns"
        elif u < 1_000_000:
            frac, whole = _fmt_frac(u, 3)
            out = f"{whole}{frac}µs"
        else:
            frac, whole = _fmt_frac(u, 6)
            out = f"{whole}{frac}ms"
    else:
        frac, secs = _fmt_frac(u, 9)
        out = f"{secs % 60}{frac}s"
        mins = secs // 60
        if mins:
            out = f"{mins % 60}m" + out
            hours = mins // 60
            if hours:
                out = f"{hours}h" + out
    return "-" + out if ns < 0 else out


_DURATION_PART = re.compile(r"(\d*)(?:\.(\d*))?(ns|us|µs|μs|ms|s|m|h)")
_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
          "m": 60_000_000_000, "h": 3_600_000_000_000}


def parse_duration(text: str) -> int:
    """Go's time.ParseDuration -> nanoseconds."""
    s = text
    neg = s[:1] == "-"
    if s[:1] in "+-" and s:
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise ProtobufError(f'time: invalid duration "{text}"')
    total, pos = 0, 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if not m or (not m.group(1) and not m.group(2)):
            raise ProtobufError(f'time: invalid duration "{text}"')
        whole, frac, unit = m.groups()
        scale = _UNITS[unit]
        total += int(whole or "0") * scale
        if frac:
            total += int(frac) * scale // 10 ** len(frac)
        pos = m.end()
    return -total if neg else total


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def _unb64(s: str) -> bytes:
    try:
        return base64.b64decode(s, validate=True)
    except (binascii.Error, TypeError) as e:
        raise ProtobufError(f"illegal base64 data: {e}") from None


def _load_raw(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise ProtobufError(f"embedded raw data is not JSON: {e}") from None


# --- decode: message -> JSON ------------------------------------------------------------------

def _special_to_json(plan: _Plan, msg: Message) -> Any:
    sp = plan.special
    if sp == "Time":
        if not msg.HasField("seconds") and not msg.HasField("nanos"):
            return None
        return format_time(msg.seconds)
    if sp == "MicroTime":
        if not msg.HasField("seconds") and not msg.HasField("nanos"):
            return None
        return format_micro_time(msg.seconds, msg.nanos)
    if sp == "Quantity":
        return msg.string or "0"
    if sp == "IntOrString":
        return msg.strVal if msg.type == 1 else msg.intVal
    if sp == "Duration":
        return format_duration(msg.duration)
    if sp == "RawExtension":
        if not msg.HasField("raw"):
            return None
        raw = msg.raw
        if raw[:4] == MAGIC:  # an object the protobuf serializer embedded (v1.List items)
            return decode(raw)[2]
        return _load_raw(raw)
    if sp == "FieldsV1":
        return _load_raw(msg.Raw) if msg.HasField("Raw") else None
    if sp == "wrapper":
        return list(msg.items)
    raise AssertionError(sp)


def _to_json(plan: _Plan, msg: Message) -> Any:
    """The JSON value of a parsed message (see the module docstring for the rules).

    Hot path: one ListFields (present fields, in number order) per message, then the fields
    absent on the wire that JSON still shows, then Go's order when numbers and Go differ."""
    if plan.special is not None:
        return _special_to_json(plan, msg)
    out: dict[str, Any] = {}
    dec = plan.dec
    for fd, value in msg.ListFields():
        key, kind, skip_zero, sub = dec[fd]
        if kind == _SCALAR:
            if skip_zero and not value:
                continue
            out[key] = value
        elif kind == _MESSAGE:
            out[key] = _to_json(sub, value)
        elif kind == _REP_MESSAGE:
            out[key] = [_to_json(sub, v) for v in value]
        elif kind == _REP_SCALAR:
            out[key] = list(value)
        elif kind == _MAP_SCALAR:
            out[key] = {k: value[k] for k in sorted(value)}  # encoding/json writes map keys sorted
        elif kind == _INLINE:
            out.update(_to_json(sub, value))
        elif kind == _MAP_MESSAGE:
            out[key] = {k: _to_json(sub, value[k]) for k in sorted(value)}
        elif kind == _BYTES:
            out[key] = _b64(value)
        elif kind == _REP_BYTES:
            out[key] = [_b64(v) for v in value]
        elif kind == _MAP_BYTES:
            out[key] = {k: _b64(value[k]) for k in sorted(value)}
        # _SKIP: not in JSON
    ordered = plan.in_number_order
    for key, absent in plan.absent:
        if key not in out:
            ordered = False
            if absent.__class__ is _Plan:
                out[key] = _empty_json(absent)
            else:
                out[key] = absent
    for name, sub in plan.absent_inline:
        if not msg.HasField(name):
            for k, v in _empty_json(sub).items():
                if k not in out:
                    ordered = False
                    out[k] = v
    if not ordered and len(out) > 1:
        rank = plan.rank
        out = {k: out[k] for k in sorted(out, key=rank.__getitem__)}
    return out


def _empty_json(plan: _Plan) -> Any:
    """The JSON of an empty message (a non-pointer struct absent on the wire), a fresh copy."""
    if plan.empty is None:
        plan.empty = orjson.dumps(_to_json(plan, plan.cls()))
    return orjson.loads(plan.empty)


def _unwrap(body: bytes | memoryview) -> tuple[str, str, bytes]:
    """Check the magic and parse the runtime.Unknown envelope -> (apiVersion, kind, raw)."""
    if bytes(body[:4]) != MAGIC:
        raise ProtobufError("provided data does not appear to be a protobuf message, expected prefix "
                            "[107 56 115 0]")
    unknown = registry().plans[f".{_RUNTIME}.Unknown"].cls()
    try:
        unknown.ParseFromString(body[4:])
    except DecodeError:
        raise ProtobufError(describe_parse_error(unknown.DESCRIPTOR, body[4:])) from None
    tm = unknown.typeMeta
    if not tm.kind:
        raise ProtobufError(f"Object 'Kind' is missing in '{bytes(body[:64])!r}'")
    if unknown.contentEncoding:
        raise ProtobufError(f"unsupported content encoding {unknown.contentEncoding!r}")
    return tm.apiVersion, tm.kind, unknown.raw


def decode(body: bytes | memoryview) -> tuple[str, str, dict[str, Any]]:
    """An enveloped protobuf body -> (apiVersion, kind, the object as upstream's JSON writes it).

    The dict starts with ``kind`` and ``apiVersion`` (TypeMeta comes first in every Go object)."""
    api_version, kind, raw = _unwrap(body)
    obj = {"kind": kind, "apiVersion": api_version}
    obj.update(_decode_raw(_plan_for(api_version, kind), raw))
    return api_version, kind, obj


def _decode_raw(plan: _Plan, raw: bytes) -> Any:
    """A bare message -> its JSON: the generated decoder, or (on anything it does not take:
    see protobuf_gen) upb's parser and the reference walk, which also give every error."""
    try:
        return generator().decoder(plan)(raw, 0, len(raw))
    except Exception:  # Slow, and any fault of the bytes: the reference decides
        return decode_reference(plan, raw)


def decode_reference(plan: _Plan, raw: bytes) -> Any:
    """The reference decode: upb parses, _to_json walks the message."""
    msg = plan.cls()
    try:
        msg.ParseFromString(raw)
    except DecodeError:
        raise ProtobufError(describe_parse_error(msg.DESCRIPTOR, raw)) from None
    return _json_of(plan, msg)


def _json_of(plan: _Plan, msg: Message) -> Any:
    """_to_json, with the faults of values the parser accepted (a time out of range, raw that is
    not JSON) as ProtobufError."""
    try:
        return _to_json(plan, msg)
    except ProtobufError:
        raise
    except (ValueError, OverflowError, OSError) as e:
        raise ProtobufError(f"cannot decode {plan.full_name[1:]}: {e}") from None


def decode_message(full_name: str, raw: bytes) -> Any:
    """A bare (not enveloped) message of the named type -> its JSON value."""
    return _decode_raw(registry().plans["." + full_name.lstrip(".")], raw)


# --- encode: JSON -> constructor keywords ------------------------------------------------------

def _special_from_json(plan: _Plan, value: Any) -> dict[str, Any] | None:
    """Constructor keywords of a special message from its JSON value; None = leave the field unset."""
    sp = plan.special
    if sp == "Time":
        if value is None:
            return {}
        secs, nanos = parse_time(value)
        return {"seconds": secs, "nanos": nanos}
    if sp == "MicroTime":
        if value is None:
            return {}
        secs, nanos = parse_time(value)
        return {"seconds": secs, "nanos": nanos // 1000 * 1000}
    if sp == "Quantity":
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ProtobufError(f"quantities must match the regular expression; got {value!r}")
        return {"string": value if isinstance(value, str) else json.dumps(value)}
    if sp == "IntOrString":
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ProtobufError(f"json: cannot unmarshal {type(value).__name__} into Go value of type "
                                "intstr.IntOrString")
        if isinstance(value, int):
            return {"type": 0, "intVal": value, "strVal": ""}
        return {"type": 1, "intVal": 0, "strVal": value}
    if sp == "Duration":
        return {"duration": parse_duration(value)}
    if sp == "RawExtension":
        return {} if value is None else {"raw": orjson.dumps(value)}
    if sp == "FieldsV1":
        return {} if value is None else {"Raw": orjson.dumps(value)}
    if sp == "wrapper":
        return {"items": value}
    raise AssertionError(sp)


def _from_json(plan: _Plan, obj: Any, strict: bool) -> dict[str, Any]:
    """Constructor keywords for ``plan``'s message from its JSON value."""
    if plan.special is not None:
        return _special_from_json(plan, obj)
    if not isinstance(obj, dict):
        raise ProtobufError(f"json: cannot unmarshal {type(obj).__name__} into Go value of type "
                            f"{plan.full_name.rsplit('.', 1)[-1]}")
    kw = dict(plan.defaults)
    inline: dict[str, dict[str, Any]] | None = None
    fresh: set[int] = set()  # ids of the nested keyword dicts made here (the others are shared defaults)
    enc = plan.enc
    for key, value in obj.items():
        hit = enc.get(key)
        if hit is None:
            if strict and key not in ("kind", "apiVersion"):
                raise ProtobufError(f'unknown field "{key}" in {plan.full_name[1:]}')
            continue
        name, kind, sub, parents, null = hit
        target = kw
        if parents:
            # Inline (json:",inline") fields: the value goes into the nested message(s).
            # The nested keyword dicts start as copies of the (shared, never mutated) defaults.
            if inline is None:
                inline = {}
            level = inline
            for parent in parents:
                target = level.get(parent.name)
                if target is None or id(target) not in fresh:
                    target = level[parent.name] = dict(parent.plan.defaults)
                    fresh.add(id(target))
                level = target
        if value is None:
            # encoding/json: null leaves a Go value as it was (zero); pointers, slices, maps nil.
            if null is _UNSET:
                target.pop(name, None)
            else:
                target[name] = null
            continue
        if kind == _SCALAR or kind == _REP_SCALAR or kind == _MAP_SCALAR:
            target[name] = value
        elif kind == _MESSAGE:
            target[name] = _from_json(sub, value, strict)
        elif kind == _REP_MESSAGE:
            target[name] = [_from_json(sub, v, strict) for v in value]
        elif kind == _MAP_MESSAGE:
            target[name] = {k: _from_json(sub, v, strict) for k, v in value.items()}
        elif kind == _BYTES:
            target[name] = _unb64(value)
        elif kind == _REP_BYTES:
            target[name] = [_unb64(v) for v in value]
        else:
            target[name] = {k: _unb64(v) for k, v in value.items()}
    if inline:
        kw.update(inline)
    return kw


def _build(plan: _Plan, obj: Any, strict: bool) -> Message:
    try:
        return plan.cls(**_from_json(plan, obj, strict))
    except (TypeError, ValueError) as e:
        if isinstance(e, ProtobufError):
            raise
        raise ProtobufError(f"cannot encode {plan.full_name[1:]}: {e}") from None


def _encode_raw(plan: _Plan, obj: Any, strict: bool) -> bytes:
    """A JSON value -> the bare message: the generated encoder, or (for values it does not
    take: see protobuf_gen) the reference walk, which also gives every error."""
    try:
        return bytes(generator().encoder(plan)(obj, strict))
    except Exception:  # Slow, or a value the reference walk rejects (or converts) its own way
        return encode_reference(plan, obj, strict)


def encode_reference(plan: _Plan, obj: Any, strict: bool = False) -> bytes:
    """The reference encode: constructor keywords from the JSON, upb serializes."""
    return _build(plan, obj, strict).SerializeToString(deterministic=True)


def encode_message(full_name: str, obj: Any, strict: bool = False) -> bytes:
    """A JSON value -> the bare serialized message of the named type."""
    return _encode_raw(registry().plans["." + full_name.lstrip(".")], obj, strict)


def encode(obj: dict[str, Any], api_version: str | None = None, kind: str | None = None,
           strict: bool = False) -> bytes:
    """An object (JSON-shaped dict, a ``...List`` or a ``Status`` too) -> the enveloped protobuf body.

    apiVersion and kind default to the object's own.  Map keys are written sorted (gogo does the
    same), so a body is deterministic.  ``strict`` rejects JSON keys the message does not have."""
    api_version = api_version or obj.get("apiVersion", "")
    kind = kind or obj.get("kind", "")
    raw = _encode_raw(_plan_for(api_version, kind), obj, strict)
    return MAGIC + _envelope(api_version, kind, raw)


def encode_raw(obj: dict[str, Any], api_version: str, kind: str) -> bytes:
    """The bare message of an object (no magic, no envelope): what a GET envelopes, a
    ``...List`` repeats as its items and a watch frame envelopes, so it is cached per object
    version (cache/entry.py) and reused by all of them."""
    return _encode_raw(_plan_for(api_version, kind), obj, False)


def envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    """A bare message -> the body upstream writes: magic + runtime.Unknown."""
    return MAGIC + _envelope(api_version, kind, raw)


def list_parts(api_version: str, list_kind: str, list_meta: dict[str, Any],
               item_raws: list[bytes]) -> tuple[bytes, list[bytes], bytes]:
    """A ``...List`` body in three parts, head + items + tail, from its items' bare messages
    (every k8s.io/api List is {metadata = 1: ListMeta, items = 2: repeated}): the items are
    framed, not re-encoded, and may be written piece by piece between head and tail."""
    meta = _field_bytes(1, encode_message(f"{_META}.ListMeta", list_meta))
    items = [_field_bytes(2, r) for r in item_raws]
    size = len(meta) + sum(map(len, items))
    tm = _field_bytes(1, api_version.encode()) + _field_bytes(2, list_kind.encode())
    head = MAGIC + _field_bytes(1, tm) + _varint(2 << 3 | 2) + _varint(size) + meta
    return head, items, b"\x1a\x00\x22\x00"


def has_kind(api_version: str, kind: str) -> bool:
    """Whether kind at apiVersion has a message (every built-in kind kubeplane serves)."""
    group, _, version = api_version.rpartition("/")
    return (group, version, kind) in message_types() or kind in meta_kinds()


def _envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    """runtime.Unknown's bytes, written by hand (its layout is fixed: typeMeta, raw, "", "")."""
    tm = _field_bytes(1, api_version.encode()) + _field_bytes(2, kind.encode())
    return _field_bytes(1, tm) + _field_bytes(2, raw) + b"\x1a\x00\x22\x00"


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field_bytes(number: int, data: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(data)) + data


# --- watch -----------------------------------------------------------------------------------

def watch_frame(event_type: str, obj_enveloped: bytes) -> bytes:
    """One watch event as upstream frames it: 4-byte big-endian length + metav1.WatchEvent
    {type, object = RawExtension{raw = the enveloped object}}."""
    event = _field_bytes(1, event_type.encode()) + _field_bytes(2, _field_bytes(1, obj_enveloped))
    return struct.pack(">I", len(event)) + event


def iter_watch_frames(data: bytes) -> Iterator[tuple[str, bytes]]:
    """Split a protobuf watch stream -> (event type, enveloped object bytes); ProtobufError on a cut frame."""
    plan = registry().plans[f".{_META}.WatchEvent"]
    pos = 0
    while pos < len(data):
        if pos + 4 > len(data):
            raise ProtobufError("unexpected EOF")
        (n,) = struct.unpack_from(">I", data, pos)
        pos += 4
        if pos + n > len(data):
            raise ProtobufError("unexpected EOF")
        ev = plan.cls()
        try:
            ev.ParseFromString(data[pos:pos + n])
        except DecodeError:
            raise ProtobufError(describe_parse_error(ev.DESCRIPTOR, data[pos:pos + n])) from None
        pos += n
        yield ev.type, ev.object.raw


def decode_watch(data: bytes) -> list[dict[str, Any]]:
    """A whole protobuf watch stream -> the events as the JSON watch writes them ({type, object})."""
    return [{"type": t, "object": decode(raw)[2]} for t, raw in iter_watch_frames(data)]


__all__ = ["MAGIC", "CONTENT_TYPE", "STREAM_CONTENT_TYPE", "ProtobufError", "decode", "encode", "decode_message",
           "encode_raw", "envelope", "list_parts", "has_kind",
           "encode_message", "watch_frame", "iter_watch_frames", "decode_watch", "message_types", "meta_kinds",
           "message_class", "registry", "load_table", "format_duration", "parse_duration", "format_time",
           "format_micro_time", "parse_time"]
