"""The pictures training leaves beside the weights, drawn headless with matplotlib's Agg canvas."""

import io
from pathlib import Path

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mnist_core.contract import NUM_CLASSES
from training.artifacts import atomic_write_bytes
from training.calibrate import ECE_BINS, expected_calibration_error, reliability_bins
from training.evaluate import Evaluation
from training.train import EpochResult

_CORRECT_COLOUR = "#1b7f3b"
_MISTAKE_COLOUR = "#c62828"


def save_figure(figure: Figure, path: Path) -> None:
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    atomic_write_bytes(path, buffer.getvalue())


def predictions_figure(
    images: torch.Tensor, labels: torch.Tensor, predictions: torch.Tensor, seed: int, rows: int = 2, cols: int = 5
) -> Figure:
    """A grid of random test digits titled `Label: y - Prediction: p`; mistakes are titled in red."""
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randperm(len(labels), generator=generator)[: rows * cols].tolist()
    figure = Figure(figsize=(2.4 * cols, 2.7 * rows), layout="constrained")
    figure.suptitle("Random test digits (mistakes titled in red)")
    for position, index in enumerate(picks, start=1):
        axes = figure.add_subplot(rows, cols, position)
        label, prediction = int(labels[index]), int(predictions[index])
        axes.imshow(images[index].numpy(), cmap="gray", vmin=0, vmax=255)
        axes.set_title(
            f"Label: {label} - Prediction: {prediction}",
            fontsize=9,
            color=_CORRECT_COLOUR if label == prediction else _MISTAKE_COLOUR,
            fontweight="normal" if label == prediction else "bold",
        )
        axes.set_axis_off()
    return figure


def training_curve_figure(epochs: list[EpochResult]) -> Figure:
    numbers = [epoch.epoch for epoch in epochs]
    figure = Figure(figsize=(9, 3.5), layout="constrained")
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    loss_axes.plot(numbers, [epoch.loss for epoch in epochs], marker="o")
    loss_axes.set(title="Training loss (mean cross-entropy)", xlabel="epoch", ylabel="loss")
    accuracy_axes.plot(numbers, [epoch.test_accuracy for epoch in epochs], marker="o", color="tab:green")
    accuracy_axes.set(title="Test accuracy", xlabel="epoch", ylabel="accuracy (%)")
    for axes in (loss_axes, accuracy_axes):
        axes.grid(alpha=0.3)
        axes.set_xticks(numbers)
    return figure


def confusion_figure(evaluation: Evaluation) -> Figure:
    matrix = evaluation.confusion.numpy()
    figure = Figure(figsize=(6.5, 5.5), layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes, label="test images")
    threshold = matrix.max() / 2
    for true_label in range(NUM_CLASSES):
        for predicted in range(NUM_CLASSES):
            count = matrix[true_label, predicted]
            axes.text(
                predicted,
                true_label,
                str(count),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if count > threshold else "black",
            )
    axes.set(
        title=f"Confusion matrix, test accuracy {evaluation.accuracy:.2f} %",
        xlabel="prediction",
        ylabel="true label",
        xticks=range(NUM_CLASSES),
        yticks=range(NUM_CLASSES),
    )
    return figure


def reliability_figure(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> Figure:
    """Accuracy against confidence on the test set, as trained and with the fitted temperature."""
    figure = Figure(figsize=(5.5, 5), layout="constrained")
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    for scale, name in ((1.0, "as trained"), (temperature, f"temperature {temperature:.3f}")):
        probabilities = torch.softmax(logits / scale, dim=1).numpy()
        filled = reliability_bins(probabilities, labels.numpy())
        error = expected_calibration_error(probabilities, labels.numpy())
        axes.plot(
            [part.mean_confidence for part in filled],
            [part.accuracy for part in filled],
            marker="o",
            label=f"{name} (ECE {error:.2f} %)",
        )
    axes.set(
        title=f"Reliability on the test set ({ECE_BINS} confidence bins)",
        xlabel="mean confidence in the bin",
        ylabel="accuracy in the bin",
        xlim=(0, 1.02),
        ylim=(0, 1.02),
    )
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left")
    return figure
