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
# In parallel: each file goes to one of $(WORKERS) pytest-xdist workers (each with its own
# Prefect server and environment names). The judge compares the new release with the stable
# one measured in the same intervals, so a busy machine slows both sides alike.
WORKERS ?= 3
test: system $(STAMP)
	$(BIN)/python -m pytest -n $(WORKERS) --dist loadfile

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
