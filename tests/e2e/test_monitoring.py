"""deploy/monitoring/: the alert rules pass promtool and their unit tests pin
every alert both ways, each alert leads to its runbook section, the
PrometheusRule carries the same rules, and every metric the rules and the
dashboard query is one a running gateway exports (scraped after driving it
through the events that create each series)."""

from __future__ import annotations

import json
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from conftest import BINARY, DEMO_EMAIL, DEMO_PASSWORD, ROOT

MONITORING = ROOT / "deploy" / "monitoring"
RULES = MONITORING / "rules.yaml"
RULE_TESTS = sorted(MONITORING.glob("*.test.yaml"))
DASHBOARD = MONITORING / "dashboard.json"
COMPONENT = ROOT / "deploy" / "components" / "monitoring"
RUNBOOK = ROOT / "docs" / "runbook.md"
# Labels Prometheus adds to every scraped series (the ServiceMonitor's targets
# carry these), and the series it makes itself for every target.
TARGET_LABELS = {"namespace", "job", "instance", "pod", "service", "container"}
SYNTHETIC_METRICS = {"up"}
# Present only while files are watched (certificates, callers, key files), which the
# sandbox scraped here has none of; test_docs_match.py scrapes them from a gateway with a key file.
WATCHED_FILE_METRICS = {"mtr_sso_reloads_total", "mtr_sso_reload_failures_total", "mtr_sso_reload_failing"}
# Exported only with --redis-url (a sandbox scrape has no Redis); their names
# and labels are checked against a real scrape by tests/redis_outage.rs.
REDIS_METRICS = {"mtr_sso_redis_up", "mtr_sso_redis_outages_total"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
                "offset", "inf", "nan"}


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def alerts() -> list[dict]:
    return [rule for rule in rules() if "alert" in rule]


def promtool(*args: str, cwd: Path = MONITORING) -> subprocess.CompletedProcess:
    assert shutil.which("promtool"), "promtool is installed by scripts/setup (Debian package prometheus)"
    return subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


# --- the rules ---------------------------------------------------------------

