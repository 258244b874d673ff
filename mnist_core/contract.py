"""The input contract: how a 28x28 8-bit digit becomes the 784-vector the network reads.

Training applies `pixels_to_input` to the whole MNIST split and the service applies it to every
uploaded image after normalising it to 28x28, so the two can never drift apart. The maths is
exactly torchvision's `ToTensor` followed by a row-major flatten: float32(pixel) / 255.
"""

import torch

IMAGE_SIDE = 28
INPUT_SIZE = IMAGE_SIDE * IMAGE_SIDE
NUM_CLASSES = 10

CONTRACT_DESCRIPTION = {
    "image": f"{IMAGE_SIDE}x{IMAGE_SIDE} 8-bit grayscale, white digit on black (as MNIST)",
    "scaling": "float32(pixel) / 255, so values lie in [0, 1]",
    "layout": f"row-major flatten to {INPUT_SIZE} values",
    "normalisation": "none beyond /255 (no mean/std)",
}


def pixels_to_input(pixels: torch.Tensor) -> torch.Tensor:
    """Map uint8 images shaped (..., 28, 28) to float32 network inputs shaped (..., 784)."""
    if pixels.dtype != torch.uint8 or tuple(pixels.shape[-2:]) != (IMAGE_SIDE, IMAGE_SIDE):
        raise ValueError(
            f"expected uint8 pixels shaped (..., {IMAGE_SIDE}, {IMAGE_SIDE}), got {pixels.dtype} {tuple(pixels.shape)}"
        )
    return pixels.reshape(*pixels.shape[:-2], INPUT_SIZE).to(torch.float32).div(255)
