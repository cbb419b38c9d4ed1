# Two commands matter: `make run` (the whole system, natively) and `make test` (the whole suite).
SHELL := /bin/bash
.DEFAULT_GOAL := help

TOOLS   := .tools
UV      := $(TOOLS)/bin/uv
UV_VERSION := 0.13.9
VENV    := .venv
PY      := $(VENV)/bin/python
PYTEST_ARGS ?=

export UV_PROJECT_ENVIRONMENT := $(VENV)
# Operator commands reach the servers, PG and queues of the `make run` beside them (.run/stack.env,
# written by make run; a variable you set yourself wins).
WITH_STACK_ENV := [ -f .run/stack.env ] && . ./.run/stack.env;

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(UV):
	python3 -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --quiet
	@touch $@

deps: $(VENV)/.synced  ## install the Python dependencies from the lock file into .venv

system-deps:  ## install nginx and chromium (Debian, as root) when missing
	@bash deploy/system-deps.sh

run: deps system-deps  ## run everything natively (sandbox as the PG; private PostgreSQL/RabbitMQ if none answers); prints the storefront URL
	$(PY) -m deploy

test: deps system-deps  ## install what is needed and run the entire suite
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: deps  ## unit tests only (no services needed)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

lint: deps  ## ruff and mypy --strict
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .

fmt: deps  ## format and autofix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

BENCH_SWEEP ?= 1,2,4
bench: deps system-deps  ## benchmark on private servers: capacity of both designs, CPU and latency at half of it, messages and statements per payment, a 60 s database outage, then a 1 s PG with 1, 2, 4 approval workers (BENCH_SWEEP)
	$(PY) -m bench --servers private --capacity-steps 6 --outage-seconds 60 --sweep "$(BENCH_SWEEP)" $(BENCH_ARGS)

soak: deps system-deps  ## 1,000 payments under random faults; prints lost/doubled (SOAK_ARGS=--payments 200)
	$(PY) -m tests.soak $(SOAK_ARGS)

dead-letters: deps  ## list dead-lettered messages (replay: python -m shared.deadletters replay ...)
	@$(WITH_STACK_ENV) $(PY) -m shared.deadletters list

security-events: deps  ## tampering and forgery refused (SINCE=2h LIMIT=50 to narrow it)
	@$(WITH_STACK_ENV) $(PY) -m services.approval security-events $(if $(SINCE),--since $(SINCE)) --limit $(or $(LIMIT),100)
	@echo
	@$(WITH_STACK_ENV) $(PY) -m services.checkout conflicts $(if $(SINCE),--since $(SINCE)) --limit $(or $(LIMIT),100)

reconcile: deps  ## compare a day of the PG's transactions with our books (DATE=YYYY-MM-DD, default yesterday KST); heals what has a rule, exits non-zero on the rest
	@$(WITH_STACK_ENV) $(PY) -m services.approval reconcile $(if $(DATE),--date $(DATE))

stuck: deps  ## payments the PG has not settled although its confirm window closed
	@$(WITH_STACK_ENV) $(PY) -m services.approval stuck $(if $(LIMIT),--limit $(LIMIT))

refunds: deps  ## refunds not done (STATE=FAILED); retry one: python -m services.approval refunds retry ID
	@$(WITH_STACK_ENV) $(PY) -m services.approval refunds $(if $(STATE),--state $(STATE)) $(if $(LIMIT),--limit $(LIMIT))

observe: deps system-deps  ## Prometheus on make run's processes (.run/prometheus-targets.json) with the alert rules; prints its URL
	$(PY) -m deploy.observe

clean:  ## remove the run directory and caches (not the virtualenv)
	rm -rf .run .pytest_cache .mypy_cache .ruff_cache

.PHONY: help deps system-deps run test test-fast lint fmt bench soak dead-letters security-events reconcile stuck refunds observe clean
