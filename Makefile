# The project's commands. Each creates the virtual environment and installs what it needs first.
#   make demo   make the built-in dataset, train on it (about 10 minutes on a laptop CPU), write a report
#   make test   lint, format check, type check and the whole test suite (what CI runs, via .ci/run)

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The parity fixtures made with the authors' code; the tests skip them (saying why) when absent.
STARGAN_V2_OFFICIAL_FIXTURES ?= $(abspath ../shared/fixtures/official)
export STARGAN_V2_OFFICIAL_FIXTURES

.PHONY: install demo test lint format clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/stargan-v2 demo $(DEMO_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests scripts
	$(VENV)/bin/ruff format --check src tests scripts
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest

format: $(STAMP)
	$(VENV)/bin/ruff format src tests scripts
	$(VENV)/bin/ruff check --fix src tests scripts

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist src/*.egg-info
