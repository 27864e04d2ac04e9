"""The read path (issue 4), black box: what GET, LIST and WATCH promise about
resourceVersion, pagination and watch streams, whatever serves them (the store directly or
a watch cache in between).

Upstream facts checked here (kube-apiserver, apiserver/pkg/storage/cacher and etcd3):
- LIST/GET resourceVersion "0": any state, served from the cache; `limit` is ignored
  for RV=0 (the whole list, no continue token).
- resourceVersion unset: consistent (a read right after a write sees it).
- resourceVersion=N (NotOlderThan, or no match): the answer's RV is >= N; N beyond
  the store's revision: 504 Timeout "Too large resource version" after waiting up to 3 s.
- resourceVersionMatch=Exact: the state at exactly N.
- ListOptions validation (ValidateListOptions) fails as 422 Invalid on kind ListOptions.
- limit/continue: every page at the first page's revision; remainingItemCount only
  without selectors; token = base64url (RawURLEncoding, no padding) of
  {"v":"meta.k8s.io/v1","rv":N,"start":"<key relative to the list prefix>\\u0000"};
  a token whose revision was compacted: 410 Expired with a fresh token (rv -1).
- Watch from N: exactly the events after N; from a revision older than anything the
  server still has: HTTP 200 then an ERROR event with a 410 Status.
- Bookmarks carry only kind, apiVersion and metadata.resourceVersion; one comes just
  before timeoutSeconds ends the watch.
- WatchList: current objects as ADDED, a BOOKMARK annotated
  k8s.io/initial-events-end: "true", then live events.
- Selectors on watch: an object that stops matching arrives as DELETED carrying its
  previous content at the event's resourceVersion (cacheWatcher.convertToWatchEvent), one
  that starts matching as ADDED.
- Cache not ready right after start: LIST/WATCH may answer 429 with Retry-After; GET works.
"""
from __future__ import annotations

import base64
import http.client
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import pytest

from server_procs import ServerProc

CM = "/api/v1/namespaces/{ns}/configmaps"


def cm(name: str, labels: dict[str, str] | None = None, **data: str) -> dict:
    md: dict[str, Any] = {"name": name}
    if labels:
        md["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": md, "data": data}


def rv_of(obj: dict) -> int:
    return int(obj["metadata"]["resourceVersion"])


def names(lst: dict) -> list[str]:
    return [o["metadata"]["name"] for o in lst["items"]]


def create(server: ServerProc, ns: str, body: dict) -> dict:
    r = server.call("POST", CM.format(ns=ns), body)
    assert r.status == 201, r
    return r.json


def merge(server: ServerProc, ns: str, name: str, patch: dict, path: str = CM) -> dict:
    r = server.call("PATCH", f"{path.format(ns=ns)}/{name}", patch, content_type="application/merge-patch+json")
    assert r.status == 200, r
    return r.json


def delete(server: ServerProc, ns: str, name: str, path: str = CM, query: str = "") -> None:
    r = server.call("DELETE", f"{path.format(ns=ns)}/{name}{query}")
    assert r.status in (200, 202), r


def decode_token(token: str) -> dict:
    return orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))


