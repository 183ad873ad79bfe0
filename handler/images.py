"""Safe decoding of untrusted image bytes into an RGB ``PIL.Image``."""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass

import numpy as np
import pi_heif
from PIL import Image, ImageOps, UnidentifiedImageError

from handler.errors import CorruptImage, EmptyInput, ImageTooLarge, PayloadTooLarge, UnsupportedMediaType

# HEIC/HEIF (phones' default) through libheif + libde265 inside the pi-heif wheel: decoders only, no
# encoder; 10/12-bit pictures come out scaled to 8 bits, the primary image of a sequence, its rotation
# and mirroring applied. Pillow decodes AVIF itself (libavif inside its wheel).
pi_heif.register_heif_opener()

# Pillow's JPEG opener also returns the multi-picture (MPO) files many phone cameras write.
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "AVIF", "HEIF")
ACCEPTED_NAMES = "JPEG, PNG, WebP, BMP, GIF, TIFF, AVIF or HEIC/HEIF"
# ISO base media file brands of still images (the ftyp box at byte 4): AVIF, then HEIC/HEIF.
AVIF_BRANDS = (b"avif", b"avis")
HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1")

# Leading bytes of accepted formats: bytes that start like one but do not parse are a damaged image,
# not a wrong type.
SIGNATURES = {
    b"\xff\xd8\xff": "JPEG",
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
}

# White is what a transparent image shows on a page; the background replaces alpha.
BACKGROUND = (255, 255, 255)


@dataclass(frozen=True)
class ImageLimits:
    """Caps applied before any pixel is decoded, and the JPEG draft size.

    ``jpeg_draft_side`` > 0 lets the JPEG decoder scale by 1/2, 1/4 or 1/8 while the shorter side stays
    at least that many pixels (far cheaper than decoding a large photo in full); 0 decodes in full.
    """

    max_bytes: int
    max_pixels: int
    jpeg_draft_side: int = 0


@dataclass(frozen=True)
class Decoded:
    """A decoded RGB image and the size of the full-resolution picture it shows (EXIF orientation
    applied). They differ when a JPEG was decoded at reduced size (``jpeg_draft_side``)."""

    image: Image.Image
    original_size: tuple[int, int]

    @property
    def scale(self) -> tuple[float, float]:
        """Factors from decoded pixels to original pixels (x, y)."""
        return self.original_size[0] / self.image.width, self.original_size[1] / self.image.height


def decode(data: bytes, limits: ImageLimits) -> Decoded:
    """Decode ``data`` into an RGB image, first frame only, EXIF orientation applied.

    Raises ``EmptyInput``, ``PayloadTooLarge``, ``UnsupportedMediaType``, ``ImageTooLarge``
    (pixel count above the cap, decompression bombs included) or ``CorruptImage``.
    """
    if not data:
        raise EmptyInput(f"the request carried no bytes; send a {ACCEPTED_NAMES} image")
    if len(data) > limits.max_bytes:
        raise PayloadTooLarge(
            f"the image is {len(data)} bytes; at most {limits.max_bytes} bytes are accepted"
        )
    image = _open(data, limits)
    full = image.size
    try:
        _draft(image, limits.jpeg_draft_side)
        image.load()
        loaded = image.size
        image = ImageOps.exif_transpose(image)
        if image.size != loaded:  # a 90-degree orientation swapped width and height
            full = (full[1], full[0])
        return Decoded(to_rgb(image), full)
    except Exception as exc:  # anything Pillow raises on these bytes is the bytes' fault
        raise CorruptImage(
            f"the {image.format} data could not be decoded ({exc}); the file may be truncated or damaged"
        ) from exc


def decode_image(data: bytes, limits: ImageLimits) -> Image.Image:
    """``decode(data, limits).image``: the RGB image alone."""
    return decode(data, limits).image


def _open(data: bytes, limits: ImageLimits) -> Image.Image:
    """Read the header only and enforce the pixel cap before decoding."""
    try:
        with warnings.catch_warnings():
            # Our own pixel cap below is stricter than Pillow's warning threshold.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(
            f"the image header declares too many pixels ({exc}); at most {limits.max_pixels} pixels are accepted"
        ) from exc
    except UnidentifiedImageError as exc:
        claimed = _claimed_format(data)
        if claimed:
            raise CorruptImage(f"the data starts like a {claimed} file but its header is truncated or damaged") from exc
        raise UnsupportedMediaType(
            f"the bytes are not a supported image; send a {ACCEPTED_NAMES} file"
        ) from exc
    except Exception as exc:
        raise CorruptImage(f"the image header could not be read ({exc}); the file may be truncated or damaged") from exc
    width, height = image.size
    if width < 1 or height < 1:
        raise CorruptImage(f"the image declares a size of {width}x{height} pixels")
    if width * height > limits.max_pixels:
        raise ImageTooLarge(
            f"the image is {width}x{height} = {width * height} pixels; "
            f"at most {limits.max_pixels} pixels are accepted"
        )
    return image


def _claimed_format(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    if data[4:8] == b"ftyp" and data[8:12] in AVIF_BRANDS + HEIF_BRANDS:
        return "AVIF" if data[8:12] in AVIF_BRANDS else "HEIC/HEIF"
    return next((name for magic, name in SIGNATURES.items() if data.startswith(magic)), None)


def _draft(image: Image.Image, side: int) -> None:
    """Ask the JPEG decoder for a reduced size whose shorter side is still >= ``side``."""
    width, height = image.size
    if side <= 0 or image.format not in ("JPEG", "MPO") or min(width, height) <= side:
        return
    scale = side / min(width, height)
    image.draft(None, (math.ceil(width * scale), math.ceil(height * scale)))


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB.

    16-bit and 32-bit grey levels are scaled down (``convert`` alone would saturate them);
    transparent pixels are composited onto a white background.
    """
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I") or image.mode == "F":
        sixteen_bit = image.mode.startswith("I;16")
        return Image.fromarray(_to_uint8(np.asarray(image), sixteen_bit)).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _to_uint8(levels: np.ndarray, sixteen_bit: bool) -> np.ndarray:
    """Scale integer or float grey levels to 0..255.

    16-bit levels always scale by 1/257; 32-bit integers only when they exceed 8 bits;
    floats are taken as 0..1 when they stay within it, else as 0..255.
    """
    if levels.dtype.kind == "f":
        top = 1.0 if float(np.nanmax(levels, initial=0.0)) <= 1.0 else 255.0
        scaled = np.nan_to_num(levels, nan=0.0) * (255.0 / top)
    else:
        wide = levels.astype(np.int64)
        scaled = wide / 257.0 if sixteen_bit or wide.max(initial=0) > 255 else wide
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
