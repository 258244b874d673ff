"""The training package on a tiny generated dataset: loading, the loop, determinism, outputs."""

import dataclasses
import json
import struct
from pathlib import Path

import pytest
import torch
from torch import nn

from mnist_core.contract import CONTRACT_DESCRIPTION, DESKEW
from mnist_core.files import file_sha256
from mnist_core.network import NeuralNetwork
from tests.helpers import REPO_ROOT, train_args
from training import cli, data, plots
from training.augment import AugmentConfig, augment
from training.cli import main as training_main
from training.data import DatasetError, expected_files, load_mnist, raw_folder
from training.recipes import CALIBRATION_DIGITS, RECIPES, ROBUST
from training.train import TrainConfig, train
from training.versions import next_version_folder


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
    assert metadata["recipe"] == "reference"
    assert metadata["hyperparameters"] == {
        "optimizer": "Adam",
        "learning_rate": 0.001,
        "lr_schedule": "constant",
        "batch_size": 64,
        "epochs": 2,
        "loss": "cross-entropy",
        "shuffle": "reshuffled every epoch",
    }
    assert metadata["augmentation"] is None
    assert metadata["input_contract"] == CONTRACT_DESCRIPTION  # no steps: the network reads pixels / 255
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data", "models"]  # no staging folder beside it
    assert [epoch["epoch"] for epoch in metadata["epochs"]] == [1, 2]
    assert sum(map(sum, metadata["test"]["confusion_matrix"])) == 128
    assert metadata["architecture"]["state_dict_keys"] == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]

    state_dict = torch.load(out / "model.pt", weights_only=True)
    reference = ReferenceNeuralNetwork(784, 10)
    reference.load_state_dict(state_dict)  # strict: same keys, same shapes
    ours = NeuralNetwork()
    ours.load_state_dict(state_dict)
    inputs = load_mnist(tiny_mnist, download=False)[1].inputs()
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


