"""From uploaded bytes to a decoded Pillow image, refusing what is not a safe, accepted image.

The format is decided from the bytes themselves (the client's filename and content type are
not trusted), Pillow is allowed to run only the decoder for that format, and the declared size
is checked against the pixel limit before any pixel is decoded.
"""

import io
import logging

from PIL import ExifTags, Image, ImageOps

from app.errors import ImageTooLargeError, InvalidImageError, UnsupportedMediaTypeError

logger = logging.getLogger(__name__)

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


def _reason(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    return text[:200]
