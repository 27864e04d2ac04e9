"""The REST verbs on one resource: get, list, watch, create, update, patch, delete,
deletecollection, and the subresources (status, scale, binding, eviction, finalize,
ephemeralcontainers: GET answers the Pod, PUT/PATCH change only spec.ephemeralContainers).

Every write runs the same pipeline (upstream's genericregistry.Store):

    decode -> check kind/apiVersion/name/namespace -> schema (types, unknown fields)
           -> strategy (defaults, status/generation rules) -> validation (422)
           -> managedFields -> (dryRun? stop) -> one guarded store txn

so that an object is either written whole and valid or not at all. Updates read the
current object and write with a mod-revision compare; without a client precondition
they retry on conflict (GuaranteedUpdate).

`RESTHandlers` is assembled from one mixin per concern, in `rest/`:
reads (get, list, watch), checks (the pipeline's checks), writes (create, update,
patch, apply), deletes (delete, deletecollection, dependents), subresources (scale,
binding, eviction).
"""
from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

from ..machinery import errors
from ..cache.manager import CacheManager
from ..transport.http import Request, Response
from ..registry.registry import Registry
from .admission import PriorityAdmission
from .checks import Checks
from .common import Route, _bool_param, now_rfc3339
from .deletes import Deletes
from .reads import Reads
from .subresources import Subresources
from .writes import Writes
from ..registry.storage import ObjectStore
from ..transport.satoken import TokenSigner

__all__ = ["RESTHandlers", "Route", "now_rfc3339"]


class RESTHandlers(Reads, Checks, Writes, Deletes, Subresources):
    """Serves every resource in `registry` from `objects`."""

    def __init__(self, objects: ObjectStore, registry: Registry):
        self.objects = objects
        self.registry = registry
        self.priority = PriorityAdmission(objects, registry)    # the Priority admission plugin
        self.token_signer: TokenSigner | None = None             # serviceaccounts/token (server.py sets it)
        self.namespace_deleter: Callable[[str], Awaitable[None]] | None = None
        self.crd_deleter: Callable[[dict[str, Any]], Awaitable[None]] | None = None
        self.background: set[asyncio.Task] = set()
        self.caches: CacheManager | None = None     # the watch caches (server.py sets them)
        self.metrics = None                          # metrics.APIServerMetrics (server.py sets it)
        self.min_request_timeout = 1800.0            # a watch's default timeout: random in [min, 2*min]


    def spawn(self, coro: Awaitable[None]) -> None:
        t = asyncio.ensure_future(coro)
        self.background.add(t)
        t.add_done_callback(self.background.discard)


    # --- dispatch ---------------------------------------------------------------------
    async def serve(self, req: Request, route: Route) -> Response | None:
        m = req.method
        sub = route.subresource
        info = route.info
        if sub is not None and sub not in info.subresources:
            raise errors.not_found(info.group, info.plural, route.name or "")
        if route.name is None:
            if m in ("GET", "HEAD"):
                if _bool_param(req, "watch"):
                    return await self.watch(req, route)
                return await self.list(req, route)
            if m == "POST":
                return await self.create(req, route)
            if m == "DELETE":
                return await self.delete_collection(req, route)
            raise errors.method_not_allowed()
        if m in ("GET", "HEAD"):
            if sub == "scale":
                return await self.get_scale(req, route)
            if sub in ("binding", "eviction", "token"):
                raise errors.method_not_allowed()
            return await self.get(req, route)
        if m == "POST":
            if sub == "binding":
                return await self.bind(req, route)
            if sub == "eviction":
                return await self.evict(req, route)
            if sub == "token":
                return await self.create_token(req, route)
            raise errors.method_not_allowed()
        if sub == "token":      # create only
            raise errors.method_not_allowed()
        if m == "PUT":
            if sub == "scale":
                return await self.update_scale(req, route)
            return await self.update(req, route)
        if m == "PATCH":
            if sub == "scale":
                return await self.patch_scale(req, route)
            return await self.patch(req, route)
        if m == "DELETE":
            if sub is not None:
                raise errors.method_not_allowed()
            return await self.delete(req, route)
        raise errors.method_not_allowed()

