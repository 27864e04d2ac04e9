"""Quantities and pod requests (upstream's resource.PodRequests rules)."""
import pytest

from kubeplane.scheduler.resources import parse_quantity, pod_non_zero_requests, pod_requests


@pytest.mark.parametrize("text,milli,want", [
    ("100m", True, 100), ("1", True, 1000), ("1.5", True, 1500), ("0.0001", True, 1), ("250m", False, 1),
    ("128Mi", False, 128 * 2**20), ("1G", False, 10**9), ("2e3", False, 2000), ("1Ki", False, 1024),
    (3, False, 3), ("bogus", False, 0), ("", False, 0),
])
def test_parse_quantity(text, milli, want):
    assert parse_quantity(text, milli) == want


def _c(cpu=None, mem=None, limits=None, restart=None):
    c = {"name": "c", "resources": {}}
    req = {k: v for k, v in (("cpu", cpu), ("memory", mem)) if v}
    if req:
        c["resources"]["requests"] = req
    if limits:
        c["resources"]["limits"] = limits
    if restart:
        c["restartPolicy"] = restart
    return c


def test_containers_add_up_and_init_containers_raise_the_maximum():
    pod = {"spec": {"containers": [_c("100m", "1Mi"), _c("200m", "1Mi")],
                    "initContainers": [_c("500m", "1Mi"), _c("100m", "5Mi")]}}
    assert pod_requests(pod) == {"cpu": 500, "memory": 5 * 2**20}


def test_sidecars_add_to_everything_after_them():
    # upstream's example: a restartable init container runs beside the later init
    # containers and the app containers
    pod = {"spec": {"initContainers": [_c("100m", restart="Always"), _c("300m")],
                    "containers": [_c("150m")]}}
    assert pod_requests(pod)["cpu"] == 400   # max(100 + 150, 100 + 300)


def test_overhead_and_limits_only():
    pod = {"spec": {"containers": [_c(limits={"cpu": "2", "example.com/gpu": "1"})],
                    "overhead": {"cpu": "250m", "memory": "120Mi"}}}
    assert pod_requests(pod) == {"cpu": 2250, "example.com/gpu": 1, "memory": 120 * 2**20}


def test_non_zero_defaults_for_best_effort_containers():
    pod = {"spec": {"containers": [_c(), _c("1", None)]}}
    assert pod_non_zero_requests(pod) == (1100, 2 * 200 * 2**20)
