"""The served form of the network: built from the same module's weights, it gives the module's scores."""

import numpy as np
import pytest
import torch

from app.inference.classifier import load_classifier
from mnist_core.contract import network_inputs, pixels_to_input
from tests.helpers import REPO_ROOT

MODELS = REPO_ROOT / "models"


@pytest.mark.parametrize("model", ["mnist", "mnist-reference"])
@pytest.mark.parametrize("batch", [1, 3, 64])
def test_the_served_scores_are_the_modules_after_the_models_contract(model, batch):
    classifier = load_classifier(MODELS / model / "1" / "model.pt", "cpu", name=model, version=1)
    digits = np.random.default_rng(batch).integers(0, 256, size=(batch, 28, 28), dtype=np.uint8)
    inputs = pixels_to_input(digits)
    with torch.inference_mode():
        prepared = torch.from_numpy(network_inputs(inputs, classifier.contract))
        expected = torch.softmax(classifier.network(prepared), dim=1).numpy()
    np.testing.assert_allclose(classifier.probabilities_of_inputs(inputs), expected, rtol=0, atol=1e-5)