class Stream:
    """A watch over plain HTTP; a thread reads lines into a queue so a test can wait for
    the next event with a timeout and keep the stream open across writes."""

    def __init__(self, server: ServerProc, path: str):
        self.conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
        self.conn.request("GET", path)
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.headers = {k.lower(): v for k, v in self.resp.getheaders()}
        self.q: "queue.Queue[dict | None]" = queue.Queue()
        self.body = b""
        if self.status == 200:
            threading.Thread(target=self._read, daemon=True).start()
        else:
            self.body = self.resp.read()

    def _read(self) -> None:
        buf = b""
        try:
            while True:
                chunk = self.resp.read1(65536)
                if not chunk:
                    break
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        self.q.put(orjson.loads(line))
        except Exception:
            pass
        self.q.put(None)   # end of stream

    def next(self, timeout: float = 10.0) -> dict | None:
        """The next event; None at the end of the stream or after `timeout` seconds."""
        try:
            return self.q.get(timeout=timeout)
        except queue.Empty:
            return None

    def take(self, n: int, timeout: float = 10.0) -> list[dict]:
        out: list[dict] = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            ev = self.next(max(deadline - time.monotonic(), 0.01))
            if ev is None:
                break
            out.append(ev)
        return out

    def until_end(self, timeout: float = 10.0) -> tuple[list[dict], bool]:
        """Every event until the server ends the stream; (events, ended in time)."""
        out: list[dict] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                ev = self.q.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                break
            if ev is None:
                return out, True
            out.append(ev)
        return out, False

    def close(self) -> None:
        try:
            self.conn.sock and self.conn.sock.shutdown(2)
        except OSError:
            pass
        self.conn.close()

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def summary(evs: list[dict]) -> list[tuple[str, str, int]]:
    return [(e["type"], e["object"]["metadata"].get("name", ""), rv_of(e["object"])) for e in evs]


# --- resourceVersion semantics of LIST and GET ---------------------------------------------------

def test_list_rv0_ignores_limit(server, ns):
    """RV=0 is served from the cache as is: `limit` is ignored, the whole list comes back
    without continue/remainingItemCount (upstream cacher: hasLimit is false for RV=0).
    RV=0 may be stale, so wait (bounded) for the writes to show up."""
    made = [create(server, ns, cm(f"z{i}")) for i in range(5)]
    deadline = time.monotonic() + 5
    while True:
        r = server.call("GET", f"{CM.format(ns=ns)}?resourceVersion=0&limit=2")
        assert r.status == 200, r
        lst = r.json
        assert "continue" not in lst["metadata"], f"RV=0 must ignore limit, got a continue token: {lst['metadata']}"
        assert "remainingItemCount" not in lst["metadata"]
        assert all(rv_of(o) <= rv_of(lst) for o in lst["items"])
        if len(lst["items"]) == 5 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert names(lst) == [f"z{i}" for i in range(5)]
    # GET with RV=0: any version, but the object must be there once the list showed it
    r = server.call("GET", f"{CM.format(ns=ns)}/z4?resourceVersion=0")
    assert r.status == 200 and rv_of(r.json) == rv_of(made[4])


