# The two commands a newcomer needs: `make run` and `make test`. Everything else is a step of those.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SDK := clients/python
KAFKA_PORT ?= 9092
KAFKA_CONTROLLER_PORT ?= 9093
MONGO_PORT ?= 27017
POSTGRES_PORT ?= 5432
export KAFKA_PORT KAFKA_CONTROLLER_PORT MONGO_PORT POSTGRES_PORT
STACK_ENV := KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$(KAFKA_PORT) MONGODB_URI=mongodb://127.0.0.1:$(MONGO_PORT) \
	POSTGRES_DSN=postgresql://activity@127.0.0.1:$(POSTGRES_PORT)/activity_service
TEST_ENV := $(STACK_ENV) STACK_CONTROL=scripts/stack.sh
PYTEST_ARGS ?=

# The three-broker stack of the cluster fault scenarios: a KRaft cluster (nodes on CLUSTER_KAFKA_PORT, +10,
# +20), FerretDB and PostgreSQL, in a state dir and on ports of its own, so the shared single-broker stack
# that `make test` and other clones use is never touched.
ACTIVITY_CACHE ?= $(HOME)/.cache/activity-service
CLUSTER_STACK_DIR ?= $(ACTIVITY_CACHE)/stack-cluster
CLUSTER_KAFKA_PORT ?= 29092
CLUSTER_KAFKA_CONTROLLER_PORT ?= 29093
CLUSTER_MONGO_PORT ?= 29017
CLUSTER_POSTGRES_PORT ?= 29432
CLUSTER := STACK_DIR=$(CLUSTER_STACK_DIR) STACK_KAFKA_BROKERS=3 KAFKA_PORT=$(CLUSTER_KAFKA_PORT) \
	KAFKA_CONTROLLER_PORT=$(CLUSTER_KAFKA_CONTROLLER_PORT) MONGO_PORT=$(CLUSTER_MONGO_PORT) \
	POSTGRES_PORT=$(CLUSTER_POSTGRES_PORT)
CLUSTER_BOOTSTRAP := 127.0.0.1:$(CLUSTER_KAFKA_PORT),127.0.0.1:$(shell expr $(CLUSTER_KAFKA_PORT) + 10),127.0.0.1:$(shell expr $(CLUSTER_KAFKA_PORT) + 20)
CLUSTER_TEST_ENV := $(CLUSTER) KAFKA_BOOTSTRAP_SERVERS=$(CLUSTER_BOOTSTRAP) \
	MONGODB_URI=mongodb://127.0.0.1:$(CLUSTER_MONGO_PORT) \
	POSTGRES_DSN=postgresql://activity@127.0.0.1:$(CLUSTER_POSTGRES_PORT)/activity_service STACK_CONTROL=scripts/stack.sh

.PHONY: help install lock lock-upgrade deps-system stack-up stack-down stack-status cluster-up cluster-down run lint \
	typecheck imports check test test-faults test-faults-cluster bench bench-quick sdk-wheel

help:
	@echo "make run         start the local Kafka + database, then the API and one consumer (Ctrl-C stops)"
	@echo "make test        install, start the local stack, then lint, types, import layers, the SDK wheel and all tests"
	@echo "make test-faults fault injection under load (kills, outages, overload, poison) and fuzzing, ~10 min"
	@echo "make test-faults-cluster  the same against a three-broker cluster of its own (crashed leaders, cuts)"
	@echo "make stack-up    start (or reuse) the local Kafka broker, FerretDB and PostgreSQL; make stack-down stops them"
	@echo "make install     create .venv/ and install the project with its dev extras, from requirements/dev.lock"
	@echo "make lock        regenerate requirements/*.lock after a pyproject.toml change (keeps the pins it can)"

install: $(VENV)/.installed

# Exactly the pinned, hash-checked versions of requirements/dev.lock (the image installs runtime.lock, the
# same pins without the dev extras); then the project itself and the Python SDK (clients/python: no
# runtime dependencies, its dev tools are in the lock), with no dependency resolution at all. A local
# editable package cannot stand in a hashed lock: it is installed beside the project, not pinned.
$(VENV)/.installed: pyproject.toml requirements/dev.lock $(SDK)/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r requirements/dev.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e . -e $(SDK)
	@touch $@

