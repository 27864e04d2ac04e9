"""``python -m bench api``: the API server's write path through HTTPS.

Starts ``kubeplane serve`` (embedded store, fsync on, a fresh data dir), then drives it
with ``wrk`` (C, so the client costs little of the 2 shared cores) and 32 connections:

- pod creates: 2.3 KB pods with unique names, POST over HTTPS with the admin token;
  issue 3's target >= 1,600 pods/s (upstream kube-apiserver 1.28 + etcd 3.4: 634-828/s);
- merge patches: PATCH application/merge-patch+json of one label on existing pods;
  target >= 1,100/s (upstream 483-579/s).

With ``--protobuf``, every repetition also creates the pod with protobuf bodies and
``Accept`` protobuf (as a Go client or kubectl 1.32+), once with one spec for all pods (a
template: the codec's spec memo hits) and once with no two specs alike; the server's CPU
time per create (user + system from /proc, all threads, over the phase) is reported for the
JSON and the protobuf creates: on a shared machine it swings less than the rates.

Each phase runs ``--reps`` times; the median is quoted. Every response must be 201/200:
wrk's non-2xx count is reported and a run with errors is flagged. With ``--profile``,
py-spy samples the server during one extra create run and the top frames are printed
(where the time goes).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .report import Figure, Target, table

POD_TEMPLATE = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {
        "name": "__NAME__",
        "labels": {"app": "bench", "tier": "backend", "release": "stable", "team": "platform",
                   "pod-template-hash": "5d8f7c9b6d"},
        "annotations": {"kubeplane.io/bench": "true",
                        "description": "a pod of about 2.3 KB, the size the upstream figures were measured with"},
    },
    "spec": {
        "containers": [{
            "name": "app", "image": "registry.example.com/team/app:1.2.3",
            "command": ["/bin/app", "--serve", "--port=8080"],
            "ports": [{"name": "http", "containerPort": 8080}, {"name": "metrics", "containerPort": 9090}],
            "env": [{"name": f"ENV_VAR_{i}", "value": f"value-number-{i}-with-some-length"} for i in range(18)],
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
            "volumeMounts": [{"name": "config", "mountPath": "/etc/app"}, {"name": "data", "mountPath": "/data"}],
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 5},
            "livenessProbe": {"httpGet": {"path": "/livez", "port": 8080}, "periodSeconds": 10},
        }, {
            "name": "sidecar", "image": "registry.example.com/team/sidecar:0.9.1",
            "args": ["--upstream=127.0.0.1:8080", "--log-level=info"],
            "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
        }],
        "volumes": [{"name": "config", "configMap": {"name": "app-config"}}, {"name": "data", "emptyDir": {}}],
        "nodeSelector": {"kubernetes.io/os": "linux"},
    },
}

# wrk runs one Lua state per thread: setup() numbers them (`tid`), for unique names.
LUA_THREAD_IDS = r"""
local counter = 0
local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
"""

CREATE_LUA = LUA_THREAD_IDS + r"""
function init(args)
  path = args[1]
  token = args[2]
  body = args[3]
end
function request()
  counter = counter + 1
  local name = string.format("bench-%d-%d", tid, counter)
  local b = string.gsub(body, "__NAME__", name)
  return wrk.format("POST", path, {["Content-Type"] = "application/json",
                                   ["Authorization"] = "Bearer " .. token}, b)
end
"""

# Protobuf bodies are binary (NULs: not passable in argv), so the body comes from a file;
# the name placeholder and every name have the same length (12 bytes), so substituting it
# keeps the protobuf's length prefixes right.
PB_NAME = "XXXXXXXXXXXX"
CREATE_PB_LUA = LUA_THREAD_IDS + r"""
function init(args)
  path = args[1]
  token = args[2]
  local f = io.open(args[3], "rb")
  body = f:read("*a")
  f:close()
end
function request()
  counter = counter + 1
  local name = string.format("pb%02d%08d", tid, counter)
  local b = string.gsub(body, "XXXXXXXXXXXX", name)
  return wrk.format("POST", path, {["Content-Type"] = "application/vnd.kubernetes.protobuf",
                                   ["Accept"] = "application/vnd.kubernetes.protobuf, application/json",
                                   ["Authorization"] = "Bearer " .. token}, b)
