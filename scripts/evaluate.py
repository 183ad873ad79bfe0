"""Evaluate a checkpoint folder or a running TorchServe endpoint on labelled images.

Data: a labelled folder (``root/<label>/*`` or Kaggle's ``root/{Train,Validation,Test}/<label>/*``; images
and videos, one row per file: a video's row is its aggregated verdict) or a split CSV written by the
training command (``<run>/splits/test.csv``: exactly the held-out images).
Label names must be the model's (config.id2label). Or --records URL: a record store's reviewed records (latest
label real or fake; unsure, unlabelled and probe records left out), each scored on the crops it kept (the face
stage off: they are what the model saw) against the reviewer's label, mapped onto the model's own label names for
real and fake (a model without both is refused). A record's answer is its most fake crop's, as the service decides
an image; a video kept only its deciding frames, so its row is the most fake of those frames, close to but not the
video's own aggregated verdict. Rows are named record/<id>; metrics.json adds "reviewed" (store without password,
records, crops); only with --checkpoint, never --endpoint, whose server would record every crop it is sent as a
new record. Writes into --output:

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
  python -m scripts.evaluate --checkpoint runs/exp2 --records sqlite:///var/records.sqlite3 --records-since 2026-12-01 --output results/eval-reviewed
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deepfake_service.dataset import MEDIA_SUFFIXES, DatasetError, load_samples
from deepfake_service.records.review import ReviewError
from deepfake_service.records.reviewed import add_records_arguments, reviewed_set
from deepfake_service.training.evaluate import EvaluationError, evaluate, evaluate_reviewed, write_evaluation
from deepfake_service.training.predictors import add_predictor_arguments, predictor_from_args
from deepfake_service.training.report import summary
from deepfake_service.training.robustness import write_robustness
from deepfake_service.training.scan import ScanSetupError


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_predictor_arguments(parser, face_mode="off")
    parser.add_argument("--data", type=Path, help="labelled folder or split CSV (path,label); or --records")
    add_records_arguments(parser)
    parser.add_argument("--output", type=Path, default=Path("results/eval"), help="report folder (default: %(default)s)")
    parser.add_argument("--robustness", action="store_true", help="also score re-encoded copies (robustness.json, robustness.png)")
    args = parser.parse_args(argv)
    if (args.data is None) == (args.records is None):
        parser.error("give --data or --records (one of them)")
    if args.records is not None and args.endpoint:
        parser.error("--records scores kept crops in-process only (--checkpoint): a server records what it is sent, so each "
                     "crop posted to --endpoint would become a new, unlabelled record with its own SHA-256, in the review "
                     "queue and beyond the reach of scripts.records delete --sha256 <original>")
    if args.records is not None and args.keep_records:
        parser.error("--keep-records with --records would record each reviewed crop again as a new record: leave it out")
    if args.records is not None and args.robustness:
        parser.error("--robustness re-encodes files; with --records there are none to keep: score the crops of a run's reviewed/ folder instead")
    try:
        if args.records is not None:
            args.face_mode = "off"  # the kept crops are what the model saw
            reviewed = reviewed_set(args.records, args.records_model, args.records_version, args.records_since)
            evaluation = evaluate_reviewed(predictor_from_args(args), reviewed, args.batch_size, not args.no_progress)
        else:
            samples = load_samples(args.data, MEDIA_SUFFIXES)
            predictor = predictor_from_args(args)
            evaluation = evaluate(predictor, samples, args.batch_size, not args.no_progress)
    except (DatasetError, EvaluationError, ReviewError, ScanSetupError, ValueError) as exc:
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
