"""Finding the image bytes in one request as TorchServe hands it over (a dict of fields)."""

from __future__ import annotations

from typing import Any, Mapping

from handler.errors import MissingImage, UnsupportedMediaType

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
