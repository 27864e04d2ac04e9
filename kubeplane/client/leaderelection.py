"""Leader election on a coordination.k8s.io/v1 Lease (client-go's leaderelection).

Timing (client-go's semantics; defaults 15 s / 10 s / 2 s):
- lease_duration: how long followers wait, from the moment they last SAW the lease
  record change (their own clock, never the leader's timestamps), before taking over;
- renew_deadline: how long the leader keeps retrying a renewal (every retry_period)
  before it gives up leadership;
- retry_period: the pause between tries (followers add up to 1.2x jitter).
It must hold that lease_duration > renew_deadline > retry_period * 1.2, so a leader
always steps down before a follower may take over.

Writes are optimistic: the lease is replaced with a PUT carrying the resourceVersion
read, so of two candidates racing only one wins (the other gets 409 Conflict).

`run()` campaigns until cancelled: on winning it starts `on_started_leading()` as a
task; on losing the lease it cancels that task, calls `on_stopped_leading()` and
campaigns again. When cancelled while leading it releases the lease (holder "",
duration 1 s) so a follower takes over at its next try instead of after lease_duration.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .errors import ApiConnectionError, ApiError
from .resources import LEASES

log = logging.getLogger(__name__)
JITTER = 1.2


def micro_time(t: float | None = None) -> str:
    """A metav1.MicroTime: RFC 3339 with microseconds, UTC."""
    d = dt.datetime.fromtimestamp(time.time() if t is None else t, dt.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(self, client: Any, namespace: str = "kube-system", name: str = "", identity: str = "", *,
                 lease_duration: float = 15.0, renew_deadline: float = 10.0, retry_period: float = 2.0,
                 on_started_leading: Callable[[], Awaitable[Any]] | None = None,
                 on_stopped_leading: Callable[[], Any] | None = None,
                 on_new_leader: Callable[[str], Any] | None = None, release_on_cancel: bool = True):
        if not name or not identity:
            raise ValueError("a lease name and an identity are required")
        if lease_duration <= renew_deadline:
            raise ValueError("lease_duration must be greater than renew_deadline")
        if renew_deadline <= JITTER * retry_period:
            raise ValueError("renew_deadline must be greater than retry_period*1.2")
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.on_started_leading = on_started_leading
        self.on_stopped_leading = on_stopped_leading
        self.on_new_leader = on_new_leader
        self.release_on_cancel = release_on_cancel
        self.is_leader = False
        self.leader: str = ""                    # the holder we last observed
        self.transitions_seen = 0
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._rv: str | None = None
        self._record: dict[str, Any] = {}
        self._path = LEASES.path(namespace, name)

    # --- one try ---------------------------------------------------------------------------
    def _observe(self, spec: dict[str, Any], rv: str | None) -> None:
        rec = (spec.get("holderIdentity") or "", spec.get("renewTime"), spec.get("acquireTime"),
               spec.get("leaseTransitions"), spec.get("leaseDurationSeconds"))
        if rec != self._observed:
            self._observed = rec
            self._observed_at = time.monotonic()
        self._record = spec
        self._rv = rv
        holder = spec.get("holderIdentity") or ""
        if holder != self.leader:
            self.leader = holder
            if self.on_new_leader is not None and holder:
                try:
                    self.on_new_leader(holder)
                except Exception:        # noqa: BLE001
                    log.exception("on_new_leader failed")

    async def try_acquire_or_renew(self) -> bool:
        now = micro_time()
        try:
            lease = await self.client.get(self._path)
        except ApiError as e:
            if e.status != 404:
                raise
            spec = {"holderIdentity": self.identity, "leaseDurationSeconds": int(round(self.lease_duration)),
                    "acquireTime": now, "renewTime": now, "leaseTransitions": 0}
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace}, "spec": spec}
            try:
                made = await self.client.create(LEASES.path(self.namespace), body)
            except ApiError as e2:
                if e2.status == 409:
                    return False
                raise
            self._observe(made.get("spec") or spec, (made.get("metadata") or {}).get("resourceVersion"))
            return True
        spec = lease.get("spec") or {}
        md = lease.get("metadata") or {}
        self._observe(spec, md.get("resourceVersion"))
        holder = spec.get("holderIdentity") or ""
        if holder and holder != self.identity:
            duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
            if self._observed_at + duration > time.monotonic():
                return False                      # held by someone else and not expired
        new = dict(spec)
        new.update(holderIdentity=self.identity, leaseDurationSeconds=int(round(self.lease_duration)), renewTime=now)
        if holder != self.identity:
            new["acquireTime"] = now
            new["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1   # as client-go, also after a release
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {
            "name": self.name, "namespace": self.namespace, "resourceVersion": md.get("resourceVersion")},
            "spec": new}
        try:
            out = await self.client.update(self._path, body)
        except ApiError as e:
            if e.status in (404, 409):
                return False
            raise
        self._observe(out.get("spec") or new, (out.get("metadata") or {}).get("resourceVersion"))
        return True

    async def _try(self, budget: float | None = None) -> bool:
        try:
            async with asyncio.timeout(budget):
                return await self.try_acquire_or_renew()
        except (ApiError, ApiConnectionError, TimeoutError) as e:
            log.warning("lease %s/%s: %s", self.namespace, self.name, e)
            return False

    # --- the campaign ----------------------------------------------------------------------
    async def run(self) -> None:
        while True:
            await self._acquire()
            self.is_leader = True
            log.info("%s became leader of %s/%s", self.identity, self.namespace, self.name)
            work = asyncio.get_running_loop().create_task(self.on_started_leading()) \
                if self.on_started_leading is not None else None
            try:
                await self._renew_until_lost()
            finally:
                self.is_leader = False
                if work is not None:
                    work.cancel()
                cancelled = asyncio.current_task().cancelling() if asyncio.current_task() else 0  # type: ignore[union-attr]
                if cancelled and self.release_on_cancel:
                    await asyncio.shield(self._release())
                if self.on_stopped_leading is not None:
                    try:
                        self.on_stopped_leading()
                    except Exception:    # noqa: BLE001
                        log.exception("on_stopped_leading failed")
            log.info("%s lost the lease %s/%s", self.identity, self.namespace, self.name)

    async def _acquire(self) -> None:
        while True:
            if await self._try(self.retry_period * 5):
                return
            await asyncio.sleep(self.retry_period * (1 + random.random() * JITTER))

    async def _renew_until_lost(self) -> None:
        while True:
            await asyncio.sleep(self.retry_period)
            start = time.monotonic()
            while True:
                left = self.renew_deadline - (time.monotonic() - start)
                if left > 0 and await self._try(left):
                    break
                if time.monotonic() - start + self.retry_period >= self.renew_deadline:
                    return                        # could not renew in time: step down
                await asyncio.sleep(self.retry_period)

    async def _release(self) -> None:
        """Give the lease up (only if we still hold it)."""
        try:
            async with asyncio.timeout(self.retry_period * 2):
                lease = await self.client.get(self._path)
                spec = lease.get("spec") or {}
                if spec.get("holderIdentity") != self.identity:
                    return
                now = micro_time()
                spec.update(holderIdentity="", leaseDurationSeconds=1, renewTime=now, acquireTime=now)
                lease["spec"] = spec
                await self.client.update(self._path, lease)
        except (ApiError, ApiConnectionError, TimeoutError, RuntimeError) as e:
            log.warning("releasing lease %s/%s: %s", self.namespace, self.name, e)
