"""The CronJob controller (upstream's cronjob-controller, v2).

One sync of a CronJob:
1. its Jobs (controller reference): references to finished or vanished ones leave
   status.active; a Job seen Complete sets status.lastSuccessfulTime; finished Jobs beyond
   successfulJobsHistoryLimit (3) / failedJobsHistoryLimit (1) are deleted, oldest first;
2. the most recent schedule time at or before now and after status.lastScheduleTime (or
   the CronJob's creation): the schedule is read by croniter in spec.timeZone (an IANA
   name; none: UTC, this controller's local time) — an unknown zone is an event
   `UnknownTimeZone` and nothing is scheduled; more than 100 missed times is an event
   `TooManyMissedTimes` (the latest one still runs, as upstream);
3. nothing to run, suspended, or past startingDeadlineSeconds: wait for the next time;
4. concurrencyPolicy: Allow runs it; Forbid skips it while a Job is active (event
   `JobAlreadyActive`); Replace deletes the active Jobs first (background);
5. the Job `<cronjob>-<scheduled time in minutes since the epoch>` (so a retry after a
   crash finds the same name: AlreadyExists means done) from spec.jobTemplate, with the
   annotation batch.kubernetes.io/cronjob-scheduled-timestamp; status.lastScheduleTime
   and status.active updated; the CronJob is looked at again at its next schedule time.
"""
from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from typing import Any

from croniter import croniter

from ..client import CRON_JOBS, JOBS, ApiError
from .base import Context, Controller, parse_time, unwrap
from .job import finished_condition
from .podutil import controller_ref, md, owner_reference

log = logging.getLogger("kubeplane.controllers.cronjob")
SCHEDULED_TIMESTAMP = "batch.kubernetes.io/cronjob-scheduled-timestamp"
MAX_MISSED = 100
UTC = dt.timezone.utc


