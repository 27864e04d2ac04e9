"""A `kubeplane serve` with the controller manager, the scheduler and two hollow nodes
(pods become Running and Ready), and small polling helpers over its plain-HTTP port."""
from __future__ import annotations

import selectors
import subprocess
import time
import uuid
from typing import Any, Callable

from server_procs import ServerProc


def read_line(proc: subprocess.Popen, want: str, timeout: float) -> str:
    """Read proc's stdout until a line contains `want`; that line ("" on timeout)."""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not sel.select(max(0.0, deadline - time.monotonic())):
                break
            line = proc.stdout.readline()
            if not line:
                break
            line = line.decode() if isinstance(line, bytes) else line
            if want in line:
                return line
    finally:
        sel.close()
    return ""


def start_cluster(data_dir, nodes: int = 2) -> ServerProc:
    s = ServerProc(data_dir, extra=["--scheduler=true", "--scheduler-metrics-bind-address", "0",
                                    "--hollow-nodes", str(nodes), "--hollow-nodes-metrics-bind-address", "0",
                                    "--controller-manager=true", "--controller-manager-bind-address", "0"]).start()
    # the controller manager runs once the default namespace has its ServiceAccount
    # (polling the API: a line printed by a child may sit unread in a pipe buffer)
    wait_for(lambda: get(s, "/api/v1/namespaces/default/serviceaccounts/default"), 60,
             what=f"the controller manager's first sync: {s.log_tail()}")
    return s


def wait_for(fn: Callable[[], Any], timeout: float = 30.0, interval: float = 0.2, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s: {what or fn}")
        time.sleep(interval)


def get(s: ServerProc, path: str) -> dict | None:
    r = s.call("GET", path)
    if r.status == 404:
        return None
    assert r.status == 200, (r.status, r.body[:300])
    return r.json


def new_namespace(s: ServerProc, prefix: str = "t") -> str:
    ns = f"{prefix}-{uuid.uuid4().hex[:6]}"
    r = s.call("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    assert r.status == 201, r.body
    return ns


def items(s: ServerProc, path: str) -> list[dict]:
    return (get(s, path) or {}).get("items") or []


def owned_by(objs: list[dict], uid: str) -> list[dict]:
    return [o for o in objs if any(r.get("uid") == uid and r.get("controller")
                                   for r in o["metadata"].get("ownerReferences") or ())]


def deployment(name: str, replicas: int = 3, image: str = "nginx", **spec: Any) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": image}]}}, **spec}}


def condition(obj: dict | None, ctype: str) -> dict:
    for c in ((obj or {}).get("status") or {}).get("conditions") or ():
        if c.get("type") == ctype:
            return c
    return {}
