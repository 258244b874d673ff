# Every target sets up what it needs: a fresh clone only needs `make run` or `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA_DIR ?= ../shared/datasets

.PHONY: run test test-system lint train samples bench bench-train clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# One stamp per set of extras, redone whenever pyproject.toml changes.
$(VENV)/.installed-serve: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[train,dev]'
	touch $@

$(VENV)/.installed-system-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[train,dev,system-test]'
	touch $@

run: $(VENV)/.installed-serve  ## serve models/mnist/1/model.pt on http://127.0.0.1:8000
	$(BIN)/python -m app

test: $(VENV)/.installed-dev  ## lint, then the fast offline test suite
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

test-system: $(VENV)/.installed-system-test  ## slow suites: browser, load, fuzz, then the Docker smoke test (root: installs Debian packages)
	scripts/system-deps.sh
	$(BIN)/python -m pytest -m system
	scripts/docker-smoke.sh

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

train: $(VENV)/.installed-dev  ## retrain into models/ (ARGS="--data-dir ../shared/datasets --no-download" offline)
	$(BIN)/python -m training $(ARGS)

samples: $(VENV)/.installed-dev  ## write samples/0.png ... samples/9.png from the MNIST test set
	$(BIN)/python scripts/make_samples.py --data-dir $(DATA_DIR)

bench: $(VENV)/.installed-dev  ## serving benchmark: /predict vs a bare endpoint with wrk (root: installs wrk)
	scripts/system-deps.sh wrk
	$(BIN)/python bench/serve_bench.py

bench-train: $(VENV)/.installed-dev  ## classic DataLoader loop vs in-memory loop, side by side
	$(BIN)/python bench/train_bench.py --data-dir $(DATA_DIR)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