def _rfc3339(t: dt.datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def schedule_times(schedule: str, tz: dt.tzinfo, after: dt.datetime, now: dt.datetime,
                   limit: int = MAX_MISSED + 1) -> tuple[dt.datetime | None, int, dt.datetime]:
    """(the most recent schedule time in (after, now], how many there were (counting stops
    at `limit`), the next one after now). Times are computed in `tz` (daylight saving
    transitions as croniter handles them) and returned aware."""
    it = croniter(schedule, after.astimezone(tz))
    last, n = None, 0
    while True:
        t = it.get_next(dt.datetime)
        if t > now:
            return last, n, t
        last, n = t, n + 1
        if n >= limit:
            # many missed: jump close to now and keep the latest one (upstream's behaviour)
            back = croniter(schedule, now.astimezone(tz)).get_prev(dt.datetime)
            nxt = croniter(schedule, now.astimezone(tz)).get_next(dt.datetime)
            return back, n, nxt


def job_name(cj_name: str, t: dt.datetime) -> str:
    return f"{cj_name}-{int(t.timestamp()) // 60}"


class CronJobController(Controller):
    name = "cronjob"
    component = "cronjob-controller"

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.cronjobs = self.factory.informer(CRON_JOBS)
        self.jobs = self.factory.informer(JOBS)
        self.cronjobs.add_event_handler(on_add=self.enqueue, on_update=lambda o, n: self.enqueue(n))
        self.jobs.add_event_handler(on_add=self._job, on_update=lambda o, n: self._job(n),
                                    on_delete=lambda o: self._job(unwrap(o)))

    def _job(self, job: dict[str, Any]) -> None:
        ref = controller_ref(job)
        if ref is not None and ref.get("kind") == "CronJob":
            self.queue.add(f"{md(job).get('namespace')}/{ref.get('name')}")

    def now(self) -> dt.datetime:
        return dt.datetime.now(UTC)

    async def sync(self, key: str) -> None:
        cj = self.cronjobs.indexer.get(key)
        if cj is None or md(cj).get("deletionTimestamp"):
            return
        spec, old_status = cj.get("spec") or {}, cj.get("status") or {}
        ns, name = md(cj)["namespace"], md(cj)["name"]
        status: dict[str, Any] = {"active": [dict(r) for r in old_status.get("active") or ()] or None,
                                  "lastScheduleTime": old_status.get("lastScheduleTime"),
                                  "lastSuccessfulTime": old_status.get("lastSuccessfulTime")}
        uid = md(cj).get("uid")
        jobs = [j for j in self.jobs.indexer.by_index("namespace", ns)
                if (controller_ref(j) or {}).get("uid") == uid]
        by_uid = {md(j).get("uid"): j for j in jobs}
        active = []
        for ref in status["active"] or ():
            j = by_uid.get(ref.get("uid"))
            if j is not None and finished_condition(j) is None:
                active.append(ref)
        for j in jobs:
            fin = finished_condition(j)
            ref = {"apiVersion": "batch/v1", "kind": "Job", "name": md(j)["name"], "namespace": ns,
                   "uid": md(j).get("uid"), "resourceVersion": md(j).get("resourceVersion")}
            if fin is None and not any(r.get("uid") == ref["uid"] for r in active):
                active.append(ref)        # adopted by name/uid after a restart
            if fin == "Complete":
                done_at = (j.get("status") or {}).get("completionTime")
                if done_at and (not status["lastSuccessfulTime"]
                                or (parse_time(done_at) or 0) > (parse_time(status["lastSuccessfulTime"]) or 0)):
                    status["lastSuccessfulTime"] = done_at
        status["active"] = active or None
        await self._trim_history(cj, jobs)
        # --- the schedule --------------------------------------------------------------------
        tz_name = spec.get("timeZone")
        try:
            tz: dt.tzinfo = zoneinfo.ZoneInfo(tz_name) if tz_name else UTC
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            self.recorder.event(cj, "Warning", "UnknownTimeZone", f"invalid timeZone: {tz_name!r}")
            await self._write_status(cj, status)
            return
        now = self.now()
        since = parse_time(status["lastScheduleTime"]) or parse_time(md(cj).get("creationTimestamp")) or now.timestamp()
        try:
            scheduled, missed, nxt = schedule_times(spec.get("schedule") or "", tz,
                                                    dt.datetime.fromtimestamp(since, UTC), now)
        except (ValueError, KeyError) as e:
            self.recorder.event(cj, "Warning", "UnparseableSchedule", f"unparseable schedule: "
                                f"{spec.get('schedule')!r} : {e}")
            await self._write_status(cj, status)
            return
        self.enqueue_after(key, max((nxt - now).total_seconds(), 0) + 0.2)
        if missed > MAX_MISSED:
            self.recorder.event(cj, "Warning", "TooManyMissedTimes", "too many missed start times. Set or decrease "
                                ".spec.startingDeadlineSeconds or check clock skew")
        if scheduled is None or spec.get("suspend"):
            await self._write_status(cj, status)
            return
        deadline = spec.get("startingDeadlineSeconds")
        if deadline is not None and (now - scheduled).total_seconds() > int(deadline):
            self.recorder.event(cj, "Warning", "MissSchedule",
                                f"Missed scheduled time to start a job: {_rfc3339(scheduled)}")
            status["lastScheduleTime"] = _rfc3339(scheduled)
            await self._write_status(cj, status)
            return
        policy = spec.get("concurrencyPolicy") or "Allow"
        if policy == "Forbid" and active:
            self.recorder.event(cj, "Normal", "JobAlreadyActive",
                                "Not starting job because prior execution is running and concurrency policy is Forbid")
            await self._write_status(cj, status)
            return
        if policy == "Replace":
            for ref in active:
                try:
                    await self.client.delete(JOBS.path(ns, ref["name"]), body={
                        "apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background",
                        "preconditions": {"uid": ref.get("uid")}})
                    self.recorder.event(cj, "Normal", "SuccessfulDelete", f"Deleted job {ref['name']}")
                except ApiError as e:
                    if e.status not in (404, 409):
                        raise
            active = []
        tmpl = spec.get("jobTemplate") or {}
        jname = job_name(name, scheduled)
        body = {"apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": jname, "namespace": ns,
                             "labels": dict((tmpl.get("metadata") or {}).get("labels") or {}) or None,
                             "annotations": {**((tmpl.get("metadata") or {}).get("annotations") or {}),
                                             SCHEDULED_TIMESTAMP: scheduled.astimezone(tz).isoformat()},
                             "ownerReferences": [owner_reference(cj, "batch/v1", "CronJob")]},
                "spec": tmpl.get("spec") or {}}
        try:
            made = await self.client.create(JOBS.path(ns), body)
            self.recorder.event(cj, "Normal", "SuccessfulCreate", f"Created job {jname}")
        except ApiError as e:
            if e.status != 409:
                self.recorder.event(cj, "Warning", "FailedCreate", f"Error creating job: {e.message}")
                raise
            made = await self.client.get(JOBS.path(ns, jname))
        ref = {"apiVersion": "batch/v1", "kind": "Job", "name": jname, "namespace": ns,
               "uid": md(made).get("uid"), "resourceVersion": md(made).get("resourceVersion")}
        if not any(r.get("uid") == ref["uid"] for r in active):
            active.append(ref)
        status["active"] = active or None
        status["lastScheduleTime"] = _rfc3339(scheduled)
        await self._write_status(cj, status)

    async def _trim_history(self, cj: dict[str, Any], jobs: list[dict[str, Any]]) -> None:
        spec = cj.get("spec") or {}
        for cond, limit in (("Complete", spec.get("successfulJobsHistoryLimit", 3)),
                            ("Failed", spec.get("failedJobsHistoryLimit", 1))):
            if limit is None:
                continue
            done = sorted((j for j in jobs if finished_condition(j) == cond and not md(j).get("deletionTimestamp")),
                          key=lambda j: ((j.get("status") or {}).get("startTime") or md(j).get("creationTimestamp")
                                         or "", md(j).get("name")))
            for j in done[:max(0, len(done) - int(limit))]:
                try:
                    await self.client.delete(JOBS.path(md(j)["namespace"], md(j)["name"]), body={
                        "apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background",
                        "preconditions": {"uid": md(j).get("uid")}})
                    self.recorder.event(cj, "Normal", "SuccessfulDelete", f"Deleted job {md(j)['name']}")
                except ApiError as e:
                    if e.status not in (404, 409):
                        raise

    async def _write_status(self, cj: dict[str, Any], status: dict[str, Any]) -> None:
        old = cj.get("status") or {}
        if all((old.get(k) or None) == (v or None) for k, v in status.items()):
            return
        try:
            await self.client.patch(CRON_JOBS.path(md(cj)["namespace"], md(cj)["name"], "status"),
                                    {"status": status}, patch_type="merge")
        except ApiError as e:
            if e.status != 404:
                raise

