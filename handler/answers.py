"""The answer's JSON, built in one place from a request's ``Analysis`` (handler/analysis.py): an image's
answer (each face with its verdict, the most-fake face on top), a video's (each person over their frames,
the most-fake person on top), the explanation block, and the provenance block beside them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from handler.analysis import Analysis
from handler.consistency import Consistency
from handler.decision import Decision
from handler.errors import ClientError
from handler.explain import METHOD, overlay_png
from handler.faces import Subjects
from handler.verdicts import most_fake, over_frames, verdict_of
from handler.video import VideoSettings, VideoSubjects

Answer = dict[str, Any]


@dataclass(frozen=True)
class ModelIdentity:
    """Metadata stamped on every answer."""

    name: str
    version: str
    demo: bool


@dataclass(frozen=True)
class AnswerContext:
    """What every answer of one model shares: who answers, the decision rule, and video aggregation."""

    identity: ModelIdentity
    decision: Decision
    video: VideoSettings
    consistency: Consistency | None = None


def answer(analysis: Analysis, context: AnswerContext) -> Answer | ClientError:
    """The request's answer: its ``ClientError`` when a stage refused it, else the image or video answer
    with the explanation (when asked) and the provenance block."""
    if analysis.error is not None:
        return analysis.error
    if isinstance(analysis.subjects, VideoSubjects):
        built = video_answer(analysis, context)
    else:
        built = image_answer(analysis, context)
    if analysis.request.explain:
        built["explanation"] = explanation(analysis.subjects, torch.stack(analysis.maps))
    built["provenance"] = analysis.provenance
    if analysis.match is not None:
        built["match"] = analysis.match
    return built


def with_record(reply: Answer | ClientError, block: dict) -> None:
    """Stamp an answer (or the client error that is its answer) with its ``record`` block
    (handler/records.py): ``{"id", "kept"}``, or ``kept: false`` and why."""
    if isinstance(reply, ClientError):
        reply.record = block
    else:
        reply["record"] = block


def _made_by(analysis: Analysis, context: AnswerContext) -> Answer:
    """The fields every answer carries: the decision, the model identity and what computed the logits."""
    identity = context.identity
    return {"decision": context.decision.as_block(), "model": identity.name, "version": identity.version,
            "demo": identity.demo, "runtime": analysis.computed_by[0], "precision": analysis.computed_by[1]}


def image_answer(analysis: Analysis, context: AnswerContext) -> Answer:
    """An image's answer: the deciding subject's verdict (the most-fake face, or the whole image), the
    decision that made it, the model identity, what computed it, and each face with its own verdict."""
    subjects: Subjects = analysis.subjects
    found = analysis.verdicts
    deciding = most_fake([v.probabilities for v in found], context.decision.fake_label)
    # crop_pixels: the crop the model saw, in the pixels it was cut from (a large JPEG's are its decoded
    # quarter), before the processor resized it to the model's input: a 16-px face there was enlarged ~10x
    faces = [{"box": box.as_list(), "crop_pixels": list(crop.size), **verdict.as_dict()}
             for box, crop, verdict in zip(subjects.boxes, subjects.crops, found)]
    checked = {}
    if analysis.rechecks and context.consistency is not None:
        block = context.consistency.block(found[deciding], analysis.rechecks[deciding])
        checked = {"consistency": block, **({} if block["agrees"] else {"verdict": "uncertain"})}
    return {
        **found[deciding].as_dict(),
        **checked,
        **_made_by(analysis, context),
        "mode": subjects.mode,
        "analyzed": subjects.analyzed,
        "decided_by_face": deciding if faces else None,
        "faces": faces,
        "faces_skipped": [{"box": box.as_list()} for box in subjects.skipped],
        "face_search": subjects.face_search.as_dict() if subjects.face_search else None,
        "image_size": list(subjects.original_size),
        "media": subjects.media,
    }


def video_answer(analysis: Analysis, context: AnswerContext) -> Answer:
    """A video's answer: each person's verdict over their frames (timeline included), the most-fake
    person's verdict on top; without faces, whole frames aggregated the same way."""
    subjects: VideoSubjects = analysis.subjects
    found, decision = analysis.verdicts, context.decision
    people, timeline, deciding = [], None, None
    if subjects.people:
        for person in range(subjects.people):
            mine = [i for i, (owner, _) in enumerate(subjects.owners) if owner == person]
            probabilities, used = over_frames([found[i] for i in mine], decision.fake_label, context.video)
            first = mine[0]
            people.append({
                "id": person,
                "frames_seen": len(mine),
                "frames_used": used,
                **verdict_of(probabilities, decision).as_dict(),
                "first_t": round(subjects.times[subjects.owners[first][1]], 3),
                "first_box": subjects.boxes[first].as_list(),
                "timeline": [{"t": round(subjects.times[subjects.owners[i][1]], 3), "box": subjects.boxes[i].as_list(),
                              "probabilities": found[i].probabilities, "verdict": found[i].verdict} for i in mine],
            })
        deciding = most_fake([p["probabilities"] for p in people], decision.fake_label)
        top = verdict_of(people[deciding]["probabilities"], decision)
    else:
        probabilities, _ = over_frames(found, decision.fake_label, context.video)
        top = verdict_of(probabilities, decision)
        timeline = [{"t": round(t, 3), "probabilities": v.probabilities, "verdict": v.verdict} for t, v in zip(subjects.times, found)]
    built = {
        **top.as_dict(),
        **_made_by(analysis, context),
        "media": subjects.media,
        "mode": subjects.mode,
        "analyzed": subjects.analyzed,
        "duration_s": round(subjects.sampled.duration_s, 3),
        "frames_analyzed": subjects.sampled.frames,
        "image_size": list(subjects.sampled.size),
        "people": people,
        "decided_by_person": deciding,
        "faces_skipped": [{"t": round(t, 3), "box": box.as_list()} for t, box in subjects.skipped],
        "face_search": subjects.face_search.as_dict() if subjects.face_search else None,
    }
    if timeline is not None:
        built["timeline"] = timeline
    return built


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
