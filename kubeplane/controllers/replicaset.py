"""The ReplicaSet controller, and the ReplicationController controller (the same logic
on core/v1's kind with a plain map selector), as upstream's pkg/controller/replicaset.

One sync of a set:
1. read the set and the active pods of its namespace from the caches;
2. claim pods (claims.py: adopt matching orphans, release owned pods that stopped
   matching);
3. if the expectations are satisfied (expectations.py), create or delete the
   difference to spec.replicas: at most 500 per sync (upstream's burstReplicas);
   creations in slow-start batches of 1, 2, 4, ... that stop at the first failure;
   deletions of the pods that rank first in upstream's ActivePods order (podutil.py);
4. write status (replicas, fullyLabeledReplicas, readyReplicas, availableReplicas,
   observedGeneration, the ReplicaFailure condition while creating/deleting fails) when
   it changed; with minReadySeconds, look again when a ready pod will become available.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ..client import PODS, REPLICA_SETS, ApiError, Resource, meta_key
from .base import Context, Controller, now_rfc3339, unwrap
from .claims import Claimer
from .expectations import Expectations
from .podutil import controller_ref, is_active, is_available, is_ready, md, owner_reference, pod_from_template, \
    pods_to_delete
from ..client.selectors import from_map, labels_of, selector_of

log = logging.getLogger("kubeplane.controllers.replicaset")

REPLICATION_CONTROLLERS = Resource("", "v1", "replicationcontrollers", "ReplicationController", True)
BURST_REPLICAS = 500
SLOW_START_INITIAL_BATCH = 1
CONTROLLER_UID_INDEX = "controllerUID"


def controller_uid_index(obj: dict[str, Any]) -> list[str]:
    """Pods (or sets) by the uid of their controller; orphans under "orphan/<namespace>"
    (so a claim looks at its own children and the namespace's orphans, never at every
    object of the namespace)."""
    ref = controller_ref(obj)
    if ref is None:
        return [ORPHAN + ((obj.get("metadata") or {}).get("namespace") or "")]
    return [ref["uid"]] if ref.get("uid") else []


ORPHAN = "orphan/"


def claim_candidates(indexer: Any, owner: dict[str, Any]) -> list[dict[str, Any]]:
    """The objects a claim by `owner` must look at: those it controls and the orphans of
    its namespace (objects controlled by others are never touched by a claim)."""
    m = owner.get("metadata") or {}
    return indexer.by_index(CONTROLLER_UID_INDEX, m.get("uid") or "") + \
        indexer.by_index(CONTROLLER_UID_INDEX, ORPHAN + (m.get("namespace") or ""))


async def slow_start_batch(count: int, initial: int, fn: Any) -> tuple[int, BaseException | None]:
    """upstream's slowStartBatch: call fn() `count` times in batches of initial, 2*initial,
    4*initial, ... (each batch concurrently); stop after the first batch with a failure.
    Returns (successes, the first error)."""
    remaining, successes = count, 0
    batch = min(remaining, initial)
    while batch > 0:
        results = await asyncio.gather(*(fn() for _ in range(batch)), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        successes += batch - len(errors)
        if errors:
            return successes, errors[0]
        remaining -= batch
        batch = min(2 * batch, remaining)
    return successes, None


class ReplicaSetController(Controller):
    name = "replicaset"
    component = "replicaset-controller"
    resource: Resource = REPLICA_SETS

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.expectations = Expectations()
        self.sets = self.factory.informer(self.resource)
        self.sets.add_indexers({CONTROLLER_UID_INDEX: controller_uid_index})
        self.pods = self.factory.informer(PODS)
        self.pods.add_indexers({CONTROLLER_UID_INDEX: controller_uid_index})
        self.sets.add_event_handler(on_add=self.enqueue, on_update=lambda old, new: self.enqueue(new),
                                    on_delete=self._set_deleted)
        self.pods.add_event_handler(on_add=self._pod_added, on_update=self._pod_updated,
                                    on_delete=self._pod_deleted)

    # --- the kind --------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        return self.resource.kind

    def selector(self, rs: dict[str, Any]) -> Any:
        return selector_of({**rs, "apiVersion": self.resource.api_version})

    # --- event handlers --------------------------------------------------------------------
    def _set_deleted(self, obj: Any) -> None:
        key = meta_key(obj)
        self.expectations.delete(key)
        self.queue.add(key)

    def _resolve(self, namespace: str, ref: dict[str, Any] | None) -> dict[str, Any] | None:
        if ref is None or ref.get("kind") != self.kind:
            return None
        rs = self.sets.indexer.get(f"{namespace}/{ref.get('name')}")
        if rs is None or md(rs).get("uid") != ref.get("uid"):
            return None
        return rs

    def _matching_sets(self, pod: dict[str, Any]) -> list[dict[str, Any]]:
        ns = md(pod).get("namespace") or ""
        labels = labels_of(pod)
        return [rs for rs in self.sets.indexer.by_index("namespace", ns) if self.selector(rs)(labels)]

    def _pod_added(self, pod: dict[str, Any]) -> None:
        if md(pod).get("deletionTimestamp"):
            self._pod_deleted(pod)
            return
        ref = controller_ref(pod)
        if ref is not None:
            rs = self._resolve(md(pod).get("namespace") or "", ref)
            if rs is not None:
                key = meta_key(rs)
                self.expectations.creation_observed(key)
                self.queue.add(key)
            return
        for rs in self._matching_sets(pod):
            self.enqueue(rs)

    def _pod_updated(self, old: dict[str, Any], cur: dict[str, Any]) -> None:
        if md(old).get("resourceVersion") == md(cur).get("resourceVersion"):
            return
        labels_changed = labels_of(old) != labels_of(cur)
        if md(cur).get("deletionTimestamp"):
            self._pod_deleted(cur)
            if labels_changed:
                self._pod_deleted(old)
            return
        ns = md(cur).get("namespace") or ""
        cur_ref, old_ref = controller_ref(cur), controller_ref(old)
        ref_changed = (cur_ref or {}).get("uid") != (old_ref or {}).get("uid")
        if ref_changed and old_ref is not None:
            rs = self._resolve(ns, old_ref)
            if rs is not None:
                self.enqueue(rs)
        if cur_ref is not None:
            rs = self._resolve(ns, cur_ref)
            if rs is not None:
                self.enqueue(rs)
                mrs = int((rs.get("spec") or {}).get("minReadySeconds") or 0)
                if mrs > 0 and not is_ready(old) and is_ready(cur):
                    self.enqueue_after(rs, mrs + 1)
            return
        if labels_changed or ref_changed:
            for rs in self._matching_sets(cur):
                self.enqueue(rs)

    def _pod_deleted(self, obj: Any) -> None:
        pod = unwrap(obj)
        rs = self._resolve(md(pod).get("namespace") or "", controller_ref(pod))
        if rs is None:
            return
        key = meta_key(rs)
        self.expectations.deletion_observed(key, meta_key(pod))
        self.queue.add(key)

    # --- sync ------------------------------------------------------------------------------
    async def sync(self, key: str) -> None:
        rs = self.sets.indexer.get(key)
        if rs is None:
            self.expectations.delete(key)
            return
        needs_sync = self.expectations.satisfied(key)
        ns = md(rs).get("namespace") or ""
        active = [p for p in claim_candidates(self.pods.indexer, rs) if is_active(p)]

        async def fresh() -> dict[str, Any] | None:
            try:
                return await self.client.get(self.resource.path(ns, md(rs).get("name")))
            except ApiError as e:
                if e.status == 404:
                    return None
                raise

        claimer = Claimer(self.client, rs, self.resource.api_version, self.kind, self.selector(rs), PODS, fresh)
        pods = await claimer.claim(active)
        err: BaseException | None = None
        if needs_sync and not md(rs).get("deletionTimestamp"):
            err = await self.manage_replicas(key, rs, pods)
        status = self.calculate_status(rs, pods, err)
        await self.update_status(rs, status)
        if err is not None:
            raise err
        mrs = int((rs.get("spec") or {}).get("minReadySeconds") or 0)
        if mrs > 0 and status.get("readyReplicas") != status.get("availableReplicas"):
            self.enqueue_after(key, mrs)

    async def manage_replicas(self, key: str, rs: dict[str, Any], pods: list[dict[str, Any]]) -> BaseException | None:
        want = int((rs.get("spec") or {}).get("replicas", 1) or 0)
        diff = len(pods) - want
        if diff < 0:
            n = min(-diff, BURST_REPLICAS)
            self.expectations.expect_creations(key, n)
            ref = owner_reference(rs, self.resource.api_version, self.kind)
            template = (rs.get("spec") or {}).get("template") or {}
            ns = md(rs).get("namespace") or ""

            async def create() -> None:
                body = pod_from_template(template, rs, ref)
                try:
                    made = await self.client.create(PODS.path(ns), body)
                except ApiError as e:
                    self.recorder.event(rs, "Warning", "FailedCreate", f"Error creating: {e.message}")
                    raise
                self.recorder.event(rs, "Normal", "SuccessfulCreate", f"Created pod: {md(made).get('name')}")

            ok, err = await slow_start_batch(n, SLOW_START_INITIAL_BATCH, create)
            for _ in range(n - ok):                     # never coming: lower the expectation
                self.expectations.creation_observed(key)
            return err
        if diff > 0:
            n = min(diff, BURST_REPLICAS)
            victims = pods_to_delete(pods, self._related_pods(rs), n)
            self.expectations.expect_deletions(key, [meta_key(p) for p in victims])
            results = await asyncio.gather(*(self._delete(key, rs, p) for p in victims), return_exceptions=True)
            errors = [r for r in results if isinstance(r, BaseException)]
            return errors[0] if errors else None
        return None

    async def _delete(self, key: str, rs: dict[str, Any], pod: dict[str, Any]) -> None:
        m = md(pod)
        try:
            await self.client.delete(PODS.path(m.get("namespace"), m.get("name")),
                                     body={"apiVersion": "v1", "kind": "DeleteOptions",
                                           "preconditions": {"uid": m.get("uid")}})
        except ApiError as e:
            self.expectations.deletion_observed(key, meta_key(pod))
            if e.status == 404:
                return
            self.recorder.event(rs, "Warning", "FailedDelete", f"Error deleting: {e.message}")
            raise
        self.recorder.event(rs, "Normal", "SuccessfulDelete", f"Deleted pod: {m.get('name')}")

    def _related_pods(self, rs: dict[str, Any]) -> list[dict[str, Any]]:
        """upstream's getIndirectlyRelatedPods: the pods of every set with the same
        controller (the Deployment's other ReplicaSets), for ranking by node."""
        ref = controller_ref(rs)
        sets = [rs] if ref is None else [s for s in self.sets.indexer.by_index(CONTROLLER_UID_INDEX, ref["uid"])]
        out: list[dict[str, Any]] = []
        for s in sets:
            out.extend(self.pods.indexer.by_index(CONTROLLER_UID_INDEX, md(s).get("uid") or ""))
        return out

    # --- status ----------------------------------------------------------------------------
    def calculate_status(self, rs: dict[str, Any], pods: list[dict[str, Any]],
                         err: BaseException | None) -> dict[str, Any]:
        spec = rs.get("spec") or {}
        old = rs.get("status") or {}
        template_labels = from_map(((spec.get("template") or {}).get("metadata") or {}).get("labels")) \
            if ((spec.get("template") or {}).get("metadata") or {}).get("labels") else (lambda _l: True)
        mrs = int(spec.get("minReadySeconds") or 0)
        now = time.time()
        fully = sum(1 for p in pods if template_labels(labels_of(p)))
        ready = sum(1 for p in pods if is_ready(p))
        available = sum(1 for p in pods if is_available(p, mrs, now))
        conditions = [dict(c) for c in old.get("conditions") or ()]
        failure = next((c for c in conditions if c.get("type") == "ReplicaFailure"), None)
        if err is not None and failure is None:
            diff = len(pods) - int(spec.get("replicas", 1) or 0)
            reason = "FailedCreate" if diff < 0 else "FailedDelete" if diff > 0 else ""
            msg = err.message if isinstance(err, ApiError) else str(err)
            conditions.append({"type": "ReplicaFailure", "status": "True", "lastTransitionTime": now_rfc3339(),
                               "reason": reason, "message": msg})
        elif err is None and failure is not None:
            conditions = [c for c in conditions if c.get("type") != "ReplicaFailure"]
        status: dict[str, Any] = {"replicas": len(pods)}
        for k, v in (("fullyLabeledReplicas", fully), ("readyReplicas", ready), ("availableReplicas", available),
                     ("observedGeneration", md(rs).get("generation"))):
            status[k] = v or None        # omitempty, as upstream
        status["conditions"] = conditions or None
        return status

    async def update_status(self, rs: dict[str, Any], status: dict[str, Any]) -> None:
        old = rs.get("status") or {}
        if all(old.get(k) == v for k, v in status.items()):
            return
        m = md(rs)
        try:
            await self.client.patch(self.resource.path(m.get("namespace"), m.get("name"), "status"),
                                    {"status": status}, patch_type="merge")
        except ApiError as e:
            if e.status != 404:
                raise


class ReplicationControllerController(ReplicaSetController):
    name = "replicationcontroller"
    component = "replication-controller"
    resource = REPLICATION_CONTROLLERS
    requires = (REPLICATION_CONTROLLERS,)
