"""A corpus of bad and odd image files, generated on the fly, with the answer each should get.

Each entry is a file a client might upload. `status` is what the service must answer; for a
200, `digit` is the class it must find (None when any class is acceptable).
"""

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from tests.helpers import drawn_digit, encode, png_chunk, png_declaring


@dataclass(frozen=True)
class CorpusFile:
    kind: str
    build: Callable[[], bytes]
    status: int
    expect: str | int | None  # a fragment of `detail` for errors; the digit (or None) for 200

    def __repr__(self) -> str:
        return self.kind


def _seven(mode: str = "L") -> Image.Image:
    return drawn_digit(7, mode=mode)


def _bad_crc_png() -> bytes:
    data = bytearray(encode(_seven()))
    data[29] ^= 0xFF  # inside the IHDR chunk's CRC (bytes 29-32)
    return bytes(data)


def _gif_bomb() -> bytes:
    """A valid GIF whose logical screen is 65535x65535 with a 1x1 frame in it."""
    header = b"GIF89a" + struct.pack("<HHBBB", 65535, 65535, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    frame = b"," + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return header + frame + b";"


def _bmp_bomb() -> bytes:
    header = struct.pack("<2sIHHI", b"BM", 62, 0, 0, 62)
    info = struct.pack("<IiiHHIIiiII", 40, 60000, 60000, 1, 1, 0, 0, 2835, 2835, 2, 0)
    return header + info + b"\0\0\0\0\xff\xff\xff\0"


def _animated(image_format: str) -> bytes:
    frames = [_seven(), drawn_digit(1)]
    return encode(frames[0], image_format, save_all=True, append_images=frames[1:], duration=100, loop=0)


def _sixteen_bit_png() -> bytes:
    wide = np.asarray(_seven(), dtype=np.uint16) * 257
    return encode(Image.fromarray(wide))


def _palette_with_transparency() -> bytes:
    strokes = drawn_digit(7, ink=255, paper=0)
    palette_image = strokes.point(lambda value: 1 if value > 127 else 0).convert("P")
    palette_image.putpalette([255, 255, 255, 0, 0, 0] + [0] * 762)
    return encode(palette_image, transparency=0)  # palette entry 0 (the background) is see-through


def _exif_rotated_jpeg() -> bytes:
    """Pixels stored turned 90 degrees, with EXIF orientation 6 saying how to turn them back."""
    stored = _seven().transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(stored, "JPEG", exif=exif.tobytes(), quality=95)


def _transparent_background() -> bytes:
    strokes = drawn_digit(7, ink=255, paper=0)
    black = Image.new("RGB", strokes.size, (0, 0, 0))
    return encode(Image.merge("RGBA", (*black.split(), strokes)))


def _wide_strip() -> bytes:
    strip = np.zeros((1, 10_000), dtype=np.uint8)
    strip[0, 4000:6000] = 255
    return encode(Image.fromarray(strip))


def _multipage_tiff() -> bytes:
    return encode(_seven(), "TIFF", save_all=True, append_images=[drawn_digit(1)])


def _ico() -> bytes:
    buffer = io.BytesIO()
    _seven().resize((64, 64)).save(buffer, format="ICO")
    return buffer.getvalue()


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _png_without_iend_data() -> bytes:
    header = struct.pack(">IIBBBBB", 280, 280, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(b"\0" * 10))


CORPUS = [
    CorpusFile("zero-bytes", lambda: b"", 400, "the file is empty"),
    CorpusFile("text-named-png", lambda: b"just some notes, saved as digit.png\n", 400, "not a recognised image"),
    CorpusFile("random-bytes", lambda: np.random.default_rng(3).bytes(3000), 400, "not a recognised image"),
    CorpusFile("html", lambda: b"<!DOCTYPE html><html><body><img src=x></body></html>", 415, "HTML"),
    CorpusFile("svg", lambda: b'<svg xmlns="http://www.w3.org/2000/svg"><text>7</text></svg>', 415, "SVG"),
    CorpusFile("svg-with-xml-prolog", lambda: b'\xef\xbb\xbf<?xml version="1.0"?><svg/>', 415, "XML/SVG"),
    CorpusFile("pdf", lambda: b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n%%EOF\n", 415, "PDF"),
    CorpusFile("json-file", lambda: b'{"pixels": [0, 0, 255]}', 415, "JSON"),
    CorpusFile("zip", lambda: b"PK\x03\x04" + b"\0" * 60, 415, "ZIP"),
    CorpusFile("ico", _ico, 415, "ICO"),
    CorpusFile("truncated-png", lambda: _truncated(encode(_seven())), 400, "PNG"),
    CorpusFile("png-bad-crc", _bad_crc_png, 400, "PNG"),
    CorpusFile("png-no-image-data", _png_without_iend_data, 400, "PNG"),
    CorpusFile("truncated-jpeg", lambda: _truncated(encode(_seven(), "JPEG")), 400, "JPEG"),
    CorpusFile("truncated-gif", lambda: _truncated(encode(_seven(), "GIF")), 400, "GIF"),
    CorpusFile("png-bomb-100000x100000", lambda: png_declaring(100_000, 100_000), 400, "pixels"),
    CorpusFile("png-declaring-5000x5000", lambda: png_declaring(5000, 5000), 400, "over the limit"),
    CorpusFile("gif-bomb", _gif_bomb, 400, "pixels"),
    CorpusFile("bmp-bomb", _bmp_bomb, 400, "pixels"),
    CorpusFile("animated-gif-first-frame", lambda: _animated("GIF"), 200, 7),
    CorpusFile("apng-first-frame", lambda: _animated("PNG"), 200, 7),
    CorpusFile("animated-webp-first-frame", lambda: _animated("WEBP"), 200, 7),
    CorpusFile("multipage-tiff-first-page", _multipage_tiff, 200, 7),
    CorpusFile("1x1-image", lambda: encode(Image.new("L", (1, 1), 200)), 400, "no digit found"),
    CorpusFile("10000x1-image", _wide_strip, 200, None),
    CorpusFile("16-bit-png", _sixteen_bit_png, 200, 7),
    CorpusFile("palette-png-with-transparency", _palette_with_transparency, 200, 7),
    CorpusFile("cmyk-jpeg", lambda: encode(_seven("CMYK"), "JPEG", quality=95), 200, 7),
    CorpusFile("exif-rotated-jpeg", _exif_rotated_jpeg, 200, 7),
    CorpusFile("grayscale-with-alpha", lambda: encode(_seven("LA")), 200, 7),
    CorpusFile("all-black", lambda: encode(Image.new("L", (64, 64), 0)), 400, "no digit found"),
    CorpusFile("all-white", lambda: encode(Image.new("RGB", (64, 64), (255, 255, 255))), 400, "no digit found"),
    CorpusFile("all-black-28x28", lambda: encode(Image.new("L", (28, 28), 0)), 400, "no digit found"),
    CorpusFile("rgba-transparent-background", _transparent_background, 200, 7),
    CorpusFile(
        "rgba-fully-transparent", lambda: encode(Image.new("RGBA", (50, 50), (0, 0, 0, 0))), 400, "fully transparent"
    ),
    CorpusFile("bilevel-png", lambda: encode(_seven().convert("1")), 200, 7),
    CorpusFile("webp-lossless", lambda: encode(_seven(), "WEBP", lossless=True), 200, 7),
]
