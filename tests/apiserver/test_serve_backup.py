"""`kubeplane backup` of a running `kubeplane serve` (over HTTPS, with its kubeconfig) and
`kubeplane restore` into a new data dir (issue 9 item 7): write, back up while writes go
on, write more, restore, start: exactly the objects as of the backup; a watch resumed from
a later resourceVersion gets 410; resourceVersions keep increasing."""
from __future__ import annotations

import http.client
import subprocess
import sys
import threading
from pathlib import Path

import orjson

from server_procs import ServerProc

CMS = "/api/v1/namespaces/default/configmaps"


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kubeplane.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=str(cwd))


def _configmaps(s: ServerProc, query: str = "") -> tuple[dict[str, str], int]:
    r = s.call("GET", CMS + query)
    assert r.status == 200, r
    return {i["metadata"]["name"]: i["metadata"]["resourceVersion"] for i in r.json["items"]}, \
        int(r.json["metadata"]["resourceVersion"])


def _first_watch_event(s: ServerProc, rv: int) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", s.http_port, timeout=10)
    try:
        conn.request("GET", f"{CMS}?watch=1&resourceVersion={rv}&allowWatchBookmarks=false")
        resp = conn.getresponse()
        assert resp.status == 200
        return orjson.loads(resp.readline())
    finally:
        conn.close()


def test_backup_while_writing_then_restore(tmp_path: Path):
    tokens = tmp_path / "tokens.csv"
    tokens.write_text("viewer-token,viewer,uid-viewer\n")
    live = ServerProc(tmp_path / "live", extra=["--token-auth-file", str(tokens)]).start()
    acked: list[tuple[str, int]] = []
    failed: list[object] = []
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            r = live.call("POST", CMS, {"metadata": {"name": f"w-{i}"}, "data": {"i": str(i)}})
            if r.status != 201:
                failed.append(r)
                return
            acked.append((f"w-{i}", int(r.json["metadata"]["resourceVersion"])))
            i += 1

    try:
        for i in range(20):
            assert live.call("POST", CMS, {"metadata": {"name": f"before-{i}"}}).status == 201
        t = threading.Thread(target=writer)
        t.start()
        try:
            out = tmp_path / "backup.snap"
            proc = _cli("backup", "--kubeconfig", live.kubeconfig, "-o", str(out), cwd=tmp_path)
            n_during = len(acked)
        finally:
            stop.set()
            t.join(30)
        assert proc.returncode == 0, proc.stderr
        rev = int(proc.stdout.split("revision ")[1].split(")")[0])
        # writes went on while the backup ran, and none failed
        assert not failed and n_during > 0 and any(v > rev for _, v in acked[:n_during]), (failed, n_during)
        print(f"backup at revision {rev}; {n_during} writes acknowledged while it ran")
        as_of_backup, _ = _configmaps(live, f"?resourceVersion={rev}&resourceVersionMatch=Exact")
        assert {f"before-{i}" for i in range(20)} <= set(as_of_backup)
        assert {n for n, v in acked if v <= rev} <= set(as_of_backup)
        assert not {n for n, v in acked if v > rev} & set(as_of_backup)

        # a user outside system:masters cannot take one
        denied = _cli("backup", "--kubeconfig", live.kubeconfig, "--token", "viewer-token",
                      "-o", str(tmp_path / "denied.snap"), cwd=tmp_path)
        assert denied.returncode == 1 and not (tmp_path / "denied.snap").exists()
        assert 'forbidden: User "viewer" cannot get path "/kubeplane/snapshot"' in denied.stderr

        assert live.call("POST", "/kubeplane/snapshot").status == 405
        assert live.call("HEAD", "/kubeplane/snapshot").status == 405

        for i in range(5):
            assert live.call("POST", CMS, {"metadata": {"name": f"after-{i}"}}).status == 201
        _, last_seen = _configmaps(live)
    finally:
        live.stop()

    proc = _cli("restore", str(out), "--data-dir", str(tmp_path / "restored"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    restored = ServerProc(tmp_path / "restored").start()
    try:
        now, list_rv = _configmaps(restored)
        assert now == as_of_backup                  # the same objects, the same resourceVersions
        assert list_rv > last_seen
        event = _first_watch_event(restored, last_seen)
        assert event["type"] == "ERROR" and event["object"]["code"] == 410, event
        r = restored.call("POST", CMS, {"metadata": {"name": "new"}})
        assert r.status == 201 and int(r.json["metadata"]["resourceVersion"]) > list_rv > last_seen
    finally:
        restored.stop()
