"""Fixtures for the observability suite: one `kubeplane serve` child that has seen a short
mixed load (create, get, list, watch, patch, delete of pods, one 404), and its /metrics.

The server is started with the API suites' `ServerProc` (tests/apiserver/server_procs.py).
"""
from __future__ import annotations

import secrets
import sys
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "apiserver"))

from server_procs import ServerProc  # noqa: E402

PODS = 5


def _pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "obs"}},
            "spec": {"containers": [{"name": "c", "image": "nginx:1.25"}]}}


def mixed_load(server: ServerProc) -> None:
    """Every verb the dashboards and alerts look at, each checked for its status code."""
    ns = "obs-" + secrets.token_hex(4)
    r = server.call("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    assert r.status == 201, r
    base = f"/api/v1/namespaces/{ns}/pods"
    r = server.call("GET", base)
    assert r.status == 200, r
    rv = r.json["metadata"]["resourceVersion"]
    for i in range(PODS):
        r = server.call("POST", base, _pod(f"p{i}"))
        assert r.status == 201, r
    for i in range(PODS):
        assert server.call("GET", f"{base}/p{i}").status == 200
    assert server.call("GET", f"{base}?limit=2").status == 200
    assert server.call("GET", "/api/v1/pods").status == 200
    # A watch from before the creates: the ADDED events come at once, then it times out.
    r = server.call("GET", f"{base}?watch=1&resourceVersion={rv}&timeoutSeconds=1")
    assert r.status == 200 and r.body.count(b'"ADDED"') == PODS, r
    for i in range(PODS):
        r = server.call("PATCH", f"{base}/p{i}", {"metadata": {"labels": {"patched": "yes"}}},
                        content_type="application/merge-patch+json")
        assert r.status == 200, r
    for i in range(PODS):
        assert server.call("DELETE", f"{base}/p{i}").status == 200
    assert server.call("GET", f"{base}/missing").status == 404
    assert server.call("DELETE", f"/api/v1/namespaces/{ns}").status == 200


@pytest.fixture(scope="module")
def kubeplane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    """A running server after `mixed_load`."""
    s = ServerProc(tmp_path_factory.mktemp("observability") / "data").start()
    try:
        mixed_load(s)
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def exposition(kubeplane: ServerProc) -> str:
    """The server's /metrics text (plain HTTP listener) after the load."""
    r = kubeplane.call("GET", "/metrics")
    assert r.status == 200, r
    assert r.headers.get("content-type", "").startswith("text/plain"), r.headers
    return r.body.decode()
