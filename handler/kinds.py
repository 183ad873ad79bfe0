"""The media kinds a worker knows, in the order they are asked whether they ``accept`` a request's bytes:
images come last and accept anything, so bytes no kind recognises get the image decoder's "not an image"
error. A new kind is its own module (a ``handler/media.py:MediaKind``) and one entry here."""

from __future__ import annotations

from typing import Callable

from handler.faces import FaceDetector, FaceSettings
from handler.image_media import ImageMedia
from handler.images import ImageLimits
from handler.media import MediaKind
from handler.video import VideoSettings
from handler.video_media import VideoMedia

KINDS: tuple[Callable[..., MediaKind], ...] = (
    lambda limits, video, faces, detector, hashes: VideoMedia(video, faces, detector, hashes),
    lambda limits, video, faces, detector, hashes: ImageMedia(limits, faces, detector, hashes),
)


def media_kinds(limits: ImageLimits, video: VideoSettings, faces: FaceSettings, detector: Callable[[], FaceDetector],
                hashes: bool) -> tuple[MediaKind, ...]:
    """Every kind, built from the worker's settings; ``hashes``: make the perceptual hashes records keep."""
    return tuple(make(limits, video, faces, detector, hashes) for make in KINDS)
