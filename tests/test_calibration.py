"""Calibrated confidence: the temperature fitted on held-out digits, the ECE, and what training records."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import train_args
from training.calibrate import expected_calibration_error, fit_temperature, reliability_bins, untempered
from training.cli import main as training_main


def test_the_fitted_temperature_is_the_one_the_labels_were_drawn_with():
    generator = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(20_000, 10, generator=generator)
    labels = torch.multinomial(torch.softmax(logits / 2.5, dim=1), 1, generator=generator).squeeze(1)
    assert fit_temperature(logits, labels) == pytest.approx(2.5, abs=0.1)


def test_ece_is_the_digit_weighted_gap_between_accuracy_and_confidence():
    sure_and_right = np.tile([[0.8, 0.2] + [0.0] * 8], (4, 1))  # 0.8 confident, all right: gap 0.2
    labels = np.zeros(4, dtype=np.int64)
    assert expected_calibration_error(sure_and_right, labels) == pytest.approx(20.0)
    half_right = np.tile([[0.5, 0.5] + [0.0] * 8], (2, 1))  # 0.5 confident, half right: no gap
    assert expected_calibration_error(half_right, np.array([0, 1])) == pytest.approx(0.0)
    both = np.concatenate([sure_and_right, half_right])
    assert expected_calibration_error(both, np.array([0, 0, 0, 0, 0, 1])) == pytest.approx(100 * 4 * 0.2 / 6)


def test_a_confidence_on_a_bin_edge_belongs_to_the_bin_below():
    probabilities = np.array([[1 / 3, 1 / 3, 1 / 3] + [0.0] * 7, [1.0] + [0.0] * 9])
    bins = reliability_bins(probabilities, np.array([0, 0]), bins=3)
    assert [(part.digits, part.accuracy) for part in bins] == [(1, 1.0), (1, 1.0)]
    assert bins[0].mean_confidence == pytest.approx(1 / 3)


def test_training_holds_digits_out_fits_a_temperature_and_draws_its_reliability(tiny_mnist: Path, tmp_path: Path):
    out = tmp_path / "calibrated"
    assert training_main(train_args(tiny_mnist, "--calibration-digits", "100", "--out", str(out))) == 0
    calibration = json.loads((out / "model.json").read_text())["calibration"]
    assert calibration["temperature"] > 0
    assert calibration["fitted_on"] == "100 training digits held out from training"
    assert set(calibration["test_ece_percent"]) == {"before", "after"}
    assert (out / "reliability.png").is_file()
    uncalibrated = tmp_path / "plain"
    assert training_main(train_args(tiny_mnist, "--out", str(uncalibrated))) == 0
    assert json.loads((uncalibrated / "model.json").read_text())["calibration"] is None
    assert not (uncalibrated / "reliability.png").exists()


def test_holding_out_every_training_digit_is_refused(tiny_mnist: Path, tmp_path: Path, capsys):
    assert training_main(train_args(tiny_mnist, "--calibration-digits", "512", "--out", str(tmp_path / "v"))) == 2
    assert (
        "--calibration-digits 512 leaves nothing to train on (the training set has 512 digits)"
        in capsys.readouterr().err
    )


@pytest.mark.parametrize("temperature", [0.7, 1.0, 1.3, 2.5])
def test_served_scores_give_back_the_untempered_softmax(temperature: float):
    logits = 4 * torch.randn(500, 10, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    served = torch.softmax(logits / temperature, dim=1).float().numpy()
    np.testing.assert_allclose(untempered(served, temperature), torch.softmax(logits, dim=1).numpy(), atol=1e-5)


def test_reliability_bins_between_given_edges():
    confidences = [0.5, 0.8, 0.85, 0.99]
    probabilities = np.array([[c, 1 - c] + [0.0] * 8 for c in confidences])
    bins = reliability_bins(probabilities, np.array([0, 1, 0, 0]), bins=[0.0, 0.8, 0.95, 1.0])
    assert [(part.lower, part.upper, part.digits, part.accuracy) for part in bins] == [
        (0.0, 0.8, 2, 0.5),
        (0.8, 0.95, 1, 1.0),
        (0.95, 1.0, 1, 1.0),
    ]
