"""Which requests a worker answers: images and videos run on separate registrations of one archive.

An archive whose model-config.yaml has a ``video:`` section is registered twice (the serving stack does
it, deepfake_service/serving/registrations.py): as ``<name>`` for images, with the dynamic batching the
top-level settings give, and as ``<name>-video`` for videos, with the section's own workers and batch
size. Each has its own worker processes, so an image never waits behind a video's decoding. The image
registration answers a video with a 415 naming the video endpoint; the video registration answers both
kinds (a client that sends everything there only gives up the image batching). An archive without the
section is registered once and answers both kinds there.
"""

from __future__ import annotations

from dataclasses import dataclass

VIDEO_SUFFIX = "-video"
VIDEO_SECTION = "video"


def video_twin(name: str) -> str:
    """The name the video registration of model ``name`` is served under."""
    return f"{name}{VIDEO_SUFFIX}"


def is_video_twin(name: str) -> bool:
    return name.endswith(VIDEO_SUFFIX)


def video_section(model_config: dict | None) -> dict | None:
    """The archive's ``video:`` settings, or None when it has none (one registration answers both kinds)."""
    section = (model_config or {}).get(VIDEO_SECTION)
    return section if isinstance(section, dict) else None


def video_registration(name: str, registered) -> str:
    """Where ``name``'s videos go among the ``registered`` names: its twin when there is one, else itself."""
    return video_twin(name) if video_twin(name) in registered else name


@dataclass(frozen=True)
class WorkerRole:
    """What one worker answers: ``video_endpoint`` is where videos go when not here (None: here)."""

    kind: str  # "image" | "video" | "both"
    video_endpoint: str | None = None
    nice: int = 0  # added to the worker process's niceness when it starts (video workers yield the CPU)


def worker_role(model_name: str, model_config: dict | None) -> WorkerRole:
    """The role of a worker of registration ``model_name``, from its archive's model-config.yaml."""
    section = video_section(model_config)
    if section is None:
        return WorkerRole("both")
    if is_video_twin(model_name):
        return WorkerRole("video", nice=int(section.get("nice", 0)))
    return WorkerRole("image", video_endpoint=f"/predictions/{video_twin(model_name)}")
