"""The Deployment controller (upstream's pkg/controller/deployment).

One sync of a Deployment, as upstream's syncDeployment:
1. claim its ReplicaSets (adopt matching orphans, release the ones that stop matching);
2. being deleted: status only. Paused, or a scaling event (an active set's
   desired-replicas annotation differs from spec.replicas): `sync` — scale
   proportionally (deployment_util.proportional_sizes), clean up history when paused,
   write status;
3. otherwise roll out: Recreate (all old sets to 0, wait until their pods are gone, then
   the new set to replicas) or RollingUpdate (grow the new set within replicas+maxSurge,
   shrink old ones while at least replicas-maxUnavailable stay available: first their
   unhealthy pods, then oldest sets first);
4. status: the counters `kubectl rollout status` reads (observedGeneration, replicas,
   updatedReplicas, readyReplicas, availableReplicas, unavailableReplicas), Available
   (MinimumReplicasAvailable / MinimumReplicasUnavailable) and Progressing
   (NewReplicaSetCreated, FoundNewReplicaSet, ReplicaSetUpdated, NewReplicaSetAvailable,
   ProgressDeadlineExceeded, DeploymentPaused, DeploymentResumed) with upstream's
   messages; a rollout that has not completed is looked at again when its deadline ends.

The new ReplicaSet is named `<deployment>-<hash>` with the pod-template-hash label on
its selector and template (deployment_util.compute_hash), carries the revision
(`deployment.kubernetes.io/revision`, max of the old ones + 1) and the desired/max
replicas annotations. `kubectl rollout undo` copies an old set's template back into the
Deployment: that set becomes the new one again and gets the next revision. Old sets
beyond revisionHistoryLimit that are scaled to 0 are deleted, lowest revision first.
"""
from __future__ import annotations

import copy
import logging
import time
from typing import Any

from ..client import DEPLOYMENTS, PODS, REPLICA_SETS, ApiError, meta_key
from . import deployment_util as du
from .base import Context, Controller, unwrap
from .claims import Claimer
from .podutil import controller_ref, md
from .replicaset import CONTROLLER_UID_INDEX, claim_candidates, controller_uid_index
from ..client.selectors import label_selector, labels_of

log = logging.getLogger("kubeplane.controllers.deployment")


