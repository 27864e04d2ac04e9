"""The reflector: keeps a local copy of one collection in step with the server.

Protocol (client-go's tools/cache reflector, with its WatchList support):

1. Full sync. Preferred: WatchList, one watch with `sendInitialEvents=true`,
   `resourceVersionMatch=NotOlderThan`, `allowWatchBookmarks=true`: the server streams
   the current state as ADDED events, then a BOOKMARK annotated
   `k8s.io/initial-events-end: "true"` whose resourceVersion is the snapshot's; the
   stream then goes on with changes. No LIST, no big response held in memory twice.
   Fallback: paginated consistent LIST (`limit`=page_size, resourceVersion unset), then
   WATCH from the list's resourceVersion.
2. WatchList detection (a server without the feature answers 400/422, or ignores the
   parameter and sends a plain watch): the reflector falls back to LIST+WATCH for its
   whole life when the request is refused, when anything but ADDED comes before the
   end bookmark, when the stream ends without it, or when no event arrives for
   `watch_list_idle_timeout` seconds before it.
3. Watch. Bookmarks are asked for and move the resourceVersion on; when a watch ends
   (server timeout, moved by the balancer, connection lost) the next watch resumes from
   the last resourceVersion seen: nothing is listed again.
4. Relist happens on 410 Gone only (ERROR event with code 410, or 410 to the request):
   history before our resourceVersion is compacted. Before relisting the reflector
   waits a jittered exponential delay (full jitter), so a thousand clients that get 410
   at once spread their relists instead of storming the server. Every other failure
   (5xx, 429, connection lost) backs off the same way and resumes the watch.

During a full sync the cyclic garbage collector is paused (gcpause.py: decoding a
cache's worth of objects with it on costs about 5x the CPU); `pause_gc_during_sync=False`
leaves it alone.

The sink (an Informer) receives `replace(items, rv)` after a full sync and
`event(type, obj)` for every change, in order, on the reflector's task. The transform
(if any) is applied to each object as soon as it is decoded — before the rest of a
page or of the initial events arrive — so what it drops is freed at once and never
adds up to a peak (Python rarely gives freed small-object memory back to the OS).
"""
from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any, Protocol

from . import gcpause
from .errors import ApiConnectionError, ApiError
from .ratelimit import Backoff
from .resources import Resource

log = logging.getLogger(__name__)
INITIAL_EVENTS_END = "k8s.io/initial-events-end"


class Sink(Protocol):
    def replace(self, items: list[dict[str, Any]], resource_version: str) -> None: ...

    def event(self, etype: str, obj: dict[str, Any]) -> None: ...


class Gone(Exception):
    """410: our resourceVersion is no longer in the server's history."""


class _NoWatchList(Exception):
    """The server does not serve WatchList."""


