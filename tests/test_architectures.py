"""Architectures declared by a version: each built as declared, its weights checked, its serving form exact."""

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from app.inference.classifier import DigitClassifier, ModelLoadError, load_classifier
from mnist_core.architectures import (
    ARCHITECTURES,
    CONVOLUTIONAL,
    FEED_FORWARD,
    ArchitectureError,
    DeclaredNetwork,
    declared_network,
)
from mnist_core.contract import INPUT_SIZE, pixels_to_input
from mnist_core.detector import DIGIT_DETECTOR
from mnist_core.files import file_sha256
from mnist_core.serving import ModuleScores
from tests.helpers import REPO_ROOT

CPU = torch.device("cpu")
SMALL_CONVNET = DeclaredNetwork(CONVOLUTIONAL, {"channels": [4, 8], "hidden_size": 16})
EXAMPLES = {
    FEED_FORWARD.name: DeclaredNetwork(FEED_FORWARD, {"hidden_size": 50}),
    CONVOLUTIONAL.name: DeclaredNetwork(CONVOLUTIONAL, {"channels": [16, 32], "hidden_size": 64}),
}
# Every network a version may hold, with its serving form: the classifiers and the digit detector.
SERVED_NETWORKS = {**EXAMPLES, DIGIT_DETECTOR.name: DeclaredNetwork(DIGIT_DETECTOR, {"hidden_size": 512})}


