# Everything a fresh machine needs: `make demo` (the main job) and `make test` (the tests).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-done
RT_VENV := .venv-runtime
RT_BIN := $(RT_VENV)/bin
RT_STAMP := $(RT_VENV)/.setup-done
TEST_EXPORT := build/test-export
DATA ?= ../shared/data/camvid

.PHONY: setup setup-runtime test test-runtime lint demo clean-venv

setup: $(STAMP)

# Idempotent: re-runs only when requirements or setup.py change.
$(STAMP): requirements.txt setup.py
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# A robot's install: only requirements-runtime.txt (no torch, onnx, albumentations), for `make test-runtime`.
setup-runtime: $(RT_STAMP)

$(RT_STAMP): requirements-runtime.txt setup.py
	test -x $(RT_BIN)/python || $(PY) -m venv $(RT_VENV)
	$(RT_BIN)/python -m pip install -q --upgrade pip
	$(RT_BIN)/python -m pip install -q -r requirements-runtime.txt
	$(RT_BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $(RT_STAMP)

lint: setup
	$(BIN)/ruff check .

test: setup lint
	$(BIN)/python -m pytest -q tests
	$(MAKE) --no-print-directory test-runtime

# The tests as a robot runs them: the runtime ones (node, policies, image codec, manifest, ONNX Runtime backend,
# visualisation) must pass, the rest skip with their reason. The ONNX export they load is made with the full
# venv, as an export is made on a workstation and copied to a robot.
test-runtime: setup setup-runtime
	$(BIN)/python tests/exported.py $(TEST_EXPORT)
	SLIMSEG_TEST_EXPORT=$(CURDIR)/$(TEST_EXPORT) $(RT_BIN)/python -m pytest -q tests

demo: setup
	$(BIN)/slimseg demo $(DEMO_ARGS)

clean-venv:
	rm -rf $(VENV) $(RT_VENV)