def test_consistent_reads_see_every_write_on_any_connection(server, ns):
    """resourceVersion unset is a consistent read: after each write, a LIST and a GET on
    the same keep-alive connection and on a new one see it (upstream serves these from the
    cache only after it has caught up with the store's current revision)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=10)

    def same(method: str, path: str, body: Any = None, ctype: str = "application/json") -> tuple[int, Any]:
        conn.request(method, path, body=orjson.dumps(body) if body is not None else None,
                     headers={"Content-Type": ctype} if body is not None else {})
        r = conn.getresponse()
        data = r.read()
        return r.status, orjson.loads(data) if data else None

    base = CM.format(ns=ns)
    try:
        for i in range(25):
            name = f"c{i:02d}"
            st, obj = same("POST", base, cm(name, {"round": str(i)}, v="1"))
            assert st == 201, obj
            wrv = rv_of(obj)
            for getter in (same, lambda m, p: (lambda r: (r.status, r.json))(server.call(m, p))):
                st, lst = getter("GET", base)
                assert st == 200 and name in names(lst), f"LIST after create {name} (rv {wrv}) missed it"
                assert rv_of(lst) >= wrv
                st, lst = getter("GET", f"{base}?labelSelector=round%3D{i}")
                assert st == 200 and names(lst) == [name]
                st, got = getter("GET", f"{base}/{name}")
                assert st == 200 and rv_of(got) == wrv
            st, obj = same("PATCH", f"{base}/{name}", {"data": {"v": "2"}}, "application/merge-patch+json")
            assert st == 200
            st, got = same("GET", f"{base}/{name}")
            assert got["data"] == {"v": "2"} and rv_of(got) == rv_of(obj)
            got = server.call("GET", base).json
            assert [o["data"] for o in got["items"] if o["metadata"]["name"] == name] == [{"v": "2"}]
            if i % 2:
                st, _ = same("DELETE", f"{base}/{name}")
                assert st == 200
                assert name not in names(server.call("GET", base).json)
                st, _ = same("GET", f"{base}/{name}")
                assert st == 404
    finally:
        conn.close()


def test_not_older_than(server, ns):
    """RV=N with resourceVersionMatch=NotOlderThan (or without a match: the legacy
    meaning of a non-zero RV) returns a state at least as new as N."""
    create(server, ns, cm("a"))
    b = create(server, ns, cm("b"))
    n = rv_of(b)
    for q in (f"resourceVersion={n}&resourceVersionMatch=NotOlderThan", f"resourceVersion={n}",
              f"resourceVersion={n - 1}&resourceVersionMatch=NotOlderThan"):
        r = server.call("GET", f"{CM.format(ns=ns)}?{q}")
        assert r.status == 200, (q, r)
        assert rv_of(r.json) >= n and names(r.json) == ["a", "b"], q
    r = server.call("GET", f"{CM.format(ns=ns)}/b?resourceVersion={n}")
    assert r.status == 200 and rv_of(r.json) >= n


def test_exact_lists_show_each_moment(server, ns):
    """resourceVersionMatch=Exact returns the state at exactly that revision: create a,
    create b, update a, delete a; each revision shows the objects of that moment, and
    paging an Exact list stays at that revision."""
    a1 = create(server, ns, cm("a", v="1"))
    b1 = create(server, ns, cm("b", v="1"))
    a2 = merge(server, ns, "a", {"data": {"v": "2"}})
    delete(server, ns, "a")
    after_delete = rv_of(server.call("GET", CM.format(ns=ns)).json)
    expect = {
        rv_of(a1): [("a", rv_of(a1), "1")],
        rv_of(b1): [("a", rv_of(a1), "1"), ("b", rv_of(b1), "1")],
        rv_of(a2): [("a", rv_of(a2), "2"), ("b", rv_of(b1), "1")],
        after_delete: [("b", rv_of(b1), "1")],
    }
    for rev, want in expect.items():
        r = server.call("GET", f"{CM.format(ns=ns)}?resourceVersion={rev}&resourceVersionMatch=Exact")
        assert r.status == 200, r
        got = [(o["metadata"]["name"], rv_of(o), o["data"]["v"]) for o in r.json["items"]]
        assert got == want, rev
        assert rv_of(r.json) == rev
    # paging at an exact revision
    r = server.call("GET", f"{CM.format(ns=ns)}?resourceVersion={rv_of(a2)}&resourceVersionMatch=Exact&limit=1").json
    assert names(r) == ["a"] and rv_of(r) == rv_of(a2) and r["metadata"]["continue"]
    r2 = server.call("GET", f"{CM.format(ns=ns)}?limit=1&continue={r['metadata']['continue']}").json
    assert names(r2) == ["b"] and rv_of(r2) == rv_of(a2) and not r2["metadata"].get("continue")


def test_list_far_future_rv_is_504_too_large(server, ns):
    """A LIST at a resourceVersion the server has not reached answers 504 Timeout "Too large
    resource version" (upstream waits up to 3 s for the cache first)."""
    cur = rv_of(server.call("GET", CM.format(ns=ns)).json)
    want = cur + 1_000_000
    qs = [f"resourceVersion={want}&resourceVersionMatch=NotOlderThan", f"resourceVersion={want}"]
    t0 = time.monotonic()
    with ThreadPoolExecutor(len(qs)) as ex:
        replies = list(ex.map(lambda q: server.call("GET", f"{CM.format(ns=ns)}?{q}"), qs))
    assert time.monotonic() - t0 < 6
    for q, r in zip(qs, replies):
        assert r.status == 504, (q, r)
        body = r.json
        assert body["reason"] == "Timeout" and body["code"] == 504
        assert "Too large resource version" in body["message"], body


