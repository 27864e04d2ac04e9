"""The application: authentication, routing, non-resource endpoints, errors as Status.

URL layout (upstream's):
    /api/v1/[namespaces/{ns}/]{resource}[/{name}[/{subresource}]]
    /apis/{group}/{version}/[namespaces/{ns}/]{resource}[/{name}[/{subresource}]]
    /api, /apis, /apis/{group}, /api/v1, /apis/{group}/{version}     discovery
    /version, /openapi/v2, /openapi/v3[/...], /healthz, /livez, /readyz
Trailing slashes are ignored (kr8s sends them). The legacy `/watch/` path prefix maps
to `?watch=true`.
"""
from __future__ import annotations

import asyncio
import logging
from time import perf_counter
from typing import Any, Callable

import orjson

from ...logs import log_request, request_logging_enabled
from ..machinery import codec, errors, protobuf
from .authn import ANONYMOUS_USER, Authenticator
from ..machinery.errors import APIError
from .filters import Admission
from ..endpoints.connect import CONNECT_SUBRESOURCES, Connect
from ..endpoints.handlers import RESTHandlers, Route
from .health import HealthChecks
from ..transport.http import Request, Response
from .metrics import APIServerMetrics
from ..registry.registry import Registry
from .requestinfo import RequestInfo, request_info

log = logging.getLogger("kubeplane.apiserver")


def status_body(code: int, message: str) -> bytes:
    reason = {400: "BadRequest", 401: "Unauthorized", 404: "NotFound", 413: "RequestEntityTooLarge",
              500: "InternalError"}.get(code, "")
    return orjson.dumps(APIError(code, reason, message).status(), option=orjson.OPT_APPEND_NEWLINE)


def _wants_protobuf(accept: str) -> bool:
    """Whether the Accept header's first alternative kubeplane writes is protobuf."""
    if "protobuf" not in accept:
        return False
    try:
        return codec.negotiate(accept, True).protobuf
    except APIError:
        return False


def _error_response(e: APIError, accept: str = "") -> Response:
    """The Status of `e` as upstream writes it: JSON with a trailing newline (Go's
    json.Encoder), or protobuf when the client prefers it (Go clients); a 406 (no
    representation the client accepts) indented JSON without the newline, as upstream's
    WriteRawJSON falls back to when negotiation fails."""
    headers = list(e.headers.items())
    if e.code == 429 or (e.details or {}).get("retryAfterSeconds"):
        headers.append(("Retry-After", str((e.details or {}).get("retryAfterSeconds", 1))))
    st = e.status()
    cont = getattr(e, "continue_token", None)
    if cont:
        st["metadata"] = {"continue": cont}
    if e.code == 406:
        return Response(e.code, orjson.dumps(st, option=orjson.OPT_INDENT_2), headers)
    if _wants_protobuf(accept):
        return Response(e.code, protobuf.encode(st), headers, content_type=codec.PROTOBUF)
    return Response(e.code, orjson.dumps(st, option=orjson.OPT_APPEND_NEWLINE), headers)


def page_not_found() -> Response:
    """What upstream's mux answers for a path outside every served group and non-resource
    endpoint (Go's http.NotFound): plain text, not a Status."""
    return Response(404, b"404 page not found\n", [("X-Content-Type-Options", "nosniff")],
                    content_type="text/plain; charset=utf-8")


def _raw_json(obj: Any) -> Response:
    """upstream's responsewriters.WriteRawJSON (/version, the root path list): indented,
    no trailing newline."""
    return Response(200, orjson.dumps(obj, option=orjson.OPT_INDENT_2))


_PUBLIC = ("/healthz", "/livez", "/readyz", "/version")


def _public(ri: RequestInfo) -> bool:
    """What upstream's default RBAC lets anonymous users read (system:public-info-viewer)."""
    p = ri.path.rstrip("/")
    return not ri.is_resource and ri.verb == "get" and (p in _PUBLIC or p.startswith(("/healthz/", "/livez/",
                                                                                      "/readyz/")))


