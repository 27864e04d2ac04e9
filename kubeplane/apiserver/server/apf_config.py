"""Keeps the flow controller's configuration equal to the stored FlowSchemas and
PriorityLevelConfigurations (upstream's APF config consumer and bootstrap ensurer).

- At start, upstream's mandatory objects (exempt, catch-all) and suggested ones
  (leader-election, node-high, system, workload-high, workload-low, global-default and
  their FlowSchemas) are created when missing. An existing one whose annotation
  `apf.kubernetes.io/autoupdate-spec` is "true" gets the bootstrap spec back; one the
  user set to "false" is left alone. A deleted mandatory object is recreated.
- Each change to either resource (a store watch on each prefix) re-reads both and
  applies them to the controller at once, so `kubectl apply` of a FlowSchema takes
  effect for the next request.
- FlowSchema status carries the `Dangling` condition (True when its priority level
  does not exist), written only when it changes.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from ..machinery import errors
from ..endpoints.common import Route, now_rfc3339
from ...store.interface import Store
from ..endpoints.handlers import RESTHandlers
from ..registry.registry import Registry
from ..registry.storage import ObjectStore, decode, key_of



class ServerParts(Protocol):
    """What the config keeper uses of the server (`APIServer` is one); a protocol, so that
    this module does not import the server that imports it."""
    registry: Registry
    handlers: RESTHandlers
    objects: ObjectStore
    store: Store

log = logging.getLogger("kubeplane.apiserver.apf")

GROUP = "flowcontrol.apiserver.k8s.io"
AUTOUPDATE = "apf.kubernetes.io/autoupdate-spec"
MANAGER = "api-priority-and-fairness-config-consumer-v1"


class APFConfig:
    def __init__(self, server: ServerParts, controller: Any):
        self.server = server
        self.controller = controller
        self._task: asyncio.Task | None = None
        self.applied = asyncio.Event()

    def _infos(self):
        reg = self.server.registry
        return reg.get(GROUP, "v1", "flowschemas"), reg.get(GROUP, "v1", "prioritylevelconfigurations")

    # --- bootstrap -------------------------------------------------------------------------
    async def ensure(self, only_missing_mandatory: bool = False) -> None:
        from ..flowcontrol import bootstrap

        fs_info, pl_info = self._infos()
        sets = [(pl_info, bootstrap.mandatory_priority_levels(), True),
                (fs_info, bootstrap.mandatory_flow_schemas(), True)]
        if not only_missing_mandatory:
            sets[1:1] = [(pl_info, bootstrap.suggested_priority_levels(), False)]
            sets.append((fs_info, bootstrap.suggested_flow_schemas(), False))
        h = self.server.handlers
        for info, objs, mandatory in sets:
            for want in objs:
                name = want["metadata"]["name"]
                route = Route(info, None, name, None)
                kv = await self.server.objects.get_kv(key_of(info, None, name))
                cur = decode(kv) if kv is not None else None
                if cur is None:
                    new = await h.prepare_create(info, None, dict(want), MANAGER)
                    try:
                        await h.store_create(info, new, False)
                    except errors.APIError as e:
                        if e.reason != "AlreadyExists":
                            raise
                    continue
                if only_missing_mandatory and not mandatory:
                    continue
                auto = ((cur.get("metadata") or {}).get("annotations") or {}).get(AUTOUPDATE)
                if auto != "true" or cur.get("spec") == want["spec"]:
                    continue

                def reset(obj: dict[str, Any], spec=want["spec"]) -> dict[str, Any]:
                    obj["spec"] = spec
                    return obj

                await h.guaranteed_update(info, route, reset, MANAGER, False, precondition=None, op="Update")

    # --- the consumer -------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    async def apply_now(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        fs_info, pl_info = self._infos()
        objs = self.server.objects
        fss = [decode(kv) for kv in (await objs.list(fs_info, None))[0]]
        pls = [decode(kv) for kv in (await objs.list(pl_info, None))[0]]
        self.controller.apply(fss, pls)
        self.applied.set()
        return fss, pls

    async def _run(self) -> None:
        from ...store.types import prefix_end

        fs_info, pl_info = self._infos()
        store = self.server.store
        while True:
            watchers = []
            try:
                fss, pls = await self.apply_now()
                rev = (await store.current_revision())
                for info in (fs_info, pl_info):
                    p = info.key_prefix.encode()
                    watchers.append(await store.watch(p, prefix_end(p), start_revision=rev + 1))
                await self._write_status(fss, pls)
                changed = asyncio.Event()

                async def pump(w) -> None:
                    async for resp in w:
                        if resp.events:
                            changed.set()
                pumps = [asyncio.ensure_future(pump(w)) for w in watchers]
                try:
                    while True:
                        await changed.wait()
                        await asyncio.sleep(0.05)      # take a burst of changes at once
                        changed.clear()
                        fss, pls = await self.apply_now()
                        names = {o["metadata"]["name"] for o in fss + pls}
                        if not {"exempt", "catch-all"} <= names:
                            await self.ensure(only_missing_mandatory=True)
                        await self._write_status(fss, pls)
                        if any(p.done() for p in pumps):
                            break
                finally:
                    for p in pumps:
                        p.cancel()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("APF config consumer: %s; retrying", e)
                await asyncio.sleep(1.0)
            finally:
                for w in watchers:
                    try:
                        await w.cancel()
                    except Exception:
                        pass

    async def _write_status(self, fss: list[dict[str, Any]], pls: list[dict[str, Any]]) -> None:
        levels = {o["metadata"]["name"] for o in pls}
        fs_info, _ = self._infos()
        h = self.server.handlers
        for fs in fss:
            name = fs["metadata"]["name"]
            target = ((fs.get("spec") or {}).get("priorityLevelConfiguration") or {}).get("name", "")
            dangling = target not in levels
            want = {"type": "Dangling", "status": "True" if dangling else "False",
                    "reason": "NotFound" if dangling else "Found",
                    "message": (f"This FlowSchema references the PriorityLevelConfiguration object named "
                                f'"{target}" but there is no such object' if dangling else
                                f'This FlowSchema references the PriorityLevelConfiguration object named "{target}" '
                                "and it exists")}
            conds = (fs.get("status") or {}).get("conditions") or []
            cur = next((c for c in conds if c.get("type") == "Dangling"), None)
            if cur is not None and all(cur.get(k) == v for k, v in want.items()):
                continue

            def put(obj: dict[str, Any], want=want) -> dict[str, Any]:
                st = obj.setdefault("status", {})
                rest = [c for c in st.get("conditions") or [] if c.get("type") != "Dangling"]
                st["conditions"] = rest + [{**want, "lastTransitionTime": now_rfc3339()}]
                return obj

            try:
                await h.guaranteed_update(fs_info, Route(fs_info, None, name, "status"), put, MANAGER, False,
                                          precondition=None, op="Update")
            except errors.APIError as e:
                if e.code != 404:
                    log.warning("FlowSchema %s status: %s", name, e.message)
