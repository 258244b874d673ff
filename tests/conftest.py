import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
import uvicorn
from fastapi.testclient import TestClient
from torchvision import transforms

from app.http.server import uvicorn_config
from app.main import create_app
from app.settings import Settings
from mnist_core.contract import network_inputs
from mnist_core.files import metadata_path_for
from mnist_core.network import NeuralNetwork
from tests.helpers import REPO_ROOT, synthetic_digits, write_idx_images, write_idx_labels

SHIPPED_WEIGHTS = REPO_ROOT / "models" / "mnist" / "1" / "model.pt"
# The version of `mnist` the shipped repository serves by default: calibrated, with a detector.
SERVED_MNIST_WEIGHTS = REPO_ROOT / "models" / "mnist" / "3" / "model.pt"
MNIST_DIR = Path(os.environ.get("MNIST_DATA_DIR", REPO_ROOT.parent / "shared" / "datasets"))


@pytest.fixture(scope="session")
def mnist_test_split():
    """The real MNIST test split (uint8 images, labels) from ../shared/datasets."""
    if not (MNIST_DIR / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file():
        pytest.skip(f"real MNIST not found in {MNIST_DIR} (set MNIST_DATA_DIR to its folder)")
    from training.data import load_mnist

    _, test_split = load_mnist(MNIST_DIR, download=False)
    return test_split


@pytest.fixture
def tiny_mnist(tmp_path: Path) -> Path:
    """A small learnable dataset in torchvision's MNIST layout, as real IDX files."""
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, count, seed in (("train", 512, 1), ("t10k", 128, 2)):
        images, labels = synthetic_digits(count, seed)
        write_idx_images(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx_labels(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return tmp_path / "data"


# The shipped models on the CPU, and no gRPC door unless a test opens one on a port of its own.
# Requests that name no model get `mnist`, the network whose scores reference_model computes
# without the service's code; the shipped default (mnist-cnn) has tests of its own.
IN_PROCESS = {"model_repository": REPO_ROOT / "models", "device": "cpu", "grpc_port": 0, "default_model": "mnist"}


def make_client(**overrides) -> TestClient:
    settings = Settings(**{**IN_PROCESS, **overrides})
    return TestClient(create_app(settings))


@pytest.fixture(scope="module")
def client():
    """The service with the shipped weights, its lifespan running."""
    with make_client() as test_client:
        yield test_client


@pytest.fixture(scope="session")
def reference_model() -> NeuralNetwork:
    """The served `mnist` version's weights in a plain network, loaded without any of the service's code."""
    model = NeuralNetwork()
    model.load_state_dict(torch.load(SERVED_MNIST_WEIGHTS, weights_only=True))
    return model.eval()


@torch.inference_mode()
def reference_probabilities(model: NeuralNetwork, images: torch.Tensor) -> np.ndarray:
    """Softmax scores for uint8 dataset images (N, 28, 28), prepared as torchvision's ToTensor does,
    then by the steps the `mnist` model's metadata records (its deskew), at the temperature it records."""
    to_tensor = transforms.ToTensor()
    inputs = torch.stack([to_tensor(image.numpy()).reshape(-1) for image in images])
    metadata = json.loads(metadata_path_for(SERVED_MNIST_WEIGHTS).read_text())
    logits = model(torch.from_numpy(network_inputs(inputs.numpy(), metadata["input_contract"])))
    return torch.softmax(logits / metadata["calibration"]["temperature"], dim=1).numpy()


@contextmanager
def running_server(**overrides) -> Iterator[str]:
    """The app under real uvicorn on a free 127.0.0.1 port, in a thread; yields its base URL."""
    with running_uvicorn(**overrides) as (url, _):
        yield url


@contextmanager
def running_uvicorn(**overrides) -> Iterator[tuple[str, uvicorn.Server]]:
    """running_server's server itself beside its URL, for a test that watches its connections."""
    settings = Settings(**{**IN_PROCESS, **overrides})
    config = uvicorn_config(settings.model_copy(update={"shutdown_timeout_seconds": 2}), app=create_app(settings))
    server = uvicorn.Server(config)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", server
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()


@pytest.fixture(scope="module")
def live_url():
    with running_server(max_batch=8, body_timeout_seconds=1.0) as url:
        yield url


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Leave tests/system/ out unless the run asks for it (`-m system`): its modules import the
    `system-test` extra (selenium, schemathesis), which the fast suite does not install."""
    expression = config.getoption("markexpr") or ""
    wants_system = "system" in expression and "not system" not in expression
    if collection_path.name == "system" and not wants_system:
        return True
    return None