def _quoted(tag: str) -> str:
    return tag if tag.startswith('"') else f'"{tag}"'


class App:
    def __init__(self, handlers: RESTHandlers, registry: Registry, token: str | None,
                 health: HealthChecks | None = None, *, authn: Authenticator | None = None,
                 admission: Admission | None = None, metrics: APIServerMetrics | None = None):
        self.h = handlers
        self.registry = registry
        self.authn = authn or Authenticator(token, unsecured=token is None)
        self.admission = admission or Admission(None, max_readonly=1 << 30, max_mutating=1 << 30)
        self.metrics = metrics
        self.health = health
        self._cache: dict[Any, tuple[int, bytes, str]] = {}
        self.connect = Connect(handlers.objects, registry)   # log, exec, attach, portforward, proxy

    # --- entry point ------------------------------------------------------------------
    async def __call__(self, req: Request) -> Response | None:
        """authn -> admission (APF or max-inflight) -> deadline -> route; then metrics."""
        t0 = perf_counter()
        ri = request_info(req.method, req.path, req.raw_query, req.headers.get("content-type", ""))
        adm = self.admission
        ticket = None
        admitted = False
        queued = 0.0
        resp: Response | None = None
        code = 500
        try:
            try:
                user = self.authn.authenticate(req.headers)
                if user is None or (user is ANONYMOUS_USER and not _public(ri)):
                    raise errors.unauthorized()
                ri.user = user
                timeout = adm.deadline(ri, req.query)
                ticket = await adm.enter(ri, req.query, timeout)
                admitted = True
                queued = perf_counter() - t0
                if ticket is not None and ticket is not True:
                    req.on_init = ticket.release
                    req.stream_headers = [("X-Kubernetes-PF-FlowSchema-UID", ticket.flow_schema_uid),
                                          ("X-Kubernetes-PF-PriorityLevel-UID", ticket.priority_level_uid)]
                if ri.long_running:
                    resp = await self._long_running(req, ri)
                else:
                    adm.watch_deadline(req, timeout - queued)
                    try:
                        resp = await self.route(req)
                    finally:
                        adm.clear_deadline(req)
            except asyncio.CancelledError:
                if not req.timed_out:
                    raise
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                raise errors.APIError(504, "Timeout", "Timeout: request did not complete within requested "
                                      "timeout - context deadline exceeded", {"retryAfterSeconds": 0}) from None
        except APIError as e:
            code = e.code
            if self.metrics is not None and (code == 429 or code == 504):
                self.metrics.record_termination(ri, code)
            if req.stream is not None or req.tunnel is not None:    # failed half-way (a deadline)
                if req.stream is not None:
                    req.stream.abort()
                else:
                    req.tunnel.close()
                resp = None
            else:
                resp = _error_response(e, req.headers.get("accept", ""))
        finally:
            if admitted:
                adm.exit(ri, ticket)
        size = 0
        if req.stream is not None:              # the body went out on the stream (its head had the PF headers)
            code = 200 if resp is None else resp.status
            size = 0 if ri.long_running else req.stream.sent
            resp = None
        elif req.tunnel is not None:            # switched protocols and spliced to a backend
            code = 101
        elif resp is not None:
            code = resp.status
            size = len(resp.body)
            resp.headers.extend(req.stream_headers)     # as upstream, on every classified response
        if self.metrics is not None:
            self.metrics.record(ri, code, perf_counter() - t0, size, queued)
        if request_logging_enabled():
            self._log(req, ri, code, perf_counter() - t0, ticket)
        return resp

    def _log(self, req: Request, ri: RequestInfo, code: int, latency: float, ticket: Any) -> None:
        t = req.conn.transport
        peer = t.get_extra_info("peername") if t is not None else None
        remote = f"{peer[0]}:{peer[1]}" if peer else ""
        extra = {}
        if ticket is not None and ticket is not True:
            extra = {"apf_pl": ticket.priority_level_name, "apf_fs": ticket.flow_schema_name}
        log_request(ri.metric_verb or req.method, req.path + ("?" + req.raw_query if req.raw_query else ""), code,
                    latency, ri.user.name if ri.user is not None else "", req.headers.get("user-agent", ""),
                    remote, **extra)

    async def _long_running(self, req: Request, ri: RequestInfo) -> Response | None:
        m = self.metrics
        if m is None:
            return await self.route(req)
        key = m.longrunning_key(ri)
        m.longrunning.add(key, 1)
        try:
            return await self.route(req)
        finally:
            m.longrunning.add(key, -1)

    async def route(self, req: Request) -> Response | None:
        path = req.path
        if len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/")
        parts = [p for p in path.split("/") if p]
        if not parts:
            return _raw_json({"paths": sorted(self._root_paths())})
        head = parts[0]
        if head == "api":
            if len(parts) == 1:
                return self._discovery_root(req, core=True)
            return await self._resource(req, "", parts[1], parts[2:])
        if head == "apis":
            if len(parts) == 1:
                return self._discovery_root(req, core=False)
            group = parts[1]
            if not any(r.group == group for r in self.registry.resources()):
                return page_not_found()
            if len(parts) == 2:
                return self._group(req, group)
            return await self._resource(req, group, parts[2], parts[3:])
        if req.method not in ("GET", "HEAD"):
            raise errors.method_not_allowed()
        if head == "version" and len(parts) == 1:
            from ..endpoints.discovery import version_info

            return _raw_json(version_info())
        if head == "openapi":
            return self._openapi(req, parts[1:])
        if head in ("healthz", "livez", "readyz"):
            return await self._health(req, head, parts[1:])
        if head == "kubeplane" and parts[1:] == ["snapshot"]:
            return await self._snapshot(req)
        if head == "metrics" and len(parts) == 1 and self.metrics is not None:
            from prometheus_client import CONTENT_TYPE_LATEST

            return Response(200, await self.metrics.exposition(), content_type=CONTENT_TYPE_LATEST)
        return page_not_found()

    async def _snapshot(self, req: Request) -> Response | None:
        """GET /kubeplane/snapshot: an online backup of the embedded store, for
        system:masters only (`kubeplane backup`; the format is kubeplane.store.backup's).
        Streamed; a failure half-way aborts the connection, so a client never takes a
        short body for a whole one (and the file's checksum would tell anyway)."""
        from ...store.backup import snapshot_stream
        from ...store.mvcc import EmbeddedStore

        if req.method != "GET":
            raise errors.method_not_allowed()
        user = self.authn.authenticate(req.headers)
        if user is None or not user.privileged:
            name = user.name if user is not None else "system:anonymous"
            raise errors.APIError(403, "Forbidden", f'forbidden: User "{name}" cannot get path "{req.path}"', {})
        store = self.h.objects.store
        if not isinstance(store, EmbeddedStore):
            raise errors.APIError(400, "BadRequest", "this server keeps its data in etcd (--etcd-servers): "
                                  "back it up with etcdctl snapshot save")
        stream = req.start_stream(200, [("Content-Type", "application/octet-stream")])
        try:
            async for chunk in snapshot_stream(store):
                stream.write(chunk)
                if stream.closed:
                    break
                if stream.backlog > 4 << 20:
                    await stream.drain()
        except Exception:  # noqa: BLE001 - the head is out: only aborting can say it failed
            log.exception("snapshot for a backup failed")
            stream.abort()
            return None
        stream.finish()
        return None

    def _root_paths(self) -> list[str]:
        out = ["/api", "/api/v1", "/apis", "/version", "/openapi/v2", "/openapi/v3", "/healthz", "/livez", "/readyz",
               "/metrics"]
        for g, v in self.registry.group_versions():
            if g:
                out += [f"/apis/{g}", f"/apis/{g}/{v}"]
        return out

    # --- discovery ----------------------------------------------------------------------
    def _cached(self, key: Any, build: Callable[[], Any], *, newline: bool = False) -> tuple[bytes, str]:
        """`build()`'s body (serialized once per registry generation) and its ETag; with
        newline=True a trailing "\n" as upstream's serializer writes (discovery documents;
        the OpenAPI documents have none upstream)."""
        gen = self.registry.generation
        hit = self._cache.get(key)
        if hit is not None and hit[0] == gen:
            return hit[1], hit[2]
        from ..endpoints.discovery import etag

        body = build()
        if not isinstance(body, bytes):
            body = orjson.dumps(body)
        if newline and not body.endswith(b"\n"):
            body += b"\n"
        tag = etag(body)
        self._cache[key] = (gen, body, tag)
        return body, tag

    def _discovery_root(self, req: Request, core: bool) -> Response:
        if req.method not in ("GET", "HEAD"):
            raise errors.method_not_allowed()
        from ..endpoints import discovery

        resources = self.registry.resources()
        form, content_type = discovery.negotiate_discovery(req.headers.get("accept", ""))
        if form is not None:
            body, tag = self._cached(("agg", core, form),
                                     lambda: discovery.aggregated(resources, legacy_core=core, version=form),
                                     newline=True)
            headers = [("ETag", _quoted(tag)), *discovery.AGGREGATED_HEADERS.items()]
            inm = req.headers.get("if-none-match")
            if inm and inm.strip('"') == tag.strip('"'):
                return Response(304, b"", headers, content_type=content_type)
            return Response(200, body, headers, content_type=content_type)
        if core:
            body, _ = self._cached(("api",), discovery.api_versions, newline=True)
        else:
            body, _ = self._cached(("apis",), lambda: discovery.api_group_list(resources), newline=True)
        return Response(200, body, [("Vary", "Accept")])

    def _group(self, req: Request, group: str) -> Response:
        from ..endpoints import discovery

        resources = [r for r in self.registry.resources() if r.group == group]
        if not resources:
            return page_not_found()
        body, _ = self._cached(("group", group), lambda: discovery.api_group(group, resources), newline=True)
        return Response(200, body)

    # --- resources ----------------------------------------------------------------------
    def _unknown(self, group: str) -> Response:
        """A path under /api or /apis/<group>/ that names nothing served. Built-in groups
        answer a JSON Status with `details: {}` (upstream's go-restful container); groups
        served only by CRDs plain text (upstream's CR handler delegates to the not-found
        handler)."""
        if group == "" or any(r.group == group and r.crd is None for r in self.registry.resources()):
            raise errors.unknown_resource()
        return page_not_found()

    async def _resource(self, req: Request, group: str, version: str, rest: list[str]) -> Response | None:
        if not self.registry.has_group_version(group, version):
            return self._unknown(group)
        if not rest:
            if req.method not in ("GET", "HEAD"):
                raise errors.method_not_allowed()
            from ..endpoints import discovery

            body, _ = self._cached(("rl", group, version), lambda: discovery.api_resource_list(
                group, version, [r for r in self.registry.resources() if r.group == group and r.version == version]),
                newline=True)
            return Response(200, body)
        if rest[0] == "watch":
            rest = rest[1:]
            req._query = dict(req.query)
            req._query["watch"] = ["true"]
        namespace = None
        if len(rest) >= 2 and rest[0] == "namespaces":
            # /namespaces/{ns}/{resource}... unless it is the namespace object itself
            if len(rest) >= 3 and not (len(rest) == 3 and rest[2] in ("status", "finalize")):
                namespace = rest[1]
                rest = rest[2:]
        if not rest:
            return self._unknown(group)
        plural = rest[0]
        if group == "" and plural == "bindings" and namespace is not None and len(rest) == 1:
            return await self._bindings(req, version, namespace)
        info = self.registry.get(group, version, plural)
        if info is None:
            return self._unknown(group)
        if namespace is not None and not info.namespaced:
            return self._unknown(group)
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if (group == "" and name and sub in CONNECT_SUBRESOURCES.get(plural, ()) and sub in info.subresources
                and (namespace is not None) == info.namespaced):
            return await self.connect.serve(req, plural, namespace, name, sub, rest[3:])
        if len(rest) > 3:
            return self._unknown(group)
        if name is not None and (name in (".", "..") or "/" in name):
            raise errors.bad_request(f'invalid resource name "{name}"')
        if sub is not None and sub not in info.subresources:
            if info.crd is not None:     # upstream's CR handler: a NotFound of the named object
                raise errors.not_found(info.group, info.plural, name or "")
            return self._unknown(group)
        return await self.h.serve(req, Route(info, namespace, name, sub))

    # --- openapi ------------------------------------------------------------------------
    def _openapi(self, req: Request, parts: list[str]) -> Response:
        from ..registry.schema import openapi

        if parts == ["v2"]:
            body, tag = self._cached(("openapi", "v2"), lambda: openapi.openapi_v2(self.registry.resources()))
            from ..registry.schema import openapi_pb

            if openapi_pb.wants_protobuf(req.headers.get("accept", "")):
                # kubectl <= 1.28 reads only gnostic's protobuf form of this document
                pb, pb_tag = self._cached(("openapi", "v2", "pb"),
                                          lambda: openapi_pb.encode_document(orjson.loads(body)))
                resp = self._etagged(req, pb, pb_tag)
                resp.headers = [(k, openapi_pb.CONTENT_TYPE if k == "Content-Type" else v) for k, v in resp.headers]
                return resp
            return self._etagged(req, body, tag)
        if parts and parts[0] == "v3":
            if len(parts) == 1:
                body, tag = self._cached(("openapi", "v3"), lambda: openapi.openapi_v3_index(self.registry.resources()))
                return self._etagged(req, body, tag)
            gv = parts[1:]
            if gv[0] == "api" and len(gv) == 2:
                group, version = "", gv[1]
            elif gv[0] == "apis" and len(gv) == 3:
                group, version = gv[1], gv[2]
            else:
                return page_not_found()
            if not self.registry.has_group_version(group, version):
                return page_not_found()
            body, tag = self._cached(("openapi", group, version), lambda: openapi.openapi_v3_group_version(
                group, version, self.registry.resources()))
            return self._etagged(req, body, tag, immutable=req.param("hash") is not None)
        return page_not_found()

    async def _bindings(self, req: Request, version: str, namespace: str) -> Response | None:
        """POST /api/v1/namespaces/{ns}/bindings: upstream's collection form of pods/{name}/binding,
        the pod named by the Binding's metadata.name (the kubernetes client's create_namespaced_binding)."""
        if req.method != "POST":
            raise errors.method_not_allowed()
        from ..machinery import codec

        body = codec.decode_body(req.headers.get("content-type", ""), req.body, protobuf_kind="Binding")
        md = body.get("metadata") if isinstance(body, dict) else None
        name = md.get("name") if isinstance(md, dict) else None
        pods = self.registry.get("", version, "pods")
        if pods is None:
            raise errors.unknown_resource()
        if not name or not isinstance(name, str):
            raise errors.invalid("", "Binding", "", [errors.Cause("FieldValueRequired", "metadata.name",
                                                                  "Required value: name or generateName is required")])
        return await self.h.serve(req, Route(pods, namespace, name, "binding"))

    def _etagged(self, req: Request, body: bytes, tag: str, immutable: bool = False) -> Response:
        headers = [("ETag", _quoted(tag)), ("Vary", "Accept")]
        if immutable:
            headers.append(("Cache-Control", "public, immutable"))
        inm = req.headers.get("if-none-match")
        if inm and inm.strip('"') == tag.strip('"'):
            return Response(304, b"", headers)
        return Response(200, body, headers)

    # --- health ---------------------------------------------------------------------------
    async def _health(self, req: Request, which: str, rest: list[str]) -> Response:
        if self.health is None:
            return Response(200, b"ok", content_type="text/plain; charset=utf-8")
        status, body, ctype = await self.health.serve(which, rest, req.query, req.method)
        return Response(status, body, [("X-Content-Type-Options", "nosniff")], content_type=ctype)
