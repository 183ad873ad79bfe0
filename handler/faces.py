"""The face stage's shared parts: face modes and settings, the detector seam (``detect(image, scale) ->
boxes``; the registry and Haar and YuNet are handler/detectors.py, BlazeFace handler/blazeface.py), what a search could see, and the square crops the
model classifies (it was trained on face crops)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Protocol, Sequence

from PIL import Image

from handler.errors import BadOption
from handler.geometry import Box
from handler.images import Decoded

logger = logging.getLogger(__name__)

FACE_MODES = ("auto", "faces", "off")


@dataclass(frozen=True)
class FaceSettings:
    """How the face stage runs: default ``mode`` (auto | faces | off), crop ``margin``, at most
    ``max_faces`` classified per image. Built from the handler options (``HandlerOptions.faces``), which
    hold the defaults; which face decides is handler/verdicts.py:most_fake."""

    mode: str
    margin: float
    max_faces: int


def check_mode(mode: str) -> str:
    """``mode`` when it is a face mode; raises ``BadOption`` otherwise."""
    if mode not in FACE_MODES:
        raise BadOption(f"face mode {mode!r} is not one of {', '.join(FACE_MODES)}")
    return mode


def detection_scale(decoded: Decoded) -> float:
    """The decoded image's pixels per original pixel, as ``detect`` takes it (``face_min_size`` counts in
    original pixels)."""
    return 1 / max(decoded.scale)


@dataclass(frozen=True)
class FaceSearch:
    """What one image's face search could see: ``detector``'s name and ``smallest_face``, the smallest face
    (original pixels) it looks for there, so "no face found" reads "none of at least this size"."""

    detector: str
    smallest_face: int

    @classmethod
    def of(cls, detector: "FaceDetector", size: tuple[int, int], scale: float = 1.0) -> "FaceSearch":
        """``detector``'s search of an image of ``size`` (``scale`` as in ``detect``), in whole pixels."""
        return cls(detector.name, math.ceil(round(detector.smallest_face(size, scale), 6)))

    @staticmethod
    def at_least(search: "FaceSearch | None") -> str:
        """The words a "no face" message puts after "no face": "of at least N px " when ``search`` says N."""
        return f"of at least {search.smallest_face} px " if search else ""

    @classmethod
    def tried(cls, detector: "FaceDetector", size: tuple[int, int], scale: float = 1.0) -> "FaceSearch | None":
        """``of``, or None (and a log line) when the detector cannot say: a figure beside an answer must
        not cost the answer, for an image or a video."""
        try:
            return cls.of(detector, size, scale)
        except Exception:  # noqa: BLE001 - e.g. a plug-in detector's surprise
            logger.warning("the face detector could not say the smallest face it searched for", exc_info=True)
            return None


class FaceDetector(Protocol):
    name: str
    min_face: int  # the smallest face reported, in original pixels

    def smallest_face(self, size: tuple[int, int], scale: float = 1.0) -> float:
        """The smallest face, in original pixels, the search of an image of ``size`` pixels looks for, with
        ``scale`` as in ``detect``: ``min_face``, or more where the image's resolution or the detector's
        own floor keeps smaller faces out (a JPEG decoded at a quarter of its size)."""

    def detect(self, image: Image.Image, scale: float = 1.0) -> list[Box]:
        """Faces in an RGB image, largest first, in that image's pixels. ``scale``: the image's pixels per
        original pixel (below 1 for a JPEG decoded at reduced size), so ``min_face`` stays in original pixels."""

    def detect_many(self, images: Sequence[Image.Image], scales: Sequence[float]) -> list[list[Box]]:
        """``detect`` of each image (with its scale), in one go where the detector can batch them."""


class OneByOne:
    """``detect_many`` for detectors that take one image at a time, on a copy at most ``detect_side`` pixels
    long (0: the image itself); ``smallest_face``: ``min_face``, or one pixel of that copy where that is more."""

    detect_side: int = 0
    min_face: int = 1

    def smallest_face(self, size: tuple[int, int], scale: float = 1.0) -> float:
        shrink = shrink_factor(size, self.detect_side) if self.detect_side else 1.0
        return max(float(self.min_face), 1 / shrink / scale)

    def detect_many(self, images: Sequence[Image.Image], scales: Sequence[float]) -> list[list[Box]]:
        return [self.detect(image, scale) for image, scale in zip(images, scales)]


def shrink_factor(size: tuple[int, int], side: int) -> float:
    """What an image of ``size`` is shrunk by so its longer side is at most ``side`` (never enlarged)."""
    return min(1.0, side / max(1, *size))


def shrunk(image: Image.Image, side: int) -> tuple[Image.Image, float]:
    """``image`` shrunk so its longer side is at most ``side`` (never enlarged), and the factor: the
    detection copy, and the copies a video keeps of its crops and frames."""
    shrink = shrink_factor(image.size, side)
    if shrink == 1.0:
        return image, 1.0
    size = (max(1, round(image.width * shrink)), max(1, round(image.height * shrink)))
    return image.resize(size, Image.Resampling.BILINEAR), shrink


def boxes_back(boxes: list[tuple[float, float, float, float]], shrink: float, image: Image.Image) -> list[Box]:
    """Detection-copy boxes -> image pixels, clipped to the image, largest first."""
    result = []
    for x, y, w, h in boxes:
        left, top = max(0, round(x / shrink)), max(0, round(y / shrink))
        right, bottom = min(image.width, round((x + w) / shrink)), min(image.height, round((y + h) / shrink))
        if right > left and bottom > top:
            result.append(Box(left, top, right - left, bottom - top))
    return sorted(result, key=lambda b: (-b.w * b.h, b.x, b.y))


def crop_region(size: tuple[int, int], box: Box, margin: float) -> Box:
    """A square around ``box``'s centre with side ``max(w, h) * (1 + 2 * margin)``, shifted to stay
    inside an image of ``size`` (and no larger than its shorter side)."""
    width, height = size
    side = min(round(max(box.w, box.h) * (1 + 2 * margin)), width, height)
    cx, cy = box.x + box.w / 2, box.y + box.h / 2
    left = int(min(max(0, round(cx - side / 2)), width - side))
    top = int(min(max(0, round(cy - side / 2)), height - side))
    return Box(left, top, side, side)


def cut(image: Image.Image, region: Box) -> Image.Image:
    """The pixels of ``region`` (in ``image``'s pixels)."""
    return image.crop((region.x, region.y, region.x + region.w, region.y + region.h))


def square_crop(image: Image.Image, box: Box, margin: float) -> Image.Image:
    """The ``crop_region`` of ``box`` cut out of ``image``."""
    return cut(image, crop_region(image.size, box, margin))


