"""The operations kit (deploy/) against promtool, a live kubeplane and a real Prometheus.

- the alert rules pass `promtool check rules`, and promtool's rule unit tests
  (alerts_test.yml) show each alert firing on its series and not on the near misses;
- every metric an alert or a dashboard panel uses is one kubeplane exposes (taken from a
  live server's /metrics after a mixed load), and every label they name exists on it;
- a real Prometheus, configured from deploy/prometheus/prometheus.yml, scrapes kubeplane
  over HTTPS with the admin token (and over the loopback HTTP listener), loads the rules,
  evaluates them without error, and answers every dashboard query.

Needs Debian's `prometheus` package (scripts/ensure-prometheus). Without it these tests are
skipped, except under CI (env CI set), where a missing binary is a failure.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
PROM_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "kubeplane.json"
ALERTS_TEST = Path(__file__).resolve().parent / "alerts_test.yml"

# Series Prometheus makes itself (per target), not scraped from /metrics.
SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "ALERTS", "ALERTS_FOR_STATE"}
# Labels every scraped series gets from its target, and the histogram bucket label.
TARGET_LABELS = {"job", "instance"}
SEVERITIES = {"info", "warning", "critical"}
# Grafana's variables, as the dashboard uses them, with values for a plain Prometheus.
GRAFANA_VARS = {"$__rate_interval": "1m", "$job": "kubeplane", "$instance": ".+"}


def _needs(*tools: str) -> pytest.MarkDecorator:
    missing = [t for t in tools if shutil.which(t) is None]
    reason = f"{', '.join(missing)} not installed (Debian package prometheus; run scripts/ensure-prometheus)"
    if missing and os.environ.get("CI"):
        # CI installs the package: a missing binary there must not pass as a skip.
        return pytest.mark.usefixtures("_fail_missing_tools")
    return pytest.mark.skipif(bool(missing), reason=reason)


@pytest.fixture
def _fail_missing_tools() -> None:
    missing = [t for t in ("prometheus", "promtool") if shutil.which(t) is None]
    pytest.fail(f"{', '.join(missing)} missing under CI: run scripts/ensure-prometheus first")


needs_promtool = _needs("promtool")
needs_prometheus = _needs("prometheus", "promtool")


# --- PromQL: the metric and label names an expression uses ------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{([^}]*)\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_IDENT = re.compile(r"(?<![\w:.$])([A-Za-z_:][\w:]*)(\s*\()?")
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
             "unless", "offset", "inf", "nan", "atan2"}


def promql_names(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, label names) an expression refers to.

    Metric names are the identifiers left once strings, label matchers, range and subquery
    brackets and grouping clauses are taken out, minus function calls and keywords; label
    names are those of the matchers and the grouping clauses (by, without, on, ignoring,
    group_left/right). Good for the PromQL we write (no `{__name__=...}` selectors).
    """
    # Strings go first (a matcher's regex may hold any character); matchers are read with
    # the strings blanked, so only their label names remain.
    s = _STRING.sub('""', expr)
    labels: set[str] = set()
    for body in _MATCHERS.findall(s):
        labels.update(m.group(1) for m in re.finditer(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", body))
    s = _MATCHERS.sub(" ", s)
    s = _RANGE.sub(" ", s)
    for body in _GROUPING.findall(s):
        labels.update(x.strip() for x in body.split(",") if x.strip())
    s = _GROUPING.sub(" ", s)
    metrics = {m.group(1) for m in _IDENT.finditer(s) if not m.group(2) and m.group(1) not in _KEYWORDS}
    return metrics, labels


def test_promql_names() -> None:
    m, lab = promql_names(
        'histogram_quantile(0.99, sum by (instance, verb, le) (rate(foo_bucket{job="kubeplane", '
        'verb=~"GET|LIST", x!~"a}b"}[5m]))) > 1e9 and on (instance) bar_total offset 5m')
    assert m == {"foo_bucket", "bar_total"}
    assert lab == {"instance", "verb", "le", "job", "x"}
    m, lab = promql_names('topk(10, sum(rate(a{i=~"$instance"}[$__rate_interval])) / ignoring(x) b) or vector(0)')
    assert (m, lab) == ({"a", "b"}, {"i", "x"})
    m, _ = promql_names('label_replace(c > 0, "resource", "$1", "resource", "(.*)[.]") * 4 * 3600')
    assert m == {"c"}


# --- the files ------------------------------------------------------------------------------------

def alert_rules() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]


def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, expression) of every query in the dashboard."""
    dash = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in dash["panels"] for t in p.get("targets", [])]


def grafana_to_promql(expr: str) -> str:
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    assert "$" not in expr.replace("$1", ""), f"unknown Grafana variable in {expr!r}"
    return expr


def all_exprs() -> list[tuple[str, str]]:
    return ([(f"alert {r['alert']}", r["expr"]) for r in alert_rules()]
            + [(f"panel {t!r}", grafana_to_promql(e)) for t, e in dashboard_exprs()])


def test_alert_rules_are_complete() -> None:
    """Each alert: a `for`, a known severity, a summary and a description; the job selector."""
    rules = alert_rules()
    assert len(rules) >= 15
    for r in rules:
        assert re.fullmatch(r"\d+[smh]", r.get("for", "")), r["alert"]
        assert r["labels"]["severity"] in SEVERITIES, r["alert"]
        assert r["annotations"]["summary"].strip() and len(r["annotations"]["description"]) > 80, r["alert"]
        assert 'job="kubeplane"' in r["expr"], r["alert"]


def test_dashboard_shape() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["schemaVersion"] >= 36 and dash["uid"] and dash["title"] == "kubeplane"
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    rows = [p["title"] for p in dash["panels"] if p["type"] == "row"]
    assert rows == ["Requests", "In-flight and API Priority and Fairness", "Watches", "Store", "Process"]
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
    cells: set[tuple[int, int]] = set()
    for p in dash["panels"]:
        if p["type"] != "row":
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
            assert p["targets"] and all(t["datasource"]["uid"] == "${datasource}" for t in p["targets"])
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        mine = {(g["x"] + dx, g["y"] + dy) for dx in range(g["w"]) for dy in range(g["h"])}
        assert not mine & cells, f"panel {p['title']!r} overlaps another"
        cells |= mine
    assert len(panels) >= 25


# --- promtool ---------------------------------------------------------------------------------

@needs_promtool
def test_promtool_check_rules() -> None:
    out = subprocess.run(["promtool", "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in out.stdout


def _run_rule_unit_tests(tmp: Path) -> subprocess.CompletedProcess:
    """promtool's rule unit tests against a copy of the rules without annotations (promtool
    compares annotations exactly; the unit tests check expressions, `for` and labels)."""
    rules = yaml.safe_load(ALERTS.read_text())
    for g in rules["groups"]:
        for r in g["rules"]:
            r.pop("annotations", None)
    (tmp / "rules.yml").write_text(yaml.safe_dump(rules))
    tests = yaml.safe_load(ALERTS_TEST.read_text())
    assert tests["rule_files"] == ["../../deploy/prometheus/alerts.yml"]
    tests["rule_files"] = [str(tmp / "rules.yml")]
    (tmp / "alerts_test.yml").write_text(yaml.safe_dump(tests))
    return subprocess.run(["promtool", "test", "rules", str(tmp / "alerts_test.yml")],
                          capture_output=True, text=True, timeout=60)


@needs_promtool
def test_alerts_fire_on_their_series(tmp_path: Path) -> None:
    out = _run_rule_unit_tests(tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    # Every alert has at least one case where it is expected to fire.
    tests = yaml.safe_load(ALERTS_TEST.read_text())["tests"]
    fired = {a["alertname"] for t in tests for a in t["alert_rule_test"] if a["exp_alerts"]}
    assert fired == {r["alert"] for r in alert_rules()}


# --- the live server's metrics -------------------------------------------------------------------

def exposed(text: str) -> dict[str, set[str]]:
    """Sample name -> label names, from the text exposition. Families that have no sample
    yet (a labelled counter nothing has incremented) are named by their TYPE line, with the
    sample names their type implies, and an empty label set."""
    out: dict[str, set[str]] = {}
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
                "summary": ("_sum", "_count", "_created"), "gauge": ("",), "untyped": ("",)}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(None, 3)
            base = name[:-6] if kind == "counter" and name.endswith("_total") else name
            for suffix in suffixes.get(kind, ("",)):
                out.setdefault(base + suffix, set())
        elif line and not line.startswith("#"):
            m = re.match(r"([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s", line)
            assert m, line
            out.setdefault(m.group(1), set()).update(re.findall(r'([A-Za-z_]\w*)="', m.group(2) or ""))
    return out


def test_metrics_after_mixed_load(exposition: str) -> None:
    """The load reached the metrics: every verb of it and the 404 are counted."""
    verbs = set(re.findall(r'^apiserver_request_total\{[^}]*verb="([A-Z]+)"', exposition, re.M))
    assert {"POST", "GET", "LIST", "WATCH", "PATCH", "DELETE"} <= verbs, verbs
    assert re.search(r'^apiserver_request_total\{[^}]*code="404"', exposition, re.M)


def test_referenced_metrics_are_exposed(exposition: str) -> None:
    """A rule or panel written against a name (or label) kubeplane does not expose fails here."""
    names = exposed(exposition)
    unknown: list[str] = []
    for where, expr in all_exprs():
        metrics, labels = promql_names(expr)
        assert metrics, f"{where}: no metric found in {expr!r}"
        missing = sorted(m for m in metrics - SYNTHETIC if m not in names)
        if missing:
            unknown.append(f"{where}: metrics {missing}")
            continue
        scraped = metrics - SYNTHETIC
        known = set().union(*(names[m] for m in scraped)) if scraped else set()
        if scraped and all(names[m] for m in scraped):  # labels are known only from samples
            allowed = known | TARGET_LABELS | {"le"}
            if labels - allowed:
                unknown.append(f"{where}: labels {sorted(labels - allowed)} not on {sorted(scraped)}")
    assert not unknown, "\n".join(unknown)


# --- a real Prometheus ------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Prometheus:
    """`prometheus` on 127.0.0.1 with a temp config and TSDB; `api()` reads its HTTP API."""

    def __init__(self, config: Path, workdir: Path):
        self.port = _free_port()
        self.log = workdir / "prometheus.log"
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=open(self.log, "wb"))

    def api(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=5) as r:
            body = json.load(r)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return self.api("query", query=expr)["result"]

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def scrape_config(kubeplane: Any) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml pointed at the test server: 1 s scrapes and
    evaluations, absolute paths, and a second job for the loopback HTTP listener."""
    cfg = yaml.safe_load(PROM_CONFIG.read_text())
    cfg["global"].update(scrape_interval="1s", evaluation_interval="1s")
    assert cfg["rule_files"] == ["alerts.yml"]
    cfg["rule_files"] = [str(ALERTS)]
    (job,) = [j for j in cfg["scrape_configs"] if j["job_name"] == "kubeplane"]
    pki = Path(kubeplane.data_dir) / "pki"
    assert job["authorization"]["credentials_file"] == "../../data/pki/token"
    job["authorization"]["credentials_file"] = str(pki / "token")
    job["tls_config"]["ca_file"] = str(pki / "ca.crt")
    https_port = urllib.parse.urlsplit(kubeplane.https_url).port
    job["static_configs"] = [{"targets": [f"127.0.0.1:{https_port}"]}]
    plain = {"job_name": "kubeplane-http", "static_configs": [{"targets": [f"127.0.0.1:{kubeplane.http_port}"]}]}
    cfg["scrape_configs"] = [job, plain]
    return cfg


