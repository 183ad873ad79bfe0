"""Faces across a clip's sampled frames: where to search each frame (``FrameSearch``), and linking the
faces into people (``link_people``)."""

from __future__ import annotations

from typing import Sequence

from PIL import Image

from handler.faces import FaceDetector, crop_region, cut
from handler.geometry import Box

MAX_GAP = 8  # sampled frames a person may go unseen and still continue their track
WINDOWS_PER_CALL = 8  # windows cut and searched together (each up to the frame's shorter side squared)


class FrameSearch:
    """Where to look for faces in a clip's sampled frames, in time order: the whole frame every
    ``full_every``-th frame, and whenever the previous frame gave no face or is more than ``max_step_s``
    earlier; in between only a window around each face of the previous frame (a square ``window`` times
    the face's longer side), which costs the detector a fraction of a whole frame; a newcomer is found at
    the next whole-frame pass (within
    ``full_every - 1`` sampled frames), a face that left its window at the next pass too (``link_people``
    bridges the gap)."""

    def __init__(self, detector: FaceDetector, full_every: int = 4, window: float = 3.0, max_step_s: float = 1.0) -> None:
        self.detector, self.full_every, self.window, self.max_step_s = detector, full_every, window, max_step_s
        self.previous: list[Box] = []
        self.t: float | None = None
        self.frames = 0
        self.whole = 0  # frames searched whole

    def find(self, t: float, image: Image.Image) -> list[Box]:
        """The faces of the frame at ``t`` seconds, largest first, in its pixels."""
        near = (self.previous and self.t is not None and t - self.t <= self.max_step_s and self.frames % self.full_every != 0)
        boxes = self._near(image) if near else self.detector.detect(image)
        self.whole += not near
        self.frames += 1
        self.previous, self.t = boxes, t
        return boxes

    def _near(self, image: Image.Image) -> list[Box]:
        found: list[Box] = []
        regions = [crop_region(image.size, last, (self.window - 1) / 2) for last in self.previous]
        # a window follows one face: it is searched for faces of at least half that face's size (``scale``
        # raises the detector's minimum), which BlazeFace sees in one level (one 192-px canvas) where the
        # minimum alone would add a finer one
        scales = [max(1.0, max(last.w, last.h) / 2 / self.detector.min_face) for last in self.previous]
        windows = [boxes for start in range(0, len(regions), WINDOWS_PER_CALL)  # a crowd's windows, a few at a time
                   for boxes in self.detector.detect_many([cut(image, region) for region in regions[start : start + WINDOWS_PER_CALL]],
                                                          scales[start : start + WINDOWS_PER_CALL])]
        for region, boxes in zip(regions, windows):
            for box in boxes:
                moved = Box(box.x + region.x, box.y + region.y, box.w, box.h)
                if all(moved.iou(other) < 0.3 for other in found):  # windows overlap: one face, once
                    found.append(moved)
        return sorted(found, key=lambda b: (-b.w * b.h, b.x, b.y))


def _affinity(last: Box, box: Box, gap: int = 1) -> float:
    """How likely ``box`` continues a track last seen ``gap`` sampled frames ago at ``last``: their IoU,
    else a little for a centre within reach (a reach that grows with the gap, since people move), less the
    longer the gap; 0 for boxes of very different sizes or out of reach."""
    iou = last.iou(box)
    if iou > 0.1:
        return iou / gap
    distance = ((last.x + last.w / 2 - box.x - box.w / 2) ** 2 + (last.y + last.h / 2 - box.y - box.h / 2) ** 2) ** 0.5
    reach = (1.5 + 0.75 * (gap - 1)) * max(last.w, last.h, box.w, box.h)
    size_ratio = min(last.w, box.w) / max(last.w, box.w)
    return 0.1 * (1 - distance / reach) / gap if distance < reach and size_ratio > 0.5 else 0.0


def link_people(detections: Sequence[Sequence[Box]], max_gap: int = MAX_GAP) -> list[list[tuple[int, Box]]]:
    """Faces per sampled frame -> people: each a list of (frame index, box), linked greedily (best affinity
    first) with each track's last box, bridging up to ``max_gap - 1`` sampled frames where the face was
    missed, so one person stays one person."""
    tracks: list[list[tuple[int, Box]]] = []
    for index, boxes in enumerate(detections):
        pairs = sorted(
            ((_affinity(track[-1][1], box, index - track[-1][0]), t, b) for t, track in enumerate(tracks)
             if index - track[-1][0] <= max_gap for b, box in enumerate(boxes)),
            reverse=True,
        )
        used_tracks, used_boxes = set(), set()
        for score, t, b in pairs:
            if score <= 0 or t in used_tracks or b in used_boxes:
                continue
            tracks[t].append((index, boxes[b]))
            used_tracks.add(t)
            used_boxes.add(b)
        tracks += [[(index, box)] for b, box in enumerate(boxes) if b not in used_boxes]
    return tracks
