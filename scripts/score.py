"""Score a folder of unlabelled images and videos into a CSV, with a checkpoint folder or a running endpoint.

Columns: path, label, verdict (real | fake | uncertain), confidence, probabilities (JSON object label -> p),
calibrated (true when the model has a decision.json), declared_ai (true/false from the file's provenance, empty
when nothing is declared), declared_by, signer (the C2PA signer's common name), version, demo, error.
A file that cannot be read or decoded gets a row with only its error: it is reported, never fatal.
--face-mode (auto | faces | off) defaults to the model config's face_mode; label and verdict are the
image's (the most-fake face decides), or the video's (the most-fake person decides).
Rows are written chunk by chunk; run the same command again after an interruption and it skips the
paths already in the CSV (--restart starts over).

  python -m scripts.score --checkpoint runs/exp1 --images photos/ --output results/scores.csv
  python -m scripts.score --endpoint http://127.0.0.1:8080 --images photos/ --output results/scores.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deepfake_service.dataset import MEDIA_SUFFIXES, DatasetError, image_files
from deepfake_service.training.predictors import add_predictor_arguments, predictor_from_args
from deepfake_service.training.score import ScoreError, score


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_predictor_arguments(parser, face_mode=None)
    parser.add_argument("--images", type=Path, required=True, help="folder of images and videos (searched recursively)")
    parser.add_argument("--output", type=Path, default=Path("results/scores.csv"), help="CSV to write or resume (default: %(default)s)")
    parser.add_argument("--restart", action="store_true", help="discard an existing CSV instead of resuming it")
    args = parser.parse_args(argv)
    try:
        paths = image_files(args.images, MEDIA_SUFFIXES)
    except DatasetError as exc:
        sys.exit(f"score: {exc}")
    if args.restart:
        args.output.unlink(missing_ok=True)
    try:
        result = score(predictor_from_args(args), paths, args.output, args.batch_size, not args.no_progress)
    except ScoreError as exc:
        sys.exit(f"score: {exc}")
    print(f"scored {result.scored}, unreadable {result.failed} (rows with an error), "
          f"skipped {result.skipped} already in {args.output}")
    if result.demo:
        print("DEMO WEIGHTS: these predictions are meaningless")


if __name__ == "__main__":
    main()