def test_get_far_future_rv_is_504_too_large(server, ns):
    """GET with a resourceVersion the server has not reached: upstream's cacher waits
    (WaitUntilFreshAndGet, up to 3 s), then 504 "Too large resource version"."""
    o = create(server, ns, cm("g"))
    t0 = time.monotonic()
    r = server.call("GET", f"{CM.format(ns=ns)}/g?resourceVersion={rv_of(o) + 1_000_000}")
    assert time.monotonic() - t0 < 6
    assert r.status == 504, r
    assert r.json["reason"] == "Timeout" and "Too large resource version: " in r.json["message"]


@pytest.mark.parametrize("query,message", [
    ("resourceVersionMatch=NotOlderThan", "resourceVersionMatch is forbidden unless resourceVersion is provided"),
    ("resourceVersionMatch=Exact", "resourceVersionMatch is forbidden unless resourceVersion is provided"),
    ("resourceVersion=0&resourceVersionMatch=Exact", 'resourceVersionMatch "exact" is forbidden for resourceVersion "0"'),
    ("resourceVersion=5&resourceVersionMatch=Sometimes", 'Unsupported value: "Sometimes"'),
])
def test_list_options_validation(server, ns, query, message):
    """ValidateListOptions failures: upstream ListResource answers
    errors.NewInvalid(GroupKind{meta.k8s.io, ListOptions}, "", errs): 422 Invalid."""
    r = server.call("GET", f"{CM.format(ns=ns)}?{query}")
    assert r.status == 422, r
    assert r.json["reason"] == "Invalid" and message in r.json["message"], r.json


# --- pagination ------------------------------------------------------------------------------------

def test_pages_stay_at_one_revision_while_writes_continue(server, ns):
    """Every page of a limit/continue list is read at the first page's revision: objects
    created, updated or deleted between pages neither appear, change nor vanish;
    remainingItemCount counts what is left at that revision; the token is base64url JSON
    with the list revision and the last key (relative to the list prefix) plus NUL."""
    total = 24
    for i in range(total):
        create(server, ns, cm(f"p{i:02d}", v="orig"))
    page = server.call("GET", f"{CM.format(ns=ns)}?limit=5").json
    rev = rv_of(page)
    tok = page["metadata"]["continue"]
    assert decode_token(tok) == {"v": "meta.k8s.io/v1", "rv": rev, "start": "p04\u0000"}
    seen = names(page)
    assert page["metadata"]["remainingItemCount"] == total - 5
    step = 0
    deleted: set[str] = set()
    while page["metadata"].get("continue"):
        step += 1
        # churn: one object before the cursor, one after, delete and update unseen ones
        last = seen[-1]
        create(server, ns, cm(f"{last}x{step}"))
        create(server, ns, cm(f"q-new-{step}"))
        unseen = [f"p{i:02d}" for i in range(total) if f"p{i:02d}" not in seen and f"p{i:02d}" not in deleted]
        if len(unseen) >= 2:
            delete(server, ns, unseen[-1])
            deleted.add(unseen[-1])
            merge(server, ns, unseen[0], {"data": {"v": "changed"}})
        page = server.call("GET", f"{CM.format(ns=ns)}?limit=5&continue={page['metadata']['continue']}").json
        assert rv_of(page) == rev
        assert all(rv_of(o) <= rev and o["data"] == {"v": "orig"} for o in page["items"])
        seen += names(page)
        if page["metadata"].get("continue"):
            assert page["metadata"]["remainingItemCount"] == total - len(seen)
        else:
            assert "remainingItemCount" not in page["metadata"]
    assert seen == [f"p{i:02d}" for i in range(total)]
    assert "=" not in tok, "upstream encodes continue tokens with base64.RawURLEncoding (no padding)"


