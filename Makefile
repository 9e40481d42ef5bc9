# Bootstraps .venv from pinned requirements, then calls invoke. Nothing else lives here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check
# Runs a long, quiet command and says it is still working: on a terminal one line that counts
# seconds, in a log a line every 15 s. Usage: $(call busy,what,command)
busy = sh -c 'what="$$1"; shift; start=$$(date +%s); \
	if [ -t 1 ]; then every=2; fmt="\r  … %s: %ss "; else every=15; fmt="  … %s: %ss\n"; fi; \
	( trap '"'"'kill $$nap 2>/dev/null; exit 0'"'"' TERM; \
	  while :; do sleep $$every & nap=$$!; wait $$nap; \
	  printf "$$fmt" "$$what" $$(( $$(date +%s) - start )); done ) & beat=$$!; \
	"$$@"; rc=$$?; kill $$beat 2>/dev/null; wait $$beat 2>/dev/null; \
	[ -t 1 ] && printf "\r\033[K"; \
	if [ $$rc -eq 0 ]; then echo "  $$what: done in $$(( $$(date +%s) - start ))s"; fi; exit $$rc' busy '$(1)' $(2)

.PHONY: venv mesh test lint bench reliability down clean

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	@test -x $(BIN)/python || { echo "make: [1/3] creating $(VENV) with $$($(PYTHON) --version)"; $(PYTHON) -m venv $(VENV); }
	@echo "make: [2/3] installing $$(grep -c '==' requirements.txt) pinned dependencies into $(VENV) (first run: about 2 minutes)…"
	@$(call busy,pip install -r requirements.txt,$(PIP) -r requirements.txt)
	@echo "make: [3/3] installing dbt-mesh-core itself (editable)"
	@$(PIP) --no-deps -e .
	@touch $(STAMP)
	@echo "make: $(VENV) is ready; activate it to use invoke and mesh directly: . $(BIN)/activate"

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
