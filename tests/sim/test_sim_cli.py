"""`kubeplane sim nodes` refuses what it cannot use with one line naming it (exit 1; usage
errors exit 2), before it touches any API server."""
from __future__ import annotations

import subprocess
import sys

import pytest


def sim(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kubeplane.cli", "sim", "nodes", "--metrics-bind-address", "0",
                           *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def kubeconfig(tmp_path):
    p = tmp_path / "kubeconfig"
    p.write_text("apiVersion: v1\nkind: Config\ncurrent-context: c\n"
                 "clusters: [{name: k, cluster: {server: 'http://127.0.0.1:9'}}]\n"
                 "users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n")
    return str(p)


@pytest.mark.parametrize("args, code, text", [
    (["--kubeconfig", "/nonexistent/kubeconfig"], 1, "kubeplane sim nodes: cannot read kubeconfig /nonexistent"),
    (["--count", "-1"], 2, "argument --count: -1 is out of range (0..49152)"),
    (["--count", "many"], 2, "argument --count: 'many' is not a whole number"),
])
def test_bad_options(args, code, text):
    r = sim(*args)
    assert r.returncode == code and text in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_bad_stages_file_and_address(kubeconfig, tmp_path):
    bad = tmp_path / "stages.yaml"
    bad.write_text("defaults: {runSeconds: -3}\n")
    r = sim("--kubeconfig", kubeconfig, "--stages", str(bad))
    assert r.returncode == 1 and r.stderr.strip() == (
        f"kubeplane sim nodes: {bad}: defaults.runSeconds: must be a number of seconds >= 0, not -3"), r.stderr
    r = sim("--kubeconfig", kubeconfig, "--kubelet-address", "10.0.0.1")
    assert r.returncode == 1 and "must be loopback addresses (127.0.0.0/8)" in r.stderr, r.stderr