def test_pagination_with_label_selector(server, ns):
    """With a label selector pages hold matching objects only, carry no
    remainingItemCount (upstream sets it only for an empty predicate), and together
    hold every match exactly once."""
    for i in range(20):
        create(server, ns, cm(f"s{i:02d}", {"even": str(i % 2 == 0).lower()}))
    got: list[str] = []
    page = server.call("GET", f"{CM.format(ns=ns)}?limit=3&labelSelector=even%3Dtrue").json
    rev = rv_of(page)
    while True:
        assert len(page["items"]) <= 3
        assert "remainingItemCount" not in page["metadata"]
        got += names(page)
        if not page["metadata"].get("continue"):
            break
        create(server, ns, cm(f"s{len(got):02d}-late", {"even": "true"}))
        page = server.call("GET", f"{CM.format(ns=ns)}?limit=3&labelSelector=even%3Dtrue"
                                  f"&continue={page['metadata']['continue']}").json
        assert rv_of(page) == rev
    assert got == [f"s{i:02d}" for i in range(0, 20, 2)]


def test_cluster_scope_continue_token_start_key(server, ns):
    """For a list across namespaces the token's start key is "<namespace>/<name>\\0"."""
    create(server, ns, cm("k1"))
    create(server, ns, cm("k2"))
    page = server.call("GET", f"/api/v1/configmaps?limit=1&fieldSelector=metadata.namespace%3D{ns}").json
    assert names(page) == ["k1"]
    tok = decode_token(page["metadata"]["continue"])
    assert tok["start"] == f"{ns}/k1\u0000" and tok["v"] == "meta.k8s.io/v1" and tok["rv"] == rv_of(page)


# --- watch -----------------------------------------------------------------------------------------

def test_watch_from_any_recent_rv_gets_exactly_the_later_events(server, ns):
    """A watch from resourceVersion N delivers exactly the changes after N, in order, once;
    checked from every event of a 40-write history (well inside any event window)."""
    start = rv_of(create(server, ns, cm("w-start")))
    objs = [f"w{i}" for i in range(6)]
    alive: set[str] = set()
    expected: list[tuple[str, str]] = []
    for i in range(40):
        name = objs[i % len(objs)]
        if name not in alive:
            create(server, ns, cm(name, v=str(i)))
            alive.add(name)
            expected.append(("ADDED", name))
        elif i % 5 == 4:
            delete(server, ns, name)
            alive.discard(name)
            expected.append(("DELETED", name))
        else:
            merge(server, ns, name, {"data": {"v": str(i)}})
            expected.append(("MODIFIED", name))
    with Stream(server, f"{CM.format(ns=ns)}?watch=1&resourceVersion={start}&timeoutSeconds=2") as s:
        full, ended = s.until_end(8)
    assert ended
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in full] == expected
    rvs = [rv_of(e["object"]) for e in full]
    assert rvs == sorted(set(rvs)) and rvs[0] > start

    def tail(k: int) -> list[tuple[str, str, int]]:
        with Stream(server, f"{CM.format(ns=ns)}?watch=1&resourceVersion={rvs[k]}&timeoutSeconds=1") as s:
            evs, ended = s.until_end(8)
        assert ended
        return summary(evs)

    points = list(range(0, 40, 3)) + [39]
    with ThreadPoolExecutor(8) as ex:
        tails = list(ex.map(tail, points))
    for k, got in zip(points, tails):
        assert got == summary(full)[k + 1:], f"watch from the rv of event {k}"


def test_watch_bookmark_before_timeout(server, ns):
    """allowWatchBookmarks: a BOOKMARK ends a watch that timeoutSeconds closes; it carries
    only kind, apiVersion and metadata.resourceVersion, not older than the last event, and
    a watch resumed from it replays nothing."""
    rv0 = rv_of(create(server, ns, cm("b0")))
    t0 = time.monotonic()
    with Stream(server, f"{CM.format(ns=ns)}?watch=1&resourceVersion={rv0}&allowWatchBookmarks=true"
                        f"&timeoutSeconds=2") as s:
        time.sleep(0.2)
        b1 = create(server, ns, cm("b1"))
        evs, ended = s.until_end(8)
    assert ended and time.monotonic() - t0 < 6
    assert summary([e for e in evs if e["type"] != "BOOKMARK"]) == [("ADDED", "b1", rv_of(b1))]
    last = evs[-1]
    assert last["type"] == "BOOKMARK", evs
    bm = last["object"]
    assert set(bm) <= {"kind", "apiVersion", "metadata"} and bm["kind"] == "ConfigMap" and bm["apiVersion"] == "v1"
    extra = {k: v for k, v in bm["metadata"].items() if k != "resourceVersion"}
    assert extra in ({}, {"creationTimestamp": None}), bm
    assert rv_of(bm) >= rv_of(b1)
    with Stream(server, f"{CM.format(ns=ns)}?watch=1&resourceVersion={rv_of(bm)}&timeoutSeconds=1") as s:
        again, ended = s.until_end(6)
    assert ended and again == []


