# Every target sets up what it needs: a fresh clone only needs `make run` or `make test`, and the
# two may start together. scripts/bootstrap.py (plain python3) creates $(VENV) under a lock and
# installs the locked versions (uv.lock) of what the extras a target names need, picking the
# torch build for this machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA_DIR ?= ../shared/datasets
ROUNDS ?= 5
MODELS ?= mnist mnist-cnn mnist-reference
DURATION ?= 1800
SETUP := $(PYTHON) scripts/bootstrap.py env --venv $(VENV)

.PHONY: run test test-system test-stress soak lint lock proto train detector samples bench bench-grpc bench-peers bench-robust bench-train clean

run:  ## serve the model repository models/ on http://127.0.0.1:8000
	@$(SETUP)
	$(BIN)/python -m app

test:  ## lint, then the fast offline test suite
	@$(SETUP) train dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

test-system:  ## slow suites: browser, load, fuzz, deployment files, then the Docker smoke test (root: installs Debian packages)
	@$(SETUP) train dev system-test
	scripts/system-deps.sh
	$(BIN)/python -m pytest -m system
	scripts/docker-smoke.sh

test-stress:  ## the fast suite in ROUNDS rounds of two copies at once beside a CPU hog, then under other torch kernel sets
	@$(SETUP) train dev
	scripts/stress-suite.sh $(ROUNDS)

soak:  ## the service with 2 workers under mixed load and version swaps for DURATION seconds, checked against bounds (root: installs wrk)
	@$(SETUP) train dev
	scripts/system-deps.sh wrk
	$(BIN)/python bench/soak.py --duration $(DURATION) $(ARGS)

lock:  ## resolve uv.lock again from pyproject.toml (ARGS="--upgrade" for the newest allowed), and docker/requirements.txt
	$(PYTHON) scripts/bootstrap.py lock $(ARGS)

proto:  ## compile app/protocols/grpc/inference.proto into the descriptor set the gRPC door loads
	@$(SETUP) dev
	$(BIN)/python -m grpc_tools.protoc -I. --descriptor_set_out=app/protocols/grpc/inference.binpb app/protocols/grpc/inference.proto

lint:
	@$(SETUP) train dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

train:  ## train a new version: models/mnist-reference/<next> (ARGS="--recipe robust" for models/mnist/<next>)
	@$(SETUP) train dev
	$(BIN)/python -m training $(ARGS)

detector:  ## train the digit detector and publish it with the next version of each model in MODELS (DATA_DIR, else dataset/)
	@$(SETUP) train dev
	$(BIN)/python -m training.detector --data-dir $(DATA_DIR) $(foreach model,$(MODELS),--model $(model)) $(ARGS)

samples:  ## write samples/0.png ... samples/9.png and the gate's canary set from the MNIST test set (DATA_DIR, else dataset/)
	@$(SETUP) train dev
	$(BIN)/python scripts/make_samples.py --data-dir $(DATA_DIR)

bench:  ## serving benchmark: /predict vs a bare endpoint with wrk (root: installs wrk)
	@$(SETUP) train dev
	scripts/system-deps.sh wrk
	$(BIN)/python bench/serve_bench.py

bench-grpc:  ## the Open Inference Protocol over gRPC against REST on one worker, with h2load (root: installs it)
	@$(SETUP) train dev
	scripts/system-deps.sh h2load
	$(BIN)/python bench/grpc_bench.py $(ARGS)

bench-peers:  ## /predict against KServe, TorchServe and LitServe serving the same network, with wrk (root: installs wrk)
	@$(SETUP) train dev
	scripts/system-deps.sh wrk
	$(BIN)/python bench/peers_bench.py $(ARGS)

bench-robust:  ## predictions on MNIST test digits redrawn as people draw, write and photograph them
	@$(SETUP) train dev
	$(BIN)/python bench/robust_bench.py

bench-train:  ## classic DataLoader loop vs in-memory loop, side by side
	@$(SETUP) train dev
	$(BIN)/python bench/train_bench.py --data-dir $(DATA_DIR)

clean:  ## remove what set-up, tests and a failed download left; keeps dataset/ if it holds MNIST
	rm -rf $(VENV) .venv-tools .pytest_cache .ruff_cache .hypothesis *.egg-info artifacts bench/.work
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	-find dataset -depth -type d -empty -delete 2>/dev/null
