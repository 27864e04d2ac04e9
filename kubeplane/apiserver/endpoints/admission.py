"""The Priority admission plugin (upstream plugin/pkg/admission/priority), as a default
cluster runs it:

- pod create: `spec.priorityClassName` names a PriorityClass whose value becomes
  `spec.priority` and whose preemptionPolicy becomes `spec.preemptionPolicy`; without a
  name, the global default class gives both (and its name), else priority 0 and
  PreemptLowerPriority. An unknown class, or a priority / preemption policy the client
  set that differs from the computed one, is 403 Forbidden in upstream's words.
- pod update: a priority or preemption policy left out keeps the old one (validation then
  refuses any other change to them, as pod spec updates are).
- PriorityClass create and update: at most one class is the global default (403 naming
  the existing one).

PriorityClasses are read from the store (upstream reads an informer's cache); there are
few of them, so one range read per pod create. Subresources are not admitted.
"""
from __future__ import annotations

from typing import Any

import orjson

from ..machinery import errors
from ..registry.registry import Registry
from ..registry.resources import ResourceInfo
from ..registry.storage import ObjectStore, key_of

PREEMPT_LOWER = "PreemptLowerPriority"


def _forbidden(info: ResourceInfo, name: str, why: str) -> errors.APIError:
    """admission.NewForbidden: `<resource> "<name>" is forbidden: <why>`."""
    details = {"name": name, "group": info.group, "kind": info.plural} if info.group else \
        {"name": name, "kind": info.plural}
    return errors.APIError(403, "Forbidden", f'{info.qualified} "{name}" is forbidden: {why}', details)


class PriorityAdmission:
    def __init__(self, objects: ObjectStore, registry: Registry):
        self.objects = objects
        self.registry = registry

    @property
    def _classes(self) -> ResourceInfo | None:
        return self.registry.get("scheduling.k8s.io", "v1", "priorityclasses")

    async def _class(self, name: str) -> dict[str, Any] | None:
        info = self._classes
        kv = await self.objects.get_kv(key_of(info, None, name), info=info) if info else None
        return orjson.loads(kv.value) if kv is not None else None

    async def default_class(self) -> dict[str, Any] | None:
        """The global default class; of several (a race upstream allows too), the lowest value."""
        info = self._classes
        if info is None:
            return None
        kvs, _, _, _ = await self.objects.list(info, None)
        best = None
        for kv in kvs:
            pc = orjson.loads(kv.value)
            if pc.get("globalDefault") is True and (best is None or (pc.get("value") or 0) < (best.get("value") or 0)):
                best = pc
        return best

    async def admit_create(self, info: ResourceInfo, obj: dict[str, Any]) -> None:
        if info.group == "" and info.plural == "pods":
            await self._admit_pod(info, obj)
        elif info.group == "scheduling.k8s.io" and info.plural == "priorityclasses":
            await self._validate_class(info, obj, None)

    async def admit_update(self, info: ResourceInfo, new: dict[str, Any], old: dict[str, Any],
                           subresource: str | None) -> None:
        if subresource is not None:
            return
        if info.group == "" and info.plural == "pods":
            spec, old_spec = new.get("spec"), old.get("spec") or {}
            if isinstance(spec, dict):
                for k in ("priority", "preemptionPolicy"):
                    if spec.get(k) is None and old_spec.get(k) is not None:
                        spec[k] = old_spec[k]
        elif info.group == "scheduling.k8s.io" and info.plural == "priorityclasses":
            await self._validate_class(info, new, old)

    async def _admit_pod(self, info: ResourceInfo, pod: dict[str, Any]) -> None:
        spec = pod.get("spec")
        if not isinstance(spec, dict):
            return
        name = (pod.get("metadata") or {}).get("name") or ""
        class_name = spec.get("priorityClassName")
        if not class_name:
            pc = await self.default_class()
            if pc is not None:
                spec["priorityClassName"] = pc["metadata"]["name"]
                priority, policy = pc.get("value") or 0, pc.get("preemptionPolicy")
            else:
                priority, policy = 0, PREEMPT_LOWER
        else:
            pc = await self._class(str(class_name))
            if pc is None:
                raise _forbidden(info, name, f"no PriorityClass with name {class_name} was found")
            priority, policy = pc.get("value") or 0, pc.get("preemptionPolicy")
        given = spec.get("priority")
        if given is not None and given != priority:
            raise _forbidden(info, name, f"the integer value of priority ({given}) must not be provided in pod spec; "
                                         f"priority admission controller computed {priority} from the given "
                                         "PriorityClass name")
        spec["priority"] = priority
        if policy is not None:
            given_policy = spec.get("preemptionPolicy")
            if given_policy is not None and given_policy != policy:
                raise _forbidden(info, name, f"the string value of PreemptionPolicy ({given_policy}) must not be "
                                             f"provided in pod spec; priority admission controller computed {policy} "
                                             "from the given PriorityClass name")
            spec["preemptionPolicy"] = policy

    async def _validate_class(self, info: ResourceInfo, pc: dict[str, Any], old: dict[str, Any] | None) -> None:
        if pc.get("globalDefault") is not True:
            return
        name = (pc.get("metadata") or {}).get("name") or ""
        current = await self.default_class()
        if current is not None and (old is None or current["metadata"]["name"] != name):
            raise _forbidden(info, name, f"PriorityClass {current['metadata']['name']} is already marked as default. "
                                         "Only one default can exist")
