"""The controller base: a named work queue, N workers, informers from one shared factory.

A controller registers its informers and event handlers in `__init__` (on the
manager's SharedInformerFactory, so two controllers watching pods share one watch) and
implements `sync(key)`. The manager starts the factory, waits for the caches, then runs
`run()`. Invariants:
- a key is synced by one worker at a time (the queue's guarantee), so `sync` may read
  the cache and write without locking against itself;
- a sync that raises is retried with the queue's per-key exponential backoff; one that
  returns normally resets the key's backoff (`forget`);
- `sync` reads only informer caches; it writes through `self.client` and records events
  through `self.recorder` (component = the controller's upstream component name).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..client import ApiError, Client, DeletedFinalStateUnknown, EventRecorder, SharedInformerFactory, meta_key
from ..client import QueueShutDown
from .metrics import Metrics
from .queue import MeteredQueue

log = logging.getLogger("kubeplane.controllers")


@dataclass
class Context:
    """What every controller gets from the manager."""
    client: Client
    factory: SharedInformerFactory
    metrics: Metrics | None = None
    event_client: Client | None = None
    root_ca: bytes = b""                          # PEM published as kube-root-ca.crt
    workers: dict[str, int] = field(default_factory=dict)
    served: set[Any] | None = None                # the Resources discovery lists (None: not checked)
    options: dict[str, Any] = field(default_factory=dict)   # per-controller settings (flags)


def unwrap(obj: Any) -> dict[str, Any]:
    """The object of a delete notification (DeletedFinalStateUnknown unwrapped)."""
    return obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj


def now_rfc3339() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> float | None:
    """Seconds since the epoch of an RFC 3339 timestamp (None if absent or malformed)."""
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class Controller:
    name: ClassVar[str] = ""             # the --controllers name ("deployment", "replicaset", ...)
    component: ClassVar[str] = ""        # the events' source component ("deployment-controller")
    default_workers: ClassVar[int] = 5
    requires: ClassVar[tuple[Any, ...]] = ()   # Resources that must be served (else the controller is skipped)
    optional: ClassVar[tuple[Any, ...]] = ()   # Resources used where served (Context.served tells)

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.client = ctx.client
        self.factory = ctx.factory
        self.workers = ctx.workers.get(self.name, self.default_workers)
        self.queue = MeteredQueue(self.name, ctx.metrics)
        self.recorder = EventRecorder(ctx.event_client or ctx.client, component=self.component or self.name)
        self.syncs = 0

    # --- to implement ----------------------------------------------------------------------
    async def sync(self, key: str) -> None:
        raise NotImplementedError

    # --- helpers ---------------------------------------------------------------------------
    def enqueue(self, obj: Any) -> None:
        self.queue.add(obj if isinstance(obj, str) else meta_key(obj))

    def enqueue_after(self, obj: Any, seconds: float) -> None:
        self.queue.add_after(obj if isinstance(obj, str) else meta_key(obj), seconds)

    # --- the loop --------------------------------------------------------------------------
    async def run(self) -> None:
        """Run the workers until cancelled; the queue is shut down on the way out."""
        tasks = [asyncio.create_task(self._worker(), name=f"{self.name} worker {i}") for i in range(self.workers)]
        try:
            await asyncio.gather(*tasks)
        finally:
            self.queue.shut_down()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.recorder.close()

    async def _worker(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except QueueShutDown:
                return
            try:
                await self.sync(key)
                self.queue.forget(key)
            except asyncio.CancelledError:
                raise
            except ApiError as e:
                level = logging.INFO if e.status in (404, 409) else logging.WARNING
                log.log(level, "%s: syncing %s: %s (retry %d)", self.name, key, e, self.queue.num_requeues(key))
                self.queue.add_rate_limited(key)
            except Exception:            # noqa: BLE001 - one bad object must not stop the controller
                log.exception("%s: syncing %s failed (retry %d)", self.name, key, self.queue.num_requeues(key))
                self.queue.add_rate_limited(key)
            finally:
                self.syncs += 1
                self.queue.done(key)
