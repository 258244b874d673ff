"""Builders shared by the tests: IDX files, encoded images and drawn digits."""

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from mnist_core.files import version_numbers

REPO_ROOT = Path(__file__).resolve().parent.parent


def served_version(model: str) -> str:
    """The version of a shipped model that the repository serves by default: its newest."""
    return str(version_numbers(REPO_ROOT / "models" / model)[-1])


def write_idx_images(path: Path, images: np.ndarray) -> None:
    count, rows, cols = images.shape
    path.write_bytes(struct.pack(">IIII", 0x00000803, count, rows, cols) + images.astype(np.uint8).tobytes())


def write_idx_labels(path: Path, labels: np.ndarray) -> None:
    path.write_bytes(struct.pack(">II", 0x00000801, len(labels)) + labels.astype(np.uint8).tobytes())


def synthetic_digits(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """28x28 images whose class is a bright bar at a class-specific place, plus noise: learnable fast."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=count)
    images = rng.integers(0, 40, size=(count, 28, 28))
    for image, label in zip(images, labels, strict=True):
        row = 3 + 2 * int(label)
        image[row : row + 2, 4:24] = 255
    return images.astype(np.uint8), labels.astype(np.uint8)


def encode(image: Image.Image, image_format: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def png_of(pixels: np.ndarray) -> bytes:
    """A 28x28 uint8 array as an 8-bit grayscale PNG."""
    return encode(Image.fromarray(pixels))


def drawn_digit(
    digit: int, size: int = 280, ink: int = 0, paper: int = 255, mode: str = "L", pen_width: int | None = None
) -> Image.Image:
    """A digit drawn the way a person would on a canvas: round strokes, dark on light, by default
    with a pen a fourteenth of the canvas wide (1 px is a fine pen, 60 px a fat marker)."""
    image = Image.new(mode, (size, size), paper if mode == "L" else (paper,) * len(mode))
    draw = ImageDraw.Draw(image)
    width = size // 14 if pen_width is None else pen_width
    colour = ink if mode == "L" else (ink,) * len(mode)
    s = size / 280
    if digit == 0:
        draw.ellipse([90 * s, 50 * s, 190 * s, 230 * s], outline=colour, width=width)
    elif digit == 1:
        draw.line([(140 * s, 45 * s), (140 * s, 235 * s)], fill=colour, width=width, joint="curve")
    elif digit == 7:
        draw.line([(85 * s, 60 * s), (195 * s, 60 * s), (125 * s, 235 * s)], fill=colour, width=width, joint="curve")
    else:
        raise ValueError(f"no drawing for {digit}")
    return image


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_declaring(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG header claiming a huge canvas: a decompression bomb's calling card."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 1024))
        + png_chunk(b"IEND", b"")
    )


def multipart_body(fields: list[tuple[str, str, bytes]], boundary: str = "mnist-serve-test") -> tuple[bytes, str]:
    """(body, content type) for file fields given as (field name, filename, bytes)."""
    parts = []
    for name, filename, data in fields:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def shaded_photo(pixels: np.ndarray, size: tuple[int, int] = (640, 480), seed: int = 0) -> bytes:
    """A 28x28 white-on-black digit as a phone photo of it in dark ink on paper: lit from one side
    (brightness falling from about 230 to 110 across the page), paper grain, JPEG at quality 70."""
    rng = np.random.default_rng(seed)
    width, height = size
    light = np.linspace(230, 110, width, dtype=np.float32)[None, :] * np.ones((height, 1), dtype=np.float32)
    paper = light + rng.normal(0, 6, (height, width)).astype(np.float32)
    side = height // 2
    digit = np.asarray(Image.fromarray(pixels).resize((side, side), Image.Resampling.BICUBIC), dtype=np.float32)
    top, left = height // 4, width // 3
    coverage = np.zeros((height, width), dtype=np.float32)
    coverage[top : top + side, left : left + side] = digit / 255
    photo = paper * (1 - 0.75 * coverage)
    return encode(Image.fromarray(np.clip(np.rint(photo), 0, 255).astype(np.uint8)), "JPEG", quality=70)


def train_args(data: Path, *more: str) -> list[str]:
    """`python -m training` arguments for one quiet epoch on the dataset in `data`, offline."""
    return ["--data-dir", str(data), "--no-download", "--epochs", "1", "--quiet", *more]
