"""A small kopf operator, run by test_kopf.py as `kopf run --standalone --namespace NS kopf_operator.py`.

For each KopfWidget (kp.example.com/v1, namespaced) it keeps a ConfigMap `<name>-cm` whose
`data.color` follows `spec.color`:

- create: creates the ConfigMap (owned by the widget) and returns its name, which kopf
  stores in `status.create_cm` (a merge patch of the status subresource);
- update of spec.color: patches the ConfigMap;
- delete: deletes the ConfigMap. The handler makes kopf put its finalizer on the widget,
  so the widget lingers (deletionTimestamp set) until the handler ran and kopf removed the
  finalizer.

Kopf itself talks to the API server with aiohttp (its own client); the handlers use the
official `kubernetes` client. Both read the KUBECONFIG written by `kubeplane serve`.
"""
from __future__ import annotations

import os
from typing import Any

import kopf
from kubernetes import client, config

GROUP, VERSION, PLURAL = "kp.example.com", "v1", "kopfwidgets"
FINALIZER = "kp.example.com/kopf-finalizer"

_api: client.CoreV1Api | None = None


def core() -> client.CoreV1Api:
    global _api
    if _api is None:
        _api = client.CoreV1Api(config.new_client_from_config(config_file=os.environ["KUBECONFIG"]))
    return _api


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.watching.server_timeout = 30         # short watches: reconnects are exercised too
    settings.watching.client_timeout = 40
    settings.networking.request_timeout = 10


@kopf.on.create(GROUP, VERSION, PLURAL)
def create_cm(spec: dict, name: str, namespace: str, body: Any, logger: Any, **_: Any) -> str:
    cm: dict[str, Any] = {"metadata": {"name": f"{name}-cm", "labels": {"widget": name}},
                          "data": {"color": spec.get("color", "")}}
    kopf.adopt(cm, owner=body)
    core().create_namespaced_config_map(namespace, cm)
    logger.info("created configmap %s-cm", name)
    kopf.info(body, reason="ConfigMapCreated", message=f"configmap {name}-cm")   # a core/v1 Event
    return f"{name}-cm"


@kopf.on.update(GROUP, VERSION, PLURAL, field="spec.color")
def update_cm(new: Any, name: str, namespace: str, **_: Any) -> None:
    core().patch_namespaced_config_map(f"{name}-cm", namespace, {"data": {"color": new or ""}})


@kopf.on.delete(GROUP, VERSION, PLURAL)
def delete_cm(name: str, namespace: str, **_: Any) -> None:
    try:
        core().delete_namespaced_config_map(f"{name}-cm", namespace)
    except client.ApiException as e:
        if e.status != 404:
            raise
