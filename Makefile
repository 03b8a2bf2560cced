# The README's two commands: `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint typecheck unit bench fuzz clean

$(VENV)/.setup-done: scripts/setup.sh pyproject.toml $(wildcard package-lock.json)
	bash scripts/setup.sh

setup: $(VENV)/.setup-done

demo: setup
	$(BIN)/xcpconsole demo

lint: setup
	$(BIN)/ruff check .

typecheck: setup
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest -q

test: lint typecheck unit

bench: setup
	$(BIN)/python -m bench.run

fuzz: setup
	$(BIN)/python -m fuzz.run

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
