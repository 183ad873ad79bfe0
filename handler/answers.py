"""The answer's JSON, built in one place: the verdict of each subject, the request's answer around it,
and the explanation block."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from handler.decision import Decision
from handler.explain import METHOD, overlay_png
from handler.request import Subjects

Answer = dict[str, Any]


@dataclass(frozen=True)
class ModelIdentity:
    """Metadata stamped on every answer."""

    name: str
    version: str
    demo: bool


@dataclass(frozen=True)
class Verdict:
    """One classified subject (a face crop or a whole image): the top label, its probability, every
    label's probability, and the decision's ``verdict`` (real | fake | uncertain)."""

    label: str
    confidence: float
    probabilities: dict[str, float]
    verdict: str

    def as_dict(self) -> Answer:
        return {"label": self.label, "confidence": self.confidence, "probabilities": self.probabilities, "verdict": self.verdict}


def verdicts(labels: Sequence[str], logits: torch.Tensor, decision: Decision) -> list[Verdict]:
    """Logits -> one verdict per row: the decision's probabilities by label (calibrated when it is), the
    top label and its probability, and the decision's verdict."""
    rows = decision.probabilities(logits).tolist()
    found = []
    for row in rows:
        best = max(range(len(row)), key=row.__getitem__)
        probabilities = dict(zip(labels, row))
        found.append(Verdict(labels[best], row[best], probabilities, decision.verdict(probabilities, labels[best])))
    return found


def answer(
    identity: ModelIdentity,
    subjects: Subjects,
    found: Sequence[Verdict],
    deciding: int,
    computed_by: tuple[str, str],
    decision: Decision,
) -> Answer:
    """One request's answer: the deciding subject's verdict (the most-fake face, or the whole image), the
    decision that made it, the model identity, what computed it (runtime, precision), and each face with
    its own verdict."""
    faces = [{"box": box.as_list(), **verdict.as_dict()} for box, verdict in zip(subjects.boxes, found)]
    return {
        **found[deciding].as_dict(),
        "decision": decision.as_block(),
        "model": identity.name,
        "version": identity.version,
        "demo": identity.demo,
        "runtime": computed_by[0],
        "precision": computed_by[1],
        "mode": subjects.mode,
        "analyzed": subjects.analyzed,
        "decided_by_face": deciding if faces else None,
        "faces": faces,
        "faces_skipped": [{"box": box.as_list()} for box in subjects.skipped],
        "image_size": list(subjects.original_size),
    }


def explanation(subjects: Subjects, maps: torch.Tensor) -> Answer:
    """Rollout maps as numbers (one per face, or one for the whole image) and as one overlay PNG."""
    regions = [r.as_list() for r in subjects.regions]
    grids = [m.numpy() for m in maps]
    return {
        "method": METHOD,
        "grid_size": list(maps.shape[1:]),
        "maps": [{"region": region, "attention": np.round(grid, 4).tolist()} for region, grid in zip(regions, grids)],
        "overlay_png": overlay_png(subjects.original_size, regions, grids),
    }
