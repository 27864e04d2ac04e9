"""Options shared by every suite (registered here so they work from the repo root)."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--store-targets",
        default=None,
        help="comma-separated store targets among embedded,grpc,etcd,etcd3 "
        "(default: all; env KUBEPLANE_STORE_TARGETS)",
    )
