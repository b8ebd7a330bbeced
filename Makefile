# The two set-up commands of the README: `make demo` and `make test`. Both build .venv first.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PIP     := $(BIN)/pip install --disable-pip-version-check -q -c deploy/constraints.txt

APT     := $(if $(filter 0,$(shell id -u)),,sudo) env DEBIAN_FRONTEND=noninteractive apt-get
BROWSER := chromium chromium-driver

AIRFLOW_VENV := .venv-airflow

.PHONY: venv browser demo test lint bench clean dag-check

venv: $(STAMP)

# The page test drives Debian's Chromium through chromedriver; installed once where missing.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  $(APT) install -y -q $(BROWSER) >/dev/null || \
	  { $(APT) update -q >/dev/null && $(APT) install -y -q $(BROWSER) >/dev/null; }

# The stamp depends on what decides the environment, so an edit reinstalls and a complete venv is reused.
$(STAMP): pyproject.toml deploy/constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) -e '.[test]'
	touch $(STAMP)

demo: venv
	$(BIN)/python -m lookalike.dev.demo

test: venv browser dag-check
	$(BIN)/ruff check lib jobs tests bench deploy
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The Airflow DAG parsed by the Airflow version deploy/constraints.txt pins, in a venv of its own (Airflow's pins
# are not the library's).
$(AIRFLOW_VENV)/.installed: deploy/constraints.txt
	test -x $(AIRFLOW_VENV)/bin/python || $(PY) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/pip install --disable-pip-version-check -q -c deploy/constraints.txt apache-airflow
	touch $@

dag-check: $(AIRFLOW_VENV)/.installed
	AIRFLOW_HOME=$(CURDIR)/$(AIRFLOW_VENV)/home $(AIRFLOW_VENV)/bin/python deploy/schedule/parse_dag.py

lint: venv
	$(BIN)/ruff check lib jobs tests bench deploy
	$(BIN)/lint-imports

bench: venv
	$(BIN)/python bench/embed_throughput.py

clean:
	rm -rf $(VENV) $(AIRFLOW_VENV) demo-store demo-report data
