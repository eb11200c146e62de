"""A real Prometheus server scraping a real worker that processes events from the real Kafka broker.

Every panel query of the Grafana dashboard (and its PromQL template variables) must return data
through the Prometheus HTTP API, and every rule of deploy/prometheus/alerts.yml must be loaded,
evaluated and healthy. The static PromQL checks (promtool) live in tests/unit/test_deploy_files.py.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import quote, urlencode
from urllib.request import urlopen

import pytest
import yaml
from kafka import KafkaProducer

from streams.tools.worker_process import free_port, metric_value
from tests.conftest import ROOT, wait_until

pytestmark = [pytest.mark.prometheus, pytest.mark.kafka]

DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "streamrec.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
PROMETHEUS_SH = ROOT / "deploy" / "local" / "prometheus.sh"

# Grafana's variables as docs/operations.md says to substitute them outside Grafana. `$__rate_interval`
# is 1m: at least four scrape intervals, and with a 1 s scrape interval a window of ~60 samples.
VARIABLES = {"job": "streamrec", "instance": ".*", "__rate_interval": "1m", "__interval": "15s", "__range": "1h"}
_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?P<selector>.+?)\s*,\s*(?P<label>\w+)\s*\)\s*$", re.S)
NEVER = "0001-01-01T00:00:00Z"  # lastEvaluation of a rule that has not been evaluated yet

EVENT_TYPES = ("view", "click", "add_to_cart", "purchase")
INVALID = [  # dead letters for several reasons (not JSON, not an object, missing field, unknown type, bad field)
    b"not json at all",
    b"[1, 2, 3]",
    json.dumps({"item_id": "i1", "event_type": "click", "ts": 1}).encode(),  # missing user_id
    json.dumps({"user_id": "bad", "item_id": "i1", "event_type": "teleport", "ts": 1}).encode(),
    json.dumps({"user_id": "bad", "item_id": "i1", "event_type": "click", "ts": "last tuesday"}).encode(),
]
INVALID_KEY = b"bad"

DEADLINE_S = 60  # for panels and rules to have data once Prometheus runs


def substitute(expr: str) -> str:
    def repl(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        if name not in VARIABLES:
            raise AssertionError(f"dashboard query uses an unknown variable ${name}: {expr}")
        return VARIABLES[name]

    return _VARIABLE.sub(repl, expr)


def _panels(panels: list[dict]):
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # panels inside collapsed rows


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panel_queries() -> list[tuple[str, str]]:
    """(label for messages, PromQL with variables substituted) for every target of every panel."""
    queries = []
    for panel in _panels(dashboard()["panels"]):
        for target in panel.get("targets", []):
            if target.get("expr"):
                label = f"panel {panel.get('title')!r} target {target.get('refId')}"
                queries.append((label, substitute(target["expr"])))
    assert queries, f"no panel queries found in {DASHBOARD}"
    return queries


def variable_queries() -> list[tuple[str, str, str]]:
    """(variable name, series selector, label) of every `label_values(selector, label)` template variable."""
    found = []
    for variable in dashboard().get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        query = query.get("query") if isinstance(query, dict) else query
        match = _LABEL_VALUES.match(query or "")
        assert match, f"variable {variable['name']}: not a label_values() query, teach this test: {query!r}"
        found.append((variable["name"], substitute(match["selector"]), match["label"]))
    return found


def alert_rules() -> dict[str, list[str]]:
    """Group name -> names of its rules (record or alert), from alerts.yml."""
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return {g["name"]: [r.get("alert") or r["record"] for r in g["rules"]] for g in groups}


def recording_rules() -> list[str]:
    return [r["record"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"] if "record" in r]


class Prometheus:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str, **params: str) -> dict:
        url = f"{self.base}{path}" + (f"?{urlencode(params)}" if params else "")
        with urlopen(url, timeout=10) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", f"GET {url}: {body}"
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        data = self.get("/api/v1/query", query=expr)
        assert data["resultType"] == "vector", f"{expr}: resultType {data['resultType']}"
        return data["result"]


@contextlib.contextmanager
def running_prometheus(work: Path, scrape_port: int):
    """The real server (deploy/local/prometheus.sh) in its own var dir and port, scraping the worker."""
    port = free_port()
    config = work / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(ALERTS)],
                "scrape_configs": [
                    {"job_name": "streamrec", "static_configs": [{"targets": [f"127.0.0.1:{scrape_port}"]}]}
                ],
            }
        )
    )
    env = {**os.environ, "STREAMREC_VAR_DIR": str(work / "var"), "PROMETHEUS_PORT": str(port)}
    try:
        started = subprocess.run(
            ["bash", str(PROMETHEUS_SH), "start", "--config", str(config), "--port", str(port)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert started.returncode == 0, f"prometheus.sh start failed:\n{started.stdout}\n{started.stderr}"
        yield Prometheus(port)
    finally:
        subprocess.run(["bash", str(PROMETHEUS_SH), "stop"], env=env, cwd=ROOT, capture_output=True, timeout=60)


class Traffic:
    """Sends valid events (several users, every event type) plus some invalid payloads to the worker, and catalog
    updates: a known item, and a new item (not in training) that the worker embeds from its text."""

    def __init__(self, bootstrap: str, topic: str, items: list[str], items_topic: str) -> None:
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        self.topic = topic
        self.items_topic = items_topic
        self.items = items
        self.counter = itertools.count()
        self.sent_valid = 0
        self.sent_invalid = 0
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def burst(self, valid: int, invalid: int) -> None:
        for _ in range(valid):
            n = next(self.counter)
            user = f"prom-u{n % 8}"
            value = {
                "user_id": user,
                "item_id": self.items[(n * 7) % len(self.items)],
                "event_type": EVENT_TYPES[n % len(EVENT_TYPES)],
                "ts": time.time(),
                "event_id": f"prom-{n}",
            }
            self.producer.send(self.topic, key=user.encode(), value=json.dumps(value).encode())
        # a catalog update (available, in a scenario): the catalog panels need some
        item = self.items[next(self.counter) % len(self.items)]
        catalog_record = {"item_id": item, "title": item, "scenario": "shop", "available": True}
        self.producer.send(self.items_topic, key=item.encode(), value=json.dumps(catalog_record).encode())
        # a new item, never trained on: the new-items panels need it embedded and made recommendable
        new_item = f"prom-new-{next(self.counter)}"
        new_record = {"item_id": new_item, "title": f"{item} (new edition)", "scenario": "shop", "available": True}
        self.producer.send(self.items_topic, key=new_item.encode(), value=json.dumps(new_record).encode())
        for _ in range(invalid):
            self.producer.send(self.topic, key=INVALID_KEY, value=INVALID[self.sent_invalid % len(INVALID)])
            self.sent_invalid += 1
        self.producer.flush(timeout=10)
        self.sent_valid += valid

    def _loop(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                self.burst(valid=8, invalid=1)  # 2 of each event type per tick
            except BaseException as exc:  # surfaced by stop()
                self.errors.append(exc)
                return

    def start(self, every: float = 0.5) -> None:
        self._thread = threading.Thread(target=self._loop, args=(every,), name="traffic", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15)
        self.producer.close(timeout=5)


def _values(result: list[dict]) -> list[float]:
    return [float(sample["value"][1]) for sample in result]


def panel_problems(prom: Prometheus, queries: list[tuple[str, str]]) -> list[str]:
    """Why each query shows nothing on the dashboard: an empty result, or only NaN/Inf (e.g. no increase)."""
    problems = []
    for label, expr in queries:
        result = prom.query(expr)
        if not result:
            problems.append(f"{label}: empty result\n    {expr}")
        elif not any(math.isfinite(v) for v in _values(result)):
            problems.append(f"{label}: no finite value ({_values(result)})\n    {expr}")
    return problems


def rules_by_name(prom: Prometheus) -> dict[tuple[str, str], dict]:
    return {
        (group["name"], rule["name"]): rule for group in prom.get("/api/v1/rules")["groups"] for rule in group["rules"]
    }


def test_dashboard_panels_and_alert_rules_on_real_prometheus(start_worker, text_model_root, dataset, tmp_path):
    items = [json.loads(line)["item_id"] for line in (dataset / "items.jsonl").read_text().splitlines()]
    queries = panel_queries()
    variables = variable_queries()
    expected_rules = alert_rules()

    # a shadow model too (a copy of the live one), so that the model-quality row has both roles; trained with
    # text, so that both ship the text encoder and new items are embedded (the catalog row's new-items panels)
    root = tmp_path / "models"
    shutil.copytree(text_model_root, root)
    live = sorted(p for p in root.iterdir() if (p / "manifest.json").is_file())[-1]
    shutil.copytree(live, root / "shadow" / live.name)
    worker = start_worker(root)
    traffic = Traffic(worker.bootstrap, worker.events, items, worker.env["STREAMREC_ITEMS_TOPIC"])
    try:
        # 1. the worker processes valid and invalid events before Prometheus starts
        traffic.burst(valid=40, invalid=len(INVALID))

        def processed():
            worker.assert_alive()
            try:
                text = worker.metrics()
            except OSError:  # the metrics endpoint is not up yet
                return False
            return (
                metric_value(text, "streamrec_events_total") >= 40
                and metric_value(text, "streamrec_events_invalid_total") >= len(INVALID)
                and metric_value(text, "streamrec_recommendations_total") >= 1
            )

        wait_until(processed, timeout=60, interval=0.5, what="the worker to process the first events")
        text = worker.metrics()
        for event_type in EVENT_TYPES:
            assert metric_value(text, "streamrec_events_total", event_type=event_type) > 0, event_type

        # 2. a real Prometheus scrapes it every second while events keep arriving (rate() needs increases)
        with running_prometheus(tmp_path, worker.metrics_port) as prom:
            traffic.start()
            wait_until(lambda: prom.query('up{job="streamrec"} == 1'), timeout=20, what="the worker target to be up")

            # 3. every dashboard panel query returns data
            deadline = time.monotonic() + DEADLINE_S
            while True:
                worker.assert_alive()
                problems = panel_problems(prom, queries)
                if not problems or time.monotonic() > deadline:
                    break
                time.sleep(1)
            if problems:
                targets = prom.get("/api/v1/targets")["activeTargets"]
                pytest.fail(
                    f"{len(problems)} of {len(queries)} dashboard queries show no data after "
                    f"{DEADLINE_S}s of scraping:\n"
                    + "\n".join(problems)
                    + f"\nscrape targets: {[(t['scrapeUrl'], t['health'], t['lastError']) for t in targets]}"
                )
            # a zero rate is data too: the new items were really embedded and made recommendable
            text = worker.metrics()
            assert metric_value(text, "streamrec_catalog_items_embedded_total") > 0, "no new item embedded"
            assert metric_value(text, "streamrec_item_recommendable_seconds_count") > 0, "no new item recommendable"

            # the template variables find this worker
            for name, selector, label in variables:
                values = prom.get(f"/api/v1/label/{quote(label)}/values", **{"match[]": selector})
                assert values, f"variable ${name}: label_values({selector}, {label}) is empty"
                expected = {"job": "streamrec", "instance": f"127.0.0.1:{worker.metrics_port}"}.get(label)
                if expected:
                    assert expected in values, f"variable ${name}: {expected!r} not in {values}"

            # 4. every rule of alerts.yml is loaded and evaluated without error
            def all_evaluated():
                rules = rules_by_name(prom)
                return rules if all(r.get("lastEvaluation", NEVER) != NEVER for r in rules.values()) else None

            rules = wait_until(all_evaluated, timeout=30, what="every rule to be evaluated once")
            expected = {(group, name) for group, names in expected_rules.items() for name in names}
            assert set(rules) == expected, (
                f"loaded rules differ from {ALERTS.name}: missing "
                f"{sorted(expected - set(rules))}, extra {sorted(set(rules) - expected)}"
            )
            unhealthy = [
                f"{group}/{name}: health={rule['health']!r} lastError={rule.get('lastError')!r}"
                for (group, name), rule in rules.items()
                if rule["health"] != "ok" or rule.get("lastError")
            ]
            assert not unhealthy, "rules failing to evaluate:\n" + "\n".join(unhealthy)
            # the recording rules produce series from the worker's metrics
            # (polled: a rule evaluated before the second scrape records nothing for its rate())
            recorded = [(f"recording rule {name}", name) for name in recording_rules()]
            while (recorded_problems := panel_problems(prom, recorded)) and time.monotonic() < deadline:
                time.sleep(1)
            assert not recorded_problems, "recording rules without data:\n" + "\n".join(recorded_problems)
            # the worker is up: the availability alerts evaluate to inactive
            for name in ("StreamrecWorkerDown", "StreamrecWorkerAbsent"):
                rule = rules[("streamrec-alerts", name)]
                assert rule["type"] == "alerting" and rule["state"] == "inactive", f"{name}: {rule}"
    finally:
        traffic.stop()
    assert not traffic.errors, f"sending events failed: {traffic.errors!r}"

    # every event sent was counted: valid ones (by type) and invalid ones (dead letters, by reason)
    def counted():
        text = worker.metrics()
        return (metric_value(text, "streamrec_events_total"), metric_value(text, "streamrec_events_invalid_total"))

    sent = (traffic.sent_valid, traffic.sent_invalid)
    try:
        wait_until(lambda: counted() == sent, timeout=30, what="every event sent to be counted")
    except AssertionError:
        raise AssertionError(f"(valid, invalid) events sent {sent}, counted by the worker {counted()}") from None