def test_help_documents_every_option_and_each_default_once(capsys):
    with pytest.raises(SystemExit):
        training_main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "(default: torch's own choice)" in help_text
    assert "(default: None)" not in help_text
    assert "(default: False)" not in help_text
    for option in (
        "--recipe",
        "--data-dir",
        "--no-download",
        "--repository",
        "--model",
        "--out",
        "--force",
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


def test_data_is_looked_for_where_make_train_downloads_it():
    assert cli.DEFAULT_DATA_DIR == REPO_ROOT / "dataset"
    assert cli.DEFAULT_MODEL_REPOSITORY == REPO_ROOT / "models"


def test_a_missing_dataset_is_one_line_with_a_true_hint(tmp_path: Path, capsys):
    assert training_main(["--data-dir", str(tmp_path), "--no-download", "--quiet"]) == 2
    message = capsys.readouterr().err
    assert message.count("\n") == 1
    assert "drop --no-download to fetch them there, or give --data-dir a folder that holds MNIST/raw/" in message


def test_a_failed_download_leaves_no_empty_dataset_folder(tmp_path: Path, monkeypatch, capsys):
    def unreachable(root: str, **_: object) -> None:
        (Path(root) / "MNIST" / "raw").mkdir(parents=True)  # as torchvision does before fetching
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(data.datasets, "MNIST", unreachable)
    assert training_main(["--data-dir", str(tmp_path / "dataset"), "--quiet"]) == 2
    assert "could not download MNIST" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_each_run_publishes_the_next_version_of_the_recipes_model(tiny_mnist: Path, tmp_path: Path, capsys):
    repository = tmp_path / "repository"
    (repository / "mnist-reference" / "7").mkdir(parents=True)  # versions need not be consecutive
    (repository / "mnist-reference" / ".staging-old").mkdir()  # a crashed writer's leftovers: not a version
    for _ in range(2):
        assert training_main(train_args(tiny_mnist, "--repository", str(repository))) == 0
    assert sorted(path.name for path in (repository / "mnist-reference").iterdir()) == [".staging-old", "7", "8", "9"]
    assert (repository / "mnist-reference" / "9" / "model.pt").is_file()
    assert f"wrote {repository / 'mnist-reference' / '9'}/" in capsys.readouterr().out
    assert next_version_folder(repository, "mnist") == repository / "mnist" / "1"


def test_an_existing_version_folder_is_refused_before_training(tiny_mnist: Path, tmp_path: Path, capsys, monkeypatch):
    version = tmp_path / "mnist" / "3"
    version.mkdir(parents=True)
    (version / "model.pt").write_bytes(b"the version being served")
    monkeypatch.setattr(cli, "train", lambda *args, **kwargs: pytest.fail("trained before checking --out"))
    assert training_main(train_args(tiny_mnist, "--out", str(version))) == 2
    assert capsys.readouterr().err == f"error: {version} already exists; pass --force to replace it\n"
    assert (version / "model.pt").read_bytes() == b"the version being served"


def test_force_replaces_a_version_folder_whole_and_nothing_else(tiny_mnist: Path, tmp_path: Path, capsys):
    version = tmp_path / "mnist" / "3"
    version.mkdir(parents=True)
    (version / "model.pt").write_bytes(b"old weights")
    (version / "notes.txt").write_text("only in the old version")
    assert training_main(train_args(tiny_mnist, "--out", str(version), "--force")) == 0
    assert sorted(path.name for path in version.iterdir()) == [
        "confusion.png",
        "model.json",
        "model.pt",
        "predictions.png",
        "training_curve.png",
    ]
    assert json.loads((version / "model.json").read_text())["weights"]["sha256"] == file_sha256(version / "model.pt")
    assert [path.name for path in version.parent.iterdir()] == ["3"]  # no staging or old copy left

    not_a_version = tmp_path / "documents"
    not_a_version.mkdir()
    assert training_main(train_args(tiny_mnist, "--out", str(not_a_version), "--force")) == 2
    assert "is not a model version folder" in capsys.readouterr().err


def test_the_version_folder_appears_only_when_complete(tiny_mnist: Path, tmp_path: Path, monkeypatch):
    """Every file is written into a hidden sibling first; the version's name appears in one rename."""
    version = tmp_path / "mnist" / "1"
    seen = []
    save_figure = plots.save_figure

    def watching_save_figure(figure, path: Path) -> None:
        seen.append((path.parent.name, version.exists()))
        save_figure(figure, path)

    monkeypatch.setattr(plots, "save_figure", watching_save_figure)
    assert training_main(train_args(tiny_mnist, "--out", str(version))) == 0
    assert len(seen) == 3
    assert all(folder.startswith(".") and not visible for folder, visible in seen)
    assert (version / "training_curve.png").is_file()


def test_robust_recipe_records_its_augmentation_contract_and_schedule(tiny_mnist: Path, tmp_path: Path):
    out = tmp_path / "robust"
    # The recipe holds out more calibration digits than the tiny set has; the command line overrides it.
    assert (
        training_main(train_args(tiny_mnist, "--recipe", "robust", "--calibration-digits", "100", "--out", str(out)))
        == 0
    )
    metadata = json.loads((out / "model.json").read_text())
    assert metadata["recipe"] == "robust"
    assert metadata["hyperparameters"]["lr_schedule"] == "cosine"
    assert metadata["hyperparameters"]["batch_size"] == ROBUST.config.batch_size
    assert metadata["hyperparameters"]["epochs"] == 1  # the command line overrides the recipe
    augmentation = json.loads(json.dumps(AugmentConfig(low_resolution_probability=0.3).describe()))
    assert metadata["augmentation"] == {**augmentation, "seed": 1}
    assert metadata["calibration"]["fitted_on"] == "100 training digits held out from training"
    assert metadata["input_contract"]["steps"] == [DESKEW]
    assert metadata["seed"] == 0


def test_the_robust_recipe_holds_out_its_calibration_digits_by_default(tiny_mnist: Path, tmp_path: Path, capsys):
    assert training_main(train_args(tiny_mnist, "--recipe", "robust", "--out", str(tmp_path / "v"))) == 2
    assert f"--calibration-digits {CALIBRATION_DIGITS} leaves nothing to train on" in capsys.readouterr().err


def test_robust_training_is_deterministic(tiny_mnist: Path):
    splits = load_mnist(tiny_mnist, download=False)
    configs = [dataclasses.replace(RECIPES["robust"].config, epochs=2, seed=seed) for seed in (3, 3, 4)]
    runs = [train(*splits, config, torch.device("cpu")).model for config in configs]
    first, same, other = (run.state_dict() for run in runs)
    assert all(torch.equal(first[key], same[key]) for key in first)
    assert not torch.equal(first["fc1.weight"], other["fc1.weight"])


# Every distortion of the augmentation off: the images come back as they went in.
NO_DISTORTION = AugmentConfig(
    rotation_degrees=0,
    scale_range=(1, 1),
    aspect_range=(1, 1),
    shear_degrees=0,
    shift_pixels=0,
    thickness_probability=0,
    blur_probability=0,
)


def test_augmentation_is_batched_deterministic_and_keeps_digits_in_range():
    images = torch.zeros(16, 28, 28)
    images[:, 6:22, 12:16] = 1.0  # a thick upright bar in every image
    first = augment(images, AugmentConfig(), torch.Generator().manual_seed(5))
    again = augment(images, AugmentConfig(), torch.Generator().manual_seed(5))
    assert torch.equal(first, again)
    assert first.shape == images.shape
    assert float(first.min()) >= 0.0
    assert torch.allclose(first.amax(dim=(1, 2)), torch.ones(16))
    assert not torch.equal(first[0], first[1])  # each image drawn its own distortion
    assert float((first - images).abs().mean()) > 0.01
    assert torch.allclose(augment(images, NO_DISTORTION, torch.Generator().manual_seed(5)), images, atol=1e-5)


def test_low_resolution_augmentation_coarsens_the_chosen_share_of_digits():
    images = torch.zeros(64, 28, 28)
    images[:, 6:22, 13:15] = 1.0  # a sharp two-pixel bar
    only_low_resolution = dataclasses.replace(
        NO_DISTORTION,
        low_resolution_probability=0.5,
        low_resolution_sides=(7, 7),
        low_resolution_levels=(3, 3),
    )
    first = augment(images, only_low_resolution, torch.Generator().manual_seed(5))
    assert torch.equal(first, augment(images, only_low_resolution, torch.Generator().manual_seed(5)))
    assert float(first.min()) >= 0.0
    assert torch.allclose(first.amax(dim=(1, 2)), torch.ones(64))
    changed = (first - images).abs().amax(dim=(1, 2)) > 0.05
    assert 16 <= int(changed.sum()) <= 48  # about half, as drawn
    assert torch.allclose(first[~changed], images[~changed], atol=1e-5)
    # Enlarged from 7x7, the bar's edge is a ramp spread over several pixels, not a step.
    assert bool((((first[changed] > 0.1) & (first[changed] < 0.9)).sum(dim=(1, 2)) >= 8).all())
