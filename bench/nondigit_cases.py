"""The non-digit benchmark's inputs: pictures that are not digits, as people upload them by mistake.

Six kinds (letters, scribbles, shapes, textures, noise, photos of objects), made here by a
generator of their own: other fonts (TrueType faces that ship with matplotlib, where training
draws OpenCV's stroke fonts), other shapes and other drawing processes than the detector's
training data (training/nondigits.py), so what it measures is generalisation. Every random
choice comes from a generator seeded per kind, so two runs send the same files.
"""

from collections.abc import Callable
from pathlib import Path

import cv2
import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from robust_cases import encode, paint

PICTURES_PER_KIND = 500
FONT_DIR = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
FONTS = (
    "DejaVuSerif.ttf",
    "DejaVuSerif-BoldItalic.ttf",
    "DejaVuSansMono-Oblique.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBolIta.ttf",
    "cmr10.ttf",
    "cmss10.ttf",
    "cmtt10.ttf",
    "cmti10.ttf",
)
# As in training: letters that are read as digits by people too are left out.
LETTERS = [c for c in "ACEFHKLMNPRTUVWXYacdefhkmnprtuvwxy"]
SIDE = 280  # the page's drawing canvas


def _letter(rng: np.random.Generator) -> np.ndarray:
    side = int(rng.integers(48, 400))
    font = ImageFont.truetype(str(FONT_DIR / str(rng.choice(FONTS))), size=int(side * rng.uniform(0.5, 0.8)))
    canvas = Image.new("L", (side, side), 0)
    ImageDraw.Draw(canvas).text((side / 2, side / 2), str(rng.choice(LETTERS)), fill=255, font=font, anchor="mm")
    return paint(np.asarray(canvas), paper=rng.uniform(200, 255), ink=rng.uniform(0, 60))


def _scribble(rng: np.random.Generator) -> np.ndarray:
    """A pen wandering with a smoothly changing heading: loops, zigzags and bow-ties."""
    canvas = np.zeros((SIDE, SIDE), np.uint8)
    for _ in range(int(rng.integers(1, 3))):
        position = rng.uniform(80, 200, 2)
        heading, turn = rng.uniform(0, 2 * np.pi), rng.normal(0, 0.15)
        points = []
        for _ in range(int(rng.integers(60, 200))):
            turn = 0.9 * turn + rng.normal(0, 0.08)
            heading += turn
            position = np.clip(position + 4 * np.array([np.cos(heading), np.sin(heading)]), 20, SIDE - 20)
            points.append(position.copy())
        path = np.rint(np.array(points) * 16).astype(np.int32)
        cv2.polylines(canvas, [path], False, 255, int(rng.integers(3, 16)), cv2.LINE_AA, shift=4)
    return paint(canvas, paper=255, ink=0)


