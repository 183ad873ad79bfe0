"""Evaluate a checkpoint folder or a running TorchServe endpoint on labelled images, or on a store's reviewed records.

The library behind ``python -m scripts.evaluate`` (see its ``--help``).
"""

from __future__ import annotations

import csv
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepfake_service.dataset import DatasetError, Sample, check_labels
from deepfake_service.records.review import ReviewError
from deepfake_service.records.reviewed import ReviewedSet, label_names
from deepfake_service.training.calibration import log_probabilities
from deepfake_service.training.predictors import Predictor, Scored, predict_files
from deepfake_service.training.report import classification_report, operating_report, save_figures, write_report
from deepfake_service.training.reviewed import write_crops
from handler.store import MATCHED_LABELS


class EvaluationError(Exception):
    """Nothing could be evaluated (no readable image, or labels that are not the model's)."""


@dataclass
class Evaluation:
    """The report, and per classified image: true class index, probabilities as answered (calibrated when
    the model has a decision), the uncalibrated log-probabilities behind them, and the verdict."""

    report: dict
    truth: list[int]
    probabilities: np.ndarray
    scored: list[Scored]
    logits: np.ndarray
    verdicts: list[str]
    decision: dict


def _model_fields(prediction: dict) -> dict:
    return {key: prediction.get(key) for key in ("model", "version", "demo", "runtime", "precision")}


def evaluate(predictor: Predictor, samples: list[Sample], batch_size: int = 32, progress: bool = True) -> Evaluation:
    """Classify every sample and compute the report; unreadable files are listed, not fatal."""
    return evaluation_of(samples, list(predict_files(predictor, [s.path for s in samples], batch_size, progress, desc="evaluate")))


def evaluate_reviewed(predictor: Predictor, reviewed: ReviewedSet, batch_size: int = 32, progress: bool = True) -> Evaluation:
    """Score each reviewed record on its kept crops (``predictor`` without a face stage: they are crops already)
    against its reviewer's label; a record's answer is its most fake crop's, as the service decides an image
    (a video kept only its deciding frames, so this is the most fake of those, not the video's own verdict).
    Rows are named ``record/<id>``; the report says which store and how many records (``reviewed``). The crops
    are read from the store while they are written to a temporary folder: ``ReviewError`` when it cannot be read."""
    if not reviewed.records:
        raise EvaluationError(f"the record store {reviewed.store} holds no record labelled real or fake that kept crops "
                              f"({reviewed.skipped})")
    with tempfile.TemporaryDirectory(prefix="reviewed-") as folder:
        crops, owners = write_crops(reviewed, {label: label for label in MATCHED_LABELS}, Path(folder))
        by_record: dict[str, list[Scored]] = {}
        for crop in predict_files(predictor, [s.path for s in crops], batch_size, progress, desc="evaluate"):
            by_record.setdefault(owners[crop.path], []).append(crop)
    good = [s.prediction for group in by_record.values() for s in group if s.prediction is not None]
    try:
        names = label_names(tuple(good[0]["probabilities"]) if good else ())
    except ReviewError as exc:
        raise EvaluationError(str(exc)) from exc
    samples = [Sample(Path(f"record/{r.id}"), names[r.label]) for r in reviewed.records]
    scored = [_most_fake(sample.path, by_record.get(r.id, []), names["fake"]) for sample, r in zip(samples, reviewed.records)]
    evaluation = evaluation_of(samples, scored)
    evaluation.report["reviewed"] = reviewed.describe()
    return evaluation


def _most_fake(path: Path, crops: list[Scored], fake_label: str) -> Scored:
    answered = [c.prediction for c in crops if c.prediction is not None]
    if not answered:
        return Scored(path, error=crops[0].error if crops else "no crop")
    return Scored(path, prediction=max(answered, key=lambda p: p["probabilities"][fake_label]))


def evaluation_of(samples: list[Sample], scored: list[Scored]) -> Evaluation:
    """The report on ``scored`` (one per sample, in any order) against the samples' labels."""
    by_path = {s.path: s.label for s in samples}
    good = [s for s in scored if s.prediction is not None]
    if not good:
        first = scored[0].error if scored else "no images"
        raise EvaluationError(f"no image could be classified (first error: {first})")
    labels = tuple(good[0].prediction["probabilities"])
    try:
        check_labels(samples, labels)
    except DatasetError as exc:
        raise EvaluationError(str(exc)) from exc
    truth = [labels.index(by_path[s.path]) for s in good]
    probabilities = np.array([[s.prediction["probabilities"][label] for label in labels] for s in good])
    report = classification_report(labels, truth, probabilities, [str(s.path) for s in good])
    decision = good[0].prediction.get("decision") or {}
    logits = log_probabilities(probabilities, decision.get("temperature") or 1.0)
    verdicts = [s.prediction.get("verdict") for s in good]
    report["decision"] = decision
    report["operating"] = operating_report(labels, truth, probabilities, logits, verdicts, decision)
    report["provenance"] = provenance_agreement(good, truth, labels, decision.get("fake_label"))
    report["unreadable"] = [{"path": str(s.path), "error": s.error} for s in scored if s.error is not None]
    report["model"] = _model_fields(good[0].prediction)
    return Evaluation(report, truth, probabilities, scored, logits, verdicts, decision)


def provenance_agreement(good: list[Scored], truth: list[int], labels: tuple[str, ...], fake_label: str | None) -> dict:
    """On the files whose provenance declares something (``declared_ai`` true or false): how many there
    are, and how often the declaration agrees with the model's verdict and with the label."""
    rows = [(s.prediction["provenance"]["declared_ai"], s.prediction.get("verdict"), labels[t])
            for s, t in zip(good, truth) if (s.prediction.get("provenance") or {}).get("declared_ai") is not None]
    if not rows:
        return {"declared": 0}
    return {
        "declared": len(rows),
        "declared_ai": sum(declared for declared, _, _ in rows),
        "agrees_with_model": sum(declared == (verdict == "fake") for declared, verdict, _ in rows) / len(rows),
        "agrees_with_label": (sum(declared == (label == fake_label) for declared, _, label in rows) / len(rows)
                              if fake_label in labels else None),
    }


def write_predictions(evaluation: Evaluation, path: Path) -> Path:
    labels = evaluation.report["labels"]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "predicted", "verdict", "confidence", *[f"p_{label}" for label in labels]])
        good = [s for s in evaluation.scored if s.prediction is not None]
        for s, t, row in zip(good, evaluation.truth, evaluation.probabilities):
            writer.writerow([str(s.path), labels[t], s.prediction["label"], s.prediction.get("verdict", ""),
                             f"{s.prediction['confidence']:.6f}", *[f"{p:.6f}" for p in row]])
    return path


def write_evaluation(evaluation: Evaluation, folder: Path) -> list[Path]:
    """metrics.json, the three figures and predictions.csv in ``folder``."""
    written = [write_report(evaluation.report, folder)]
    written += save_figures(evaluation.report, evaluation.truth, evaluation.probabilities, folder)
    written.append(write_predictions(evaluation, folder / "predictions.csv"))
    return written
