"""Flow control in the request path, over real HTTP: the APF objects served and applied
live, the response headers, rejections (429 + Retry-After + the PF headers), the
max-inflight limits without APF, request deadlines (504), who is who (tokens,
impersonation, anonymous)."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import orjson

from server_procs import ServerProc

FC = "/apis/flowcontrol.apiserver.k8s.io/v1"
BOOTSTRAP_FS = {"exempt", "probes", "system-leader-election", "endpoint-controller", "workload-leader-election",
                "system-node-high", "system-nodes", "kube-controller-manager", "kube-scheduler",
                "kube-system-service-accounts", "service-accounts", "global-default", "catch-all"}
BOOTSTRAP_PL = {"exempt", "leader-election", "node-high", "system", "workload-high", "workload-low",
                "global-default", "catch-all"}


def _as(user: str, *groups: str) -> dict[str, str]:
    h = {"Impersonate-User": user}
    if groups:
        h["Impersonate-Group"] = ", ".join(groups)
    return h


def _uids(server: ServerProc, plural: str) -> dict[str, str]:
    r = server.call("GET", f"{FC}/{plural}")
    assert r.status == 200, r
    return {o["metadata"]["name"]: o["metadata"]["uid"] for o in r.json["items"]}


async def _burst(port: int, path: str, n: int, headers: dict[str, str], body_of=None) -> list[tuple[int, dict]]:
    """n requests at once on n connections; (status, headers) of each."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=n + 1)) as s:
        async def one(i: int) -> tuple[int, dict]:
            if body_of is None:
                async with s.get(f"http://127.0.0.1:{port}{path}", headers=headers) as r:
                    await r.read()
                    return r.status, dict(r.headers)
            async with s.post(f"http://127.0.0.1:{port}{path}", json=body_of(i), headers=headers) as r:
                await r.read()
                return r.status, dict(r.headers)
        return await asyncio.gather(*(one(i) for i in range(n)))


# --- the default server (APF on) -------------------------------------------------------------

def test_bootstrap_configuration_is_served(server: ServerProc):
    assert BOOTSTRAP_FS <= set(_uids(server, "flowschemas"))
    assert BOOTSTRAP_PL <= set(_uids(server, "prioritylevelconfigurations"))
    pl = server.call("GET", f"{FC}/prioritylevelconfigurations/workload-low").json
    assert pl["spec"]["type"] == "Limited"
    lim = pl["spec"]["limited"]
    assert lim["nominalConcurrencyShares"] == 100
    assert lim["limitResponse"]["queuing"] == {"queues": 128, "handSize": 6, "queueLengthLimit": 50}
    fs = server.call("GET", f"{FC}/flowschemas/system-node-high").json
    assert fs["spec"]["priorityLevelConfiguration"]["name"] == "node-high"
    conds = {c["type"]: c["status"] for c in (fs.get("status") or {}).get("conditions", [])}
    deadline = time.monotonic() + 5
    while conds.get("Dangling") != "False" and time.monotonic() < deadline:
        time.sleep(0.2)
        fs = server.call("GET", f"{FC}/flowschemas/system-node-high").json
        conds = {c["type"]: c["status"] for c in (fs.get("status") or {}).get("conditions", [])}
    assert conds.get("Dangling") == "False"


def test_responses_name_the_flow_schema_and_priority_level(server: ServerProc, ns: str):
    fs, pl = _uids(server, "flowschemas"), _uids(server, "prioritylevelconfigurations")
    cases = [
        ({}, "exempt", "exempt"),                                           # system:masters
        (_as("alice"), "global-default", "global-default"),
        (_as("system:node:n1", "system:nodes"), "system-nodes", "system"),
        (_as("system:serviceaccount:kube-system:foo"), "kube-system-service-accounts", "workload-high"),
        (_as("system:serviceaccount:apps:bar"), "service-accounts", "workload-low"),
    ]
    for headers, want_fs, want_pl in cases:
        r = server.call("GET", f"/api/v1/namespaces/{ns}/configmaps", headers=headers)
        assert r.status == 200, r
        assert r.headers["x-kubernetes-pf-flowschema-uid"] == fs[want_fs], (headers, want_fs)
        assert r.headers["x-kubernetes-pf-prioritylevel-uid"] == pl[want_pl], (headers, want_pl)
    # a kubelet's lease renewal is node-high
    r = server.call("GET", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1",
                    headers=_as("system:node:n1", "system:nodes"))
    assert r.status == 404
    assert r.headers["x-kubernetes-pf-flowschema-uid"] == fs["system-node-high"]
    assert r.headers["x-kubernetes-pf-prioritylevel-uid"] == pl["node-high"]


