# The daily commands. `make` alone lists them.
#   make test ARGS='-x tests/shared'      extra arguments for pytest
#   make run CONFIG=provisioning.toml     start on a settings file
PYTHON ?= python3
ARGS ?=
CONFIG ?=
ROOT := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
# This checkout's packages win over whatever the environment has installed (several
# checkouts, or git worktrees, may share one environment).
export PYTHONPATH := $(ROOT)$(if $(PYTHONPATH),:$(PYTHONPATH))
ifneq ($(CONFIG),)
export PROVISIONING_CONFIG := $(CONFIG)
endif

.DEFAULT_GOAL := help
.PHONY: help install test test-slow lint format bench run doctor

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: ## install the product and its test tools (editable)
	$(PYTHON) -m pip install -e '.[test]'

test: ## the default suite (everything not marked slow), as .ci/run runs it
	$(PYTHON) -m pytest $(ARGS)

test-slow: ## the long suites only (more fuzzing examples)
	$(PYTHON) -m pytest -m slow $(ARGS)

lint: ## ruff (lint and format check) and mypy strict, as .ci/run runs them
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m mypy

format: ## apply ruff's safe fixes and format the tree
	$(PYTHON) -m ruff check --fix .
	$(PYTHON) -m ruff format .

bench: ## the benchmark programs (tables on stdout, JSON in bench/results/)
	$(PYTHON) bench/engine.py
	$(PYTHON) bench/auth.py
	$(PYTHON) bench/events.py

run: ## start both services in one process on ./data (provisioning up)
	$(PYTHON) -m provisioning up

doctor: ## check the host (runner user, work root, data directory, store)
	$(PYTHON) -m provisioning doctor
