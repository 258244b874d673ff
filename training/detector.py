"""Training the digit detector (mnist_core.detector) and publishing it with models' next versions.

    python -m training.detector --model mnist --model mnist-cnn --model mnist-reference

trains one detector on MNIST training digits (augmented as the cnn recipe augments them, so thick,
thin, blurred and low-resolution digits count as digits) against generated non-digits
(training/nondigits.py), places its threshold so that it keeps DetectorConfig.keep_share of
training digits it never saw, and publishes, for each named model, a next version: the newest
version's files unchanged, plus detector.pt and a "detector" section in model.json. A classifier
retrained later keeps it with `python -m training --detector-from <version folder>` (carried_detector).
"""

import argparse
import hashlib
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mnist_core.architectures import DeclaredNetwork
from mnist_core.contract import IMAGE_SIDE, INPUT_SIZE, pixels_to_input
from mnist_core.detector import DETECTOR_FILENAME, DIGIT_DETECTOR, DIGIT_OUTPUT
from mnist_core.files import WEIGHTS_FILENAME, metadata_path_for, version_numbers
from training.artifacts import atomic_write_bytes, save_weights, write_metadata
from training.augment import AugmentConfig, augment
from training.data import DatasetError, MnistSplit, load_mnist
from training.nondigits import KINDS, non_digits
from training.versions import VersionFolderError, publish_as_next_version, staging_folder

DEFAULT_REPOSITORY = Path("models")
# Seeds of the generated non-digits: those trained on, and a second set held out to measure.
TRAINING_SEED = 7
HELD_OUT_SEED = 8


@dataclass(frozen=True)
class DetectorConfig:
    hidden_size: int = 512
    epochs: int = 8
    batch_size: int = 128  # digits per step
    non_digits_per_digit: int = 1  # non-digits per step, per digit
    learning_rate: float = 0.002
    non_digits: int = 120_000
    held_out_digits: int = 10_000  # training digits set aside, on which the threshold is placed
    # Of those, the share the threshold keeps. Held-out training digits and MNIST test digits keep
    # alike within about 0.2 points, so this keeps at least 99 % of test digits with a margin; each
    # point of margin costs about 3 points of non-digits turned away (the README has the figures).
    keep_share: float = 0.993
    augmentation: AugmentConfig = field(default_factory=lambda: AugmentConfig(low_resolution_probability=0.3))
    seed: int = 0

    @property
    def network(self) -> DeclaredNetwork:
        return DeclaredNetwork(DIGIT_DETECTOR, {"hidden_size": self.hidden_size})


@dataclass
class TrainedDetector:
    network: nn.Module
    threshold: float
    measured: dict[str, Any]
    train_seconds: float


