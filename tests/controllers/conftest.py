"""The controller suites reuse the API server suites' process helpers (server_procs,
kubectls) from tests/apiserver, and share one cluster per session: `kubeplane serve`
with the controller manager, the scheduler and two hollow nodes."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "apiserver"))


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    from ctrl_cluster import start_cluster

    s = start_cluster(tmp_path_factory.mktemp("ctrl") / "data")
    try:
        yield s
    finally:
        s.stop()
