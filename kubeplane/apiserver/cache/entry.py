"""One object version in the cache, and one event.

An `Entry` holds the object's stored JSON bytes (the very bytes object the embedded
store keeps: no second copy) and its revision; `data` is that JSON with
`metadata.resourceVersion` spliced in, a copy of the bytes, never a re-encoding, made
for every GET, LIST and watch event that carries the version (serialize once: the
object is encoded when it is written, and each watch event's line is built once for all
watchers). Labels and selectable fields are extracted when the version enters the cache,
so filtering never parses JSON again. The parsed object is not kept (a pod of ~6 KB of
JSON is ~40 KB as Python objects).

Protobuf is serialized once too, but lazily: the first reader that asks for protobuf
(GET, LIST or a watch event) encodes the version's bare message (`Entry.protobuf`, ~20-80
us for a pod) and every later one reuses it; a version nobody reads in protobuf costs
nothing. The bare message holds the resourceVersion, so a DELETED event's entry (another
revision) has its own. A create answered in protobuf has encoded its version already: it
leaves the message here (`remember_protobuf`, by key and revision) and the entry takes it
instead of encoding again.
"""
from __future__ import annotations

from typing import Any

import orjson

from ...store.types import KeyValue
from ..machinery import protobuf
from ..registry.resources import ResourceInfo
from ..registry.selectors import field_set
from ..registry.storage import rv_cut, rv_parts

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"

# Bare protobuf messages that write responses encoded, by (key, revision): the entry of that
# version takes its own from here (serialize once). Bounded: the oldest go first; a version
# nobody reads in protobuf just ages out.
_ENCODED: dict[tuple[bytes, int], bytes] = {}
_ENCODED_MAX = 1024


def remember_protobuf(key: bytes, rev: int, raw: bytes) -> None:
    """The bare message a write answered with for the version (key, rev), for its entry."""
    if len(_ENCODED) >= _ENCODED_MAX:
        try:
            del _ENCODED[next(iter(_ENCODED))]
        except (KeyError, StopIteration, RuntimeError):  # another thread got there first
            pass
    _ENCODED[(key, rev)] = raw


class Entry:
    __slots__ = ("key", "rev", "raw", "cut", "labels", "fields", "_pb")

    def __init__(self, key: bytes, rev: int, raw: bytes, labels: dict[str, str], fields: dict[str, str],
                 cut: int | None = None):
        self.key = key
        self.rev = rev            # the mod revision: the object's resourceVersion
        self.raw = raw            # the stored JSON (no resourceVersion), shared with the store
        self.cut = rv_cut(raw) if cut is None else cut    # where the resourceVersion goes
        self.labels = labels
        self.fields = fields      # selectable fields (metadata.name, spec.nodeName, ...)
        self._pb: bytes | None = None   # the bare protobuf message, made on first use

    def protobuf(self, api_version: str, kind: str) -> bytes:
        """The version's bare protobuf message (no envelope), encoded once from `data`."""
        pb = self._pb
        if pb is None:
            pb = _ENCODED.pop((self.key, self.rev), None)
            if pb is None:
                pb = protobuf.encode_raw(self.obj(), api_version, kind)
            self._pb = pb
        return pb

    @property
    def data(self) -> bytes:
        """The JSON as served, resourceVersion included."""
        return b"".join(rv_parts(self.raw, self.rev, self.cut))

    def parts(self) -> tuple[bytes | memoryview, ...]:
        """`data` as buffers to join with others (a LIST's piece): no copy of its own."""
        return rv_parts(self.raw, self.rev, self.cut)

    def obj(self) -> dict[str, Any]:
        """A fresh parsed copy (callers may change it)."""
        return orjson.loads(self.data)


def make_entry(info: ResourceInfo, kv: KeyValue) -> Entry:
    obj = orjson.loads(kv.value)
    md = obj.get("metadata") or {}
    md["resourceVersion"] = str(kv.mod_revision)
    labels = md.get("labels") or {}
    return Entry(kv.key, kv.mod_revision, kv.value, labels if isinstance(labels, dict) else {},
                 field_set(info, obj))


def deleted_entry(prev: Entry, rev: int) -> Entry:
    """The object as a DELETED event carries it: its last state at the deletion's revision."""
    return Entry(prev.key, rev, prev.raw, prev.labels, prev.fields, prev.cut)


class Event:
    """A change as the cache saw it. `obj` is the new version (for DELETED: the last
    state stamped with the deletion revision), `prev` the version before (None for
    ADDED). `lines` caches the encoded watch line per event type."""

    __slots__ = ("type", "rev", "obj", "prev", "time", "_lines")

    def __init__(self, type: str, rev: int, obj: Entry, prev: Entry | None, time: float):
        self.type = type
        self.rev = rev
        self.obj = obj
        self.prev = prev
        self.time = time
        self._lines: dict[object, bytes] | None = None

    def cached(self, key: object, build) -> bytes:
        """Another encoding of this event (e.g. a Table row), built once for all watchers."""
        lines = self._lines
        if lines is None:
            lines = self._lines = {}
        out = lines.get(key)
        if out is None:
            out = lines[key] = build()
        return out

    def entry(self, as_type: str) -> Entry:
        """The version a watcher gets with this event as `as_type`: the new one, or for a
        watcher whose selector the object just stopped matching (DELETED), the previous
        content at this event's revision."""
        if as_type == DELETED and self.type != DELETED and self.prev is not None:
            return deleted_entry(self.prev, self.rev)
        return self.obj

    def line(self, as_type: str | None = None) -> bytes:
        """`{"type":...,"object":...}\\n`, built once per type and shared by every watcher.
        A watcher whose selector the object just stopped matching gets it as DELETED,
        one whose selector it started matching as ADDED."""
        t = as_type or self.type
        lines = self._lines
        if lines is None:
            lines = self._lines = {}
        out = lines.get(t)
        if out is None:
            obj = self.entry(t)
            out = lines[t] = b"".join((b'{"type":"%s","object":' % t.encode(), *obj.parts(), b"}\n"))
        return out