# The locks, from pyproject.toml, for Python 3.11 on any platform, every file's hash included. An existing
# pin is kept while it still satisfies pyproject.toml; lock-upgrade moves every pin to the newest release.
LOCK := $(BIN)/uv pip compile pyproject.toml --python-version 3.11 --generate-hashes --no-header --quiet
lock: install
	$(LOCK) --output-file requirements/runtime.lock
	$(LOCK) --extra dev --output-file requirements/dev.lock

lock-upgrade: install
	$(LOCK) --upgrade --output-file requirements/runtime.lock
	$(LOCK) --upgrade --extra dev --output-file requirements/dev.lock

# System packages the tests need beyond Python: redis-server (shared rate limits), nftables (the cluster
# suite cuts a broker off the network). Idempotent.
deps-system:
	@command -v redis-server >/dev/null || (apt-get update -qq && apt-get install -y -qq redis-server)
	@command -v nft >/dev/null || (apt-get update -qq && apt-get install -y -qq nftables)
# Debian's Chromium for the browser tests (tests/browser: the explorer, the SDK): Playwright drives it,
# as its own browser download does not work here. 34 s and 130 packages on a Debian 12 machine without it.
	@test -x /usr/bin/chromium || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

stack-up:
	@bash scripts/stack.sh up

stack-down:
	@bash scripts/stack.sh down

stack-status:
	@bash scripts/stack.sh status

cluster-up:
	@$(CLUSTER) bash scripts/stack.sh up

cluster-down:
	@$(CLUSTER) bash scripts/stack.sh down

run: install stack-up
	@$(STACK_ENV) bash scripts/run-local.sh

lint: install
	$(BIN)/ruff check src tests $(SDK)
	$(BIN)/ruff format --check src tests $(SDK)

# The SDK under its own configuration (clients/python/pyproject.toml: strict, no pydantic plugin).
typecheck: install
	$(BIN)/mypy src
	cd $(SDK) && $(abspath $(BIN))/mypy src

imports: install
	$(BIN)/lint-imports

check: lint typecheck imports

# Two pytest runs, both always: the service's tests (tests/; tests/e2e/test_sdk.py drives the SDK
# against the real stack), then the SDK's own (clients/python/tests, against its fake API; a package also
# named `tests`, so it runs from its own directory and configuration; pytest-asyncio is the service's).
# Fails when either does.
test: deps-system install stack-up check sdk-wheel
	status=0; \
	$(TEST_ENV) $(BIN)/pytest --ignore=tests/faults $(PYTEST_ARGS) || status=$$?; \
	(cd $(SDK) && $(abspath $(BIN))/pytest -p no:asyncio $(SDK_PYTEST_ARGS)) || status=$$?; \
	exit $$status

# The SDK's wheel in dist/ (what `pip install activity-client` would get); built by every `make test`.
sdk-wheel: install
	rm -f dist/activity_client-*.whl
	$(BIN)/pip wheel --quiet --disable-pip-version-check --no-deps $(SDK) -w dist/

# Fault injection (tests/faults): steady load through the real API while the consumer is killed or frozen,
# the broker and the database are stopped or killed, the API is overloaded, stopped or killed, poison is
# written to the topic; then schemathesis fuzzing. It stops and restarts the shared local stack's services
# briefly. The cluster scenarios (a crashed leader, two crashed brokers, a broker cut off the network) run
# against a three-broker stack of their own: test-faults-cluster (.ci/run runs both, after make test).
test-faults: deps-system install stack-up
	$(TEST_ENV) $(BIN)/pytest tests/faults -m "not cluster" $(PYTEST_ARGS)

test-faults-cluster: deps-system install cluster-up
	$(CLUSTER_TEST_ENV) $(BIN)/pytest tests/faults -m cluster $(PYTEST_ARGS)

# Benchmarks (bench/README.md): the full run (~10 minutes) writes bench/results/latest.md and latest.json;
# the quick one (under a minute, proves the harness works) writes to a temporary directory it prints.
# Scenario 14 measures ingest on the three-broker cluster too when `make cluster-up` has started it
# (skipped, saying so, when it is not up).
bench: install stack-up
	$(STACK_ENV) BENCH_CLUSTER_KAFKA=$(CLUSTER_BOOTSTRAP) $(BIN)/python -m bench $(BENCH_ARGS)

bench-quick: install stack-up
	$(STACK_ENV) BENCH_CLUSTER_KAFKA=$(CLUSTER_BOOTSTRAP) $(BIN)/python -m bench --quick $(BENCH_ARGS)
