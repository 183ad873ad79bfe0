"""Videos: sample frames with PyAV (FFmpeg's libraries, no binary, no shell), find the faces in each,
link them into people across frames, and aggregate each person's frame verdicts.

The container is recognised by content (MP4/MOV, Matroska/WebM, AVI) and opened with that demuxer
only, so no playlist, concat or image-sequence reader is reachable. Every limit is checked before the
costly step it guards; a bad file is a ``ClientError`` (4xx JSON), never a stuck worker.

Sampling: ``frames`` timestamps evenly spaced over the clip; one demux pass (no decoding) reads each
packet's timestamp and keyframe flag, then the decoder seeks to a keyframe only when that skips frames
it would otherwise decode, so short-GOP clips are read by seeking and long-GOP clips in one pass.

Each person's verdict over their frames is handler/verdicts.py:over_frames.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from PIL import Image

from handler.errors import CorruptVideo, NoFaceFound, NoFrames, UnsupportedVideo, VideoTooLarge, VideoTooSlow
from handler.faces import FaceDetector, FaceSearch, FaceSettings, check_mode, crop_region, cut, shrunk
from handler.fingerprint import Fingerprint, fingerprint
from handler.geometry import Box
from handler.images import AVIF_BRANDS, HEIF_BRANDS
from handler.media import one_by_one

# Brands of ISO-BMFF files that are still images (HEIF/AVIF), not videos.
IMAGE_BRANDS = AVIF_BRANDS + HEIF_BRANDS  # still images in the same box format as MP4/MOV
KEEP_SIDE = 448  # crops and whole frames are kept at most this long (the model sees 224)


@dataclass(frozen=True)
class VideoSettings:
    """Limits and sampling for videos (``HandlerOptions.video`` builds it; defaults live there)."""

    frames: int
    max_bytes: int
    max_seconds: float
    max_pixels: int
    max_streams: int
    codecs: tuple[str, ...]
    budget_s: float
    high: float
    low: float
    confident_min: int
    low_share: float
    full_search_every: int


def container_format(payload: bytes) -> str | None:
    """The FFmpeg demuxer for ``payload``'s container, by its leading bytes; None if not a video container."""
    if len(payload) >= 12 and payload[4:8] == b"ftyp":
        return None if payload[8:12] in IMAGE_BRANDS else "mov"
    if len(payload) >= 8 and payload[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip"):
        return "mov"
    if payload[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    if payload[:4] == b"RIFF" and payload[8:12] == b"AVI ":
        return "avi"
    return None


@dataclass
class Sampled:
    """What sampling found: the clip's duration, frame size (as displayed) and codec, and how many frames
    were handed on."""

    duration_s: float
    size: tuple[int, int]
    codec: str
    frames: int = 0


def _targets(stamps: Sequence[int], count: int, start: int, end: int) -> list[int]:
    """Up to ``count`` distinct timestamps of ``stamps`` nearest to evenly spaced times over [start, end]."""
    import bisect

    stamps = sorted(set(stamps))
    if count >= len(stamps):
        return stamps
    chosen = []
    for i in range(count):
        wanted = start + (end - start) * (i + 0.5) / count
        at = bisect.bisect_left(stamps, wanted)
        near = min((p for p in (at - 1, at) if 0 <= p < len(stamps)), key=lambda p: abs(stamps[p] - wanted))
        chosen.append(stamps[near])
    return sorted(set(chosen))


def sample_frames(payload: bytes, settings: VideoSettings, on_frame: Callable[[float, Image.Image], None]) -> Sampled:
    """Decode ``settings.frames`` evenly spaced frames of ``payload`` and call ``on_frame(t, rgb)`` for each,
    in time order (display orientation applied). Raises ``ClientError`` subclasses for bad input."""
    import av

    if len(payload) > settings.max_bytes:
        raise VideoTooLarge(f"the video is {len(payload)} bytes; at most {settings.max_bytes} are accepted")
    demuxer = container_format(payload)
    if demuxer is None:
        raise UnsupportedVideo("not an MP4/MOV, WebM/Matroska or AVI container")
    started = time.monotonic()

    def check_budget() -> None:
        if time.monotonic() - started > settings.budget_s:
            raise VideoTooSlow(f"sampling took over {settings.budget_s:g} s; send a shorter or smaller clip")

    try:
        with av.open(io.BytesIO(payload), mode="r", format=demuxer, metadata_errors="ignore") as container:
            stream, stamps, keyframes = _probe(container, settings, check_budget)
            base = stream.time_base
            start, end = min(stamps), max(stamps)
            duration = float((end - start) * base) if len(stamps) > 1 else 0.0
            if stream.average_rate and len(stamps) > 1:
                duration += float(1 / stream.average_rate)
            if duration > settings.max_seconds:
                raise VideoTooLarge(f"the video lasts {duration:.1f} s; at most {settings.max_seconds:g} s are accepted")
            targets = _targets(stamps, settings.frames, start, end)
        with av.open(io.BytesIO(payload), mode="r", format=demuxer, metadata_errors="ignore") as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            sampled = Sampled(duration, (stream.codec_context.width, stream.codec_context.height), stream.codec_context.name)
            _decode(container, stream, targets, sorted(keyframes), start, on_frame, sampled, check_budget)
    except av.error.EOFError as exc:
        raise NoFrames("the file ends before its first frame") from exc
    except av.error.FFmpegError as exc:
        raise CorruptVideo(f"the video cannot be decoded: {exc.strerror or type(exc).__name__}") from exc
    if sampled.frames == 0:
        raise NoFrames("no frame of the video could be decoded")
    return sampled


def _probe(container, settings: VideoSettings, check_budget: Callable[[], None]):
    """The video stream, its packets' timestamps and keyframe timestamps; checks streams, codec, size."""
    if len(container.streams) > settings.max_streams:
        raise VideoTooLarge(f"the file has {len(container.streams)} streams; at most {settings.max_streams} are accepted")
    if not container.streams.video:
        raise UnsupportedVideo("the file has no video stream (audio only?)")
    if len(container.streams.video) > 1:
        raise UnsupportedVideo(f"the file has {len(container.streams.video)} video streams; one is accepted")
    stream = container.streams.video[0]
    context = stream.codec_context
    if context is None:  # a codec id FFmpeg has no decoder for (a damaged stream header, say)
        raise UnsupportedVideo(f"the video stream's codec is unknown; accepted: {', '.join(settings.codecs)}")
    codec = context.name
    if codec not in settings.codecs:
        raise UnsupportedVideo(f"video codec {codec!r} is not accepted; accepted: {', '.join(settings.codecs)}")
    width, height = context.width, context.height
    if width <= 0 or height <= 0:
        raise CorruptVideo("the video stream has no frame size")
    if width * height > settings.max_pixels:
        raise VideoTooLarge(f"frames are {width}x{height} = {width * height} pixels; at most {settings.max_pixels} are accepted")
    if stream.time_base is None:
        raise CorruptVideo("the video stream has no time base")
    stamps, keyframes = [], []
    # A packet per frame; a cap keeps a hostile file with millions of tiny packets bounded.
    most = int(settings.max_seconds * 240) + 1
    for number, packet in enumerate(container.demux(stream)):
        if number % 256 == 0:
            check_budget()
        if packet.pts is None or packet.size == 0:
            continue
        stamps.append(packet.pts)
        if packet.is_keyframe:
            keyframes.append(packet.pts)
        if len(stamps) > most:
            raise VideoTooLarge(f"the video has over {most} frames; at most {settings.max_seconds:g} s are accepted")
    if not stamps:
        raise NoFrames("the video stream holds no frames")
    return stream, stamps, keyframes or [min(stamps)]


def _decode(container, stream, targets: list[int], keyframes: list[int], start: int, on_frame, sampled: Sampled,
            check_budget: Callable[[], None]) -> None:
    """Decode up to each target timestamp, seeking to its keyframe only when that skips frames."""
    import bisect

    import av

    frames, position = None, None
    for target in targets:
        before = keyframes[max(0, bisect.bisect_right(keyframes, target) - 1)]
        if frames is None or position is None or before > position:
            container.seek(before, stream=stream, backward=True, any_frame=False)
            frames = container.decode(stream)
        picked = None
        try:
            for frame in frames:
                check_budget()
                if frame.pts is None:
                    continue
                position = frame.pts
                if frame.pts >= target:
                    picked = frame
                    break
        except av.error.FFmpegError:
            if sampled.frames == 0:
                raise
            return  # a truncated or damaged tail: keep what was decoded before it
        if picked is None:
            return
        # the frame's pixels as RGB once, wrapped without a second copy (to_image copies them again: 4x the time)
        image = Image.fromarray(picked.to_ndarray(format="rgb24"))
        if picked.rotation:
            image = image.rotate(picked.rotation, expand=True)
        if sampled.frames == 0:
            sampled.size = image.size
        sampled.frames += 1
        on_frame(float((picked.pts - start) * stream.time_base), image)


MAX_GAP = 8  # sampled frames a person may go unseen and still continue their track
WINDOWS_PER_CALL = 8  # windows cut and searched together (each up to the frame's shorter side squared)


class FrameSearch:
    """Where to look for faces in a clip's sampled frames, in time order: the whole frame every
    ``full_every``-th frame, and whenever the previous frame gave no face or is more than ``max_step_s``
    earlier; in between only a window around each face of the previous frame (a square ``window`` times
    the face's longer side). A whole 720p frame costs BlazeFace about five 192-pixel canvases, a window
    one, so detection costs a fraction; a newcomer is found at the next whole-frame pass (within
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


@dataclass
class VideoSubjects:
    """What gets classified for one video: ``crops`` (faces of every sampled frame, or whole frames), and
    for each crop its owner (person index, or -1 for a whole frame) and its sampled frame. ``skipped``:
    (time, box) of each face beyond the per-frame cap."""

    crops: list[Image.Image]
    owners: list[tuple[int, int]]
    boxes: list[Box | None]
    times: list[float]
    people: int
    mode: str
    sampled: Sampled
    skipped: list[tuple[float, Box]] = field(default_factory=list)
    media: str = field(default="video")
    fingerprints: list[Fingerprint] = field(default_factory=list)  # one per sampled frame, when records are kept
    face_search: FaceSearch | None = None  # what a whole frame's search could see (None in mode off)

    @property
    def analyzed(self) -> str:
        return "faces" if self.people else "frames"


def _keep(image: Image.Image) -> Image.Image:
    """``image`` shrunk so its longer side is at most ``KEEP_SIDE``: the model sees 224 pixels."""
    return shrunk(image, KEEP_SIDE)[0]


class VideoMedia:
    """Videos: sampled frames, faces per frame linked into people, whole frames without faces; with
    ``fingerprints`` also each sampled frame's perceptual hash (records)."""

    name = "video"

    def __init__(self, settings: VideoSettings, faces: FaceSettings, detector: Callable[[], FaceDetector], fingerprints: bool = False) -> None:
        self.settings, self.faces, self.detector, self.fingerprints = settings, faces, detector, fingerprints

    def accepts(self, payload: bytes) -> bool:
        return container_format(payload) is not None

    def subjects_many(self, requests: Sequence[tuple[bytes, str]]) -> list[VideoSubjects | Exception]:
        return one_by_one(self.subjects, requests)  # a clip's frames are already many detections

    def subjects(self, payload: bytes, mode: str) -> VideoSubjects:
        check_mode(mode)
        times: list[float] = []
        thumbnails: list[Image.Image | None] = []
        found: list[list[Box]] = []
        face_crops: list[list[Image.Image]] = []
        skipped: list[tuple[float, Box]] = []
        prints: list[Fingerprint] = []
        search = FrameSearch(self.detector(), self.settings.full_search_every) if mode != "off" else None

        def on_frame(t: float, image: Image.Image) -> None:
            times.append(t)
            boxes = search.find(t, image) if search is not None else []
            skipped.extend((t, box) for box in boxes[self.faces.max_faces :])
            boxes = boxes[: self.faces.max_faces]
            found.append(boxes)
            face_crops.append([_keep(cut(image, crop_region(image.size, box, self.faces.margin))) for box in boxes])
            # A whole frame is classified only when no sampled frame shows a face: a frame with faces never
            # needs its copy (shrinking a 1080p frame costs ~14 ms, about a tenth of a clip's time).
            thumbnails.append(None if boxes else _keep(image))
            if self.fingerprints:
                prints.append(fingerprint(image))

        sampled = sample_frames(payload, self.settings, on_frame)
        searched = None if search is None else FaceSearch.tried(search.detector, sampled.size)
        people = link_people(found) if any(found) else []
        if not people:
            if mode == "faces":
                raise NoFaceFound(f"no face {FaceSearch.at_least(searched)}was found in {sampled.frames} sampled frames; "
                                  "send face mode auto or off to classify whole frames")
            return VideoSubjects(thumbnails, [(-1, i) for i in range(len(times))], [None] * len(times), times, 0, mode, sampled,
                                 fingerprints=prints, face_search=searched)
        crops, owners, boxes = [], [], []
        for person, track in enumerate(people):
            for frame, box in track:
                crops.append(face_crops[frame][found[frame].index(box)])
                owners.append((person, frame))
                boxes.append(box)
        return VideoSubjects(crops, owners, boxes, times, len(people), mode, sampled, skipped, fingerprints=prints, face_search=searched)
