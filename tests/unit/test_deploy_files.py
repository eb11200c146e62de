"""Deployment files, checked statically: compose, Dockerfile, dashboard, alert rules (no tools needed)."""

from __future__ import annotations

import re

import pytest

from tests.deploy_config import (
    ALLOWED_METRICS,
    COMPOSE,
    DEPLOY,
    DOCKERFILE,
    DOCKERIGNORE,
    GRAFANA_DASHBOARDS,
    GRAFANA_DATASOURCE,
    HISTOGRAMS,
    PROMETHEUS_DIR,
    ROOT,
    SIMPLE_METRICS,
    alert_rules,
    dashboard_panels,
    dashboard_queries,
    load_yaml,
    metric_names,
    read_dashboard,
    resolve_compose_default,
    rule_list,
    selectors,
    service_mounts,
)


def test_compose_parses_and_has_the_services() -> None:
    compose = load_yaml(COMPOSE)
    services = compose["services"]
    assert {"kafka", "worker", "prometheus", "grafana", "producer", "trainer"} <= set(services)
    assert resolve_compose_default(services["kafka"]["image"]).startswith("apache/kafka:4.")
    assert "controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]


def test_compose_build_contexts_and_dockerfiles_exist() -> None:
    services = load_yaml(COMPOSE)["services"]
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
    compose = load_yaml(COMPOSE)
    declared = set(compose.get("volumes") or {})
    for name, svc in compose["services"].items():
        for source in service_mounts(svc).values():
            if source.startswith("./"):  # files of this repository: must be there
                assert (DEPLOY / source).exists(), f"{name}: bind mount {source} does not exist"
            elif source.startswith(("/", "../", "~")):
                pytest.fail(f"{name}: bind mount {source!r} outside deploy/ must not be a default")
            else:
                assert source in declared, f"{name}: volume {source!r} is not declared under volumes:"


def test_compose_worker_environment_and_model_mount() -> None:
    worker = load_yaml(COMPOSE)["services"]["worker"]
    env = worker["environment"]
    assert env["STREAMREC_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert env["STREAMREC_MODEL_DIR"] == "/models"
    assert str(env["STREAMREC_METRICS_PORT"]) == "9108"
    assert service_mounts(worker)["/models"] == "models"
    assert worker["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_compose_prometheus_and_grafana_mounts() -> None:
    services = load_yaml(COMPOSE)["services"]
    prom_mounts = service_mounts(services["prometheus"])
    assert prom_mounts["/etc/prometheus/prometheus.yml"] == "./prometheus/prometheus.yml"
    assert prom_mounts["/etc/prometheus/alerts.yml"] == "./prometheus/alerts.yml"

    grafana = services["grafana"]
    env = grafana["environment"]
    assert resolve_compose_default(str(env["GF_AUTH_ANONYMOUS_ENABLED"])) == "false"
    assert env["GF_SECURITY_ADMIN_PASSWORD"].startswith("${"), "admin password must come from the environment"
    mounts = service_mounts(grafana)
    assert mounts["/etc/grafana/provisioning"] == "./grafana/provisioning"
    dashboards_path = load_yaml(GRAFANA_DASHBOARDS)["providers"][0]["options"]["path"]
    assert mounts[dashboards_path] == "./grafana/dashboards"


def test_grafana_datasource_points_at_compose_prometheus() -> None:
    (source,) = load_yaml(GRAFANA_DATASOURCE)["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    scrape = load_yaml(PROMETHEUS_DIR / "prometheus.yml")["global"]["scrape_interval"]
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
    dashboard = read_dashboard()
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
    dashboard = read_dashboard()
    panels = dashboard_panels(dashboard)
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
    for panel in read_dashboard()["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]


def test_dashboard_queries_use_only_worker_metrics_filtered_by_job_and_instance() -> None:
    used: set[str] = set()
    for where, expr in dashboard_queries():
        names = metric_names(expr)
        assert names, f"{where}: no metric found in {expr!r}"
        assert names <= ALLOWED_METRICS, f"{where}: unknown metrics {names - ALLOWED_METRICS} in {expr!r}"
        used |= names
        for name in names:
            for matchers in selectors(expr, name):
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
    assert metric_names(expr) == {"a_bucket", "b:c", "d", "up"}
    assert selectors(expr, "up") == ['job="j"']
    assert selectors("rate(x[1m]) + x_total", "x") == [None]


# --------------------------------------------------------------------------- Prometheus


def test_prometheus_configs_scrape_the_worker() -> None:
    expected = {"prometheus-local.yml": "127.0.0.1:9108", "prometheus.yml": "worker:9108"}
    for config, target in expected.items():
        data = load_yaml(PROMETHEUS_DIR / config)
        (job,) = data["scrape_configs"]
        assert job["job_name"] == "streamrec"
        assert [t for sc in job["static_configs"] for t in sc["targets"]] == [target]
        assert data["rule_files"] == ["alerts.yml"]
    assert load_yaml(PROMETHEUS_DIR / "prometheus-local.yml")["global"]["scrape_interval"] in {"1s", "2s", "5s"}


def test_alert_rules_are_complete() -> None:
    alerts = alert_rules()
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
    slo = [r for r in rule_list() if r.get("record") == "streamrec:latency_slo_seconds"]
    assert len(slo) == 1
    latency = next(a for a in alerts if a["alert"] == "StreamrecLatencyAboveSLO")
    assert "streamrec:latency_slo_seconds" in latency["expr"]


def test_alert_rules_use_only_worker_metrics() -> None:
    recorded = {r["record"] for r in rule_list() if "record" in r}
    for rule in rule_list():
        names = metric_names(rule["expr"])
        unknown = names - ALLOWED_METRICS - recorded
        assert not unknown, f"{rule.get('alert') or rule.get('record')}: unknown metrics {unknown}"
        for name in names & ALLOWED_METRICS:
            for matchers in selectors(rule["expr"], name):
                assert matchers and 'job="streamrec"' in matchers, f'{name} without job="streamrec"'
