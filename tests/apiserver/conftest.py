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
    import secrets

    # A random suffix: id(request) repeats once a request object's memory is reused,
    # and parametrized tests share the truncated prefix.
    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-") + "-" + secrets.token_hex(4)
    r = server.call("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    assert r.status == 201, r
    yield name
    server.call("DELETE", f"/api/v1/namespaces/{name}")
