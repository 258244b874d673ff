"""Normalising any decoded image into the 28x28 white-on-black digit the network was trained on.

A 28x28 image is used pixel for pixel (only inverted if its background is light), so an MNIST
digit reaches the network exactly as in training. Any other image is normalised the way the
MNIST digits themselves were made: ink cropped, scaled with anti-aliasing to fit a 20x20 box
keeping its aspect ratio, and centred by centre of mass in a 28x28 frame.
"""

import numpy as np
from PIL import Image

from app.errors import NoInkError
from mnist_core.contract import IMAGE_SIDE

DIGIT_BOX_SIDE = 20
# Fewer grey levels than this between background and ink means there is no digit to read.
MIN_INK_CONTRAST = 32
# After stretching ink to 0-255, pixels above this bound the crop; fainter ones are
# anti-aliasing or noise around the strokes.
CROP_THRESHOLD = 40

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def to_digit_pixels(image: Image.Image) -> np.ndarray:
    """A decoded image of any accepted mode and size -> uint8 array (28, 28), white digit on black."""
    gray = grayscale(image)
    if has_light_background(gray):
        gray = 255 - gray
    if gray.shape == (IMAGE_SIDE, IMAGE_SIDE):
        if np.ptp(gray) < MIN_INK_CONTRAST:
            raise NoInkError("no digit found: the image is blank (all one shade)")
        return gray
    return normalise_like_mnist(gray)


def grayscale(image: Image.Image) -> np.ndarray:
    """8-bit luminance of any mode: 16-bit scaled down, transparency flattened onto a backdrop."""
    if image.mode in _SIXTEEN_BIT_MODES:
        wide = np.asarray(image, dtype=np.float32) / 257.0
        return np.clip(np.rint(wide), 0, 255).astype(np.uint8)
    if image.mode == "F":
        return np.clip(np.rint(np.asarray(image)), 0, 255).astype(np.uint8)
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        luminance_alpha = np.asarray(image.convert("RGBA").convert("LA"), dtype=np.float32)
        return _flatten_alpha(luminance_alpha[..., 0], luminance_alpha[..., 1] / 255.0)
    if image.mode != "L":
        image = image.convert("RGB").convert("L") if image.mode == "CMYK" else image.convert("L")
    return np.asarray(image)


def _flatten_alpha(luminance: np.ndarray, opacity: np.ndarray) -> np.ndarray:
    """Composite onto whichever of black or white contrasts with the visible strokes.

    A drawing on a transparent canvas says nothing about its background colour, and black
    strokes flattened onto black (or white onto white) would vanish.
    """
    coverage = float(opacity.sum())
    if coverage == 0.0:
        raise NoInkError("no digit found: the image is fully transparent")
    ink_luminance = float((luminance * opacity).sum()) / coverage
    backdrop = 255.0 if ink_luminance < 128 else 0.0
    flattened = luminance * opacity + backdrop * (1.0 - opacity)
    return np.clip(np.rint(flattened), 0, 255).astype(np.uint8)


def _border(gray: np.ndarray) -> np.ndarray:
    return np.concatenate((gray[0], gray[-1], gray[1:-1, 0], gray[1:-1, -1]))


def has_light_background(gray: np.ndarray) -> bool:
    """A dark digit on light paper or a white canvas: most of the frame's border is light."""
    border = _border(gray)
    return np.count_nonzero(border > 127) * 2 > border.size


def normalise_like_mnist(gray: np.ndarray) -> np.ndarray:
    """White-on-black image of any size -> 28x28 digit: crop, fit 20x20, centre by mass."""
    background = float(np.median(_border(gray)))
    ink = np.clip(gray.astype(np.float32) - background, 0, None)
    peak = float(ink.max())
    if peak < MIN_INK_CONTRAST:
        raise NoInkError("no digit found: the image has no strokes that stand out from its background")
    ink = np.rint(ink * (255.0 / peak)).astype(np.uint8)
    rows = np.flatnonzero((ink > CROP_THRESHOLD).any(axis=1))
    cols = np.flatnonzero((ink > CROP_THRESHOLD).any(axis=0))
    cropped = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    return _centre_by_mass(_fit_box(cropped))


def _fit_box(cropped: np.ndarray) -> np.ndarray:
    height, width = cropped.shape
    scale = DIGIT_BOX_SIDE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = Image.fromarray(cropped).resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return np.asarray(resized)


def _centre_by_mass(patch: np.ndarray) -> np.ndarray:
    height, width = patch.shape
    mass = patch.astype(np.float64)
    total = mass.sum()
    if total == 0:
        raise NoInkError("no digit found: the strokes are too faint or too small")
    centre_row = float(mass.sum(axis=1) @ np.arange(height)) / total
    centre_col = float(mass.sum(axis=0) @ np.arange(width)) / total
    # Pixel i covers [i, i+1): its centre is i + 0.5, and the frame's centre is IMAGE_SIDE / 2.
    top = int(np.clip(round(IMAGE_SIDE / 2 - 0.5 - centre_row), 0, IMAGE_SIDE - height))
    left = int(np.clip(round(IMAGE_SIDE / 2 - 0.5 - centre_col), 0, IMAGE_SIDE - width))
    frame = np.zeros((IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8)
    frame[top : top + height, left : left + width] = patch
    return frame
