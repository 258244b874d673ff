"""Decoding: plain 8-bit grayscale PNGs take OpenCV's fast path with Pillow's pixels; the rest take Pillow's."""

import zlib

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from app.errors import ImageTooLargeError, InvalidImageError
from app.inference.decode import gray_pixels, grayscale, load_pixels, open_image, open_upload
from tests.helpers import encode, png_chunk, png_of

LIMIT = 1 << 24


def _by_pillow(data: bytes) -> np.ndarray:
    return grayscale(load_pixels(open_image(data, LIMIT)))


def test_mnist_digits_as_pngs_take_the_fast_path_with_pillows_pixels(mnist_test_split):
    for image in mnist_test_split.images[:300].numpy():
        data = png_of(image)
        opened = open_upload(data, LIMIT)
        assert isinstance(opened, np.ndarray)
        assert np.array_equal(opened, _by_pillow(data))
        assert np.array_equal(gray_pixels(opened), image)


def test_text_and_resolution_chunks_keep_the_fast_path():
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "a drawing app")
    data = encode(Image.new("L", (40, 30), 200), dpi=(96, 96), pnginfo=info)
    opened = open_upload(data, LIMIT)
    assert isinstance(opened, np.ndarray)
    assert opened.shape == (30, 40)


def _with_chunk(data: bytes, kind: bytes, payload: bytes) -> bytes:
    """The PNG with one more chunk right after IHDR (8 + 25 bytes in)."""
    return data[:33] + png_chunk(kind, payload) + data[33:]


PLAIN = png_of(np.arange(28 * 28, dtype=np.uint8).reshape(28, 28))


@pytest.mark.parametrize(
    "data",
    [
        _with_chunk(PLAIN, b"tRNS", b"\x00\x00"),  # a transparent grey level
        _with_chunk(PLAIN, b"gAMA", (45455).to_bytes(4, "big")),
        _with_chunk(PLAIN, b"eXIf", b"MM\x00*"),  # may carry an orientation
        encode(Image.new("I;16", (28, 28), 3000)),
        encode(Image.new("RGB", (28, 28), (10, 20, 30))),
        encode(Image.new("P", (28, 28), 1)),
        PLAIN[:-12],  # no IEND: cut short
    ],
    ids=["transparency", "gamma", "exif", "16-bit", "rgb", "palette", "truncated"],
)
def test_other_pngs_take_pillows_path(data):
    assert isinstance(open_upload(data, LIMIT), Image.Image)


def test_a_plain_png_over_the_pixel_limit_is_refused_as_before():
    with pytest.raises(ImageTooLargeError, match="over the limit of 100"):
        open_upload(PLAIN, 100)


def test_a_plain_png_whose_data_opencv_cannot_read_gets_pillows_error():
    broken_data = zlib.compress(b"\x00" * 10)[:-4] + b"oops"
    broken = PLAIN[:33] + png_chunk(b"IDAT", broken_data) + png_chunk(b"IEND", b"")
    opened = open_upload(broken, LIMIT)
    assert isinstance(opened, Image.Image)
    with pytest.raises(InvalidImageError, match="cannot decode this PNG"):
        gray_pixels(opened)
