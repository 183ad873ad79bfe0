"""Score a folder of unlabelled images into a CSV, with a checkpoint folder or a running endpoint.

Columns: path, label, confidence, probabilities (JSON object label -> p), version, demo, error.
A file that cannot be read or decoded gets a row with only its error: it is reported, never fatal.
--face-mode (auto | faces | off) defaults to the model config's face_mode; the label is the image-level
verdict (the most-fake face decides).
Rows are written chunk by chunk; run the same command again after an interruption and it skips the
paths already in the CSV (--restart starts over).

  python -m scripts.score --checkpoint runs/exp1 --images photos/ --output results/scores.csv
  python -m scripts.score --endpoint http://127.0.0.1:8080 --images photos/ --output results/scores.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from scripts.dataset import DatasetError, image_files
from scripts.predictors import Predictor, Scored, add_predictor_arguments, predict_files, predictor_from_args

COLUMNS = ("path", "label", "confidence", "probabilities", "version", "demo", "error")


@dataclass(frozen=True)
class ScoreSummary:
    scored: int
    failed: int
    skipped: int
    demo: bool


def already_scored(output: Path) -> set[str]:
    """Paths present in an earlier (possibly interrupted) run's CSV."""
    if not output.is_file():
        return set()
    with open(output, newline="") as handle:
        return {row["path"] for row in csv.DictReader(handle) if row.get("path")}


def _row(scored: Scored) -> list[str]:
    if scored.prediction is None:
        return [str(scored.path), "", "", "", "", "", scored.error or "unknown error"]
    p = scored.prediction
    return [str(scored.path), p["label"], f"{p['confidence']:.6f}", json.dumps(p["probabilities"]),
            str(p.get("version", "")), str(bool(p.get("demo"))).lower(), ""]


def score(predictor: Predictor, paths: list[Path], output: Path, batch_size: int = 32, progress: bool = True) -> ScoreSummary:
    """Append a row per path not yet in ``output``; returns counts."""
    done = already_scored(output)
    todo = [p for p in paths if str(p) not in done]
    output.parent.mkdir(parents=True, exist_ok=True)
    fresh = not output.is_file() or output.stat().st_size == 0
    scored = failed = 0
    demo = False
    with open(output, "a", newline="") as handle:
        writer = csv.writer(handle)
        if fresh:
            writer.writerow(COLUMNS)
        for index, result in enumerate(predict_files(predictor, todo, batch_size, progress, desc="score")):
            writer.writerow(_row(result))
            scored += result.prediction is not None
            failed += result.prediction is None
            demo = demo or bool(result.prediction and result.prediction.get("demo"))
            if (index + 1) % batch_size == 0:
                handle.flush()  # a chunk on disk is a chunk the next run can skip
    return ScoreSummary(scored=scored, failed=failed, skipped=len(paths) - len(todo), demo=demo)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_predictor_arguments(parser, face_mode=None)
    parser.add_argument("--images", type=Path, required=True, help="folder of images (searched recursively)")
    parser.add_argument("--output", type=Path, default=Path("results/scores.csv"), help="CSV to write or resume (default: %(default)s)")
    parser.add_argument("--restart", action="store_true", help="discard an existing CSV instead of resuming it")
    args = parser.parse_args(argv)
    try:
        paths = image_files(args.images)
    except DatasetError as exc:
        sys.exit(f"score: {exc}")
    if args.restart:
        args.output.unlink(missing_ok=True)
    result = score(predictor_from_args(args), paths, args.output, args.batch_size, not args.no_progress)
    print(f"scored {result.scored}, unreadable {result.failed} (rows with an error), "
          f"skipped {result.skipped} already in {args.output}")
    if result.demo:
        print("DEMO WEIGHTS: these predictions are meaningless")


if __name__ == "__main__":
    main()
