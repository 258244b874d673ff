"""Builders shared by the tests: IDX files, encoded images and drawn digits."""

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

REPO_ROOT = Path(__file__).resolve().parent.parent


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


def drawn_digit(digit: int, size: int = 280, ink: int = 0, paper: int = 255, mode: str = "L") -> Image.Image:
    """A digit drawn the way a person would on a canvas: thick round strokes, dark on light."""
    image = Image.new(mode, (size, size), paper if mode == "L" else (paper,) * len(mode))
    draw = ImageDraw.Draw(image)
    width = size // 14
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
