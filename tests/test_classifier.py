"""The served graph is the network: traced from the same module, it gives the module's scores."""

import numpy as np
import pytest
import torch

from app.inference.classifier import load_classifier
from mnist_core.contract import pixels_to_input
from tests.conftest import SHIPPED_WEIGHTS


@pytest.fixture(scope="module")
def classifier():
    return load_classifier(SHIPPED_WEIGHTS, "cpu", name="mnist", version=1)


@torch.inference_mode()
def _module_scores(classifier, inputs: torch.Tensor) -> np.ndarray:
    return torch.softmax(classifier.network(inputs), dim=1).numpy()


@pytest.mark.parametrize("batch", [1, 3, 64])
def test_the_traced_graphs_give_the_modules_scores(classifier, batch):
    digits = np.random.default_rng(batch).integers(0, 256, size=(batch, 28, 28), dtype=np.uint8)
    expected = _module_scores(classifier, pixels_to_input(torch.from_numpy(digits)))
    np.testing.assert_allclose(classifier.probabilities(digits), expected, rtol=0, atol=1e-6)
    inputs = pixels_to_input(torch.from_numpy(digits)).numpy()
    np.testing.assert_allclose(classifier.probabilities_of_inputs(inputs), expected, rtol=0, atol=1e-6)
