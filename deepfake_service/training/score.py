"""Score a folder of unlabelled images and videos into a CSV, with a checkpoint folder or a running endpoint.

The library behind ``python -m scripts.score`` (see its ``--help``).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from deepfake_service.training.predictors import Predictor, Scored, predict_files

COLUMNS = ("path", "label", "verdict", "confidence", "probabilities", "calibrated", "declared_ai", "declared_by", "signer",
           "version", "demo", "error")


class ScoreError(Exception):
    """The output CSV was written with other columns (an older version): resuming into it would misalign."""


@dataclass(frozen=True)
class ScoreSummary:
    scored: int
    failed: int
    skipped: int
    demo: bool


def already_scored(output: Path) -> set[str]:
    """Paths present in an earlier (possibly interrupted) run's CSV."""
    if not output.is_file() or output.stat().st_size == 0:
        return set()
    with open(output, newline="") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise ScoreError(f"{output} has columns {reader.fieldnames}, not {list(COLUMNS)}: score into a new file")
        return {row["path"] for row in reader if row.get("path")}


def _row(scored: Scored) -> list[str]:
    if scored.prediction is None:
        return [str(scored.path), *[""] * (len(COLUMNS) - 2), scored.error or "unknown error"]
    p = scored.prediction
    calibrated = bool((p.get("decision") or {}).get("calibrated"))
    provenance = p.get("provenance") or {}
    declared = provenance.get("declared_ai")
    signer = ((provenance.get("c2pa") or {}).get("signer") or {}).get("common_name") or ""
    return [str(scored.path), p["label"], p.get("verdict", ""), f"{p['confidence']:.6f}", json.dumps(p["probabilities"]),
            str(calibrated).lower(), "" if declared is None else str(declared).lower(), provenance.get("declared_by") or "",
            signer, str(p.get("version", "")), str(bool(p.get("demo"))).lower(), ""]


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
