"""The answer's JSON, built in one place and last, from a request's ``Analysis`` (handler/analysis.py): an
image's answer (each face with its verdict, the most-fake face on top), a video's (each person over their
frames, the most-fake person on top), an error's body, and the blocks beside them (decision, explanation,
provenance, match, record). The record store's JSON columns reuse the same blocks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from handler.analysis import Analysis, Match, Receipt
from handler.consistency import Consistency
from handler.decision import Decision
from handler.errors import RequestError
from handler.explain import METHOD, overlay_png
from handler.faces import FaceSearch
from handler.image_media import ImageSubjects
from handler.verdicts import Outcome, Recheck, Verdict
from handler.video_media import VideoSubjects

Answer = dict[str, Any]


@dataclass(frozen=True)
class ModelIdentity:
    """Metadata stamped on every answer."""

    name: str
    version: str
    demo: bool


@dataclass(frozen=True)
class AnswerContext:
    """What every answer of one model shares: who answers, the decision rule, and the consistency check."""

    identity: ModelIdentity
    decision: Decision
    consistency: Consistency | None = None


def answer(analysis: Analysis, context: AnswerContext) -> Answer:
    """The request's JSON answer: its error's body when a stage refused it, else its media kind's answer with
    the explanation (when asked), the provenance block and the match; the record block either way."""
    if analysis.error is not None:
        built = error_body(analysis.error)
    else:
        built = BUILDERS[analysis.subjects.media](analysis, context)
        if analysis.request.explain:
            built["explanation"] = explanation(analysis.subjects, torch.stack(analysis.maps))
        built["provenance"] = analysis.provenance
        if analysis.match is not None:
            built["match"] = match_block(analysis.match)
    if analysis.record is not None:
        built["record"] = record_block(analysis.record)
    return built


def error_body(error: RequestError) -> Answer:
    """``{"error": ..., "detail": ...}`` and the error kind's own fields."""
    return {"error": error.error, "detail": error.detail, **error.fields()}


def verdict_block(verdict: Verdict) -> Answer:
    return {"label": verdict.label, "confidence": verdict.confidence, "probabilities": verdict.probabilities, "verdict": verdict.verdict}


def decision_block(decision: Decision, mode: str) -> Answer:
    """The ``decision`` block: the rule that turned probabilities into verdicts, the face mode its thresholds
    were fitted on, and whether this answer's face ``mode`` (the request's, else the server's) differs from
    it, with a ``note`` naming both when it does."""
    mismatch = decision.face_mode_mismatch(mode)
    block = {
        "calibrated": decision.calibrated,
        "fake_label": decision.fake_label,
        "temperature": decision.temperature,
        "fake_threshold": decision.fake_threshold,
        "uncertain_threshold": decision.uncertain_threshold,
        "target_fpr": decision.target_fpr,
        "uncertain_fpr": decision.uncertain_fpr,
        "fitted_face_mode": decision.face_mode,
        "face_mode_mismatch": mismatch,
    }
    if mismatch:
        block["note"] = (f"the thresholds were fitted on face mode {decision.face_mode} and this answer was analysed in face "
                         f"mode {mode}: the false-positive rates they were set for may not hold")
    return block


def face_search_block(search: FaceSearch | None) -> Answer | None:
    return {"detector": search.detector, "smallest_face": search.smallest_face} if search else None


def match_block(match: Match) -> Answer:
    return {"record": match.record, "label": match.label, "distance": match.distance, "labelled_at": match.labelled_at,
            "max_distance": match.max_distance}


def record_block(receipt: Receipt) -> Answer:
    """``{"id", "kept"}``, or ``kept: false`` and why."""
    return {"id": receipt.id, "kept": True} if receipt.kept else {"id": None, "kept": False, "detail": receipt.detail}


def consistency_block(recheck: Recheck, original: Verdict, consistency: Consistency) -> Answer:
    """The ``consistency`` block for the deciding crop's verdict and its re-encoded copy's."""
    copy = f"JPEG q{consistency.quality} at {consistency.side} px"
    block = {"agrees": recheck.agrees, "reencoded": copy, "verdict": recheck.again.verdict, "probabilities": recheck.again.probabilities}
    if not recheck.agrees:
        block["reason"] = (f"the verdict moved from {original.verdict} to {recheck.again.verdict} when the image was re-encoded "
                           f"({copy}): it depends on how the file was delivered, so it is answered uncertain")
    return block


