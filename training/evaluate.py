"""Test-set evaluation: overall accuracy, per-class accuracy and the confusion matrix."""

from dataclasses import dataclass

import torch
from torch import nn

from mnist_core.contract import NUM_CLASSES


@dataclass(frozen=True)
class Evaluation:
    correct: int
    total: int
    confusion: torch.Tensor  # int64 (10, 10): rows are true labels, columns predictions

    @property
    def accuracy(self) -> float:
        """Percent of test images classified correctly."""
        return 100.0 * self.correct / self.total

    @property
    def per_class_accuracy(self) -> list[float]:
        per_class_totals = self.confusion.sum(dim=1).clamp(min=1)
        return (100.0 * self.confusion.diagonal() / per_class_totals).tolist()


@torch.inference_mode()
def predict_classes(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """Class indices for float inputs shaped (N, 784), on the inputs' device."""
    was_training = model.training
    model.eval()
    predictions = model(inputs).argmax(dim=1)
    model.train(was_training)
    return predictions


def evaluate(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> Evaluation:
    device = next(model.parameters()).device
    predictions = predict_classes(model, inputs.to(device)).cpu()
    confusion = torch.bincount(labels * NUM_CLASSES + predictions, minlength=NUM_CLASSES * NUM_CLASSES).reshape(
        NUM_CLASSES, NUM_CLASSES
    )
    return Evaluation(correct=int((predictions == labels).sum()), total=len(labels), confusion=confusion)


def format_report(evaluation: Evaluation) -> str:
    """The reference's summary line, then per-class accuracy and the confusion matrix."""
    lines = [f"Got {evaluation.correct} / {evaluation.total} with accuracy {evaluation.accuracy:.2f}"]
    lines.append("per-class accuracy:")
    for digit, accuracy in enumerate(evaluation.per_class_accuracy):
        lines.append(f"  {digit}: {accuracy:6.2f} %  ({int(evaluation.confusion[digit].sum())} images)")
    lines.append("confusion matrix (rows: true label, columns: prediction):")
    lines.append("      " + "".join(f"{digit:>6}" for digit in range(NUM_CLASSES)))
    for digit, row in enumerate(evaluation.confusion.tolist()):
        lines.append(f"  {digit:>2}  " + "".join(f"{count:>6}" for count in row))
    return "\n".join(lines)
