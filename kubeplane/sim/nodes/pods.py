"""The per-pod lifecycle a kubelet drives, for pods bound to hollow nodes.

    bound (Pending) --startSeconds--> Running --runSeconds--> exited
    exited: restartPolicy Always, or OnFailure with a non-zero code -> CrashLoopBackOff
            --backoff--> Running again (restartCount + 1); otherwise Succeeded / Failed
    deletionTimestamp set -> the containers stop after stopSeconds (capped by the grace
            period; exit 0 if they stopped before it, 137 if killed at its end) -> the
            terminal status is posted -> DELETE with gracePeriodSeconds=0 and the pod's
            uid as precondition (a pod recreated under the same name is never hit)
    annotation kubeplane.io/crash changed (any new value) -> the containers crash now
            (exit code kubeplane.io/crash-exit-code, default 1) and restart per policy

Events arrive synchronously from the watch (`observe`); every step after that runs on
the event loop's timer heap (`loop.call_at`), never as a sleeping task, and each write is
a short task. A pod costs a `PodState` of a few fields: the watch's objects are dropped
after `observe` reads them.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from kubeplane.client import ApiError, ApiConnectionError

from .objects import PodView, exited_status, running_status
from .stages import Stages, Timing

if TYPE_CHECKING:
    from .simulator import HollowNode, Simulator

log = logging.getLogger("kubeplane.sim.nodes")

CRASH = "kubeplane.io/crash"
CRASH_EXIT_CODE = "kubeplane.io/crash-exit-code"
PENDING, RUNNING, BACKOFF, DONE, STOPPING = "Pending", "Running", "Backoff", "Done", "Stopping"


class PodState:
    __slots__ = ("view", "node", "timing", "state", "restarts", "started", "timer", "crash_seen", "deleting",
                 "due")

    def __init__(self, view: PodView, node: "HollowNode", timing: Timing, crash_seen: str | None):
        self.view = view
        self.node = node
        self.timing = timing
        self.state = PENDING
        self.restarts = 0
        self.started = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.crash_seen = crash_seen
        self.deleting = False
        self.due = 0.0              # when the start was planned (for the start lag)


def _ts(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        return None


class PodLifecycle:
    def __init__(self, sim: "Simulator", stages: Stages, rng: random.Random | None = None):
        self.sim = sim
        self.stages = stages
        self.rng = rng or random.Random()
        self.loop = asyncio.get_running_loop()
        self.count = 0

    # --- what the watch says --------------------------------------------------------------
    def observe(self, node: "HollowNode", etype: str, pod: dict[str, Any]) -> None:
        md = pod.get("metadata") or {}
        key = (md.get("namespace", ""), md.get("name", ""))
        st = node.pods.get(key)
        if etype == "DELETED":
            if st is not None and st.view.uid == md.get("uid"):
                self.forget(st)
            return
        if st is not None and st.view.uid != md.get("uid"):
            self.forget(st)
            st = None
        if st is None:
            st = self._adopt(node, pod)
        if md.get("deletionTimestamp") and not st.deleting:
            self._begin_deletion(st, md)
            return
        crash = (md.get("annotations") or {}).get(CRASH)
        if crash != st.crash_seen:
            st.crash_seen = crash
            if crash is not None and st.state == RUNNING and not st.deleting:
                code = _int((md.get("annotations") or {}).get(CRASH_EXIT_CODE), 1)
                self._at(st, 0.0, self._exit, code)

    def resync(self, node: "HollowNode", pods: list[dict[str, Any]]) -> None:
        """A full list of the node's pods: forget the ones gone, observe the rest."""
        keep = {((p.get("metadata") or {}).get("namespace", ""), (p.get("metadata") or {}).get("name", ""))
                for p in pods}
        for key, st in list(node.pods.items()):
            if key not in keep:
                self.forget(st)
        for p in pods:
            self.observe(node, "ADDED", p)

    def forget(self, st: PodState) -> None:
        if st.timer is not None:
            st.timer.cancel()
            st.timer = None
        if st.node.pods.get((st.view.namespace, st.view.name)) is st:
            del st.node.pods[(st.view.namespace, st.view.name)]
            st.node.release_ip(st.view.ip)
            self.count -= 1
            self.sim.metrics.pods.set(self.count)
        st.state = DONE
        st.deleting = True

    # --- first sight ----------------------------------------------------------------------
    def _adopt(self, node: "HollowNode", pod: dict[str, Any]) -> PodState:
        md, status = pod.get("metadata") or {}, pod.get("status") or {}
        view = PodView.of(pod)
        st = PodState(view, node, self.stages.timing(pod), (md.get("annotations") or {}).get(CRASH))
        node.pods[(view.namespace, view.name)] = st
        self.count += 1
        self.sim.metrics.pods.set(self.count)
        phase = status.get("phase")
        if phase in ("Succeeded", "Failed"):
            st.state = DONE
        elif phase == "Running" and status.get("podIP"):
            # a pod this node ran before the simulator restarted: carry on from its status
            view.ip = node.claim_ip(status["podIP"])
            view.start_time = _ts(status.get("startTime")) or time.time()
            started = [_ts(((c.get("state") or {}).get("running") or {}).get("startedAt"))
                       for c in status.get("containerStatuses") or []]
            st.restarts = max([c.get("restartCount", 0) for c in status.get("containerStatuses") or []] or [0])
            st.started = max([s for s in started if s] or [time.time()])
            st.state = RUNNING
            if st.timing.runSeconds is not None:
                self._at(st, max(0.0, st.started + st.timing.runSeconds - time.time()), self._exit,
                         st.timing.exitCode)
        elif not md.get("deletionTimestamp"):
            st.due = time.time() + st.timing.start_delay(self.rng)
            self._at(st, st.due - time.time(), self._start)
        return st

    def _begin_deletion(self, st: PodState, md: dict[str, Any]) -> None:
        st.deleting = True
        if st.timer is not None:
            st.timer.cancel()
            st.timer = None
        grace = md.get("deletionGracePeriodSeconds")
        grace = 30.0 if grace is None else float(grace)
        if st.state in (PENDING, DONE):
            delay, code = 0.0, None              # nothing runs: nothing to stop
        else:
            delay = st.timing.stop_delay(grace)
            code = 0 if delay < grace else 137
        st.state = STOPPING
        self._at(st, delay, self._stop, code)

    # --- timers ---------------------------------------------------------------------------
    def _at(self, st: PodState, delay: float, fn: Any, *args: Any) -> None:
        if st.timer is not None:
            st.timer.cancel()
        st.timer = self.loop.call_later(max(0.0, delay), self._fire, st, fn, args)

    def _fire(self, st: PodState, fn: Any, args: tuple[Any, ...]) -> None:
        st.timer = None
        self.sim.spawn(fn(st, *args))

    # --- the steps (each one write, or two for a deletion) ----------------------------------
    async def _patch(self, st: PodState, status: dict[str, Any], op: str) -> bool:
        v = st.view
        try:
            await self.sim.client.patch(f"/api/v1/namespaces/{v.namespace}/pods/{v.name}/status",
                                        {"metadata": {"uid": v.uid}, "status": status}, "strategic")
            return True
        except ApiError as e:
            if e.status not in (404, 409):
                log.warning("pod %s/%s: %s status: %s", v.namespace, v.name, op, e)
                self.sim.metrics.write_errors.labels(op).inc()
            return False
        except ApiConnectionError as e:
            log.warning("pod %s/%s: %s status: %s", v.namespace, v.name, op, e)
            self.sim.metrics.write_errors.labels(op).inc()
            return False

    async def _start(self, st: PodState) -> None:
        if st.deleting or st.state != PENDING:
            return
        v = st.view
        if not v.ip:
            v.ip = st.node.allocate_ip()
        now = time.time()
        v.start_time = v.start_time or now
        if not await self._patch(st, running_status(v, st.node.host, now), "start"):
            return
        if st.deleting:
            return
        st.state, st.started = RUNNING, now
        self.sim.metrics.pod_started(max(0.0, time.time() - st.due))
        if st.timing.runSeconds is not None:
            self._at(st, st.timing.runSeconds, self._exit, st.timing.exitCode)

    async def _exit(self, st: PodState, code: int) -> None:
        if st.deleting or st.state != RUNNING:
            return
        v, now = st.view, time.time()
        policy = v.restart_policy
        if policy == "Always" or (policy == "OnFailure" and code != 0):
            st.state = BACKOFF
            st.restarts += 1
            self.sim.metrics.restarts.inc()
            delay = st.timing.backoff(st.restarts)
            if delay <= 0:
                await self._restart(st, (code, st.started, now))
                return
            await self._patch(st, exited_status(v, code, st.started, now, st.restarts - 1, None, True), "exit")
            if not st.deleting:
                self._at(st, delay, self._restart, (code, st.started, now))
            return
        phase = "Succeeded" if code == 0 else "Failed"
        st.state = DONE
        if await self._patch(st, exited_status(v, code, st.started, now, st.restarts, phase, False), "finish"):
            self.sim.metrics.pods_finished.labels(phase).inc()
        st.node.release_ip(v.ip)

    async def _restart(self, st: PodState, last: tuple[int, float, float]) -> None:
        if st.deleting or st.state != BACKOFF:
            return
        now = time.time()
        if not await self._patch(st, running_status(st.view, st.node.host, now, st.restarts, last), "restart"):
            return
        if st.deleting:
            return
        st.state, st.started = RUNNING, now
        if st.timing.runSeconds is not None:
            self._at(st, st.timing.runSeconds, self._exit, st.timing.exitCode)

    async def _stop(self, st: PodState, code: int | None) -> None:
        v = st.view
        if code is not None:
            phase = "Succeeded" if code == 0 else "Failed"
            await self._patch(st, exited_status(v, code, st.started or time.time(), time.time(), st.restarts,
                                                phase, False), "stop")
        try:
            await self.sim.client.delete(f"/api/v1/namespaces/{v.namespace}/pods/{v.name}",
                                         {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                                          "preconditions": {"uid": v.uid}})
            self.sim.metrics.pods_deleted.inc()
        except ApiError as e:
            if e.status not in (404, 409):
                log.warning("pod %s/%s: delete: %s", v.namespace, v.name, e)
                self.sim.metrics.write_errors.labels("delete").inc()
        except ApiConnectionError as e:
            log.warning("pod %s/%s: delete: %s", v.namespace, v.name, e)
            self.sim.metrics.write_errors.labels("delete").inc()


def _int(text: Any, default: int) -> int:
    try:
        v = int(str(text))
        return v if 0 <= v <= 255 else default
    except (TypeError, ValueError):
        return default
