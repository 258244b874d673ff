"""The digit detector: a version's second network, loaded and checked with it, and the verdict it gives."""

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from app.inference.classifier import DigitClassifier, ModelLoadError, load_classifier, split_assessment
from app.repository.gate import CanarySet
from app.repository.layout import scan_repository
from app.repository.registry import ModelRepository
from mnist_core.contract import pixels_to_input
from mnist_core.detector import DETECTOR_FILENAME
from mnist_core.files import file_sha256
from tests.conftest import make_client
from tests.helpers import REPO_ROOT, png_of, served_version, train_args
from tests.test_gate import GATE
from tests.test_observability import _samples, _value
from training.cli import main as training_main
from training.data import load_mnist
from training.detector import DetectorConfig, publish_with_detector, train_detector
from training.nondigits import KINDS, non_digits

MODELS = REPO_ROOT / "models"
# The shipped models; the version each serves by default carries a detector.
WITH_DETECTOR = ("mnist", "mnist-cnn", "mnist-reference")
SAMPLE_DIGITS = np.stack([np.asarray(Image.open(REPO_ROOT / "samples" / f"{digit}.png")) for digit in range(10)])
NOISE = np.random.default_rng(0).integers(0, 256, (4, 28, 28), dtype=np.uint8)
CHECKERBOARD = (np.kron(np.indices((4, 4)).sum(axis=0) % 2, np.ones((7, 7))) * 255).astype(np.uint8)


def _shipped(model: str) -> Path:
    """The version of `model` served by default (its newest), which carries a detector."""
    return MODELS / model / served_version(model)


def _load(folder: Path) -> DigitClassifier:
    return load_classifier(folder / "model.pt", "cpu", name="mnist", version=1)


def _digit_probabilities(classifier: DigitClassifier, pixels: np.ndarray) -> np.ndarray:
    return split_assessment(classifier.assess_inputs(pixels_to_input(pixels)))[1]


