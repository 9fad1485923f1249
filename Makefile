# copywatch: `make demo` runs the main job on the embedded default, `make test` runs all tests.
# Both set everything up first (apt packages when missing, .venv, pinned requirements).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
APT_PACKAGES := chromium fonts-nanum
export COPYWATCH_HOME ?= $(CURDIR)/data

.PHONY: setup system-packages demo test run airflow clean

setup: system-packages $(STAMP)

# Debian packages: Chromium (Playwright drives it; `playwright install` cannot download here)
# and the Nanum fonts for Korean text in generated images.
system-packages:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing; \
	fi

# pip only: uv/poetry would not see the local torch==2.13.0 CPU wheel and pull a CUDA build.
$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

demo: setup
	$(BIN)/copywatch demo

run: setup
	$(BIN)/copywatch run

test: setup
	$(BIN)/python -m pytest -q

# Airflow's UI and scheduler on 127.0.0.1:8080 (airflow standalone); Ctrl-C stops it.
airflow: setup
	$(BIN)/python -m pipeline.airflow_standalone

clean:
	rm -rf data/airflow data/reports .pytest_cache
