"""The record of one request's way through the core.

The adapter makes an ``Analysis`` from each request; each stage of ``handler/classifier.py`` fills its
part (the media stage ``subjects``, the forward stage ``verdicts`` and ``computed_by``, the explain
stage ``maps``, the provenance stage ``provenance``) or sets ``error``; ``handler/answers.py`` alone turns
it into the answer. A new stage adds its field here and its block in the answer, nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from handler.errors import ClientError
from handler.faces import Subjects
from handler.verdicts import Verdict
from handler.video import VideoSubjects


@dataclass(frozen=True)
class Request:
    """One client request as the core sees it.

    ``payload`` is the media file's bytes, or the ``ClientError`` the adapter met extracting them (it
    passes through as that request's answer). ``face_mode`` overrides the configured face mode (None:
    the default); ``explain`` asks for an attention map beside the verdict; ``client`` and ``route`` say who
    asked and how (for the record, handler/records.py)."""

    payload: bytes | ClientError
    face_mode: str | None = None
    explain: bool = False
    client: str | None = None
    route: str = "predictions"


@dataclass
class Analysis:
    """One request, what was found in it and what was decided, stage by stage.

    ``error``: the client error that ended it (it is the answer); ``subjects``: what gets classified (face
    crops, whole image, or a video's people and frames); ``verdicts``: one per crop, in crop order;
    ``computed_by``: the runtime and precision that computed them; ``maps``: one attention map per crop
    (explanations only); ``provenance``: the provenance block (None when the reader is off); ``rechecks``:
    one verdict per crop of its re-encoded copy (images with the consistency check on); ``match``: the
    labelled record this image's perceptual hash matched (records on, handler/records.py)."""

    request: Request
    error: ClientError | None = None
    subjects: Subjects | VideoSubjects | None = None
    verdicts: list[Verdict] = field(default_factory=list)
    computed_by: tuple[str, str] | None = None
    maps: list[torch.Tensor] = field(default_factory=list)
    provenance: dict | None = None
    rechecks: list[Verdict] = field(default_factory=list)
    match: dict | None = None

    def __post_init__(self) -> None:
        if isinstance(self.request.payload, ClientError):
            self.error = self.request.payload

    @property
    def open(self) -> bool:
        """Still going: no stage has refused it."""
        return self.error is None
