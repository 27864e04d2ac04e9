"""Debian's etcdctl 3.4 against ``kubeplane store serve``, and against a real etcd.

Every test runs twice: on a ``kubeplane store serve`` subprocess and on a real etcd
3.4.23, with the same assertions on etcdctl's output, so the expected texts are the
ones real etcd produces (only the version and the member's name/URLs differ).
etcdctl commands that stream (watch, lease keep-alive) are read line by line with a
deadline and then killed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import select
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from etcd_procs import EtcdCluster, KubeplaneServer

ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"
TIMEOUT = 20.0  # seconds for one etcdctl command
VERSIONS = {"kubeplane": "3.5.17", "etcd": "3.4.23"}

pytestmark = pytest.mark.etcd


@dataclass
class Target:
    kind: str  # "kubeplane" or "etcd"
    endpoint: str
    server: object

    @property
    def version(self) -> str:
        return VERSIONS[self.kind]


def start_target(kind: str, base: Path, **settings):
    if kind == "etcd":
        server = EtcdCluster(base, 1, **settings).start()
    else:
        server = KubeplaneServer(base, **settings).start()
    return Target(kind, server.endpoints[0], server)


@pytest.fixture(scope="module", params=["kubeplane", "etcd"])
def target(request, tmp_path_factory):
    t = start_target(request.param, tmp_path_factory.mktemp(f"etcdctl-{request.param}"))
    try:
        yield t
    finally:
        t.server.stop()


@pytest.fixture
def p() -> str:
    """A key prefix of this test's own (the servers are shared by the module)."""
    return f"/ctl/{uuid.uuid4().hex[:8]}/"


def _env() -> dict[str, str]:
    return {**os.environ, "ETCDCTL_API": "3"}


def ctl(t: Target, *args: str, input: str | None = None, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [ETCDCTL, "--endpoints", t.endpoint, "--command-timeout=10s", *args],
        input=input, capture_output=True, text=True, timeout=TIMEOUT, env=_env(),
    )
    if ok:
        assert proc.returncode == 0, f"etcdctl {' '.join(args)}: rc {proc.returncode}\n{proc.stderr}"
    return proc


def out(t: Target, *args: str, input: str | None = None) -> str:
    return ctl(t, *args, input=input).stdout


def error(t: Target, *args: str) -> str:
    """The ``Error: ...`` line of a failing command."""
    proc = ctl(t, *args, ok=False)
    assert proc.returncode != 0, proc.stdout
    return [line for line in proc.stderr.splitlines() if line.startswith("Error:")][-1]


def stream(t: Target, *args: str, lines: int, timeout: float = 10.0) -> list[str]:
    """The first ``lines`` stdout lines of a long-running etcdctl command."""
    proc = subprocess.Popen(
        [ETCDCTL, "--endpoints", t.endpoint, *args],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=_env(),
    )
    got: list[str] = []
    buf = b""
    deadline = time.monotonic() + timeout
    try:
        while len(got) < lines and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
            *complete, buf = buf.split(b"\n")
            got += [line.decode() for line in complete]
    finally:
        proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()
    return got[:lines]


def revision(t: Target) -> int:
    return json.loads(out(t, "get", "x", "-w", "json"))["header"]["revision"]


def member_id(t: Target) -> int:
    return json.loads(out(t, "endpoint", "status", "-w", "json"))[0]["Status"]["header"]["member_id"]


# --- KV ---------------------------------------------------------------------------------


def test_put_and_get(target: Target, p: str):
    t = target
    assert out(t, "put", p + "foo", "bar") == "OK\n"
    first = revision(t)
    assert out(t, "put", p + "foo", "baz", "--prev-kv") == f"OK\n{p}foo\nbar\n"
    assert out(t, "put", p + "foo2", "two") == "OK\n"
    assert out(t, "get", p + "foo") == f"{p}foo\nbaz\n"
    assert out(t, "get", p + "missing") == ""
    assert out(t, "get", p, "--prefix") == f"{p}foo\nbaz\n{p}foo2\ntwo\n"
    assert out(t, "get", p, "--prefix", "--limit", "1") == f"{p}foo\nbaz\n"
    assert out(t, "get", p, "--prefix", "--keys-only") == f"{p}foo\n\n{p}foo2\n\n"
    assert out(t, "get", p, "--prefix", "--order", "DESCEND", "--sort-by", "VALUE") == f"{p}foo2\ntwo\n{p}foo\nbaz\n"
    assert out(t, "get", p + "foo", "--rev", str(first)) == f"{p}foo\nbar\n"
    assert out(t, "get", p + "foo", "--print-value-only") == "baz\n"

    doc = json.loads(out(t, "get", p + "foo", "-w", "json"))
    header = doc["header"]
    assert set(header) == {"cluster_id", "member_id", "revision", "raft_term"}
    assert header["member_id"] == member_id(t) and header["revision"] >= first + 2
    (kv,) = doc["kvs"]
    assert base64.b64decode(kv["key"]).decode() == p + "foo" and base64.b64decode(kv["value"]) == b"baz"
    assert (kv["create_revision"], kv["mod_revision"], kv["version"], doc["count"]) == (first, first + 1, 2, 1)
    limited = json.loads(out(t, "get", p, "--prefix", "--limit", "1", "-w", "json"))
    assert (limited["more"], limited["count"], len(limited["kvs"])) == (True, 2, 1)

    assert error(t, "get", p + "foo", "--rev", str(revision(t) + 1000)) == (
        "Error: etcdserver: mvcc: required revision is a future revision")


