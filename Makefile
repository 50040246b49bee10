# Everything a fresh machine needs: `make demo` (the main job) and `make test` (the tests).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-done
DATA ?= ../shared/data/camvid

.PHONY: setup test lint demo clean-venv

setup: $(STAMP)

# Idempotent: re-runs only when requirements or setup.py change.
$(STAMP): requirements.txt setup.py
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

lint: setup
	$(BIN)/ruff check .

test: setup lint
	$(BIN)/python -m pytest -q tests

demo: setup
	$(BIN)/slimseg demo $(DEMO_ARGS)

clean-venv:
	rm -rf $(VENV)
