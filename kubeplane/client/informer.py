"""Informers: a reflector feeding an indexed cache and event handlers, and the shared
factory that gives each process one of them per resource and selector.

Ordering invariant: the cache is updated before handlers run, and handlers run on the
reflector's task in event order, so a handler that reads `indexer` sees a state at
least as new as the event it handles. Handlers are plain callables; one that raises is
logged and the others still run.

After a full sync (first sync, or a relist after 410) the informer compares the new
state with its cache: new keys fire on_add, changed ones (another resourceVersion)
on_update, and keys that vanished fire on_delete with a `DeletedFinalStateUnknown`
holding the last object we saw (its deletion happened while we were not watching).
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, NamedTuple

from .indexer import IndexFunc, Indexer
from .reflector import Reflector
from .resources import Resource, meta_key
from .transform import Transform, strip_managed_fields

log = logging.getLogger(__name__)


class DeletedFinalStateUnknown(NamedTuple):
    """What on_delete gets for an object that disappeared between two full syncs."""
    key: str
    obj: dict[str, Any]


class _Handler(NamedTuple):
    on_add: Callable[[dict[str, Any]], Any] | None
    on_update: Callable[[dict[str, Any], dict[str, Any]], Any] | None
    on_delete: Callable[[Any], Any] | None


def _rv(obj: dict[str, Any]) -> str | None:
    return (obj.get("metadata") or {}).get("resourceVersion")


class Informer:
    def __init__(self, client: Any, resource: Resource, *, namespace: str | None = None,
                 label_selector: str | None = None, field_selector: str | None = None,
                 transform: Transform | None = strip_managed_fields, resync_period: float = 0.0,
                 indexers: dict[str, IndexFunc] | None = None, **reflector_options: Any):
        self.resource = resource
        self.namespace = namespace
        self.transform = transform
        self.resync_period = resync_period
        self.indexer = Indexer(indexers)
        self.reflector = Reflector(client, resource, self, namespace=namespace, label_selector=label_selector,
                                   field_selector=field_selector, transform=transform, **reflector_options)
        self._handlers: list[_Handler] = []
        self._synced = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # --- public ----------------------------------------------------------------------------
    def add_event_handler(self, on_add: Callable[[dict[str, Any]], Any] | None = None,
                          on_update: Callable[[dict[str, Any], dict[str, Any]], Any] | None = None,
                          on_delete: Callable[[Any], Any] | None = None) -> object:
        """Register handlers; returns a handle for remove_event_handler. Objects already
        cached are delivered to on_add at once (synthetic adds)."""
        h = _Handler(on_add, on_update, on_delete)
        self._handlers.append(h)
        if on_add is not None:
            for obj in self.indexer.list():
                self._call(on_add, obj)
        return h

    def remove_event_handler(self, handle: object) -> None:
        self._handlers.remove(handle)  # type: ignore[arg-type]

    def add_indexers(self, indexers: dict[str, IndexFunc]) -> None:
        self.indexer.add_indexers(indexers)

    def has_synced(self) -> bool:
        return self._synced.is_set()

    async def wait_for_sync(self, timeout: float | None = None) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await self._synced.wait()
            return True
        except TimeoutError:
            return False

    @property
    def last_sync_resource_version(self) -> str | None:
        return self.reflector.last_rv

    @property
    def running(self) -> bool:
        return any(not t.done() for t in self._tasks)

    def start(self) -> None:
        """Start the reflector (and the resync timer) on the running loop; idempotent."""
        if self.running:
            return
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._run_reflector(), name=f"reflector {self.resource}")]
        if self.resync_period > 0:
            self._tasks.append(loop.create_task(self._resync_loop(), name=f"resync {self.resource}"))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except asyncio.CancelledError:
                pass
            except Exception:            # noqa: BLE001 - already logged by _run_reflector
                pass
        self._tasks = []

    # --- the reflector's sink ----------------------------------------------------------------
    def replace(self, items: list[dict[str, Any]], resource_version: str) -> None:
        """A full sync's objects (already transformed by the reflector)."""
        new = items
        old = {k: self.indexer.get(k) for k in self.indexer.keys()} if self._handlers else {}
        self.indexer.replace(new)
        if self._handlers:
            for obj in new:
                prev = old.pop(meta_key(obj), None)
                if prev is None:
                    self._dispatch_add(obj)
                elif _rv(prev) != _rv(obj):
                    self._dispatch_update(prev, obj)
            for key, prev in old.items():
                self._dispatch_delete(DeletedFinalStateUnknown(key, prev))  # type: ignore[arg-type]
        self._synced.set()

    def event(self, etype: str, obj: dict[str, Any]) -> None:
        """One watch event's object (already transformed by the reflector)."""
        key = meta_key(obj)
        if etype == "DELETED":
            old = self.indexer.delete(key)
            self._dispatch_delete(obj if obj else old)
            return
        if etype not in ("ADDED", "MODIFIED"):
            return
        old = self.indexer.update(obj, key)
        if old is None:
            self._dispatch_add(obj)
        else:
            self._dispatch_update(old, obj)

    # --- internals -------------------------------------------------------------------------
    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:                # noqa: BLE001 - one bad handler must not stop the rest
            log.exception("%s informer: event handler %r failed", self.resource, fn)

    def _dispatch_add(self, obj: dict[str, Any]) -> None:
        for h in tuple(self._handlers):   # a handler may add or remove handlers
            if h.on_add is not None:
                self._call(h.on_add, obj)

    def _dispatch_update(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        for h in tuple(self._handlers):   # a handler may add or remove handlers
            if h.on_update is not None:
                self._call(h.on_update, old, new)

    def _dispatch_delete(self, obj: Any) -> None:
        for h in tuple(self._handlers):   # a handler may add or remove handlers
            if h.on_delete is not None:
                self._call(h.on_delete, obj)

    async def _run_reflector(self) -> None:
        try:
            await self.reflector.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s informer: reflector stopped", self.resource)
            raise

    async def _resync_loop(self) -> None:
        """Every resync_period, on_update(obj, obj) for every cached object (client-go's
        resync: lets a controller re-check what it may have missed)."""
        while True:
            await asyncio.sleep(self.resync_period)
            if self.has_synced():
                for obj in self.indexer.list():
                    self._dispatch_update(obj, obj)


_Key = tuple[Resource, str | None, str | None, str | None]


class SharedInformerFactory:
    """One Informer per (resource, namespace, label selector, field selector) per
    factory; share the factory within a process so every component reuses one watch."""

    def __init__(self, client: Any, resync_period: float = 0.0, transform: Transform | None = strip_managed_fields,
                 **reflector_options: Any):
        self.client = client
        self.resync_period = resync_period
        self.transform = transform
        self.reflector_options = reflector_options
        self._informers: dict[_Key, Informer] = {}
        self._started = False

    def informer(self, resource: Resource, namespace: str | None = None, label_selector: str | None = None,
                 field_selector: str | None = None) -> Informer:
        key = (resource, namespace, label_selector or None, field_selector or None)
        inf = self._informers.get(key)
        if inf is None:
            inf = Informer(self.client, resource, namespace=namespace, label_selector=label_selector,
                           field_selector=field_selector, transform=self.transform,
                           resync_period=self.resync_period, **self.reflector_options)
            self._informers[key] = inf
            if self._started:
                inf.start()
        return inf

    @property
    def informers(self) -> list[Informer]:
        return list(self._informers.values())

    async def start(self) -> None:
        self._started = True
        for inf in self._informers.values():
            inf.start()

    async def wait_for_cache_sync(self, timeout: float | None = None) -> bool:
        """True once every informer made so far has synced; False on timeout."""
        infs = list(self._informers.values())
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(*(i._synced.wait() for i in infs))
            return True
        except TimeoutError:
            return False

    async def stop(self) -> None:
        self._started = False
        await asyncio.gather(*(i.stop() for i in self._informers.values()))
