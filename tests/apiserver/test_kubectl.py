"""Real kubectl (1.27-1.33) against `kubeplane serve` over HTTPS with the admin token.

One scripted session per kubectl version, in its own namespace (`kc-1-NN`) with its own
CRD group (`kc-1-NN.example.com`), its own HOME and discovery cache:
api-resources; create -f of a multi-document file; get in every output format with
chunking; get -w; client-side apply twice; server-side apply with a conflict and
--force-conflicts; diff; label; annotate; patch (strategic, merge, json); scale; edit;
delete --wait; explain; describe; imperative create.

kubectl 1.32+ sends protobuf bodies for the imperative `create namespace|configmap|secret|
deployment`; they work as the JSON ones of older versions (test_protobuf_wire.py compares
the objects every imperative create makes). Versions not installed are skipped.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from kubectls import kubectl_binary
from server_procs import ServerProc

DATA = Path(__file__).parent / "kubectl_data"
VERSIONS = ("1.27", "1.28", "1.29", "1.30", "1.31", "1.32", "1.33")


def _minor(version: str) -> int:
    return int(version.split(".")[1])


class Kubectl:
    """One kubectl binary with its own HOME (so its discovery and OpenAPI caches are its own)."""

    def __init__(self, binary: str, version: str, server: ServerProc, home: Path, namespace: str):
        self.binary = binary
        self.version = version
        self.minor = _minor(version)
        self.server = server
        self.ns = namespace
        self.group = f"{namespace}.example.com"
        # every session has a `widgets` resource (in its own group): plain "widgets" would
        # pick one group for all of them, so the session always names its group
        self.widgets, self.widget = f"widgets.{self.group}", f"widget.{self.group}"
        home.mkdir(parents=True, exist_ok=True)
        self.home = home
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
                    "KUBECONFIG": server.kubeconfig}

    def run(self, *args: str, input: str | None = None, env: dict[str, str] | None = None,
            timeout: float = 30) -> subprocess.CompletedProcess:
        """Run kubectl; with KC_PROFILE=<file> set, each command's wall time is appended there."""
        t0 = time.monotonic()
        r = subprocess.run([self.binary, *args], input=input, capture_output=True, text=True,
                           env={**self.env, **(env or {})}, timeout=timeout)
        if os.environ.get("KC_PROFILE"):
            with open(os.environ["KC_PROFILE"], "a") as f:
                f.write(f"{time.monotonic() - t0:.3f} {self.version} {' '.join(args)[:100]}\n")
        return r

    def __call__(self, *args: str, input: str | None = None, env: dict[str, str] | None = None) -> str:
        out = self.run(*args, input=input, env=env)
        assert out.returncode == 0, f"kubectl {' '.join(args)} -> {out.returncode}\n{out.stderr}"
        return out.stdout

    def json(self, *args: str) -> dict:
        return json.loads(self(*args, "-o", "json"))

    def _get(self, kind: str, name: str):
        ns = f"/namespaces/{self.ns}"
        path = {"cm": f"/api/v1{ns}/configmaps/", "secret": f"/api/v1{ns}/secrets/", "ns": "/api/v1/namespaces/",
                "deploy": f"/apis/apps/v1{ns}/deployments/", "widget": f"/apis/{self.group}/v1{ns}/widgets/"}[kind]
        return self.server.call("GET", path + name)

    def read(self, kind: str, name: str) -> dict:
        """The object as stored, over the server's plain-HTTP port (a check of what a
        kubectl command did, without paying for one more kubectl process)."""
        r = self._get(kind, name)
        assert r.status == 200, r
        return r.json

    def exists(self, kind: str, name: str) -> bool:
        r = self._get(kind, name)
        assert r.status in (200, 404), r
        return r.status == 200

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([self.binary, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=self.env)


def _manifest(name: str, ns: str) -> str:
    return (DATA / name).read_text().replace("__NS__", ns)


def _table(text: str) -> list[list[str]]:
    """Split kubectl's column output on runs of 2+ spaces (headers and cells never have them)."""
    return [re.split(r"\s{2,}", line.strip()) for line in text.strip().splitlines() if line.strip()]


def _rows(text: str) -> dict[str, dict[str, str]]:
    """Rows of one table keyed by the NAME column, each as {header: cell}."""
    t = _table(text)
    head = t[0]
    return {r[0]: dict(zip(head, r)) for r in t[1:]}


CHECKS: list = []


def check(fn):
    """Register one step of the session (they run in the order defined, per version)."""
    CHECKS.append(fn)
    return fn


def _wanted(session: pytest.Session) -> dict[str, set[str]]:
    """The (version -> check names) the collected test items ask for (honours -k)."""
    wanted: dict[str, set[str]] = {}
    for item in session.items:
        cs = getattr(item, "callspec", None)
        if cs is not None and item.originalname == "test_kubectl":
            wanted.setdefault(cs.params["version"], set()).add(cs.params["step"])
    return wanted


def _run_session(version: str, binary: str, steps: set[str], server: ServerProc,
                 home: Path) -> dict[str, BaseException | None]:
    """One kubectl session: api-resources first (so the create -f below maps the new CRD's
    kind by refreshing a discovery cache it did not fetch itself), then the multi-document
    file, then every wanted step in order. A failing step does not stop the next ones."""
    ns = "kc-" + version.replace(".", "-")
    k = Kubectl(binary, version, server, home, ns)
    results: dict[str, BaseException | None] = {}
    try:
        k.api_resources = k("api-resources")
        k.created = k.run("create", "-f", "-", input=_manifest("app.yaml", ns))
        for fn in CHECKS:
            if fn.__name__ in steps:
                try:
                    fn(k)
                    results[fn.__name__] = None
                except BaseException as e:      # reported by the test item of this step
                    results[fn.__name__] = e
    except BaseException as e:
        for name in steps:
            results.setdefault(name, e)
    finally:
        server.call("DELETE", f"/api/v1/namespaces/{ns}")
        server.call("DELETE", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.{k.group}")
    return results


@pytest.fixture(scope="module")
def sessions(request, server: ServerProc, tmp_path_factory) -> dict[str, dict[str, BaseException | None]]:
    """All wanted versions' sessions, run concurrently (each version in its own namespace,
    CRD group and HOME); the test items below report their outcomes one step at a time."""
    wanted = {v: steps for v, steps in _wanted(request.session).items() if kubectl_binary(v)}
    log_start = server.log_path.stat().st_size if server.log_path.exists() else 0
    # more workers than CPUs only adds contention: the cost is kubectl's own start-up and CPU
    with ThreadPoolExecutor(max_workers=max(1, min(len(wanted), os.cpu_count() or 2))) as pool:
        futures = {v: pool.submit(_run_session, v, kubectl_binary(v), steps, server,
                                  tmp_path_factory.mktemp(f"kubectl-{v}"))
                   for v, steps in wanted.items()}
        results = {v: f.result() for v, f in futures.items()}
    # nothing kubectl did may have made the server log an unhandled error (kubectl retries
    # or tolerates some 500s, so the exit codes alone would not show them)
    with open(server.log_path, "rb") as f:
        f.seek(log_start)
        logged = f.read().decode(errors="replace")
    assert "Traceback" not in logged, logged[-4000:]
    return results


# --- discovery and create -f --------------------------------------------------------------------

@check
def api_resources(kc: Kubectl):
    rows = _table(kc.api_resources)
    assert rows[0] == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    by_name = {(r[0], r[-3] if len(r) == 5 else r[1]): r for r in rows[1:]}
    assert by_name[("deployments", "apps/v1")] == ["deployments", "deploy", "apps/v1", "true", "Deployment"]
    assert by_name[("configmaps", "v1")] == ["configmaps", "cm", "v1", "true", "ConfigMap"]
    assert by_name[("namespaces", "v1")] == ["namespaces", "ns", "v1", "false", "Namespace"]
    assert by_name[("customresourcedefinitions", "apiextensions.k8s.io/v1")] == [
        "customresourcedefinitions", "crd,crds", "apiextensions.k8s.io/v1", "false", "CustomResourceDefinition"]
    wide = _table(kc("api-resources", "-o", "wide"))
    assert wide[0] == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND", "VERBS", "CATEGORIES"]
    assert ["deployments", "deploy", "apps/v1", "true", "Deployment",
            "create,delete,deletecollection,get,list,patch,update,watch", "all"] in wide
    assert ["namespaces", "ns", "v1", "false", "Namespace", "create,delete,get,list,patch,update,watch"] in wide
    # no short names, no categories; upstream's CRD discovery lists the verbs in this order
    assert ["widgets", f"{kc.group}/v1", "true", "Widget",
            "delete,deletecollection,get,list,patch,create,update,watch"] in wide
    names = set(kc("api-resources", "-o", "name").split())
    assert {"pods", "services", "secrets", "deployments.apps", f"widgets.{kc.group}"} <= names
    assert kc("api-resources", "--api-group", kc.group, "--no-headers").split() == [
        "widgets", f"{kc.group}/v1", "true", "Widget"]


@check
def create_multi_document(kc: Kubectl):
    assert kc.created.returncode == 0, kc.created.stderr
    assert kc.created.stdout.splitlines() == [
        f"namespace/{kc.ns} created",
        f"customresourcedefinition.apiextensions.k8s.io/widgets.{kc.group} created",
        "deployment.apps/web created",
        "service/web created",
        "configmap/settings created",
        "configmap/flags created",
        "configmap/limits created",
        "pod/solo created",
        "secret/creds created",
        f"widget.{kc.group}/w1 created",
    ]
    again = kc.run("create", "-f", "-", input=_manifest("app.yaml", kc.ns))
    assert again.returncode == 1
    assert 'Error from server (AlreadyExists): error when creating "STDIN": deployments.apps "web" already exists' \
        in again.stderr


# --- get -----------------------------------------------------------------------------------------

@check
def get_yaml_json_name_jsonpath(kc: Kubectl):
    d = yaml.safe_load(kc("get", "deployment", "web", "-n", kc.ns, "-o", "yaml"))
    assert d["apiVersion"] == "apps/v1" and d["kind"] == "Deployment"
    md = d["metadata"]
    assert md["name"] == "web" and md["namespace"] == kc.ns and md["labels"] == {"app": "web"}
    assert md["generation"] == 1 and md["uid"] and md["resourceVersion"].isdigit()
    assert "managedFields" not in md          # kubectl hides them unless --show-managed-fields
    assert d["spec"]["replicas"] == 2
    # defaults filled in by the server
    assert d["spec"]["strategy"] == {"type": "RollingUpdate",
                                     "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
    assert d["spec"]["revisionHistoryLimit"] == 10 and d["spec"]["progressDeadlineSeconds"] == 600
    c = d["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "nginx:1.25" and c["imagePullPolicy"] == "IfNotPresent"
    assert c["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert c["terminationMessagePath"] == "/dev/termination-log"

    full = yaml.safe_load(kc("get", "deployment", "web", "-n", kc.ns, "-o", "yaml", "--show-managed-fields"))
    assert [(m["manager"], m["operation"]) for m in full["metadata"]["managedFields"]] == [
        ("kubectl-create", "Update")]

    svc = kc.json("get", "service", "web", "-n", kc.ns)
    assert svc["spec"]["type"] == "ClusterIP" and svc["spec"]["clusterIP"]
    assert svc["spec"]["ports"] == [{"port": 80, "targetPort": 80, "protocol": "TCP"}]
    sec = kc.json("get", "secret", "creds", "-n", kc.ns)
    assert sec["data"] == {"user": "YWRtaW4="} and "stringData" not in sec and sec["type"] == "Opaque"

    lst = kc.json("get", "configmaps", "-n", kc.ns)
    assert lst["kind"] == "List" and lst["apiVersion"] == "v1"
    assert [i["metadata"]["name"] for i in lst["items"]] == ["flags", "limits", "settings"]
    assert all(i["kind"] == "ConfigMap" and i["apiVersion"] == "v1" for i in lst["items"])

    assert kc("get", "deploy,svc,cm", "-n", kc.ns, "-o", "name").splitlines() == [
        "deployment.apps/web", "service/web", "configmap/flags", "configmap/limits", "configmap/settings"]
    assert kc("get", kc.widgets, "-n", kc.ns, "-o", "name").split() == [f"widget.{kc.group}/w1"]
    assert kc("get", "deployment", "web", "-n", kc.ns, "-o",
              "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].image} {.metadata.labels.app}") \
        == "2 nginx:1.25 web"
    assert kc("get", "cm", "-n", kc.ns, "-o", "jsonpath={range .items[*]}{.metadata.name}={.data.mode}{\"\\n\"}{end}") \
        == "flags=\nlimits=\nsettings=fast\n"
    assert kc("get", "ns", kc.ns, "-o", "jsonpath={.status.phase} {.metadata.labels.team}") == "Active blue"


@check
def get_tables_and_wide(kc: Kubectl):
    rows = _table(kc("get", "deployments", "-n", kc.ns, "-o", "wide"))
    assert rows[0] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    assert len(rows) == 2 and rows[1][:4] == ["web", "0/2", "0", "0"]
    assert re.fullmatch(r"\d+s", rows[1][4])
    assert rows[1][5:] == ["nginx", "nginx:1.25", "app=web"]

    svc = _rows(kc("get", "svc", "-n", kc.ns, "-o", "wide"))["web"]
    assert list(svc) == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"]
    assert (svc["TYPE"], svc["EXTERNAL-IP"], svc["PORT(S)"], svc["SELECTOR"]) == ("ClusterIP", "<none>", "80/TCP",
                                                                                  "app=web")
    assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", svc["CLUSTER-IP"])

    cms = _rows(kc("get", "cm", "-n", kc.ns))
    assert {n: r["DATA"] for n, r in cms.items()} == {"flags": "0", "limits": "1", "settings": "2"}
    secs = _rows(kc("get", "secrets", "-n", kc.ns))
    assert (secs["creds"]["TYPE"], secs["creds"]["DATA"]) == ("Opaque", "1")
    ns = _rows(kc("get", "ns", kc.ns, "--show-labels"))[kc.ns]
    assert ns["STATUS"] == "Active"
    assert ns["LABELS"] == f"kubernetes.io/metadata.name={kc.ns},team=blue"

    # CRD printer columns: priority-1 columns only in -o wide; no AGE unless declared.
    assert _table(kc("get", kc.widgets, "-n", kc.ns)) == [["NAME", "SIZE"], ["w1", "3"]]
    assert _table(kc("get", kc.widgets, "-n", kc.ns, "-o", "wide")) == [["NAME", "SIZE", "COLOR"], ["w1", "3", "red"]]
    assert _table(kc("get", kc.widgets, "-n", kc.ns, "--no-headers")) == [["w1", "3"]]

    crd = _rows(kc("get", "crd", f"widgets.{kc.group}"))
    assert list(crd) == [f"widgets.{kc.group}"]
    assert list(crd[f"widgets.{kc.group}"]) == ["NAME", "CREATED AT"]

    pod = _table(kc("get", "pods", "-n", kc.ns, "-o", "wide"))
    assert pod[0] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED NODE", "READINESS GATES"]
    assert pod[1][:4] == ["solo", "0/1", "Pending", "0"] and pod[1][5:] == ["<none>"] * 4
    assert "No resources found in" in kc.run("get", "replicasets", "-n", kc.ns).stderr
    nf = kc.run("get", "cm", "nope", "-n", kc.ns)
    assert nf.returncode == 1 and 'Error from server (NotFound): configmaps "nope" not found' in nf.stderr


@check
def get_chunked(kc: Kubectl):
    """--chunk-size=2 pages with limit/continue; all three configmaps come back in order."""
    out = kc.run("get", "cm", "-n", kc.ns, "--chunk-size=2", "-v=6")
    assert out.returncode == 0, out.stderr
    assert [r[0] for r in _table(out.stdout)] == ["NAME", "flags", "limits", "settings"]
    # the request log: `GET https://... 200 OK` (<= 1.31) or `verb="GET" url="https://..." status="200 OK"`
    gets = re.findall(r"GET\"? (?:url=\")?https://[^\s\"]+/configmaps\?([^\s\"]+)\"? (?:status=\")?200 OK", out.stderr)
    assert len(gets) == 2, out.stderr
    assert gets[0].endswith("limit=2") and "continue=" in gets[1] and gets[1].endswith("limit=2")
    named = kc("get", "cm", "-n", kc.ns, "--chunk-size=2", "-o", "name")
    assert named.split() == ["configmap/flags", "configmap/limits", "configmap/settings"]
    lst = kc.json("get", "cm", "-n", kc.ns, "--chunk-size=1")
    assert [i["metadata"]["name"] for i in lst["items"]] == ["flags", "limits", "settings"]


@check
def get_watch(kc: Kubectl):
    """get -w prints the current rows, then a row per change."""
    p = kc.popen("get", "configmaps", "-n", kc.ns, "-w")
    lines: list[str] = []
    seen = threading.Event()

    def reader() -> None:
        assert p.stdout is not None
        for line in p.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("watched "):
                seen.set()

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + 10
        while len(lines) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [r[0] for r in _table("\n".join(lines[:4]))] == ["NAME", "flags", "limits", "settings"]
        r = kc.server.call("POST", f"/api/v1/namespaces/{kc.ns}/configmaps",
                           {"metadata": {"name": "watched"}, "data": {"a": "1", "b": "2", "c": "3"}})
        assert r.status == 201, r
        assert seen.wait(10), lines
    finally:
        p.kill()
        p.wait()
        t.join(5)
    row = [ln for ln in lines if ln.startswith("watched ")][0]
    name, data, age = row.split()
    assert (name, data) == ("watched", "3") and re.fullmatch(r"\d+s", age)


# --- apply -----------------------------------------------------------------------------------------

@check
def apply_client_side(kc: Kubectl):
    first = _manifest("applied.yaml", kc.ns)
    assert kc("apply", "-f", "-", input=first) == "configmap/applied created\n"
    assert kc("apply", "-f", "-", input=first) == "configmap/applied unchanged\n"
    second = first.replace("k2: v2", "k2: changed").replace("  k1: v1\n", "").replace("tier: one", "tier: two")
    assert kc("apply", "-f", "-", input=second) == "configmap/applied configured\n"
    cm = kc.read("cm", "applied")
    assert cm["data"] == {"k2": "changed", "k3": "v3"}        # k1 removed: it was in last-applied
    assert cm["metadata"]["labels"] == {"tier": "two"}
    last = json.loads(cm["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"])
    assert last == {"apiVersion": "v1", "kind": "ConfigMap", "data": {"k2": "changed", "k3": "v3"},
                    "metadata": {"annotations": {}, "labels": {"tier": "two"}, "name": "applied",
                                 "namespace": kc.ns}}
    # a strategic apply on a deployment: the container list merges by name
    dep = _manifest("app.yaml", kc.ns).split("---")[2].replace("image: nginx:1.25", "image: nginx:1.27")
    dep = dep.replace("name: web", "name: applied-web")
    assert kc("apply", "-f", "-", input=dep) == "deployment.apps/applied-web created\n"
    dep2 = dep.replace("replicas: 2", "replicas: 4").replace("nginx:1.27", "nginx:1.28")
    assert kc("apply", "-f", "-", input=dep2) == "deployment.apps/applied-web configured\n"
    d = kc.read("deploy", "applied-web")
    assert d["spec"]["replicas"] == 4 and d["metadata"]["generation"] == 2
    assert [c["image"] for c in d["spec"]["template"]["spec"]["containers"]] == ["nginx:1.28"]


@check
def apply_server_side(kc: Kubectl):
    doc = _manifest("ssa.yaml", kc.ns)
    assert kc("apply", "--server-side", "-f", "-", input=doc) == "configmap/ssa serverside-applied\n"
    other = doc.replace("owner: first", "owner: second")
    conflict = kc.run("apply", "--server-side", "--field-manager=other", "-f", "-", input=other)
    assert conflict.returncode == 1
    assert 'Apply failed with 1 conflict: conflict with "kubectl": .data.owner' in conflict.stderr
    assert kc.read("cm", "ssa")["data"] == {"owner": "first", "shared": "yes"}
    out = kc("apply", "--server-side", "--field-manager=other", "--force-conflicts", "-f", "-", input=other)
    assert out == "configmap/ssa serverside-applied\n"
    cm = yaml.safe_load(kc("get", "cm", "ssa", "-n", kc.ns, "-o", "yaml", "--show-managed-fields"))
    assert cm["data"] == {"owner": "second", "shared": "yes"}
    managers = {m["manager"]: m for m in cm["metadata"]["managedFields"]}
    assert set(managers) == {"kubectl", "other"}
    assert managers["other"]["operation"] == "Apply" and managers["kubectl"]["operation"] == "Apply"
    assert managers["other"]["fieldsV1"] == {"f:data": {"f:owner": {}, "f:shared": {}}}
    assert managers["kubectl"]["fieldsV1"] == {"f:data": {"f:shared": {}}}


@check
def diff(kc: Kubectl):
    doc = _manifest("applied.yaml", kc.ns).replace("name: applied", "name: diffed")
    kc("apply", "-f", "-", input=doc)
    same = kc.run("diff", "-f", "-", input=doc)
    assert (same.returncode, same.stdout) == (0, ""), same.stderr
    changed = kc.run("diff", "-f", "-", input=doc.replace("k2: v2", "k2: other"))
    assert changed.returncode == 1, changed.stderr
    body = [ln for ln in changed.stdout.splitlines() if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]
    assert "-  k2: v2" in body and "+  k2: other" in body
    assert "+  generation: 2" not in body
    # diff is a dry run: nothing changed on the server
    assert kc.read("cm", "diffed")["data"]["k2"] == "v2"
    new = kc.run("diff", "-f", "-", input=doc.replace("name: diffed", "name: not-yet"))
    assert new.returncode == 1 and "+  name: not-yet" in new.stdout
    assert not kc.exists("cm", "not-yet")


# --- imperative updates ------------------------------------------------------------------------

@check
def label_and_annotate(kc: Kubectl):
    kc("create", "-f", "-", input=_manifest("applied.yaml", kc.ns).replace("name: applied", "name: labelled"))
    assert kc("label", "cm", "labelled", "-n", kc.ns, "color=green") == "configmap/labelled labeled\n"
    clash = kc.run("label", "cm", "labelled", "-n", kc.ns, "color=blue")
    assert clash.returncode == 1 and "'color' already has a value (green)" in clash.stderr
    kc("label", "cm", "labelled", "-n", kc.ns, "color=blue", "--overwrite")
    kc("label", "cm", "labelled", "-n", kc.ns, "tier-")
    assert kc.read("cm", "labelled")["metadata"]["labels"] == {"color": "blue"}
    verb = "annotate" if kc.minor <= 27 else "annotated"       # kubectl's own wording changed in 1.28
    assert kc("annotate", "cm", "labelled", "-n", kc.ns, "note=hello world", "team=a") \
        == f"configmap/labelled {verb}\n"
    kc("annotate", "cm", "labelled", "-n", kc.ns, "team-")
    md = kc.read("cm", "labelled")["metadata"]
    assert md["annotations"] == {"note": "hello world"}
    assert kc("get", "cm", "-n", kc.ns, "-l", "color=blue", "-o", "name") == "configmap/labelled\n"
    kc("label", kc.widgets, "w1", "-n", kc.ns, "size=big")
    assert kc.read("widget", "w1")["metadata"]["labels"] == {"size": "big"}


@check
def patch_three_types(kc: Kubectl):
    dep = _manifest("app.yaml", kc.ns).split("---")[2].replace("name: web", "name: patched")
    kc("create", "-f", "-", input=dep)
    # strategic (the default): containers merge by name, the port list is kept
    out = kc("patch", "deploy", "patched", "-n", kc.ns, "-p",
             '{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox"}]}}}}')
    assert out == "deployment.apps/patched patched\n"
    d = kc.read("deploy", "patched")
    cs = d["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["image"]) for c in cs] == [("sidecar", "busybox"), ("nginx", "nginx:1.25")]
    assert cs[1]["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    # merge: replaces the whole list
    kc("patch", "deploy", "patched", "-n", kc.ns, "--type=merge", "-p",
       '{"spec":{"replicas":3,"template":{"spec":{"containers":[{"name":"only","image":"alpine"}]}}}}')
    d = kc.read("deploy", "patched")
    assert d["spec"]["replicas"] == 3
    assert [(c["name"], c["image"]) for c in d["spec"]["template"]["spec"]["containers"]] == [("only", "alpine")]
    # json patch
    kc("patch", "deploy", "patched", "-n", kc.ns, "--type=json", "-p",
       '[{"op":"replace","path":"/spec/replicas","value":1},'
       '{"op":"add","path":"/metadata/labels/patched","value":"yes"},'
       '{"op":"test","path":"/spec/template/spec/containers/0/name","value":"only"}]')
    d = kc.read("deploy", "patched")
    assert d["spec"]["replicas"] == 1 and d["metadata"]["labels"] == {"app": "web", "patched": "yes"}
    failed = kc.run("patch", "deploy", "patched", "-n", kc.ns, "--type=json", "-p",
                    '[{"op":"test","path":"/spec/replicas","value":7}]')
    # upstream: 422 Invalid "the server rejected our request due to an error in our request"
    assert failed.returncode == 1
    assert failed.stderr.startswith("The request is invalid: the server rejected our request due to an error in our "
                                    "request")
    assert kc.read("deploy", "patched")["spec"]["replicas"] == 1
    # no-op patch
    assert kc("patch", "deploy", "patched", "-n", kc.ns, "--type=merge", "-p", '{"spec":{"replicas":1}}') \
        == "deployment.apps/patched patched (no change)\n"
    # merge patch on a custom resource; strategic is refused for CRs (upstream: 415)
    kc("patch", kc.widget, "w1", "-n", kc.ns, "--type=merge", "-p", '{"spec":{"color":"blue"}}')
    assert kc.read("widget", "w1")["spec"] == {"color": "blue", "size": 3}
    smp = kc.run("patch", kc.widget, "w1", "-n", kc.ns, "-p", '{"spec":{"color":"green"}}')
    assert smp.returncode == 1
    assert smp.stderr == (f"error: application/strategic-merge-patch+json is not supported by {kc.group}/v1, "
                          "Kind=Widget: the body of the request was in an unknown format - accepted media types "
                          "include: application/json-patch+json, application/merge-patch+json, "
                          "application/apply-patch+yaml\n")
    assert kc.read("widget", "w1")["spec"]["color"] == "blue"


@check
def scale(kc: Kubectl):
    dep = _manifest("app.yaml", kc.ns).split("---")[2].replace("name: web", "name: scaled")
    kc("create", "-f", "-", input=dep)
    assert kc("scale", "deployment", "scaled", "-n", kc.ns, "--replicas=5") == "deployment.apps/scaled scaled\n"
    d = kc.read("deploy", "scaled")
    assert d["spec"]["replicas"] == 5 and d["metadata"]["generation"] == 2
    # a precondition that does not hold
    bad = kc.run("scale", "deployment", "scaled", "-n", kc.ns, "--current-replicas=3", "--replicas=1")
    assert bad.returncode == 1 and "Expected replicas to be 3, was 5" in bad.stderr
    kc("scale", "deployment", "scaled", "-n", kc.ns, "--current-replicas=5", "--replicas=0")
    assert kc.read("deploy", "scaled")["spec"]["replicas"] == 0
    scale = json.loads(kc("get", "--raw", f"/apis/apps/v1/namespaces/{kc.ns}/deployments/scaled/scale"))
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"] == {"replicas": 0} and scale["status"]["selector"] == "app=web"


@check
def edit(kc: Kubectl):
    kc("create", "-f", "-", input=_manifest("applied.yaml", kc.ns).replace("name: applied", "name: edited"))
    editor = kc.home / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i -e 's/k1: v1/k1: edited/' -e 's/^  k2: v2$/  k2: v2\\n  k4: added/' \"$1\"\n")
    editor.chmod(0o755)
    out = kc("edit", "cm", "edited", "-n", kc.ns, env={"KUBE_EDITOR": str(editor)})
    assert out == "configmap/edited edited\n"
    assert kc.read("cm", "edited")["data"] == {"k1": "edited", "k2": "v2", "k3": "v3",
                                                                     "k4": "added"}
    # an editor that changes nothing: "Edit cancelled"
    kept = kc.run("edit", "cm", "edited", "-n", kc.ns, env={"KUBE_EDITOR": "true"})
    assert kept.returncode == 0 and "Edit cancelled, no changes made." in kept.stderr
    # an invalid edit is reported and kept in a temp file; exit code 1
    bad = kc.home / "bad.sh"
    bad.write_text("#!/bin/sh\nsed -i 's/^  name: edited$/  name: Not_Valid/' \"$1\"\n")
    bad.chmod(0o755)
    res = kc.run("edit", "cm", "edited", "-n", kc.ns, env={"KUBE_EDITOR": str(bad)})
    assert res.returncode == 1 and "error: At least one of apiVersion, kind and name was changed" in res.stderr
    # a value the server cannot decode: upstream answers a patch with 422 Invalid ("patch:
    # Invalid value"), so kubectl reopens the editor with the reasons; the editor changes
    # nothing more, kubectl keeps a copy and gives up
    typed = kc.home / "typed.sh"
    typed.write_text("#!/bin/sh\nsed -i 's/^  k3: v3$/  k3: 42/' \"$1\"\n")
    typed.chmod(0o755)
    res = kc.run("edit", "cm", "edited", "-n", kc.ns, env={"KUBE_EDITOR": str(typed)})
    assert res.returncode == 1
    assert 'error: configmaps "edited" is invalid\n' in res.stderr
    assert "A copy of your changes has been stored to" in res.stderr
    assert "error: Edit cancelled, no valid changes were saved." in res.stderr
    assert kc.read("cm", "edited")["data"]["k3"] == "v3"
    # the same through kubectl patch: the message kube-apiserver gives
    res = kc.run("patch", "cm", "edited", "-n", kc.ns, "-p", '{"data":{"k3":42}}')
    assert res.returncode == 1
    assert res.stderr.startswith('The request is invalid: patch: Invalid value: "map[data:map[k3:42]]": json: '
                                 'cannot unmarshal number into Go struct field ConfigMap.data of type string')


# --- read-only views ---------------------------------------------------------------------------------

@check
def explain(kc: Kubectl):
    out = kc("explain", "deployment.spec.replicas")
    assert re.search(r"KIND:\s+Deployment", out) and re.search(r"VERSION:\s+v1", out)
    assert re.search(r"FIELD:\s+replicas <integer>", out)
    assert "Number of desired pods." in out
    top = kc("explain", "deployments")
    assert re.search(r"FIELDS:\n\s+apiVersion\t<string>", top)
    assert re.search(r"\n\s+spec\t<DeploymentSpec>", top) or re.search(r"\n\s+spec\t<Object>", top)
    crd = kc("explain", f"widgets.{kc.group}.spec")
    assert re.search(r"KIND:\s+Widget", crd) and re.search(r"FIELD:\s+spec <Object>", crd)
    assert "What the widget should be." in crd
    assert re.search(r"size\t<integer>\n\s+How big the widget is, in units.", crd)
    assert re.search(r"color\t<string>\n\s+The widget's colour.", crd)
    rec = kc("explain", "configmap", "--recursive")
    assert re.search(r"\n\s+data\t<map\[string\]string>", rec)
    missing = kc.run("explain", "deployment.spec.nope")
    assert missing.returncode == 1 and 'field "nope" does not exist' in missing.stderr


@check
def describe(kc: Kubectl):
    out = kc("describe", "deployment", "web", "-n", kc.ns)
    fields = dict(re.findall(r"^([A-Za-z-]+):\s+(.*)$", out, re.M))
    assert fields["Name"] == "web" and fields["Namespace"] == kc.ns
    assert fields["Labels"] == "app=web" and fields["Selector"] == "app=web"
    assert fields["Replicas"] == "2 desired | 0 updated | 0 total | 0 available | 0 unavailable"
    assert fields["StrategyType"] == "RollingUpdate"
    assert fields["RollingUpdateStrategy"] == "25% max unavailable, 25% max surge"
    assert re.search(r"Containers:\n\s+nginx:\n\s+Image:\s+nginx:1.25\n\s+Port:\s+80/TCP", out)

    cm = kc("describe", "configmap", "settings", "-n", kc.ns)
    assert re.search(r"^Name:\s+settings$", cm, re.M) and re.search(r"^Namespace:\s+" + kc.ns + "$", cm, re.M)
    # keys in map order before 1.29; no blank line between keys in 1.29/1.30
    data = cm.split("Data\n====\n", 1)[1].split("\nBinaryData\n", 1)[0]
    assert sorted(re.findall(r"^(\w+):\n----\n(\w+)$", data, re.M)) == [("level", "3"), ("mode", "fast")]
    sec = kc("describe", "secret", "creds", "-n", kc.ns)
    assert re.search(r"^Type:\s+Opaque$", sec, re.M) and re.search(r"^user:\s+5 bytes$", sec, re.M)
    pod = kc("describe", "pod", "solo", "-n", kc.ns)
    fields = dict(re.findall(r"^([A-Za-z -]+):\s+(.*)$", pod, re.M))
    assert (fields["Name"], fields["Namespace"], fields["Status"], fields["Labels"]) == ("solo", kc.ns, "Pending",
                                                                                        "app=solo")
    assert (fields["Service Account"], fields["QoS Class"], fields["Node"]) == ("default", "BestEffort", "<none>")
    assert re.search(r"Containers:\n  main:\n    Image:\s+busybox:1.36\n", pod)
    assert re.search(r"Command:\n\s+sleep\n\s+3600\n", pod) and re.search(r"Environment:\n\s+MODE:\s+fast\n", pod)
    # the DefaultTolerationSeconds admission defaults
    assert re.search(r"Tolerations:\s+node.kubernetes.io/not-ready:NoExecute op=Exists for 300s\n"
                     r"\s+node.kubernetes.io/unreachable:NoExecute op=Exists for 300s\n", pod)
    assert re.search(r"^Events:\s+<none>$", pod, re.M)
    ns = kc("describe", "namespace", kc.ns)
    assert re.search(r"^Status:\s+Active$", ns, re.M)
    w = kc("describe", kc.widget, "w1", "-n", kc.ns)
    assert re.search(r"^API Version:\s+" + re.escape(kc.group) + "/v1$", w, re.M)
    assert re.search(r"^Kind:\s+Widget$", w, re.M) and re.search(r"^\s+Size:\s+3$", w, re.M)


# --- imperative create ---------------------------------------------------------------------------

@check
def create_imperative(kc: Kubectl):
    ns2 = kc.ns + "-imp"
    cases = [
        (("create", "namespace", ns2), f"namespace/{ns2} created"),
        (("create", "configmap", "imp-cm", "-n", kc.ns, "--from-literal=a=1", "--from-literal=b=2"),
         "configmap/imp-cm created"),
        (("create", "secret", "generic", "imp-secret", "-n", kc.ns, "--from-literal=pw=s3cret"),
         "secret/imp-secret created"),
        (("create", "deployment", "imp-deploy", "-n", kc.ns, "--image=busybox:1.36", "--replicas=2"),
         "deployment.apps/imp-deploy created"),
    ]
    try:
        for args, line in cases:
            res = kc.run(*args)       # (1.32+: a protobuf body)
            assert res.returncode == 0, res.stderr
            assert res.stdout == line + "\n"
        assert kc.read("ns", ns2)["status"] == {"phase": "Active"}
        assert kc.read("cm", "imp-cm")["data"] == {"a": "1", "b": "2"}
        assert kc.read("secret", "imp-secret")["data"] == {"pw": "czNjcmV0"}
        d = kc.read("deploy", "imp-deploy")
        assert d["spec"]["replicas"] == 2 and d["spec"]["selector"] == {"matchLabels": {"app": "imp-deploy"}}
        assert [(c["name"], c["image"]) for c in d["spec"]["template"]["spec"]["containers"]] == [
            ("busybox", "busybox:1.36")]
        dup = kc.run("create", "configmap", "imp-cm", "-n", kc.ns)
        assert dup.returncode == 1 and 'configmaps "imp-cm" already exists' in dup.stderr
    finally:
        kc.server.call("DELETE", f"/api/v1/namespaces/{ns2}")


# --- delete (last: the namespace goes away) -----------------------------------------------------

@check
def delete_wait(kc: Kubectl):
    kc("create", "-f", "-", input=_manifest("applied.yaml", kc.ns).replace("name: applied", "name: doomed"))
    assert kc("delete", "cm", "doomed", "-n", kc.ns, "--wait") == 'configmap "doomed" deleted\n'
    assert not kc.exists("cm", "doomed")
    # a custom resource
    assert kc("delete", kc.widget, "w1", "-n", kc.ns, "--wait") == f'widget.{kc.group} "w1" deleted\n'
    assert "No resources found" in kc.run("get", kc.widgets, "-n", kc.ns).stderr
    # by file, with a missing object ignored
    out = kc.run("delete", "-f", "-", "--ignore-not-found", input=_manifest("ssa.yaml", kc.ns))
    assert out.returncode == 0, out.stderr
    # a namespace with content: --wait returns once it is gone
    other = kc.ns + "-del"
    assert kc("create", "-f", "-", input=_manifest("doomed-namespace.yaml", other)).splitlines() == [
        f"namespace/{other} created", "configmap/inside created", "secret/inside created"]
    t0 = time.monotonic()
    assert kc("delete", "namespace", other, "--wait", "--timeout=20s") == f'namespace "{other}" deleted\n'
    assert time.monotonic() - t0 < 20
    gone = kc.run("get", "namespace", other)
    assert gone.returncode == 1 and f'namespaces "{other}" not found' in gone.stderr
    # the session's CRD: its custom resources go with it
    assert kc("delete", "crd", f"widgets.{kc.group}", "--wait") == \
        f'customresourcedefinition.apiextensions.k8s.io "widgets.{kc.group}" deleted\n'
    assert kc.server.call("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{kc.widgets}").status == 404


# --- one test item per (step, version) ----------------------------------------------------------

@pytest.mark.parametrize("version", [
    pytest.param(v, id=f"kubectl-{v}", marks=pytest.mark.skipif(kubectl_binary(v) is None, reason=f"kubectl {v} not installed"))
    for v in VERSIONS])
@pytest.mark.parametrize("step", [fn.__name__ for fn in CHECKS])
def test_kubectl(sessions, step: str, version: str):
    err = sessions[version][step]
    if err is not None:
        raise err


# --- the OpenAPI v2 protobuf kubectl <= 1.28 reads (checked without kubectl too) ---------------

def _fields(buf: bytes) -> list[tuple[int, object]]:
    """Decode one protobuf message level: (field number, int | bytes) pairs."""
    out, i = [], 0

    def varint() -> int:
        nonlocal i
        n = shift = 0
        while True:
            b = buf[i]
            i += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return n

    while i < len(buf):
        key = varint()
        num, wt = key >> 3, key & 7
        if wt == 0:
            out.append((num, varint()))
        elif wt == 1:
            out.append((num, buf[i:i + 8]))
            i += 8
        elif wt == 2:
            n = varint()
            out.append((num, buf[i:i + n]))
            i += n
        else:
            raise AssertionError(f"wire type {wt}")
    return out


def _one(msg: bytes, num: int) -> bytes:
    vals = [v for n, v in _fields(msg) if n == num]
    assert len(vals) == 1, (num, vals)
    return vals[0]


def _named(msg: bytes, num: int) -> dict[str, bytes]:
    """Repeated Named* entries (name = 1, value = 2) under field `num`."""
    return {_one(v, 1).decode(): _one(v, 2) for n, v in _fields(msg) if n == num}


def test_openapi_v2_protobuf(server: ServerProc):
    accept = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
    r = server.call("GET", "/openapi/v2", headers={"Accept": accept})
    assert r.status == 200 and r.headers["content-type"] == "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    assert server.call("GET", "/openapi/v2", headers={"Accept": accept, "If-None-Match": r.headers["etag"]}).status \
        == 304
    doc = r.body
    assert _one(doc, 1) == b"2.0"                                            # swagger
    assert _one(_one(doc, 2), 1) == b"Kubernetes"                           # info.title
    definitions = _named(_one(doc, 9), 1)
    dep = definitions["io.k8s.api.apps.v1.Deployment"]
    gvk = _named(dep, 31)["x-kubernetes-group-version-kind"]                  # vendor extension (Any)
    assert yaml.safe_load(_one(gvk, 2)) == [{"group": "apps", "kind": "Deployment", "version": "v1"}]
    props = _named(_one(dep, 25), 1)                                         # properties
    assert set(props) == {"apiVersion", "kind", "metadata", "spec", "status"}
    assert _one(props["spec"], 1) == b"#/definitions/io.k8s.api.apps.v1.DeploymentSpec"       # $ref
    replicas = _named(_one(definitions["io.k8s.api.apps.v1.DeploymentSpec"], 25), 1)["replicas"]
    assert _one(replicas, 2) == b"int32" and _one(_one(replicas, 22), 1) == b"integer"  # format, type
    containers = _named(_one(definitions["io.k8s.api.core.v1.PodSpec"], 25), 1)["containers"]
    ext = {k: yaml.safe_load(_one(v, 2)) for k, v in _named(containers, 31).items()}
    assert ext["x-kubernetes-patch-merge-key"] == "name" and ext["x-kubernetes-patch-strategy"] == "merge"
    # the PATCH operation of a deployment, with its GVK and the fieldValidation query parameter
    paths = _named(_one(doc, 8), 2)
    patch = _one(paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"], 8)
    op_gvk = yaml.safe_load(_one(_named(patch, 13)["x-kubernetes-group-version-kind"], 2))
    assert op_gvk == {"group": "apps", "kind": "Deployment", "version": "v1"}
    names = set()
    for num, item in _fields(patch):
        if num == 8:                                                         # parameters
            param = _one(item, 1)                                            # ParametersItem.parameter
            for kind, sub in _fields(param):
                if kind == 2:                                                # non-body: query = 3
                    names.add(_one(_one(sub, 3), 4).decode())
    assert {"dryRun", "fieldManager", "fieldValidation", "force"} <= names
    # JSON stays the default
    assert server.call("GET", "/openapi/v2").json["swagger"] == "2.0"