def _copy_with_detector(tmp_path: Path, change: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """A copy of mnist's version with a detector as version 1 of a repository, its "detector" changed by `change`."""
    folder = tmp_path / "mnist" / "1"
    shutil.copytree(_shipped("mnist"), folder)
    if change is not None:
        metadata = json.loads((folder / "model.json").read_text())
        change(metadata["detector"])
        (folder / "model.json").write_text(json.dumps(metadata))
    return folder


@pytest.mark.parametrize("model", WITH_DETECTOR)
def test_every_shipped_model_has_a_detector_that_keeps_the_canary_digits(model):
    classifier = _load(_shipped(model))
    assert classifier.detector is not None
    kept = ~classifier.turned_away(_digit_probabilities(classifier, CanarySet.load().images))
    # Its threshold keeps 99.3 % of training digits it never saw; the canary digits are test digits.
    assert kept.mean() >= 0.98


def test_the_served_detector_keeps_at_least_99_percent_of_the_mnist_test_digits(mnist_test_split):
    """The issue's bar for the threshold, placed on training digits, checked on the test set: it
    keeps 99.19 % here, so a CPU that rounds a few near-threshold digits the other way stays above."""
    classifier = _load(_shipped("mnist"))
    kept = ~classifier.turned_away(_digit_probabilities(classifier, mnist_test_split.images.numpy()))
    assert kept.mean() >= 0.99


def test_the_samples_are_digits_and_noise_and_a_checkerboard_are_not():
    """Every probability is at least 3 times away from the threshold, so no machine's rounding turns a verdict."""
    classifier = _load(_shipped("mnist"))
    threshold = classifier.detector.threshold
    samples = _digit_probabilities(classifier, SAMPLE_DIGITS)
    assert (samples > 5 * threshold).all(), samples
    others = _digit_probabilities(classifier, np.concatenate([NOISE, CHECKERBOARD[None]]))
    assert (others < threshold / 3).all(), others


def _verdict_count(client, verdict: str) -> float:
    """mnist_prediction_verdicts_total for the served mnist version (the registry is the test process's:
    read a difference)."""
    return _value(
        _samples(client),
        "mnist_prediction_verdicts_total",
        model="mnist",
        version=served_version("mnist"),
        verdict=verdict,
    )


def test_predict_says_not_a_digit_and_still_gives_the_scores():
    with make_client() as client:
        before = _verdict_count(client, "not_a_digit")
        answer = client.post("/predict?model=mnist", files={"file": ("board.png", png_of(CHECKERBOARD))}).json()
        digit = client.post("/predict?model=mnist", files={"file": ("7.png", png_of(SAMPLE_DIGITS[7]))}).json()
        counted = _verdict_count(client, "not_a_digit") - before
    assert (answer["verdict"], answer["version"], len(answer["scores"])) == (
        "not_a_digit",
        int(served_version("mnist")),
        10,
    )
    assert answer["confidence"] == answer["scores"][answer["class"]]
    assert answer["digit_probability"] < 0.5
    assert (digit["verdict"], digit["class"]) == ("digit", 7)
    assert digit["digit_probability"] > 0.5
    assert counted == 1


def test_a_version_without_a_detector_turns_nothing_away():
    with make_client(model_versions="mnist=1+2") as client:
        answer = client.post(
            "/predict?model=mnist&version=1", files={"file": ("board.png", png_of(CHECKERBOARD))}
        ).json()
    assert (answer["version"], answer["digit_probability"]) == (1, None)
    assert answer["verdict"] in ("digit", "unsure")


def test_a_confidence_under_unsure_below_is_answered_unsure():
    blend = (SAMPLE_DIGITS[4].astype(np.uint16) + SAMPLE_DIGITS[9]) // 2  # half a 4, half a 9
    with make_client(unsure_below=1.0) as client:
        before = _verdict_count(client, "unsure")
        answer = client.post("/predict?model=mnist", files={"file": ("49.png", png_of(blend.astype(np.uint8)))}).json()
        counted = _verdict_count(client, "unsure") - before
    assert answer["confidence"] < 1.0
    assert answer["verdict"] == "unsure"
    assert counted == 1


def _missing(folder: Path) -> None:
    (folder / DETECTOR_FILENAME).unlink()


def _other_bytes(folder: Path) -> None:
    torch.save({"fc1.weight": torch.zeros(512, 784)}, folder / DETECTOR_FILENAME)


def _wrong_shape(folder: Path) -> None:
    """A detector 784-8-2 where model.json declares 512 hidden units, with its sha256 recorded."""
    state_dict = {
        "fc1.weight": torch.zeros(8, 784),
        "fc1.bias": torch.zeros(8),
        "fc2.weight": torch.zeros(2, 8),
        "fc2.bias": torch.zeros(2),
    }
    torch.save(state_dict, folder / DETECTOR_FILENAME)
    metadata = json.loads((folder / "model.json").read_text())
    metadata["detector"]["weights"]["sha256"] = file_sha256(folder / DETECTOR_FILENAME)
    (folder / "model.json").write_text(json.dumps(metadata))


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (_missing, "detector.pt: the detector model.json declares is not there"),
        (_other_bytes, "does not match"),
        (_wrong_shape, "fc1.weight has shape (8, 784), expected (512, 784)"),
    ],
    ids=["missing", "sha256-mismatch", "wrong-shape"],
)
def test_a_broken_detector_file_is_refused_with_the_reason(tmp_path, breakage, message):
    folder = _copy_with_detector(tmp_path)
    breakage(folder)
    with pytest.raises(ModelLoadError) as refused:
        _load(folder)
    assert message in str(refused.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda detector: detector["architecture"].update({"class": "Forest"}), "known architectures: DigitDetector"),
        (lambda detector: detector.update(threshold=1.5), "detector.threshold must be a number from 0 to 1"),
        (lambda detector: detector.update(threshold="low"), "detector.threshold must be a number from 0 to 1"),
    ],
    ids=["unknown-architecture", "threshold-over-1", "threshold-not-a-number"],
)
def test_a_detector_declaration_that_does_not_hold_is_refused(tmp_path, change, message):
    with pytest.raises(ModelLoadError) as refused:
        _load(_copy_with_detector(tmp_path, change))
    assert message in str(refused.value)


