"""Handler options: the ``handler:`` section of ``model-config.yaml``, validated once at load."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from handler.detectors import DETECTORS
from handler.faces import FACE_MODES, FaceSettings
from handler.images import ImageLimits
from handler.video import VideoSettings


class OptionsError(Exception):
    """``model-config.yaml``'s handler section names an unknown option or a wrong type."""


@dataclass(frozen=True)
class HandlerOptions:
    """Defaults are the library's: they run any checkpoint folder as it is (torch fp32, full JPEG decode, faces
    off, haar needs no file). What is served is config/model-config.yaml's handler section, which sets every
    key; the keys where it departs from these defaults are listed in tests/test_options.py."""

    checkpoint: str = "checkpoint"
    runtime: str = "torch"
    precision: str = "fp32"
    max_image_bytes: int = 10 * 1024 * 1024
    max_image_pixels: int = 36_000_000
    # JPEG decode may shrink by 1/2..1/8 while the shorter side stays >= this; 0 decodes in full.
    jpeg_draft_side: int = field(default=0, metadata={"min": 0})
    # Threads per worker (the model runtime, the face detector, the video decoder); 0 leaves their default (all cores).
    threads: int = field(default=0, metadata={"min": 0})
    # The face stage (handler/faces.py). "off" here keeps archives built without these keys as they were.
    face_mode: str = field(default="off", metadata={"choices": FACE_MODES})
    face_detector: str = field(default="haar", metadata={"choices": tuple(DETECTORS)})
    # The detector's file, relative to the checkpoint folder: YuNet's ONNX file; for blazeface "" means
    # face_detection_full_range.tflite (the build packs it from models/, where scripts.fetch_face_detector puts it).
    face_model: str = ""
    # Added on each side of a face box, as a fraction of its longer side; the crop is square.
    face_margin: float = field(default=0.2, metadata={"min": 0.0})
    face_min_size: int = 32
    max_faces: int = 8
    face_detect_side: int = 640
    # The label meaning fake: the decision's (handler/decision.py) and the one whose probability picks the
    # deciding face or person; a model without it: the most confident one decides.
    fake_label: str = "Fake"
    # Videos (handler/video.py): frames sampled per clip, and the limits checked before decoding.
    video_frames: int = 32
    video_max_bytes: int = 32 * 1024 * 1024
    video_max_seconds: float = 600.0
    video_max_pixels: int = 3840 * 2160
    video_max_streams: int = 4
    # Comma-separated FFmpeg decoder names.
    video_codecs: str = "h264,hevc,vp8,vp9,av1,mpeg4"
    # Wall-clock seconds for demuxing, decoding and detecting one clip.
    video_budget_s: float = 60.0
    # The confident strategy per person: frames above video_high (more than video_confident_min and
    # more than n / 2.5 of them) or, failing that, below video_low (more than video_low_share of them).
    video_high: float = field(default=0.8, metadata={"min": 0.0})
    video_low: float = field(default=0.2, metadata={"min": 0.0})
    video_confident_min: int = field(default=11, metadata={"min": 0})
    video_low_share: float = field(default=0.9, metadata={"min": 0.0})
    # Faces in videos: the whole frame is searched every this many sampled frames (1: every frame), in
    # between only windows around the faces of the frame before (handler/tracking.py:FrameSearch).
    video_full_search_every: int = field(default=4, metadata={"min": 1})
    # Provenance beside the verdict (handler/provenance.py): C2PA, XMP, EXIF, PNG generator chunks.
    provenance: bool = True
    # PEM trust anchors for C2PA signers: a file in the checkpoint folder (packed) or an absolute path on the
    # serving host; "" reports signers as unverified.
    provenance_trust_list: str = ""
    # Opt-in: also classify one re-encoded copy of each image's crops (JPEG at consistency_quality, at the
    # processor's input size) and answer "uncertain" when the deciding crop's verdict differs between the two.
    consistency_check: bool = False
    consistency_quality: int = field(default=75, metadata={"min": 1})

    @classmethod
    def from_mapping(cls, section: Mapping[str, Any] | None) -> "HandlerOptions":
        """Validate keys and types; raises ``OptionsError`` naming the offending key."""
        section = dict(section or {})
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(section) - set(known))
        if unknown:
            raise OptionsError(f"unknown handler option(s) {unknown}; known: {sorted(known)}")
        for key, value in section.items():
            expected = type(getattr(cls, key))
            if expected is float and type(value) is int:
                value = section[key] = float(value)
            if type(value) is not expected:
                raise OptionsError(f"handler option {key!r} must be {expected.__name__}, got {value!r}")
            least = known[key].metadata.get("min", 1)
            if expected in (int, float) and value < least:
                raise OptionsError(f"handler option {key!r} must be at least {least}, got {value}")
            choices = known[key].metadata.get("choices")
            if choices and value not in choices:
                raise OptionsError(f"handler option {key!r} must be one of {list(choices)}, got {value!r}")
        return cls(**section)

    @property
    def face_model_file(self) -> str:
        """The face detector's file name in the checkpoint folder ("" when the detector needs none)."""
        return DETECTORS[self.face_detector].file_name(self.face_model)

    @property
    def faces(self) -> FaceSettings:
        return FaceSettings(self.face_mode, self.face_margin, self.max_faces)

    @property
    def video(self) -> VideoSettings:
        codecs = tuple(c.strip() for c in self.video_codecs.split(",") if c.strip())
        return VideoSettings(self.video_frames, self.video_max_bytes, self.video_max_seconds, self.video_max_pixels,
                             self.video_max_streams, codecs, self.video_budget_s, self.video_high, self.video_low,
                             self.video_confident_min, self.video_low_share, self.video_full_search_every, self.threads)

    @property
    def limits(self) -> ImageLimits:
        return ImageLimits(self.max_image_bytes, self.max_image_pixels, self.jpeg_draft_side)
