"""Shared by the REST verbs: the route, request parameters, small response helpers."""
from __future__ import annotations

import functools

import logging
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from ..cache.entry import remember_protobuf
from ..machinery import codec, errors, protobuf
from ..machinery.errors import Cause
from ..transport.http import Request, Response
from ..registry.patch import go_kind
from ..registry.resources import ResourceInfo
from ..registry.storage import key_of


log = logging.getLogger("kubeplane.apiserver")


_SERVER_MANAGED = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                   "generation", "selfLink")


# Kinds whose registry sets ReturnDeletedObject upstream: a delete answers the object, not a Status.
_RETURNS_DELETED = {("", "pods"), ("", "services"), ("", "serviceaccounts"), ("storage.k8s.io", "storageclasses")}


_NOW: list = [0, ""]     # (second, its RFC 3339 text): formatted once a second


def now_rfc3339() -> str:
    t = int(time.time())
    if t != _NOW[0]:
        _NOW[0], _NOW[1] = t, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
    return _NOW[1]


@dataclass
class Route:
    info: ResourceInfo
    namespace: str | None
    name: str | None
    subresource: str | None


def _json(status: int, obj: Any, headers: list[tuple[str, str]] | None = None,
          accept: codec.Accept | None = None) -> Response:
    body, ct = codec.encode(obj, accept)
    return Response(status, body, headers, content_type=ct)


def _created(info: ResourceInfo, obj: dict[str, Any], headers: list[tuple[str, str]],
             accept: codec.Accept) -> Response:
    """A create's 201. In protobuf, the version's bare message is also left for its cache
    entry (cache/entry.py, remember_protobuf): watchers and readers of the new version in
    protobuf reuse the response's encoding (serialize once)."""
    if not accept.protobuf:
        return _json(201, obj, headers, accept=accept)
    md = obj["metadata"]
    api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
    raw = protobuf.encode_raw(obj, api_version, kind)
    remember_protobuf(key_of(info, md.get("namespace"), md["name"]), int(md["resourceVersion"]), raw)
    return Response(201, protobuf.envelope(api_version, kind, raw), headers, content_type=codec.PROTOBUF)


@functools.lru_cache(maxsize=None)
def _has_message(group_version: str, kind: str) -> bool:
    return protobuf.has_kind(group_version, kind) and protobuf.has_kind(group_version, kind + "List")


def protobuf_served(info: ResourceInfo) -> bool:
    """Whether `info` is served in protobuf: built-in kinds that have a message (and a List
    message) in the codec's table. Custom resources are JSON only, as upstream; so, here, are
    the few built-in kinds the table lacks (apiextensions.k8s.io's CustomResourceDefinition),
    which then negotiate as custom resources do instead of failing in the encoder."""
    return info.crd is None and _has_message(info.group_version, info.kind)


def _pb_kind(info: ResourceInfo) -> str | None:
    """The kind a protobuf body for `info` must carry, or None: custom resources are JSON
    only (upstream answers a protobuf body for one with 415)."""
    return info.kind if protobuf_served(info) else None


def _accept(req: Request, info: ResourceInfo) -> codec.Accept:
    """The response form the client accepts for `info` (406 when none): negotiated before
    the handler does anything, as upstream, so a 406 never follows a write."""
    return codec.negotiate(req.headers.get("accept", ""), protobuf_served(info))


def _bool_param(req: Request, name: str) -> bool:
    v = req.param(name)
    return v is not None and v.lower() in ("1", "true", "")


def _dry_run(req: Request) -> bool:
    vals = req.query.get("dryRun") or []
    for v in vals:
        if v != "All":
            raise errors.bad_request(f'dryRun: Unsupported value: "{v}": supported values: "All"')
    return bool(vals)


def _field_validation(req: Request) -> str:
    v = req.param("fieldValidation") or "Warn"   # upstream default when unset: Warn
    if v not in ("Strict", "Warn", "Ignore"):
        raise errors.bad_request(f"fieldValidation: Unsupported value: \"{v}\": supported values: "
                                 '"Ignore", "Strict", "Warn"')
    return v


_JSON_BODIES = (codec.JSON, codec.MERGE_PATCH, codec.STRATEGIC_PATCH, codec.JSON_PATCH, "*/*", "application/*")


_YAML_BODIES = (codec.YAML, "application/x-yaml", "text/yaml")


