"""The record of one request's way through the core.

The adapter makes an ``Analysis`` from each request; each stage of ``handler/classifier.py`` fills its
part (subjects, verdicts, outcome, provenance, match, record) or sets ``error``. Records and metrics read
it; ``handler/answers.py`` alone turns it into the answer's JSON, last. A new stage adds its field here and
its block in the answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from handler.errors import RequestError
from handler.media import MediaKind, Subjects
from handler.verdicts import Outcome, Verdict


@dataclass(frozen=True)
class Request:
    """One client request as the core sees it.

    ``payload`` is the media file's bytes, or the ``RequestError`` the adapter met extracting them (it
    passes through as that request's answer). ``face_mode`` overrides the configured face mode (None:
    the default); ``explain`` asks for an attention map beside the verdict; ``client`` and ``route`` say who
    asked and how (for the record)."""

    payload: bytes | RequestError
    face_mode: str | None = None
    explain: bool = False
    client: str | None = None
    route: str = "predictions"


@dataclass(frozen=True)
class Match:
    """A labelled record this image's perceptual hash is within ``max_distance`` bits of: ``record``'s id,
    its latest ``label`` and when it was given, and the ``distance`` in bits."""

    record: str
    label: str
    distance: int
    labelled_at: str
    max_distance: int


@dataclass(frozen=True)
class Receipt:
    """What the record store did with this request's record: its ``id`` when ``kept``, else why not."""

    id: str | None
    kept: bool
    detail: str | None = None


@dataclass
class Analysis:
    """One request, what was found in it and what was decided, stage by stage.

    ``error``: the error that ended it (it is the answer); ``kind``: the media kind that took it;
    ``subjects``: what gets classified; ``verdicts``: one per crop, in crop order; ``computed_by``: the
    runtime and precision that computed them; ``maps``: one attention map per crop (explanations only);
    ``inputs``: each crop's pixels as the processor gave them to the model (when records keep media);
    ``rechecks``: one verdict per crop of its re-encoded copy (consistency check on); ``outcome``: what
    was decided; ``provenance``: the provenance block (None when the reader is off); ``match``: a labelled
    record this image matched (records on); ``record``: what the record store did (records on)."""

    request: Request
    error: RequestError | None = None
    kind: MediaKind | None = None
    subjects: Subjects | None = None
    verdicts: list[Verdict] = field(default_factory=list)
    computed_by: tuple[str, str] | None = None
    maps: list[torch.Tensor] = field(default_factory=list)
    inputs: list[torch.Tensor] = field(default_factory=list)
    rechecks: list[Verdict] = field(default_factory=list)
    outcome: Outcome | None = None
    provenance: dict | None = None
    match: Match | None = None
    record: Receipt | None = None

    def __post_init__(self) -> None:
        if isinstance(self.request.payload, RequestError):
            self.error = self.request.payload

    @property
    def open(self) -> bool:
        """Still going: no stage has refused it."""
        return self.error is None

    @property
    def status(self) -> int:
        """The HTTP status its answer goes with."""
        return 200 if self.error is None else self.error.status
