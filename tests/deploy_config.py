"""The deployment files under test (compose, Dockerfile, Prometheus, Grafana) and promtool helpers."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
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
    "streamrec_batch_seconds",
    "streamrec_batch_size",
    "streamrec_shadow_inference_seconds",
    "streamrec_catalog_update_seconds",
    "streamrec_item_recommendable_seconds",
)
SIMPLE_METRICS = (
    "streamrec_events_total",
    "streamrec_events_invalid_total",
    "streamrec_events_refetched_total",
    "streamrec_recovery_reseeks_total",
    "streamrec_recommendations_total",
    "streamrec_users_tracked",
    "streamrec_model_info",
    "streamrec_model_swaps_total",
    "streamrec_consumer_lag_messages",
    "streamrec_online_graded_total",
    "streamrec_online_hits_total",
    "streamrec_online_ndcg_total",
    "streamrec_online_reciprocal_rank_total",
    "streamrec_catalog_items",
    "streamrec_catalog_updates_total",
    "streamrec_catalog_invalid_total",
    "streamrec_catalog_items_embedded_total",
    "streamrec_new_item_share",
    "streamrec_new_item_temperature",
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

PROMQL_KEYWORDS = frozenset(
    [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "offset",
        "and",
        "or",
        "unless",
        "inf",
        "nan",
        "atan2",
    ]
)
IDENT = re.compile(r"(?<![\w.:$])[A-Za-z_:][A-Za-z0-9_:]*")


# --------------------------------------------------------------------------- helpers


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def read_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def dashboard_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """All panels that show data (rows excluded), including panels nested in collapsed rows."""
    out = []
    for panel in dashboard["panels"]:
        if panel.get("type") == "row":
            out.extend(panel.get("panels", []))
        else:
            out.append(panel)
    return out


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title / refId, expr) for every target of the dashboard."""
    return [
        (f"{panel['title']} / {target.get('refId', '?')}", target["expr"])
        for panel in dashboard_panels(read_dashboard())
        for target in panel.get("targets", [])
    ]


def metric_names(expr: str) -> set[str]:
    """Names of the series an expression selects (a small PromQL tokenizer, enough for our rules)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range / subquery windows
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in IDENT.finditer(text):
        if text[match.end() :].lstrip().startswith("("):
            continue  # a function or an aggregation
        if match.group().lower() in PROMQL_KEYWORDS:
            continue
        names.add(match.group())
    return names


def selectors(expr: str, metric: str) -> list[str | None]:
    """Label-matcher text of every selector of `metric` in `expr` (None when it has no braces)."""
    out: list[str | None] = []
    for match in re.finditer(rf"(?<![\w:]){re.escape(metric)}(?![\w:])", expr):
        rest = expr[match.end() :]
        braces = re.match(r"\s*\{([^}]*)\}", rest)
        out.append(braces.group(1) if braces else None)
    return out


def substitute_grafana_variables(expr: str) -> str:
    def repl(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in GRAFANA_VARIABLES, f"unknown Grafana variable ${name} in {expr!r}"
        return GRAFANA_VARIABLES[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", repl, expr)


def rule_list(path: Path = ALERTS) -> list[dict[str, Any]]:
    return [rule for group in load_yaml(path)["groups"] for rule in group["rules"]]


def alert_rules() -> list[dict[str, Any]]:
    return [rule for rule in rule_list() if "alert" in rule]


def promtool() -> str:
    """Path of promtool; a missing promtool fails the test (CI installs it), it is never skipped."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool not found on PATH: install the Debian package `prometheus` "
            "(apt-get install -y --no-install-recommends prometheus), which ships /usr/bin/promtool"
        )
    return path


