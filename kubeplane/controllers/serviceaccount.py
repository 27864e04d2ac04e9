"""The ServiceAccount controller (upstream's serviceaccounts-controller): every namespace
that is not terminating has a ServiceAccount named `default`. A deleted `default` is
made again; a namespace being deleted is left alone (creates there would be refused)."""
from __future__ import annotations

from typing import Any

from ..client import NAMESPACES, SERVICE_ACCOUNTS, ApiError
from .base import Context, Controller, unwrap
from .podutil import md

DEFAULT = "default"


def terminating(ns: dict[str, Any]) -> bool:
    return bool(md(ns).get("deletionTimestamp")) or (ns.get("status") or {}).get("phase") == "Terminating"


class ServiceAccountController(Controller):
    name = "serviceaccount"
    component = "service-account-controller"
    default_workers = 1

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.namespaces = self.factory.informer(NAMESPACES)
        self.accounts = self.factory.informer(SERVICE_ACCOUNTS)
        self.namespaces.add_event_handler(on_add=self.enqueue, on_update=lambda old, new: self.enqueue(new))
        self.accounts.add_event_handler(on_delete=self._account_deleted)

    def _account_deleted(self, obj: Any) -> None:
        sa = unwrap(obj)
        if md(sa).get("name") == DEFAULT and md(sa).get("namespace"):
            self.queue.add(md(sa)["namespace"])

    async def sync(self, key: str) -> None:
        ns = self.namespaces.indexer.get(key)
        if ns is None or terminating(ns):
            return
        if self.accounts.indexer.get(f"{key}/{DEFAULT}") is not None:
            return
        body = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": DEFAULT, "namespace": key}}
        try:
            await self.client.create(SERVICE_ACCOUNTS.path(key), body)
        except ApiError as e:
            if e.status == 409:           # AlreadyExists: our cache was behind
                return
            if e.status == 403 and "being terminated" in e.message:
                return
            raise
