# The two commands of README.md: `make demo` and `make test`. Everything else is a helper.
# Both build the environment themselves from PyPI and Maven Central; nothing is installed by hand.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PAYKAFKA := $(VENV)/bin/paykafka
STAMP := $(VENV)/.installed

.PHONY: demo test check env postgres stack-up stack-down clean

# Set up everything, bring the local stack up, send a payment and show it tracked.
demo: $(STAMP)
	$(PAYKAFKA) stack up
	$(PY) examples/producer.py
	$(PY) examples/tracker.py --until-end

# The whole suite: lint, types, unit and integration tests on the real stack.
# A stack that was already running is left running; one started here is stopped, even on failure.
test: $(STAMP) postgres
	@if $(PAYKAFKA) stack status >/dev/null 2>&1; then started=; else \
		$(PAYKAFKA) stack up || exit 1; started=1; fi; \
	trap 'if [ -n "$$started" ]; then $(PAYKAFKA) stack down; fi' EXIT; \
	$(MAKE) --no-print-directory check

check: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) -m pytest

env: $(STAMP)

# The exactly-once tests start throwaway PostgreSQL clusters (initdb + pg_ctl): install the
# server binaries from the distribution when the machine has none.
postgres:
	@if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
		$$sudo apt-get update -qq && $$sudo apt-get install -y -qq postgresql >/dev/null; fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,stack,examples,otel,prometheus,top,postgres]'
	touch $(STAMP)

stack-up: $(STAMP)
	$(PAYKAFKA) stack up

stack-down: $(STAMP)
	$(PAYKAFKA) stack down

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis dist build
