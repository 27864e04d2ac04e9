"""Adoption and release by selector and ownerReferences (upstream's
ControllerRefManager / PodControllerRefManager / ReplicaSetControllerRefManager).

`claim()` decides, for each candidate child in the owner's namespace:
- owned by another controller: ignored;
- owned by this owner and still matching the selector: kept;
- owned by this owner but no longer matching: released (its controller reference is
  removed with a strategic merge patch), unless the owner is being deleted;
- an orphan that matches: adopted (a controller reference with controller and
  blockOwnerDeletion true is added), unless the owner or the child is being deleted,
  and only after a fresh read showed the owner is not being deleted (upstream's
  RecheckDeletionTimestamp: the cache may be behind a delete).
Both patches carry the child's uid, so they cannot land on a same-named successor.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ..client import ApiError, Client, Resource
from .podutil import controller_ref, md, owner_reference
from ..client.selectors import Matcher, labels_of


class Claimer:
    def __init__(self, client: Client, owner: dict[str, Any], owner_api_version: str, owner_kind: str,
                 match: Matcher, child_resource: Resource, fresh_owner: Callable[[], Awaitable[dict[str, Any] | None]]):
        self.client = client
        self.owner = owner
        self.uid = md(owner).get("uid")
        self.ref = owner_reference(owner, owner_api_version, owner_kind)
        self.match = match
        self.child_resource = child_resource
        self.fresh_owner = fresh_owner
        self._can_adopt: bool | None = None

    async def can_adopt(self) -> bool:
        if self._can_adopt is None:
            fresh = await self.fresh_owner()
            self._can_adopt = bool(fresh) and md(fresh).get("uid") == self.uid \
                and not md(fresh).get("deletionTimestamp")
        return self._can_adopt

    async def claim(self, children: list[dict[str, Any]]) -> list[dict[str, Any]]:
        owner_deleting = bool(md(self.owner).get("deletionTimestamp"))
        out: list[dict[str, Any]] = []
        for child in children:
            ref = controller_ref(child)
            if ref is not None:
                if ref.get("uid") != self.uid:
                    continue
                if self.match(labels_of(child)):
                    out.append(child)
                elif not owner_deleting:
                    await self._release(child)
                continue
            if owner_deleting or md(child).get("deletionTimestamp") or not self.match(labels_of(child)):
                continue
            if not await self.can_adopt():
                continue
            adopted = await self._adopt(child)
            if adopted is not None:
                out.append(adopted)
        return out

    def _path(self, child: dict[str, Any]) -> str:
        m = md(child)
        return self.child_resource.path(m.get("namespace"), m.get("name"))

    async def _adopt(self, child: dict[str, Any]) -> dict[str, Any] | None:
        patch = {"metadata": {"ownerReferences": [self.ref], "uid": md(child).get("uid")}}
        try:
            return await self.client.patch(self._path(child), patch, patch_type="strategic")
        except ApiError as e:
            if e.status in (404, 409, 422):   # gone, or replaced by a same-named object
                return None
            raise

    async def _release(self, child: dict[str, Any]) -> None:
        patch = {"metadata": {"ownerReferences": [{"$patch": "delete", "uid": self.uid}],
                              "uid": md(child).get("uid")}}
        try:
            await self.client.patch(self._path(child), patch, patch_type="strategic")
        except ApiError as e:
            if e.status not in (404, 409, 422):
                raise
