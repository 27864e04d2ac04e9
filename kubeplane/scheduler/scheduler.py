"""The scheduler: informer events in, the scheduling loop, asynchronous binding.

The loop pops a pod, runs one cycle (algorithm.Profile), and on success *assumes* the
pod on its node in the cache and hands the binding to a task; the next pod is decided
at once, against a cache that already counts the assumed one. At most
`parallel_binds` bindings are in flight; when all slots are busy the loop waits (the API
server is then the bottleneck and deciding further ahead would only grow memory).

Talking to the API server goes through an `Api` (app.py implements it with
kubeplane.client): bind, write a pod's PodScheduled=False condition and nominated node,
delete preemption victims, and record events. Status writes are coalesced per pod (the
newest message wins) and written by a few workers, so a burst of unschedulable pods
costs at most one write per pod in flight.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import Any, Protocol

from . import framework as fw
from .algorithm import FitError, Profile
from .cache import Cache
from .metrics import PROFILE, Metrics
from .podinfo import PodInfo, pod_info, pod_key
from .preemption import preempt
from .queue import QueuedPod, SchedulingQueue

log = logging.getLogger("kubeplane.scheduler")

DEFAULT_SCHEDULER = "default-scheduler"


class Api(Protocol):
    async def bind(self, pod: PodInfo, node: str) -> None: ...
    async def update_status(self, pod: PodInfo, condition: dict[str, Any] | None, nominated: str | None) -> None: ...
    async def delete_victim(self, victim: PodInfo, preemptor: PodInfo, node: str) -> None: ...
    def event(self, pod: PodInfo, type_: str, reason: str, message: str) -> None: ...


def _now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _assigned(pod: dict[str, Any]) -> bool:
    return bool((pod.get("spec") or {}).get("nodeName"))


def _terminal(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


class Scheduler:
    def __init__(self, api: Api, *, percentage: int = 0, parallel_binds: int = 64, status_workers: int = 4,
                 metrics: Metrics | None = None, name: str = DEFAULT_SCHEDULER, seed: int | None = None,
                 initial_backoff: float = 1.0, max_backoff: float = 10.0, send_scheduled_events: bool = True) -> None:
        import random

        self.api = api
        self.name = name
        self.metrics = metrics or Metrics()
        self.cache = Cache()
        self.profile = Profile(self.cache, percentage, rng=random.Random(seed), observe=self.metrics.observe_extension)
        interest: dict[str, set[str]] = {}
        for p in self.profile.plugins.values():
            for ev in p.events:
                interest.setdefault(ev, set()).add(p.name)
        self.queue = SchedulingQueue(lambda ev: interest.get(ev, set()), initial_backoff, max_backoff,
                                     on_incoming=lambda q, ev: self.metrics.child(self.metrics.incoming, q, ev).inc())
        self.gated: set[str] = set()
        self.metrics.bind_queue(self.queue.counts, self.cache.sizes, lambda: len(self.gated))
        self.parallel_binds = parallel_binds
        self._binding = 0                   # bindings in flight
        self._slot_free = asyncio.Event()
        self._status: dict[str, tuple[PodInfo, dict[str, Any] | None, str | None]] = {}
        self._status_ready = asyncio.Event()
        self.status_workers = status_workers
        self.send_scheduled_events = send_scheduled_events
        self._tasks: set[asyncio.Task] = set()
        self.scheduled = 0

    # informer handlers ---------------------------------------------------------------------
    def _responsible(self, pod: dict[str, Any]) -> bool:
        """Ours (spec.schedulerName) and not gated: a pod with spec.schedulingGates waits
        outside the queue until its gates are removed (upstream's gated pods)."""
        spec = pod.get("spec") or {}
        if (spec.get("schedulerName") or DEFAULT_SCHEDULER) != self.name:
            return False
        if spec.get("schedulingGates"):
            self.gated.add(pod_key(pod))
            return False
        self.gated.discard(pod_key(pod))
        return True

    def on_pod_add(self, pod: dict[str, Any]) -> None:
        if _terminal(pod):
            return
        if _assigned(pod):
            info = pod_info(pod)
            self.cache.set_pod(info)
            self.queue.delete(info.key)
            self.profile.unnominate(info.key)
            self.queue.move(fw.POD_ADD)
        elif self._responsible(pod) and not (pod.get("metadata") or {}).get("deletionTimestamp"):
            info = pod_info(pod)
            if info.nominated_node:
                self.profile.nominate(info, info.nominated_node)
            self.queue.add(info)

    def on_pod_update(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        key = pod_key(new)
        if _terminal(new):
            self.on_pod_delete(new)
            return
        if _assigned(new):
            assumed = self.cache.is_assumed(key)
            was = key in self.cache.pods and not assumed
            entry = self.cache.pods.get(key)
            if assumed and entry is not None and entry[1] == new["spec"]["nodeName"]:
                # our own binding seen: the assumed PodInfo stands (a bound pod's requests
                # do not change), with the API's object
                info = replace(entry[0], pod=new, labels=(new.get("metadata") or {}).get("labels") or {})
            else:
                info = pod_info(new)
            self.cache.set_pod(info)
            self.queue.delete(key)
            self.profile.unnominate(key)
            self.queue.move(fw.POD_UPDATE if was else fw.POD_ADD)
            return
        if self.cache.is_assumed(key):
            return      # binding in flight: the scheduler already decided
        if (new.get("metadata") or {}).get("deletionTimestamp"):
            self.queue.delete(key)
            self.profile.unnominate(key)
            return
        if self._responsible(new):
            self.queue.update(pod_info(new))
        else:
            self.queue.delete(key)

    def on_pod_delete(self, pod: dict[str, Any]) -> None:
        key = pod_key(pod)
        self.gated.discard(key)
        self.profile.unnominate(key)
        if self.cache.remove_pod(key) is not None:
            self.queue.move(fw.POD_DELETE)
        self.queue.delete(key)

    def on_node_add(self, node: dict[str, Any]) -> None:
        self.cache.set_node(node)
        self.queue.move(fw.NODE_ADD)

    def on_node_update(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        before = self.cache.nodes.get((new.get("metadata") or {}).get("name", ""))
        if before is None or before.node is None:
            self.on_node_add(new)
            return
        labels, taints, alloc, unsched = before.labels, before.taints, before.allocatable, before.unschedulable
        info = self.cache.set_node(new)
        events = []
        if info.labels != labels:
            events.append(fw.NODE_LABELS)
        if info.taints != taints:
            events.append(fw.NODE_TAINTS)
        if info.allocatable != alloc:
            events.append(fw.NODE_ALLOCATABLE)
        if info.unschedulable != unsched:
            events.append(fw.NODE_SCHEDULABLE)
        for ev in events:
            self.queue.move(ev)

    def on_node_delete(self, node: dict[str, Any]) -> None:
        self.cache.remove_node((node.get("metadata") or {}).get("name", ""))

    def set_owner(self, key: str, namespace: str, selector: Any | None) -> None:
        """A Service / ReplicaSet / StatefulSet selector (None removes it) for default spreading."""
        if selector is None:
            self.cache.owner_selectors.pop(key, None)
        else:
            self.cache.owner_selectors[key] = (namespace, selector)

    # the loop -----------------------------------------------------------------------------
    async def run(self) -> None:
        """Schedule until cancelled."""
        for _ in range(self.status_workers):
            self._spawn(self._status_worker())
        self._spawn(self._flusher())
        try:
            while True:
                qp = await self.queue.pop()
                while self._binding >= self.parallel_binds:
                    self._slot_free.clear()
                    await self._slot_free.wait()
                self.schedule_one(qp)
                await asyncio.sleep(0)
        finally:
            for t in list(self._tasks):
                t.cancel()

    async def _flusher(self) -> None:
        n = 0
        while True:
            await asyncio.sleep(1.0)
            self.queue.flush_backoff()
            n += 1
            if n % 30 == 0:
                self.queue.flush_unschedulable()
            counts: dict[str, int] = {}
            for qp in self.queue.unschedulable.values():
                for p in qp.unschedulable_plugins:
                    counts[p] = counts.get(p, 0) + 1
            for p in self.profile.plugins:
                self.metrics.unschedulable.labels(p, PROFILE).set(counts.get(p, 0))

    def _spawn(self, coro) -> asyncio.Task:
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return t

    def schedule_one(self, qp: QueuedPod) -> None:
        pod = qp.info
        if pod.key in self.cache.pods or pod.terminating:
            self.queue.done(pod.key)
            return
        start = time.perf_counter()
        try:
            result = self.profile.schedule(pod)
        except FitError as err:
            self._failed(qp, err, start)
            return
        except Exception as exc:   # a bug must not stop the loop: log, back off, retry
            log.exception("scheduling %s failed", pod.key)
            self.metrics.attempts.labels("error", PROFILE).inc()
            self.queue.requeue(qp, set(), error=True)
            self._record_failure(pod, "SchedulerError", f"running scheduling cycle: {exc}")
            return
        decided = time.perf_counter()
        self.metrics.algorithm_duration.observe(decided - start)
        assumed = replace(pod, node_name=result.node)
        self.cache.assume(assumed, result.node)
        self.profile.unnominate(pod.key)
        self._binding += 1
        self._spawn(self._bind(qp, assumed, result.node, start))

    async def _bind(self, qp: QueuedPod, pod: PodInfo, node: str, start: float) -> None:
        t0 = time.perf_counter()
        try:
            await self.api.bind(pod, node)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.metrics.observe_extension("Bind", "Error", time.perf_counter() - t0)
            self.cache.forget(pod.key)
            self.metrics.attempts.labels("error", PROFILE).inc()
            self.metrics.attempt_duration.labels("error", PROFILE).observe(time.perf_counter() - start)
            self.queue.requeue(qp, set(), error=True)
            self._record_failure(qp.info, "SchedulerError", f"binding rejected: {exc}")
            return
        finally:
            self._binding -= 1
            self._slot_free.set()
        now = time.perf_counter()
        self.metrics.observe_extension("Bind", "Success", now - t0)
        self.metrics.child(self.metrics.attempts, "scheduled", PROFILE).inc()
        self.metrics.child(self.metrics.attempt_duration, "scheduled", PROFILE).observe(now - start)
        self.metrics.child(self.metrics.sli_duration, str(min(qp.attempts, 15))).observe(max(time.monotonic() - qp.added, 0.0))
        self.metrics.pod_attempts.observe(qp.attempts)
        self.scheduled += 1
        self.queue.done(pod.key)
        if self.send_scheduled_events:
            self.api.event(pod, "Normal", "Scheduled", f"Successfully assigned {pod.key} to {node}")

    def _failed(self, qp: QueuedPod, err: FitError, start: float) -> None:
        pod = qp.info
        nominated: str | None = None
        if err.codes is not None and err.codes.any():
            t0 = time.perf_counter()
            self.metrics.preemption_attempts.inc()
            cand, msg = preempt(self.profile, pod, err)
            self.metrics.observe_extension("PostFilter", "Success" if cand else "Unschedulable",
                                           time.perf_counter() - t0)
            if cand is None:
                err.postfilter = msg
            else:
                nominated = cand.node
                self.metrics.preemption_victims.observe(len(cand.victims))
                self.profile.nominate(pod, cand.node)
                self._spawn(self._evict(pod, cand.node, cand.victims))
        self.metrics.child(self.metrics.attempts, "unschedulable", PROFILE).inc()
        self.metrics.child(self.metrics.attempt_duration, "unschedulable", PROFILE).observe(time.perf_counter() - start)
        self.queue.requeue(qp, err.plugins)
        self._record_failure(pod, "Unschedulable", err.message(), nominated)

    async def _evict(self, pod: PodInfo, node: str, victims: list[PodInfo]) -> None:
        for v in victims:
            try:
                await self.api.delete_victim(v, pod, node)
            except Exception as exc:   # the victim may be gone already
                log.info("preempting %s for %s: %s", v.key, pod.key, exc)
        # lower-priority pods nominated to this node lose their nomination
        for key, (other, n) in list(self.profile.nominated.items()):
            if n == node and other.priority < pod.priority:
                self.profile.unnominate(key)
                self._queue_status(other, None, "")

    # status writes --------------------------------------------------------------------------
    def _record_failure(self, pod: PodInfo, reason: str, message: str, nominated: str | None = None) -> None:
        self.api.event(pod, "Warning", "FailedScheduling", message)
        cond = {"type": "PodScheduled", "status": "False", "reason": reason, "message": message,
                "lastProbeTime": None, "lastTransitionTime": _now_rfc3339()}
        for c in (pod.pod.get("status") or {}).get("conditions") or ():
            if (c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("reason") == reason
                    and c.get("message") == message):
                cond = None   # unchanged: no write (upstream's updatePod skips it too)
        if cond is None and nominated is None:
            return
        self._queue_status(pod, cond, nominated)

    def _queue_status(self, pod: PodInfo, cond: dict[str, Any] | None, nominated: str | None) -> None:
        self._status[pod.key] = (pod, cond, nominated)
        self._status_ready.set()

    async def _status_worker(self) -> None:
        while True:
            while not self._status:
                self._status_ready.clear()
                await self._status_ready.wait()
            key = next(iter(self._status))
            pod, cond, nominated = self._status.pop(key)
            if key not in self.queue and nominated is None:
                continue    # scheduled or deleted meanwhile
            try:
                await self.api.update_status(pod, cond, nominated)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("updating the status of %s: %s", key, exc)