class Reflector:
    def __init__(self, client: Any, resource: Resource, sink: Sink, *, namespace: str | None = None,
                 label_selector: str | None = None, field_selector: str | None = None,
                 use_watch_list: bool | None = None, page_size: int = 500,
                 min_watch_timeout: float = 300.0, watch_list_idle_timeout: float = 10.0,
                 backoff_base: float = 0.8, backoff_cap: float = 30.0, rng: random.Random | None = None,
                 transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 pause_gc_during_sync: bool = True):
        self.client = client
        self.resource = resource
        self.sink = sink
        self.transform = transform          # applied to each object as it arrives (see below)
        self.pause_gc = pause_gc_during_sync  # see gcpause.py
        self.path = resource.path(namespace)
        self.selectors = {"labelSelector": label_selector or None, "fieldSelector": field_selector or None}
        self.watch_list: bool | None = use_watch_list     # None: not known yet, try it
        self.page_size = page_size
        self.min_watch_timeout = min_watch_timeout
        self.watch_list_idle_timeout = watch_list_idle_timeout
        self._rng = rng or random.Random()
        self.backoff = Backoff(backoff_base, backoff_cap, rng=self._rng)
        self.last_rv: str | None = None          # None: a full sync is needed
        self.stats = {"lists": 0, "list_pages": 0, "watch_lists": 0, "watches": 0, "relists": 0,
                      "bookmarks": 0, "events": 0, "errors": 0}
        self.last_error: BaseException | None = None

    # --- the loop --------------------------------------------------------------------------
    async def run(self) -> None:
        """Sync and watch until cancelled."""
        while True:
            try:
                if self.last_rv is None:
                    if self.watch_list is not False:
                        try:
                            await self._watch(initial=True)
                        except _NoWatchList as e:
                            if self.watch_list is None:
                                log.info("%s: WatchList not served (%s); using LIST+WATCH", self.path, e)
                                self.watch_list = False
                                continue
                            raise ApiConnectionError(f"WatchList broke off: {e}") from e
                    else:
                        await self._list()
                        await self._watch(initial=False)
                else:
                    loop = asyncio.get_running_loop()
                    started = loop.time()
                    await self._watch(initial=False)
                    if loop.time() - started < 1.0:
                        # a watch the server ended at once: never spin (backoff as on errors)
                        await self.backoff.sleep()
            except asyncio.CancelledError:
                raise
            except Gone as e:
                self.last_rv = None
                self.stats["relists"] += 1
                self.last_error = e
                d = await self.backoff.sleep()
                log.info("%s: 410 Gone (%s); relisting after %.2fs", self.path, e, d)
            except (ApiError, ApiConnectionError, ValueError) as e:
                self.stats["errors"] += 1
                self.last_error = e
                wait = e.retry_after if isinstance(e, ApiError) and e.status == 429 else None
                d = wait if wait is not None else self.backoff.next_delay()
                log.warning("%s: %s; retrying in %.2fs", self.path, e, d)
                await asyncio.sleep(d)
            except Exception as e:       # noqa: BLE001 - a bug or a malformed answer: never stop syncing
                self.stats["errors"] += 1
                self.last_error = e
                d = self.backoff.next_delay()
                log.exception("%s: unexpected error; retrying in %.2fs", self.path, d)
                await asyncio.sleep(d)

    # --- LIST ------------------------------------------------------------------------------
    async def _list(self) -> None:
        """A paginated consistent LIST (resourceVersion unset). client-go's first LIST
        asks resourceVersion=0, which servers answer from their cache in ONE response,
        ignoring the limit; pages keep both sides' memory bounded, and kubeplane (like
        upstream 1.31+) serves consistent pages from its cache too. An expired continue
        token restarts the pages."""
        self.stats["lists"] += 1
        with gcpause.paused(self.pause_gc):
            await self._list_pages()

    async def _list_pages(self) -> None:
        params: dict[str, Any] = {**self.selectors, "limit": self.page_size}
        items: list[dict[str, Any]] = []
        while True:
            try:
                page = await self.client.list(self.path, params)
            except ApiError as e:
                if e.status == 410 and "continue" in params:
                    params = {**self.selectors, "limit": self.page_size}
                    items = []
                    continue
                raise
            self.stats["list_pages"] += 1
            tf = self.transform
            for it in page.pop("items", None) or []:
                it.setdefault("kind", self.resource.kind)
                it.setdefault("apiVersion", self.resource.api_version)
                items.append(tf(it) if tf is not None else it)
            md = page.get("metadata") or {}
            if md.get("continue"):
                params = {**self.selectors, "limit": self.page_size, "continue": md["continue"]}
                continue
            rv = md.get("resourceVersion") or ""
            self.sink.replace(items, rv)
            self.last_rv = rv
            self.backoff.reset()
            return

    # --- WATCH -----------------------------------------------------------------------------
    async def _watch(self, initial: bool) -> None:
        timeout = int(self.min_watch_timeout * (1 + self._rng.random()))
        params: dict[str, Any] = {**self.selectors, "allowWatchBookmarks": "true", "timeoutSeconds": timeout}
        if initial:
            params.update(sendInitialEvents="true", resourceVersionMatch="NotOlderThan", resourceVersion="")
            self.stats["watch_lists"] += 1
        else:
            params["resourceVersion"] = self.last_rv
            self.stats["watches"] += 1
        items: list[dict[str, Any]] | None = [] if initial else None
        loop = asyncio.get_running_loop()
        stream = self.client.watch(self.path, params)
        gc_pause = gcpause.paused(self.pause_gc and initial)
        gc_pause.__enter__()            # left at the initial-events-end bookmark (or on any exit)
        try:
            async with asyncio.timeout(None) as idle:
                if initial:
                    idle.reschedule(loop.time() + self.watch_list_idle_timeout)
                try:
                    async for etype, obj in stream:
                        if items is not None:
                            idle.reschedule(loop.time() + self.watch_list_idle_timeout)
                        if etype == "ERROR":
                            err = ApiError.from_status(int(obj.get("code") or 500), obj)
                            if err.status == 410:
                                raise Gone(err.message)
                            raise err
                        md = obj.get("metadata") or {}
                        if etype == "BOOKMARK":
                            self.stats["bookmarks"] += 1
                            rv = md.get("resourceVersion") or ""
                            if items is not None:
                                if (md.get("annotations") or {}).get(INITIAL_EVENTS_END) != "true":
                                    raise _NoWatchList("a bookmark came before the initial-events-end one")
                                idle.reschedule(None)
                                self.sink.replace(items, rv)
                                gc_pause.__exit__(None, None, None)
                                items = None
                                self.watch_list = True
                                self.backoff.reset()
                            if rv:
                                self.last_rv = rv
                            continue
                        if items is not None:
                            if etype != "ADDED":
                                raise _NoWatchList(f"{etype} event before the initial-events-end bookmark")
                            items.append(self.transform(obj) if self.transform is not None else obj)
                            continue
                        self.stats["events"] += 1
                        self.sink.event(etype, self.transform(obj) if self.transform is not None else obj)
                        rv = md.get("resourceVersion")
                        if rv:
                            self.last_rv = rv
                        self.backoff.reset()
                except ApiError as e:
                    if e.status == 410:
                        raise Gone(e.message) from e
                    if items is not None and self.watch_list is None and e.status in (400, 403, 422):
                        raise _NoWatchList(f"{e.status} {e.reason}: {e.message}") from e
                    raise
        except TimeoutError:
            raise _NoWatchList(f"no event for {self.watch_list_idle_timeout}s before the "
                               "initial-events-end bookmark") from None
        finally:
            if items is not None:
                gc_pause.__exit__(None, None, None)
            await stream.aclose()
        if items is not None:
            raise _NoWatchList("the stream ended before the initial-events-end bookmark")