def _top(outcome: Outcome, analysis: Analysis, context: AnswerContext, checked: Answer | None = None) -> Answer:
    """The fields every answer carries: the verdict on top (and ``checked``, the consistency block, right after
    it), the decision, the model identity and what computed the logits."""
    identity = context.identity
    return {**verdict_block(outcome.verdict), "verdict": outcome.final, **(checked or {}),
            "decision": decision_block(context.decision, analysis.subjects.mode),
            "model": identity.name, "version": identity.version, "demo": identity.demo,
            "runtime": analysis.computed_by[0], "precision": analysis.computed_by[1]}


def image_answer(analysis: Analysis, context: AnswerContext) -> Answer:
    """An image's answer: the deciding subject's verdict (the most-fake face, or the whole image), the
    decision that made it, the model identity, what computed it, and each face with its own verdict."""
    subjects: ImageSubjects = analysis.subjects
    outcome = analysis.outcome
    # crop_pixels: the crop the model saw, in the pixels it was cut from (a large JPEG's are its decoded
    # part), before the processor resized it to the model's input
    faces = [{"box": box.as_list(), "crop_pixels": list(crop.size), **verdict_block(verdict)}
             for box, crop, verdict in zip(subjects.boxes, subjects.crops, analysis.verdicts)]
    checked = {}
    if outcome.recheck is not None and context.consistency is not None:
        checked = {"consistency": consistency_block(outcome.recheck, outcome.verdict, context.consistency)}
    return {
        **_top(outcome, analysis, context, checked),
        "mode": subjects.mode,
        "analyzed": subjects.analyzed,
        "decided_by_face": outcome.deciding,
        "faces": faces,
        "faces_skipped": [{"box": box.as_list()} for box in subjects.skipped],
        "face_search": face_search_block(subjects.face_search),
        "image_size": list(subjects.original_size),
        "media": subjects.media,
    }


def video_answer(analysis: Analysis, context: AnswerContext) -> Answer:
    """A video's answer: each person's verdict over their frames (timeline included), the most-fake
    person's verdict on top; without faces, whole frames aggregated the same way."""
    subjects: VideoSubjects = analysis.subjects
    outcome, found = analysis.outcome, analysis.verdicts

    def moment(crop: int) -> float:
        return round(subjects.times[subjects.owners[crop][1]], 3)

    people = [{
        "id": number,
        "frames_seen": len(person.crops),
        "frames_used": person.used,
        **verdict_block(person.verdict),
        "first_t": moment(person.crops[0]),
        "first_box": subjects.boxes[person.crops[0]].as_list(),
        "timeline": [{"t": moment(i), "box": subjects.boxes[i].as_list(), "probabilities": found[i].probabilities,
                      "verdict": found[i].verdict} for i in person.crops],
    } for number, person in enumerate(outcome.people)]
    built = {
        **_top(outcome, analysis, context),
        "media": subjects.media,
        "mode": subjects.mode,
        "analyzed": subjects.analyzed,
        "duration_s": round(subjects.sampled.duration_s, 3),
        "frames_analyzed": subjects.sampled.frames,
        "image_size": list(subjects.sampled.size),
        "people": people,
        "decided_by_person": outcome.deciding,
        "faces_skipped": [{"t": round(t, 3), "box": box.as_list()} for t, box in subjects.skipped],
        "face_search": face_search_block(subjects.face_search),
    }
    if not outcome.people:
        built["timeline"] = [{"t": round(t, 3), "probabilities": v.probabilities, "verdict": v.verdict} for t, v in zip(subjects.times, found)]
    return built


# Each media kind's answer (handler/kinds.py lists the kinds), by its name.
BUILDERS: dict[str, Callable[[Analysis, AnswerContext], Answer]] = {"image": image_answer, "video": video_answer}


def explanation(subjects: ImageSubjects, maps: torch.Tensor) -> Answer:
    """Rollout maps as numbers (one per face, or one for the whole image) and as one overlay PNG."""
    regions = [r.as_list() for r in subjects.regions]
    grids = [m.numpy() for m in maps]
    return {
        "method": METHOD,
        "grid_size": list(maps.shape[1:]),
        "maps": [{"region": region, "attention": np.round(grid, 4).tolist()} for region, grid in zip(regions, grids)],
        "overlay_png": overlay_png(subjects.original_size, regions, grids),
    }