def test_del(target: Target, p: str):
    t = target
    for key in ("a", "b", "c"):
        out(t, "put", p + key, key.upper())
    assert out(t, "del", p + "a") == "1\n"
    assert out(t, "del", p + "nothing") == "0\n"
    assert out(t, "del", p + "b", "--prev-kv") == f"1\n{p}b\nB\n"
    out(t, "put", p + "d", "D")
    assert out(t, "del", p, "--prefix") == "2\n"
    assert out(t, "get", p, "--prefix") == ""


def test_txn_interactive(target: Target, p: str):
    t = target
    out(t, "put", p + "k", "v1")
    prompts = "compares:\nsuccess requests (get, put, del):\nfailure requests (get, put, del):\n"
    script = f'mod("{p}k") > "0"\n\nput {p}then yes\nget {p}k\n\nput {p}else yes\n\n'
    assert out(t, "txn", "-i", input=script) == prompts + f"SUCCESS\n\nOK\n\n{p}k\nv1\n"
    script = f'value("{p}k") = "other"\n\nput {p}then no\n\nput {p}else yes\ndel {p}k\n\n'
    assert out(t, "txn", "-i", input=script) == prompts + "FAILURE\n\nOK\n\n1\n"
    assert out(t, "get", p, "--prefix", "--keys-only") == f"{p}else\n\n{p}then\n\n"
    doc = json.loads(out(t, "txn", "-w", "json", input=f'version("{p}k") = "0"\n\nput {p}gone x\n\n\n'))
    assert doc["succeeded"] is True
    assert doc["responses"] == [{"Response": {"ResponsePut": {"header": {"revision": doc["header"]["revision"]}}}}]


def test_compact(target: Target, p: str):
    t = target
    out(t, "put", p + "k", "1")
    old = revision(t)
    out(t, "put", p + "k", "2")
    out(t, "put", p + "k", "3")
    current = revision(t)
    assert out(t, "compact", str(current - 1)) == f"compacted revision {current - 1}\n"
    compacted = "Error: etcdserver: mvcc: required revision has been compacted"
    assert error(t, "compact", str(current - 1)) == compacted
    assert error(t, "get", p + "k", "--rev", str(old)) == compacted
    assert out(t, "get", p + "k", "--rev", str(current - 1)) == f"{p}k\n2\n"
    assert out(t, "compact", str(current), "--physical") == f"compacted revision {current}\n"
    assert error(t, "compact", str(current + 1000)) == "Error: etcdserver: mvcc: required revision is a future revision"


# --- watch ------------------------------------------------------------------------------