def test_the_gate_refuses_a_detector_that_turns_digits_away(tmp_path):
    _copy_with_detector(tmp_path, lambda detector: detector.update(threshold=1.0))
    repository = ModelRepository(lambda: scan_repository(tmp_path), "cpu", "mnist", GATE)
    repository.refresh()
    assert repository.served == {}
    [refusal] = repository.refusals["mnist"]
    assert "canary accuracy 0.0 % is below GATE_MIN_ACCURACY=90 %" in refusal.reason


def test_the_non_digit_generator_is_deterministic_and_takes_the_kinds_in_turn():
    first, again = non_digits(2 * len(KINDS), seed=5), non_digits(2 * len(KINDS), seed=5)
    assert (first.shape, first.dtype) == ((2 * len(KINDS), 28, 28), np.uint8)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, non_digits(2 * len(KINDS), seed=6))


def test_training_publishes_the_next_version_with_the_detector_and_the_service_loads_it(tmp_path, tiny_mnist):
    repository = tmp_path / "models"
    shutil.copytree(MODELS / "mnist" / "1", repository / "mnist" / "1")
    train_split, test_split = load_mnist(tiny_mnist, download=False)
    config = DetectorConfig(hidden_size=8, epochs=1, non_digits=600, held_out_digits=100)
    trained = train_detector(train_split, test_split, config)
    published = publish_with_detector(repository, "mnist", trained, config)

    assert published == repository / "mnist" / "2"
    assert sorted(path.name for path in published.iterdir()) == sorted(
        [*(path.name for path in (MODELS / "mnist" / "1").iterdir()), DETECTOR_FILENAME]
    )
    assert (published / "model.pt").read_bytes() == (MODELS / "mnist" / "1" / "model.pt").read_bytes()
    declared = json.loads((published / "model.json").read_text())["detector"]
    assert declared["architecture"]["class"] == "DigitDetector"
    assert declared["architecture"]["parameters"] == {"hidden_size": 8}
    assert declared["weights"]["sha256"] == file_sha256(published / DETECTOR_FILENAME)
    assert declared["threshold"] == trained.threshold
    assert set(declared["measured"]["held_out_non_digits_turned_away"]) == set(KINDS)
    classifier = load_classifier(published / "model.pt", "cpu", name="mnist", version=2)
    assert (classifier.detector.threshold, classifier.detector.sha256) == (
        trained.threshold,
        declared["weights"]["sha256"],
    )
    # The threshold keeps the held-out share of the digits it was placed on.
    held_out = train_split.hold_out(config.held_out_digits, config.seed)[1]
    kept = ~classifier.turned_away(_digit_probabilities(classifier, held_out.images.numpy()))
    assert kept.mean() >= config.keep_share - 1 / config.held_out_digits


def test_a_retrained_network_carries_an_existing_versions_detector_over(tmp_path, tiny_mnist):
    source = MODELS / "mnist" / "2"
    out = tmp_path / "mnist" / "3"
    assert training_main(train_args(tiny_mnist, "--detector-from", str(source), "--out", str(out))) == 0

    assert (out / DETECTOR_FILENAME).read_bytes() == (source / DETECTOR_FILENAME).read_bytes()
    carried = json.loads((out / "model.json").read_text())["detector"]
    assert carried == json.loads((source / "model.json").read_text())["detector"]
    classifier = load_classifier(out / "model.pt", "cpu", name="retrained", version=1)
    assert (classifier.detector.threshold, classifier.detector.sha256) == (
        carried["threshold"],
        carried["weights"]["sha256"],
    )


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("1", "--detector-from {source}: no detector to carry over"),
        ("tampered", "--detector-from {source}: detector.pt does not match the sha256 model.json records for it"),
    ],
)
def test_carrying_a_detector_over_from_a_version_without_a_sound_one_is_refused_before_training(
    tmp_path, tiny_mnist, capsys, source, expected
):
    folder = MODELS / "mnist" / source
    if source == "tampered":
        folder = tmp_path / "tampered"
        shutil.copytree(MODELS / "mnist" / "2", folder)
        (folder / DETECTOR_FILENAME).write_bytes(b"not the detector")
    out = tmp_path / "out"
    assert training_main(train_args(tiny_mnist, "--detector-from", str(folder), "--out", str(out))) == 2
    assert expected.format(source=folder) in capsys.readouterr().err
    assert not out.exists()
