# Two commands: `make demo` and `make test`. Both create .venv, install torch (CPU) first, then the
# project, then fetch the datasets. Everything is offline-safe: only the package registry is used.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.fedinsight-installed
TORCH  := torch==2.13.0

# Flower must never phone home or `uv sync` a fresh environment per run.
export FLWR_TELEMETRY_ENABLED := 0
export FLWR_DISABLE_UPDATE_CHECK := 1
export FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION := 1
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: install data demo test lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install $(TORCH)
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

data: install
	$(VENV)/bin/fedinsight data fetch all

demo: data
	$(VENV)/bin/fedinsight demo

test: data
	@bash scripts/ensure_chromium.sh
	@bash scripts/ensure_java.sh
	$(PY) -m ruff check fedinsight tests benchmarks examples
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected" >&2; exit 1; fi; exit $$rc

lint: install
	$(PY) -m ruff check fedinsight tests benchmarks examples
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
