# The two set-up commands of the README: `make demo` and `make test`. Both build .venv first.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PIP     := $(BIN)/pip install --disable-pip-version-check -q -c deploy/constraints.txt

.PHONY: venv demo test lint bench clean

venv: $(STAMP)

# The stamp depends on what decides the environment, so an edit reinstalls and a complete venv is reused.
$(STAMP): pyproject.toml deploy/constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) -e '.[test]'
	touch $(STAMP)

demo: venv
	$(BIN)/python -m lookalike.demo

test: venv
	$(BIN)/ruff check lib jobs tests bench
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check lib jobs tests bench

bench: venv
	$(BIN)/python bench/embed_throughput.py

clean:
	rm -rf $(VENV) demo-store data