def test_a_new_flow_schema_applies_at_once_and_rejects(server: ServerProc, ns: str):
    """A FlowSchema sending one user to a Reject level of one seat: its concurrent creates
    get 429 with Retry-After, the PF headers and upstream's Status; deleting the schema
    sends the user back to global-default."""
    pl_body = {"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "PriorityLevelConfiguration",
               "metadata": {"name": f"tiny-{ns}"},
               "spec": {"type": "Limited", "limited": {"nominalConcurrencyShares": 1,
                                                      "limitResponse": {"type": "Reject"}}}}
    r = server.call("POST", f"{FC}/prioritylevelconfigurations", pl_body)
    assert r.status == 201, r
    assert r.json["spec"]["limited"]["lendablePercent"] == 0           # defaulted
    fs_body = {"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema",
               "metadata": {"name": f"victim-{ns}"},
               "spec": {"matchingPrecedence": 300, "priorityLevelConfiguration": {"name": f"tiny-{ns}"},
                        "distinguisherMethod": {"type": "ByUser"},
                        "rules": [{"subjects": [{"kind": "User", "user": {"name": "victim"}}],
                                   "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"],
                                                      "namespaces": ["*"], "clusterScope": True}]}]}}
    r = server.call("POST", f"{FC}/flowschemas", fs_body)
    assert r.status == 201, r
    fs_uid, pl_uid = r.json["metadata"]["uid"], None
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            r = server.call("GET", f"/api/v1/namespaces/{ns}/configmaps", headers=_as("victim"))
            if r.headers.get("x-kubernetes-pf-flowschema-uid") == fs_uid:
                pl_uid = r.headers["x-kubernetes-pf-prioritylevel-uid"]
                break
            time.sleep(0.1)
        assert pl_uid == _uids(server, "prioritylevelconfigurations")[f"tiny-{ns}"]

        def body(i: int) -> dict:
            return {"metadata": {"name": f"cm-{i}"}, "data": {"k": "v" * 1000}}
        results = asyncio.run(_burst(server.http_port, f"/api/v1/namespaces/{ns}/configmaps", 40,
                                     _as("victim"), body))
        codes = [c for c, _ in results]
        assert set(codes) <= {201, 429}, codes
        assert codes.count(429) >= 1, codes
        assert codes.count(201) >= 1, codes
        rejected = next(h for c, h in results if c == 429)
        assert 1 <= int(rejected["Retry-After"]) <= 32
        assert rejected["X-Kubernetes-PF-FlowSchema-UID"] == fs_uid
        assert rejected["X-Kubernetes-PF-PriorityLevel-UID"] == pl_uid
        # nothing half-done: exactly the admitted creates exist
        names = {o["metadata"]["name"] for o in server.call("GET", f"/api/v1/namespaces/{ns}/configmaps").json["items"]}
        assert len(names) == codes.count(201)
        # the admin is exempt meanwhile
        assert all(c == 201 for c, _ in asyncio.run(_burst(
            server.http_port, f"/api/v1/namespaces/{ns}/configmaps", 20, {},
            lambda i: {"metadata": {"name": f"admin-{i}"}})))
    finally:
        server.call("DELETE", f"{FC}/flowschemas/victim-{ns}")
        server.call("DELETE", f"{FC}/prioritylevelconfigurations/tiny-{ns}")
    gd = _uids(server, "flowschemas")["global-default"]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        r = server.call("GET", f"/api/v1/namespaces/{ns}/configmaps", headers=_as("victim"))
        if r.headers.get("x-kubernetes-pf-flowschema-uid") == gd:
            break
        time.sleep(0.1)
    assert r.headers["x-kubernetes-pf-flowschema-uid"] == gd


