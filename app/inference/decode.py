"""From uploaded bytes to 8-bit grayscale pixels, refusing what is not a safe, accepted image.

The format is decided from the bytes themselves (the client's filename and content type are
not trusted), Pillow is allowed to run only the decoder for that format, and the declared size
is checked against the pixel limit before any pixel is decoded.

A plain 8-bit grayscale PNG (what MNIST digits, and most clients' digits, are sent as) is decoded
by OpenCV at once instead, at a fraction of Pillow's cost for a 28x28 digit and with the same
pixels, since no chunk that could change them (transparency, gamma, colour
profiles, EXIF orientation, animation) is present. Anything else, or anything OpenCV cannot
read, takes Pillow's path and its error messages.
"""

import io
import logging
import struct

import cv2
import numpy as np
from PIL import ExifTags, Image, ImageOps

from app.errors import ImageTooLargeError, InvalidImageError, NoInkError, UnsupportedMediaTypeError

logger = logging.getLogger(__name__)

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")

ACCEPTED_DESCRIPTION = "PNG, JPEG, GIF (first frame), BMP, WebP or TIFF (first page)"

_ACCEPTED_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
# Recognisable documents and images that are refused with 415 rather than called garbage.
_REFUSED_SIGNATURES = (
    (b"%PDF", "PDF"),
    (b"<svg", "SVG"),
    (b"<?xml", "XML/SVG"),
    (b"<!doctype html", "HTML"),
    (b"<html", "HTML"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"8BPS", "PSD"),
    (b"PK\x03\x04", "ZIP"),
    (b"\x1f\x8b", "gzip"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL ", "JPEG XL"),
    (b"qoif", "QOI"),
    (b"{", "JSON"),
)
_ISO_MEDIA_BRANDS = {b"avif": "AVIF", b"avis": "AVIF", b"heic": "HEIC", b"heix": "HEIC", b"mif1": "HEIF"}


def sniff_format(data: bytes) -> str:
    """The accepted format the bytes start with; otherwise a 415 or 400 that says why."""
    if not data:
        raise InvalidImageError("the file is empty")
    for signature, name in _ACCEPTED_SIGNATURES:
        if data.startswith(signature):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    refused = _refused_format(data)
    if refused is not None:
        raise UnsupportedMediaTypeError(f"{refused} is not an accepted image format; send {ACCEPTED_DESCRIPTION}")
    raise InvalidImageError(f"not a recognised image; send {ACCEPTED_DESCRIPTION}")


def _refused_format(data: bytes) -> str | None:
    if data[4:8] == b"ftyp" and data[8:12] in _ISO_MEDIA_BRANDS:
        return _ISO_MEDIA_BRANDS[data[8:12]]
    head = data[:256].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    for signature, name in _REFUSED_SIGNATURES:
        if head.startswith(signature.lower()):
            return name
    return None


# A header opened by Pillow (pixels decoded later, maybe in a thread), or a plain PNG's pixels.
OpenedImage = Image.Image | np.ndarray

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Chunks that leave a grayscale PNG's pixels as they are stored: with only these present, OpenCV
# and Pillow read the same samples.
_PLAIN_PNG_CHUNKS = frozenset((b"IHDR", b"IDAT", b"IEND", b"tEXt", b"zTXt", b"iTXt", b"tIME", b"pHYs"))
_GRAY_8_BIT = (8, 0)  # IHDR's bit depth and colour type


def open_upload(data: bytes, max_pixels: int) -> OpenedImage:
    """A plain 8-bit grayscale PNG decoded at once, or any accepted image with its header checked."""
    pixels = _plain_gray_png_pixels(data, max_pixels)
    return pixels if pixels is not None else open_image(data, max_pixels)


def pixel_count(opened: OpenedImage) -> int:
    return opened.size if isinstance(opened, np.ndarray) else opened.width * opened.height


def gray_pixels(opened: OpenedImage) -> np.ndarray:
    """The picture's 8-bit luminance, decoding it now if it was only opened."""
    return opened if isinstance(opened, np.ndarray) else grayscale(load_pixels(opened))


def _plain_gray_png_pixels(data: bytes, max_pixels: int) -> np.ndarray | None:
    """The pixels of a complete 8-bit grayscale PNG with only plain chunks, within the limit; else None."""
    size = _plain_gray_png_size(data)
    if size is None or not 0 < size[0] * size[1] <= max_pixels:
        return None
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.dtype != np.uint8 or pixels.shape != (size[1], size[0]):
        return None
    return pixels


def _plain_gray_png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) when every chunk up to IEND is a plain one and the image is 8-bit grayscale."""
    if not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR" or len(data) < 26:
        return None
    width, height, depth, colour_type = struct.unpack(">IIBB", data[16:26])
    if (depth, colour_type) != _GRAY_8_BIT:
        return None
    position = len(_PNG_SIGNATURE)
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        if kind not in _PLAIN_PNG_CHUNKS:
            return None
        if kind == b"IEND":
            return width, height
        position += 12 + length  # length, type, data, CRC
    return None  # truncated before IEND


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Parse the header only: the returned image knows its format, mode and size, no pixels yet."""
    image_format = sniff_format(data)
    try:
        image = Image.open(io.BytesIO(data), formats=[image_format])
    except Image.DecompressionBombError as error:
        raise ImageTooLargeError(f"the image declares too many pixels ({error})") from None
    except Exception as error:
        # Pillow's parsers signal malformed input with many exception types (OSError,
        # SyntaxError, ValueError, struct.error, ...); all mean the same thing to a client.
        raise InvalidImageError(f"cannot read this {image_format} file: {_reason(error)}") from None
    width, height = image.size
    if width < 1 or height < 1:
        raise InvalidImageError(f"the {image_format} declares an empty size {width}x{height}")
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"the {image_format} declares {width}x{height} = {width * height} pixels, "
            f"over the limit of {max_pixels}; send a smaller image"
        )
    return image


def load_pixels(image: Image.Image) -> Image.Image:
    """Decode the first frame and apply the EXIF orientation, as a camera or phone means it."""
    try:
        image.load()
    except Exception as error:
        raise InvalidImageError(f"cannot decode this {image.format} file: {_reason(error)}") from None
    try:
        if image.getexif().get(ExifTags.Base.Orientation, 1) != 1:
            return ImageOps.exif_transpose(image)
    except Exception as error:
        # A damaged EXIF block says nothing reliable about orientation; the pixels are fine.
        logger.debug("ignoring unreadable EXIF orientation: %s", error)
    return image


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


def _reason(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    return text[:200]
