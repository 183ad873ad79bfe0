"""Finding the image bytes in one request as TorchServe hands it over (a dict of fields)."""

from __future__ import annotations

import base64
import binascii
from typing import Any, Mapping

from handler.errors import BadOption, MissingImage, UnsupportedMediaType
from handler.faces import FACE_MODES

# Multipart field names, in the order they are looked for; "body" is a raw request body.
IMAGE_FIELDS = ("data", "file", "image", "body")

HOW_TO_SEND = (
    "send the image as the raw body with Content-Type application/octet-stream or image/* "
    "(curl -T img.jpg), or as a multipart file field named data, file or image (curl -F data=@img.jpg)"
)


V2_HOW_TO_SEND = (
    'send {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["<base64 of the image file>"]}]}'
)


def is_v2_input(request: Mapping[str, Any]) -> bool:
    """True for one input tensor of a KServe v2 (Open Inference Protocol) request, as TorchServe's
    kservev2 service envelope hands it over: ``{"name", "shape", "datatype", "data"}``."""
    return "datatype" in request and "name" in request


def v2_image_bytes(request: Mapping[str, Any]) -> bytes:
    """The image in a v2 input: a BYTES tensor whose one element is the base64-encoded image file."""
    if request.get("datatype") != "BYTES":
        raise UnsupportedMediaType(f"input {str(request.get('name'))[:64]!r} is {str(request.get('datatype'))[:16]}, not BYTES; {V2_HOW_TO_SEND}")
    value = request.get("data")
    if isinstance(value, list) and len(value) == 1:  # the envelope unwraps one level; accept either
        value = value[0]
    if not isinstance(value, str):
        raise UnsupportedMediaType(f"input {str(request.get('name'))[:64]!r} does not hold one base64 string; {V2_HOW_TO_SEND}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise UnsupportedMediaType(f"input {str(request.get('name'))[:64]!r} is not valid base64 ({exc}); {V2_HOW_TO_SEND}") from exc


def image_bytes(request: Mapping[str, Any]) -> bytes:
    """The image bytes of one request (or of one KServe v2 input tensor).

    Raises ``MissingImage`` when no known field is present and ``UnsupportedMediaType`` when
    the field arrived as JSON or text (TorchServe decodes those content types before us).
    """
    if is_v2_input(request):
        return v2_image_bytes(request)
    for field in IMAGE_FIELDS:
        if field in request:
            value = request[field]
            break
    else:
        named = ", ".join(sorted(str(k) for k in request)) or "none"
        raise MissingImage(f"no image field found (fields sent: {named}); {HOW_TO_SEND}")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    kind = "JSON" if isinstance(value, (dict, list, int, float, bool)) or value is None else "text"
    raise UnsupportedMediaType(f"the {field!r} field arrived as {kind}, not image bytes; {HOW_TO_SEND}")


# Per-request face mode: a multipart form field, or a request header (the field wins when both are sent).
FACE_MODE_FIELD = "face_mode"
FACE_MODE_HEADER = "X-Face-Mode"


def face_mode(request: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> str | None:
    """The face mode a request asks for, or None for the configured default.

    Raises ``BadOption`` when the value is not one of auto, faces, off.
    """
    value = request.get(FACE_MODE_FIELD)
    if value is None:
        value = next((v for k, v in (headers or {}).items() if str(k).lower() == FACE_MODE_HEADER.lower()), None)
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value[:32]).decode("ascii", errors="replace")
    mode = str(value).strip().lower()[:32]
    if mode not in FACE_MODES:
        raise BadOption(f"face mode {mode!r} is not one of {', '.join(FACE_MODES)} "
                        f"(form field {FACE_MODE_FIELD} or header {FACE_MODE_HEADER})")
    return mode
