"""Pictures that are not digits, made up for training the digit detector.

Six kinds, as people send them to a digit reader by mistake or on purpose: letters, scribbles,
geometric shapes, textures, noise and photos of objects. Every picture is drawn at its own size
and polarity and goes through the service's own preprocessing, so the detector learns from what
the network is really given. The benchmark's non-digits (bench/nondigit_cases.py) come from a
separate generator with other fonts, other shapes and other drawing processes, so the benchmark
measures how far the detector generalises rather than how well it remembers.
"""

from collections.abc import Callable
from functools import cache
from pathlib import Path

import cv2
import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from app.errors import NoInkError
from app.inference.preprocess import to_digit_pixels
from mnist_core.contract import IMAGE_SIDE

# Hershey stroke fonts built into OpenCV, and TrueType faces that ship with matplotlib; the
# benchmark's letters are drawn in other faces.
TRUETYPE_FONTS = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
)
HERSHEY_FONTS = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
    cv2.FONT_HERSHEY_SCRIPT_SIMPLEX,
)
# Letters a reader cannot tell from a digit (O and 0, l and 1, ...) are not non-digits.
DIGIT_LOOKALIKES = set("OoDIlijSsZzBbgqGQ")
LETTERS = "".join(c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" if c not in DIGIT_LOOKALIKES)
CANVAS = 128
TENSOR_EVERY = 4


def _ink(rng: np.random.Generator) -> int:
    return int(rng.integers(160, 256))


def _letter(rng: np.random.Generator) -> np.ndarray:
    text = str(rng.choice(list(LETTERS)))
    if rng.random() < 0.3:
        text += str(rng.choice(list(LETTERS)))
    if rng.random() < 0.5:
        return _truetype_letter(rng, text)
    canvas = np.zeros((CANVAS, CANVAS), np.uint8)
    font = int(rng.choice(HERSHEY_FONTS)) | (cv2.FONT_ITALIC if rng.random() < 0.3 else 0)
    scale = rng.uniform(2.0, 3.2) / len(text) ** 0.5
    thickness = int(rng.integers(2, 12))
    (width, height), _ = cv2.getTextSize(text, font, scale, thickness)
    origin = ((CANVAS - width) // 2, (CANVAS + height) // 2)
    cv2.putText(canvas, text, origin, font, scale, _ink(rng), thickness, cv2.LINE_AA)
    turn = cv2.getRotationMatrix2D((CANVAS / 2, CANVAS / 2), rng.uniform(-20, 20), 1.0)
    return cv2.warpAffine(canvas, turn, (CANVAS, CANVAS))


@cache
def _truetype(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name), size=size)


def _truetype_letter(rng: np.random.Generator, text: str) -> np.ndarray:
    font = _truetype(str(rng.choice(TRUETYPE_FONTS)), int(rng.integers(40, 100)) // len(text))
    canvas = Image.new("L", (CANVAS, CANVAS), 0)
    ImageDraw.Draw(canvas).text((CANVAS / 2, CANVAS / 2), text, fill=_ink(rng), font=font, anchor="mm")
    return np.asarray(canvas.rotate(rng.uniform(-20, 20), resample=Image.Resampling.BILINEAR))


def _smooth_path(points: np.ndarray, samples: int) -> np.ndarray:
    """A Catmull-Rom curve through `points` (K, 2): (samples, 2)."""
    padded = np.vstack([points[:1], points, points[-1:]])
    curve = []
    for i in range(1, len(padded) - 2):
        p0, p1, p2, p3 = padded[i - 1 : i + 3]
        t = np.linspace(0, 1, samples // (len(points) - 1) + 2)[:, None]
        curve.append(
            0.5 * (2 * p1 + (p2 - p0) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2 + (3 * p1 - p0 - 3 * p2 + p3) * t**3)
        )
    return np.vstack(curve)


def _scribble(rng: np.random.Generator) -> np.ndarray:
    """Curves through random points, zigzags or chains of loops."""
    canvas = np.zeros((CANVAS, CANVAS), np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        kind = rng.integers(0, 4)
        if kind == 3:
            path = _arcs(rng)
        elif kind == 0:
            path = _smooth_path(rng.uniform(10, CANVAS - 10, (int(rng.integers(4, 12)), 2)), 200)
        elif kind == 1:
            corners = int(rng.integers(4, 12))
            path = np.stack(
                [np.linspace(*rng.uniform(10, CANVAS - 10, 2), corners), rng.uniform(10, CANVAS - 10, corners)], 1
            )
            path = path[:, ::-1] if rng.random() < 0.5 else path
        else:
            angle = np.linspace(0, 2 * np.pi * rng.uniform(2, 6), 300)
            radius = rng.uniform(8, 30)
            drift = np.linspace(-1, 1, len(angle))[:, None] * rng.uniform(-45, 45, 2)
            path = CANVAS / 2 + drift + radius * np.stack([np.cos(angle), np.sin(angle) * rng.uniform(0.4, 1)], 1)
        cv2.polylines(canvas, [np.rint(path).astype(np.int32)], False, _ink(rng), int(rng.integers(2, 12)), cv2.LINE_AA)
    return canvas


def _arcs(rng: np.random.Generator) -> np.ndarray:
    """A pen drawing arcs of random curvature one after another, some long, some short."""
    heading, position = rng.uniform(0, 2 * np.pi), rng.uniform(30, CANVAS - 30, 2)
    points = [position]
    for _ in range(int(rng.integers(2, 10))):
        curvature = rng.normal(0, 0.25)
        for _ in range(int(rng.integers(3, 25))):
            heading += curvature
            position = np.clip(position + 2.5 * np.array([np.cos(heading), np.sin(heading)]), 5, CANVAS - 5)
            points.append(position)
    return np.array(points)


def _shape(rng: np.random.Generator) -> np.ndarray:
    canvas = np.zeros((CANVAS, CANVAS), np.uint8)
    for _ in range(int(rng.integers(1, 3))):
        ink, width = _ink(rng), int(rng.integers(-1, 10)) or 2
        centre = rng.uniform(35, CANVAS - 35, 2)
        size = rng.uniform(15, 55)
        kind = rng.integers(0, 5)
        if kind == 0:
            axes = (int(size), int(size * rng.uniform(0.4, 1.0)))
            # Filled: an outlined ellipse is a zero.
            cv2.ellipse(canvas, tuple(np.rint(centre).astype(int)), axes, rng.uniform(0, 180), 0, 360, ink, -1)
        elif kind in (1, 3):  # convex, or with corners at random distances (stars, crosses, blots)
            corners = int(rng.integers(3, 9)) * (1 if kind == 1 else 2)
            angles = np.sort(rng.uniform(0, 2 * np.pi, corners))
            radii = size * (np.ones(corners) if kind == 1 else rng.uniform(0.3, 1.0, corners))[:, None]
            polygon = centre + radii * np.stack([np.cos(angles), np.sin(angles)], axis=1)
            _outline_or_fill(canvas, np.rint(polygon).astype(np.int32), ink, width)
        elif kind == 2:
            half = rng.uniform(0.3, 1.0, 2) * size
            box = np.array([centre - half, centre + half * [1, -1] * [-1, 1], centre + half, centre - half * [-1, 1]])
            _outline_or_fill(canvas, np.rint(box).astype(np.int32), ink, width)
        else:  # two to four outlines nested (one alone would be a zero)
            corners = int(rng.integers(3, 7))
            turn = rng.uniform(0, 2 * np.pi)
            angles = turn + np.arange(corners) * 2 * np.pi / corners
            for scale in np.linspace(1, rng.uniform(0.2, 0.5), int(rng.integers(2, 5))):
                polygon = centre + scale * size * np.stack([np.cos(angles), np.sin(angles)], axis=1)
                cv2.polylines(canvas, [np.rint(polygon).astype(np.int32)], True, ink, max(width, 2), cv2.LINE_AA)
    return canvas


def _outline_or_fill(canvas: np.ndarray, polygon: np.ndarray, ink: int, width: int) -> None:
    if width < 0:
        cv2.fillPoly(canvas, [polygon], ink, cv2.LINE_AA)
    else:
        cv2.polylines(canvas, [polygon], True, ink, width, cv2.LINE_AA)


def _texture(rng: np.random.Generator) -> np.ndarray:
    rows, cols = np.mgrid[0:CANVAS, 0:CANVAS].astype(np.float32)
    kind = rng.integers(0, 3)
    if kind == 0:  # a grating at any angle and frequency
        angle, period = rng.uniform(0, np.pi), rng.uniform(4, 40)
        wave = np.sin(2 * np.pi * (np.cos(angle) * cols + np.sin(angle) * rows) / period)
    elif kind == 1:  # a checkerboard
        period = rng.uniform(6, 40)
        wave = np.sign(np.sin(np.pi * cols / period) * np.sin(np.pi * rows / period))
    else:  # two gratings crossed
        wave = sum(
            np.sin(2 * np.pi * (cols * rng.uniform(-0.15, 0.15) + rows * rng.uniform(-0.15, 0.15))) for _ in range(2)
        )
    return cv2.normalize(wave, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)


def _noise(rng: np.random.Generator) -> np.ndarray:
    side = int(rng.integers(16, CANVAS + 1))
    noise = rng.normal(0, 1, (side, side)).astype(np.float32)
    if rng.random() < 0.6:
        noise = cv2.GaussianBlur(noise, (0, 0), rng.uniform(0.5, 6))
    if rng.random() < 0.5:  # blotches or specks: blurred noise thresholded
        noise = (noise > np.quantile(noise, rng.uniform(0.5, 0.99))).astype(np.float32)
    return cv2.normalize(noise, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)


def _object_photo(rng: np.random.Generator) -> np.ndarray:
    """Shaded blobs and boxes, some with a shadow, on a graded background, as a phone photographs things."""
    rows, cols = np.mgrid[0:CANVAS, 0:CANVAS].astype(np.float32) / CANVAS
    angle = rng.uniform(0, 2 * np.pi)
    picture = rng.uniform(60, 200) + rng.uniform(-60, 60) * (np.cos(angle) * cols + np.sin(angle) * rows)
    for _ in range(int(rng.integers(1, 5))):
        centre, radius = rng.uniform(0.2, 0.8, 2), rng.uniform(0.08, 0.35, 2)
        if rng.random() < 0.5:
            inside = ((cols - centre[0]) / radius[0]) ** 2 + ((rows - centre[1]) / radius[1]) ** 2 < 1
        else:
            inside = (np.abs(cols - centre[0]) < radius[0]) & (np.abs(rows - centre[1]) < radius[1])
        if rng.random() < 0.5:
            shadow = np.roll(inside, (int(rng.integers(-8, 9)), int(rng.integers(-8, 9))), axis=(0, 1))
            picture = np.where(shadow, picture * rng.uniform(0.4, 0.8), picture)
        # Lit from one side: bright near a highlight, falling off across the body.
        highlight = centre - rng.uniform(-0.6, 0.6, 2) * radius
        falloff = np.hypot(cols - highlight[0], rows - highlight[1]) / (2 * radius.max())
        shading = np.exp(-falloff * rng.uniform(1, 4))
        picture = np.where(inside, rng.uniform(20, 255) * (0.2 + 0.8 * shading), picture)
    picture = cv2.GaussianBlur(picture.astype(np.float32), (0, 0), rng.uniform(0.5, 2))
    picture += rng.normal(0, rng.uniform(1, 8), picture.shape)
    return np.clip(np.rint(picture), 0, 255).astype(np.uint8)


KINDS: dict[str, Callable[[np.random.Generator], np.ndarray]] = {
    "letters": _letter,
    "scribbles": _scribble,
    "shapes": _shape,
    "textures": _texture,
    "noise": _noise,
    "object-photos": _object_photo,
}


def drawn(rng: np.random.Generator, kind: str) -> np.ndarray:
    """One picture of `kind` as uploaded: any polarity, any size."""
    picture = KINDS[kind](rng)
    if rng.random() < 0.5:
        picture = 255 - picture
    side = int(rng.integers(28, 2 * CANVAS))
    return cv2.resize(picture, (side, side), interpolation=cv2.INTER_AREA if side < CANVAS else cv2.INTER_LINEAR)


def non_digits(count: int, seed: int) -> np.ndarray:
    """`count` non-digits, the kinds in turn, as the network is given them: uint8 (count, 28, 28).

    Most go through the service's preprocessing, as uploads do; one in TENSOR_EVERY is only scaled
    to 28x28, as a V2 client sends a tensor that no preprocessing frames. Pictures the
    preprocessing turns away ("no digit found") are drawn again: the detector never sees them.
    """
    rng = np.random.default_rng(seed)
    kinds = list(KINDS)
    pictures = []
    while len(pictures) < count:
        picture = drawn(rng, kinds[len(pictures) % len(kinds)])
        if (len(pictures) // len(kinds)) % TENSOR_EVERY == 0:
            pictures.append(cv2.resize(picture, (IMAGE_SIDE, IMAGE_SIDE), interpolation=cv2.INTER_AREA))
            continue
        try:
            pictures.append(to_digit_pixels(picture))
        except NoInkError:
            continue
    return np.stack(pictures)
