"""Static checks of deploy/: compose file, Dockerfile, Grafana dashboard, Prometheus config and rules.

The PromQL checks run the real `promtool` (Debian package `prometheus`): every alert and every
dashboard query is parsed by it, and `promtool test rules` evaluates them on synthetic series
shaped like the worker's metrics, so a query that returns nothing or an alert that never fires
fails here rather than on a dashboard.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "streamrec.json"
GRAFANA_DATASOURCE = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
GRAFANA_DASHBOARDS = DEPLOY / "grafana" / "provisioning" / "dashboards" / "streamrec.yml"
PROMETHEUS_DIR = DEPLOY / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"

HISTOGRAMS = (
    "streamrec_event_to_recommendation_seconds",
    "streamrec_inference_seconds",
    "streamrec_batch_size",
)
SIMPLE_METRICS = (
    "streamrec_events_total",
    "streamrec_events_invalid_total",
    "streamrec_events_refetched_total",
    "streamrec_recommendations_total",
    "streamrec_users_tracked",
    "streamrec_model_info",
    "streamrec_model_swaps_total",
    "streamrec_consumer_lag_messages",
)
WORKER_METRICS = frozenset(
    [*SIMPLE_METRICS, *(f"{h}{suffix}" for h in HISTOGRAMS for suffix in ("_bucket", "_sum", "_count"))]
)
ALLOWED_METRICS = WORKER_METRICS | {"up"}

# Values for the dashboard's template variables when its queries are run outside Grafana.
GRAFANA_VARIABLES = {
    "job": "streamrec",
    "instance": ".*",
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "1h",
}

_PROMQL_KEYWORDS = frozenset(
    "by without on ignoring group_left group_right bool offset and or unless inf nan atan2".split()
)
_IDENT = re.compile(r"(?<![\w.:$])[A-Za-z_:][A-Za-z0-9_:]*")


# --------------------------------------------------------------------------- helpers


def _load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """All panels that show data (rows excluded), including panels nested in collapsed rows."""
    out = []
    for panel in dashboard["panels"]:
        if panel.get("type") == "row":
            out.extend(panel.get("panels", []))
        else:
            out.append(panel)
    return out


def _dashboard_queries() -> list[tuple[str, str]]:
    """(panel title / refId, expr) for every target of the dashboard."""
    return [
        (f"{panel['title']} / {target.get('refId', '?')}", target["expr"])
        for panel in _panels(_dashboard())
        for target in panel.get("targets", [])
    ]


def _metric_names(expr: str) -> set[str]:
    """Names of the series an expression selects (a small PromQL tokenizer, enough for our rules)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range / subquery windows
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in _IDENT.finditer(text):
        if text[match.end() :].lstrip().startswith("("):
            continue  # a function or an aggregation
        if match.group().lower() in _PROMQL_KEYWORDS:
            continue
        names.add(match.group())
    return names


def _selectors(expr: str, metric: str) -> list[str | None]:
    """Label-matcher text of every selector of `metric` in `expr` (None when it has no braces)."""
    out: list[str | None] = []
    for match in re.finditer(rf"(?<![\w:]){re.escape(metric)}(?![\w:])", expr):
        rest = expr[match.end() :]
        braces = re.match(r"\s*\{([^}]*)\}", rest)
        out.append(braces.group(1) if braces else None)
    return out


