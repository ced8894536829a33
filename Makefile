# prefect-delivery: `make demo` and `make test` work on a fresh machine (Debian/Ubuntu).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test unit bench status down system venv clean lint

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	@touch $(STAMP)

venv: $(STAMP)

# HAProxy routes traffic; PostgreSQL gives each demo environment its database (and the
# migrations lab its ephemeral clusters). Debian keeps initdb off PATH, by major version.
system:
	@.ci/ensure-packages.sh haproxy:haproxy git:git '/usr/lib/postgresql/*/bin/initdb:postgresql'

demo: system $(STAMP)
	$(BIN)/delivery demo

# The whole suite. Docker, PostgreSQL and browser tests skip with a reason when their
# component is missing; `.ci/run` installs everything and makes those skips failures.
# The files run in WORKERS pytest-xdist workers side by side (each with its own Prefect server
# and environment names), longest first (tests/file_weights.json, tests/support/file_order.py):
# four on 2 cores, because many tests wait (bakes, pauses, start-ups) and two left the machine
# 44 % idle; WORKERS=0 runs one session. The suite's times are in the README's Tests section.
# PYTEST_FLAGS="-p support.cpu_profile" records each test's CPU (bench/suite_cpu.py sums it).
WORKERS ?= 4
PYTEST_FLAGS ?=
test: system $(STAMP)
	$(BIN)/python -m pytest -n $(WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_FLAGS)

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

lint: $(STAMP)
	$(BIN)/ruff check flows tasks blocks migrations_lab tests bench

bench: system $(STAMP)
	$(BIN)/python -m bench.pipeline
	$(BIN)/python -m bench.zero_downtime

status: $(STAMP)
	$(BIN)/delivery status

down: $(STAMP)
	$(BIN)/delivery down

clean: down
	rm -rf .delivery
