"""Generated test clips (no binary files in git), PyAV-encoded from scikit-image's public-domain photos."""

from __future__ import annotations

import io
import struct
from fractions import Fraction

import av
from PIL import Image
from skimage import data as photos

FACE_SIDE = 240  # the astronaut is pasted at this size: her face is about 44 px (box 83, 31, 44, 44)
FACE_IN_PASTE = (83, 31, 44, 44)


def astronaut(side: int = FACE_SIDE) -> Image.Image:
    return Image.fromarray(photos.astronaut()).resize((side, side), Image.Resampling.BICUBIC)


def frames(count: int, size: tuple[int, int], people: int, step: int = 6):
    """Frames with ``people`` (0, 1 or 2) astronauts: the first moves right by ``step`` px a frame, the
    second (mirrored) moves left by half that; 0 shows scikit-image's coffee (no face)."""
    face, coffee = astronaut(), Image.fromarray(photos.coffee()).resize(size)
    for index in range(count):
        canvas = coffee.copy() if people == 0 else Image.new("RGB", size, (40, 60, 80))
        if people >= 1:
            canvas.paste(face, (10 + index * step, 40))
        if people == 2:
            canvas.paste(face.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (size[0] - FACE_SIDE - 10 - index * step // 2, 100))
        yield canvas


def walking(size: tuple[int, int], count: int):
    """``count`` frames of the astronaut, 0.9 of the frame height, walking left to right over a plain
    background (her face about a sixth of the frame height)."""
    side = size[1] * 9 // 10
    person = astronaut(side)
    for index in range(count):
        canvas = Image.new("RGB", size, (40, 60, 80))
        canvas.paste(person, (round((size[0] - side) * index / count), size[1] // 20))
        yield canvas


def walking_clip(size: tuple[int, int], seconds: int = 10, fps: int = 30) -> bytes:
    """A ``seconds``-long H.264 clip (x264 veryfast, its default keyframe interval of 250 frames) of
    ``walking``: the video benchmark's clip."""
    return clip(count=seconds * fps, fps=fps, size=size, scene=walking(size, seconds * fps),
                stream_options={"preset": "veryfast"})


def clip(people: int = 1, count: int = 20, fps: int = 10, size: tuple[int, int] = (640, 360), codec: str = "libx264",
         fmt: str = "mp4", pts: list[int] | None = None, audio: bool = False, gop: int | None = None,
         turned: int = 0, options: dict[str, str] | None = None, scene=None,
         stream_options: dict[str, str] | None = None) -> bytes:
    """An encoded clip of ``frames(count, size, people)`` (or of the images ``scene`` yields); ``pts`` (in
    1/1000 s) makes its frame rate variable; ``audio`` adds a silent track; ``turned`` stores each frame
    turned that many degrees counterclockwise (for ``rotation_tag`` to undo); ``options`` go to the
    container, ``stream_options`` to the encoder."""
    buffer = io.BytesIO()
    stored = size if turned in (0, 180) else (size[1], size[0])
    with av.open(buffer, "w", format=fmt, options=options or {}) as out:
        stream = out.add_stream(codec, rate=fps, options=stream_options or {})
        stream.width, stream.height, stream.pix_fmt = stored[0], stored[1], "yuv420p" if codec != "png" else "rgb24"
        if gop:
            stream.codec_context.gop_size = gop
        if pts is not None:
            stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        sound = out.add_stream("aac", rate=16000) if audio else None
        for index, image in enumerate(scene if scene is not None else frames(count, size, people)):
            frame = av.VideoFrame.from_image(image.rotate(turned, expand=True) if turned else image)
            if pts is not None:
                frame.pts, frame.time_base = pts[index], Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if sound is not None:
            for packet in sound.encode(_silence()):
                out.mux(packet)
            for packet in sound.encode():
                out.mux(packet)
    return buffer.getvalue()


def _silence() -> av.AudioFrame:
    """1024 samples of mono silence at 16 kHz."""
    frame = av.AudioFrame(format="fltp", layout="mono", samples=1024)
    for plane in frame.planes:
        plane.update(bytes(plane.buffer_size))
    frame.sample_rate = 16000
    return frame


def audio_only() -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        sound = out.add_stream("aac", rate=16000)
        for _ in range(20):
            for packet in sound.encode(_silence()):
                out.mux(packet)
        for packet in sound.encode():
            out.mux(packet)
    return buffer.getvalue()


def no_frames() -> bytes:
    """A WebM (Matroska) file with a video track and not one frame: a clip cut before its first cluster."""
    whole = clip(count=2, codec="libvpx-vp9", fmt="webm")
    return whole[: whole.index(b"\x1f\x43\xb6\x75")]


def rotation_tag(mp4: bytes, degrees: int) -> bytes:
    """``mp4`` with its first track's display matrix set to show it rotated ``degrees`` clockwise (90, 180, 270):
    what phones write instead of turning the pixels."""
    at = mp4.index(b"tkhd")
    if mp4[at + 4] != 0:
        raise ValueError("only version-0 tkhd boxes are patched")
    matrix_at = at + 4 + 4 + 20 + 8 + 8
    cos, sin = {90: (0, 1), 180: (-1, 0), 270: (0, -1)}[degrees]
    matrix = [cos << 16, sin << 16, 0, (-sin) << 16, cos << 16, 0, 0, 0, 1 << 30]
    return mp4[:matrix_at] + struct.pack(">9i", *matrix) + mp4[matrix_at + 36 :]


def with_bad_metadata(mp4: bytes) -> bytes:
    """``mp4`` with its encoder tag's value made invalid UTF-8 (what a mutated or hostile file carries)."""
    at = mp4.index(b"Lavf")
    return mp4[:at] + b"\xff\xfe\xfd\xfc" + mp4[at + 4 :]
