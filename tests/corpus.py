"""A generated corpus of unusual inputs, each with the outcome the service must give.

Deterministic and small; nothing binary is kept in git. ``python -m tests.corpus DIR`` writes the
files and an index.json, to look at or to replay with curl.
"""

from __future__ import annotations

import io
import json
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from deepfake_service.samples import imagegen

OCTET = "application/octet-stream"


@dataclass(frozen=True)
class Case:
    """One request: a raw body (``form_field`` None) or a multipart form, and the expected answer."""

    name: str
    body: bytes
    status: int
    error: str | None = None  # the JSON "error" name expected with a 4xx; None: no JSON body to check
    form_field: str | None = None
    content_type: str = OCTET
    form_extra: dict = field(default_factory=dict)


def _photo(width: int, height: int, seed: int = 3) -> Image.Image:
    """A smooth photo-like image (compresses like a real photo, unlike noise)."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, (max(1, height // 100), max(1, width // 100), 3), dtype=np.uint8))
    return small.resize((width, height), Image.BICUBIC)


def predictable_cases() -> list[Case]:
    """Inputs that must get 200 and a prediction."""
    base = imagegen.pattern(64, 48)
    palette = base.convert("P", palette=Image.ADAPTIVE, colors=16)
    sixteen = Image.fromarray((np.arange(48 * 64).reshape(48, 64) * 21).astype(np.uint16))
    return [
        Case("cmyk jpeg", imagegen.encode(base.convert("CMYK"), "JPEG"), 200),
        Case("progressive jpeg", imagegen.encode(base, "JPEG", progressive=True, quality=80), 200),
        Case("exif rotated jpeg", imagegen.exif_rotated_jpeg(), 200),
        Case("16-bit grey png", imagegen.encode(sixteen, "PNG"), 200),
        Case("16-bit grey tiff", imagegen.encode(sixteen, "TIFF"), 200),
        Case("palette png with transparency", imagegen.encode(palette, "PNG", transparency=0), 200),
        Case("LA png", imagegen.encode(base.convert("LA"), "PNG"), 200),
        Case("RGBA png", imagegen.encode(base.convert("RGBA"), "PNG"), 200),
        Case("grayscale png", imagegen.encode(base.convert("L"), "PNG"), 200),
        Case("bilevel png", imagegen.encode(base.convert("1"), "PNG"), 200),
        Case("1x1 png", imagegen.encode(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG"), 200),
        Case("very wide png", imagegen.encode(imagegen.pattern(4000, 3), "PNG"), 200),
        Case("very tall png", imagegen.encode(imagegen.pattern(3, 4000), "PNG"), 200),
        Case("large photo jpeg 4000x3000", imagegen.encode(_photo(4000, 3000), "JPEG", quality=85), 200),
        Case("animated gif", imagegen.animated("GIF"), 200),
        Case("animated webp", imagegen.animated("WEBP"), 200),
        Case("static webp", imagegen.encode(base, "WEBP"), 200),
        Case("bmp", imagegen.encode(base, "BMP"), 200),
        Case("tiff", imagegen.encode(base, "TIFF"), 200),
        Case("multipart data", imagegen.jpeg(), 200, form_field="data", content_type="image/jpeg"),
        Case("multipart file", imagegen.png(), 200, form_field="file", content_type="image/png"),
        Case("multipart image", imagegen.jpeg(seed=2), 200, form_field="image", content_type="image/jpeg"),
        Case("image/jpeg content type", imagegen.jpeg(seed=3), 200, content_type="image/jpeg"),
    ]


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("face.jpg", imagegen.jpeg())
    return buffer.getvalue()


def rejected_cases(max_image_bytes: int, max_image_pixels: int, max_request_size: int) -> list[Case]:
    """Inputs that must get a 4xx (with a JSON error naming the problem, where the handler answers)."""
    rng = np.random.default_rng(7)
    side = int(max_image_pixels**0.5) + 10
    over_cap = imagegen.encode(Image.new("L", (side, side), 0), "PNG")
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto 10 10 lineto stroke\nshowpage\n"
    return [
        Case("empty body", b"", 400, "empty input"),
        Case("plain text", b"hello, this is not an image", 415, "not an image", content_type="text/plain"),
        Case("text as octet-stream", b"hello, this is not an image", 415, "not an image"),
        Case("html", b"<!doctype html><html><body><img src=x></body></html>", 415, "not an image"),
        Case("json body", b'{"image": "aGVsbG8="}', 415, "not an image", content_type="application/json"),
        Case("svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"><rect width="9" height="9"/></svg>', 415, "not an image"),
        Case("zip", _zip(), 415, "not an image"),
        Case("random bytes", rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(), 415, "not an image"),
        Case("eps (not on the allow-list)", eps, 415, "not an image"),
        Case("ico (not on the allow-list)", imagegen.encode(imagegen.pattern(32, 32), "ICO"), 415, "not an image"),
        Case("tga (not on the allow-list)", imagegen.encode(imagegen.pattern(32, 32), "TGA"), 415, "not an image"),
        Case("truncated jpeg, header only", imagegen.jpeg()[:180], 400, "corrupt image"),
        Case("truncated png", imagegen.png()[:100], 400, "corrupt image"),
        Case("png header claiming 100000x100000", imagegen.png_header(100_000, 100_000), 413, "image too large"),
        Case(f"png over the pixel cap ({side}x{side})", over_cap, 413, "image too large"),
        Case("body over the handler's byte cap", bytes(max_image_bytes + 1), 413, "payload too large"),
        Case("body over max_request_size", bytes(max_request_size + 1), 413),
        Case("multipart with no file", b"", 400, "no image in request", form_field="", form_extra={"note": "hello"}),
        Case("multipart with a 0-byte file", b"", 400, "empty input", form_field="data", content_type="image/jpeg"),
        Case("multipart with an unknown field", imagegen.jpeg(), 400, "no image in request", form_field="picture"),
    ]


def build_corpus(max_image_bytes: int, max_image_pixels: int, max_request_size: int) -> list[Case]:
    return predictable_cases() + rejected_cases(max_image_bytes, max_image_pixels, max_request_size)


def main(argv: list[str] | None = None) -> None:
    target = Path((argv or sys.argv[1:] or ["results/corpus"])[0])
    target.mkdir(parents=True, exist_ok=True)
    index = []
    from deepfake_service.project import CONFIG_PROPERTIES, handler_options
    from deepfake_service.serving.properties import read_properties

    options = handler_options()
    limit = int(read_properties(CONFIG_PROPERTIES)["max_request_size"])
    for number, case in enumerate(build_corpus(options.max_image_bytes, options.max_image_pixels, limit)):
        name = f"{number:02d}-{''.join(c if c.isalnum() else '_' for c in case.name)}.bin"
        (target / name).write_bytes(case.body)
        index.append({"file": name, "case": case.name, "status": case.status, "error": case.error, "form_field": case.form_field})
    (target / "index.json").write_text(json.dumps(index, indent=2))
    print(f"wrote {len(index)} cases to {target}")


if __name__ == "__main__":
    main()