def test_watch_list_initial_events_bookmark_then_live(server, ns):
    """WatchList streams the current objects as ADDED, then a BOOKMARK annotated
    k8s.io/initial-events-end, then live events; the bookmark's RV covers the initial state
    (and is >= a requested NotOlderThan RV)."""
    made = [create(server, ns, cm(f"i{i}")) for i in range(3)]
    base = (f"{CM.format(ns=ns)}?watch=1&sendInitialEvents=true&allowWatchBookmarks=true"
            f"&resourceVersionMatch=NotOlderThan")
    for path in (base, f"{base}&resourceVersion={rv_of(made[1])}", f"{base}&resourceVersion=0"):
        with Stream(server, path) as s:
            assert s.status == 200, s.body
            first = s.take(4, 10)
            assert [e["type"] for e in first] == ["ADDED"] * 3 + ["BOOKMARK"], first
            assert sorted(e["object"]["metadata"]["name"] for e in first[:3]) == ["i0", "i1", "i2"]
            bm = first[3]["object"]
            assert bm["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
            if "resourceVersion=0" not in path:
                assert rv_of(bm) >= rv_of(made[2])
            live = create(server, ns, cm(f"live{len(path)}"))
            ev = s.next(10)
            while ev is not None and ev["type"] == "BOOKMARK":
                ev = s.next(10)
            assert ev is not None and ev["type"] == "ADDED" and rv_of(ev["object"]) == rv_of(live)
            assert rv_of(ev["object"]) > rv_of(bm)
        delete(server, ns, f"live{len(path)}")
    # sendInitialEvents without bookmarks is refused before streaming (ValidateListOptions)
    r = server.call("GET", f"{CM.format(ns=ns)}?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan")
    assert r.status == 422 and r.json["reason"] == "Invalid"


def test_watch_label_selector_transitions(server, ns):
    """An object that stops matching the watch's label selector arrives as DELETED (with
    its previous content, at the event's RV), one that starts matching as ADDED; changes
    outside the selector are not sent."""
    rv0 = rv_of(create(server, ns, cm("other", {"team": "b"})))
    with Stream(server, f"{CM.format(ns=ns)}?watch=1&resourceVersion={rv0}&labelSelector=team%3Da") as s:
        x1 = create(server, ns, cm("x", {"team": "a"}, v="1"))
        x2 = merge(server, ns, "x", {"metadata": {"labels": {"team": "b"}}, "data": {"v": "2"}})
        merge(server, ns, "x", {"data": {"v": "3"}})
        merge(server, ns, "other", {"data": {"v": "9"}})
        x4 = merge(server, ns, "x", {"metadata": {"labels": {"team": "a"}}})
        x5 = merge(server, ns, "x", {"data": {"v": "5"}})
        delete(server, ns, "x")
        evs = s.take(5, 10)
        extra = s.next(0.5)
    assert extra is None or extra["type"] == "BOOKMARK", extra
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in evs] == [
        ("ADDED", "x"), ("DELETED", "x"), ("ADDED", "x"), ("MODIFIED", "x"), ("DELETED", "x")]
    assert rv_of(evs[0]["object"]) == rv_of(x1) and rv_of(evs[2]["object"]) == rv_of(x4)
    assert rv_of(evs[3]["object"]) == rv_of(x5)
    gone = evs[1]["object"]
    assert rv_of(gone) == rv_of(x2)
    assert gone["metadata"]["labels"] == {"team": "a"} and gone["data"] == {"v": "1"}, \
        "a DELETED sent because the object stopped matching carries the previous content"
    assert rv_of(evs[4]["object"]) > rv_of(x5) and evs[4]["object"]["data"] == {"v": "5"}


POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
       "spec": {"containers": [{"name": "c", "image": "nginx:1.25"}]}}


def pod(name: str, node: str | None = None) -> dict:
    p = orjson.loads(orjson.dumps(POD))
    p["metadata"]["name"] = name
    if node:
        p["spec"]["nodeName"] = node
    return p


def test_pod_watch_by_node_name(server, ns):
    """A kubelet's watch (all namespaces, fieldSelector spec.nodeName=n1) sees only its
    node's pods: created there, bound there later (ADDED when bound), deleted."""
    pods = "/api/v1/namespaces/{ns}/pods"
    rv0 = rv_of(server.call("GET", pods.format(ns=ns)).json)
    with Stream(server, f"/api/v1/pods?watch=1&resourceVersion={rv0}&fieldSelector=spec.nodeName%3Dn1-{ns}") as s:
        for name, node in (("p1", f"n1-{ns}"), ("p2", f"n2-{ns}"), ("p3", None), ("p4", None)):
            r = server.call("POST", pods.format(ns=ns), pod(name, node))
            assert r.status == 201, r
        for name, node in (("p3", f"n1-{ns}"), ("p4", f"n2-{ns}")):
            r = server.call("POST", f"{pods.format(ns=ns)}/{name}/binding",
                            {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                             "target": {"apiVersion": "v1", "kind": "Node", "name": node}})
            assert r.status == 201, r
        for name in ("p2", "p1"):
            delete(server, ns, name, pods, "?gracePeriodSeconds=0")
        evs = []
        while True:
            ev = s.next(1.5)
            if ev is None:
                break
            evs.append(ev)
    assert {e["object"]["metadata"]["name"] for e in evs} <= {"p1", "p3"}
    assert all(e["object"]["spec"]["nodeName"] == f"n1-{ns}" for e in evs)
    seq = [(e["type"], e["object"]["metadata"]["name"]) for e in evs if e["type"] != "MODIFIED"]
    assert seq == [("ADDED", "p1"), ("ADDED", "p3"), ("DELETED", "p1")], evs


# --- compaction: in process, over a store the test compacts ------------------------------------------

@pytest.fixture
async def inproc(tmp_path):
    import aiohttp

    from kubeplane.apiserver.server.apiserver import APIServer, ServerConfig
    from kubeplane.store.mvcc import EmbeddedStore

    store = EmbeddedStore(tmp_path / "store")
    servers: list[Any] = []

    async def start() -> tuple[Any, Any]:
        srv = APIServer(ServerConfig(data_dir=str(tmp_path), secure_port=-1, http_listen="127.0.0.1:0"), store=store)
        await srv.start()
        servers.append(srv)
        return srv, aiohttp.ClientSession(f"http://127.0.0.1:{srv.http_port}",
                                           timeout=aiohttp.ClientTimeout(total=15))

    yield store, start
    for srv in servers:
        await srv.close()
    await store.close()


async def _post(session, path: str, body: dict) -> dict:
    async with session.post(path, data=orjson.dumps(body), headers={"Content-Type": "application/json"}) as r:
        assert r.status == 201, await r.text()
        return await r.json()


