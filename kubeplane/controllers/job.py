"""The Job controller (upstream's job-controller), core semantics.

One sync of a Job that has not finished:
1. claim its pods (the selector the API server generated from the Job's uid);
2. count finished pods exactly once, with upstream's finalizer protocol: every pod is
   created with the finalizer `batch.kubernetes.io/job-tracking`; a finished pod's uid is
   first written to status.uncountedTerminatedPods, then its finalizer is removed, then
   it moves from there into status.succeeded/failed — so a pod deleted or garbage
   collected after finishing is never lost nor counted twice, even across restarts;
3. podFailurePolicy decides what a failed pod means (rules in order, first match:
   FailJob, Ignore — not counted —, Count; onExitCodes and onPodConditions);
4. finish: Complete (SuccessCriteriaMet then Complete, reason CompletionsReached) when
   the completions succeeded (NonIndexed: `succeeded >= completions`; Indexed: every
   index 0..completions-1; no completions: a success and no active pod); Failed
   (FailureTarget then Failed, once no pod is active) when failures exceed backoffLimit
   (BackoffLimitExceeded), activeDeadlineSeconds passed (DeadlineExceeded) or a FailJob
   rule matched (PodFailurePolicy); active pods of a failing Job are deleted;
5. otherwise keep min(parallelism, remaining completions) pods active: create the
   missing ones in slow-start batches (Indexed: the lowest pending indexes, with the
   completion-index annotation and label, hostname `<job>-<index>` and
   JOB_COMPLETION_INDEX), after a failure only once the backoff (10 s doubling, at most 6
   minutes, as upstream) has passed; delete the excess when parallelism went down.
`spec.suspend` stops creating and deletes active pods (condition Suspended).
"""
from __future__ import annotations

import copy
import logging
import time
from typing import Any

from ..client import JOBS, PODS, ApiError, meta_key
from .base import Context, Controller, now_rfc3339, parse_time, unwrap
from .claims import Claimer
from .expectations import Expectations
from .podutil import controller_ref, is_ready, md, owner_reference, pod_from_template, pods_to_delete
from .replicaset import CONTROLLER_UID_INDEX, claim_candidates, controller_uid_index, slow_start_batch
from ..client.selectors import label_selector

log = logging.getLogger("kubeplane.controllers.job")

TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
BACKOFF_BASE = 10.0
BACKOFF_MAX = 360.0


def finished_condition(job: dict[str, Any]) -> str | None:
    for c in (job.get("status") or {}).get("conditions") or ():
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return c["type"]
    return None


def _uncounted(status: dict[str, Any]) -> bool:
    return any((status.get("uncountedTerminatedPods") or {}).values())


def pod_index(pod: dict[str, Any]) -> int | None:
    v = (md(pod).get("annotations") or {}).get(INDEX_ANNOTATION)
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


def format_indexes(idx: set[int]) -> str:
    """upstream's completedIndexes form: "1,3-5,7"."""
    out: list[str] = []
    for i in sorted(idx):
        if out and "-" not in out[-1].split(",")[-1] and int(out[-1]) == i - 1:
            out[-1] = f"{out[-1]}-{i}"
        elif out and "-" in out[-1] and int(out[-1].split("-")[1]) == i - 1:
            out[-1] = f"{out[-1].split('-')[0]}-{i}"
        else:
            out.append(str(i))
    return ",".join(out)


def parse_indexes(text: str | None) -> set[int]:
    out: set[int] = set()
    for part in (text or "").split(","):
        if not part:
            continue
        a, _, b = part.partition("-")
        try:
            out.update(range(int(a), int(b or a) + 1))
        except ValueError:
            continue
    return out


def _exit_codes(pod: dict[str, Any], container: str | None) -> list[tuple[str, int]]:
    out = []
    for cs in (pod.get("status") or {}).get("containerStatuses") or ():
        term = (cs.get("state") or {}).get("terminated")
        if term is not None and (container is None or cs.get("name") == container):
            out.append((cs.get("name") or "", int(term.get("exitCode") or 0)))
    return out