def run_promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [promtool(), *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, (
        f"promtool {' '.join(map(str, args))} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    )
    return result


def sample_series(values: str, metric: str, **labels: str) -> dict[str, str]:
    label_text = ", ".join(f'{k}="{v}"' for k, v in {"job": "streamrec", "instance": "w1:9108", **labels}.items())
    return {"series": f"{metric}{{{label_text}}}", "values": values}


def histogram_series(name: str, buckets: dict[str, str], total: str, total_sum: str) -> list[dict[str, str]]:
    return [
        *(sample_series(values, f"{name}_bucket", le=le) for le, values in buckets.items()),
        sample_series(total, f"{name}_count"),
        sample_series(total_sum, f"{name}_sum"),
    ]


def online_series(role: str, model: str, graded: str, ndcg10: str, hits10: str) -> list[dict[str, str]]:
    """The online-grading counters of one model (one event type): graded events, NDCG@10 and hit@10 sums (the
    reciprocal-rank sum follows NDCG@10's)."""
    labels = {"role": role, "model": model, "event_type": "view"}
    return [
        sample_series(graded, "streamrec_online_graded_total", **labels),
        sample_series(ndcg10, "streamrec_online_ndcg_total", **labels, k="10"),
        sample_series(hits10, "streamrec_online_hits_total", **labels, k="10"),
        sample_series(ndcg10, "streamrec_online_reciprocal_rank_total", **labels),
    ]


def healthy_worker_series(samples: int) -> list[dict[str, str]]:
    """Series of one busy, healthy worker: `samples` + 1 samples each (promtool's `a+bxN` notation)."""
    n = str(samples)
    series = [
        sample_series(f"1+0x{n}", "up"),
        sample_series(f"0+600x{n}", "streamrec_events_total", event_type="view"),
        sample_series(f"0+120x{n}", "streamrec_events_total", event_type="click"),
        sample_series(f"0+30x{n}", "streamrec_events_total", event_type="add_to_cart"),
        sample_series(f"0+6x{n}", "streamrec_events_total", event_type="purchase"),
        sample_series(f"0+1x{n}", "streamrec_events_invalid_total", reason="not_json"),
        sample_series(f"0+0x{n}", "streamrec_events_invalid_total", reason="missing_field"),
        sample_series(f"0+0x{n}", "streamrec_events_invalid_total", reason="internal_error"),
        sample_series(f"0+0x{n}", "streamrec_events_refetched_total"),
        sample_series(f"0+0x{n}", "streamrec_recovery_reseeks_total"),
        sample_series(f"0+700x{n}", "streamrec_recommendations_total"),
        sample_series(f"100+10x{n}", "streamrec_users_tracked"),
        sample_series(f"1+0x{n}", "streamrec_model_info", version="20261123T160512Z-3fa9c1"),
        sample_series(f"0+0x{n}", "streamrec_model_swaps_total", outcome="rejected"),
        sample_series(f"0+0x5 1+0x{samples - 6}", "streamrec_model_swaps_total", outcome="swapped"),
        # Behind by 5000 messages, but not growing: no lag alert.
        sample_series(f"2500+0x{n}", "streamrec_consumer_lag_messages", topic="events", partition="0"),
        sample_series(f"2500+0x{n}", "streamrec_consumer_lag_messages", topic="events", partition="1"),
    ]
    for role, model, ndcg, hits in (("live", "v1", 24, 40), ("shadow", "v2", 27, 44)):  # of 100 graded per step
        series += online_series(role, model, f"0+100x{n}", f"0+{ndcg}x{n}", f"0+{hits}x{n}")
    series += [
        sample_series(f"300+0x{n}", "streamrec_catalog_items", scenario="shop", available="true"),
        sample_series(f"12+0x{n}", "streamrec_catalog_items", scenario="shop", available="false"),
        sample_series(f"0+5x{n}", "streamrec_catalog_updates_total"),
        sample_series(f"0+1x{n}", "streamrec_catalog_invalid_total", reason="bad_field"),
        sample_series(f"0.05+0x{n}", "streamrec_new_item_share"),
        sample_series(f"1.25+0x{n}", "streamrec_new_item_temperature"),
        # 2 new items per step, each embedded for the live and the shadow model; recommendable within a second.
        sample_series(f"0+4x{n}", "streamrec_catalog_items_embedded_total"),
    ]
    series += histogram_series(
        "streamrec_item_recommendable_seconds",
        {"0.1": f"0+0x{n}", "0.25": f"0+1x{n}", "0.5": f"0+2x{n}", "1.0": f"0+2x{n}", "+Inf": f"0+2x{n}"},
        f"0+2x{n}",
        f"0+0.6x{n}",
    )
    series += histogram_series(
        "streamrec_catalog_update_seconds",
        {"0.1": f"0+3x{n}", "1.0": f"0+5x{n}", "+Inf": f"0+5x{n}"},
        f"0+5x{n}",
        f"0+0.5x{n}",
    )
    series += histogram_series(
        "streamrec_shadow_inference_seconds",
        {"0.001": f"0+5x{n}", "0.0025": f"0+50x{n}", "0.005": f"0+60x{n}", "+Inf": f"0+60x{n}"},
        f"0+60x{n}",
        f"0+0.1x{n}",
    )
    series += histogram_series(
        "streamrec_event_to_recommendation_seconds",
        {"0.01": f"0+400x{n}", "0.025": f"0+650x{n}", "0.05": f"0+700x{n}", "0.1": f"0+700x{n}", "+Inf": f"0+700x{n}"},
        f"0+700x{n}",
        f"0+9x{n}",
    )
    series += histogram_series(
        "streamrec_inference_seconds",
        {"0.001": f"0+10x{n}", "0.0025": f"0+55x{n}", "0.005": f"0+60x{n}", "+Inf": f"0+60x{n}"},
        f"0+60x{n}",
        f"0+0.09x{n}",
    )
    series += histogram_series(
        "streamrec_batch_seconds",
        {"0.005": f"0+20x{n}", "0.01": f"0+55x{n}", "0.025": f"0+60x{n}", "+Inf": f"0+60x{n}"},
        f"0+60x{n}",
        f"0+0.5x{n}",
    )
    series += histogram_series(
        "streamrec_batch_size",
        {str(2**i): f"0+{min(60, 4 * i)}x{n}" for i in range(11)} | {"+Inf": f"0+60x{n}"},
        f"0+60x{n}",
        f"0+700x{n}",
    )
    return series


# --------------------------------------------------------------------------- compose


def resolve_compose_default(value: str) -> str:
    """`${VAR:-default}` -> default (what compose uses when VAR is unset)."""
    return re.sub(r"\$\{\w+(?::?-([^}]*))?\}", lambda m: m.group(1) or "", value)


def service_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source (named volume or host path, defaults resolved) of a service."""
    mounts = {}
    for volume in service.get("volumes", []):
        assert isinstance(volume, str), f"use the short volume syntax ({volume!r})"
        source, target, *_ = resolve_compose_default(volume).split(":")
        mounts[target] = source
    return mounts


@pytest.mark.parametrize("config", ["prometheus-local.yml", "prometheus.yml"])
def alert_test(
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
            for name in (a["alert"] for a in alert_rules())
        ],
    }


def latency_series(slow: bool, n: int = 40) -> list[dict[str, str]]:
    buckets = (
        {"0.1": f"0+0x{n}", "1": f"0+0x{n}", "2.5": f"0+600x{n}", "+Inf": f"0+600x{n}"}
        if slow
        else {"0.1": f"0+600x{n}", "1": f"0+600x{n}", "2.5": f"0+600x{n}", "+Inf": f"0+600x{n}"}
    )
    return histogram_series("streamrec_event_to_recommendation_seconds", buckets, f"0+600x{n}", f"0+60x{n}")