def _network(declared: DeclaredNetwork, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return declared.build().eval().requires_grad_(False)


def _write_version(folder: Path, state_dict: Any, architecture: Any) -> Path:
    """A version folder holding `state_dict`, declared as `architecture`, with a matching sha256."""
    folder.mkdir(parents=True)
    weights = folder / "model.pt"
    torch.save(state_dict, weights)
    metadata = {"format_version": 1, "architecture": architecture, "weights": {"sha256": file_sha256(weights)}}
    (folder / "model.json").write_text(json.dumps(metadata))
    return weights


def _load(weights: Path) -> DigitClassifier:
    return load_classifier(weights, "cpu", name="test", version=1)


def test_every_architecture_has_an_example_here():
    assert set(EXAMPLES) == set(ARCHITECTURES)


@pytest.mark.parametrize("name", sorted(SERVED_NETWORKS))
@pytest.mark.parametrize("batch", [1, 7, 64])
def test_each_serving_form_gives_the_modules_scores(name: str, batch: int):
    declared = SERVED_NETWORKS[name]
    network = _network(declared)
    inputs = np.random.default_rng(batch).random((batch, INPUT_SIZE), dtype=np.float32)
    served = declared.architecture.serving_form(network, CPU)(inputs)
    assert served.dtype == np.float32
    np.testing.assert_allclose(served, ModuleScores(network, CPU)(inputs), rtol=0, atol=1e-5)


def test_a_declared_convnet_version_is_built_checked_and_served(tmp_path: Path):
    network = _network(SMALL_CONVNET, seed=3)
    weights = _write_version(tmp_path / "1", network.state_dict(), SMALL_CONVNET.declaration(network))
    classifier = _load(weights)
    assert classifier.info.network == SMALL_CONVNET
    digits = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    expected = ModuleScores(network, CPU)(digits.reshape(5, INPUT_SIZE).astype(np.float32) / 255)
    np.testing.assert_allclose(classifier.probabilities_of_inputs(pixels_to_input(digits)), expected, rtol=0, atol=1e-5)


def test_a_version_declaring_an_unknown_architecture_is_refused(tmp_path: Path):
    network = _network(EXAMPLES["NeuralNetwork"])
    weights = _write_version(tmp_path / "1", network.state_dict(), {"class": "Transformer", "parameters": {}})
    with pytest.raises(ModelLoadError, match=r"model\.json: architecture 'Transformer' is not known; known "):
        _load(weights)


@pytest.mark.parametrize(
    ("declared", "weights_of", "message"),
    [
        (SMALL_CONVNET, EXAMPLES["NeuralNetwork"], "expected a state_dict with keys ['conv1.weight', 'conv1.bias'"),
        (
            EXAMPLES["NeuralNetwork"],
            DeclaredNetwork(FEED_FORWARD, {"hidden_size": 10}),
            "fc1.weight has shape (10, 784), expected (50, 784) for a 784 -> 50 -> ReLU -> 10 network",
        ),
        (
            SMALL_CONVNET,
            DeclaredNetwork(CONVOLUTIONAL, {"channels": [2, 8], "hidden_size": 16}),
            "conv1.weight has shape (2, 1, 5, 5), expected (4, 1, 5, 5)",
        ),
    ],
    ids=["other-architecture", "other-hidden-size", "other-channels"],
)
def test_weights_that_are_not_the_declared_networks_are_refused(
    tmp_path: Path, declared: DeclaredNetwork, weights_of: DeclaredNetwork, message: str
):
    state_dict = _network(weights_of).state_dict()
    weights = _write_version(tmp_path / "1", state_dict, declared.declaration(declared.build()))
    with pytest.raises(ModelLoadError, match=r"model\.pt: " + re.escape(message)):
        _load(weights)


def test_weights_of_another_dtype_are_refused(tmp_path: Path):
    declared = EXAMPLES["NeuralNetwork"]
    state_dict = {key: value.double() for key, value in _network(declared).state_dict().items()}
    weights = _write_version(tmp_path / "1", state_dict, declared.declaration(declared.build()))
    with pytest.raises(ModelLoadError, match=r"fc1\.weight holds torch\.float64, expected torch\.float32"):
        _load(weights)


@pytest.mark.parametrize(
    ("declaration", "message"),
    [
        ({"class": "ConvNet", "parameters": {"hidden_size": 64}}, "takes the parameters ['channels', 'hidden_size']"),
        ({"class": "ConvNet", "parameters": {"channels": [4, 8], "hidden_size": 16, "depth": 3}}, "declared ['chan"),
        ({"class": "NeuralNetwork", "parameters": {"hidden_size": -3}}, "do not build a NeuralNetwork"),
        ({"class": "ConvNet", "parameters": {"channels": "wide", "hidden_size": 16}}, "do not build a ConvNet"),
        ("NeuralNetwork", 'its "architecture" must be a JSON object'),
    ],
    ids=["missing", "unknown", "negative", "not-a-pair", "not-an-object"],
)
def test_parameters_that_do_not_build_the_architecture_are_refused(tmp_path: Path, declaration, message: str):
    weights = _write_version(tmp_path / "1", _network(EXAMPLES["NeuralNetwork"]).state_dict(), declaration)
    with pytest.raises(ModelLoadError, match=re.escape(message)):
        _load(weights)


def test_versions_written_before_parameters_were_recorded_still_read():
    shipped = json.loads((REPO_ROOT / "models" / "mnist" / "1" / "model.json").read_text())["architecture"]
    legacy = {key: value for key, value in shipped.items() if key != "parameters"} | {"hidden_size": 50}
    assert declared_network(legacy, None) == DeclaredNetwork(FEED_FORWARD, {"hidden_size": 50})


def test_a_lone_weights_file_is_the_feed_forward_network_as_wide_as_its_weights():
    state_dict = _network(DeclaredNetwork(FEED_FORWARD, {"hidden_size": 12})).state_dict()
    assert declared_network(None, state_dict) == DeclaredNetwork(FEED_FORWARD, {"hidden_size": 12})


def test_a_declaration_is_what_training_writes_and_reads_back():
    network = _network(SMALL_CONVNET)
    declaration = json.loads(json.dumps(SMALL_CONVNET.declaration(network)))
    assert declaration["state_dict_keys"] == list(network.state_dict())
    assert declared_network(declaration, None) == SMALL_CONVNET
    with pytest.raises(ArchitectureError):
        declared_network({"class": None}, None)


def _write_calibrated_version(folder: Path, declared: DeclaredNetwork, network: torch.nn.Module, calibration) -> Path:
    weights = _write_version(folder, network.state_dict(), declared.declaration(network))
    metadata = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps({**metadata, "calibration": calibration}))
    return weights


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_the_served_softmax_divides_the_logits_by_the_recorded_temperature(tmp_path: Path, name: str):
    declared = EXAMPLES[name]
    network = _network(declared, seed=5)
    classifier = _load(_write_calibrated_version(tmp_path / "1", declared, network, {"temperature": 2.5}))
    assert classifier.info.temperature == 2.5
    inputs = np.random.default_rng(1).random((9, INPUT_SIZE), dtype=np.float32)
    expected = torch.softmax(network(torch.from_numpy(inputs)) / 2.5, dim=1).numpy()
    served = classifier.probabilities_of_inputs(inputs)
    np.testing.assert_allclose(served, expected, rtol=0, atol=1e-5)
    assert served.argmax(axis=1).tolist() == expected.argmax(axis=1).tolist()


@pytest.mark.parametrize("temperature", [0, -1.5, "hot", None, True, float("inf")])
def test_a_temperature_that_is_not_a_positive_number_is_refused(tmp_path: Path, temperature):
    declared = EXAMPLES["NeuralNetwork"]
    weights = _write_calibrated_version(tmp_path / "1", declared, _network(declared), {"temperature": temperature})
    with pytest.raises(ModelLoadError, match=r"calibration\.temperature must be a positive number"):
        _load(weights)