def match_failure_policy(job: dict[str, Any], pod: dict[str, Any]) -> tuple[str, str] | None:
    """(action, message) of the first podFailurePolicy rule matching a failed pod."""
    rules = ((job.get("spec") or {}).get("podFailurePolicy") or {}).get("rules") or ()
    for i, rule in enumerate(rules):
        action = rule.get("action")
        codes = rule.get("onExitCodes")
        if codes:
            values = set(codes.get("values") or ())
            for cname, code in _exit_codes(pod, codes.get("containerName")):
                hit = code in values if codes.get("operator") == "In" else (code not in values and code != 0)
                if hit:
                    return action, (f"Container {cname} for pod {md(pod).get('namespace')}/{md(pod).get('name')} "
                                    f"failed with exit code {code} matching {action} rule at index {i}")
        for pc in rule.get("onPodConditions") or ():
            for c in (pod.get("status") or {}).get("conditions") or ():
                if c.get("type") == pc.get("type") and c.get("status") == (pc.get("status") or "True"):
                    return action, (f"Pod {md(pod).get('namespace')}/{md(pod).get('name')} has condition "
                                    f"{c.get('type')} matching {action} rule at index {i}")
    return None


class JobController(Controller):
    name = "job"
    component = "job-controller"

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.expectations = Expectations()
        self.jobs = self.factory.informer(JOBS)
        self.pods = self.factory.informer(PODS)
        self.pods.add_indexers({CONTROLLER_UID_INDEX: controller_uid_index})
        self.jobs.add_event_handler(on_add=self.enqueue, on_update=lambda o, n: self.enqueue(n),
                                    on_delete=lambda o: self.expectations.delete(meta_key(unwrap(o))))
        self.pods.add_event_handler(on_add=self._pod_added, on_update=lambda o, n: self._pod_changed(n),
                                    on_delete=lambda o: self._pod_changed(unwrap(o), deleted=True))

    def _job_of(self, pod: dict[str, Any]) -> dict[str, Any] | None:
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != "Job":
            return None
        job = self.jobs.indexer.get(f"{md(pod).get('namespace')}/{ref.get('name')}")
        return job if job is not None and md(job).get("uid") == ref.get("uid") else None

    def _pod_added(self, pod: dict[str, Any]) -> None:
        job = self._job_of(pod)
        if job is not None:
            self.expectations.creation_observed(meta_key(job))
            self.enqueue(job)

    def _pod_changed(self, pod: dict[str, Any], deleted: bool = False) -> None:
        job = self._job_of(pod)
        if job is not None:
            if deleted:
                self.expectations.deletion_observed(meta_key(job), meta_key(pod))
            self.enqueue(job)

    # --- sync ------------------------------------------------------------------------------
    async def sync(self, key: str) -> None:
        cached = self.jobs.indexer.get(key)
        if cached is None:
            self.expectations.delete(key)
            return
        job = copy.deepcopy(cached)
        spec, status = job.get("spec") or {}, job.setdefault("status", {})
        ns = md(job).get("namespace") or ""

        async def fresh() -> dict[str, Any] | None:
            try:
                return await self.client.get(JOBS.path(ns, md(job)["name"]))
            except ApiError as e:
                if e.status == 404:
                    return None
                raise

        claimer = Claimer(self.client, job, "batch/v1", "Job", label_selector(spec.get("selector")), PODS, fresh)
        pods = await claimer.claim(claim_candidates(self.pods.indexer, job))
        done = finished_condition(job)
        # --- 2. count finished pods (finalizer protocol) ---------------------------------
        uncounted = status.get("uncountedTerminatedPods") or {}
        unc_s, unc_f = list(uncounted.get("succeeded") or ()), list(uncounted.get("failed") or ())
        fail_job: tuple[str, str] | None = None
        to_release = []
        succeeded_idx = parse_indexes(status.get("completedIndexes"))
        indexed = spec.get("completionMode") == "Indexed"
        for p in pods:
            phase = (p.get("status") or {}).get("phase")
            has_fin = TRACKING_FINALIZER in (md(p).get("finalizers") or ())
            uid = md(p).get("uid")
            if phase == "Failed":
                match = match_failure_policy(job, p)
                if match and match[0] == "FailJob" and fail_job is None:
                    fail_job = ("PodFailurePolicy", match[1])
            if not has_fin:
                continue
            if phase == "Succeeded":
                if uid not in unc_s:
                    unc_s.append(uid)
                to_release.append(p)
            elif phase == "Failed":       # a deleted pod counts once its kubelet reported it terminal
                match = match_failure_policy(job, p)
                if not (match and match[0] == "Ignore") and uid not in unc_f:
                    unc_f.append(uid)
                to_release.append(p)
        if unc_s != list(uncounted.get("succeeded") or ()) or unc_f != list(uncounted.get("failed") or ()):
            status["uncountedTerminatedPods"] = {"succeeded": unc_s or None, "failed": unc_f or None}
            await self._write_status(job)
        for p in to_release:
            await self._remove_finalizer(p)
        released = {md(p).get("uid") for p in to_release}
        live_fin = {md(p).get("uid") for p in pods if TRACKING_FINALIZER in (md(p).get("finalizers") or ())} - released
        moved_s = [u for u in unc_s if u not in live_fin]
        moved_f = [u for u in unc_f if u not in live_fin]
        if moved_s or moved_f:
            status["succeeded"] = int(status.get("succeeded") or 0) + len(moved_s)
            status["failed"] = int(status.get("failed") or 0) + len(moved_f)
            if indexed:
                by_uid = {md(p).get("uid"): p for p in pods}
                for u in moved_s:
                    i = pod_index(by_uid[u]) if u in by_uid else None
                    if i is not None:
                        succeeded_idx.add(i)
                status["completedIndexes"] = format_indexes(succeeded_idx) or None
            status["uncountedTerminatedPods"] = {"succeeded": [u for u in unc_s if u in live_fin] or None,
                                                 "failed": [u for u in unc_f if u in live_fin] or None}
        if done:
            await self._write_status(job)
            return
        # --- 4. finished? ------------------------------------------------------------------
        active = [p for p in pods if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
                  and not md(p).get("deletionTimestamp")]
        terminating = [p for p in pods if md(p).get("deletionTimestamp")
                       and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
        now = time.time()
        if not status.get("startTime") and not spec.get("suspend"):
            status["startTime"] = now_rfc3339()
        failed = int(status.get("failed") or 0)
        succeeded = int(status.get("succeeded") or 0)
        completions = spec.get("completions")
        parallelism = int(spec.get("parallelism", 1) if spec.get("parallelism") is not None else 1)
        failure = self._failure(job, failed, now) or fail_job
        target = next((c for c in status.get("conditions") or () if c.get("type") == "FailureTarget"), None)
        if failure is not None or target is not None:
            reason, message = failure if failure is not None else (target.get("reason"), target.get("message"))
            self._set_condition(status, "FailureTarget", reason, message)
            for p in active:
                await self._delete(job, p)
            if not active and not terminating and not _uncounted(status):
                self._set_condition(status, "Failed", reason, message)
                self.recorder.event(job, "Warning", reason, message)
            status["active"] = None
            await self._write_status(job)
            return
        complete = (len(succeeded_idx) >= int(completions) if indexed and completions is not None
                    else succeeded >= int(completions) if completions is not None
                    else succeeded > 0 and not active)
        if complete:
            for p in active:
                await self._delete(job, p)
            if not active and not _uncounted(status):
                msg = "Reached expected number of succeeded pods"
                self._set_condition(status, "SuccessCriteriaMet", "CompletionsReached", msg)
                self._set_condition(status, "Complete", "CompletionsReached", msg)
                status["completionTime"] = now_rfc3339()
                self.recorder.event(job, "Normal", "Completed", "Job completed")
            status["active"] = None
            status["ready"] = 0
            await self._write_status(job)
            return
        # --- 5. pods ------------------------------------------------------------------------
        if spec.get("suspend"):
            for p in active:
                await self._delete(job, p)
            self._set_condition(status, "Suspended", "JobSuspended", "Job suspended")
            active = []
        else:
            if any(c.get("type") == "Suspended" and c.get("status") == "True" for c in status.get("conditions") or ()):
                self._set_condition(status, "Suspended", "JobResumed", "Job resumed", "False")
            if self.expectations.satisfied(key):
                # Succeeded pods still in uncountedTerminatedPods (their finalizer's removal not
                # yet seen) count as done too, as upstream's (succeeded + uncounted): without
                # them a lagging cache makes one pod too many.
                pending = {u for u in unc_s if u in live_fin}
                by_uid = {md(p).get("uid"): p for p in pods}
                done_idx = succeeded_idx | {i for u in pending if u in by_uid
                                            for i in (pod_index(by_uid[u]),) if i is not None}
                want = parallelism if completions is None else max(0, min(parallelism, int(completions) - (
                    len(done_idx) if indexed else succeeded + len(pending))))
                wait = self._backoff_left(pods, failed, now)
                if len(active) < want and wait > 0:
                    self.enqueue_after(key, wait)
                elif len(active) < want:
                    await self._create(key, job, pods, active, want - len(active), done_idx, indexed,
                                       int(completions) if completions is not None else None)
                elif len(active) > want:
                    victims = pods_to_delete(active, active, len(active) - want)
                    self.expectations.expect_deletions(key, [meta_key(p) for p in victims])
                    for p in victims:
                        await self._delete(job, p)
        status["active"] = len(active) or None
        status["ready"] = sum(1 for p in active if is_ready(p))
        deadline = spec.get("activeDeadlineSeconds")
        if deadline is not None and status.get("startTime"):
            left = (parse_time(status["startTime"]) or now) + int(deadline) - now
            self.enqueue_after(key, max(left, 0) + 0.5)
        await self._write_status(job)

    def _failure(self, job: dict[str, Any], failed: int, now: float) -> tuple[str, str] | None:
        spec, status = job.get("spec") or {}, job.get("status") or {}
        if failed > int(spec.get("backoffLimit", 6)):
            return "BackoffLimitExceeded", "Job has reached the specified backoff limit"
        deadline = spec.get("activeDeadlineSeconds")
        start = parse_time(status.get("startTime"))
        if deadline is not None and start is not None and start + int(deadline) <= now:
            return "DeadlineExceeded", "Job was active longer than specified deadline"
        return None

    @staticmethod
    def _backoff_left(pods: list[dict[str, Any]], failed: int, now: float) -> float:
        """Seconds until the next pod may be created after failures (upstream's pod
        failure backoff: 10 s * 2^(failures-1), at most 6 minutes, from the last failure)."""
        if failed <= 0:
            return 0.0
        last = 0.0
        for p in pods:
            if (p.get("status") or {}).get("phase") == "Failed":
                for cs in (p.get("status") or {}).get("containerStatuses") or ():
                    t = parse_time(((cs.get("state") or {}).get("terminated") or {}).get("finishedAt"))
                    if t:
                        last = max(last, t)
        if not last:
            return 0.0
        delay = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (failed - 1))
        return max(0.0, last + delay - now)

    @staticmethod
    def _set_condition(status: dict[str, Any], ctype: str, reason: str, message: str, value: str = "True") -> None:
        conds = status.setdefault("conditions", []) or []
        status["conditions"] = conds
        now = now_rfc3339()
        for c in conds:
            if c.get("type") == ctype:
                if c.get("status") != value:
                    c["lastTransitionTime"] = now
                c.update(status=value, reason=reason, message=message, lastProbeTime=now)
                return
        conds.append({"type": ctype, "status": value, "reason": reason, "message": message,
                      "lastProbeTime": now, "lastTransitionTime": now})

    async def _create(self, key: str, job: dict[str, Any], pods: list[dict[str, Any]], active: list[dict[str, Any]],
                      n: int, succeeded_idx: set[int], indexed: bool, completions: int | None) -> None:
        ns = md(job).get("namespace") or ""
        template = (job.get("spec") or {}).get("template") or {}
        ref = owner_reference(job, "batch/v1", "Job")
        indexes: list[int | None] = [None] * n
        if indexed and completions is not None:
            busy = {pod_index(p) for p in active} | succeeded_idx
            indexes = [i for i in range(completions) if i not in busy][:n]
            n = len(indexes)
        if n <= 0:
            return
        self.expectations.expect_creations(key, n)
        todo = list(indexes)

        async def create() -> None:
            idx = todo.pop(0)
            body = pod_from_template(template, job, ref)
            body["metadata"].setdefault("finalizers", []).append(TRACKING_FINALIZER)
            if idx is not None:
                body["metadata"]["generateName"] = f"{md(job)['name']}-{idx}-"
                body["metadata"].setdefault("annotations", {})[INDEX_ANNOTATION] = str(idx)
                body["metadata"].setdefault("labels", {})[INDEX_ANNOTATION] = str(idx)
                body["spec"].setdefault("hostname", f"{md(job)['name']}-{idx}")
                for c in body["spec"].get("containers") or ():
                    env = c.setdefault("env", [])
                    if not any(e.get("name") == "JOB_COMPLETION_INDEX" for e in env):
                        env.append({"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
                            "fieldPath": f"metadata.annotations['{INDEX_ANNOTATION}']"}}})
            try:
                made = await self.client.create(PODS.path(ns), body)
            except ApiError as e:
                self.recorder.event(job, "Warning", "FailedCreate", f"Error creating: {e.message}")
                raise
            self.recorder.event(job, "Normal", "SuccessfulCreate", f"Created pod: {md(made).get('name')}")

        ok, err = await slow_start_batch(n, 1, create)
        for _ in range(n - ok):
            self.expectations.creation_observed(key)
        if err is not None:
            raise err

    async def _delete(self, job: dict[str, Any], pod: dict[str, Any]) -> None:
        try:
            await self.client.delete(PODS.path(md(pod)["namespace"], md(pod)["name"]),
                                     body={"apiVersion": "v1", "kind": "DeleteOptions",
                                           "preconditions": {"uid": md(pod).get("uid")}})
            self.recorder.event(job, "Normal", "SuccessfulDelete", f"Deleted pod: {md(pod)['name']}")
        except ApiError as e:
            if e.status not in (404, 409):
                raise

    async def _remove_finalizer(self, pod: dict[str, Any]) -> None:
        fins = [f for f in md(pod).get("finalizers") or () if f != TRACKING_FINALIZER]
        try:
            await self.client.patch(PODS.path(md(pod)["namespace"], md(pod)["name"]),
                                    {"metadata": {"finalizers": fins or None,
                                                  "resourceVersion": md(pod).get("resourceVersion")}},
                                    patch_type="merge")
        except ApiError as e:
            if e.status != 404:
                raise                    # 409: the pod changed; the next sync sees it again

    async def _write_status(self, job: dict[str, Any]) -> None:
        """A merge patch of the status when it differs from the cache's (empty values
        are sent as null, which removes them)."""
        new = dict(job.get("status") or {})
        old = (self.jobs.indexer.get(meta_key(job)) or {}).get("status") or {}
        unc = new.get("uncountedTerminatedPods") or {}
        new["uncountedTerminatedPods"] = {"succeeded": unc.get("succeeded") or None, "failed": unc.get("failed") or None}
        for k in ("succeeded", "failed", "active"):
            if not new.get(k):
                new[k] = None
        if _norm(new) == _norm(old):
            return
        try:
            out = await self.client.patch(JOBS.path(md(job)["namespace"], md(job)["name"], "status"),
                                          {"status": new}, patch_type="merge")
            job["status"] = out.get("status") or {}
        except ApiError as e:
            if e.status != 404:
                raise


def _norm(status: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in status.items():
        if k == "uncountedTerminatedPods":
            v = {kk: vv for kk, vv in (v or {}).items() if vv}
        if v in (None, [], {}, ""):
            continue
        out[k] = v
    return out
