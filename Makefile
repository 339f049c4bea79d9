# Download Ledger: every target installs what is missing first and skips what is already done.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python
LEDGER := $(VENV)/bin/ledger
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help tools venv stack-up stack-down stack-status stack-cluster stack-cluster-down stack-secure stack-secure-down \
	lint test test-unit test-stack test-cluster test-secure run bench dashboard

help:
	@echo "make run        set up, start the secure stack and run the pipeline with a demo load"
	@echo "make test       set up, start the secure stack and run every test against it"
	@echo "make bench      set up, start the plaintext and the secure stack and run the benchmarks"
	@echo "make stack-up / stack-down / stack-status"
	@echo "make stack-cluster / stack-cluster-down   3 Kafka, 3 Cassandra, a 6-node Redis Cluster (beside stack-up)"
	@echo "make test-cluster   start the cluster profile, run the node-loss tests (tests/cluster), stop it"
	@echo "make stack-secure / stack-secure-down   Kafka, Cassandra, Redis with TLS, logins and per-role ACLs"
	@echo "make test-secure    start the secure profile and run its refusal tests (tests/security)"

# Java 17 and Maven fetch and run Kafka and Cassandra; redis-server is installed by `ledger stack up`.
# promtool (Debian's prometheus package) tests the alert rules in deploy/observability/.
tools:
	@command -v java >/dev/null && command -v mvn >/dev/null || { \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq openjdk-17-jre-headless maven; }
	@command -v promtool >/dev/null || { \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; }

$(VENV)/.installed: pyproject.toml
	@command -v python3 >/dev/null || { echo "python3 (>= 3.11) is required"; exit 1; }
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

stack-up: tools venv
	$(LEDGER) stack up
	$(LEDGER) topics apply
	$(LEDGER) migrate

stack-down: venv
	$(LEDGER) stack down

stack-status: venv
	$(LEDGER) stack status

# The cluster profile: its own ports and .stack-cluster, so it runs beside the local stack.
CLUSTER_ENV = eval "$$($(LEDGER) stack env --profile cluster)"

stack-cluster: tools venv
	$(LEDGER) stack up --profile cluster
	$(CLUSTER_ENV) && $(LEDGER) topics apply && $(LEDGER) migrate

stack-cluster-down: venv
	$(LEDGER) stack down --profile cluster

# The secure profile: TLS, a login per principal, per-role ACLs (deploy/security/), in .stack-secure on
# ports of its own. Topics and migrations run as admin; then the roles get their grants on the keyspace.
SECURE_ENV = eval "$$($(LEDGER) stack env --profile secure)"

stack-secure: tools venv
	$(LEDGER) stack up --profile secure
	$(SECURE_ENV) && $(LEDGER) topics apply && $(LEDGER) migrate && $(LEDGER) stack provision --profile secure

stack-secure-down: venv
	$(LEDGER) stack down --profile secure

test-secure: stack-secure
	$(VENV)/bin/pytest tests/security tests/unit/test_secure_profile.py -q

# ruff (lint), mypy (strict on the domain and the services), import-linter (the layers).
lint: venv
	$(VENV)/bin/ruff check app tools tests
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

# Everything that needs no service: the domain, the services with in-memory stores, the contracts.
test-unit: venv
	$(VENV)/bin/pytest -m "not stack" -q

# Every test runs against the secure profile, as production runs: TLS, a login, per-role ACLs.
test: lint stack-secure
	$(SECURE_ENV) && $(VENV)/bin/pytest tests -q

# The node-loss tests: started and stopped here (the cluster takes ~4 GiB), whatever the outcome;
# each node-loss test's figures (API errors and longest gap, restart and catch-up times) are printed.
NODE_LOSS_REPORT := .stack-cluster/node-loss.jsonl
test-cluster: stack-cluster
	rm -f $(NODE_LOSS_REPORT)
	$(CLUSTER_ENV) && LEDGER_NODE_LOSS_REPORT=$(CURDIR)/$(NODE_LOSS_REPORT) $(VENV)/bin/pytest tests/cluster \
	  tests/contracts -m cluster -q; status=$$?; cat $(NODE_LOSS_REPORT) 2>/dev/null; \
	  $(LEDGER) stack down --profile cluster; exit $$status

run: stack-secure
	$(SECURE_ENV) && $(LEDGER) demo

# The phases run on the plaintext local stack (comparable with earlier runs); the tls phase repeats the
# end-to-end run on the secure profile for the cost of TLS and authentication.
bench: stack-up stack-secure
	$(LEDGER) bench

# Regenerate the Grafana dashboard (checked in; a unit test fails when it is stale).
dashboard: venv
	$(PY) -m tools.observability.dashboard
