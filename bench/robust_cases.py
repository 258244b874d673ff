"""The robustness benchmark's inputs: MNIST test digits redrawn the way people draw, write and photograph them.

Every case is made from the same digits of the MNIST *test* set (never the training set), picked
by a fixed seed, and every random choice comes from a generator seeded per case, so two runs send
byte-identical files. Pens and markers redraw a digit's own strokes: the digit is upscaled 4x,
thinned to a one-pixel skeleton (Zhang and Suen, 1984) and the skeleton's segments are drawn again
with OpenCV at the pen's width, anti-aliased, so a thin pen and a fat marker write the same digit.
"""

import io
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from mnist_core.contract import IMAGE_SIDE

DIGITS_PER_CASE = 5000
SELECTION_SEED = 2026
# Skeletons are traced on the digit upscaled this many times: thin enough lines, still cheap.
SKELETON_SCALE = 4
# cv2.line takes fixed-point coordinates with this many fractional bits: sub-pixel placement.
_SHIFT_BITS = 4

# Zhang-Suen looks at the 8 neighbours P2..P9 (N, NE, E, SE, S, SW, W, NW); correlating the mask
# with these weights gives each pixel a code 0-255 naming its neighbourhood, looked up in a table.
_NEIGHBOUR_WEIGHTS = np.array([[128, 1, 2], [64, 0, 4], [32, 16, 8]], dtype=np.float32)


@dataclass(frozen=True)
class Case:
    name: str
    description: str
    files: list[bytes]  # encoded images, exactly as a client uploads them
    labels: np.ndarray  # int64, the digit each file shows


def _zhang_suen_tables() -> tuple[np.ndarray, np.ndarray]:
    codes = np.arange(256)
    bits = (codes[:, None] >> np.arange(8)) & 1  # columns P2..P9
    p2, _, p4, _, p6, _, p8, _ = bits.T
    neighbours = bits.sum(axis=1)
    around = np.concatenate([bits, bits[:, :1]], axis=1)
    transitions = ((around[:, :-1] == 0) & (around[:, 1:] == 1)).sum(axis=1)
    removable = (neighbours >= 2) & (neighbours <= 6) & (transitions == 1)
    first = removable & (p2 * p4 * p6 == 0) & (p4 * p6 * p8 == 0)
    second = removable & (p2 * p4 * p8 == 0) & (p2 * p6 * p8 == 0)
    return first, second


_THINNING_PASSES = _zhang_suen_tables()


