"""`python -m training`: train the classic MNIST network, evaluate it and write its files."""

import argparse
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from mnist_core.contract import pixels_to_input
from mnist_core.device import DeviceUnavailableError, resolve_device
from mnist_core.files import WEIGHTS_FILENAME
from training import plots
from training.artifacts import build_metadata, save_weights, write_metadata
from training.data import DatasetError, load_mnist
from training.evaluate import evaluate, format_report, predict_classes
from training.train import EpochResult, TrainConfig, train

DEFAULTS = TrainConfig()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train the 784-50-10 MNIST network with the reference recipe, evaluate it on the "
        "10,000 test images and write the weights, their metadata and plots.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--data-dir", type=Path, default=Path("dataset"), help="folder holding MNIST/raw/ (torchvision's layout)"
    )
    parser.add_argument(
        "--no-download", action="store_true", help="never touch the network; fail if the MNIST files are missing"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("models"),
        help=f"folder for {WEIGHTS_FILENAME}, its .json metadata and the plots",
    )
    parser.add_argument("--epochs", type=_positive_int, default=DEFAULTS.epochs, help="passes over the training set")
    parser.add_argument("--batch-size", type=_positive_int, default=DEFAULTS.batch_size, help="images per step")
    parser.add_argument("--lr", type=float, default=DEFAULTS.learning_rate, help="Adam learning rate")
    parser.add_argument(
        "--hidden-size", type=_positive_int, default=DEFAULTS.hidden_size, help="width of the hidden layer (fc1)"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULTS.seed,
        help="seeds initialisation and shuffling: same seed and device, same weights",
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
    try:
        device = resolve_device(args.device)
        train_split, test_split = load_mnist(args.data_dir, download=not args.no_download)
    except (DeviceUnavailableError, DatasetError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        hidden_size=args.hidden_size,
        seed=args.seed,
    )
    progress = None if args.quiet else _Progress(config.epochs)
    result = train(
        train_split,
        test_split,
        config,
        device,
        on_progress=progress and progress.on_step,
        on_epoch=progress and progress.on_epoch,
    )

    test_inputs = pixels_to_input(test_split.images)
    evaluation = evaluate(result.model, test_inputs, test_split.labels)
    print(format_report(evaluation))
    print(f"trained {config.epochs} epochs on {device} in {result.train_seconds:.1f} s")

    weights_path = args.out / WEIGHTS_FILENAME
    sha256 = save_weights(result.model, weights_path)
    metadata_path = write_metadata(
        weights_path, build_metadata(config, result, evaluation, device, weights_path, sha256)
    )
    predictions = predict_classes(result.model, test_inputs.to(device)).cpu()
    plots.save_figure(
        plots.predictions_figure(test_split.images, test_split.labels, predictions, config.seed),
        args.out / "predictions.png",
    )
    plots.save_figure(plots.training_curve_figure(result.epochs), args.out / "training_curve.png")
    plots.save_figure(plots.confusion_figure(evaluation), args.out / "confusion.png")
    print(f"wrote {weights_path} (sha256 {sha256}), {metadata_path} and plots in {args.out}/")
    return 0
