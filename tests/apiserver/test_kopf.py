"""kopf, unchanged, operating custom resources on kubeplane over HTTPS.

`kopf run --standalone --namespace NS kopf_operator.py` runs as a child process with the
KUBECONFIG written by `kubeplane serve`. Kopf watches with allowWatchBookmarks, keeps its
state in annotations and status via merge patches, adds and removes its finalizer, and
posts Events. The test checks every effect of the operator's create/update/delete handlers
and that the custom resource is really gone once kopf has removed its finalizer.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

pytest.importorskip("kopf")
pytest.importorskip("kubernetes")
from kubernetes import client as k8s  # noqa: E402
from kubernetes import config as k8s_config  # noqa: E402

pytestmark = pytest.mark.timeout(90)

HERE = Path(__file__).parent
GROUP, VERSION, PLURAL = "kp.example.com", "v1", "kopfwidgets"
FINALIZER = "kp.example.com/kopf-finalizer"

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP, "scope": "Namespaced",
        "names": {"plural": PLURAL, "singular": "kopfwidget", "kind": "KopfWidget", "listKind": "KopfWidgetList"},
        "versions": [{
            "name": VERSION, "served": True, "storage": True, "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "spec": {"type": "object", "properties": {"color": {"type": "string"}}},
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                }}},
        }],
    },
}


def wait_for(pred: Callable[[], Any], what: str, timeout: float = 20.0, logs: Callable[[], str] = lambda: "") -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}\n--- kopf log ---\n{logs()}")


@pytest.fixture
def api(server) -> Iterator[k8s.ApiClient]:
    c = k8s_config.new_client_from_config(config_file=server.kubeconfig, persist_config=False)
    yield c
    c.close()


@pytest.fixture
def crd(api) -> str:
    ext = k8s.ApiextensionsV1Api(api)
    try:
        ext.create_custom_resource_definition(CRD)
    except k8s.ApiException as e:
        if e.status != 409:
            raise

    def established() -> bool:
        c = ext.read_custom_resource_definition(f"{PLURAL}.{GROUP}")
        return any(x.type == "Established" and x.status == "True" for x in c.status.conditions or [])
    wait_for(established, "CRD Established", 10)
    return PLURAL


class Operator:
    def __init__(self, kubeconfig: str, namespace: str, log: Path):
        self.log = log
        env = {**os.environ, "KUBECONFIG": kubeconfig, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kopf", "run", "--standalone", "--namespace", namespace, "--verbose", str(HERE / "kopf_operator.py")],
            stdout=open(log, "wb"), stderr=subprocess.STDOUT, env=env, cwd=str(HERE))

    def text(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def operator(server, ns, crd, tmp_path) -> Iterator[Operator]:
    op = Operator(server.kubeconfig, ns, tmp_path / "kopf.log")
    try:
        # kopf is ready once it watches the namespace's widgets
        wait_for(lambda: op.proc.poll() is not None or "Starting the watch-stream for kopfwidgets" in op.text(),
                 "kopf to start watching", 20, op.text)
        assert op.proc.poll() is None, op.text()
        yield op
    finally:
        op.stop()


def test_kopf_create_update_delete(api, ns, operator):
    co = k8s.CustomObjectsApi(api)
    v1 = k8s.CoreV1Api(api)
    logs = operator.text

    co.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "KopfWidget", "metadata": {"name": "w1"},
        "spec": {"color": "red"}})

    # create handler: the ConfigMap exists, owned by the widget, with the color
    def cm_color() -> str | None:
        try:
            return (v1.read_namespaced_config_map("w1-cm", ns).data or {}).get("color")
        except k8s.ApiException as e:
            if e.status == 404:
                return None
            raise
    assert wait_for(cm_color, "the ConfigMap", 20, logs) == "red"
    cm = v1.read_namespaced_config_map("w1-cm", ns)
    w = co.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "w1")
    refs = cm.metadata.owner_references
    assert [(r.kind, r.name, r.uid, r.controller) for r in refs] == [("KopfWidget", "w1", w["metadata"]["uid"], True)]
    assert cm.metadata.labels == {"widget": "w1"}

    # kopf's own state: its finalizer, the handler result in status, last-handled annotation
    def handled() -> dict | None:
        o = co.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "w1")
        ann = o["metadata"].get("annotations") or {}
        done = (o.get("status") or {}).get("create_cm") == "w1-cm" and \
            "kopf.zalando.org/last-handled-configuration" in ann
        return o if done else None
    w = wait_for(handled, "kopf's status and annotations", 20, logs)
    assert w["metadata"]["finalizers"] == [FINALIZER]
    assert json.loads(w["metadata"]["annotations"]["kopf.zalando.org/last-handled-configuration"])["spec"] == \
        {"color": "red"}
    assert w["metadata"]["generation"] == 1    # status and metadata writes do not bump it

    # update handler: spec.color follows to the ConfigMap
    co.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "w1", {"spec": {"color": "blue"}})
    assert wait_for(lambda: cm_color() == "blue", "the ConfigMap update", 20, logs)
    w = co.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "w1")
    assert w["metadata"]["generation"] == 2

    # kopf.info() in the create handler posted a core/v1 Event about the widget
    def events() -> list:
        return v1.list_namespaced_event(ns, field_selector="involvedObject.name=w1").items
    evs = wait_for(events, "kopf's event", 10, logs)
    assert [(e.reason, e.message, e.type, e.involved_object.kind, e.involved_object.uid) for e in evs] == [
        ("ConfigMapCreated", "configmap w1-cm", "Normal", "KopfWidget", w["metadata"]["uid"])]

    # delete: the finalizer holds the widget until the delete handler ran, then it is gone
    co.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "w1")

    def widget_gone() -> bool:
        try:
            co.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "w1")
            return False
        except k8s.ApiException as e:
            if e.status == 404:
                return True
            raise
    wait_for(widget_gone, "the widget to be gone", 20, logs)
    assert cm_color() is None     # the delete handler removed the ConfigMap
    assert "Handler 'delete_cm' succeeded" in logs()
    assert "Traceback" not in logs(), logs()
    assert co.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"] == []


def test_kopf_finalizer_holds_deletion_while_the_operator_is_down(api, server, ns, crd, tmp_path):
    """The server honours kopf's finalizer: deleting a widget while no operator runs only
    marks it (deletionTimestamp); a restarted operator runs the delete handler, removes the
    finalizer with a JSON patch guarded by a `test` on resourceVersion, and the widget goes."""
    co = k8s.CustomObjectsApi(api)
    v1 = k8s.CoreV1Api(api)
    op = Operator(server.kubeconfig, ns, tmp_path / "kopf1.log")
    try:
        co.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "KopfWidget", "metadata": {"name": "w2"},
            "spec": {"color": "green"}})

        def ready() -> bool:
            o = co.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "w2")
            return (o.get("status") or {}).get("create_cm") == "w2-cm"
        wait_for(ready, "the create handler", 20, op.text)
    finally:
        op.stop()
    assert op.proc.returncode is not None

    co.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "w2")
    w = co.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "w2")
    assert w["metadata"]["deletionTimestamp"] and w["metadata"]["finalizers"] == [FINALIZER]
    assert v1.read_namespaced_config_map("w2-cm", ns).data == {"color": "green"}
    # a terminating object may not gain finalizers (upstream: 422 Forbidden)
    with pytest.raises(k8s.ApiException) as ei:
        co.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "w2",
                                          {"metadata": {"finalizers": [FINALIZER, "other/f"]}})
    assert ei.value.status == 422

    op2 = Operator(server.kubeconfig, ns, tmp_path / "kopf2.log")
    try:
        def gone() -> bool:
            try:
                co.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "w2")
                return False
            except k8s.ApiException as e:
                if e.status == 404:
                    return True
                raise
        wait_for(gone, "the widget to be gone after restart", 20, op2.text)
        with pytest.raises(k8s.ApiException) as ei:
            v1.read_namespaced_config_map("w2-cm", ns)
        assert ei.value.status == 404
        assert "Handler 'delete_cm' succeeded" in op2.text()
    finally:
        op2.stop()