def test_rejection_body_is_upstreams(server: ServerProc, ns: str):
    """The 429 Status as upstream writes it (seen through a level with no seats to spare:
    reuses the Reject level trick with one seat and a burst of creates)."""
    name = f"rej-{ns}"[:60]
    server.call("POST", f"{FC}/prioritylevelconfigurations", {
        "metadata": {"name": name}, "spec": {"type": "Limited", "limited": {
            "nominalConcurrencyShares": 1, "limitResponse": {"type": "Reject"}}}})
    r = server.call("POST", f"{FC}/flowschemas", {
        "metadata": {"name": name}, "spec": {"matchingPrecedence": 301, "priorityLevelConfiguration": {"name": name},
                                             "rules": [{"subjects": [{"kind": "Group", "group": {"name": "rejected"}}],
                                                        "resourceRules": [{"verbs": ["create"], "apiGroups": [""],
                                                                           "resources": ["configmaps"],
                                                                           "namespaces": [ns]}]}]}})
    assert r.status == 201, r
    try:
        time.sleep(0.5)
        got = None
        for attempt in range(5):
            async def burst():
                async with aiohttp.ClientSession() as s:
                    async def one(i):
                        async with s.post(f"http://127.0.0.1:{server.http_port}/api/v1/namespaces/{ns}/configmaps",
                                          json={"metadata": {"name": f"x{attempt}-{i}"}},
                                          headers=_as("bob", "rejected")) as resp:
                            return resp.status, await resp.json()
                    return await asyncio.gather(*(one(i) for i in range(40)))
            got = next((b for c, b in asyncio.run(burst()) if c == 429), None)
            if got:
                break
        assert got == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                       "message": "Too many requests, please try again later.", "reason": "TooManyRequests",
                       "details": {"retryAfterSeconds": got["details"]["retryAfterSeconds"]}, "code": 429}
    finally:
        server.call("DELETE", f"{FC}/flowschemas/{name}")
        server.call("DELETE", f"{FC}/prioritylevelconfigurations/{name}")


def test_bad_flow_control_objects_are_422(server: ServerProc):
    r = server.call("POST", f"{FC}/prioritylevelconfigurations", {
        "metadata": {"name": "bad-pl"}, "spec": {"type": "Limited", "limited": {
            "limitResponse": {"type": "Queue", "queuing": {"queues": 4, "handSize": 9, "queueLengthLimit": 1}}}}})
    assert r.status == 422, r
    assert any(c["field"] == "spec.limited.limitResponse.queuing.handSize" for c in r.json["details"]["causes"])
    r = server.call("POST", f"{FC}/flowschemas", {
        "metadata": {"name": "bad-fs"}, "spec": {"matchingPrecedence": 20000,
                                                 "priorityLevelConfiguration": {"name": "global-default"}}})
    assert r.status == 422, r
    assert any(c["field"] == "spec.matchingPrecedence" for c in r.json["details"]["causes"])
    assert server.call("GET", f"{FC}/flowschemas/bad-fs").status == 404


def test_deadline_gives_504(server: ServerProc, ns: str):
    t0 = time.monotonic()
    r = server.call("GET", f"/api/v1/namespaces/{ns}/configmaps?resourceVersion=999999999"
                           "&resourceVersionMatch=NotOlderThan&timeout=1s")
    took = time.monotonic() - t0
    assert r.status == 504, r
    assert r.json["reason"] == "Timeout"
    assert r.json["message"].startswith("Timeout: request did not complete within requested timeout")
    assert took < 2.9          # before the read's own 3 s wait for the cache would end
    r = server.call("GET", f"/api/v1/namespaces/{ns}/configmaps?timeout=soon")
    assert r.status == 400, r


def test_anonymous_reaches_only_public_endpoints(server: ServerProc):
    import http.client
    import ssl

    port = int(server.https_url.rsplit(":", 1)[1])
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    for path, want in (("/healthz", 200), ("/readyz", 200), ("/version", 200), ("/api/v1/namespaces", 401),
                       ("/metrics", 401)):
        c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
        c.request("GET", path)
        assert c.getresponse().status == want, path
        c.close()


def test_impersonation_needs_masters(tmp_path: Path):
    tokens = tmp_path / "tokens.csv"
    tokens.write_text('tok-alice,alice,1,"dev,ops"\n')
    s = ServerProc(tmp_path / "data", extra=["--token-auth-file", str(tokens)]).start()
    try:
        import http.client
        import ssl

        port = int(s.https_url.rsplit(":", 1)[1])
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE

        def get(headers: dict[str, str]) -> tuple[int, dict]:
            c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
            c.request("GET", "/api/v1/namespaces/default/configmaps", headers=headers)
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()} | {"body": r.read()}
        st, h = get({"Authorization": "Bearer tok-alice"})
        assert st == 200
        fs = {o["metadata"]["name"]: o["metadata"]["uid"] for o in s.call("GET", f"{FC}/flowschemas").json["items"]}
        assert h["x-kubernetes-pf-flowschema-uid"] == fs["global-default"]
        st, h = get({"Authorization": "Bearer tok-alice", "Impersonate-User": "bob"})
        assert st == 403, h
        st, _ = get({"Authorization": "Bearer wrong"})
        assert st == 401
    finally:
        s.stop()


# --- without APF: the max-inflight limits ---------------------------------------------------------

