"""Evaluate a checkpoint folder or a running TorchServe endpoint on labelled images.

Data: a labelled folder (``root/<label>/*`` or Kaggle's ``root/{Train,Validation,Test}/<label>/*``; images
and videos, one row per file: a video's row is its aggregated verdict) or a split CSV written by the
training command (``<run>/splits/test.csv``: exactly the held-out images).
Label names must be the model's (config.id2label). Writes into --output:

  metrics.json           accuracy, per-class precision/recall/F1, ROC-AUC, calibration (ECE), confusion
                         matrix, misclassified and unreadable files, which model answered, its decision,
                         and "operating": TPR at 1/5/10 % FPR, EER, reliability before/after temperature
                         scaling, and for a calibrated model the rates at its thresholds, the share of
                         uncertain answers and the accuracy of the rest
  confusion_matrix.png, roc_curve.png (operating point marked), reliability.png (before | after)
  predictions.csv        path, label, predicted, verdict, confidence, one probability column per label
  robustness.json, robustness.png   with --robustness: AUC and verdict flips after JPEG 90/70/50, half size
                         and back, WebP and a 5 % crop (scores every image six more times)

Both routes run the same handler code, so they give the same numbers on the same data; --ray [ADDRESS] runs
the checkpoint route in a Ray actor pool (docs/scanning.md). The face stage
is off by default (--face-mode off): labelled datasets such as Kaggle's are face crops already.

  python -m scripts.evaluate --checkpoint runs/exp1 --data runs/exp1/splits/test.csv --output results/eval
  python -m scripts.evaluate --endpoint http://127.0.0.1:8080 --data runs/exp1/splits/test.csv --output results/eval-served
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deepfake_service.dataset import MEDIA_SUFFIXES, DatasetError, load_samples
from deepfake_service.training.evaluate import EvaluationError, evaluate, write_evaluation
from deepfake_service.training.predictors import add_predictor_arguments, predictor_from_args
from deepfake_service.training.report import summary
from deepfake_service.training.robustness import write_robustness
from deepfake_service.training.scan import ScanSetupError


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_predictor_arguments(parser, face_mode="off")
    parser.add_argument("--data", type=Path, required=True, help="labelled folder or split CSV (path,label)")
    parser.add_argument("--output", type=Path, default=Path("results/eval"), help="report folder (default: %(default)s)")
    parser.add_argument("--robustness", action="store_true", help="also score re-encoded copies (robustness.json, robustness.png)")
    args = parser.parse_args(argv)
    try:
        samples = load_samples(args.data, MEDIA_SUFFIXES)
        predictor = predictor_from_args(args)
        evaluation = evaluate(predictor, samples, args.batch_size, not args.no_progress)
    except (DatasetError, EvaluationError, ScanSetupError, ValueError) as exc:
        sys.exit(f"evaluate: {exc}")
    written = write_evaluation(evaluation, args.output)
    if args.robustness:
        written += write_robustness(predictor, samples, evaluation, args.output, args.batch_size, not args.no_progress)
    model = evaluation.report["model"]
    print(f"model {model['model']} {model['version']} ({model['runtime']} {model['precision']})"
          + ("  DEMO WEIGHTS: predictions are meaningless" if model["demo"] else ""))
    print(summary(evaluation.report))
    if evaluation.report["unreadable"]:
        print(f"  unreadable: {len(evaluation.report['unreadable'])} (listed in metrics.json)")
    print("wrote " + ", ".join(str(p) for p in written))


if __name__ == "__main__":
    main()
