"""The training package on a tiny generated dataset: loading, the loop, determinism, outputs."""

import json
import struct
from pathlib import Path

import pytest
import torch
from torch import nn

from mnist_core.contract import pixels_to_input
from mnist_core.files import file_sha256
from mnist_core.network import NeuralNetwork
from training.cli import main as training_main
from training.data import DatasetError, expected_files, load_mnist, raw_folder
from training.train import TrainConfig, train


class ReferenceNeuralNetwork(nn.Module):
    """The reference design, verbatim: weights saved by this project must load into it unchanged."""

    def __init__(self, input_size: int, num_classes: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(input_size, 50)
        self.fc2 = nn.Linear(50, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(nn.functional.relu(self.fc1(x)))


def test_reference_shape_check():
    model = NeuralNetwork(784, 10)
    assert model(torch.rand(64, 784)).shape == (64, 10)


def test_tiny_dataset_loads_through_torchvision(tiny_mnist: Path):
    train_split, test_split = load_mnist(tiny_mnist, download=False)
    assert train_split.images.shape == (512, 28, 28)
    assert train_split.images.dtype == torch.uint8
    assert test_split.labels.shape == (128,)
    assert test_split.labels.dtype == torch.int64
    assert int(train_split.images.max()) == 255


def test_a_few_epochs_lower_the_loss(tiny_mnist: Path):
    train_split, test_split = load_mnist(tiny_mnist, download=False)
    result = train(train_split, test_split, TrainConfig(epochs=3), torch.device("cpu"))
    losses = [epoch.loss for epoch in result.epochs]
    assert losses[2] < losses[0]
    assert result.epochs[-1].test_accuracy > 50.0  # ten classes: chance is 10 %


def test_same_seed_gives_identical_weights_and_another_seed_does_not(tiny_mnist: Path):
    splits = load_mnist(tiny_mnist, download=False)
    runs = [train(*splits, TrainConfig(epochs=2, seed=seed), torch.device("cpu")).model for seed in (7, 7, 8)]
    first, same, other = (run.state_dict() for run in runs)
    assert all(torch.equal(first[key], same[key]) for key in first)
    assert not torch.equal(first["fc1.weight"], other["fc1.weight"])


def test_cli_writes_every_output_and_they_round_trip(tiny_mnist: Path, tmp_path: Path, capsys):
    out = tmp_path / "models"
    exit_code = training_main(
        ["--data-dir", str(tiny_mnist), "--no-download", "--out", str(out), "--epochs", "2", "--quiet"]
    )
    assert exit_code == 0
    printed = capsys.readouterr().out
    assert "Got " in printed
    assert " / 128 with accuracy " in printed
    assert sorted(path.name for path in out.iterdir()) == [
        "confusion.png",
        "model.json",
        "model.pt",
        "predictions.png",
        "training_curve.png",
    ]  # and no temporary files left behind
    metadata = json.loads((out / "model.json").read_text())
    assert metadata["weights"]["sha256"] == file_sha256(out / "model.pt")
    assert metadata["hyperparameters"] == {
        "optimizer": "Adam",
        "learning_rate": 0.001,
        "batch_size": 64,
        "epochs": 2,
        "loss": "cross-entropy",
        "shuffle": "reshuffled every epoch",
    }
    assert [epoch["epoch"] for epoch in metadata["epochs"]] == [1, 2]
    assert sum(map(sum, metadata["test"]["confusion_matrix"])) == 128
    assert metadata["architecture"]["state_dict_keys"] == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]

    state_dict = torch.load(out / "model.pt", weights_only=True)
    reference = ReferenceNeuralNetwork(784, 10)
    reference.load_state_dict(state_dict)  # strict: same keys, same shapes
    ours = NeuralNetwork()
    ours.load_state_dict(state_dict)
    inputs = pixels_to_input(load_mnist(tiny_mnist, download=False)[1].images)
    assert torch.equal(reference(inputs), ours(inputs))
    assert f"{metadata['test']['accuracy']:.2f}" in printed


def test_no_download_with_missing_files_names_the_folder_and_files(tmp_path: Path, capsys):
    exit_code = training_main(["--data-dir", str(tmp_path / "empty"), "--no-download", "--quiet"])
    assert exit_code == 2
    message = capsys.readouterr().err.strip()
    assert message.count("\n") == 0
    assert str(raw_folder(tmp_path / "empty")) in message
    assert all(name in message for name in expected_files())


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda data: data[: len(data) // 2], "is truncated"),
        (lambda data: data[:10], "shorter than its 16-byte header"),
        (lambda data: struct.pack(">I", 0x0801) + data[4:], "magic number 0x00000801"),
        (lambda data: data + b"\0" * 784, "longer than its header says"),
    ],
    ids=["half-missing", "header-cut", "wrong-magic", "trailing-bytes"],
)
def test_damaged_idx_file_gives_a_clear_error(tiny_mnist: Path, capsys, damage, expected):
    images_file = raw_folder(tiny_mnist) / "train-images-idx3-ubyte"
    images_file.write_bytes(damage(images_file.read_bytes()))
    with pytest.raises(DatasetError, match=expected):
        load_mnist(tiny_mnist, download=False)
    assert training_main(["--data-dir", str(tiny_mnist), "--no-download", "--quiet"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ")
    assert str(images_file) in error
    assert "Traceback" not in error


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit):
        training_main(["--help"])
    help_text = capsys.readouterr().out
    for option in (
        "--data-dir",
        "--no-download",
        "--out",
        "--epochs",
        "--batch-size",
        "--lr",
        "--hidden-size",
        "--seed",
        "--device",
        "--threads",
        "--quiet",
    ):
        assert option in help_text


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_asking_for_cuda_without_it_is_a_one_line_error(tiny_mnist: Path, capsys):
    assert training_main(["--data-dir", str(tiny_mnist), "--no-download", "--device", "cuda", "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == "error: device 'cuda' requested but CUDA is not available on this machine"
