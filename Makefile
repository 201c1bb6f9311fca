# The two quickstart commands: `make serve` (demo on SQLite) and `make test` (the whole suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# `make serve` installs only what serving needs; `make test` adds the dev tools.
STAMP := $(VENV)/.installed-stamp
DEV_STAMP := $(VENV)/.installed-dev-stamp

.PHONY: serve test lint bench install check-image

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $(STAMP)

$(DEV_STAMP): pyproject.toml $(STAMP)
	$(BIN)/python -m pip install -q -e '.[dev,simulation]'
	touch $(DEV_STAMP)

install: $(DEV_STAMP)

serve: $(STAMP)
	$(BIN)/banditloop serve --demo

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy bandits variants service simulation

# The suite includes tests/deploy/test_image.py (scripts/check-image.sh: build the image,
# run it, check it from outside); ensure-docker.sh starts the engine it needs.
test: $(DEV_STAMP)
	bash scripts/ensure-services.sh
	bash scripts/ensure-prometheus.sh
	bash scripts/ensure-chromium.sh
	bash scripts/ensure-axe.sh
	bash scripts/ensure-docker.sh
	$(MAKE) --no-print-directory lint
	$(BIN)/pytest -n 2 --dist loadfile

check-image:
	bash scripts/check-image.sh

bench: $(DEV_STAMP)
	$(BIN)/python bench/engine/run.py
