"""What every peer serves, run inside the peer's own venv: the service's network and input contract.

`mnist_core` imports only torch, so the peers load the service's own `NeuralNetwork` and apply its
`pixels_to_input` (peers_bench.py puts `mnist_core` on PYTHONPATH); only the HTTP side differs
from one server to the next. Every peer answers `{"class", "confidence", "scores"}` as `/predict` does.
"""

import io
from typing import Any

import numpy as np
import torch
from PIL import Image

from mnist_core.contract import IMAGE_SIDE, pixels_to_input
from mnist_core.network import NeuralNetwork, hidden_size_of


def load_network(weights: str) -> NeuralNetwork:
    """The state_dict at `weights` in the service's network, on the CPU, for inference."""
    # One intra-op thread, as the service runs by default (TORCH_THREADS=1).
    torch.set_num_threads(1)
    state_dict = torch.load(weights, map_location="cpu", weights_only=True)
    network = NeuralNetwork(hidden_size=hidden_size_of(state_dict))
    network.load_state_dict(state_dict)
    return network.eval()


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes -> uint8 pixels shaped (28, 28)."""
    image = Image.open(io.BytesIO(data)).convert("L")
    if image.size != (IMAGE_SIDE, IMAGE_SIDE):
        raise ValueError(f"expected a {IMAGE_SIDE}x{IMAGE_SIDE} image, got {image.size[0]}x{image.size[1]}")
    # A copy (np.array, not np.asarray): torch.from_numpy warns about Pillow's read-only buffers.
    return np.array(image)


def classify(network: NeuralNetwork, pixels: np.ndarray) -> list[dict[str, Any]]:
    """uint8 pixels shaped (N, 28, 28) -> one `{"class", "confidence", "scores"}` per image."""
    with torch.inference_mode():
        probabilities = torch.softmax(network(torch.from_numpy(pixels_to_input(pixels))), dim=1).tolist()
    bodies = []
    for row in probabilities:
        predicted = max(range(len(row)), key=row.__getitem__)
        bodies.append({"class": predicted, "confidence": row[predicted], "scores": row})
    return bodies
