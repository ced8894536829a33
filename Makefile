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

# The whole suite, as two pytest sessions side by side (each with its own Prefect server;
# most tests wait on real processes, so two groups finish in about 2/3 of the serial time).
# Docker, PostgreSQL and browser tests skip with a reason when their component is missing;
# `.ci/run` installs everything and makes those skips failures. `pytest` alone runs it serially.
GROUP_A := tests/unit tests/integration/lab tests/integration/migration tests/integration/docker_infra \
	tests/integration/docker tests/e2e
GROUP_B := tests/integration/pipeline
test: system $(STAMP)
	@$(BIN)/python -m pytest -p no:cacheprovider $(GROUP_A) > .test-group-a.log 2>&1 & a=$$!; \
	$(BIN)/python -m pytest -p no:cacheprovider $(GROUP_B); b=$$?; \
	wait $$a; a=$$?; \
	echo "==== group A: $(GROUP_A) (exit $$a)"; cat .test-group-a.log; \
	echo "==== group A exit $$a, group B ($(GROUP_B)) exit $$b"; \
	test $$a -eq 0 -a $$b -eq 0

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
