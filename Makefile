# runbook.ops — `make demo` and `make test` set up a fresh machine by themselves.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
ANSIBLE_ENV := ANSIBLE_CONFIG=$(CURDIR)/ansible.cfg PATH=$(CURDIR)/$(BIN):$$PATH
PLAYBOOKS := $(wildcard playbooks/*.yml)

.PHONY: help setup demo test test-fast lint sanity units syntax integration fleet-test molecule bench \
        sandbox-up sandbox-down sandbox-status fleet-up fleet-down build install-check changelog clean

help:
	@echo "make demo            install everything, bring the sandbox up, run every runbook against it"
	@echo "make test            every test: lint, sanity, units, syntax, sandbox, fleet, molecule"
	@echo "make test-fast       lint, sanity, units and syntax checks only"
	@echo "make sandbox-up|sandbox-down|sandbox-status   the embedded sandbox on 127.0.0.1"
	@echo "make fleet-up|fleet-down                      podman hosts running systemd"
	@echo "make bench           benchmarks: each runbook against the raw tool, medians and ratios"

setup:
	@bash scripts/setup.sh

# --- the sandbox and the fleet -------------------------------------------
sandbox-up: setup
	@$(PY) sandbox/sandbox.py up

sandbox-down:
	@if [ -x $(PY) ]; then $(PY) sandbox/sandbox.py down; fi

sandbox-status:
	@$(PY) sandbox/sandbox.py status

fleet-up: setup
	@$(PY) sandbox/fleet.py up

fleet-down:
	@if [ -x $(PY) ] && [ -f sandbox/fleet.py ]; then $(PY) sandbox/fleet.py down; fi

# --- the demo -------------------------------------------------------------
demo: sandbox-up
	@bash scripts/demo.sh

# --- tests ------------------------------------------------------------------
test: setup
	@bash scripts/test.sh all

test-fast: setup
	@bash scripts/test.sh fast

lint: setup
	@$(ANSIBLE_ENV) $(BIN)/ansible-lint --profile production

sanity: setup
	@bash scripts/sanity.sh

units: setup
	@$(BIN)/pytest -q tests/unit

syntax: setup
	@for p in $(PLAYBOOKS); do $(ANSIBLE_ENV) $(BIN)/ansible-playbook --syntax-check -i inventories/example $$p >/dev/null || exit 1; echo "syntax ok: $$p"; done

integration: sandbox-up
	@$(BIN)/pytest -q -m "integration or sandbox" tests/integration

fleet-test: fleet-up
	@$(BIN)/pytest -q -m fleet tests/integration

# molecule looks for molecule/<scenario>/ under its working directory
molecule: setup
	@cd tests && for s in molecule/*/molecule.yml; do \
	  s=$${s#molecule/}; s=$${s%/molecule.yml}; \
	  NO_COLOR=1 ANSIBLE_NOCOLOR=1 $(ANSIBLE_ENV) $(CURDIR)/$(BIN)/molecule test -s $$s || exit 1; \
	done

# --- benchmarks: our playbook against the raw tool, side by side, medians and ratios
bench: sandbox-up
	@for b in tests/bench/bench_*.py; do PATH=$(CURDIR)/$(BIN):$$PATH $(PY) $$b || exit 1; done

# --- packaging --------------------------------------------------------------
build: setup
	@mkdir -p build && $(BIN)/ansible-galaxy collection build --force --output-path build .

changelog: setup
	@$(BIN)/antsibull-changelog lint

clean: sandbox-down fleet-down
	rm -rf build tests/output
