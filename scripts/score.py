"""Score images and videos into a CSV or Parquet file, with a checkpoint folder or a model archive (in process, or in
a Ray actor pool on one machine or a cluster) or a running endpoint.

Sources (--images): a folder (searched recursively), or a list of paths: a .txt (one a line), a .csv or .parquet
with a path column; paths are local or object-store URIs (s3://, gs://: read with pyarrow's filesystems).
Output (--output): .parquet for archives, else a CSV. One row per file: path, label, verdict (real | fake |
uncertain), confidence, probabilities (JSON object label -> p), calibrated, declared_ai (true/false from the
file's provenance, empty when nothing is declared), declared_by, signer (the C2PA signer's common name), version,
demo, error, then sha256 (the file's), node (the Ray node that scored it; empty in process), media, faces,
runtime, precision, weights_sha256, pdq (the image's PDQ hash), record (the record kept, with --keep-records) and
answer (the served answer's JSON). A file that cannot be read or decoded gets a row with its error: it is
reported, never fatal. --face-mode (auto | faces | off) defaults to the model config's face_mode.
Rows are written as they come; run the same command again after an interruption and it scores only the files
not in the output, or whose SHA-256 changed (--restart starts over). Each file is in the output once.

  python -m scripts.score --checkpoint runs/exp1 --images photos/ --output results/scores.csv
  python -m scripts.score --checkpoint runs/exp1 --images archive.txt --output scan.parquet --ray
  python -m scripts.score --archive model_store/deepfake-detector.mar --images photos/ --output scan.parquet --ray
  python -m scripts.score --checkpoint /shared/exp1 --images s3://bucket/list.parquet --output scan.parquet --ray head:6379
  python -m scripts.score --endpoint http://127.0.0.1:8080 --images photos/ --output results/scores.csv
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from deepfake_service.training.predictors import add_predictor_arguments, predictor_from_args
from deepfake_service.training.scan import ScanSetupError
from deepfake_service.training.score import ScoreError, score
from deepfake_service.training.sources import SourceError, list_sources


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_predictor_arguments(parser, face_mode=None)
    parser.add_argument("--images", required=True, help="a folder of images and videos, or a .txt/.csv/.parquet list of paths or URIs")
    parser.add_argument("--output", type=Path, default=Path("results/scores.csv"),
                        help="CSV or .parquet to write or resume (default: %(default)s)")
    parser.add_argument("--restart", action="store_true", help="discard an existing output instead of resuming it")
    parser.add_argument("--flush-rows", type=int, help="rows are written at least this often, and every 30 s "
                                                      "(default: every batch for a CSV, 1000 rows for Parquet)")
    args = parser.parse_args(argv)
    try:
        paths = list_sources(args.images)
        predictor = predictor_from_args(args)
        if args.restart:
            args.output.unlink(missing_ok=True)
            shutil.rmtree(args.output.with_name(args.output.name + ".parts"), ignore_errors=True)
        result = score(predictor, paths, args.output, args.batch_size, not args.no_progress, args.flush_rows)
    except (SourceError, ScoreError, ScanSetupError, ValueError) as exc:
        sys.exit(f"score: {exc}")
    print("\n".join(result.lines()) + f"\nwrote {args.output}")
    if result.demo:
        print("DEMO WEIGHTS: these predictions are meaningless")


if __name__ == "__main__":
    main()
