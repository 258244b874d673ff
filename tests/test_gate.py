"""The gate: each version classifies the canary set when it loads, and a broken or much weaker one is not served."""

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from app.inference.classifier import ModelLoadError
from app.repository.gate import CanarySet, Gate
from app.repository.layout import scan_repository
from app.repository.registry import ModelRepository
from app.settings import Settings
from mnist_core.files import file_sha256
from tests.conftest import MNIST_DIR, make_client
from tests.helpers import REPO_ROOT
from training.cli import main as training_main

SHIPPED = REPO_ROOT / "models"
DEFAULTS = Settings()
GATE = Gate(CanarySet.load(), DEFAULTS.gate_min_accuracy, DEFAULTS.gate_max_accuracy_drop)
StateDict = dict[str, torch.Tensor]


def _repository(root: Path) -> ModelRepository:
    repository = ModelRepository(lambda: scan_repository(root), "cpu", "mnist", GATE)
    repository.refresh()
    return repository


def _served(repository: ModelRepository) -> dict[str, list[int]]:
    return {name: list(model.versions) for name, model in repository.served.items()}


def _add_version(root: Path, version: int, source: Path = SHIPPED / "mnist" / "1") -> Path:
    folder = root / "mnist" / str(version)
    shutil.copytree(source, folder)
    return folder


def _rewrite_weights(folder: Path, change: Callable[[StateDict], StateDict]) -> None:
    """New weights in place, with the sha256 in model.json updated to match, as a real writer would."""
    weights = folder / "model.pt"
    torch.save(change(torch.load(weights, weights_only=True)), weights)
    metadata = json.loads((folder / "model.json").read_text())
    metadata["weights"]["sha256"] = file_sha256(weights)
    (folder / "model.json").write_text(json.dumps(metadata))


def _zeros(state_dict: StateDict) -> StateDict:
    return {key: torch.zeros_like(value) for key, value in state_dict.items()}


def _shuffled(state_dict: StateDict) -> StateDict:
    generator = torch.Generator().manual_seed(0)
    return {
        key: value.flatten()[torch.randperm(value.numel(), generator=generator)].reshape(value.shape)
        for key, value in state_dict.items()
    }


def _labels_permuted(state_dict: StateDict) -> StateDict:
    """Each output row moved to the next digit: a network trained against labels shifted by one."""
    rows = torch.roll(torch.arange(10), 1)
    return {**state_dict, "fc2.weight": state_dict["fc2.weight"][rows], "fc2.bias": state_dict["fc2.bias"][rows]}


def _narrower(state_dict: StateDict) -> StateDict:
    """A 784-10-10 network (its model.json still declares 50 hidden units)."""
    torch.manual_seed(0)
    return {key: torch.randn(shape) for key, shape in (("fc1.weight", (10, 784)), ("fc1.bias", (10,)))} | {
        "fc2.weight": torch.randn(10, 10),
        "fc2.bias": torch.randn(10),
    }


@pytest.mark.parametrize(
    ("breakage", "reason"),
    [
        (_zeros, "canary accuracy 10.0 % is below GATE_MIN_ACCURACY=90 %"),
        (_shuffled, "is below GATE_MIN_ACCURACY=90 %"),
        (_labels_permuted, "is below GATE_MIN_ACCURACY=90 %"),
        (_narrower, "fc1.weight has shape (10, 784), expected (50, 784)"),
    ],
    ids=["zero", "shuffled", "labels-permuted", "wrong-hidden-size"],
)
def test_a_broken_new_version_is_refused_within_one_poll_and_the_served_one_stays(tmp_path, breakage, reason):
    _add_version(tmp_path, 1)
    repository = _repository(tmp_path)
    _rewrite_weights(_add_version(tmp_path, 2), breakage)
    repository.refresh()
    assert _served(repository) == {"mnist": [1]}
    [refusal] = repository.refusals["mnist"]
    assert (refusal.version, reason in refusal.reason) == (2, True), refusal.reason


def test_a_broken_only_version_stops_the_start_with_the_gates_reason(tmp_path):
    _rewrite_weights(_add_version(tmp_path, 1), _labels_permuted)
    refused = pytest.raises(ModelLoadError, match=r"canary accuracy [0-9.]+ % is below GATE_MIN_ACCURACY=90 %")
    with refused, make_client(model_repository=tmp_path):
        pass


def test_every_shipped_version_passes_and_reports_its_canary_accuracy():
    with make_client() as client:
        models = client.get("/models").json()["models"]
    accuracies = {model["name"]: model["versions"][0]["canary_accuracy"] for model in models}
    assert set(accuracies) == {"mnist", "mnist-cnn", "mnist-reference"}
    assert all(DEFAULTS.gate_min_accuracy <= accuracy <= 100 for accuracy in accuracies.values()), accuracies
    assert all(model["refused"] == [] for model in models)


@pytest.fixture(scope="module")
def weak_version(tmp_path_factory, mnist_test_split) -> Path:
    """An honest model trained for one epoch: the reference recipe stopped early."""
    folder = tmp_path_factory.mktemp("weak") / "1"
    arguments = ["--data-dir", str(MNIST_DIR), "--no-download", "--epochs", "1", "--out", str(folder), "--quiet"]
    assert training_main(arguments) == 0
    return folder


def test_a_weak_version_is_refused_as_a_replacement_but_served_where_it_replaces_nothing(tmp_path, weak_version):
    _add_version(tmp_path, 1)
    repository = _repository(tmp_path)
    _add_version(tmp_path, 2, weak_version)
    repository.refresh()
    assert _served(repository) == {"mnist": [1]}
    reason = repository.refusals["mnist"][0].reason
    assert "points below the" in reason
    assert "of version 1, which it would replace (GATE_MAX_ACCURACY_DROP=1.5)" in reason

    alone = tmp_path / "alone"
    _add_version(alone, 1, weak_version)
    only = _repository(alone)
    assert _served(only) == {"mnist": [1]}
    assert DEFAULTS.gate_min_accuracy <= only.resolve(None, None).canary_accuracy < 97


def test_the_canary_set_is_what_the_script_picks_from_the_test_set(tmp_path, mnist_test_split):
    written = tmp_path / "canary.npz"
    command = [sys.executable, "scripts/make_samples.py", "--data-dir", str(MNIST_DIR)]
    command += ["--out", str(tmp_path / "samples"), "--canary-out", str(written)]
    subprocess.run(command, cwd=REPO_ROOT, check=True, capture_output=True, timeout=120)
    shipped, rewritten = CanarySet.load(), CanarySet.load(written)
    assert np.array_equal(shipped.images, rewritten.images)
    assert np.array_equal(shipped.labels, rewritten.labels)
    assert np.bincount(shipped.labels).tolist() == [100] * 10
    images = mnist_test_split.images.numpy()
    # Every canary digit is a test digit with its own label (the set never saw training data).
    positions = {image.tobytes(): index for index, image in enumerate(images)}
    indices = [positions[image.tobytes()] for image in shipped.images]
    assert mnist_test_split.labels.numpy()[indices].tolist() == shipped.labels.tolist()
