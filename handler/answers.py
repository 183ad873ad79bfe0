"""The answer's JSON, built in one place: the verdict of each subject, the request's answer around it,
and the explanation block."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from handler.decision import Decision
from handler.explain import METHOD, overlay_png
from handler.faces import deciding_face
from handler.request import Subjects
from handler.video import VideoSettings, VideoSubjects, confident_frames

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
    return [_verdict_of(dict(zip(labels, row)), decision) for row in decision.probabilities(logits).tolist()]


def _made_by(identity: ModelIdentity, computed_by: tuple[str, str], decision: Decision) -> Answer:
    """The fields every answer carries: the decision, the model identity and what computed the logits."""
    return {"decision": decision.as_block(), "model": identity.name, "version": identity.version, "demo": identity.demo,
            "runtime": computed_by[0], "precision": computed_by[1]}


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
        **_made_by(identity, computed_by, decision),
        "mode": subjects.mode,
        "analyzed": subjects.analyzed,
        "decided_by_face": deciding if faces else None,
        "faces": faces,
        "faces_skipped": [{"box": box.as_list()} for box in subjects.skipped],
        "image_size": list(subjects.original_size),
        "media": subjects.media,
    }


def _verdict_of(probabilities: dict[str, float], decision: Decision) -> Verdict:
    """The top label (the first of equals, in label order), its probability, and the decision's verdict."""
    label = max(probabilities, key=probabilities.__getitem__)
    return Verdict(label, probabilities[label], probabilities, decision.verdict(probabilities, label))


def _aggregate(found: Sequence[Verdict], fake_label: str, settings: VideoSettings) -> tuple[dict[str, float], int]:
    """Mean probabilities over the frames the confident strategy keeps (all frames for a model without
    the fake label), and how many it kept."""
    labels = list(found[0].probabilities)
    chosen = confident_frames([v.probabilities[fake_label] for v in found], settings) if fake_label in labels else list(range(len(found)))
    return {label: sum(found[i].probabilities[label] for i in chosen) / len(chosen) for label in labels}, len(chosen)


def video_answer(
    identity: ModelIdentity,
    subjects: VideoSubjects,
    found: Sequence[Verdict],
    computed_by: tuple[str, str],
    decision: Decision,
    settings: VideoSettings,
) -> Answer:
    """One video's answer: each person's verdict aggregated over their frames (timeline included), the
    most-fake person's verdict on top; without faces, whole frames aggregated the same way."""
    people, timeline, deciding = [], None, None
    if subjects.people:
        for person in range(subjects.people):
            mine = [i for i, (owner, _) in enumerate(subjects.owners) if owner == person]
            probabilities, used = _aggregate([found[i] for i in mine], decision.fake_label, settings)
            first = mine[0]
            people.append({
                "id": person,
                "frames_seen": len(mine),
                "frames_used": used,
                **_verdict_of(probabilities, decision).as_dict(),
                "first_t": round(subjects.times[subjects.owners[first][1]], 3),
                "first_box": subjects.boxes[first].as_list(),
                "timeline": [{"t": round(subjects.times[subjects.owners[i][1]], 3), "box": subjects.boxes[i].as_list(),
                              "probabilities": found[i].probabilities, "verdict": found[i].verdict} for i in mine],
            })
        deciding = deciding_face([p["probabilities"] for p in people], decision.fake_label)
        top = _verdict_of(people[deciding]["probabilities"], decision)
    else:
        probabilities, _ = _aggregate(found, decision.fake_label, settings)
        top = _verdict_of(probabilities, decision)
        timeline = [{"t": round(t, 3), "probabilities": v.probabilities, "verdict": v.verdict} for t, v in zip(subjects.times, found)]
    answer = {
        **top.as_dict(),
        **_made_by(identity, computed_by, decision),
        "media": "video",
        "mode": subjects.mode,
        "analyzed": subjects.analyzed,
        "duration_s": round(subjects.sampled.duration_s, 3),
        "frames_analyzed": subjects.sampled.frames,
        "image_size": list(subjects.sampled.size),
        "people": people,
        "decided_by_person": deciding,
        "faces_skipped": subjects.skipped,
    }
    if timeline is not None:
        answer["timeline"] = timeline
    return answer


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