end
"""

PATCH_LUA = LUA_THREAD_IDS + r"""
function init(args)
  path = args[1]
  token = args[2]
  count = tonumber(args[3])
  nthreads = tonumber(args[4])
end
function request()
  counter = counter + 1
  -- bench-0-2 .. bench-0-(count+1): wrk consumes thread 0's first request() to verify the
  -- script, so the create run never sends bench-0-1 (patching it was a 404)
  local i = 2 + (counter * nthreads + tid) % count
  local b = string.format('{"metadata":{"labels":{"rev":"r%d"}}}', counter)
  return wrk.format("PATCH", path .. "/bench-0-" .. i, {["Content-Type"] = "application/merge-patch+json",
                    ["Authorization"] = "Bearer " .. token}, b)
end
"""


def _pod_body(distinct: bool = False) -> str:
    """The pod as JSON; with `distinct`, one env value carries the pod's name, so that no
    two pods share a spec (the server caches managedFields of identical specs, as pods
    stamped from one template are; this shows the cost without that help)."""
    pod = json.loads(json.dumps(POD_TEMPLATE))
    if distinct:
        pod["spec"]["containers"][0]["env"][0]["value"] = "__NAME__"
    return json.dumps(pod, separators=(",", ":"))


def _pb_body(distinct: bool = False) -> bytes:
    """The same pod as a protobuf body (what a Go client or kubectl 1.32+ sends), its name
    the fixed-length placeholder; with `distinct`, one env value is the name too (no two
    specs alike: the codec's memo of template specs never hits)."""
    from kubeplane.apiserver.machinery import protobuf

    pod = json.loads(json.dumps(POD_TEMPLATE))
    pod["metadata"]["name"] = PB_NAME
    if distinct:
        pod["spec"]["containers"][0]["env"][0]["value"] = PB_NAME
    return protobuf.encode(pod)


def _start_server(data_dir: Path) -> tuple[subprocess.Popen, str, str, int]:
    argv = [sys.executable, "-m", "kubeplane.cli", "serve", "--data-dir", str(data_dir), "--secure-port", "0",
            "--http-listen", "127.0.0.1:0", "--scheduler=false", "--controller-manager=false", "--hollow-nodes", "0"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=open(data_dir.parent / "server.log", "ab"))
    url = kubeconfig = ""
    http_port = 0
    deadline = time.time() + 60
    while time.time() < deadline:
        line = proc.stdout.readline().decode()
        if not line:
            raise RuntimeError("kubeplane serve exited; see " + str(data_dir.parent / "server.log"))
        if line.startswith("kubeplane: serving "):
            url = line.split()[-1]
        elif line.startswith("kubeplane: plain HTTP"):
            http_port = int(line.split()[-1])
        elif line.startswith("export KUBECONFIG="):
            kubeconfig = line.strip().split("=", 1)[1]
            break
    token = Path(kubeconfig).parent.joinpath("pki", "token").read_text().strip()
    return proc, url, token, http_port


def _wrk(url: str, script: str, args: list[str], seconds: float, conns: int, threads: int) -> tuple[float, int, int]:
    """Run wrk; returns (requests/s, requests, non-2xx)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
        path = f.name
    try:
        out = subprocess.run(["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{int(seconds)}s", "--latency",
                              "-s", path, url, "--", *args], capture_output=True, text=True, timeout=seconds + 60)
    finally:
        os.unlink(path)
    text = out.stdout + out.stderr
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    n = re.search(r"(\d+) requests in", text)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if not m or not n:
        raise RuntimeError("wrk failed: " + text[-2000:])
    return float(m.group(1)), int(n.group(1)), int(bad.group(1)) if bad else 0


def _cpu(pid: int) -> float:
    """The server's CPU seconds so far (user + system, all threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _call(port: int, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
    import http.client

    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request(method, path, body=json.dumps(body) if body is not None else None,
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def _profile(pid: int, seconds: float, out: Path) -> str:
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=os.path.dirname(sys.executable))
    if not spy:
        return "py-spy not installed (pip install py-spy)"
    subprocess.run([spy, "record", "-p", str(pid), "-d", str(int(seconds)), "-f", "raw", "-o", str(out),
                    "-r", "200", "--nonblocking"], capture_output=True, timeout=seconds + 60)
    if not out.exists():
        return "py-spy produced nothing (ptrace not permitted?)"
    # raw format: "frame;frame;... count"; attribute self time to the leaf and inclusive
    # time to every kubeplane/library function on the stack
    leaf: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in out.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        k = int(n)
        total += k
        frames = stack.split(";")
        leaf[frames[-1]] = leaf.get(frames[-1], 0) + k
        for fr in set(frames):
            incl[fr] = incl.get(fr, 0) + k
    lines = [f"py-spy: {total} samples"]
    lines.append("self time, top 15:")
    for fr, k in sorted(leaf.items(), key=lambda x: -x[1])[:15]:
        lines.append(f"  {100 * k / total:5.1f}%  {fr}")
    lines.append("inclusive, kubeplane functions, top 25:")
    kp = [(fr, k) for fr, k in incl.items() if "kubeplane" in fr]
    for fr, k in sorted(kp, key=lambda x: -x[1])[:25]:
        lines.append(f"  {100 * k / total:5.1f}%  {fr}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench api", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--profile", action="store_true", help="py-spy the server during one extra create run")
    ap.add_argument("--profile-patches", action="store_true",
                    help="with --profile: also py-spy an extra merge-patch run")
    ap.add_argument("--profile-protobuf", action="store_true",
                    help="with --profile and --protobuf: also py-spy an extra protobuf create run")
    ap.add_argument("--json", help="also write the figures as JSON here")
    ap.add_argument("--protobuf", action="store_true",
                    help="also create pods with protobuf bodies and protobuf responses in every rep, "
                         "beside the JSON creates")
    args = ap.parse_args(argv)
    if not shutil.which("wrk"):
        print("wrk not found (Debian: apt-get install wrk; `make bench` installs it)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="kp-api-bench-"))
    proc, url, token, http_port = _start_server(tmp / "data")
    figures: list[Figure] = []
    body = _pod_body()
    print(f"pod body: {len(body)} bytes; server {url}; {args.connections} connections, {args.seconds}s x {args.reps}")
    try:
        creates = Figure("api", "pod creates, HTTPS, 32 conns", "pods/s",
                         target=Target(">=", 1600), note="upstream 1.28+etcd 3.4: 634-828/s")
        patches = Figure("api", "merge patches, HTTPS, 32 conns", "patches/s",
                         target=Target(">=", 1100), note="upstream: 483-579/s")
        distinct = Figure("api", "pod creates, no two specs alike", "pods/s",
                          note="each pod's spec differs (no template reuse)")
        distinct_body = _pod_body(distinct=True)
        pb_creates = Figure("api", "pod creates, protobuf in and out", "pods/s",
                            note="same pod as application/vnd.kubernetes.protobuf, Accept protobuf")
        json_cpu = Figure("api", "server CPU per pod create, JSON", "us",
                          note="server process user+system CPU over the phase / requests")
        pb_cpu = Figure("api", "server CPU per pod create, protobuf", "us",
                        note="the same for the protobuf creates")
        pb_distinct = Figure("api", "pod creates, protobuf, no two specs alike", "pods/s",
                             note="protobuf in and out, each pod's spec differs")
        pb_file = tmp / "pod.pb"
        pb_distinct_file = tmp / "pod-distinct.pb"
        if args.protobuf:
            pb_file.write_bytes(_pb_body())
            pb_distinct_file.write_bytes(_pb_body(distinct=True))
            print(f"protobuf pod body: {pb_file.stat().st_size} bytes")
        errors = 0
        for rep in range(args.reps):
            ns = f"bench{rep}"
            st, _ = _call(http_port, "POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
            assert st == 201, st
            path = f"/api/v1/namespaces/{ns}/pods"

            def pb_phase(distinct: bool = False) -> int:
                pns = f"bench{rep}pb" + ("d" if distinct else "")
                st, _ = _call(http_port, "POST", "/api/v1/namespaces", {"metadata": {"name": pns}})
                assert st == 201, st
                ppath = f"/api/v1/namespaces/{pns}/pods"
                cpu0 = _cpu(proc.pid)
                rate, n, bad = _wrk(url + ppath, CREATE_PB_LUA,
                                    [ppath, token, str(pb_distinct_file if distinct else pb_file)], args.seconds,
                                    args.connections, args.threads)
                cpu = (_cpu(proc.pid) - cpu0) / max(n, 1) * 1e6
                if distinct:
                    pb_distinct.samples.append(rate)
                else:
                    pb_creates.samples.append(rate)
                    pb_cpu.samples.append(cpu)
                print(f"  protobuf creates{' (distinct)' if distinct else ''} rep {rep}: {rate:,.0f}/s, {n} requests, "
                      f"{bad} non-2xx, {cpu:,.0f} us server CPU each")
                return bad

            # protobuf first in odd reps: the store grows during a run, so neither form
            # always meets the fuller store
            if args.protobuf and rep % 2 == 1:
                errors += pb_phase()
            cpu0 = _cpu(proc.pid)
            rate, n, bad = _wrk(url + path, CREATE_LUA, [path, token, body], args.seconds, args.connections,
                                args.threads)
            errors += bad
            creates.samples.append(rate)
            json_cpu.samples.append((_cpu(proc.pid) - cpu0) / max(n, 1) * 1e6)
            st, data = _call(http_port, "GET", path + "?limit=1")
            stored = json.loads(data).get("metadata", {}).get("remainingItemCount", 0) + 1
            print(f"  creates rep {rep}: {rate:,.0f}/s, {n} requests, {bad} non-2xx, {stored} pods stored, "
                  f"{json_cpu.samples[-1]:,.0f} us server CPU each")
            if args.protobuf and rep % 2 == 0:
                errors += pb_phase()
            # patch pods that wrk's thread 0 created: bench-0-2 .. bench-0-(count+1)
            count = max(1, min(2000, stored // (2 * args.threads)))
            rate, n, bad = _wrk(url + path, PATCH_LUA, [path, token, str(count), str(args.threads)], args.seconds,
                                args.connections, args.threads)
            errors += bad
            patches.samples.append(rate)
            print(f"  patches rep {rep}: {rate:,.0f}/s, {n} requests, {bad} non-2xx")
            ns = f"bench{rep}d"
            st, _ = _call(http_port, "POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
            path = f"/api/v1/namespaces/{ns}/pods"
            rate, n, bad = _wrk(url + path, CREATE_LUA, [path, token, distinct_body], args.seconds,
                                args.connections, args.threads)
            errors += bad
            distinct.samples.append(rate)
            print(f"  distinct creates rep {rep}: {rate:,.0f}/s, {n} requests, {bad} non-2xx")
            if args.protobuf:
                errors += pb_phase(distinct=True)
        if errors:
            creates.note += f"; {errors} non-2xx responses in all runs"
        figures += [creates, patches, distinct] + ([pb_creates, pb_distinct, json_cpu, pb_cpu] if args.protobuf else [])
        if args.profile:
            import threading

            ns = "benchprof"
            _call(http_port, "POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
            path = f"/api/v1/namespaces/{ns}/pods"
            runs = [("creates", CREATE_LUA, [path, token, body])]
            if args.profile_patches:
                runs.append(("merge patches", PATCH_LUA, [path, token, "__COUNT__", str(args.threads)]))
            if args.profile_protobuf and args.protobuf:
                runs.append(("protobuf creates", CREATE_PB_LUA, [path, token, str(pb_file)]))
            for what, lua, wrk_args in runs:
                if "__COUNT__" in wrk_args:
                    st, data = _call(http_port, "GET", path + "?limit=1")
                    stored = json.loads(data).get("metadata", {}).get("remainingItemCount", 0) + 1
                    wrk_args = [str(max(1, min(2000, stored // (2 * args.threads)))) if a == "__COUNT__" else a
                                for a in wrk_args]
                result: dict[str, str] = {}
                t = threading.Thread(target=lambda: result.setdefault(
                    "p", _profile(proc.pid, args.seconds - 1, tmp / "profile.txt")))
                t.start()
                rate, n, bad = _wrk(url + path, lua, wrk_args, args.seconds, args.connections, args.threads)
                t.join()
                print(f"profile of {what} ({rate:,.0f}/s under py-spy, {bad} non-2xx):")
                print(result.get("p", ""))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    print(table(figures))
    if args.json:
        Path(args.json).write_text(json.dumps([f.as_dict() for f in figures], indent=2))
    return 0
