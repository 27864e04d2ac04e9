"""Objects in the store: key layout, encoding, resourceVersion and optimistic concurrency.

Objects are stored as JSON without `metadata.resourceVersion`: the store's mod revision
*is* the resourceVersion, set on every read (as upstream's etcd3 storage does). Every
write is one txn guarded by a compare, so a create never overwrites and an update or
delete never applies over a newer version than the one it read.
"""
from __future__ import annotations

import re
from typing import Any

import orjson

from ..store import errors as store_errors
from ..store.interface import Store
from ..store.types import Compare, DeleteOp, KeyValue, PutOp, RangeOp, prefix_end
from . import errors
from .resources import ResourceInfo


def key_of(info: ResourceInfo, namespace: str | None, name: str) -> bytes:
    if info.namespaced:
        return f"{info.key_prefix}{namespace}/{name}".encode()
    return f"{info.key_prefix}{name}".encode()


def prefix_of(info: ResourceInfo, namespace: str | None) -> bytes:
    if info.namespaced and namespace:
        return f"{info.key_prefix}{namespace}/".encode()
    return info.key_prefix.encode()


# Stored objects start with kind, apiVersion and metadata, in that order (encode() writes
# them so); the resourceVersion is then spliced into the bytes without decoding them.
_HEAD = re.compile(rb'\{"kind":"[^"\\]*","apiVersion":"[^"\\]*","metadata":\{')


def with_rv(value: bytes, rev: int) -> bytes:
    """The stored JSON with `metadata.resourceVersion` = `rev`: the bytes every GET, LIST
    and watch event of this version carries (serialized once)."""
    m = _HEAD.match(value)
    if m is None:   # written by someone else: decode, set, encode
        obj = orjson.loads(value)
        md = obj.get("metadata")
        if not isinstance(md, dict):
            md = obj["metadata"] = {}
        md["resourceVersion"] = str(rev)
        return orjson.dumps(obj)
    j = m.end()
    sep = b"" if value[j:j + 1] == b"}" else b","
    return b'%s"resourceVersion":"%d"%s%s' % (value[:j], rev, sep, value[j:])


def decode(kv: KeyValue) -> dict[str, Any]:
    return orjson.loads(with_rv(kv.value, kv.mod_revision))


def encode(obj: dict[str, Any]) -> bytes:
    """The stored form: JSON without resourceVersion, kind/apiVersion/metadata first."""
    md = obj.get("metadata")
    if not isinstance(md, dict):
        md = {}
    rv = md.pop("resourceVersion", None)
    try:
        if list(obj)[:3] == ["kind", "apiVersion", "metadata"]:
            return orjson.dumps(obj)
        return orjson.dumps({"kind": obj.get("kind"), "apiVersion": obj.get("apiVersion"), "metadata": md, **obj})
    finally:
        if rv is not None:
            md["resourceVersion"] = rv


def store_error(exc: Exception) -> errors.APIError:
    """Map a store error onto the Status upstream returns for it."""
    if isinstance(exc, store_errors.CompactedError):
        return errors.APIError(410, "Expired", "The resourceVersion for the provided list is too old.")
    if isinstance(exc, store_errors.FutureRevisionError):
        return errors.APIError(504, "Timeout", "Too large resource version")
    if isinstance(exc, store_errors.RequestTooLargeError):
        return errors.APIError(413, "RequestEntityTooLarge", "etcdserver: request is too large")
    msg = getattr(exc, "message", None) or str(exc)
    return errors.APIError(500, "InternalError", f"Internal error occurred: {msg}")


class ObjectStore:
    """The API's objects over one `Store`."""

    def __init__(self, store: Store):
        self.store = store

    async def get_kv(self, key: bytes, revision: int = 0) -> KeyValue | None:
        try:
            res = await self.store.range(key, revision=revision)
        except store_errors.StoreError as e:
            raise store_error(e) from None
        return res.kvs[0] if res.kvs else None

    async def get(self, info: ResourceInfo, namespace: str | None, name: str,
                  revision: int = 0) -> dict[str, Any]:
        kv = await self.get_kv(key_of(info, namespace, name), revision)
        if kv is None:
            raise errors.not_found(info.group, info.plural, name)
        return decode(kv)

    async def list(self, info: ResourceInfo, namespace: str | None, *, revision: int = 0,
                   limit: int = 0, start: bytes | None = None) -> tuple[list[KeyValue], int, bool, int]:
        """Returns (kvs, revision, more, remaining-after-this-page)."""
        prefix = prefix_of(info, namespace)
        end = prefix_end(prefix)
        try:
            res = await self.store.range(start or prefix, end, revision=revision, limit=limit)
        except store_errors.StoreError as e:
            raise store_error(e) from None
        return res.kvs, res.revision, res.more, res.count - len(res.kvs)

    async def current_revision(self) -> int:
        return await self.store.current_revision()

    async def create(self, info: ResourceInfo, namespace: str | None, name: str,
                     obj: dict[str, Any]) -> dict[str, Any]:
        key = key_of(info, namespace, name)
        data = encode(obj)
        try:
            res = await self.store.txn([Compare.create_revision(key, "=", 0)], [PutOp(key, data)], [])
        except store_errors.StoreError as e:
            raise store_error(e) from None
        if not res.succeeded:
            raise errors.already_exists(info.group, info.plural, name)
        obj.setdefault("metadata", {})["resourceVersion"] = str(res.revision)
        return obj

    async def _guarded(self, info: ResourceInfo, key: bytes, name: str, expected_rev: int, op) -> int:
        """Run `op` on `key` if it is still at `expected_rev`; 409 Conflict if it changed,
        404 if it is gone. Returns the store revision after the txn."""
        try:
            res = await self.store.txn([Compare.mod_revision(key, "=", expected_rev)], [op],
                                       [RangeOp(key, keys_only=True)])
        except store_errors.StoreError as e:
            raise store_error(e) from None
        if not res.succeeded:
            if not res.responses[0].kvs:
                raise errors.not_found(info.group, info.plural, name)
            raise errors.conflict(info.group, info.plural, name, errors.OPTIMISTIC_LOCK)
        return res.revision

    async def update(self, info: ResourceInfo, namespace: str | None, name: str,
                     obj: dict[str, Any], expected_rev: int) -> dict[str, Any]:
        """Write `obj` if the stored object is still at `expected_rev`."""
        key = key_of(info, namespace, name)
        rev = await self._guarded(info, key, name, expected_rev, PutOp(key, encode(obj)))
        obj.setdefault("metadata", {})["resourceVersion"] = str(rev)
        return obj

    async def delete(self, info: ResourceInfo, namespace: str | None, name: str,
                     expected_rev: int) -> int:
        """Delete if still at `expected_rev`; returns the deletion's revision."""
        key = key_of(info, namespace, name)
        return await self._guarded(info, key, name, expected_rev, DeleteOp(key))

    async def delete_prefix(self, prefix: bytes) -> int:
        try:
            res = await self.store.delete(prefix, prefix_end(prefix))
        except store_errors.StoreError as e:
            raise store_error(e) from None
        return res.deleted
