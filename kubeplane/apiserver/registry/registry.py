"""The registry: every resource the server serves, built-in and CRD-defined.

Lookups by URL segments (group, version, plural), by kind and by short name. CRDs are
added the moment the CRD is written (so `kubectl create -f` of a CRD followed by one of
its objects works) and removed when it is deleted. `generation` counts changes, so that
discovery and OpenAPI documents can be cached and rebuilt only when it moves.
"""
from __future__ import annotations

from typing import Any

from .resources import BUILTIN, GROUP_ORDER, ResourceInfo
from .strategy import Strategy


class Registry:
    def __init__(self) -> None:
        self._by_path: dict[tuple[str, str, str], ResourceInfo] = {}
        self._strategies: dict[int, Strategy] = {}
        self._crds: dict[str, list[ResourceInfo]] = {}   # CRD name -> its served resources
        self.generation = 0
        for info in BUILTIN:
            self._add(info)

    def _add(self, info: ResourceInfo) -> None:
        self._by_path[(info.group, info.version, info.plural)] = info
        self._strategies[id(info)] = Strategy(info)

    def get(self, group: str, version: str, plural: str) -> ResourceInfo | None:
        return self._by_path.get((group, version, plural))

    def strategy(self, info: ResourceInfo) -> Strategy:
        return self._strategies[id(info)]

    def resources(self) -> list[ResourceInfo]:
        order = {g: i for i, g in enumerate(GROUP_ORDER)}
        return sorted(self._by_path.values(),
                      key=lambda r: (order.get(r.group, len(order)), r.group, r.version, r.plural))

    def group_versions(self) -> set[tuple[str, str]]:
        return {(r.group, r.version) for r in self._by_path.values()}

    def has_group_version(self, group: str, version: str) -> bool:
        return any(r.group == group and r.version == version for r in self._by_path.values())

    def by_kind(self, group: str, kind: str) -> ResourceInfo | None:
        for r in self._by_path.values():
            if r.group == group and r.kind == kind:
                return r
        return None

    # --- CRDs -------------------------------------------------------------------------
    def set_crd(self, crd: dict[str, Any]) -> None:
        """Serve (or re-serve) the resources a CRD defines: one ResourceInfo per served
        version. A CRD being deleted keeps serving until removed (its objects are being
        deleted)."""
        name = crd["metadata"]["name"]
        self._remove(name)
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        infos = []
        for v in spec.get("versions") or []:
            if not v.get("served", True):
                continue
            subs = tuple(s for s in ("status", "scale") if s in (v.get("subresources") or {}))
            info = ResourceInfo(
                group=spec["group"], version=v["name"], kind=names["kind"], plural=names["plural"],
                singular=names.get("singular") or names["kind"].lower(),
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                subresources=subs, crd=crd, crd_version=v)
            infos.append(info)
            self._add(info)
        self._crds[name] = infos
        self.generation += 1

    def _remove(self, crd_name: str) -> None:
        for info in self._crds.pop(crd_name, []):
            if self._by_path.get((info.group, info.version, info.plural)) is info:
                del self._by_path[(info.group, info.version, info.plural)]
            self._strategies.pop(id(info), None)

    def remove_crd(self, crd_name: str) -> None:
        self._remove(crd_name)
        self.generation += 1

    def crd_resources(self, crd_name: str) -> list[ResourceInfo]:
        return list(self._crds.get(crd_name, []))
