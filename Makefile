# Bootstraps .venv from pinned requirements, then calls invoke. Nothing else lives here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv mesh test lint bench reliability down clean

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

mesh: venv
	$(BIN)/invoke mesh

test: venv
	$(BIN)/invoke test

lint: venv
	$(BIN)/invoke lint

bench: venv
	$(BIN)/invoke bench

reliability: venv
	$(BIN)/invoke reliability

down: venv
	$(BIN)/invoke down

clean: down
	rm -rf $(VENV) .venv-checkov
