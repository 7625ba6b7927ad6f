# Every target creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: demo test lint docs bench clean data

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PIP) install --quiet "torch==2.13.0" || $(PIP) install --quiet "torch>=2.1,<2.14"
	$(PIP) install --quiet -e ".[test,docs]"
	touch $(STAMP)

install: $(STAMP)

data:
	@bash scripts/install-data.sh

demo: $(STAMP) data
	$(VENV)/bin/grassmann-cls demo

LINTED := manifolds grassmann_cls tests benchmarks docs/_ext docs/conf.py

# Lint, format and type checks first (seconds), then the suite.
lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest tests

docs: $(STAMP)
	@PIP=$(PIP) bash scripts/install-mathjax.sh
	$(VENV)/bin/sphinx-build -W --keep-going -b html docs docs/_build/html

# pymanopt is a benchmark anchor only, not a dependency: installed here, optional.
bench: $(STAMP)
	$(PIP) install --quiet "pymanopt==2.2.1" || echo "pymanopt could not be installed: its rows are left out"
	$(PY) benchmarks/run_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) docs/_build .pytest_cache .hypothesis
