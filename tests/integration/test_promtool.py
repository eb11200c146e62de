"""Deployment files checked by promtool (Debian package `prometheus`): configs, rules, queries, alerts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.deploy_config import (
    ALERTS,
    alert_test,
    dashboard_queries,
    healthy_worker_series,
    latency_series,
    load_yaml,
    online_series,
    promtool,
    run_promtool,
    sample_series,
    substitute_grafana_variables,
)

pytestmark = pytest.mark.prometheus


@pytest.mark.parametrize("config", ["prometheus-local.yml", "prometheus.yml"])
def test_promtool_check_config(config: str) -> None:
    result = run_promtool("check", "config", Path("deploy/prometheus") / config)
    assert "1 rule files found" in result.stdout  # alerts.yml found relative to the config file


def test_promtool_check_rules() -> None:
    run_promtool("check", "rules", ALERTS)


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    rules = [
        {"record": f"dashboard:query_{i}", "expr": substitute_grafana_variables(expr)}
        for i, (_, expr) in enumerate(dashboard_queries())
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}, indent=1))
    run_promtool("check", "rules", path)


def test_dashboard_queries_return_numbers_for_a_busy_worker(tmp_path: Path) -> None:
    """Each query, on series shaped like a busy worker's, returns at least one non-NaN sample."""
    queries = dashboard_queries()
    rules = [
        {"alert": f"DashboardQuery{i}Empty", "expr": f"absent(({e}) == ({e}))"}
        for i, (_, expr) in enumerate(queries)
        for e in [substitute_grafana_variables(expr)]
    ]
    (tmp_path / "dashboard_alerts.yml").write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    test = {
        "rule_files": ["dashboard_alerts.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "15s",
                "input_series": healthy_worker_series(80),
                "alert_rule_test": [
                    {"eval_time": "15m", "alertname": rule["alert"], "exp_alerts": []} for rule in rules
                ],
            }
        ],
    }
    (tmp_path / "dashboard_test.yml").write_text(json.dumps(test, indent=1))
    result = subprocess.run(
        [promtool(), "test", "rules", "dashboard_test.yml"],
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


def test_alerts_fire_when_they_should(tmp_path: Path) -> None:
    """Alert expressions, `for:` and labels, evaluated by promtool on one scenario per alert.

    Annotations are dropped from the copy under test (promtool compares them verbatim;
    `promtool check rules` already parses their templates).
    """
    rules = load_yaml(ALERTS)
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "alerts.yml").write_text(json.dumps(rules))

    job = {"job": "streamrec"}
    w1 = {**job, "instance": "w1:9108"}
    busy = healthy_worker_series(40)
    steady = [s for s in busy if "streamrec_event_to_recommendation_seconds" not in s["series"]]
    cases = [
        # A busy, healthy worker (lag high but steady, a few dead letters, a successful swap).
        alert_test(busy, "30m", {}),
        alert_test(
            [sample_series("1+0x5 0+0x20", "up")], "10m", {"StreamrecWorkerDown": [{**w1, "severity": "critical"}]}
        ),
        alert_test(
            [sample_series("1+0x20", "up", job="other")],
            "10m",
            {"StreamrecWorkerAbsent": [{**job, "severity": "critical"}]},
        ),
        alert_test(
            [
                sample_series("1+0x30", "up"),
                sample_series("0+600x30", "streamrec_events_total", event_type="view"),
                sample_series("0+0x30", "streamrec_recommendations_total"),
            ],
            "15m",
            {"StreamrecNoRecommendations": [{**w1, "severity": "critical"}]},
        ),
        alert_test(
            steady + latency_series(slow=True), "25m", {"StreamrecLatencyAboveSLO": [{**job, "severity": "warning"}]}
        ),
        alert_test(steady + latency_series(slow=False), "25m", {}),
        alert_test(
            [
                sample_series("1+0x40", "up"),
                sample_series("0+300x40", "streamrec_consumer_lag_messages", topic="events", partition="0"),
                sample_series("0+300x40", "streamrec_consumer_lag_messages", topic="events", partition="1"),
            ],
            "20m",
            {"StreamrecConsumerLagGrowing": [{**job, "topic": "events", "severity": "warning"}]},
        ),
        alert_test(
            [
                sample_series("1+0x40", "up"),
                sample_series("0+60x40", "streamrec_events_total", event_type="view"),
                sample_series("0+60x40", "streamrec_recommendations_total"),
                sample_series("0+30x40", "streamrec_events_invalid_total", reason="not_json"),
            ],
            "20m",
            {"StreamrecDeadLetterRateHigh": [{**job, "severity": "warning"}]},
        ),
        # Every event invalid and no valid-event series at all: still a dead-letter alert.
        alert_test(
            [
                sample_series("1+0x40", "up"),
                sample_series("0+60x40", "streamrec_events_invalid_total", reason="bad_field"),
            ],
            "20m",
            {"StreamrecDeadLetterRateHigh": [{**job, "severity": "warning"}]},
        ),
        alert_test(
            [
                sample_series("1+0x30", "up"),
                sample_series("0+0x10 1+0x20", "streamrec_model_swaps_total", outcome="rejected"),
            ],
            "13m",
            {"StreamrecModelSwapRejected": [{**w1, "severity": "warning"}]},
        ),
        alert_test(
            [
                sample_series("1+0x30", "up"),
                sample_series("0+0x10 1+0x20", "streamrec_events_invalid_total", reason="internal_error"),
            ],
            "13m",
            {"StreamrecInternalErrors": [{**w1, "severity": "warning"}]},
        ),
        # Three restarts (counter resets) within 30 minutes: a crash loop; one restart is not.
        alert_test(
            [
                sample_series("1+0x40", "up"),
                sample_series("0+50x5 0+50x5 0+50x5 0+50x5 0+50x16", "streamrec_recommendations_total"),
            ],
            "22m",
            {"StreamrecWorkerRestarting": [{**w1, "severity": "critical"}]},
        ),
        alert_test(
            [sample_series("1+0x40", "up"), sample_series("0+50x10 0+50x30", "streamrec_recommendations_total")],
            "30m",
            {},
        ),
        # Live online NDCG@10 0.3 for a day, then 0.1 for two hours (10-minute steps of 600 graded events):
        # below 80% of the trailing day for over 30 minutes. Without the drop: quiet.
        alert_test(
            [
                sample_series("1+0x156", "up"),
                *online_series("live", "v1", "0+600x156", "0+180x144 25980+60x11", "0+300x156"),
            ],
            "26h",
            {"StreamrecOnlineQualityDrop": [{**job, "severity": "warning"}]},
            interval="10m",
        ),
        alert_test(
            [sample_series("1+0x156", "up"), *online_series("live", "v1", "0+600x156", "0+180x156", "0+300x156")],
            "26h",
            {},
            interval="10m",
        ),
    ]
    test = {"rule_files": ["alerts.yml"], "evaluation_interval": "1m", "tests": cases}
    (tmp_path / "alerts_test.yml").write_text(json.dumps(test, indent=1))
    result = subprocess.run(
        [promtool(), "test", "rules", "alerts_test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
