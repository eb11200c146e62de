# streamrec: every target installs what it needs (idempotent, cached).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: venv demo test test-fast lint format bench chaos kafka-start kafka-stop kafka-status prometheus-start prometheus-stop clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[train,dev]"
	@rm -f $(VENV)/.installed-*; touch $@

demo: venv
	$(VENV)/bin/streamrec demo

# The whole suite, as CI runs it: lint, then every tier with a real Kafka broker and Prometheus.
test: venv lint
	bash deploy/local/prometheus.sh install
	bash deploy/local/kafka.sh start
	$(PY) -m pytest tests

# The change-test-change loop: unit, agents and model tiers; no broker, no Prometheus, no network.
test-fast: venv
	$(PY) -m pytest tests/unit tests/agents tests/model -q

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

kafka-start:
	bash deploy/local/kafka.sh start
kafka-stop:
	bash deploy/local/kafka.sh stop
kafka-status:
	bash deploy/local/kafka.sh status

# The real Prometheus server (Debian package) scraping a local worker on 127.0.0.1:9108.
prometheus-start:
	bash deploy/local/prometheus.sh start --config deploy/prometheus/prometheus-local.yml
prometheus-stop:
	bash deploy/local/prometheus.sh stop

bench: venv
	$(VENV)/bin/streamrec bench

chaos: venv
	$(VENV)/bin/streamrec chaos

clean:
	rm -rf $(VENV) .pytest_cache
