"""Video sampling: frames of a clip with PyAV (FFmpeg's libraries, no binary, no shell). The media kind
that finds faces in them and links them into people is handler/video_media.py.

The container is recognised by content (MP4/MOV, Matroska/WebM, AVI) and opened with that demuxer
only, so no playlist, concat or image-sequence reader is reachable. Every limit is checked before the
costly step it guards; a bad file is a ``ClientError`` (4xx JSON), never a stuck worker.

Sampling: ``frames`` timestamps evenly spaced over the clip; one demux pass (no decoding) reads each
packet's timestamp and keyframe flag, then the decoder seeks to a keyframe only when that skips frames
it would otherwise decode, so short-GOP clips are read by seeking and long-GOP clips in one pass.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from PIL import Image

from handler.errors import CorruptVideo, NoFrames, UnsupportedVideo, VideoTooLarge, VideoTooSlow
from handler.images import AVIF_BRANDS, HEIF_BRANDS

# Brands of ISO-BMFF files that are still images (HEIF/AVIF), not videos.
IMAGE_BRANDS = AVIF_BRANDS + HEIF_BRANDS  # still images in the same box format as MP4/MOV


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
    threads: int = 0  # the decoder's threads (the handler option threads; 0: FFmpeg's default, every core)


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
            if settings.threads:
                stream.codec_context.thread_count = settings.threads
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
