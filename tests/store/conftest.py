"""Store fixtures: the four targets every conformance test runs against.

* ``embedded``: ``kubeplane.store.mvcc.EmbeddedStore`` in this process (tmp data dir);
* ``grpc``: ``python -m kubeplane.cli store serve`` in a subprocess, used through
  ``EtcdStore`` (kubeplane's own etcd-compatible endpoint);
* ``etcd``: a real single-member etcd, used through ``EtcdStore``;
* ``etcd3``: a real 3-member etcd cluster, used through ``EtcdStore``.

Servers are session-scoped and shared; clients are per test.  Tests keep out of each
other's way by writing only under the per-test ``prefix``.  ``store_factory`` makes a
fresh, private target with special settings (a small quota, say).

Select targets with ``--store-targets etcd,etcd3`` (registered in tests/conftest.py)
or ``KUBEPLANE_STORE_TARGETS=etcd,etcd3``, or with ``-k``
(test ids end in ``[embedded]``, ``[grpc]``, ``[etcd]``, ``[etcd3]``).  A target whose
implementation is missing fails its tests; it is never skipped.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import pytest

from etcd_procs import EtcdCluster, KubeplaneServer

ALL_TARGETS = ("embedded", "grpc", "etcd", "etcd3")
TARGETS_ENV = "KUBEPLANE_STORE_TARGETS"
# Progress-notify interval every target is started with (seconds): short, so tests of
# periodic notifications stay fast; only watches that ask for them receive them.
PROGRESS_NOTIFY_INTERVAL = 0.5


def selected_targets(config: pytest.Config) -> list[str]:
    raw = config.getoption("--store-targets") or os.environ.get(TARGETS_ENV) or ",".join(ALL_TARGETS)
    targets = [t.strip() for t in raw.split(",") if t.strip()]
    unknown = sorted(set(targets) - set(ALL_TARGETS))
    if unknown:
        raise pytest.UsageError(f"unknown store targets {unknown}; choose among {ALL_TARGETS}")
    return targets


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "store_target" in metafunc.fixturenames:
        metafunc.parametrize("store_target", selected_targets(metafunc.config))


# --- shared servers ------------------------------------------------------------------


@pytest.fixture(scope="session")
def etcd_single(tmp_path_factory: pytest.TempPathFactory):
    with EtcdCluster(
        tmp_path_factory.mktemp("etcd1"), 1, progress_notify_interval=PROGRESS_NOTIFY_INTERVAL
    ) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def etcd_cluster3(tmp_path_factory: pytest.TempPathFactory):
    with EtcdCluster(
        tmp_path_factory.mktemp("etcd3"), 3, progress_notify_interval=PROGRESS_NOTIFY_INTERVAL
    ) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def kubeplane_server(tmp_path_factory: pytest.TempPathFactory):
    import kubeplane.store.grpc_server  # noqa: F401  (missing module: fail, never skip)

    with KubeplaneServer(
        tmp_path_factory.mktemp("kpserve"), progress_notify_interval=PROGRESS_NOTIFY_INTERVAL
    ) as server:
        yield server


_SERVER_FIXTURE = {"grpc": "kubeplane_server", "etcd": "etcd_single", "etcd3": "etcd_cluster3"}


@pytest.fixture
def store_server(store_target: str, request: pytest.FixtureRequest):
    """The shared server behind ``store_target`` (None for the embedded store)."""
    if store_target == "embedded":
        return None
    return request.getfixturevalue(_SERVER_FIXTURE[store_target])


# --- clients ---------------------------------------------------------------------------


def _embedded(data_dir: Path, **settings):
    from kubeplane.store.mvcc import EmbeddedStore  # missing module: fail, never skip

    return EmbeddedStore(str(data_dir), **settings)


def _client(endpoints: list[str]):
    from kubeplane.store.etcd import EtcdStore

    return EtcdStore(endpoints, request_timeout=10.0)


@pytest.fixture
async def store(store_target: str, store_server, tmp_path: Path):
    """A started Store for this test (a fresh embedded store, or a client of a shared server)."""
    if store_target == "embedded":
        s = _embedded(tmp_path / "embedded", progress_notify_interval=PROGRESS_NOTIFY_INTERVAL)
    else:
        s = _client(store_server.endpoints)
    await s.start()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def prefix() -> bytes:
    """A key prefix no other test uses (servers are shared within the session)."""
    return f"/kp-test/{uuid.uuid4().hex[:12]}/".encode()


@pytest.fixture
async def store_factory(store_target: str, tmp_path: Path):
    """``await make(quota_bytes=..., progress_notify_interval=...)``: a fresh private target.

    Everything it made is closed and killed at teardown.
    """
    made: list[tuple[object, object]] = []

    async def make(*, quota_bytes: int | None = None, progress_notify_interval: float | None = None):
        data_dir = tmp_path / f"fresh{len(made)}"
        interval = progress_notify_interval or PROGRESS_NOTIFY_INTERVAL
        server = None
        if store_target == "embedded":
            settings: dict = {"progress_notify_interval": interval}
            if quota_bytes is not None:
                settings["quota_bytes"] = quota_bytes
            s = _embedded(data_dir, **settings)
        else:
            if store_target == "grpc":
                import kubeplane.store.grpc_server  # noqa: F401

                server = KubeplaneServer(data_dir, quota_bytes=quota_bytes, progress_notify_interval=interval)
            else:
                size = 3 if store_target == "etcd3" else 1
                server = EtcdCluster(data_dir, size, quota_bytes=quota_bytes, progress_notify_interval=interval)
            made.append((None, server))
            await asyncio.to_thread(server.start)
            s = _client(server.endpoints)
        made.append((s, None))  # before start(): a half-started store is closed too
        await s.start()
        return s

    try:
        yield make
    finally:
        for s, server in reversed(made):
            if s is not None:
                await s.close()
            if server is not None:
                server.stop()
