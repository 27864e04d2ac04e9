"""The root CA publisher (upstream's root-ca-cert-publisher): every namespace that is
not terminating has a ConfigMap `kube-root-ca.crt` whose `ca.crt` is the cluster CA
(PEM), so pods can verify the API server. Edits to the ConfigMap's data are reverted;
a deleted one is recreated."""
from __future__ import annotations

from typing import Any

from ..client import CONFIGMAPS, NAMESPACES, ApiError
from .base import Context, Controller, unwrap
from .podutil import md
from .serviceaccount import terminating

NAME = "kube-root-ca.crt"
DESCRIPTION = ("Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints "
               "such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across "
               "distributions of Kubernetes clusters.")


class RootCACertPublisher(Controller):
    name = "root-ca-cert-publisher"
    component = "root-ca-cert-publisher"
    default_workers = 1

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        if not ctx.root_ca:
            raise ValueError("root-ca-cert-publisher needs the cluster CA (kubeconfig certificate-authority "
                             "or --root-ca-file)")
        self.ca = ctx.root_ca.decode() if isinstance(ctx.root_ca, bytes) else str(ctx.root_ca)
        self.namespaces = self.factory.informer(NAMESPACES)
        self.maps = self.factory.informer(CONFIGMAPS, field_selector=f"metadata.name={NAME}")
        self.namespaces.add_event_handler(on_add=self.enqueue, on_update=lambda old, new: self.enqueue(new))
        self.maps.add_event_handler(on_update=lambda old, new: self._map_changed(new),
                                    on_delete=lambda o: self._map_changed(unwrap(o)))

    def _map_changed(self, cm: dict[str, Any]) -> None:
        if md(cm).get("name") == NAME and md(cm).get("namespace"):
            self.queue.add(md(cm)["namespace"])

    async def sync(self, key: str) -> None:
        ns = self.namespaces.indexer.get(key)
        if ns is None or terminating(ns):
            return
        data = {"ca.crt": self.ca}
        cm = self.maps.indexer.get(f"{key}/{NAME}")
        try:
            if cm is None:
                await self.client.create(CONFIGMAPS.path(key), {
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": NAME, "namespace": key, "annotations": {"kubernetes.io/description": DESCRIPTION}},
                    "data": data})
                return
            if cm.get("data") == data and (md(cm).get("annotations") or {}).get("kubernetes.io/description") == DESCRIPTION:
                return
            new = dict(cm)
            new["metadata"] = {**md(cm), "annotations": {**(md(cm).get("annotations") or {}),
                                                         "kubernetes.io/description": DESCRIPTION}}
            new["data"] = data
            new.pop("binaryData", None)
            await self.client.update(CONFIGMAPS.path(key, NAME), new)
        except ApiError as e:
            if e.status == 409 and cm is None:
                return                      # created meanwhile; its update event brings us back if it differs
            if e.status == 403 and "being terminated" in e.message:
                return
            raise
