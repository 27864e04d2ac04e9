"""Fixtures for the client suite: one plain-HTTP `kubeplane serve` child per session."""
from __future__ import annotations

import re
import secrets
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "apiserver"))

from server_procs import ServerProc  # noqa: E402

from kubeplane.client import Config  # noqa: E402


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory):
    s = ServerProc(tmp_path_factory.mktemp("client-apiserver") / "data").start()
    yield s
    s.stop()


@pytest.fixture
def cfg(server: ServerProc) -> Config:
    """Plain HTTP to the session server, no client-side rate limit."""
    return Config(servers=[f"http://127.0.0.1:{server.http_port}"], qps=0, burst=1)


@pytest.fixture
def ns(server: ServerProc, request: pytest.FixtureRequest):
    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-") + "-" + secrets.token_hex(4)
    r = server.call("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    assert r.status == 201, r
    yield name
    server.call("DELETE", f"/api/v1/namespaces/{name}")


def pod(name: str, node: str = "", labels: dict[str, str] | None = None) -> dict:
    spec: dict = {"containers": [{"name": "c", "image": "busybox"}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}}, "spec": spec}