def _body_duplicates(req: Request, mode: str, parsed: Any = codec._NOTHING) -> codec.Duplicates | None:
    """The repeated keys of a JSON or YAML request body, unless fieldValidation=Ignore
    (upstream's strict decoder reports them as Strict errors or Warn warnings). Apply
    patches: see Writes.patch. `parsed`: the decoded body before any change (a quick
    test that spares most bodies the slow one)."""
    if mode == "Ignore":
        return None
    mt = codec.media_type(req.headers.get("content-type", "")) or codec.JSON
    if mt in _JSON_BODIES:
        return codec.json_duplicates(req.body, parsed)
    if mt in _YAML_BODIES:
        return codec.yaml_duplicates(req.body)
    return None


def _manager(req: Request, default_op: str) -> str:
    m = req.param("fieldManager")
    if m is not None:
        if len(m) > 128:
            raise errors.invalid("", "", "", [Cause("FieldValueTooLong", "fieldManager",
                                                    "Too long: may not be more than 128 bytes")])
        if not m.isprintable():
            raise errors.bad_request("fieldManager: Invalid value: must only contain printable characters")
        return m
    if default_op == "Apply":
        raise errors.bad_request("PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: "
                                 "is required for apply patch")
    ua = req.headers.get("user-agent", "unknown")
    return ua.split("/", 1)[0][:128] or "unknown"


_DIGITS = re.compile(r"[0-9]+")
_INT64 = (-(1 << 63), (1 << 63) - 1)


def go_parse_int(v: str, *, unsigned: bool = False) -> int:
    """Go's strconv.ParseInt(v, 10, 64) (ParseUint with unsigned=True): ASCII digits with an
    optional sign (no sign for ParseUint), nothing else; ValueError with Go's message."""
    fn = "ParseUint" if unsigned else "ParseInt"
    digits = v if unsigned else v[1:] if v[:1] in ("+", "-") else v
    if not _DIGITS.fullmatch(digits):
        raise ValueError(f"strconv.{fn}: parsing {_go_quote(v)}: invalid syntax")
    n = int(v)
    lo, hi = (0, (1 << 64) - 1) if unsigned else _INT64
    if not lo <= n <= hi:
        raise ValueError(f"strconv.{fn}: parsing {_go_quote(v)}: value out of range")
    return n


def _go_quote(v: str) -> str:
    """Go's %q of a string (close enough: JSON quoting)."""
    import orjson

    return orjson.dumps(v).decode()


def _int_param(req: Request, name: str, default: int) -> int:
    """An int64 query parameter as upstream's parameter codec decodes it (400 with strconv's
    message when it is not one); limit may not be negative."""
    v = req.param(name)
    if v is None or v == "":
        return default
    try:
        n = go_parse_int(v)
    except ValueError as e:
        raise errors.bad_request(str(e)) from None
    if n < 0 and name == "limit":
        raise errors.bad_request(f"limit: Invalid value: {n}: must be greater than or equal to 0")
    return n


def rv_error(rv: str) -> str | None:
    """Why `rv` is not a resourceVersion, in upstream's words (APIObjectVersioner's
    ParseResourceVersion: a uint64), or None."""
    try:
        go_parse_int(rv, unsigned=True)
    except ValueError as e:
        return f"resourceVersion: Invalid value: {_go_quote(rv)}: {e}"
    return None


def _parse_rv(rv: str, field: str = "resourceVersion") -> int:
    """A resourceVersion parameter (400 `invalid resource version: ...` otherwise, as
    upstream's storage answers); with another `field`, a resourceVersion in a body. Values
    beyond int64 are valid uint64s that no store reaches: the callers' "too large" path."""
    why = rv_error(rv)
    if why is not None:
        if field == "resourceVersion":
            raise errors.bad_request(f"invalid resource version: {why}")
        raise errors.bad_request(f"{field}: Invalid value: \"{rv}\": must be a valid resource version")
    return min(int(rv), (1 << 63) - 1)


_json_type = go_kind   # the JSON kind in Go's json.UnmarshalTypeError wording


def _random_suffix() -> str:
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    return "".join(secrets.choice(alphabet) for _ in range(5))


def _partial(obj: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata", {})}


def _warning_headers(warnings: list[str]) -> list[tuple[str, str]]:
    """`Warning: 299 - "text"` headers (at most 32). The text may hold what a client sent
    (unknown field names): it is written as UTF-8, as Go writes it, with control
    characters as spaces, so that it can never break the response head."""
    out = []
    for w in warnings[:32]:
        w = _CONTROL.sub(" ", w).encode("utf-8", "replace").decode("latin-1")
        out.append(("Warning", '299 - "' + w.replace("\\", "\\\\").replace('"', '\\"') + '"'))
    return out


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

