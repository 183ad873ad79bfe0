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
import sys
from pathlib import Path

from scripts.training.dataset import DatasetError, load_samples
from scripts.training.evaluate import EvaluationError, evaluate, write_evaluation
from scripts.training.predictors import add_predictor_arguments, predictor_from_args
from scripts.training.report import summary


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