def test_promtool_checks_the_rules_and_passes_their_unit_tests():
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0 and "SUCCESS: 17 rules found" in checked.stdout, checked.stdout + checked.stderr
    tested = promtool("test", "rules", *[p.name for p in RULE_TESTS])
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_is_labelled_annotated_and_leads_to_its_runbook_section():
    headings = {slug(line.lstrip("#").strip()) for line in RUNBOOK.read_text().splitlines() if line.startswith("## ")}
    names = [alert["alert"] for alert in alerts()]
    assert len(names) == len(set(names)) == 12, names
    for alert in alerts():
        assert re.fullmatch(r"MtrSso[A-Z][A-Za-z0-9]+", alert["alert"]), alert["alert"]
        assert alert["labels"]["severity"] in ("critical", "warning"), alert["alert"]
        annotations = alert["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, alert["alert"]
        url, _, anchor = annotations["runbook_url"].partition("#")
        assert url.endswith("/docs/runbook.md") and anchor == alert["alert"].lower(), annotations["runbook_url"]
        assert anchor in headings, f"docs/runbook.md has no section '## {alert['alert']}'"


def slug(heading: str) -> str:
    """The anchor GitHub and most Markdown renderers give a heading."""
    return re.sub(r"[^a-z0-9 _-]", "", heading.lower()).replace(" ", "-")


def rule_cases() -> dict[str, dict[str, list]]:
    """For each alert, its unit test cases as (file, test, eval) triples, split
    into those that expect it to fire and those that expect silence."""
    cases: dict[str, dict[str, list]] = {}
    for path in RULE_TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for check in test.get("alert_rule_test", []):
                kind = "fires" if check.get("exp_alerts") else "silent"
                cases.setdefault(check["alertname"], {"fires": [], "silent": []})[kind].append((path, test, check))
    return cases


def test_every_alert_has_a_case_where_it_fires_and_one_where_it_must_not():
    cases = rule_cases()
    for alert in alerts():
        name = alert["alert"]
        assert cases.get(name, {}).get("fires"), f"{name} has no unit test where it fires"
        assert cases.get(name, {}).get("silent"), f"{name} has no unit test where it must stay silent"
    assert set(cases) <= {alert["alert"] for alert in alerts()}, "a unit test names an alert the rules lack"


def run_cases_against(tmp_path: Path, name: str, replacement: str, kind: str) -> subprocess.CompletedProcess:
    """Runs only the `kind` cases of alert `name` against a copy of the rules
    where that alert's expression is `replacement`."""
    document = yaml.safe_load(RULES.read_text())
    for group in document["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == name:
                rule["expr"] = replacement
                rule.pop("for", None)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(document))
    for path in RULE_TESTS:
        tests = []
        for test in yaml.safe_load(path.read_text())["tests"]:
            checks = [c for c in test.get("alert_rule_test", [])
                      if c["alertname"] == name and bool(c.get("exp_alerts")) == (kind == "fires")]
            if checks:
                tests.append(dict(test, alert_rule_test=checks))
        header = yaml.safe_load(path.read_text())
        (tmp_path / path.name).write_text(yaml.safe_dump(dict(header, tests=tests)))
    return promtool("test", "rules", *[p.name for p in RULE_TESTS], cwd=tmp_path)


def test_each_alert_s_cases_catch_a_rule_that_never_fires_and_one_that_always_does(tmp_path):
    # The cases must pin the rule: replaced by an expression that never fires,
    # its firing cases fail; by one that always fires, its silent cases fail.
    for alert in alerts():
        name = alert["alert"]
        never = run_cases_against(tmp_path, name, "vector(1) > 2", "fires")
        assert never.returncode != 0 and name in never.stdout + never.stderr, f"{name}: firing cases pass a dead rule"
        always = run_cases_against(tmp_path, name, "vector(1)", "silent")
        assert always.returncode != 0 and name in always.stdout + always.stderr, f"{name}: silent cases pass a rule that always fires"


def test_the_prometheus_rule_carries_exactly_the_rules_file(tmp_path):
    generated = tmp_path / "prometheusrule.yaml"
    subprocess.run([str(COMPONENT / "generate"), str(generated)], check=True, timeout=30)
    committed = (COMPONENT / "prometheusrule.yaml").read_text()
    assert committed == generated.read_text(), "run deploy/components/monitoring/generate after changing rules.yaml"
    resource = yaml.safe_load(committed)
    assert (resource["apiVersion"], resource["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert resource["spec"] == yaml.safe_load(RULES.read_text())


# --- metric names in the queries ---------------------------------------------

def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: every identifier that is
    not a function, keyword, label (in matchers or grouping) or number."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\$\{?\w+\}?", "", text)
    names = set()
    for match in re.finditer(r"(?<![\w:.])([A-Za-z_:][\w:]*)\s*(\()?", text):
        if not match.group(2) and match.group(1).lower() not in PROMQL_WORDS:
            names.add(match.group(1))
    return names


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """Each `metric{matchers}` in the expression, with the label names it matches on."""
    found = []
    for match in re.finditer(r"([A-Za-z_:][\w:]*)\{([^}]*)\}", expr):
        labels = set(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", re.sub(r'"(?:[^"\\]|\\.)*"', '""', match.group(2))))
        found.append((match.group(1), labels))
    return found


def test_metric_names_finds_metrics_and_nothing_else():
    expr = ('histogram_quantile(0.99, sum by (grpc_method, le) (rate(grpc_server_handling_seconds_bucket'
            '{grpc_method=~"$method",job="a b"}[$__rate_interval]))) > 2.5 and on (job) '
            'absent(up{job="mtr-sso"} == 1) or mtr_sso:x:ratio_rate5m offset 5m / 1e3 unless bool nan')
    assert metric_names(expr) == {"grpc_server_handling_seconds_bucket", "up", "mtr_sso:x:ratio_rate5m"}
    assert metric_names('sum(rate(mtr_sso_upstream_requets_total[5m]))') == {"mtr_sso_upstream_requets_total"}
    assert selectors('rate(a_total{tenant=~"$tenant",status!="x=y"}[5m])') == [("a_total", {"tenant", "status"})]


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            match = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", variable["query"]["query"])
            assert match, variable["query"]
            queries.append(match.group(1))
    return queries


def rule_queries() -> list[str]:
    return [rule["expr"] for rule in rules()]


def test_the_dashboard_has_its_panels_and_variables_on_every_query():
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert set(variables) == {"datasource", "tenant", "method"}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"] and all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"]), panel["title"]
    everything = " ".join(dashboard_queries())
    for family in ["grpc_server_handled_total", "grpc_server_handling_seconds_bucket", "grpc_server_started_total",
                   "mtr_sso_rpc_errors_total", "mtr_sso_upstream_requests_total",
                   "mtr_sso_upstream_request_duration_seconds_bucket", "mtr_sso_upstream_quota_tokens_left",
                   "mtr_sso_upstream_quota_waits_total", "mtr_sso_upstream_quota_waiting",
                   "mtr_sso_upstream_quota_wait_seconds_bucket", "mtr_sso_upstream_circuit_state",
                   "mtr_sso_upstream_calls_saved_total",
                   "mtr_sso_audit_events_total", "mtr_sso_audit_events_lost_total"]:
        assert family in everything, f"the dashboard shows no {family}"


# --- a gateway driven through the events that create every series ------------

def post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def put_switches(sandbox_url: str, switches: dict) -> None:
    request = urllib.request.Request(sandbox_url.rstrip("/") + "/_sandbox/switches", data=json.dumps(switches).encode(),
                                     method="PUT", headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=10).read()


@pytest.fixture(scope="module")
def scraped_metrics():
    """The /metrics text of a sandbox gateway after logins (one refused), a
    reused refresh, a one-time token, a burst past a small quota and an
    opened circuit."""
    process = subprocess.Popen(
        [str(BINARY), "--sandbox", "--listen", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--log-format", "json",
         "--shutdown-grace", "2s", "--email-limit-per-minute", "0", "--caller-limit-per-minute", "0",
         # 3 calls per API in a 2-second window, and waits of up to 2 s.
         "--limit-window", "2s", "--upstream-quota-per-minute", "3", "--quota-max-wait", "2s",
         "--circuit-breaker-failures", "2", "--circuit-breaker-cooldown", "30s"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    found: dict[str, str] = {}
    while "grpc_addr" not in found:
        try:
            event = json.loads(lines.get(timeout=20))
        except queue.Empty:
            process.kill()
            pytest.fail("mtr-sso did not start")
        for key in ("grpc_addr", "metrics_addr", "sandbox_url"):
            if key in event:
                found[key] = event[key]
    api = f"http://{found['grpc_addr']}"
    try:
        status, body = post(api + "/v1/sessions:login", {"email": DEMO_EMAIL, "password": DEMO_PASSWORD})
        assert status == 200, body
        refresh_token = body["session"]["refreshToken"]
        assert post(api + "/v1/sessions:login", {"email": DEMO_EMAIL, "password": "wrong"})[0] == 401
        for _ in range(2):  # the second is answered from the reuse window
            assert post(api + "/v1/sessions:refresh", {"refreshToken": refresh_token})[0] == 200
        assert post(api + "/v1/oneTimeTokens:issue", {"email": DEMO_EMAIL})[0] == 200
        login = {"email": DEMO_EMAIL, "password": DEMO_PASSWORD}
        with ThreadPoolExecutor(4) as pool:
            # A burst fills the window (a slot is held for the window plus 1 s);
            # 1.5 s on, the next slot frees within the 2 s a call may wait.
            burst = list(pool.map(lambda _: post(api + "/v1/sessions:login", login)[0], range(4)))
            assert 429 in burst, burst
            time.sleep(1.5)
            waited = list(pool.map(lambda _: post(api + "/v1/sessions:login", login)[0], range(2)))
            assert 200 in waited, waited
        put_switches(found["sandbox_url"], {"fault": "server_error"})
        refused = [post(api + "/v1/oneTimeTokens:issue", {"email": DEMO_EMAIL}) for _ in range(4)]
        put_switches(found["sandbox_url"], {})
        reasons = [detail.get("reason") for _, body in refused for detail in body.get("details", [])]
        assert "UPSTREAM_CIRCUIT_OPEN" in reasons, reasons
        with urllib.request.urlopen(f"http://{found['metrics_addr']}/metrics", timeout=10) as response:
            yield response.read().decode()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


def exported(metrics_text: str) -> dict[str, set[str]]:
    """Each sample name in the scrape, with the label names it carries."""
    series: dict[str, set[str]] = {}
    for line in metrics_text.splitlines():
        if line and not line.startswith("#"):
            name, _, rest = line.partition("{")
            name = name.split(" ")[0]
            labels = set(re.findall(r'([A-Za-z_]\w*)="', rest)) if rest else set()
            series.setdefault(name, set()).update(labels)
    return series


def test_the_scrape_holds_every_series_the_driven_events_create(scraped_metrics):
    names = exported(scraped_metrics)
    for name in ["mtr_sso_upstream_quota_waits_total", "mtr_sso_upstream_quota_wait_seconds_bucket",
                 "mtr_sso_upstream_circuit_state", "mtr_sso_upstream_calls_saved_total", "mtr_sso_rpc_errors_total"]:
        assert name in names, f"{name} missing from the scrape:\n{scraped_metrics}"
    assert 'status="circuit_open"' in scraped_metrics and 'how="reused"' in scraped_metrics


def test_the_rules_and_the_dashboard_query_only_metrics_the_service_exports(scraped_metrics):
    series = exported(scraped_metrics)
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    known = set(series) | recorded | SYNTHETIC_METRICS | REDIS_METRICS | WATCHED_FILE_METRICS
    for source, queries in [("rules.yaml", rule_queries()), ("dashboard.json", dashboard_queries())]:
        for query in queries:
            unknown = metric_names(query) - known
            assert not unknown, f"{source} queries {sorted(unknown)}, which the service does not export: {query}"
            for metric, labels in selectors(query):
                if metric in series:
                    stray = labels - series[metric] - TARGET_LABELS
                    assert not stray, f"{source}: {metric} has no label {sorted(stray)}: {query}"


def test_dashboard_queries_follow_the_tenant_and_method_variables(scraped_metrics):
    series = exported(scraped_metrics)
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            for metric, _ in selectors(target["expr"]):
                if "tenant" in series.get(metric, set()):
                    assert 'tenant=~"$tenant"' in target["expr"], (panel["title"], target["expr"])
                if "grpc_method" in series.get(metric, set()):
                    assert 'grpc_method=~"$method"' in target["expr"], (panel["title"], target["expr"])
