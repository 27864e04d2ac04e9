"""get, list (selectors, pagination with continue tokens), watch."""
from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, Sequence

import orjson

from ..machinery import codec, errors, protobuf
from . import watch
from ..machinery.errors import APIError, Cause
from ..transport.http import LONG_ITEMS, Buffer, Request, Response, join_items, long_write
from ..registry.resources import ResourceInfo
from ..registry.selectors import FieldSelector, LabelSelector, field_set
from ...store import errors as store_errors
from ...store.types import KeyValue, prefix_end
from ..cache.cacher import Cacher, TooOld
from ..cache.entry import Entry
from ..registry.storage import decode, key_of, prefix_of, rv_cut, rv_parts
from .tables import make_table
from .common import Route, _accept, _int_param, _json, _json_type, _parse_rv, _partial


def _kv_parts(kv: KeyValue) -> tuple[bytes | memoryview, ...]:
    return rv_parts(kv.value, kv.mod_revision, rv_cut(kv.value))


def _validate_list_options(rv: str, match: str) -> None:
    """Upstream's ValidateListOptions: 422 Invalid on ListOptions.meta.k8s.io."""
    causes = []
    if match and match not in ("NotOlderThan", "Exact"):
        causes.append(Cause("FieldValueNotSupported", "resourceVersionMatch",
                            f'Unsupported value: "{match}": supported values: "Exact", "NotOlderThan", ""'))
    elif match and not rv:
        causes.append(Cause("FieldValueForbidden", "resourceVersionMatch",
                            "Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided"))
    elif match == "Exact" and rv == "0":
        causes.append(Cause("FieldValueForbidden", "resourceVersionMatch",
                            'Forbidden: resourceVersionMatch "exact" is forbidden for resourceVersion "0"'))
    if causes:
        raise errors.invalid("meta.k8s.io", "ListOptions", "", causes)


def _too_large(want: int, have: int) -> APIError:
    # upstream storage.NewTooLargeResourceVersionError: a NewTimeoutError ("Timeout: ...")
    return errors.APIError(504, "Timeout", f"Timeout: Too large resource version: {want}, current: {have}",
                           {"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                            "retryAfterSeconds": 1})


def _read_revision(rv: str, req: Request) -> int:
    """GET with resourceVersion: "" or "0" read the latest; N reads the latest too unless
    resourceVersionMatch=Exact (N is then a snapshot revision)."""
    if rv and rv != "0":
        n = _parse_rv(rv)
        if req.param("resourceVersionMatch") == "Exact":
            return n
    return 0


def _encode_continue(rev: int, last_key: bytes, prefix: bytes) -> str:
    import base64

    start = last_key[len(prefix):].decode() + "\x00"
    raw = orjson.dumps({"v": "meta.k8s.io/v1", "rv": rev, "start": start})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")    # Go's RawURLEncoding: no padding


def _continue_expired(start: bytes, prefix: bytes) -> APIError:
    """410 Expired for a continue token whose revision was compacted, with a fresh token
    (rv -1: "continue from the latest revision", an inconsistent but complete remainder)."""
    import base64

    raw = orjson.dumps({"v": "meta.k8s.io/v1", "rv": -1, "start": start[len(prefix):].decode()})
    token = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return errors.expired(
        "The provided continue parameter is too old to display a consistent list result. You can start a new "
        "list without the continue parameter, or use the continue token in this response to retrieve the "
        "remainder of the results. Continuing with the provided token results in an inconsistent list - objects "
        "that were created, modified, or deleted between the time the first chunk was returned and now may show "
        "up in the list.", token)


_B64URL = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _raw_url_b64(token: str) -> bytes:
    """Go's base64.RawURLEncoding.DecodeString: URL alphabet, no padding; ValueError with
    Go's text for anything else."""
    import base64

    raw = token.encode("utf-8", "surrogatepass")
    for i, c in enumerate(raw):
        if c not in _B64URL:
            raise ValueError(f"illegal base64 data at input byte {i}")
    if len(raw) % 4 == 1:
        raise ValueError(f"illegal base64 data at input byte {len(raw) - 1}")
    return base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))