def _shape(rng: np.random.Generator) -> np.ndarray:
    """Stars, crosses, arrows, spirals and rings, outlined or filled."""
    canvas = np.zeros((SIDE, SIDE), np.uint8)
    centre, size, width = (
        np.array([SIDE / 2, SIDE / 2]) + rng.normal(0, 15, 2),
        rng.uniform(50, 110),
        int(rng.integers(3, 14)),
    )
    kind = rng.integers(0, 5)
    if kind == 0:
        points = int(rng.integers(5, 9))
        angles = np.arange(2 * points) * np.pi / points + rng.uniform(0, np.pi)
        radii = np.where(np.arange(2 * points) % 2 == 0, size, size * rng.uniform(0.35, 0.6))
        star = centre + radii[:, None] * np.stack([np.cos(angles), np.sin(angles)], axis=1)
        _polygon(canvas, star, width if rng.random() < 0.5 else -1)
    elif kind == 1:
        arm = size * rng.uniform(0.15, 0.3)
        cross = np.array(
            [
                [-arm, -size],
                [arm, -size],
                [arm, -arm],
                [size, -arm],
                [size, arm],
                [arm, arm],
                [arm, size],
                [-arm, size],
                [-arm, arm],
                [-size, arm],
                [-size, -arm],
                [-arm, -arm],
            ]
        )
        _polygon(canvas, centre + _turned(cross, rng.uniform(0, np.pi / 2)), width if rng.random() < 0.5 else -1)
    elif kind == 2:
        shaft, head = size * rng.uniform(0.1, 0.2), size * rng.uniform(0.35, 0.55)
        arrow = np.array(
            [
                [-size, -shaft],
                [size - head, -shaft],
                [size - head, -head],
                [size, 0],
                [size - head, head],
                [size - head, shaft],
                [-size, shaft],
            ]
        )
        _polygon(canvas, centre + _turned(arrow, rng.uniform(0, 2 * np.pi)), width if rng.random() < 0.5 else -1)
    elif kind == 3:
        turns = rng.uniform(2, 4)
        angle = np.linspace(0, 2 * np.pi * turns, 400)
        spiral = centre + (size * angle / angle[-1])[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
        cv2.polylines(canvas, [np.rint(spiral * 16).astype(np.int32)], False, 255, width, cv2.LINE_AA, shift=4)
    else:
        for radius in np.linspace(size, size * rng.uniform(0.2, 0.5), int(rng.integers(2, 5))):
            cv2.circle(
                canvas, tuple(np.rint(centre * 16).astype(int)), int(radius * 16), 255, width, cv2.LINE_AA, shift=4
            )
    return paint(canvas, paper=255, ink=rng.uniform(0, 80))


def _turned(points: np.ndarray, angle: float) -> np.ndarray:
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return points @ rotation.T


def _polygon(canvas: np.ndarray, points: np.ndarray, width: int) -> None:
    polygon = np.rint(points * 16).astype(np.int32)
    if width < 0:
        cv2.fillPoly(canvas, [polygon], 255, cv2.LINE_AA, shift=4)
    else:
        cv2.polylines(canvas, [polygon], True, 255, width, cv2.LINE_AA, shift=4)


def _texture(rng: np.random.Generator) -> np.ndarray:
    """Wood rings, bricks, dot lattices and weaves."""
    side = int(rng.integers(64, 400))
    rows, cols = np.mgrid[0:side, 0:side].astype(np.float32) / side
    kind = rng.integers(0, 4)
    if kind == 0:
        centre = rng.uniform(-0.5, 1.5, 2)
        radius = np.hypot(cols - centre[0], rows - centre[1]) * rng.uniform(8, 30)
        picture = np.sin(2 * np.pi * (radius + 0.3 * np.sin(6 * cols)))
    elif kind == 1:
        courses = rng.uniform(4, 12)
        offset = np.floor(rows * courses) % 2 * 0.5
        picture = ((rows * courses) % 1 > 0.12) & (((cols * courses / 2) + offset) % 1 > 0.06)
    elif kind == 2:
        period = rng.uniform(0.04, 0.2)
        picture = np.hypot((cols % period) / period - 0.5, (rows % period) / period - 0.5) < rng.uniform(0.15, 0.45)
    else:
        period = rng.uniform(0.05, 0.2)
        picture = np.sin(2 * np.pi * cols / period) * np.sign(np.sin(np.pi * rows / period))
    return cv2.normalize(picture.astype(np.float32), None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)


def _noise(rng: np.random.Generator) -> np.ndarray:
    """Salt and pepper, uniform, or value noise (a coarse random grid enlarged)."""
    side = int(rng.integers(28, 400))
    kind = rng.integers(0, 3)
    if kind == 0:
        picture = np.where(rng.random((side, side)) < rng.uniform(0.02, 0.3), 255.0, 0.0)
    elif kind == 1:
        picture = rng.uniform(0, 255, (side, side))
    else:
        coarse = rng.uniform(0, 255, (int(rng.integers(3, 12)),) * 2).astype(np.float32)
        picture = cv2.resize(coarse, (side, side), interpolation=cv2.INTER_CUBIC)
    return np.clip(picture, 0, 255).astype(np.uint8)


def _object_photo(rng: np.random.Generator) -> np.ndarray:
    """Balls, cans and boxes, lit from one side with a shadow, on a table, as a phone's JPEG."""
    width, height = (int(value) for value in rng.choice([(640, 480), (480, 640), (400, 400)]))
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    light = rng.uniform(0, 2 * np.pi)
    table = rng.uniform(120, 210) + 40 * (np.cos(light) * cols / width + np.sin(light) * rows / height)
    picture = table.copy()
    for _ in range(int(rng.integers(1, 4))):
        cx, cy = rng.uniform(0.25, 0.75) * width, rng.uniform(0.25, 0.75) * height
        radius = rng.uniform(0.1, 0.25) * min(width, height)
        shadow = (
            np.hypot(cols - cx - 0.3 * radius * np.cos(light), rows - cy - 0.3 * radius * np.sin(light)) < radius * 1.1
        )
        picture = np.where(shadow, picture * 0.6, picture)
        if rng.random() < 0.5:  # a ball with a highlight
            body = np.hypot(cols - cx, rows - cy) < radius
            glow = np.exp(
                -np.hypot(cols - cx + 0.4 * radius * np.cos(light), rows - cy + 0.4 * radius * np.sin(light))
                / radius
                * 2
            )
        else:  # a can or a box, shaded across
            body = (np.abs(cols - cx) < radius * rng.uniform(0.5, 1)) & (
                np.abs(rows - cy) < radius * rng.uniform(0.8, 1.5)
            )
            glow = 0.5 + 0.5 * np.cos((cols - cx) / radius * 1.5)
        picture = np.where(body, rng.uniform(20, 200) * (0.4 + 0.8 * glow), picture)
    picture = cv2.GaussianBlur(picture.astype(np.float32), (0, 0), 1.5) + rng.normal(0, 4, picture.shape)
    return np.clip(np.rint(picture), 0, 255).astype(np.uint8)


# name, what a picture of the kind looks like, how it is made, its seed.
KINDS: list[tuple[str, str, Callable[[np.random.Generator], np.ndarray], int]] = [
    ("letters", "one letter in a TrueType face (serif, italic, mono, Computer Modern), dark on light", _letter, 101),
    ("scribbles", "a wandering pen on the page's 280x280 canvas: loops, zigzags, bow-ties", _scribble, 102),
    ("shapes", "a star, cross, arrow, spiral or rings, outlined or filled", _shape, 103),
    ("textures", "wood rings, bricks, dot lattices, weaves", _texture, 104),
    ("noise", "salt and pepper, uniform or value noise", _noise, 105),
    ("object-photos", "balls, cans and boxes on a lit table with shadows, JPEG", _object_photo, 106),
]


def build_kinds(count: int = PICTURES_PER_KIND) -> dict[str, list[bytes]]:
    """Every kind's files (PNG, photos JPEG), `count` of each, exactly as a client uploads them."""
    files = {}
    for name, _, draw, seed in KINDS:
        rng = np.random.default_rng(seed)
        pictures = [draw(rng) for _ in range(count)]
        if name == "object-photos":
            files[name] = [encode(picture, "JPEG", quality=int(rng.integers(60, 90))) for picture in pictures]
        else:
            files[name] = [encode(picture) for picture in pictures]
    return files