def test_max_inflight_limits_without_apf(tmp_path: Path):
    s = ServerProc(tmp_path / "data", extra=["--enable-priority-and-fairness", "false",
                                              "--max-mutating-requests-inflight", "1",
                                              "--max-requests-inflight", "1"]).start()
    try:
        assert s.call("POST", "/api/v1/namespaces", {"metadata": {"name": "mi"}}).status == 201
        r = s.call("GET", "/api/v1/namespaces/mi/configmaps", headers=_as("carol"))
        assert r.status == 200 and "x-kubernetes-pf-flowschema-uid" not in r.headers
        results = []
        for attempt in range(5):
            results = asyncio.run(_burst(s.http_port, "/api/v1/namespaces/mi/configmaps", 30, _as("carol"),
                                         lambda i, a=attempt: {"metadata": {"name": f"c{a}-{i}"}}))
            if any(c == 429 for c, _ in results):
                break
        codes = [c for c, _ in results]
        assert set(codes) <= {201, 429} and 429 in codes, codes
        assert next(h for c, h in results if c == 429)["Retry-After"] == "1"
        # system:masters is not limited
        admin = asyncio.run(_burst(s.http_port, "/api/v1/namespaces/mi/configmaps", 30, {},
                                   lambda i: {"metadata": {"name": f"admin-{i}"}}))
        assert all(c == 201 for c, _ in admin)
        m = s.call("GET", "/metrics").body.decode()
        assert 'apiserver_request_terminations_total{code="429"' in m or \
            'apiserver_request_terminations_total{component="apiserver",code="429"' in m or \
            ('apiserver_request_terminations_total' in m and 'code="429"' in m)
    finally:
        s.stop()


def _executing(s: ServerProc, level: str) -> float:
    for line in s.call("GET", "/metrics").body.decode().splitlines():
        if line.startswith("apiserver_flowcontrol_current_executing_requests{") and \
                f'priority_level="{level}"' in line and f'flow_schema="{level}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_long_list_keeps_its_seats_while_the_client_lags(tmp_path: Path):
    """A LIST of 4,000 objects (~22 MB, more than the socket buffers and the server's
    4 MiB write backlog hold) to a client that does not read: the handler waits for the
    client with its seats held, as a Go handler blocked on its write does (flow control
    counts it executing the whole time), while the server goes on answering others; once
    the client reads, the list arrives whole and the seats are given back."""
    import http.client
    import socket

    s = ServerProc(tmp_path / "data").start()
    try:
        assert s.call("POST", "/api/v1/namespaces", {"metadata": {"name": "big"}}).status == 201
        filler = "x" * 5000
        created = asyncio.run(_burst(s.http_port, "/api/v1/namespaces/big/configmaps", 4000, {},
                                     lambda i: {"metadata": {"name": f"cm-{i:04d}"}, "data": {"f": filler}}))
        assert {c for c, _ in created} == {201}
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        sock.settimeout(60)
        sock.connect(("127.0.0.1", s.http_port))
        slow = http.client.HTTPConnection("127.0.0.1", s.http_port)
        slow.sock = sock
        slow.request("GET", "/api/v1/namespaces/big/configmaps?resourceVersion=0", headers=_as("slow-reader"))
        deadline = time.monotonic() + 10
        while _executing(s, "global-default") < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _executing(s, "global-default") == 1
        time.sleep(1.0)
        t0 = time.monotonic()
        assert s.call("GET", "/healthz").status == 200
        assert s.call("GET", "/api/v1/namespaces/big/configmaps/cm-0001", headers=_as("alice")).status == 200
        assert time.monotonic() - t0 < 1.0
        assert _executing(s, "global-default") == 1      # still writing: the client has not read
        r = slow.getresponse()
        body = r.read()
        assert r.status == 200 and r.getheader("X-Kubernetes-PF-PriorityLevel-UID")
        lst = orjson.loads(body)
        assert [o["metadata"]["name"] for o in lst["items"]] == [f"cm-{i:04d}" for i in range(4000)]
        assert len(body) > 20_000_000
        slow.close()
        deadline = time.monotonic() + 5
        while _executing(s, "global-default") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _executing(s, "global-default") == 0
        sizes = [line for line in s.call("GET", "/metrics").body.decode().splitlines()
                 if line.startswith("apiserver_response_sizes_sum{") and 'verb="LIST"' in line
                 and 'resource="configmaps"' in line]
        assert sizes and max(float(x.rsplit(" ", 1)[1]) for x in sizes) >= len(body)
    finally:
        s.stop()