def skeletonise(mask: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning of a boolean mask (H, W): its one-pixel-wide skeleton."""
    skeleton = mask.astype(np.uint8)
    changed = True
    while changed:
        changed = False
        for table in _THINNING_PASSES:
            codes = cv2.filter2D(skeleton, cv2.CV_16S, _NEIGHBOUR_WEIGHTS, borderType=cv2.BORDER_CONSTANT)
            removed = (skeleton == 1) & table[codes]
            if removed.any():
                skeleton[removed] = 0
                changed = True
    return skeleton.astype(bool)


def stroke_segments(skeleton: np.ndarray) -> np.ndarray:
    """The skeleton as line segments (K, 4): x0, y0, x1, y1 in units of the 28x28 frame.

    Neighbouring skeleton pixels are joined; a diagonal step is skipped when the two pixels are
    already joined through a shared orthogonal neighbour, so corners are not drawn twice.
    """
    filled = np.pad(skeleton, 1)
    here = filled[1:-1, 1:-1]
    east, south = filled[1:-1, 2:], filled[2:, 1:-1]
    west = filled[1:-1, :-2]
    south_east, south_west = filled[2:, 2:], filled[2:, :-2]
    links = [
        (here & east, (0, 1)),
        (here & south, (1, 0)),
        (here & south_east & ~east & ~south, (1, 1)),
        (here & south_west & ~west & ~south, (1, -1)),
    ]
    segments = []
    for linked, (step_row, step_col) in links:
        rows, cols = np.nonzero(linked)
        segments.append(np.stack([cols, rows, cols + step_col, rows + step_row], axis=1))
    # Skeleton pixel i covers [i, i+1) of the upscaled frame; its centre is i + 0.5.
    return (np.concatenate(segments).astype(np.float64) + 0.5) / SKELETON_SCALE


def digit_strokes(images: np.ndarray) -> list[np.ndarray]:
    """Each 28x28 digit's centre lines, as segments in frame units."""
    side = IMAGE_SIDE * SKELETON_SCALE
    upscaled = (cv2.resize(image, (side, side), interpolation=cv2.INTER_LINEAR) for image in images)
    return [stroke_segments(skeletonise(digit > 127)) for digit in upscaled]


def draw_strokes(
    segments: np.ndarray,
    canvas_size: tuple[int, int],
    height: float,
    centre: tuple[float, float],
    pen_width: int,
    antialiased: bool = True,
) -> np.ndarray:
    """Coverage (uint8, 255 = ink) of the strokes redrawn with a round pen of `pen_width` pixels.

    The strokes' centre lines are scaled so they span `height` pixels and their box is centred
    on `centre` (x, y) of a canvas of `canvas_size` (width, height).
    """
    left, top = segments[:, [0, 2]].min(), segments[:, [1, 3]].min()
    right, bottom = segments[:, [0, 2]].max(), segments[:, [1, 3]].max()
    scale = height / max(bottom - top, 1e-6)
    origin = np.array([centre[0] - scale * (left + right) / 2, centre[1] - scale * (top + bottom) / 2])
    points = segments.reshape(-1, 2) * scale + origin
    fixed = np.rint(points * (1 << _SHIFT_BITS)).astype(np.int64).reshape(-1, 4)
    canvas = np.zeros((canvas_size[1], canvas_size[0]), dtype=np.uint8)
    line_type = cv2.LINE_AA if antialiased else cv2.LINE_8
    for x0, y0, x1, y1 in fixed.tolist():
        cv2.line(canvas, (x0, y0), (x1, y1), 255, pen_width, line_type, _SHIFT_BITS)
    return canvas


def paint(coverage: np.ndarray, paper: float, ink: float) -> np.ndarray:
    """Ink of one shade laid on paper of another, in proportion to the coverage."""
    alpha = coverage.astype(np.float32) / 255.0
    return np.clip(np.rint(paper + (ink - paper) * alpha), 0, 255).astype(np.uint8)


def encode(pixels: np.ndarray, image_format: str = "PNG", **options: object) -> bytes:
    stream = io.BytesIO()
    Image.fromarray(pixels).save(stream, format=image_format, **options)
    return stream.getvalue()


def place(patch: np.ndarray, canvas_shape: tuple[int, int], top: int, left: int) -> np.ndarray:
    """`patch` on a black canvas of `canvas_shape` (rows, columns) with its corner at (top, left)."""
    canvas = np.zeros(canvas_shape, dtype=np.uint8)
    canvas[top : top + patch.shape[0], left : left + patch.shape[1]] = patch
    return canvas


def ink_box(image: np.ndarray) -> np.ndarray:
    """The digit cropped to its nonzero pixels."""
    rows = np.flatnonzero(image.any(axis=1))
    cols = np.flatnonzero(image.any(axis=0))
    return image[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _mnist(images: np.ndarray, _strokes: list[np.ndarray], _rng: np.random.Generator) -> list[bytes]:
    return [encode(image) for image in images]


def _thin_pen_canvas(images: np.ndarray, strokes: list[np.ndarray], rng: np.random.Generator) -> list[bytes]:
    files = []
    for segments in strokes:
        height = rng.uniform(150, 220)
        centre = (140 + rng.uniform(-25, 25), 140 + rng.uniform(-20, 20))
        coverage = draw_strokes(segments, (280, 280), height, centre, pen_width=int(rng.integers(1, 3)))
        files.append(encode(paint(coverage, paper=255, ink=0)))
    return files


def _thin_pen_28(images: np.ndarray, strokes: list[np.ndarray], rng: np.random.Generator) -> list[bytes]:
    files = []
    for segments in strokes:
        height = rng.uniform(9, 17)
        half = height / 2 + 1
        centre = (rng.uniform(half, IMAGE_SIDE - half), rng.uniform(half, IMAGE_SIDE - half))
        coverage = draw_strokes(segments, (IMAGE_SIDE, IMAGE_SIDE), height, centre, 1, antialiased=rng.random() < 0.5)
        dark_on_light = rng.random() < 0.5
        files.append(encode(paint(coverage, paper=255, ink=0) if dark_on_light else coverage))
    return files


def _thick_marker(images: np.ndarray, strokes: list[np.ndarray], rng: np.random.Generator) -> list[bytes]:
    files = []
    for segments in strokes:
        height = rng.uniform(140, 190)
        width = round(height * rng.uniform(0.2, 0.3))
        centre = (140 + rng.uniform(-15, 15), 140 + rng.uniform(-10, 10))
        files.append(encode(paint(draw_strokes(segments, (280, 280), height, centre, width), paper=255, ink=0)))
    return files


def _small_off_centre(images: np.ndarray, _strokes: list[np.ndarray], rng: np.random.Generator) -> list[bytes]:
    files = []
    for image in images:
        digit = ink_box(image)
        scale = rng.uniform(9, 15) / max(digit.shape)
        size = (max(1, round(digit.shape[1] * scale)), max(1, round(digit.shape[0] * scale)))
        small = cv2.resize(digit, size, interpolation=cv2.INTER_AREA)
        top = int(rng.integers(0, IMAGE_SIDE - small.shape[0] + 1))
        left = int(rng.integers(0, IMAGE_SIDE - small.shape[1] + 1))
        files.append(encode(place(small, (IMAGE_SIDE, IMAGE_SIDE), top, left)))
    return files


def _dark_on_light(images: np.ndarray, _strokes: list[np.ndarray], rng: np.random.Generator) -> list[bytes]:
    files = []
    for image in images:
        side = int(rng.integers(64, 480))
        digit_side = int(side * rng.uniform(0.45, 0.85))
        digit = cv2.resize(image, (digit_side, digit_side), interpolation=cv2.INTER_LINEAR)
        top, left = (int(rng.integers(0, side - digit_side + 1)) for _ in range(2))
        coverage = place(digit, (side, side), top, left)
        files.append(encode(paint(coverage, paper=rng.uniform(170, 255), ink=rng.uniform(0, 70))))
    return files


def _shaded_photo(images: np.ndarray, _strokes: list[np.ndarray], rng: np.random.Generator) -> list[bytes]:
    return [encode(photograph(image, rng), "JPEG", quality=int(rng.integers(55, 86))) for image in images]


def photograph(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A dark digit on paper lit from one side, with paper grain and a warm tint, as a phone sees it."""
    width, height = (int(value) for value in rng.choice([(640, 480), (480, 640), (800, 800), (1000, 1000)]))
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * cols / width + np.sin(angle) * rows / height) / np.sqrt(2)  # -0.7 .. 0.7
    light = rng.uniform(175, 225) + rng.uniform(70, 110) * ramp
    grain = cv2.GaussianBlur(rng.normal(0, 1, (height, width)).astype(np.float32), (0, 0), 3) * 12
    paper = light + grain + rng.normal(0, rng.uniform(2, 6), (height, width)).astype(np.float32)

    digit_side = int(height * rng.uniform(0.3, 0.5))
    digit = cv2.resize(image, (digit_side, digit_side), interpolation=cv2.INTER_CUBIC)
    digit = cv2.GaussianBlur(digit, (0, 0), digit_side / 140)
    top = int(rng.integers(height // 10, height - digit_side - height // 10))
    left = int(rng.integers(width // 10, width - digit_side - width // 10))
    coverage = np.zeros((height, width), dtype=np.float32)
    coverage[top : top + digit_side, left : left + digit_side] = digit / 255.0
    reflectance = 1.0 - coverage * (1.0 - rng.uniform(0.15, 0.35))
    tint = np.array([1.0, 0.96, 0.88], dtype=np.float32)
    photo = (paper * reflectance)[..., None] * tint
    return np.clip(np.rint(photo), 0, 255).astype(np.uint8)


def _low_resolution(images: np.ndarray, _strokes: list[np.ndarray], rng: np.random.Generator) -> list[bytes]:
    files = []
    for image in images:
        side = int(rng.integers(9, 15))
        small = cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)
        files.append(encode(cv2.resize(small, (IMAGE_SIDE, IMAGE_SIDE), interpolation=cv2.INTER_LINEAR)))
    return files


def _coarse_8x8(images: np.ndarray, _strokes: list[np.ndarray], _rng: np.random.Generator) -> list[bytes]:
    """As public corpora of 8x8 digits store them (16 + 1 grey levels), enlarged as a viewer would."""
    files = []
    for image in images:
        small = cv2.resize(image, (8, 8), interpolation=cv2.INTER_AREA).astype(np.float32)
        levels = np.rint(small * (16 / 255)) * (255 / 16)
        enlarged = cv2.resize(levels, (64, 64), interpolation=cv2.INTER_CUBIC)
        files.append(encode(np.clip(np.rint(enlarged), 0, 255).astype(np.uint8)))
    return files


def _rotated(images: np.ndarray, _strokes: list[np.ndarray], rng: np.random.Generator) -> list[bytes]:
    files = []
    for image in images:
        turn = cv2.getRotationMatrix2D((IMAGE_SIDE / 2 - 0.5, IMAGE_SIDE / 2 - 0.5), rng.uniform(-15, 15), 1.0)
        files.append(encode(cv2.warpAffine(image, turn, (IMAGE_SIDE, IMAGE_SIDE), flags=cv2.INTER_LINEAR)))
    return files


CaseBuilder = Callable[[np.ndarray, list[np.ndarray], np.random.Generator], list[bytes]]

# name, what a file of the case looks like, how it is made, its seed.
CASES: list[tuple[str, str, CaseBuilder, int]] = [
    ("mnist-28x28", "the test digits themselves, 28x28 PNG (control)", _mnist, 0),
    ("thin-pen-280", "1-2 px black pen on a white 280x280 canvas", _thin_pen_canvas, 1),
    ("thin-pen-28x28", "1 px pen, digit 9-17 px tall, anywhere on a 28x28 canvas, either polarity", _thin_pen_28, 2),
    ("thick-marker-280", "black marker 20-30 % of the digit's height wide on a white 280x280 canvas", _thick_marker, 3),
    ("small-off-centre-28x28", "the digit shrunk to 9-15 px, anywhere on a 28x28 black canvas", _small_off_centre, 4),
    ("dark-on-light", "dark grey digit on light grey paper, 64-480 px square, off centre", _dark_on_light, 5),
    ("shaded-photo", "JPEG photo 640x480 to 1000x1000: lighting gradient, paper grain, tint", _shaded_photo, 6),
    ("low-resolution", "downscaled to 9-14 px, upscaled back to 28x28", _low_resolution, 7),
    ("rotated-15", "turned by up to 15 degrees either way, 28x28", _rotated, 8),
    ("low-res-8x8", "area-averaged to 8x8, 17 grey levels, enlarged to 64x64 bicubic", _coarse_8x8, 9),
]


def select_digits(count: int, total: int) -> np.ndarray:
    """Which test digits every case redraws: the same `count` of them, by a fixed seed."""
    return np.sort(np.random.default_rng(SELECTION_SEED).choice(total, size=count, replace=False))


def build_cases(test_images: np.ndarray, test_labels: np.ndarray, count: int = DIGITS_PER_CASE) -> list[Case]:
    """Every case, from `count` digits of the MNIST test split (uint8 (N, 28, 28) and their labels)."""
    picked = select_digits(count, len(test_labels))
    images, labels = test_images[picked], test_labels[picked].astype(np.int64)
    strokes = digit_strokes(images)
    return [
        Case(name, description, build(images, strokes, np.random.default_rng(seed)), labels)
        for name, description, build, seed in CASES
    ]
