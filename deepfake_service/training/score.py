"""Score images and videos into a CSV or Parquet file, in process or on a Ray cluster, resumable, each file once.

The library behind ``python -m scripts.score`` (see its ``--help``; docs/scanning.md).
"""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from deepfake_service.training.predictors import Predictor, scored_batches
from deepfake_service.training.score_output import ScoreError, open_output, score_row
from deepfake_service.training.scored import payload_sha256
from deepfake_service.training.sources import read_media

__all__ = ["ScoreError", "ScoreSummary", "score"]

FLUSH_S = 30.0  # rows wait at most this long (or until flush_rows) before they are written


@dataclass(frozen=True)
class ScoreSummary:
    """What one run did: files ``scored`` and ``failed`` (error rows), ``skipped`` (already in the output,
    unchanged), ``rescored`` (in the output, but their bytes changed), in ``seconds``; errors by kind,
    verdicts and the nodes that scored them (in process: ""); ``first_s``: seconds until the first batch came back
    (model load and, on Ray, the pool's start) and ``first_files``: how many it held."""

    scored: int
    failed: int
    skipped: int
    demo: bool
    rescored: int = 0
    seconds: float = 0.0
    errors: Counter = field(default_factory=Counter)
    verdicts: Counter = field(default_factory=Counter)
    nodes: Counter = field(default_factory=Counter)
    first_s: float = 0.0
    first_files: int = 0

    @property
    def rate(self) -> float:
        """Files per second over the run's scoring (scored and failed)."""
        return (self.scored + self.failed) / self.seconds if self.seconds > 0 else 0.0

    @property
    def steady_rate(self) -> float:
        """Files per second after the first batch: what a long scan runs at, start-up left out."""
        after = self.seconds - self.first_s
        return (self.scored + self.failed - self.first_files) / after if after > 0 else 0.0

    def lines(self) -> list[str]:
        """The summary a command prints."""
        nodes = f" on {len(self.nodes)} node(s)" if any(self.nodes) else ""
        out = [f"scored {self.scored}, errors {self.failed} (rows with an error), skipped {self.skipped} already scored, "
               f"rescored {self.rescored} changed since; {self.scored + self.failed} files in {self.seconds:.1f} s = {self.rate:.2f} files/s "
               f"({self.steady_rate:.2f} files/s after the first batch){nodes}",
               "verdicts: " + (", ".join(f"{k} {v}" for k, v in sorted(self.verdicts.items())) or "none")]
        if self.errors:
            out.append("errors by kind: " + ", ".join(f"{k} {v}" for k, v in self.errors.most_common()))
        if any(self.nodes):
            out.append("files per node: " + ", ".join(f"{k[:12]} {v}" for k, v in self.nodes.most_common()))
        return out


def file_sha256(path: str) -> str:
    """The SHA-256 of the file's bytes ("" when unreadable)."""
    return payload_sha256(read_media(path)) or ""


def to_score(paths: Sequence[str], done: dict[str, str], workers: int = 8) -> tuple[list[str], int]:
    """The paths still to score, and how many of them were scored before with other bytes: those not in ``done``,
    and those whose SHA-256 changed (re-read here; a file an earlier run could not read stays done)."""
    known = [p for p in paths if done.get(p)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        changed = {p for p, digest in zip(known, pool.map(file_sha256, known)) if digest != done[p]}
    return [p for p in paths if p not in done or p in changed], len(changed)


def score(predictor: Predictor, paths: Sequence[Path | str], output: Path, batch_size: int = 32, progress: bool = True,
          flush_rows: int | None = None) -> ScoreSummary:
    """Score every path not yet in ``output`` (or whose bytes changed) and add its row; ``output``'s suffix
    picks Parquet or CSV (score_output.py). Rows are written at least every ``flush_rows`` rows (None: the
    output's own: every batch for a CSV, 1000 for Parquet) or ``FLUSH_S`` seconds, so a killed run loses at most
    those (a run stopped by an exception writes what it has, then re-raises); raises ``ScoreError`` for an
    output of other columns."""
    destination = open_output(output)
    flush_rows = flush_rows or destination.flush_rows
    names = [str(p) for p in paths]
    todo, rescored = to_score(names, destination.done())
    counts = {"scored": 0, "failed": 0, "demo": False}
    errors, verdicts, nodes = Counter(), Counter(), Counter()
    pending: list[dict] = []
    started = flushed = time.monotonic()
    first: tuple[float, int] | None = None
    try:
        for batch in scored_batches(predictor, todo, batch_size, progress, desc="score"):
            first = first or (time.monotonic() - started, len(batch))
            for scored in batch:
                row = score_row(scored)
                pending.append(row)
                nodes[scored.node] += 1
                if scored.prediction is None:
                    counts["failed"] += 1
                    errors[row["error"].split(":", 1)[0]] += 1
                else:
                    counts["scored"] += 1
                    verdicts[row["verdict"] or row["label"]] += 1
                    counts["demo"] = counts["demo"] or bool(row["demo"])
            if len(pending) >= flush_rows or time.monotonic() - flushed >= FLUSH_S:
                destination.write(pending)  # on disk is what the next run skips
                pending, flushed = [], time.monotonic()
    finally:  # a scan stopped by an error keeps what it scored; the rerun does the rest
        destination.write(pending)
    seconds = time.monotonic() - started
    destination.finish()
    return ScoreSummary(counts["scored"], counts["failed"], len(names) - len(todo), counts["demo"], rescored, seconds, errors, verdicts,
                        nodes, *(first or (0.0, 0)))
