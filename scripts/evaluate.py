"""Evaluate a checkpoint folder or a running TorchServe endpoint on labelled images.

Data: a labelled folder (``root/<label>/*`` or Kaggle's ``root/{Train,Validation,Test}/<label>/*``) or a
split CSV written by the training command (``<run>/splits/test.csv``: exactly the held-out images).
Label names must be the model's (config.id2label). Writes into --output:

  metrics.json           accuracy, per-class precision/recall/F1, ROC-AUC, calibration (ECE), confusion
                         matrix, misclassified and unreadable files, and which model answered
  confusion_matrix.png, roc_curve.png, reliability.png
  predictions.csv        path, label, predicted, confidence, one probability column per label

Both routes run the same handler code, so they give the same numbers on the same data. The face stage
is off by default (--face-mode off): labelled datasets such as Kaggle's are face crops already.

  python -m scripts.evaluate --checkpoint runs/exp1 --data runs/exp1/splits/test.csv --output results/eval
  python -m scripts.evaluate --endpoint http://127.0.0.1:8080 --data runs/exp1/splits/test.csv --output results/eval-served
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scripts.dataset import DatasetError, Sample, check_labels, load_samples
from scripts.predictors import Predictor, Scored, add_predictor_arguments, predict_files, predictor_from_args
from scripts.report import classification_report, save_figures, summary, write_report


class EvaluationError(Exception):
    """Nothing could be evaluated (no readable image, or labels that are not the model's)."""


@dataclass
class Evaluation:
    report: dict
    truth: list[int]
    probabilities: np.ndarray
    scored: list[Scored]


def _model_fields(prediction: dict) -> dict:
    return {key: prediction.get(key) for key in ("model", "version", "demo", "runtime", "precision")}


def evaluate(predictor: Predictor, samples: list[Sample], batch_size: int = 32, progress: bool = True) -> Evaluation:
    """Classify every sample and compute the report; unreadable files are listed, not fatal."""
    by_path = {s.path: s.label for s in samples}
    scored = list(predict_files(predictor, [s.path for s in samples], batch_size, progress, desc="evaluate"))
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
    report["unreadable"] = [{"path": str(s.path), "error": s.error} for s in scored if s.error is not None]
    report["model"] = _model_fields(good[0].prediction)
    return Evaluation(report, truth, probabilities, scored)


def write_predictions(evaluation: Evaluation, path: Path) -> Path:
    labels = evaluation.report["labels"]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "predicted", "confidence", *[f"p_{label}" for label in labels]])
        good = [s for s in evaluation.scored if s.prediction is not None]
        for s, t, row in zip(good, evaluation.truth, evaluation.probabilities):
            writer.writerow([str(s.path), labels[t], s.prediction["label"], f"{s.prediction['confidence']:.6f}",
                             *[f"{p:.6f}" for p in row]])
    return path


def write_evaluation(evaluation: Evaluation, folder: Path) -> list[Path]:
    """metrics.json, the three figures and predictions.csv in ``folder``."""
    written = [write_report(evaluation.report, folder)]
    written += save_figures(evaluation.report, evaluation.truth, evaluation.probabilities, folder)
    written.append(write_predictions(evaluation, folder / "predictions.csv"))
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_predictor_arguments(parser, face_mode="off")
    parser.add_argument("--data", type=Path, required=True, help="labelled folder or split CSV (path,label)")
    parser.add_argument("--output", type=Path, default=Path("results/eval"), help="report folder (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        samples = load_samples(args.data)
        evaluation = evaluate(predictor_from_args(args), samples, args.batch_size, not args.no_progress)
    except (DatasetError, EvaluationError) as exc:
        sys.exit(f"evaluate: {exc}")
    written = write_evaluation(evaluation, args.output)
    model = evaluation.report["model"]
    print(f"model {model['model']} {model['version']} ({model['runtime']} {model['precision']})"
          + ("  DEMO WEIGHTS: predictions are meaningless" if model["demo"] else ""))
    print(summary(evaluation.report))
    if evaluation.report["unreadable"]:
        print(f"  unreadable: {len(evaluation.report['unreadable'])} (listed in metrics.json)")
    print("wrote " + ", ".join(str(p) for p in written))


if __name__ == "__main__":
    main()