def test_watch_history_and_live(target: Target, p: str):
    t = target
    out(t, "put", p + "a", "1")
    start = revision(t)
    out(t, "put", p + "b", "2")
    out(t, "del", p + "a")
    lines = stream(t, "watch", "--prefix", p, "--rev", str(start), lines=9)
    assert lines == ["PUT", p + "a", "1", "PUT", p + "b", "2", "DELETE", p + "a", ""]
    assert stream(t, "watch", p + "b", "--rev", str(start), "--prev-kv", lines=3) == ["PUT", p + "b", "2"]

    # live: start at the next revision so no write can slip in before the watch exists
    proc = subprocess.Popen(
        [ETCDCTL, "--endpoints", t.endpoint, "watch", p + "live", "--rev", str(revision(t) + 1)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_env(),
    )
    try:
        out(t, "put", p + "other", "x")
        out(t, "put", p + "live", "now")
        deadline = time.monotonic() + 10
        data = b""
        while data.count(b"\n") < 3 and time.monotonic() < deadline:
            if select.select([proc.stdout], [], [], 0.2)[0]:
                data += os.read(proc.stdout.fileno(), 4096)
        assert data.decode().splitlines() == ["PUT", p + "live", "now"]
    finally:
        proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()


# --- leases -----------------------------------------------------------------------------


def test_lease_grant_keepalive_revoke(target: Target, p: str):
    t = target
    granted = out(t, "lease", "grant", "30")
    m = re.fullmatch(r"lease ([0-9a-f]+) granted with TTL\(30s\)\n", granted)
    assert m, granted
    lease = m.group(1)
    assert out(t, "put", "--lease", lease, p + "k", "v") == "OK\n"
    ttl = out(t, "lease", "timetolive", lease, "--keys")
    assert re.fullmatch(
        rf"lease {lease} granted with TTL\(30s\), remaining\((2\d|30)s\), attached keys\(\[{re.escape(p)}k\]\)\n", ttl
    ), ttl
    listed = out(t, "lease", "list").splitlines()
    assert re.fullmatch(r"found \d+ leases", listed[0]) and lease in listed[1:]
    assert out(t, "lease", "keep-alive", "--once", lease) == f"lease {lease} keepalived with TTL(30)\n"
    assert stream(t, "lease", "keep-alive", lease, lines=1) == [f"lease {lease} keepalived with TTL(30)"]
    assert out(t, "lease", "revoke", lease) == f"lease {lease} revoked\n"
    assert out(t, "get", p + "k") == ""
    assert error(t, "lease", "revoke", lease) == (
        "Error: failed to revoke lease (etcdserver: requested lease not found)")
    assert out(t, "lease", "timetolive", lease) == f"lease {lease} already expired\n"


# --- maintenance ---------------------------------------------------------------------


def test_endpoint_status_and_health(target: Target):
    t = target
    mid = member_id(t)
    line = out(t, "endpoint", "status")
    m = re.fullmatch(
        rf"{re.escape(t.endpoint)}, {mid:x}, {re.escape(t.version)}, [0-9.]+ [kMG]?B, true, false, "
        r"(\d+), (\d+), (\d+), \n",
        line,
    )
    assert m, line
    assert int(m.group(1)) >= 1 and int(m.group(2)) >= int(m.group(3)) >= 1
    (doc,) = json.loads(out(t, "endpoint", "status", "-w", "json"))
    status = doc["Status"]
    assert doc["Endpoint"] == t.endpoint and status["version"] == t.version
    assert status["leader"] == status["header"]["member_id"] == mid
    assert status["dbSize"] >= status["dbSizeInUse"] > 0 and "errors" not in status
    health = ctl(t, "endpoint", "health").stderr  # etcdctl 3.4 prints this line on stderr
    assert re.fullmatch(
        rf"{re.escape(t.endpoint)} is healthy: successfully committed proposal: took = [0-9.]+[µm]?s\n", health
    ), health
    (h,) = json.loads(out(t, "endpoint", "health", "-w", "json"))
    assert (h["endpoint"], h["health"]) == (t.endpoint, True)


def test_member_list(target: Target):
    t = target
    mid = member_id(t)
    line = out(t, "member", "list")
    m = re.fullmatch(rf"{mid:x}, started, ([\w.-]+), (\S*), http://{re.escape(t.endpoint)}, false\n", line)
    assert m, line
    doc = json.loads(out(t, "member", "list", "-w", "json"))
    (member,) = doc["members"]
    assert member["ID"] == doc["header"]["member_id"] == mid
    assert member["clientURLs"] == [f"http://{t.endpoint}"] and member["name"] == m.group(1)


def test_snapshot_save(target: Target, p: str, tmp_path: Path):
    t = target
    for i in range(5):
        out(t, "put", f"{p}{i}", "v" * 100)
    path = tmp_path / "snap.db"
    proc = ctl(t, "snapshot", "save", str(path))
    assert proc.stdout == f"Snapshot saved at {path}\n"
    data = path.read_bytes()
    assert len(data) % 512 == 32  # what etcdctl checks: page-aligned data + SHA-256
    assert hashlib.sha256(data[:-32]).digest() == data[-32:]


def test_nospace_alarm_list_and_disarm(target: Target, tmp_path: Path):
    """A private server with a 2 MB quota: fill it, see NOSPACE, disarm it."""
    small = start_target(target.kind, tmp_path / "small", quota_bytes=2_000_000)
    try:
        value = "x" * 700_000
        for i in range(10):
            proc = ctl(small, "put", f"big{i}", input=value, ok=False)
            if proc.returncode != 0:
                break
        assert "Error: etcdserver: mvcc: database space exceeded" in proc.stderr
        mid = member_id(small)
        alarm = f"memberID:{mid} alarm:NOSPACE \n"
        assert out(small, "alarm", "list") == alarm
        assert out(small, "endpoint", "status").endswith(f", memberID:{mid} alarm:NOSPACE \n")
        assert out(small, "get", "big0", "--keys-only") == "big0\n\n"  # reads still served
        assert out(small, "alarm", "disarm") == alarm
        assert out(small, "alarm", "list") == ""
        assert out(small, "alarm", "disarm") == ""
    finally:
        small.server.stop()
