"""The committed weights: accuracy on the real test set, checksum, and the input contract."""

import json

import torch
from torchvision import transforms

from mnist_core.contract import pixels_to_input
from mnist_core.files import file_sha256, metadata_path_for
from tests.conftest import MNIST_DIR, SHIPPED_WEIGHTS
from training.cli import main as training_main
from training.evaluate import evaluate


def test_shipped_weights_match_their_recorded_sha256():
    metadata = json.loads(metadata_path_for(SHIPPED_WEIGHTS).read_text())
    assert metadata["weights"]["sha256"] == file_sha256(SHIPPED_WEIGHTS)


def test_shipped_model_reaches_97_percent_on_the_real_test_set(mnist_test_split, reference_model):
    evaluation = evaluate(reference_model, pixels_to_input(mnist_test_split.images), mnist_test_split.labels)
    assert evaluation.total == 10_000
    assert evaluation.accuracy >= 97.0
    recorded = json.loads(metadata_path_for(SHIPPED_WEIGHTS).read_text())["test"]
    assert evaluation.correct == recorded["correct"]
    assert evaluation.confusion.tolist() == recorded["confusion_matrix"]


def test_contract_equals_torchvision_to_tensor_then_flatten(mnist_test_split):
    images = mnist_test_split.images[:500]
    to_tensor = transforms.ToTensor()
    classic = torch.stack([to_tensor(image.numpy()).reshape(-1) for image in images])
    assert torch.equal(pixels_to_input(images), classic)


def test_the_default_command_reproduces_the_shipped_accuracy(mnist_test_split, tmp_path, capsys):
    """`python -m training --data-dir ../shared/datasets --no-download`, written to a scratch folder."""
    assert training_main(["--data-dir", str(MNIST_DIR), "--no-download", "--out", str(tmp_path), "--quiet"]) == 0
    retrained = json.loads((tmp_path / "model.json").read_text())["test"]["accuracy"]
    shipped = json.loads(metadata_path_for(SHIPPED_WEIGHTS).read_text())["test"]["accuracy"]
    assert abs(retrained - shipped) <= 0.3
    assert f"with accuracy {retrained:.2f}" in capsys.readouterr().out
