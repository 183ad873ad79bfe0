"""From logits to verdicts, and the rules that pick what decides an answer: the most-fake face of an image,
each person's verdict over a video's frames (the confident strategy) and the most-fake person.

The confident strategy (the Deepfake Detection Challenge winner's): with ``n`` frame scores (probability
of the fake label), if more than ``confident_min`` and more than ``n / 2.5`` exceed ``high``, the person's
probabilities are the mean over those frames; else if more than ``low_share`` of them are below ``low``,
the mean over those; else the mean over all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from handler.decision import Decision
from handler.video import VideoSettings


@dataclass(frozen=True)
class Verdict:
    """One classified subject (a face crop, a whole image or frame, a person): the top label, its
    probability, every label's probability, and the decision's ``verdict`` (real | fake | uncertain)."""

    label: str
    confidence: float
    probabilities: dict[str, float]
    verdict: str
    # The raw logits it came from (a crop's; empty for aggregates): kept in records, not in answers.
    logits: tuple[float, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class Person:
    """One person of a video: the indices of their crops (in crop order, time order), and their verdict over
    the ``used`` frames the confident strategy kept."""

    crops: tuple[int, ...]
    verdict: Verdict
    used: int


@dataclass(frozen=True)
class Recheck:
    """The deciding crop's verdict on its re-encoded copy (handler/consistency.py)."""

    again: Verdict
    agrees: bool


@dataclass(frozen=True)
class Outcome:
    """What was decided for one request: ``verdict``, the deciding subject's (a face, the whole image, a
    person, or the frames over time); ``deciding``: that face's or person's index (None: the whole picture);
    ``people``: a video's people; ``recheck``: the consistency check's result, when it ran."""

    verdict: Verdict
    deciding: int | None = None
    people: tuple[Person, ...] = ()
    recheck: Recheck | None = None

    @property
    def final(self) -> str:
        """The answer's verdict: ``uncertain`` when a re-encoded copy disagreed, else the deciding verdict."""
        return "uncertain" if self.recheck is not None and not self.recheck.agrees else self.verdict.verdict


def verdict_of(probabilities: dict[str, float], decision: Decision, logits: Sequence[float] = ()) -> Verdict:
    """The top label (the first of equals, in label order), its probability, and the decision's verdict."""
    label = max(probabilities, key=probabilities.__getitem__)
    return Verdict(label, probabilities[label], probabilities, decision.verdict(probabilities, label), tuple(logits))


def verdicts(labels: Sequence[str], logits: torch.Tensor, decision: Decision) -> list[Verdict]:
    """Logits -> one verdict per row: the decision's probabilities by label (calibrated when it is), the
    top label and its probability, and the decision's verdict."""
    rows = logits.float().tolist()
    return [verdict_of(dict(zip(labels, row)), decision, raw) for row, raw in zip(decision.probabilities(logits).tolist(), rows)]


def most_fake(probabilities: Sequence[dict[str, float]], fake_label: str) -> int:
    """The index of the subject that decides (a face of an image, a person of a video): the highest
    probability of ``fake_label``; for a model without that label, the most confident one."""
    if all(fake_label in p for p in probabilities):
        return max(range(len(probabilities)), key=lambda i: probabilities[i][fake_label])
    return max(range(len(probabilities)), key=lambda i: max(probabilities[i].values()))


def confident_frames(scores: Sequence[float], settings: VideoSettings) -> list[int]:
    """Indices of the frames whose probabilities make up a person's verdict (the confident strategy)."""
    n = len(scores)
    high = [i for i, s in enumerate(scores) if s > settings.high]
    if len(high) > settings.confident_min and len(high) > n / 2.5:
        return high
    low = [i for i, s in enumerate(scores) if s < settings.low]
    if len(low) > settings.low_share * n:
        return low
    return list(range(n))


def over_frames(found: Sequence[Verdict], fake_label: str, settings: VideoSettings) -> tuple[dict[str, float], int]:
    """Mean probabilities over the frames the confident strategy keeps (all frames for a model without
    the fake label), and how many it kept."""
    labels = list(found[0].probabilities)
    scores = [v.probabilities.get(fake_label) for v in found]
    chosen = confident_frames(scores, settings) if fake_label in labels else list(range(len(found)))
    return {label: sum(found[i].probabilities[label] for i in chosen) / len(chosen) for label in labels}, len(chosen)
