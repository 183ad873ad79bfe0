"""The records that flow through the core: one ``Request`` in, one ``Subjects`` per decoded request."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from handler.errors import ClientError
from handler.geometry import Box


@dataclass(frozen=True)
class Request:
    """One client request as the stages see it.

    ``payload`` is the media file's bytes, or the ``ClientError`` the adapter met extracting them (it
    passes through as that request's answer). ``face_mode`` overrides the configured face mode (None:
    the default); ``explain`` asks for an attention map beside the verdict."""

    payload: bytes | ClientError
    face_mode: str | None = None
    explain: bool = False


@dataclass(frozen=True)
class Subjects:
    """What gets classified for one request: face crops (with their boxes in original pixels) or the
    whole picture (no boxes). ``skipped`` are faces beyond the cap; ``regions`` is what each crop covers,
    in original pixels; ``media`` names the decoder that produced it."""

    crops: list[Image.Image]
    boxes: list[Box]
    skipped: list[Box]
    mode: str
    regions: list[Box]
    original_size: tuple[int, int]
    media: str = "image"

    @property
    def analyzed(self) -> str:
        return "faces" if self.boxes else "image"
