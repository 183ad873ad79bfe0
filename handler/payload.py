"""Finding the image bytes in one request as TorchServe hands it over (a dict of fields)."""

from __future__ import annotations

from typing import Any, Mapping

from handler.errors import BadOption, MissingImage, UnsupportedMediaType
from handler.faces import FACE_MODES

# Multipart field names, in the order they are looked for; "body" is a raw request body.
IMAGE_FIELDS = ("data", "file", "image", "body")

HOW_TO_SEND = (
    "send the image as the raw body with Content-Type application/octet-stream or image/* "
    "(curl -T img.jpg), or as a multipart file field named data, file or image (curl -F data=@img.jpg)"
)


def image_bytes(request: Mapping[str, Any]) -> bytes:
    """The image bytes of one request.

    Raises ``MissingImage`` when no known field is present and ``UnsupportedMediaType`` when
    the field arrived as JSON or text (TorchServe decodes those content types before us).
    """
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
FACE_MODE_HEADER = "x-face-mode"


def face_mode(request: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> str | None:
    """The face mode a request asks for, or None for the configured default.

    Raises ``BadOption`` when the value is not one of auto, faces, off.
    """
    value = request.get(FACE_MODE_FIELD)
    if value is None:
        value = next((v for k, v in (headers or {}).items() if str(k).lower() == FACE_MODE_HEADER), None)
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value[:32]).decode("ascii", errors="replace")
    mode = str(value).strip().lower()[:32]
    if mode not in FACE_MODES:
        raise BadOption(f"face mode {mode!r} is not one of {', '.join(FACE_MODES)} "
                        f"(form field {FACE_MODE_FIELD} or header X-Face-Mode)")
    return mode
