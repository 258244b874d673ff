"""`python -m training`: train the MNIST network by a recipe, evaluate it and publish a model version."""

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import torch
from tqdm import tqdm

from mnist_core.device import DeviceUnavailableError, resolve_device
from mnist_core.files import MODEL_NAME_PATTERN, WEIGHTS_FILENAME
from training import plots
from training.artifacts import build_metadata, save_weights, write_metadata
from training.calibrate import Calibration, calibrate
from training.data import DatasetError, MnistSplit, load_mnist
from training.detector import CarriedDetector, carried_detector
from training.evaluate import Evaluation, evaluate, format_report, predict_classes
from training.recipes import RECIPES, REFERENCE
from training.train import EpochResult, TrainConfig, TrainResult, contract_inputs, train
from training.versions import (
    VersionFolderError,
    check_destination,
    publish,
    publish_as_next_version,
    staging_folder,
)

# Where `make train` keeps things: the repository's own dataset/ and models/, wherever this runs from.
REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = REPOSITORY_ROOT / "dataset"
DEFAULT_MODEL_REPOSITORY = REPOSITORY_ROOT / "models"


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default once: not for flags, nor where the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.nargs == 0 or "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train an MNIST network by a recipe (the 784-50-10 network or a small CNN), evaluate it on "
        "the 10,000 test images and publish the weights, their metadata and plots as a new version folder of the "
        "model repository (models/<model>/<version>/), written in one step.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument(
        "--recipe",
        choices=sorted(RECIPES),
        default=REFERENCE.name,
        help="; ".join(f"{recipe.name}: {recipe.summary}" for recipe in RECIPES.values()),
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="folder holding MNIST/raw/ (torchvision's layout) (default: dataset/ in this repository, where "
        "`make train` downloads it)",
    )
    parser.add_argument(
        "--no-download", action="store_true", help="never touch the network; fail if the MNIST files are missing"
    )
    output = parser.add_argument_group("where the model version goes")
    output.add_argument(
        "--repository",
        type=Path,
        default=DEFAULT_MODEL_REPOSITORY,
        help="the model repository, <model>/<version>/ folders (default: models/ in this repository)",
    )
    output.add_argument(
        "--model",
        default=None,
        help="model name in the repository; a new version folder, numbered one above its highest, is written "
        f"for it (default: the recipe's: {', '.join(f'{r.model_name} for {r.name}' for r in RECIPES.values())})",
    )
    output.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"write exactly this version folder instead ({WEIGHTS_FILENAME}, model.json and the plots), "
        "for example models/mnist/2",
    )
    output.add_argument("--force", action="store_true", help="replace the --out folder if it already exists")
    output.add_argument(
        "--detector-from",
        type=Path,
        default=None,
        metavar="VERSION_FOLDER",
        help="publish the digit detector of this version (for example models/mnist/2) unchanged beside the new "
        "network (default: none; `python -m training.detector` trains one)",
    )
    hyper = parser.add_argument_group("overriding the recipe (the defaults are the recipe's)")
    hyper.add_argument("--epochs", type=_positive_int, default=None, help="passes over the training set")
    hyper.add_argument("--batch-size", type=_positive_int, default=None, help="images per step")
    hyper.add_argument("--lr", type=float, default=None, help="Adam's (starting) learning rate")
    hyper.add_argument(
        "--calibration-digits",
        type=_non_negative_int,
        default=None,
        help="training digits held out, picked by --seed, to fit the served temperature on (0: none, "
        "the temperature stays 1)",
    )
    hyper.add_argument(
        "--hidden-size", type=_positive_int, default=None, help="width of the fully connected hidden layer (fc1)"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=TrainConfig().seed,
        help="seeds initialisation, shuffling and augmentation: same seed and device, same weights",
    )
    parser.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="where to train; auto picks CUDA when available",
    )
    parser.add_argument(
        "--threads", type=_positive_int, default=None, help="CPU threads for torch (default: torch's own choice)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    return parser


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


class _Progress:
    """A tqdm bar per epoch showing the running loss, closed with the epoch's test accuracy."""

    def __init__(self, epochs: int) -> None:
        self._epochs = epochs
        self._bar: tqdm | None = None

    def on_step(self, epoch: int, step: int, steps: int, running_loss: float) -> None:
        if self._bar is None:
            self._bar = tqdm(total=steps, desc=f"epoch {epoch}/{self._epochs}", unit="step", leave=True)
        self._bar.update(step - self._bar.n)
        self._bar.set_postfix(loss=f"{running_loss:.4f}", refresh=False)

    def on_epoch(self, result: EpochResult) -> None:
        if self._bar is not None:
            self._bar.update(self._bar.total - self._bar.n)
            self._bar.set_postfix(loss=f"{result.loss:.4f}", test_acc=f"{result.test_accuracy:.2f}%")
            self._bar.close()
            self._bar = None
        else:
            print(
                f"epoch {result.epoch}/{self._epochs}: loss {result.loss:.4f}, "
                f"test accuracy {result.test_accuracy:.2f} %, {result.seconds:.1f} s",
                file=sys.stderr,
            )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    recipe = RECIPES[args.recipe]
    try:
        destination = _destination(args, recipe.model_name)
        detector = None if args.detector_from is None else carried_detector(args.detector_from)
        device = resolve_device(args.device)
        train_split, test_split = load_mnist(args.data_dir, download=not args.no_download)
    except (DeviceUnavailableError, DatasetError, VersionFolderError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    config = _config(recipe.config, args)
    if config.calibration_digits >= len(train_split):
        print(
            f"error: --calibration-digits {config.calibration_digits} leaves nothing to train on "
            f"(the training set has {len(train_split)} digits)",
            file=sys.stderr,
        )
        return 2
    train_split, held_out = train_split.hold_out(config.calibration_digits, config.seed)
    progress = None if args.quiet else _Progress(config.epochs)
    result = train(
        train_split,
        test_split,
        config,
        device,
        on_progress=progress and progress.on_step,
        on_epoch=progress and progress.on_epoch,
    )

    test_inputs = contract_inputs(test_split.inputs(), config.input_steps)
    evaluation = evaluate(result.model, test_inputs, test_split.labels)
    print(format_report(evaluation))
    print(f"trained by the {recipe.name} recipe, {config.epochs} epochs on {device} in {result.train_seconds:.1f} s")
    calibration = None
    if len(held_out):
        held_out_inputs = contract_inputs(held_out.inputs(), config.input_steps)
        calibration = calibrate(result.model, (held_out_inputs, held_out.labels), (test_inputs, test_split.labels))
        before, after = calibration.test_ece
        print(
            f"temperature {calibration.temperature:.3f} fitted on {len(held_out)} held-out training digits: "
            f"test ECE {before:.2f} % -> {after:.2f} %"
        )

    model_folder = args.repository / (args.model or recipe.model_name) if destination is None else destination.parent
    try:
        with staging_folder(model_folder) as staging:
            sha256 = _write_outputs(
                staging, recipe.name, config, result, evaluation, calibration, detector, test_split, test_inputs
            )
            if destination is not None:
                publish(staging, destination, force=args.force)
            else:
                destination = publish_as_next_version(staging, model_folder.parent, model_folder.name)
    except VersionFolderError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {destination}/: {WEIGHTS_FILENAME} (sha256 {sha256}), model.json and plots")
    return 0


def _write_outputs(
    folder: Path,
    recipe: str,
    config: TrainConfig,
    result: TrainResult,
    evaluation: Evaluation,
    calibration: Calibration | None,
    detector: CarriedDetector | None,
    test_split: MnistSplit,
    test_inputs: torch.Tensor,
) -> str:
    """The weights, their metadata, the detector carried over if any, and the pictures (a reliability
    diagram when calibrated), into `folder`; returns the weights' sha256."""
    device = next(result.model.parameters()).device
    weights_path = folder / WEIGHTS_FILENAME
    sha256 = save_weights(result.model, weights_path)
    metadata = build_metadata(recipe, config, result, evaluation, calibration, device, weights_path, sha256)
    if detector is not None:
        detector.write_into(folder)
        metadata["detector"] = detector.declaration
    write_metadata(weights_path, metadata)
    predictions = predict_classes(result.model, test_inputs.to(device)).cpu()
    plots.save_figure(
        plots.predictions_figure(test_split.images, test_split.labels, predictions, config.seed),
        folder / "predictions.png",
    )
    plots.save_figure(plots.training_curve_figure(result.epochs), folder / "training_curve.png")
    plots.save_figure(plots.confusion_figure(evaluation), folder / "confusion.png")
    if calibration is not None:
        figure = plots.reliability_figure(calibration.test_logits, test_split.labels, calibration.temperature)
        plots.save_figure(figure, folder / "reliability.png")
    return sha256


def _destination(args: argparse.Namespace, default_model: str) -> Path | None:
    """The --out folder, checked now rather than after training; None means the next version."""
    if args.out is None:
        model = args.model or default_model
        if not MODEL_NAME_PATTERN.fullmatch(model):
            raise VersionFolderError(f"--model {model!r} is not a model name (letters, digits, '.', '_', '-')")
        return None
    if args.model is not None:
        raise VersionFolderError("--out names the version folder itself; leave out --model")
    check_destination(args.out, args.force)
    return args.out


def _config(recipe_config: TrainConfig, args: argparse.Namespace) -> TrainConfig:
    """The recipe's configuration with the options given on the command line."""
    overrides = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.lr,
        "calibration_digits": args.calibration_digits,
    }
    given = {key: value for key, value in overrides.items() if value is not None}
    network = recipe_config.network
    if args.hidden_size is not None:
        network = replace(network, parameters={**network.parameters, "hidden_size": args.hidden_size})
    return replace(recipe_config, seed=args.seed, network=network, **given)