def _substitute_grafana_variables(expr: str) -> str:
    def repl(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in GRAFANA_VARIABLES, f"unknown Grafana variable ${name} in {expr!r}"
        return GRAFANA_VARIABLES[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", repl, expr)


def _rules(path: Path = ALERTS) -> list[dict[str, Any]]:
    return [rule for group in _load_yaml(path)["groups"] for rule in group["rules"]]


def _alerts() -> list[dict[str, Any]]:
    return [rule for rule in _rules() if "alert" in rule]


def _promtool() -> str:
    """Path of promtool; a missing promtool fails the test (CI installs it), it is never skipped."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool not found on PATH: install the Debian package `prometheus` "
            "(apt-get install -y --no-install-recommends prometheus), which ships /usr/bin/promtool"
        )
    return path


def _run_promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [_promtool(), *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, (
        f"promtool {' '.join(map(str, args))} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    )
    return result


def _series(values: str, metric: str, **labels: str) -> dict[str, str]:
    label_text = ", ".join(f'{k}="{v}"' for k, v in {"job": "streamrec", "instance": "w1:9108", **labels}.items())
    return {"series": f"{metric}{{{label_text}}}", "values": values}


def _histogram(name: str, buckets: dict[str, str], total: str, total_sum: str) -> list[dict[str, str]]:
    return [
        *(_series(values, f"{name}_bucket", le=le) for le, values in buckets.items()),
        _series(total, f"{name}_count"),
        _series(total_sum, f"{name}_sum"),
    ]


def _healthy_worker_series(samples: int) -> list[dict[str, str]]:
    """Series of one busy, healthy worker: `samples` + 1 samples each (promtool's `a+bxN` notation)."""
    n = str(samples)
    series = [
        _series(f"1+0x{n}", "up"),
        _series(f"0+600x{n}", "streamrec_events_total", event_type="view"),
        _series(f"0+120x{n}", "streamrec_events_total", event_type="click"),
        _series(f"0+30x{n}", "streamrec_events_total", event_type="add_to_cart"),
        _series(f"0+6x{n}", "streamrec_events_total", event_type="purchase"),
        _series(f"0+1x{n}", "streamrec_events_invalid_total", reason="not_json"),
        _series(f"0+0x{n}", "streamrec_events_invalid_total", reason="missing_field"),
        _series(f"0+0x{n}", "streamrec_events_invalid_total", reason="internal_error"),
        _series(f"0+0x{n}", "streamrec_events_refetched_total"),
        _series(f"0+700x{n}", "streamrec_recommendations_total"),
        _series(f"100+10x{n}", "streamrec_users_tracked"),
        _series(f"1+0x{n}", "streamrec_model_info", version="20261123T160512Z-3fa9c1"),
        _series(f"0+0x{n}", "streamrec_model_swaps_total", outcome="rejected"),
        _series(f"0+0x5 1+0x{samples - 6}", "streamrec_model_swaps_total", outcome="swapped"),
        # Behind by 5000 messages, but not growing: no lag alert.
        _series(f"2500+0x{n}", "streamrec_consumer_lag_messages", topic="events", partition="0"),
        _series(f"2500+0x{n}", "streamrec_consumer_lag_messages", topic="events", partition="1"),
    ]
    series += _histogram(
        "streamrec_event_to_recommendation_seconds",
        {"0.01": f"0+400x{n}", "0.025": f"0+650x{n}", "0.05": f"0+700x{n}", "0.1": f"0+700x{n}", "+Inf": f"0+700x{n}"},
        f"0+700x{n}",
        f"0+9x{n}",
    )
    series += _histogram(
        "streamrec_inference_seconds",
        {"0.001": f"0+10x{n}", "0.0025": f"0+55x{n}", "0.005": f"0+60x{n}", "+Inf": f"0+60x{n}"},
        f"0+60x{n}",
        f"0+0.09x{n}",
    )
    series += _histogram(
        "streamrec_batch_size",
        {str(2**i): f"0+{min(60, 4 * i)}x{n}" for i in range(11)} | {"+Inf": f"0+60x{n}"},
        f"0+60x{n}",
        f"0+700x{n}",
    )
    return series


# --------------------------------------------------------------------------- compose


def _resolve_compose_default(value: str) -> str:
    """`${VAR:-default}` -> default (what compose uses when VAR is unset)."""
    return re.sub(r"\$\{\w+(?::?-([^}]*))?\}", lambda m: m.group(1) or "", value)


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source (named volume or host path, defaults resolved) of a service."""
    mounts = {}
    for volume in service.get("volumes", []):
        assert isinstance(volume, str), f"use the short volume syntax ({volume!r})"
        source, target, *_ = _resolve_compose_default(volume).split(":")
        mounts[target] = source
    return mounts


def test_compose_parses_and_has_the_services() -> None:
    compose = _load_yaml(COMPOSE)
    services = compose["services"]
    assert {"kafka", "worker", "prometheus", "grafana", "producer", "trainer"} <= set(services)
    assert _resolve_compose_default(services["kafka"]["image"]).startswith("apache/kafka:4.")
    assert "controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]


def test_compose_build_contexts_and_dockerfiles_exist() -> None:
    services = _load_yaml(COMPOSE)["services"]
    built = {name: svc["build"] for name, svc in services.items() if "build" in svc}
    assert "worker" in built
    for name, build in built.items():
        context = (DEPLOY / build["context"]).resolve()
        assert context == ROOT, f"{name}: build context {build['context']} is not the repository root"
        dockerfile = context / build.get("dockerfile", "Dockerfile")
        assert dockerfile.is_file(), f"{name}: {dockerfile} does not exist"
        if "target" in build:
            stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", dockerfile.read_text(), re.M | re.I)
            assert build["target"] in stages, f"{name}: no stage {build['target']!r} in {dockerfile}"


def test_compose_volumes_exist_or_are_declared() -> None:
    compose = _load_yaml(COMPOSE)
    declared = set(compose.get("volumes") or {})
    for name, svc in compose["services"].items():
        for source in _mounts(svc).values():
            if source.startswith("./"):  # files of this repository: must be there
                assert (DEPLOY / source).exists(), f"{name}: bind mount {source} does not exist"
            elif source.startswith(("/", "../", "~")):
                pytest.fail(f"{name}: bind mount {source!r} outside deploy/ must not be a default")
            else:
                assert source in declared, f"{name}: volume {source!r} is not declared under volumes:"


def test_compose_worker_environment_and_model_mount() -> None:
    worker = _load_yaml(COMPOSE)["services"]["worker"]
    env = worker["environment"]
    assert env["STREAMREC_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert env["STREAMREC_MODEL_DIR"] == "/models"
    assert str(env["STREAMREC_METRICS_PORT"]) == "9108"
    assert _mounts(worker)["/models"] == "models"
    assert worker["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_compose_prometheus_and_grafana_mounts() -> None:
    services = _load_yaml(COMPOSE)["services"]
    prom_mounts = _mounts(services["prometheus"])
    assert prom_mounts["/etc/prometheus/prometheus.yml"] == "./prometheus/prometheus.yml"
    assert prom_mounts["/etc/prometheus/alerts.yml"] == "./prometheus/alerts.yml"

    grafana = services["grafana"]
    env = grafana["environment"]
    assert _resolve_compose_default(str(env["GF_AUTH_ANONYMOUS_ENABLED"])) == "false"
    assert env["GF_SECURITY_ADMIN_PASSWORD"].startswith("${"), "admin password must come from the environment"
    mounts = _mounts(grafana)
    assert mounts["/etc/grafana/provisioning"] == "./grafana/provisioning"
    dashboards_path = _load_yaml(GRAFANA_DASHBOARDS)["providers"][0]["options"]["path"]
    assert mounts[dashboards_path] == "./grafana/dashboards"


def test_grafana_datasource_points_at_compose_prometheus() -> None:
    (source,) = _load_yaml(GRAFANA_DATASOURCE)["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    scrape = _load_yaml(PROMETHEUS_DIR / "prometheus.yml")["global"]["scrape_interval"]
    assert source["jsonData"]["timeInterval"] == scrape


# --------------------------------------------------------------------------- Dockerfile


def test_dockerfile_worker_stage() -> None:
    text = DOCKERFILE.read_text()
    stages = re.split(r"^FROM\s", text, flags=re.M)
    worker = stages[-1]
    assert worker.split()[2].lower() == "worker", "the last stage (plain `docker build`) must be the worker"
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert re.search(r"^RUN pip install \.(\s|$)", worker, re.M), "worker installs runtime deps only"
    assert "[train]" not in worker
    user = re.findall(r"^USER\s+(\S+)", worker, re.M)
    assert user and user[-1] not in {"root", "0"}
    assert re.search(r'^ENTRYPOINT \["streamrec"\]', worker, re.M)
    assert re.search(r'^CMD \["worker"\]', worker, re.M)
    assert re.search(r"^EXPOSE 9108\b", worker, re.M)
    assert "STREAMREC_MODEL_DIR=/models" in text


def test_dockerignore_keeps_local_state_out() -> None:
    patterns = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", "var", "models", ".git"} <= patterns
    needed = {"pyproject.toml", "README.md", "streams", "serving", "encoders"}
    assert not needed & patterns, f"{needed & patterns} are needed by `pip install .`"
    assert not any(p in {"*", "**"} for p in patterns)


# --------------------------------------------------------------------------- dashboard


def test_dashboard_template_variables() -> None:
    dashboard = _dashboard()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("job", "instance"):
        var = variables[name]
        query = var["query"] if isinstance(var["query"], str) else var["query"]["query"]
        assert var["type"] == "query" and query.startswith("label_values("), name
        assert var["datasource"]["uid"] == "${datasource}"
    assert "$job" in variables["instance"]["definition"]


def test_dashboard_panels_have_targets_on_the_datasource_variable() -> None:
    dashboard = _dashboard()
    panels = _panels(dashboard)
    assert panels
    ids = [p["id"] for p in dashboard["panels"]]
    ids += [p["id"] for row in dashboard["panels"] for p in row.get("panels", [])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        assert panel.get("targets"), f"panel {panel['title']!r} has no query"
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_dashboard_panels_do_not_overlap() -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in _dashboard()["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]


def test_dashboard_queries_use_only_worker_metrics_filtered_by_job_and_instance() -> None:
    used: set[str] = set()
    for where, expr in _dashboard_queries():
        names = _metric_names(expr)
        assert names, f"{where}: no metric found in {expr!r}"
        assert names <= ALLOWED_METRICS, f"{where}: unknown metrics {names - ALLOWED_METRICS} in {expr!r}"
        used |= names
        for name in names:
            for matchers in _selectors(expr, name):
                assert matchers is not None, f"{where}: {name} without label matchers in {expr!r}"
                assert 'job=~"$job"' in matchers and 'instance=~"$instance"' in matchers, (
                    f"{where}: {name}{{{matchers}}} is not filtered by $job and $instance"
                )
    shown = {re.sub(r"_(bucket|sum|count)$", "", name) for name in used}
    missing = (set(SIMPLE_METRICS) | set(HISTOGRAMS)) - shown
    assert not missing, f"no panel shows {sorted(missing)}"


def test_metric_name_tokenizer() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le) (rate(a_bucket{job=~"$job", x="y z"}[5m]))) '
        '> on () group_left () b:c and deriv(d[10m]) > 1e-9 unless absent(up{job="j"}) offset 5m'
    )
    assert _metric_names(expr) == {"a_bucket", "b:c", "d", "up"}
    assert _selectors(expr, "up") == ['job="j"']
    assert _selectors("rate(x[1m]) + x_total", "x") == [None]


# --------------------------------------------------------------------------- Prometheus


@pytest.mark.parametrize("config", ["prometheus-local.yml", "prometheus.yml"])
def test_promtool_check_config(config: str) -> None:
    result = _run_promtool("check", "config", Path("deploy/prometheus") / config)
    assert "1 rule files found" in result.stdout  # alerts.yml found relative to the config file


def test_prometheus_configs_scrape_the_worker() -> None:
    expected = {"prometheus-local.yml": "127.0.0.1:9108", "prometheus.yml": "worker:9108"}
    for config, target in expected.items():
        data = _load_yaml(PROMETHEUS_DIR / config)
        (job,) = data["scrape_configs"]
        assert job["job_name"] == "streamrec"
        assert [t for sc in job["static_configs"] for t in sc["targets"]] == [target]
        assert data["rule_files"] == ["alerts.yml"]
    assert _load_yaml(PROMETHEUS_DIR / "prometheus-local.yml")["global"]["scrape_interval"] in {"1s", "2s", "5s"}


def test_promtool_check_rules() -> None:
    _run_promtool("check", "rules", ALERTS)


def test_alert_rules_are_complete() -> None:
    alerts = _alerts()
    names = {a["alert"] for a in alerts}
    assert {
        "StreamrecWorkerDown",
        "StreamrecWorkerAbsent",
        "StreamrecNoRecommendations",
        "StreamrecLatencyAboveSLO",
        "StreamrecConsumerLagGrowing",
        "StreamrecDeadLetterRateHigh",
    } <= names
    for alert in alerts:
        assert re.fullmatch(r"\d+[smh]", str(alert.get("for", ""))), f"{alert['alert']}: no for:"
        assert alert["labels"]["severity"] in {"critical", "warning"}, alert["alert"]
        assert alert["annotations"]["summary"] and alert["annotations"]["description"], alert["alert"]
    slo = [r for r in _rules() if r.get("record") == "streamrec:latency_slo_seconds"]
    assert len(slo) == 1
    latency = next(a for a in alerts if a["alert"] == "StreamrecLatencyAboveSLO")
    assert "streamrec:latency_slo_seconds" in latency["expr"]


def test_alert_rules_use_only_worker_metrics() -> None:
    recorded = {r["record"] for r in _rules() if "record" in r}
    for rule in _rules():
        names = _metric_names(rule["expr"])
        unknown = names - ALLOWED_METRICS - recorded
        assert not unknown, f"{rule.get('alert') or rule.get('record')}: unknown metrics {unknown}"
        for name in names & ALLOWED_METRICS:
            for matchers in _selectors(rule["expr"], name):
                assert matchers and 'job="streamrec"' in matchers, f'{name} without job="streamrec"'


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    rules = [
        {"record": f"dashboard:query_{i}", "expr": _substitute_grafana_variables(expr)}
        for i, (_, expr) in enumerate(_dashboard_queries())
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}, indent=1))
    _run_promtool("check", "rules", path)


def test_dashboard_queries_return_numbers_for_a_busy_worker(tmp_path: Path) -> None:
    """Each query, on series shaped like a busy worker's, returns at least one non-NaN sample."""
    queries = _dashboard_queries()
    rules = [
        {"alert": f"DashboardQuery{i}Empty", "expr": f"absent(({e}) == ({e}))"}
        for i, (_, expr) in enumerate(queries)
        for e in [_substitute_grafana_variables(expr)]
    ]
    (tmp_path / "dashboard_alerts.yml").write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    test = {
        "rule_files": ["dashboard_alerts.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "15s",
                "input_series": _healthy_worker_series(80),
                "alert_rule_test": [
                    {"eval_time": "15m", "alertname": rule["alert"], "exp_alerts": []} for rule in rules
                ],
            }
        ],
    }
    (tmp_path / "dashboard_test.yml").write_text(json.dumps(test, indent=1))
    result = subprocess.run(
        [_promtool(), "test", "rules", "dashboard_test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    names = {f"DashboardQuery{i}Empty": where for i, (where, _) in enumerate(queries)}
    output = result.stdout + result.stderr
    empty = sorted(where for alert, where in names.items() if f"alertname: {alert}," in output)
    assert result.returncode == 0, f"queries without data: {empty}\n{result.stdout}\n{result.stderr}"


def _alert_test(
    series: list[dict[str, str]], eval_time: str, fired: dict[str, list[dict[str, str]]], interval: str = "1m"
) -> dict[str, Any]:
    """One promtool test case: `fired` maps every alert to the label sets expected at eval_time."""
    return {
        "interval": interval,
        "input_series": series,
        "alert_rule_test": [
            {
                "eval_time": eval_time,
                "alertname": name,
                "exp_alerts": [{"exp_labels": labels} for labels in fired.get(name, [])],
            }
            for name in (a["alert"] for a in _alerts())
        ],
    }


def _latency_series(slow: bool, n: int = 40) -> list[dict[str, str]]:
    buckets = (
        {"0.1": f"0+0x{n}", "1": f"0+0x{n}", "2.5": f"0+600x{n}", "+Inf": f"0+600x{n}"}
        if slow
        else {"0.1": f"0+600x{n}", "1": f"0+600x{n}", "2.5": f"0+600x{n}", "+Inf": f"0+600x{n}"}
    )
    return _histogram("streamrec_event_to_recommendation_seconds", buckets, f"0+600x{n}", f"0+60x{n}")


def test_alerts_fire_when_they_should(tmp_path: Path) -> None:
    """Alert expressions, `for:` and labels, evaluated by promtool on one scenario per alert.

    Annotations are dropped from the copy under test (promtool compares them verbatim;
    `promtool check rules` already parses their templates).
    """
    rules = _load_yaml(ALERTS)
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "alerts.yml").write_text(json.dumps(rules))

    job = {"job": "streamrec"}
    w1 = {**job, "instance": "w1:9108"}
    busy = _healthy_worker_series(40)
    steady = [s for s in busy if "streamrec_event_to_recommendation_seconds" not in s["series"]]
    cases = [
        # A busy, healthy worker (lag high but steady, a few dead letters, a successful swap).
        _alert_test(busy, "30m", {}),
        _alert_test([_series("1+0x5 0+0x20", "up")], "10m", {"StreamrecWorkerDown": [{**w1, "severity": "critical"}]}),
        _alert_test(
            [_series("1+0x20", "up", job="other")], "10m", {"StreamrecWorkerAbsent": [{**job, "severity": "critical"}]}
        ),
        _alert_test(
            [
                _series("1+0x30", "up"),
                _series("0+600x30", "streamrec_events_total", event_type="view"),
                _series("0+0x30", "streamrec_recommendations_total"),
            ],
            "15m",
            {"StreamrecNoRecommendations": [{**w1, "severity": "critical"}]},
        ),
        _alert_test(
            steady + _latency_series(slow=True), "25m", {"StreamrecLatencyAboveSLO": [{**job, "severity": "warning"}]}
        ),
        _alert_test(steady + _latency_series(slow=False), "25m", {}),
        _alert_test(
            [
                _series("1+0x40", "up"),
                _series("0+300x40", "streamrec_consumer_lag_messages", topic="events", partition="0"),
                _series("0+300x40", "streamrec_consumer_lag_messages", topic="events", partition="1"),
            ],
            "20m",
            {"StreamrecConsumerLagGrowing": [{**job, "topic": "events", "severity": "warning"}]},
        ),
        _alert_test(
            [
                _series("1+0x40", "up"),
                _series("0+60x40", "streamrec_events_total", event_type="view"),
                _series("0+60x40", "streamrec_recommendations_total"),
                _series("0+30x40", "streamrec_events_invalid_total", reason="not_json"),
            ],
            "20m",
            {"StreamrecDeadLetterRateHigh": [{**job, "severity": "warning"}]},
        ),
        # Every event invalid and no valid-event series at all: still a dead-letter alert.
        _alert_test(
            [_series("1+0x40", "up"), _series("0+60x40", "streamrec_events_invalid_total", reason="bad_field")],
            "20m",
            {"StreamrecDeadLetterRateHigh": [{**job, "severity": "warning"}]},
        ),
        _alert_test(
            [_series("1+0x30", "up"), _series("0+0x10 1+0x20", "streamrec_model_swaps_total", outcome="rejected")],
            "13m",
            {"StreamrecModelSwapRejected": [{**w1, "severity": "warning"}]},
        ),
        _alert_test(
            [_series("1+0x30", "up"), _series("0+0x10 1+0x20", "streamrec_events_invalid_total", reason="internal_error")],
            "13m",
            {"StreamrecInternalErrors": [{**w1, "severity": "warning"}]},
        ),
        # Three restarts (counter resets) within 30 minutes: a crash loop; one restart is not.
        _alert_test(
            [_series("1+0x40", "up"), _series("0+50x5 0+50x5 0+50x5 0+50x5 0+50x16", "streamrec_recommendations_total")],
            "22m",
            {"StreamrecWorkerRestarting": [{**w1, "severity": "critical"}]},
        ),
        _alert_test(
            [_series("1+0x40", "up"), _series("0+50x10 0+50x30", "streamrec_recommendations_total")], "30m", {}
        ),
    ]
    test = {"rule_files": ["alerts.yml"], "evaluation_interval": "1m", "tests": cases}
    (tmp_path / "alerts_test.yml").write_text(json.dumps(test, indent=1))
    result = subprocess.run(
        [_promtool(), "test", "rules", "alerts_test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
