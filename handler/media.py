"""Media kinds: each turns a request's bytes into the subjects to classify. One seam per kind.

A kind says whether it ``accepts`` a payload (by content, never by name or Content-Type) and makes its
``subjects``. The classifier asks the kinds in order; images come last and accept anything, so bytes
no kind recognises get the image decoder's "not an image" error. Videos are handler/video.py:VideoMedia; a new kind is a class
here, listed before images.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Protocol

from handler.faces import FaceDetector, FaceSettings, Subjects, find_subjects
from handler.fingerprint import fingerprint
from handler.images import ImageLimits, decode


class MediaKind(Protocol):
    name: str

    def accepts(self, payload: bytes) -> bool:
        """True when this kind decodes ``payload``."""

    def subjects(self, payload: bytes, mode: str) -> Subjects:
        """What to classify in ``payload`` under face ``mode``; raises ``ClientError`` for bad input."""


class ImageMedia:
    """Still images: safe decoding (handler/images.py), then the face stage; with ``fingerprints`` also
    the picture's perceptual hash (records)."""

    name = "image"

    def __init__(self, limits: ImageLimits, faces: FaceSettings, detector: Callable[[], FaceDetector], fingerprints: bool = False) -> None:
        self.limits, self.faces, self.detector, self.fingerprints = limits, faces, detector, fingerprints

    def accepts(self, payload: bytes) -> bool:
        return True

    def subjects(self, payload: bytes, mode: str) -> Subjects:
        decoded = decode(payload, self.limits)
        found = find_subjects(decoded, mode, self.faces, self.detector)
        return replace(found, fingerprint=fingerprint(decoded.image)) if self.fingerprints else found
