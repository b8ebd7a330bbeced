# The two set-up commands of the README: `make demo` and `make test`. Both build .venv first.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PIP     := $(BIN)/pip install --disable-pip-version-check -q -c deploy/constraints.txt

APT     := $(if $(filter 0,$(shell id -u)),,sudo) env DEBIAN_FRONTEND=noninteractive apt-get
BROWSER := chromium chromium-driver

AIRFLOW_VENV := .venv-airflow

.PHONY: venv browser demo test test-fast lint bench clean dag-check image image-check docs

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

# Azurite, the Azure Blob Storage emulator the abfs:// tests run on (npm; Node.js is on the machine).
AZURITE_VERSION := 3.35.0
AZURITE := $(VENV)/azurite/node_modules/.bin/azurite-blob

$(AZURITE):
	npm install --prefix $(VENV)/azurite --no-audit --no-fund --loglevel=error azurite@$(AZURITE_VERSION)

demo: venv
	$(BIN)/python -m lookalike.dev.demo

test: venv browser dag-check $(AZURITE)
	$(BIN)/ruff check lib jobs tests bench deploy examples
	$(BIN)/lint-imports
	site=$$(mktemp -d) && $(BIN)/mkdocs build --strict --quiet --site-dir "$$site" && rm -rf "$$site"
	$(BIN)/python -m pytest -q --durations=25 $(PYTEST_ARGS)

# What a developer runs on every change (under two minutes): lint, then the tests that need no cluster, no
# registry and no long run. `make test` runs everything.
test-fast: venv $(AZURITE)
	$(BIN)/ruff check lib jobs tests bench deploy examples
	$(BIN)/python -m pytest -q -m "not slow and not cluster and not network" $(PYTEST_ARGS)

# The documentation site (docs/, references generated from the code) into site/.
docs: venv
	$(BIN)/mkdocs build --strict --site-dir site

# The Airflow DAG parsed by the Airflow version deploy/constraints.txt pins (3), and by the last Airflow 2 the
# DAG still supports, each in a venv of its own (Airflow's pins are not the library's). Airflow 2 is pinned
# here alone: deploy/constraints.txt holds one version per package.
AIRFLOW2_VERSION := 2.10.5

$(AIRFLOW_VENV)/.installed: deploy/constraints.txt
	test -x $(AIRFLOW_VENV)/bin/python || $(PY) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/pip install --disable-pip-version-check -q -c deploy/constraints.txt apache-airflow
	touch $@

$(AIRFLOW_VENV)2/.installed:
	test -x $(AIRFLOW_VENV)2/bin/python || $(PY) -m venv $(AIRFLOW_VENV)2
	$(AIRFLOW_VENV)2/bin/pip install --disable-pip-version-check -q apache-airflow==$(AIRFLOW2_VERSION)
	touch $@

dag-check: $(AIRFLOW_VENV)/.installed $(AIRFLOW_VENV)2/.installed
	AIRFLOW_HOME=$(CURDIR)/$(AIRFLOW_VENV)/home $(AIRFLOW_VENV)/bin/python deploy/schedule/parse_dag.py
	AIRFLOW_HOME=$(CURDIR)/$(AIRFLOW_VENV)2/home $(AIRFLOW_VENV)2/bin/python deploy/schedule/parse_dag.py

# The Kubernetes image (deploy/Dockerfile); needs a container runtime, which make test does not. Its dependency
# layer is checked by tests/test_image.py (pip resolves it with the image's pins). IMAGE=registry/name:tag.
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' lib/lookalike/_version.py)
IMAGE   ?= lookalike:$(VERSION)
image:
	docker build -f deploy/Dockerfile -t $(IMAGE) $(if $(PIP_INSTALL_OPTIONS),--build-arg PIP_INSTALL_OPTIONS="$(PIP_INSTALL_OPTIONS)") .

# What a release runs: the image built for real with buildah (its base from Debian's packages where no registry is
# reachable), then a standalone cluster inside it running the embed job, the nightly reindex and a search
# (deploy/image/check.sh). Root, buildah and debootstrap; about 10 minutes and 8 GB of disk.
image-check: venv
	command -v buildah >/dev/null && command -v debootstrap >/dev/null || \
	  $(APT) install -y -q --no-install-recommends buildah debootstrap >/dev/null
	IMAGE=$(IMAGE) deploy/image/check.sh

lint: venv
	$(BIN)/ruff check lib jobs tests bench deploy examples
	$(BIN)/lint-imports

bench: venv
	$(BIN)/python bench/embed_throughput.py

clean:
	rm -rf $(VENV) $(AIRFLOW_VENV) $(AIRFLOW_VENV)2 demo-store demo-report data site