@pytest.fixture
def prometheus(kubeplane: Any, tmp_path: Path) -> Iterator[Prometheus]:
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(scrape_config(kubeplane)))
    out = subprocess.run(["promtool", "check", "config", str(config)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    p = Prometheus(config, tmp_path)
    try:
        yield p
    finally:
        p.stop()


def _poll(what: str, check, prom: Prometheus, deadline: float, kubeplane: Any) -> Any:
    """Call `check()` until it returns something truthy (a little traffic between tries)."""
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (OSError, AssertionError) as exc:  # not listening yet / not ready
            last = exc
        assert prom.proc.poll() is None, f"prometheus exited:\n{prom.log_tail()}"
        kubeplane.call("GET", "/api/v1/namespaces/default")
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what} (last: {last!r})\nprometheus log:\n{prom.log_tail()}")


@needs_prometheus
def test_prometheus_scrapes_kubeplane_and_evaluates_rules(kubeplane: Any, prometheus: Prometheus) -> None:
    deadline = time.monotonic() + 30
    prom = prometheus

    def up() -> dict[str, float]:
        vals = {r["metric"]["job"]: float(r["value"][1]) for r in prom.query('up{job=~"kubeplane|kubeplane-http"}')}
        return vals if vals == {"kubeplane": 1.0, "kubeplane-http": 1.0} else {}

    _poll("both targets up (HTTPS with the token, loopback HTTP)", up, prom, deadline, kubeplane)
    series = _poll("apiserver_request_total from the HTTPS job",
                   lambda: prom.query('apiserver_request_total{job="kubeplane"}'), prom, deadline, kubeplane)
    assert {s["metric"]["verb"] for s in series} >= {"POST", "GET", "LIST", "WATCH", "PATCH", "DELETE"}
    rate = _poll("a non-zero request rate",
                 lambda: [r for r in prom.query('sum(rate(apiserver_request_total{job="kubeplane"}[1m]))')
                          if float(r["value"][1]) > 0], prom, deadline, kubeplane)
    assert float(rate[0]["value"][1]) > 0

    def evaluated() -> list[dict[str, Any]]:
        groups = prom.api("rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        if len(rules) < len(alert_rules()) or any(r["health"] == "unknown" for r in rules):
            return []
        return groups

    groups = _poll("every rule evaluated", evaluated, prom, deadline, kubeplane)
    assert {g["name"] for g in groups} == {"kubeplane-apiserver", "kubeplane-store"}
    bad = [(r["name"], r["health"], r.get("lastError")) for g in groups for r in g["rules"] if r["health"] != "ok"]
    assert not bad, bad
    # A healthy server under light load trips nothing, not even a pending alert.
    assert prom.api("alerts")["alerts"] == []

    # Every alert and panel expression is valid PromQL for this Prometheus, and the panels
    # that describe what the load did show data.
    empty = []
    for where, expr in all_exprs():
        if not prom.query(expr) and where.startswith("panel"):
            empty.append(where)
    must_show = {"panel 'Request rate by verb and code'", "panel 'In-flight requests by kind'",
                 "panel 'Database size vs quota'", "panel 'Resident memory'",
                 "panel 'Keys and committed proposals'", "panel 'Objects by resource (top 15)'"}
    assert not must_show & set(empty), sorted(empty)
    print(f"\n{len(dashboard_exprs())} panel queries, empty after {30 - (deadline - time.monotonic()):.1f} s: "
          f"{sorted(empty)}")


if __name__ == "__main__":
    # promtool's rule unit tests by hand: python tests/observability/test_prometheus.py
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        res = _run_rule_unit_tests(Path(d))
        sys.stdout.write(res.stdout + res.stderr)
        sys.exit(res.returncode)
