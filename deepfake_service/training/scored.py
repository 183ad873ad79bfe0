"""What every predictor gives for one file (``Scored``), the ``Predictor`` protocol, and the two small helpers
the in-process and endpoint predictors share."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence

from handler.errors import RequestError


@dataclass(frozen=True)
class Scored:
    """One file's outcome: ``prediction`` (the handler's dict) or ``error`` (what went wrong); ``sha256`` of
    the bytes read (None: unreadable), the image's PDQ hash (``pdq``, hex; checkpoint only), which weights
    answered (``weights_sha256``; checkpoint only), the Ray ``node`` that scored it ("" in process) and the
    id of the ``record`` kept for it (records on)."""

    path: Path | str
    prediction: dict[str, Any] | None = None
    error: str | None = None
    sha256: str | None = None
    pdq: str | None = None
    weights_sha256: str | None = None
    node: str = ""
    record: str | None = None


class Predictor(Protocol):
    def predict(self, paths: Sequence[Path | str]) -> list[Scored]:
        """Classify ``paths`` (one chunk); one ``Scored`` per path, in order."""


def error_text(error: RequestError) -> str:
    return f"{error.error}: {error.detail}"


def payload_sha256(payload: bytes | RequestError) -> str | None:
    return hashlib.sha256(payload).hexdigest() if isinstance(payload, bytes) else None