class DeploymentController(Controller):
    name = "deployment"
    component = "deployment-controller"

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.deployments = self.factory.informer(DEPLOYMENTS)
        self.sets = self.factory.informer(REPLICA_SETS)
        self.sets.add_indexers({CONTROLLER_UID_INDEX: controller_uid_index})
        self.pods = self.factory.informer(PODS)
        self.pods.add_indexers({CONTROLLER_UID_INDEX: controller_uid_index})
        self.deployments.add_event_handler(on_add=self.enqueue, on_update=lambda old, new: self.enqueue(new),
                                           on_delete=lambda o: self.enqueue(unwrap(o)))
        self.sets.add_event_handler(on_add=self._rs_added, on_update=self._rs_updated,
                                    on_delete=lambda o: self._rs_owner_changed(unwrap(o)))
        self.pods.add_event_handler(on_delete=self._pod_deleted)

    # --- event handlers --------------------------------------------------------------------
    def _owner(self, ns: str, ref: dict[str, Any] | None) -> dict[str, Any] | None:
        if ref is None or ref.get("kind") != "Deployment":
            return None
        d = self.deployments.indexer.get(f"{ns}/{ref.get('name')}")
        return d if d is not None and md(d).get("uid") == ref.get("uid") else None

    def _matching(self, rs: dict[str, Any]) -> list[dict[str, Any]]:
        ns = md(rs).get("namespace") or ""
        return [d for d in self.deployments.indexer.by_index("namespace", ns)
                if label_selector((d.get("spec") or {}).get("selector"))(labels_of(rs))]

    def _rs_owner_changed(self, rs: dict[str, Any]) -> None:
        d = self._owner(md(rs).get("namespace") or "", controller_ref(rs))
        if d is not None:
            self.enqueue(d)

    def _rs_added(self, rs: dict[str, Any]) -> None:
        if md(rs).get("deletionTimestamp"):
            self._rs_owner_changed(rs)
            return
        if controller_ref(rs) is not None:
            self._rs_owner_changed(rs)
            return
        for d in self._matching(rs):
            self.enqueue(d)

    def _rs_updated(self, old: dict[str, Any], cur: dict[str, Any]) -> None:
        if md(old).get("resourceVersion") == md(cur).get("resourceVersion"):
            return
        ns = md(cur).get("namespace") or ""
        cref, oref = controller_ref(cur), controller_ref(old)
        if (cref or {}).get("uid") != (oref or {}).get("uid") and oref is not None:
            d = self._owner(ns, oref)
            if d is not None:
                self.enqueue(d)
        if cref is not None:
            d = self._owner(ns, cref)
            if d is not None:
                self.enqueue(d)
            return
        if labels_of(old) != labels_of(cur) or (cref or {}).get("uid") != (oref or {}).get("uid"):
            for d in self._matching(cur):
                self.enqueue(d)

    def _pod_deleted(self, obj: Any) -> None:
        """Recreate waits for old pods to be gone: a deleted pod of ours wakes its Deployment."""
        pod = unwrap(obj)
        ns = md(pod).get("namespace") or ""
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return
        rs = self.sets.indexer.get(f"{ns}/{ref.get('name')}")
        if rs is None:
            return
        d = self._owner(ns, controller_ref(rs))
        if d is not None and not du.is_rolling(d) and not self._pods_left(d):
            self.enqueue(d)          # upstream enqueues only when no pod of the Deployment is left

    def _pods_left(self, d: dict[str, Any]) -> bool:
        for rs in self.sets.indexer.by_index(CONTROLLER_UID_INDEX, md(d).get("uid") or ""):
            if self.pods.indexer.by_index(CONTROLLER_UID_INDEX, md(rs).get("uid") or ""):
                return True
        return False

    # --- sync ------------------------------------------------------------------------------
    async def sync(self, key: str) -> None:
        d = self.deployments.indexer.get(key)
        if d is None:
            return
        d = copy.deepcopy(d)
        d.setdefault("status", {})
        sel = (d.get("spec") or {}).get("selector") or {}
        if not sel.get("matchLabels") and not sel.get("matchExpressions"):
            # an empty selector would match every pod: upstream refuses to act on it
            self.recorder.event(d, "Warning", "SelectingAll", "This deployment is selecting all pods. "
                                "A non-empty selector is required.")
            if int(d["status"].get("observedGeneration") or 0) < int(md(d).get("generation") or 0):
                await self._write_status(d, {**d["status"], "observedGeneration": md(d).get("generation")})
            return
        rs_list = await self._claim_sets(d)
        if md(d).get("deletionTimestamp"):
            await self.sync_status_only(d, rs_list)
            return
        await self._check_paused_conditions(d)
        if (d.get("spec") or {}).get("paused"):
            await self.sync_scale(d, rs_list)
            return
        if await self._is_scaling_event(d, rs_list):
            await self.sync_scale(d, rs_list)
            return
        if du.is_rolling(d):
            await self.rollout_rolling(d, rs_list)
        else:
            await self.rollout_recreate(d, rs_list)

    async def _claim_sets(self, d: dict[str, Any]) -> list[dict[str, Any]]:
        ns = md(d).get("namespace") or ""

        async def fresh() -> dict[str, Any] | None:
            try:
                return await self.client.get(DEPLOYMENTS.path(ns, md(d).get("name")))
            except ApiError as e:
                if e.status == 404:
                    return None
                raise

        claimer = Claimer(self.client, d, "apps/v1", "Deployment", label_selector(d["spec"]["selector"]),
                          REPLICA_SETS, fresh)
        return await claimer.claim(claim_candidates(self.sets.indexer, d))

    # --- new and old sets ------------------------------------------------------------------
    def _find_new(self, d: dict[str, Any], rs_list: list[dict[str, Any]]) -> dict[str, Any] | None:
        template = d["spec"].get("template") or {}
        for rs in du.by_creation(rs_list):
            if du.equal_ignore_hash((rs.get("spec") or {}).get("template") or {}, template):
                return rs
        return None

    async def get_all_sets(self, d: dict[str, Any], rs_list: list[dict[str, Any]],
                           create: bool) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """upstream's getAllReplicaSetsAndSyncRevision."""
        new = self._find_new(d, rs_list)
        olds = [rs for rs in rs_list if rs is not new]
        max_old = max((du.revision(rs) for rs in olds), default=0)
        new = await self._get_new_set(d, rs_list, olds, new, max_old + 1, create)
        return new, olds

    def _rs_annotations(self, d: dict[str, Any], rs: dict[str, Any], new_revision: int, exists: bool) -> bool:
        """upstream's SetNewReplicaSetAnnotations on `rs` (mutated); True if changed."""
        ann = rs.setdefault("metadata", {}).setdefault("annotations", {})
        before = dict(ann)
        for k, v in (md(d).get("annotations") or {}).items():
            if k not in du.SKIP_ANNOTATIONS:
                ann[k] = v
        old_rev = ann.get(du.REVISION)
        try:
            old_int = int(old_rev) if old_rev is not None else 0
        except ValueError:
            old_int = 0
        if old_int < new_revision:
            ann[du.REVISION] = str(new_revision)
        if not exists:
            ann[du.DESIRED_REPLICAS] = str(du.spec_replicas(d))
            ann[du.MAX_REPLICAS] = str(du.spec_replicas(d) + du.max_surge(d))
        return ann != before

    async def _get_new_set(self, d: dict[str, Any], rs_list: list[dict[str, Any]], olds: list[dict[str, Any]],
                           existing: dict[str, Any] | None, new_revision: int, create: bool) -> dict[str, Any] | None:
        ns, dname = md(d).get("namespace") or "", md(d).get("name") or ""
        status = d["status"]
        if existing is not None:
            rs = copy.deepcopy(existing)
            changed = self._rs_annotations(d, rs, new_revision, True)
            mrs = int(d["spec"].get("minReadySeconds") or 0)
            if changed or int(rs["spec"].get("minReadySeconds") or 0) != mrs:
                rs["spec"]["minReadySeconds"] = mrs
                return await self.client.update(REPLICA_SETS.path(ns, md(rs)["name"]), rs)
            rev = (md(rs).get("annotations") or {}).get(du.REVISION)
            await self._set_deployment_revision(d, rev)
            if du.has_progress_deadline(d) and du.get_condition(status, "Progressing") is None:
                du.set_condition(status, du.new_condition("Progressing", "True", du.FOUND_NEW_RS,
                                                          f'Found new replica set "{md(rs)["name"]}"'))
                await self._write_status(d, status)
            return rs
        if not create:
            return None
        template = copy.deepcopy(d["spec"].get("template") or {})
        h = du.compute_hash(template, status.get("collisionCount"))
        template.setdefault("metadata", {}).setdefault("labels", {})[du.POD_TEMPLATE_HASH] = h
        selector = copy.deepcopy(d["spec"]["selector"])
        selector.setdefault("matchLabels", {})[du.POD_TEMPLATE_HASH] = h
        name = f"{dname}-{h}"
        rs: dict[str, Any] = {
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": ns, "labels": dict(template["metadata"]["labels"]),
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": dname,
                                              "uid": md(d).get("uid"), "controller": True,
                                              "blockOwnerDeletion": True}]},
            "spec": {"replicas": 0, "minReadySeconds": int(d["spec"].get("minReadySeconds") or 0),
                     "selector": selector, "template": template}}
        all_rss: list[dict[str, Any] | None] = [*olds, rs]
        replicas = du.new_rs_new_replicas(d, all_rss, rs)
        rs["spec"]["replicas"] = replicas
        self._rs_annotations(d, rs, new_revision, False)
        try:
            made = await self.client.create(REPLICA_SETS.path(ns), rs)
        except ApiError as e:
            if e.status == 409 and e.reason == "AlreadyExists":
                cur = self.sets.indexer.get(f"{ns}/{name}")
                if cur is None:
                    try:
                        cur = await self.client.get(REPLICA_SETS.path(ns, name))
                    except ApiError:
                        cur = None
                if cur is not None and controller_ref(cur) and controller_ref(cur).get("uid") == md(d).get("uid") \
                        and du.equal_ignore_hash((cur.get("spec") or {}).get("template") or {}, d["spec"]["template"]):
                    return cur
                status["collisionCount"] = int(status.get("collisionCount") or 0) + 1
                await self._write_status(d, status)
                raise
            if du.has_progress_deadline(d):
                du.set_condition(status, du.new_condition("Progressing", "False", du.FAILED_RS_CREATE,
                                                          f"Failed to create new replica set \"{name}\": {e.message}"))
                await self._write_status(d, status)
            self.recorder.event(d, "Warning", du.FAILED_RS_CREATE, f"Failed to create new replica set \"{name}\": "
                                f"{e.message}")
            raise
        if replicas > 0:
            self.recorder.event(d, "Normal", "ScalingReplicaSet",
                                f"Scaled up replica set {name} from 0 to {replicas}")
        await self._set_deployment_revision(d, str(new_revision))
        if du.has_progress_deadline(d):
            du.set_condition(status, du.new_condition("Progressing", "True", du.NEW_RS_CREATED,
                                                      f'Created new replica set "{name}"'))
            await self._write_status(d, status)
        return made

    async def _set_deployment_revision(self, d: dict[str, Any], rev: str | None) -> None:
        """The Deployment carries the revision of its new set (an annotation)."""
        if rev is None or (md(d).get("annotations") or {}).get(du.REVISION) == rev:
            return
        out = await self.client.patch(DEPLOYMENTS.path(md(d)["namespace"], md(d)["name"]),
                                      {"metadata": {"annotations": {du.REVISION: rev}}}, patch_type="merge")
        d.setdefault("metadata", {}).setdefault("annotations", {})[du.REVISION] = rev
        d["metadata"]["resourceVersion"] = md(out).get("resourceVersion")

    # --- scaling ---------------------------------------------------------------------------
    async def scale_rs(self, d: dict[str, Any], rs: dict[str, Any], size: int, op: str = "") -> tuple[bool, dict]:
        """upstream's scaleReplicaSet: replicas and the desired/max annotations; an event
        when the size changed. Returns (scaled, the set as written)."""
        cur = du.rs_spec(rs)
        new = copy.deepcopy(rs)
        ann = new.setdefault("metadata", {}).setdefault("annotations", {})
        want_desired, want_max = str(du.spec_replicas(d)), str(du.spec_replicas(d) + du.max_surge(d))
        ann_changed = ann.get(du.DESIRED_REPLICAS) != want_desired or ann.get(du.MAX_REPLICAS) != want_max
        if cur == size and not ann_changed:
            return False, rs
        ann[du.DESIRED_REPLICAS], ann[du.MAX_REPLICAS] = want_desired, want_max
        new["spec"]["replicas"] = size
        out = await self.client.update(REPLICA_SETS.path(md(rs)["namespace"], md(rs)["name"]), new)
        if cur != size:
            op = op or ("up" if cur < size else "down")
            self.recorder.event(d, "Normal", "ScalingReplicaSet",
                                f"Scaled {op} replica set {md(rs)['name']} from {cur} to {size}")
        return cur != size, out

    async def scale_rs_and_record(self, d: dict[str, Any], rs: dict[str, Any], size: int) -> tuple[bool, dict]:
        if du.rs_spec(rs) == size:
            return False, rs
        return await self.scale_rs(d, rs, size)

    async def _scale(self, d: dict[str, Any], new: dict[str, Any] | None, olds: list[dict[str, Any]]) -> None:
        """upstream's scale(): one active set takes the whole size; otherwise proportional."""
        target = self._active_or_latest(new, olds)
        if target is not None:
            if du.rs_spec(target) != du.spec_replicas(d):
                await self.scale_rs_and_record(d, target, du.spec_replicas(d))
            return
        if du.is_saturated(d, new):
            for rs in du.active(olds):
                await self.scale_rs_and_record(d, rs, 0)
            return
        if du.is_rolling(d):
            sets = du.active([*olds, new])
            sizes, op = du.proportional_sizes(d, sets)
            for rs in sets:
                await self.scale_rs(d, rs, sizes[md(rs)["name"]], op)

    @staticmethod
    def _active_or_latest(new: dict[str, Any] | None, olds: list[dict[str, Any]]) -> dict[str, Any] | None:
        if new is None and not olds:
            return None
        olds_newest_first = list(reversed(du.by_creation(olds)))
        act = du.active([*olds_newest_first, new])
        if len(act) == 0:
            return new if new is not None else olds_newest_first[0]
        if len(act) == 1:
            return act[0]
        return None

    async def _is_scaling_event(self, d: dict[str, Any], rs_list: list[dict[str, Any]]) -> bool:
        new, olds = await self.get_all_sets(d, rs_list, False)
        for rs in du.active([*olds, new]):
            want = du.desired_replicas_annotation(rs)
            if want is not None and want != du.spec_replicas(d):
                return True
        return False

    async def sync_scale(self, d: dict[str, Any], rs_list: list[dict[str, Any]]) -> None:
        """upstream's sync(): paused or scaled Deployments."""
        new, olds = await self.get_all_sets(d, rs_list, False)
        await self._scale(d, new, olds)
        if (d.get("spec") or {}).get("paused"):
            await self.cleanup(d, olds)
        await self.sync_status(d, self._fresh_sets(d, [*olds, new]), self._fresh(new))

    def _fresh(self, rs: dict[str, Any] | None) -> dict[str, Any] | None:
        if rs is None:
            return None
        return self.sets.indexer.get(meta_key(rs)) or rs

    def _fresh_sets(self, d: dict[str, Any], rss: list[dict[str, Any] | None]) -> list[dict[str, Any] | None]:
        return [self._fresh(rs) for rs in rss]

    async def sync_status_only(self, d: dict[str, Any], rs_list: list[dict[str, Any]]) -> None:
        new, olds = await self.get_all_sets(d, rs_list, False)
        await self.sync_status(d, [*olds, new], new)

    # --- rollouts --------------------------------------------------------------------------
    async def rollout_rolling(self, d: dict[str, Any], rs_list: list[dict[str, Any]]) -> None:
        new, olds = await self.get_all_sets(d, rs_list, True)
        assert new is not None
        all_rss: list[dict[str, Any] | None] = [*olds, new]
        scaled, new = await self._reconcile_new(d, all_rss, new)
        if scaled:
            await self.sync_rollout_status(d, [*olds, new], new)
            return
        scaled_down, olds = await self._reconcile_olds(d, olds, new)
        if scaled_down:
            await self.sync_rollout_status(d, [*olds, new], new)
            return
        if du.deployment_complete(d, d["status"]):
            await self.cleanup(d, olds)
        await self.sync_rollout_status(d, [*olds, new], new)

    async def _reconcile_new(self, d: dict[str, Any], all_rss: list[dict[str, Any] | None],
                             new: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        want = du.spec_replicas(d)
        if du.rs_spec(new) == want:
            return False, new
        if du.rs_spec(new) > want:
            return await self.scale_rs_and_record(d, new, want)
        return await self.scale_rs_and_record(d, new, du.new_rs_new_replicas(d, all_rss, new))

    async def _reconcile_olds(self, d: dict[str, Any], olds: list[dict[str, Any]],
                              new: dict[str, Any]) -> tuple[bool, list[dict[str, Any]]]:
        """upstream's reconcileOldReplicaSets."""
        act_olds = du.active(olds)
        if du.replica_count(act_olds) == 0:
            return False, olds
        all_count = du.replica_count([*act_olds, new])
        min_available = du.spec_replicas(d) - du.max_unavailable(d)
        new_unavailable = du.rs_spec(new) - int((new.get("status") or {}).get("availableReplicas") or 0)
        max_scaled_down = all_count - min_available - new_unavailable
        if max_scaled_down <= 0:
            return False, olds
        written: dict[str, dict[str, Any]] = {}
        # 1. unhealthy replicas of old sets first (they do not count as available anyway)
        cleaned = 0
        for rs in du.by_creation(act_olds):
            if cleaned >= max_scaled_down:
                break
            size, avail = du.rs_spec(rs), int((rs.get("status") or {}).get("availableReplicas") or 0)
            if size == 0 or size == avail:
                continue
            n = min(max_scaled_down - cleaned, size - avail)
            _, out = await self.scale_rs_and_record(d, rs, size - n)
            written[md(rs)["name"]] = out
            cleaned += n
        olds = [written.get(md(rs)["name"], rs) for rs in olds]
        act_olds = du.active(olds)
        # 2. then scale down as far as availability allows, oldest first
        available = du.available_count([*act_olds, new])
        total = available - min_available
        down = 0
        if total > 0:
            for rs in du.by_creation(act_olds):
                if down >= total:
                    break
                if du.rs_spec(rs) == 0:
                    continue
                n = min(du.rs_spec(rs), total - down)
                _, out = await self.scale_rs_and_record(d, rs, du.rs_spec(rs) - n)
                written[md(rs)["name"]] = out
                down += n
        olds = [written.get(md(rs)["name"], rs) for rs in olds]
        return cleaned + down > 0, olds

    async def rollout_recreate(self, d: dict[str, Any], rs_list: list[dict[str, Any]]) -> None:
        new, olds = await self.get_all_sets(d, rs_list, False)
        act_olds = du.active(olds)
        scaled = False
        written: dict[str, dict[str, Any]] = {}
        for rs in act_olds:
            s, out = await self.scale_rs_and_record(d, rs, 0)
            written[md(rs)["name"]] = out
            scaled = scaled or s
        olds = [written.get(md(rs)["name"], rs) for rs in olds]
        if scaled:
            await self.sync_rollout_status(d, [*olds, new], new)
            return
        if self._old_pods_running(new, olds):
            await self.sync_rollout_status(d, [*olds, new], new)
            return
        if new is None:
            new, olds = await self.get_all_sets(d, rs_list, True)
        assert new is not None
        _, new = await self.scale_rs_and_record(d, new, du.spec_replicas(d))
        if du.deployment_complete(d, d["status"]):
            await self.cleanup(d, olds)
        await self.sync_rollout_status(d, [*olds, new], new)

    def _old_pods_running(self, new: dict[str, Any] | None, olds: list[dict[str, Any]]) -> bool:
        if du.actual_count(olds) > 0:
            return True
        for rs in olds:
            for p in self.pods.indexer.by_index(CONTROLLER_UID_INDEX, md(rs).get("uid") or ""):
                if (p.get("status") or {}).get("phase") not in ("Failed", "Succeeded"):
                    return True
        return False

    # --- history ---------------------------------------------------------------------------
    async def cleanup(self, d: dict[str, Any], olds: list[dict[str, Any]]) -> None:
        """Delete old sets beyond revisionHistoryLimit that are at 0, lowest revision first."""
        limit = (d.get("spec") or {}).get("revisionHistoryLimit")
        if limit is None:
            return
        alive = [rs for rs in olds if not md(rs).get("deletionTimestamp")]
        diff = len(alive) - int(limit)
        if diff <= 0:
            return
        for rs in du.by_revision(alive)[:diff]:
            st = rs.get("status") or {}
            if int(st.get("replicas") or 0) != 0 or du.rs_spec(rs) != 0 \
                    or int(md(rs).get("generation") or 0) > int(st.get("observedGeneration") or 0):
                continue
            try:
                await self.client.delete(REPLICA_SETS.path(md(rs)["namespace"], md(rs)["name"]),
                                         body={"apiVersion": "v1", "kind": "DeleteOptions",
                                               "preconditions": {"uid": md(rs).get("uid")}})
            except ApiError as e:
                if e.status not in (404, 409):
                    raise

    # --- status ----------------------------------------------------------------------------
    def calculate_status(self, d: dict[str, Any], all_rss: list[dict[str, Any] | None],
                         new: dict[str, Any] | None) -> dict[str, Any]:
        available = du.available_count(all_rss)
        total = du.replica_count(all_rss)
        status: dict[str, Any] = {
            "observedGeneration": md(d).get("generation"),
            "replicas": du.actual_count(all_rss),
            "updatedReplicas": du.actual_count([new]),
            "readyReplicas": du.ready_count(all_rss),
            "availableReplicas": available,
            "unavailableReplicas": max(total - available, 0),
            "conditions": [dict(c) for c in d["status"].get("conditions") or ()],
        }
        if d["status"].get("collisionCount") is not None:
            status["collisionCount"] = d["status"]["collisionCount"]
        if available >= du.spec_replicas(d) - du.max_unavailable(d):
            du.set_condition(status, du.new_condition("Available", "True", du.MIN_AVAILABLE,
                                                      "Deployment has minimum availability."))
        else:
            du.set_condition(status, du.new_condition("Available", "False", du.MIN_UNAVAILABLE,
                                                      "Deployment does not have minimum availability."))
        return status

    async def sync_status(self, d: dict[str, Any], all_rss: list[dict[str, Any] | None],
                          new: dict[str, Any] | None) -> None:
        await self._write_status(d, self.calculate_status(d, all_rss, new))

    async def sync_rollout_status(self, d: dict[str, Any], all_rss: list[dict[str, Any] | None],
                                  new: dict[str, Any] | None) -> None:
        """upstream's syncRolloutStatus: Progressing by the rollout's state, then requeue
        a rollout in progress at its deadline."""
        status = self.calculate_status(d, all_rss, new)
        if not du.has_progress_deadline(d):
            du.remove_condition(status, "Progressing")
        cur = du.get_condition(d["status"], "Progressing")
        complete_already = status["replicas"] == status["updatedReplicas"] and cur is not None \
            and cur.get("reason") == du.NEW_RS_AVAILABLE
        now = time.time()
        if du.has_progress_deadline(d) and not complete_already:
            what = f'ReplicaSet "{md(new)["name"]}"' if new is not None else f'Deployment "{md(d)["name"]}"'
            if du.deployment_complete(d, status):
                du.set_condition(status, du.new_condition("Progressing", "True", du.NEW_RS_AVAILABLE,
                                                          f"{what} has successfully progressed."))
            elif du.deployment_progressing(d, status):
                cond = du.new_condition("Progressing", "True", du.RS_UPDATED, f"{what} is progressing.")
                if cur is not None:
                    if cur.get("status") == "True":
                        cond["lastTransitionTime"] = cur.get("lastTransitionTime")
                    du.remove_condition(status, "Progressing")
                du.set_condition(status, cond)
            elif du.deployment_timed_out(d, status, now):
                du.set_condition(status, du.new_condition("Progressing", "False", du.TIMED_OUT,
                                                          f"{what} has timed out progressing."))
        failure = next((c for rs in all_rss if rs is not None
                        for c in (rs.get("status") or {}).get("conditions") or ()
                        if c.get("type") == "ReplicaFailure" and c.get("status") == "True"), None)
        if failure is not None:
            du.set_condition(status, du.new_condition("ReplicaFailure", failure.get("status", "True"),
                                                      failure.get("reason", ""), failure.get("message", "")))
        else:
            du.remove_condition(status, "ReplicaFailure")
        await self._write_status(d, status)
        self._requeue_stuck(d, status, now)

    def _requeue_stuck(self, d: dict[str, Any], status: dict[str, Any], now: float) -> None:
        cur = du.get_condition(status, "Progressing")
        if not du.has_progress_deadline(d) or cur is None:
            return
        if du.deployment_complete(d, status) or cur.get("reason") == du.TIMED_OUT:
            return
        since = du.parse_or_zero(cur.get("lastUpdateTime"))
        after = since + int(d["spec"]["progressDeadlineSeconds"]) - now
        self.enqueue_after(d, max(after, 0) + 1 if after >= 1 else 1)

    async def _check_paused_conditions(self, d: dict[str, Any]) -> None:
        if not du.has_progress_deadline(d):
            return
        status = d["status"]
        cond = du.get_condition(status, "Progressing")
        if cond is not None and cond.get("reason") == du.TIMED_OUT:
            return
        paused = bool((d.get("spec") or {}).get("paused"))
        exists = cond is not None and cond.get("reason") == du.PAUSED
        if paused and not exists:
            du.set_condition(status, du.new_condition("Progressing", "Unknown", du.PAUSED, "Deployment is paused"))
        elif not paused and exists:
            du.set_condition(status, du.new_condition("Progressing", "Unknown", du.RESUMED, "Deployment is resumed"))
        else:
            return
        await self._write_status(d, status)

    async def _write_status(self, d: dict[str, Any], status: dict[str, Any]) -> None:
        """A merge patch of the whole status when it differs from what we last saw;
        zero counters are omitted (omitempty, as upstream's JSON)."""
        out: dict[str, Any] = {}
        for k in ("observedGeneration", "replicas", "updatedReplicas", "readyReplicas", "availableReplicas",
                  "unavailableReplicas", "collisionCount"):
            v = status.get(k)
            out[k] = v if v else None
        if status.get("collisionCount") is not None:
            out["collisionCount"] = status["collisionCount"]
        out["conditions"] = status.get("conditions") or None
        old = d.get("status") or {}
        if all(old.get(k) == v for k, v in out.items()):
            return
        try:
            res = await self.client.patch(DEPLOYMENTS.path(md(d)["namespace"], md(d)["name"], "status"),
                                          {"status": out}, patch_type="merge")
        except ApiError as e:
            if e.status == 404:
                return
            raise
        d["status"] = res.get("status") or {k: v for k, v in out.items() if v is not None}
