"""Shared by the REST verbs: the route, request parameters, small response helpers."""
from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

from .. import codec, errors
from ..errors import Cause
from ..http import Request, Response
from ..patch import go_kind
from ..resources import ResourceInfo


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


def _int_param(req: Request, name: str, default: int) -> int:
    v = req.param(name)
    if v is None or v == "":
        return default
    try:
        n = int(v)
    except ValueError:
        raise errors.bad_request(f"{name}: Invalid value: \"{v}\": must be an integer") from None
    if n < 0 and name == "limit":
        raise errors.bad_request(f"limit: Invalid value: {n}: must be greater than or equal to 0")
    return n


def _parse_rv(rv: str, field: str = "resourceVersion") -> int:
    try:
        n = int(rv)
        if n < 0:
            raise ValueError
        return n
    except ValueError:
        raise errors.bad_request(f'invalid resource version "{rv}"' if field == "resourceVersion"
                                 else f"{field}: Invalid value: \"{rv}\": must be a valid resource version") from None


_json_type = go_kind   # the JSON kind in Go's json.UnmarshalTypeError wording


def _random_suffix() -> str:
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    return "".join(secrets.choice(alphabet) for _ in range(5))


def _partial(obj: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata", {})}


def _warning_headers(warnings: list[str]) -> list[tuple[str, str]]:
    out = []
    for w in warnings[:32]:
        out.append(("Warning", '299 - "' + w.replace("\\", "\\\\").replace('"', '\\"') + '"'))
    return out

