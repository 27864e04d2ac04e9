"""The TTL-after-finished controller (upstream's ttl-after-finished-controller): a Job
with spec.ttlSecondsAfterFinished is deleted that many seconds after it finished
(Complete: status.completionTime; Failed: the condition's lastTransitionTime), with
foreground propagation as upstream (its pods go first). Until then the Job is looked at
again when its time comes; a Job whose TTL or finish changes is looked at anew."""
from __future__ import annotations

import time
from typing import Any

from ..client import JOBS, ApiError
from .base import Context, Controller, parse_time
from .podutil import md


def finish_time(job: dict[str, Any]) -> float | None:
    for c in (job.get("status") or {}).get("conditions") or ():
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            if c["type"] == "Complete" and (job.get("status") or {}).get("completionTime"):
                return parse_time(job["status"]["completionTime"])
            return parse_time(c.get("lastTransitionTime"))
    return None


class TTLAfterFinishedController(Controller):
    name = "ttl-after-finished"
    component = "ttl-after-finished-controller"

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.jobs = self.factory.informer(JOBS)
        self.jobs.add_event_handler(on_add=self._maybe, on_update=lambda o, n: self._maybe(n))

    def _maybe(self, job: dict[str, Any]) -> None:
        if (job.get("spec") or {}).get("ttlSecondsAfterFinished") is not None and not md(job).get("deletionTimestamp"):
            self.enqueue(job)

    async def sync(self, key: str) -> None:
        job = self.jobs.indexer.get(key)
        if job is None or md(job).get("deletionTimestamp"):
            return
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        done = finish_time(job)
        if ttl is None or done is None:
            return
        left = done + int(ttl) - time.time()
        if left > 0:
            self.enqueue_after(key, left + 0.1)
            return
        try:
            await self.client.delete(JOBS.path(md(job)["namespace"], md(job)["name"]), body={
                "apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Foreground",
                "preconditions": {"uid": md(job).get("uid"), "resourceVersion": md(job).get("resourceVersion")}})
        except ApiError as e:
            if e.status not in (404, 409):       # 409: changed meanwhile; its update event brings it back
                raise
