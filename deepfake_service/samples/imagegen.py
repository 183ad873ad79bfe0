"""Generated test images (no binary files in git): encoded bytes for each format and mode."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def pattern(width: int = 48, height: int = 40, seed: int = 0) -> Image.Image:
    """A deterministic RGB noise image."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def photo_jpeg(photo, quality: int = 95, **params) -> bytes:
    """A photo (PIL image or uint8 array, e.g. one of scikit-image's) as JPEG bytes."""
    image = photo if isinstance(photo, Image.Image) else Image.fromarray(np.asarray(photo))
    return encode(image, "JPEG", quality=quality, **params)


def jpeg(seed: int = 0, width: int = 48, height: int = 40) -> bytes:
    return encode(pattern(width, height, seed), "JPEG", quality=90)


def png(seed: int = 0, width: int = 48, height: int = 40) -> bytes:
    return encode(pattern(width, height, seed), "PNG")


def sixteen_bit_png(level: int) -> bytes:
    """A 16-bit grey PNG of one grey level."""
    return encode(Image.fromarray(np.full((20, 30), level, dtype=np.uint16)), "PNG")


def exif_rotated_jpeg(width: int = 40, height: int = 20, orientation: int = 6) -> bytes:
    """A JPEG stored ``width`` x ``height`` whose EXIF says to rotate it (6: 90 degrees clockwise)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(pattern(width, height), "JPEG", exif=exif.tobytes())


def animated(fmt: str, colors=((255, 0, 0), (0, 0, 255))) -> bytes:
    """An animated GIF or WebP whose first frame is ``colors[0]``."""
    frames = [Image.new("RGB", (16, 16), c) for c in colors]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)


def heic(image: Image.Image, quality: int = 80, bit_depth: int = 8, exif: bytes | None = None) -> bytes:
    """``image`` as HEIC (x265 through pillow-heif, a test dependency: serving only decodes);
    ``bit_depth`` 10 or 12 stores the 8-bit levels scaled up to that many bits."""
    import pillow_heif

    if bit_depth == 8:
        picture = pillow_heif.from_pillow(image.convert("RGB"))
    else:
        levels = (np.asarray(image.convert("RGB"), dtype=np.uint16) * 257).astype("<u2")  # 16-bit container
        picture = pillow_heif.from_bytes(mode="RGB;16", size=image.size, data=levels.tobytes())
    buffer = io.BytesIO()
    picture.save(buffer, format="HEIF", quality=quality, **({"exif": exif} if exif else {}),
                 **({"save_to_12bit": True} if bit_depth == 12 else {}))
    return buffer.getvalue()


def heic_sequence(colors=((255, 0, 0), (0, 0, 255))) -> bytes:
    """A HEIC holding one picture per colour; the first is the primary image."""
    import pillow_heif

    pictures = pillow_heif.from_pillow(Image.new("RGB", (32, 32), colors[0]))
    for color in colors[1:]:
        pictures.add_from_pillow(Image.new("RGB", (32, 32), color))
    buffer = io.BytesIO()
    pictures.save(buffer, format="HEIF", quality=90)
    return buffer.getvalue()


def avif(image: Image.Image, quality: int = 80, exif: bytes | None = None) -> bytes:
    """``image`` as AVIF (Pillow's own encoder)."""
    return encode(image.convert("RGB"), "AVIF", quality=quality, **({"exif": exif} if exif else {}))


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels but whose data is tiny (a decompression bomb)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")

