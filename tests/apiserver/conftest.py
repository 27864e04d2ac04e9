"""Fixtures for the API server suites: one `kubeplane serve` child per session."""
from __future__ import annotations

import pytest

from server_procs import ServerProc


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory):
    s = ServerProc(tmp_path_factory.mktemp("apiserver") / "data").start()
    yield s
    s.stop()


@pytest.fixture
def ns(server: ServerProc, request: pytest.FixtureRequest):
    """A fresh namespace for one test (deleted afterwards, without waiting)."""
    import re

    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-") + "-" + str(id(request) % 10000)
    r = server.call("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    assert r.status == 201, r
    yield name
    server.call("DELETE", f"/api/v1/namespaces/{name}")
