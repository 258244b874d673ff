"""Calibrated confidence: a temperature fitted on digits held out from training, and how far off confidence is.

Temperature scaling (Guo et al., 2017) divides the logits by one number T before the softmax: the
class never changes, and a T above 1 tempers an overconfident network. T is fitted on digits the
network never trained on (a share of the training set held out by the recipe), by minimising their
cross-entropy; the test set stays untouched for measuring.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

ECE_BINS = 15


@dataclass(frozen=True)
class Calibration:
    temperature: float
    held_out_digits: int
    held_out_ece: tuple[float, float]  # percent, before and after
    test_ece: tuple[float, float]  # percent, before and after
    test_logits: torch.Tensor  # what the test ECE was measured on, for the reliability diagram

    def describe(self) -> dict[str, Any]:
        return {
            "method": "temperature scaling: softmax(logits / temperature)",
            "temperature": round(self.temperature, 6),
            "fitted_on": f"{self.held_out_digits} training digits held out from training",
            "ece_bins": ECE_BINS,
            "held_out_ece_percent": {"before": self.held_out_ece[0], "after": self.held_out_ece[1]},
            "test_ece_percent": {"before": self.test_ece[0], "after": self.test_ece[1]},
        }


@torch.inference_mode()
def logits_of(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """The network's logits for float inputs (N, 784), on the CPU."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    logits = model(inputs.to(device)).cpu()
    model.train(was_training)
    return logits


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The T that minimises the cross-entropy of softmax(logits / T) on these labels."""
    log_temperature = torch.zeros((), requires_grad=True)  # fitted in log space, so T stays positive
    optimizer = torch.optim.LBFGS([log_temperature], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")
    logits, labels = logits.detach().double(), labels.detach()

    def loss() -> torch.Tensor:
        optimizer.zero_grad()
        value = nn.functional.cross_entropy(logits / log_temperature.exp(), labels)
        value.backward()
        return value

    optimizer.step(loss)
    return float(log_temperature.detach().exp())


@dataclass(frozen=True)
class ReliabilityBin:
    lower: float  # the bin holds confidences above this
    upper: float  # and up to this
    mean_confidence: float
    accuracy: float
    digits: int


def reliability_bins(
    probabilities: np.ndarray, labels: np.ndarray, bins: int | Sequence[float] = ECE_BINS
) -> list[ReliabilityBin]:
    """The non-empty confidence bins, `bins` equal-width ones or those between the given edges (0 to 1):
    a bin holds the confidences in (lower edge, upper edge]."""
    edges = np.linspace(0.0, 1.0, bins + 1) if isinstance(bins, int) else np.asarray(bins, dtype=np.float64)
    confidences = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    which = np.clip(np.searchsorted(edges, confidences, side="left") - 1, 0, len(edges) - 2)
    bins_found = []
    for index in range(len(edges) - 1):
        members = which == index
        if members.any():
            mean_confidence, accuracy = float(confidences[members].mean()), float(correct[members].mean())
            bins_found.append(
                ReliabilityBin(
                    float(edges[index]), float(edges[index + 1]), mean_confidence, accuracy, int(members.sum())
                )
            )
    return bins_found


def untempered(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(logits) from served softmax(logits / temperature) (N, 10): log p is logits / T plus a constant
    per row, which the softmax ignores. A probability that underflowed float32 is taken as its smallest value."""
    log_served = np.log(np.maximum(probabilities.astype(np.float64), np.finfo(np.float32).smallest_subnormal))
    scaled = temperature * log_served
    exponentials = np.exp(scaled - scaled.max(axis=1, keepdims=True))
    return exponentials / exponentials.sum(axis=1, keepdims=True)


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Percent: over the confidence bins, the digit-weighted gap between accuracy and mean confidence."""
    filled = reliability_bins(probabilities, labels, bins)
    return 100.0 * sum(part.digits * abs(part.accuracy - part.mean_confidence) for part in filled) / len(labels)


def calibrate(
    model: nn.Module, held_out: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor]
) -> Calibration:
    """Fit T on the held-out (inputs, labels) and measure the ECE before and after there and on the test set."""
    held_out_logits, test_logits = logits_of(model, held_out[0]), logits_of(model, test[0])
    temperature = fit_temperature(held_out_logits, held_out[1])

    def ece_before_and_after(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
        return tuple(
            round(expected_calibration_error(torch.softmax(logits / scale, 1).numpy(), labels.numpy()), 3)
            for scale in (1.0, temperature)
        )

    return Calibration(
        temperature=temperature,
        held_out_digits=len(held_out[1]),
        held_out_ece=ece_before_and_after(held_out_logits, held_out[1]),
        test_ece=ece_before_and_after(test_logits, test[1]),
        test_logits=test_logits,
    )