def digit_probabilities(network: nn.Module, inputs: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(network(inputs), dim=1)[:, DIGIT_OUTPUT].numpy()


def train_detector(digits: MnistSplit, test: MnistSplit, config: DetectorConfig) -> TrainedDetector:
    """Train on `digits` less a held-out slice, place the threshold on that slice, measure on `test`."""
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    digits, held_out = digits.hold_out(config.held_out_digits, config.seed)
    positives = digits.inputs()
    negatives = torch.from_numpy(pixels_to_input(non_digits(config.non_digits, TRAINING_SEED)))
    network = config.network.build()
    optimizer = torch.optim.Adam(network.parameters(), lr=config.learning_rate)
    steps = len(positives) // config.batch_size
    others_per_step = config.batch_size * config.non_digits_per_digit
    if others_per_step * steps > len(negatives):
        raise ValueError(f"{len(negatives)} non-digits are too few for {steps} steps of {others_per_step}")
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.epochs * steps)
    labels = torch.cat([torch.ones(config.batch_size), torch.zeros(others_per_step)]).long()
    started = time.perf_counter()
    for _ in range(config.epochs):
        digit_order = torch.randperm(len(positives), generator=generator)
        other_order = torch.randperm(len(negatives), generator=generator)
        for step in range(steps):
            images = positives[digit_order[step * config.batch_size : (step + 1) * config.batch_size]]
            distorted = augment(images.reshape(-1, IMAGE_SIDE, IMAGE_SIDE), config.augmentation, generator)
            others = negatives[other_order[step * others_per_step : (step + 1) * others_per_step]]
            loss = nn.functional.cross_entropy(network(torch.cat([distorted.reshape(-1, INPUT_SIZE), others])), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    network.eval()
    train_seconds = time.perf_counter() - started
    threshold = float(np.quantile(digit_probabilities(network, held_out.inputs()), 1 - config.keep_share))
    return TrainedDetector(network, threshold, measure(network, threshold, test), train_seconds)


def measure(network: nn.Module, threshold: float, test: MnistSplit) -> dict[str, Any]:
    """Percent of MNIST test digits kept, and of held-out generated non-digits (another seed) turned away, by kind."""
    kept = float(np.mean(digit_probabilities(network, test.inputs()) >= threshold) * 100)
    count_per_kind = 1000
    others = digit_probabilities(
        network, torch.from_numpy(pixels_to_input(non_digits(count_per_kind * len(KINDS), HELD_OUT_SEED)))
    )
    kinds = list(KINDS)
    turned_away = {
        kind: float(np.mean(others[index :: len(kinds)] < threshold) * 100) for index, kind in enumerate(kinds)
    }
    return {
        "mnist_test_digits_kept": round(kept, 2),
        "held_out_non_digits_turned_away": {k: round(v, 1) for k, v in turned_away.items()},
    }


def detector_metadata(trained: TrainedDetector, config: DetectorConfig, sha256: str) -> dict[str, Any]:
    """What model.json records under "detector"."""
    return {
        "architecture": config.network.declaration(trained.network),
        "weights": {"file": DETECTOR_FILENAME, "sha256": sha256},
        "threshold": trained.threshold,
        "training": {
            **{key: value for key, value in asdict(config).items() if key != "augmentation"},
            "augmentation": config.augmentation.describe(),
            "non_digit_kinds": list(KINDS),
            "non_digit_seed": TRAINING_SEED,
            "train_seconds": round(trained.train_seconds, 1),
            "torch_version": torch.__version__,
        },
        "measured": trained.measured,
    }


@dataclass(frozen=True)
class CarriedDetector:
    """An existing version's detector, to publish unchanged beside a newly trained classifier."""

    weights: bytes
    declaration: dict[str, Any]  # its model.json section

    def write_into(self, folder: Path) -> None:
        atomic_write_bytes(folder / DETECTOR_FILENAME, self.weights)


def carried_detector(version: Path) -> CarriedDetector:
    """The detector of the version folder `version`, its file checked against the sha256 its model.json records."""
    metadata_path = metadata_path_for(version / WEIGHTS_FILENAME)
    try:
        declaration = json.loads(metadata_path.read_text()).get("detector")
        weights = (version / DETECTOR_FILENAME).read_bytes()
    except (OSError, ValueError, AttributeError) as error:
        raise VersionFolderError(f"--detector-from {version}: no detector to carry over ({error})") from None
    recorded = (declaration or {}).get("weights", {}).get("sha256") if isinstance(declaration, dict) else None
    if recorded != hashlib.sha256(weights).hexdigest():
        raise VersionFolderError(
            f"--detector-from {version}: {DETECTOR_FILENAME} does not match the sha256 {metadata_path.name} "
            f"records for it ({recorded!r})"
        )
    return CarriedDetector(weights, declaration)


def publish_with_detector(repository: Path, model: str, trained: TrainedDetector, config: DetectorConfig) -> Path:
    """The model's next version: its newest version's files, plus the detector. Returns the new folder."""
    versions = version_numbers(repository / model)
    if not versions:
        raise VersionFolderError(f"{repository / model} has no version to add the detector to")
    source = repository / model / str(versions[-1])
    with staging_folder(repository / model) as staging:
        for path in source.iterdir():
            if path.is_file() and path.name != DETECTOR_FILENAME:
                shutil.copy2(path, staging / path.name)
        sha256 = save_weights(trained.network, staging / DETECTOR_FILENAME)
        weights = staging / WEIGHTS_FILENAME
        metadata = json.loads(metadata_path_for(weights).read_text())
        metadata["detector"] = detector_metadata(trained, config, sha256)
        write_metadata(weights, metadata)
        return publish_as_next_version(staging, repository, model)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.detector",
        description="Train the digit detector and publish it with the next version of each model named.",
    )
    parser.add_argument("--model", action="append", required=True, help="a model of the repository (repeatable)")
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY, help="the model repository")
    parser.add_argument("--data-dir", type=Path, default=Path("dataset"), help="where MNIST is (torchvision's layout)")
    parser.add_argument("--no-download", action="store_true", help="fail rather than download MNIST")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = DetectorConfig()
    try:
        train_split, test_split = load_mnist(args.data_dir, download=not args.no_download)
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    trained = train_detector(train_split, test_split, config)
    print(f"detector trained in {trained.train_seconds:.0f} s; threshold {trained.threshold:.4f}; {trained.measured}")
    try:
        for model in args.model:
            print(f"wrote {publish_with_detector(args.repository, model, trained, config)}/")
    except VersionFolderError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
