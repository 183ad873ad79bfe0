"""The media-kind seam: what every kind (handler/kinds.py lists them) makes of a request's bytes, and what the
rest of the core reads of it, whatever the kind.

A kind says whether it ``accepts`` a payload (by content, never by name or Content-Type), makes its
``Subjects`` (the crops to classify, with what was found), and ``decide``s the request's ``Outcome`` from
the crops' verdicts. Its own answer block is built by handler/answers.py from the same subjects.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Protocol, Sequence, TypeVar

from PIL import Image

from handler.decision import Decision
from handler.faces import FaceSearch
from handler.fingerprint import Fingerprint
from handler.geometry import Box
from handler.verdicts import Outcome, Verdict

T = TypeVar("T")


class Subjects(Protocol):
    """What one request's media gives the classifier, the same for every kind. ``crops``: what is classified,
    in order; ``faces``: how many of them are faces; ``analyzed``: what they are (``faces``, or the kind's
    whole picture: ``image``, ``frames``); ``size``: the picture's or frames' width and height as shown;
    ``fingerprint``: the hash matched against labelled records (None: not matched); ``fingerprints``: the
    hashes kept in the record beside it (a clip's frames); ``face_search``: what the search could see
    (None in mode off)."""

    media: str
    mode: str
    crops: list[Image.Image]
    face_search: FaceSearch | None
    fingerprint: Fingerprint | None
    fingerprints: list[Fingerprint]
    picture: Image.Image | None

    @property
    def analyzed(self) -> str: ...

    @property
    def faces(self) -> int: ...

    @property
    def size(self) -> tuple[int, int]: ...

    def place(self, index: int) -> tuple[int | None, float | None, Box | None]:
        """Where crop ``index`` comes from: its subject (face, or person; None: the whole picture), its frame's
        time in seconds (None: a still image) and its box as the answer gives it (None: the whole picture)."""

    def shown(self, outcome: Outcome, p_fake: Sequence[float]) -> list[int]:
        """The crops a reviewer is shown (the record keeps them), in order, given each crop's P(fake)."""


class MediaKind(Protocol):
    """One kind of media. ``explains``: ``/explanations`` answers it; ``rechecks``: the delivery-consistency
    check (handler/consistency.py) applies to it; ``provenance``: the provenance readers that apply
    (handler/provenance.py)."""

    name: str
    explains: bool
    rechecks: bool
    provenance: tuple[str, ...]

    def accepts(self, payload: bytes) -> bool:
        """True when this kind decodes ``payload``."""

    def subjects_many(self, requests: Sequence[tuple[bytes, str]]) -> list[Subjects | Exception]:
        """The subjects of each (payload, face mode), a failure as that request's exception (never raised), in
        one go where the kind can batch them; a ``ClientError`` for bad input."""

    def decide(self, subjects: Subjects, found: Sequence[Verdict], decision: Decision, rechecks: Sequence[Verdict]) -> Outcome:
        """The request's outcome from its crops' verdicts (and, where the kind rechecks, the verdicts of the
        re-encoded copies)."""


def one_by_one(call: Callable[[Any, Any], T], pairs: Iterable[tuple[Any, Any]]) -> list[T | Exception]:
    """``call`` on each pair of arguments in turn (a request's payload and mode, an image and its scale),
    a failure as that pair's exception: one item's answer, never its batch-mates'."""
    results: list[T | Exception] = []
    for first, second in pairs:
        try:
            results.append(call(first, second))
        except Exception as error:  # noqa: BLE001 - the item's own answer
            results.append(error)
    return results