async def test_continue_after_compaction_is_410_with_fresh_token(inproc):
    """A continue token whose revision was compacted: 410 Expired, and metadata.continue
    holds a fresh token (rv -1) that lists the remainder at the latest revision, so later
    creates after the cursor show up and later deletes are gone."""
    store, start = inproc
    _, s = await start()
    async with s:
        for i in range(6):
            await _post(s, "/api/v1/namespaces/default/configmaps", {"metadata": {"name": f"c{i}"}})
        async with s.get("/api/v1/namespaces/default/configmaps?limit=2") as r:
            page = await r.json()
        token = page["metadata"]["continue"]
        await _post(s, "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "c9"}})
        async with s.delete("/api/v1/namespaces/default/configmaps/c3") as r:
            assert r.status == 200
        await store.compact(await store.current_revision())
        async with s.get(f"/api/v1/namespaces/default/configmaps?limit=2&continue={token}") as r:
            assert r.status == 410
            body = await r.json()
        assert body["reason"] == "Expired" and body["code"] == 410
        fresh = decode_token(body["metadata"]["continue"])
        assert fresh["rv"] == -1 and fresh["start"] == "c1\u0000"
        got: list[str] = []
        tok = body["metadata"]["continue"]
        while tok:
            async with s.get(f"/api/v1/namespaces/default/configmaps?limit=2&continue={tok}") as r:
                assert r.status == 200
                page = await r.json()
            got += names(page)
            tok = page["metadata"].get("continue")
        assert got == ["c2", "c4", "c5", "c9"]


async def test_watch_from_revision_older_than_anything_kept_is_410_error_event(inproc):
    """Objects written, the server stopped, the store compacted, a new server started: a
    watch from a revision before the compaction (older than any cache can hold) is HTTP 200
    then one ERROR event with a 410 Expired Status "too old resource version", then the
    end of the stream; a watch from the current revision works."""
    store, start = inproc
    srv, s = await start()
    async with s:
        old = rv_of(await _post(s, "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "o0"}}))
        for i in range(1, 4):
            await _post(s, "/api/v1/namespaces/default/configmaps", {"metadata": {"name": f"o{i}"}})
    await srv.close()
    await store.compact(await store.current_revision())
    _, s = await start()
    async with s:
        async with s.get(f"/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={old}") as r:
            assert r.status == 200
            lines = [orjson.loads(x) for x in (await r.read()).splitlines() if x.strip()]
        assert len(lines) == 1 and lines[0]["type"] == "ERROR", lines
        st = lines[0]["object"]
        assert st["kind"] == "Status" and st["code"] == 410 and st["reason"] == "Expired"
        assert st["message"].startswith(f"too old resource version: {old}")
        async with s.get("/api/v1/namespaces/default/configmaps") as r:
            cur = rv_of(await r.json())
        async with s.get(f"/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={cur}"
                         f"&timeoutSeconds=1") as r:
            assert r.status == 200
            await _post(s, "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "o9"}})
            lines = [orjson.loads(x) for x in (await r.read()).splitlines() if x.strip()]
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in lines] == [("ADDED", "o9")]


# --- right after start ----------------------------------------------------------------------------

def test_reads_right_after_restart(tmp_path):
    """Right after start a cache may still be filling: LIST and WATCH may answer 429 with
    Retry-After (never required), GET always answers; soon everything is served."""
    srv = ServerProc(tmp_path / "data").start()
    try:
        with ThreadPoolExecutor(16) as ex:
            list(ex.map(lambda i: srv.call("POST", "/api/v1/namespaces/default/configmaps", cm(f"r{i:03d}")),
                        range(300)))
        srv.stop()
        srv.start()
        got = srv.call("GET", "/api/v1/namespaces/default/configmaps/r150")
        lst = srv.call("GET", "/api/v1/namespaces/default/configmaps")
        with Stream(srv, "/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=1") as w:
            wstatus, wheaders = w.status, w.headers
        assert got.status == 200 and got.json["metadata"]["name"] == "r150"
        for status, headers in ((lst.status, lst.headers), (wstatus, wheaders)):
            assert status in (200, 429)
            if status == 429:
                assert int(headers["retry-after"]) >= 1
        deadline = time.monotonic() + 10
        while True:
            lst = srv.call("GET", "/api/v1/namespaces/default/configmaps")
            if lst.status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert lst.status == 200 and len(lst.json["items"]) == 300
    finally:
        srv.stop()
