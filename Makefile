# The two commands of the README: `make run` (demo) and `make test` (whole suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: venv test lint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

venv: $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'

test: venv
	bash scripts/test-deps.sh
	$(BIN)/python -m pytest tests

lint: venv
	$(BIN)/ruff check src tests
