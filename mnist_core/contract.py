"""The input contract: how a 28x28 8-bit digit becomes the 784-vector the network reads.

Training applies `pixels_to_input` to the whole MNIST split and the service applies it to every
uploaded image after normalising it to 28x28, so the two can never drift apart. The maths is
exactly torchvision's `ToTensor` followed by a row-major flatten: float32(pixel) / 255 (IEEE
division, correctly rounded, so numpy and torch give the same bits).

A model may add steps to its contract, recorded in its metadata (`input_contract.steps`) and
applied by `network_inputs` to every input it reads, in training and in the service alike,
including 784-vectors that clients prepared themselves. The only step so far is `deskew`.
"""

from collections.abc import Mapping
from typing import Any

import numpy as np

IMAGE_SIDE = 28
INPUT_SIZE = IMAGE_SIDE * IMAGE_SIDE
NUM_CLASSES = 10

CONTRACT_DESCRIPTION = {
    "image": f"{IMAGE_SIDE}x{IMAGE_SIDE} 8-bit grayscale, white digit on black (as MNIST)",
    "scaling": "float32(pixel) / 255, so values lie in [0, 1]",
    "layout": f"row-major flatten to {INPUT_SIZE} values",
    "normalisation": "none beyond /255 (no mean/std)",
}


def pixels_to_input(pixels: np.ndarray) -> np.ndarray:
    """Map uint8 images shaped (..., 28, 28) to float32 network inputs shaped (..., 784)."""
    if pixels.dtype != np.uint8 or pixels.shape[-2:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise ValueError(
            f"expected uint8 pixels shaped (..., {IMAGE_SIDE}, {IMAGE_SIDE}), got {pixels.dtype} {pixels.shape}"
        )
    return pixels.reshape(*pixels.shape[:-2], INPUT_SIZE).astype(np.float32) / np.float32(255)


DESKEW = "deskew"
# A skew is a column shift per row; beyond 45 degrees it is not a slanted digit but a lying one.
MAX_SKEW = 1.0
DESKEW_DESCRIPTION = (
    "each row shifted sideways, with linear interpolation, by skew x (row - centre row), where skew is "
    "the covariance of row and column over the variance of row (pixel values as weights), clamped to "
    f"+-{MAX_SKEW}: the digit's principal axis becomes vertical and its centre row stays in place"
)

_ROW_INDEX = np.arange(IMAGE_SIDE, dtype=np.float64)
_rows, _cols = np.divmod(np.arange(INPUT_SIZE, dtype=np.float64), IMAGE_SIDE)
# One product with these columns gives each digit's mass, first and second moments at once. In
# float64 the sums of pixel-made inputs (k / 255 in float32, times whole numbers up to 729) are
# exact whatever order BLAS adds them in, so a digit deskews to the same bits alone or in a batch.
_MOMENT_WEIGHTS = np.stack([np.ones_like(_rows), _rows, _cols, _rows * _rows, _rows * _cols], axis=1)
# Rows are laid in a zero-filled band this wide, so a shift of up to a whole row either way (the
# most MAX_SKEW allows) reads zeros beyond the digit. Each row reads a window of source pixels one
# longer than itself: the last is what its last pixel interpolates towards.
_PAD = IMAGE_SIDE + 1
_PADDED_SIDE = IMAGE_SIDE + 2 * _PAD
_WINDOW = IMAGE_SIDE + 1
_WINDOW_STARTS = _PADDED_SIDE - _WINDOW + 1
_ROW_NUMBERS = np.arange(IMAGE_SIDE)[None, :]


def deskew(inputs: np.ndarray) -> np.ndarray:
    """float32 inputs (N, 784) in [0, 1] -> the same digits with their slant removed.

    This is the second-moment deskewing of the MNIST benchmark tables (LeCun et al.): a shear that
    makes the covariance of row and column zero. Vectorised over the batch: the same few numpy calls
    whatever N is, so a digit costs less in a batch than alone. Blank inputs come back blank;
    inputs must be finite.
    """
    count = inputs.shape[0]
    moments = inputs.astype(np.float64) @ _MOMENT_WEIGHTS  # mass, sums of row, column, row^2, row x column
    centre_row = moments[:, 1:2] / np.maximum(moments[:, 0:1], 1e-6)
    spread = moments[:, 3:5] - moments[:, 1:3] * centre_row  # mass x (variance of row, covariance)
    skew = (spread[:, 1:2] / np.maximum(spread[:, 0:1], 1e-6)).clip(-MAX_SKEW, MAX_SKEW)
    shifts = skew * (_ROW_INDEX - centre_row)  # (N, 28): where each row reads from, in columns
    whole = np.floor(shifts)
    fraction = (shifts - whole).astype(np.float32)[:, :, None]
    padded = np.zeros((count, IMAGE_SIDE, _PADDED_SIDE), dtype=np.float32)
    padded[:, :, _PAD : _PAD + IMAGE_SIDE] = inputs.reshape(count, IMAGE_SIDE, IMAGE_SIDE)
    # Every window of every padded row, as a strided view of `padded`; each row then takes its own
    # window, which numpy copies in runs of pixels rather than pixel by pixel as a flat index would.
    windows = np.ndarray(
        (count, IMAGE_SIDE, _WINDOW_STARTS, _WINDOW), np.float32, padded, 0, padded.strides + padded.strides[2:]
    )
    window = windows[np.arange(count)[:, None], _ROW_NUMBERS, whole.astype(np.intp) + _PAD]
    left = window[..., :-1]
    deskewed = window[..., 1:] - left
    deskewed *= fraction
    deskewed += left
    return deskewed.reshape(count, INPUT_SIZE)


_STEPS = {DESKEW: deskew}
_STEP_DESCRIPTIONS = {DESKEW: DESKEW_DESCRIPTION}


def input_steps(contract: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The steps a model's recorded `input_contract` asks for, checked: an unknown one is a ValueError."""
    steps = tuple((contract or {}).get("steps", ()))
    unknown = [step for step in steps if step not in _STEPS]
    if unknown:
        raise ValueError(f"unknown input contract step(s) {unknown}; this version knows {sorted(_STEPS)}")
    return steps


def network_inputs(inputs: np.ndarray, contract: Mapping[str, Any] | None) -> np.ndarray:
    """float32 inputs (N, 784) in [0, 1] -> what the network reads, by the model's recorded contract.

    A model whose contract names no steps (the reference) reads `inputs` unchanged, at no cost.
    """
    for step in input_steps(contract):
        inputs = _STEPS[step](inputs)
    return inputs


def describe_contract(steps: tuple[str, ...]) -> dict[str, Any]:
    """The `input_contract` recorded in a model's metadata."""
    if not steps:
        return dict(CONTRACT_DESCRIPTION)
    return {**CONTRACT_DESCRIPTION, "steps": list(steps), **{step: _STEP_DESCRIPTIONS[step] for step in steps}}