def _decode_continue(token: str, prefix: bytes) -> tuple[int, bytes]:
    """Upstream's storage.DecodeContinue: {"v": "meta.k8s.io/v1", "rv": N, "start": key};
    every malformed token is a 400 `invalid continue token: ...` with upstream's reason."""
    def bad(why: str) -> APIError:
        return errors.bad_request(f"invalid continue token: {why}")

    generic = "continue key is not valid"
    try:
        data = orjson.loads(_raw_url_b64(token))
    except orjson.JSONDecodeError as e:
        raise bad(f"{generic}: {codec.go_json_syntax_error(e)}") from None
    except ValueError as e:
        raise bad(f"{generic}: {e}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise bad(f"{generic}: json: cannot unmarshal {_json_type(data)} into Go value of type storage.continueToken")
    fields = {"v": "string", "rv": "int64", "start": "string"}
    for k, gotype in fields.items():
        v = data.get(k)
        ok = v is None or (isinstance(v, str) if gotype == "string"
                           else type(v) is int and -(1 << 63) <= v < (1 << 63))
        if not ok:
            shown = _json_type(v) if not isinstance(v, (int, float)) or isinstance(v, bool) else f"number {v}"
            raise bad(f"{generic}: json: cannot unmarshal {shown} into Go struct field continueToken.{k} "
                      f"of type {gotype}")
    version = data.get("v") or ""
    if version != "meta.k8s.io/v1":
        raise bad(f'{generic}: server does not recognize this encoded version {orjson.dumps(version).decode()}')
    rev = data.get("rv") or 0
    start = data.get("start") or ""
    if rev == 0:
        raise bad(f"{generic}: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
    if not start:
        raise bad(f"{generic}: encoded start key empty (version meta.k8s.io/v1)")
    if ".." in start.split("/") or start.startswith("/") or "//" in start or "\x00" in start[:-1]:
        raise bad(f"{generic}: {start}")
    try:
        key = start.encode()
    except UnicodeEncodeError:
        raise bad(f"{generic}: {start!r}") from None
    return max(rev, 0), prefix + key


_ITEM_HEAD = b'{"metadata":{'


def _untyped(parts: tuple[Buffer, ...]) -> tuple[Buffer, ...]:
    """A built-in object's JSON as an item of its list: without kind and apiVersion, as
    upstream's typed lists carry them only on the list (custom resources keep theirs).
    The stored bytes start with kind, apiVersion and metadata (storage.encode), so the
    first buffer, up to metadata's brace, is swapped; no copy of the rest."""
    if len(parts) == 3:
        return (_ITEM_HEAD, parts[1], parts[2])
    o = orjson.loads(b"".join(parts))      # written by someone else: not in encode()'s order
    o.pop("kind", None), o.pop("apiVersion", None)
    return (orjson.dumps(o),)


class Reads:
    """Mixin of RESTHandlers (handlers.py): needs .objects, .registry, .spawn and the other mixins."""

    def _cacher(self, info: ResourceInfo) -> Cacher | None:
        caches = getattr(self, "caches", None)
        return caches.cacher(info) if caches is not None else None

    async def _ready_cacher(self, info: ResourceInfo) -> Cacher | None:
        """The resource's cache for a LIST or WATCH: None when disabled; 429 with
        Retry-After when it is still loading after a short wait (a CRD's cache starts
        on first use)."""
        cacher = self._cacher(info)
        if cacher is not None and not cacher.ready.is_set():
            try:
                await asyncio.wait_for(cacher.ready.wait(), 1.0)
            except asyncio.TimeoutError:
                raise errors.APIError(429, "TooManyRequests", "storage is (re)initializing",
                                      {"retryAfterSeconds": 1}, headers={"Retry-After": "1"}) from None
        return cacher

    async def get(self, req: Request, route: Route) -> Response:
        accept = _accept(req, route.info)
        rv = req.param("resourceVersion") or ""
        cacher = self._cacher(route.info)
        if (cacher is not None and cacher.ready.is_set() and rv
                and req.param("resourceVersionMatch") != "Exact"):
            # resourceVersion 0 (any) or N (not older than N): served from the cache
            want = _parse_rv(rv)
            if want and not await cacher.wait_for(want, 3.0):
                raise _too_large(want, cacher.rev)
            entry = cacher.get(key_of(route.info, route.namespace, route.name or ""))
            if entry is None:
                raise errors.not_found(route.info.group, route.info.plural, route.name or "")
            if route.info.crd is None and not (accept.table or accept.metadata or accept.yaml):
                if accept.protobuf:       # serialized once per version, on first use
                    gv, kind = route.info.group_version, route.info.kind
                    return Response(200, protobuf.envelope(gv, kind, entry.protobuf(gv, kind)),
                                    content_type=codec.PROTOBUF)
                return Response(200, entry.data + b"\n")
            obj = entry.obj()
        else:
            obj = await self.objects.get(route.info, route.namespace, route.name or "", _read_revision(rv, req))
        self._read_defaults(route.info, obj)
        if accept.table:
            table = make_table(route.info, [obj], {"resourceVersion": obj["metadata"].get("resourceVersion", "")},
                               include_object=req.param("includeObject") or "Metadata", now=time.time())
            return _json(200, table)
        if accept.metadata:
            return _json(200, _partial(obj))
        return _json(200, obj, accept=accept)

    def _read_defaults(self, info: ResourceInfo, obj: dict[str, Any]) -> None:
        if info.crd is not None:
            schema = self._crd_schema(info)
            if schema is not None:
                schema.apply_defaults(obj)

    async def list(self, req: Request, route: Route) -> Response:
        info = route.info
        accept = _accept(req, info)
        lsel = LabelSelector.parse(req.param("labelSelector") or "")
        fsel = FieldSelector.for_resource(req.param("fieldSelector") or "", info)
        limit = _int_param(req, "limit", 0)
        cont = req.param("continue") or ""
        rv = req.param("resourceVersion") or ""
        match = req.param("resourceVersionMatch") or ""
        _validate_list_options(rv, match)
        if cont and rv and rv != "0":
            raise errors.bad_request("specifying resource version is not allowed when using continue")
        prefix = prefix_of(info, route.namespace)
        cacher = await self._ready_cacher(info)
        if cacher is not None:
            resp = await self._list_from_cache(req, route, cacher, accept, lsel, fsel, limit, cont, rv, match,
                                               prefix)
            if resp is not None:
                return resp
        start = None
        revision = 0
        if cont:
            revision, start = _decode_continue(cont, prefix)
        elif rv and match == "Exact":
            revision = _parse_rv(rv)
        # Store-direct reads: RV=0 and NotOlderThan are served at the current revision,
        # which is never older than asked (issue 4 serves them from the watch cache).
        if rv and rv != "0" and match != "Exact" and not cont:
            want = _parse_rv(rv)
            cur = await self.objects.current_revision()
            if want > cur:
                raise _too_large(want, cur)
        filtering = not (lsel.empty and fsel.empty)
        items: list[KeyValue] = []
        next_key: bytes | None = None
        remaining: int | None = None
        read_rev = revision
        # page through the store until `limit` matches (or the end)
        while True:
            want = (limit - len(items)) if limit else 0
            batch = max(want, 100) if (limit and filtering) else want
            try:
                kvs, read_rev2, more, rest = await self.objects.list(info, route.namespace, revision=read_rev,
                                                                     limit=batch, start=start)
            except APIError as e:
                if e.reason == "Expired" and cont:
                    raise _continue_expired(start or prefix, prefix) from None
                raise
            read_rev = read_rev or read_rev2
            last_key = None
            for kv in kvs:
                last_key = kv.key
                if filtering:
                    obj = decode(kv)
                    md = obj.get("metadata") or {}
                    if not lsel.matches(md.get("labels")):
                        continue
                    if not fsel.empty and not fsel.matches(field_set(info, obj)):
                        continue
                items.append(kv)
                if limit and len(items) >= limit:
                    break
            if limit and len(items) >= limit:
                more = more or (last_key is not None and last_key != (kvs[-1].key if kvs else None))
                if more:
                    next_key = last_key
                    if not filtering:
                        remaining = rest
                break
            if not more or not kvs:
                break
            start = kvs[-1].key + b"\0"
        meta: dict[str, Any] = {"resourceVersion": str(read_rev)}
        if next_key is not None:
            meta["continue"] = _encode_continue(read_rev, next_key, prefix)
            if remaining is not None and remaining > 0:
                meta["remainingItemCount"] = remaining
        async with long_write(len(items)):    # (the store's pages were read before: their count was unknown)
            return await self._send_list(req, info, accept, meta, items, _kv_parts, decode)

    async def _send_list(self, req: Request, info: ResourceInfo, accept: codec.Accept, meta: dict[str, Any],
                         items: Sequence[Any], parts: Callable[[Any], Sequence[Buffer]],
                         obj: Callable[[Any], dict[str, Any]]) -> Response:
        """The LIST response for `items` (cache entries or store records): `parts(item)`
        is an item's JSON as served, in buffers (serialize once: plain lists are assembled
        from the stored bytes), `obj(item)` a fresh parsed copy for the other forms. Long
        lists are written in pieces while the handler keeps its seats (Stream.write_items;
        the caller holds a long_write_slot); Tables and YAML are built whole."""
        if info.crd is not None:
            def obj_(x: Any, parse=obj) -> dict[str, Any]:
                o = parse(x)
                self._read_defaults(info, o)
                return o
            obj = obj_
        if accept.table or accept.yaml:
            objs = [obj(x) for x in items]
            if accept.table:
                return _json(200, make_table(info, objs, meta, include_object=req.param("includeObject") or "Metadata",
                                             now=time.time()))
            if info.crd is None:
                for o in objs:
                    o.pop("kind", None), o.pop("apiVersion", None)
            out = {"kind": info.list_kind, "apiVersion": info.group_version, "metadata": meta, "items": objs}
            return _json(200, out, accept=accept)
        if accept.protobuf:
            return await self._send_pb_list(req, info, meta, items, obj)
        if accept.metadata:
            kind, api_version = "PartialObjectMetadataList", "meta.k8s.io/v1"
            parts = lambda x: (orjson.dumps(_partial(obj(x))),)
        else:
            kind, api_version = info.list_kind, info.group_version
            if info.crd is not None:
                parts = lambda x: (orjson.dumps(obj(x)),)
            else:
                parts = lambda x, typed=parts: _untyped(typed(x))
        head = b'{"kind":"%s","apiVersion":"%s","metadata":%s,"items":[' % (
            kind.encode(), api_version.encode(), orjson.dumps(meta))
        if len(items) <= LONG_ITEMS:
            return Response(200, b"".join((head, join_items(items, parts, b","), b"]}\n")))
        stream = req.start_stream(200, [("Content-Type", "application/json")])
        stream.write(head)
        await stream.write_items(items, parts, b",")
        stream.write(b"]}\n")
        return Response(200)        # the body went out on the stream

    async def _send_pb_list(self, req: Request, info: ResourceInfo, meta: dict[str, Any], items: Sequence[Any],
                            obj: Callable[[Any], dict[str, Any]]) -> Response:
        """A LIST in protobuf (built-in kinds only): the `...List` message framed around the
        items' bare messages, which cache entries encode once per version (Entry.protobuf)
        and store records per request. Long lists go out in pieces, as the JSON ones."""
        gv, kind = info.group_version, info.kind
        if items and isinstance(items[0], Entry):
            raws = [e.protobuf(gv, kind) for e in items]
        else:
            raws = [protobuf.encode_raw(obj(x), gv, kind) for x in items]
        head, framed, tail = protobuf.list_parts(gv, info.list_kind, meta, raws)
        if len(items) <= LONG_ITEMS:
            return Response(200, b"".join((head, *framed, tail)), content_type=codec.PROTOBUF)
        stream = req.start_stream(200, [("Content-Type", codec.PROTOBUF)])
        stream.write(head)
        await stream.write_items(framed, lambda f: (f,))
        stream.write(tail)
        return Response(200)

    async def _list_from_cache(self, req: Request, route: Route, cacher: Cacher, accept: codec.Accept,
                               lsel: LabelSelector, fsel: FieldSelector, limit: int, cont: str, rv: str,
                               match: str, prefix: bytes) -> Response | None:
        """A LIST served from the watch cache, or None to read the store instead (a
        revision outside the cache's window; consistent reads when the store's progress
        notifications cannot be trusted, or the cache did not catch up within 3 s)."""
        rev: int | None = None          # None: the cache's current state
        start = None
        if cont:
            tok_rev, start = _decode_continue(cont, prefix)
            rev = tok_rev or None
        elif rv == "0":
            limit = 0                   # upstream ignores limit for resourceVersion=0
        elif not rv:
            m = self.metrics
            if not self.objects.store.info.progress_requests_reliable:
                if m is not None:
                    m.consistent_reads.inc((cacher.info.qualified, "false", "true"))
                return None             # etcd < 3.4.31: a quorum read from the store
            t0 = time.monotonic()
            want = await cacher.consistent_revision()
            caught_up = await cacher.wait_for(want, 3.0)
            if m is not None:
                m.read_wait.observe((cacher.info.qualified,), time.monotonic() - t0)
                m.consistent_reads.inc((cacher.info.qualified, "true" if caught_up else "false",
                                        "false" if caught_up else "true"))
            if not caught_up:
                return None
        elif match == "Exact":
            rev = _parse_rv(rv)
            if rev > cacher.rev and not await cacher.wait_for(rev, 3.0):
                raise _too_large(rev, cacher.rev)
        else:
            want = _parse_rv(rv)
            if not await cacher.wait_for(want, 3.0):
                raise _too_large(want, cacher.rev)
        hi = prefix_end(prefix)
        ks = cacher.keys
        n = ks.bisect_left(hi) - ks.bisect_left(prefix)
        async with long_write(min(n, limit) if limit else n):     # a long list: picked and written in a slot
            return await self._cache_list(req, route, cacher, accept, lsel, fsel, limit, cont, rev, start, prefix, hi)

    async def _cache_list(self, req: Request, route: Route, cacher: Cacher, accept: codec.Accept,
                          lsel: LabelSelector, fsel: FieldSelector, limit: int, cont: str, rev: int | None,
                          start: bytes | None, prefix: bytes, hi: bytes) -> Response | None:
        info = route.info
        if rev is not None and rev < cacher.rev:
            # the cache could rebuild the older state, but the revision must still exist in the
            # store: a compacted one is gone for every reader (410, as upstream)
            try:
                await self.objects.store.range(prefix, hi, revision=rev, count_only=True)
            except store_errors.CompactedError:
                if cont:
                    raise _continue_expired(start or prefix, prefix) from None
                raise errors.APIError(410, "Expired", "The resourceVersion for the provided list is too old.") \
                    from None
        read_rev = cacher.rev if rev is None else rev
        filtering = not (lsel.empty and fsel.empty)
        fetched = 0
        try:
            it = iter(cacher.entries(prefix, hi, rev, start))
            picked: list[Entry] = []
            more = False
            for e in it:
                fetched += 1
                if filtering and not (lsel.matches(e.labels) and (fsel.empty or fsel.matches(e.fields))):
                    continue
                if limit and len(picked) >= limit:
                    more = True
                    break
                picked.append(e)
        except TooOld:
            return None                 # older than the cache's window: the store decides
        m = self.metrics
        if m is not None:
            key = (info.key_prefix.rstrip("/"), "")
            m.cache_lists.inc(key)
            m.cache_list_fetched.inc(key, fetched)
            m.cache_list_returned.inc(key[:1], len(picked))
        meta: dict[str, Any] = {"resourceVersion": str(read_rev)}
        if more and picked:
            meta["continue"] = _encode_continue(read_rev, picked[-1].key, prefix)
            if not filtering:
                if rev is None:
                    ks = cacher.keys
                    remaining = ks.bisect_left(hi) - ks.bisect_right(picked[-1].key)
                else:
                    remaining = 1 + sum(1 for _ in it)
                meta["remainingItemCount"] = remaining
        return await self._send_list(req, info, accept, meta, picked, Entry.parts, Entry.obj)

    async def watch(self, req: Request, route: Route) -> None:
        return await watch.serve_watch(self, req, route)

