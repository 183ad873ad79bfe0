"""A score's rows and where they go: one row per file (the same columns in process and on Ray), into a CSV
(small runs) or a Parquet file (archives), resumable and with each file exactly once.

Parquet: rows are written as part files under ``<output>.parts/`` (each to a temporary name, then renamed, so
a part is whole or absent); ``finish`` merges the output and its parts into the one Parquet file, the newest
row of each path kept, and removes the parts. An interrupted scan leaves its parts; the rerun resumes from them.
"""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path
from typing import Any

from deepfake_service.training.scored import Scored

# Today's CSV columns, then what a scan adds: the file's SHA-256, the Ray node that scored it ("" in process),
# the media kind, faces found, what computed it, which weights, the image's PDQ hash, the record kept, the answer.
COLUMNS = ("path", "label", "verdict", "confidence", "probabilities", "calibrated", "declared_ai", "declared_by", "signer",
           "version", "demo", "error", "sha256", "node", "media", "faces", "runtime", "precision", "weights_sha256", "pdq",
           "record", "answer")
FLOATS, INTEGERS, BOOLEANS = {"confidence"}, {"faces"}, {"calibrated", "declared_ai", "demo"}


class ScoreError(Exception):
    """The output was written with other columns (an older version): resuming into it would misalign."""


def _faces(prediction: dict) -> int | None:
    """Faces (an image) or people (a video) the verdict was decided over; None without a face search."""
    if prediction.get("media") == "video":
        return len(prediction.get("people") or [])
    return len(prediction.get("faces") or []) if prediction.get("mode") != "off" else None


def score_row(scored: Scored) -> dict[str, Any]:
    """The row of one file: its answer's fields, or only its error; None where a value does not apply."""
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(path=str(scored.path), sha256=scored.sha256, node=scored.node, weights_sha256=scored.weights_sha256,
               pdq=scored.pdq, record=scored.record)
    if scored.prediction is None:
        row["error"] = scored.error or "unknown error"
        return row
    p = scored.prediction
    provenance = p.get("provenance") or {}
    row.update(label=p["label"], verdict=p.get("verdict"), confidence=float(p["confidence"]), probabilities=json.dumps(p["probabilities"]),
               calibrated=bool((p.get("decision") or {}).get("calibrated")), declared_ai=provenance.get("declared_ai"),
               declared_by=provenance.get("declared_by"),
               signer=((provenance.get("c2pa") or {}).get("signer") or {}).get("common_name"), version=str(p.get("version", "")),
               demo=bool(p.get("demo")), media=p.get("media"), faces=_faces(p), runtime=p.get("runtime"), precision=p.get("precision"),
               answer=json.dumps(p))
    return row


def _csv_value(key: str, value: Any) -> str:
    if value is None:
        return ""
    if key in BOOLEANS:
        return str(bool(value)).lower()
    return f"{value:.6f}" if key in FLOATS else str(value)


class CsvOutput:
    """Rows appended to a CSV, flushed per batch; ``done`` reads an earlier run's rows back."""

    flush_rows = 1  # every batch: appending is cheap

    def __init__(self, path: Path) -> None:
        self.path = path

    def done(self) -> dict[str, str]:
        """Path -> SHA-256 ("" when unknown) of the rows already written."""
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return {}
        with open(self.path, newline="") as handle:
            reader = csv.DictReader(handle)
            _check_columns(self.path, reader.fieldnames)
            return {row["path"]: row.get("sha256") or "" for row in reader if row.get("path")}

    def write(self, rows: list[dict[str, Any]]) -> None:
        fresh = not self.path.is_file() or self.path.stat().st_size == 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", newline="") as handle:
            writer = csv.writer(handle)
            if fresh:
                writer.writerow(COLUMNS)
            writer.writerows([_csv_value(key, row[key]) for key in COLUMNS] for row in rows)

    def finish(self) -> None:
        """One row per path: a changed file scored again appended its newer row, so when any path has two rows
        the CSV is rewritten (whole, then renamed) with each path's newest, in the order they were written."""
        if not self.path.is_file():
            return
        with open(self.path, newline="") as handle:
            header, *body = list(csv.reader(handle)) or [[]]
        column = header.index("path") if "path" in header else 0
        newest = {row[column]: n for n, row in enumerate(body) if row}
        if len(newest) == len(body):
            return
        temporary = self.path.with_name(self.path.name + ".tmp")
        with open(temporary, "w", newline="") as handle:
            csv.writer(handle).writerows([header, *(row for n, row in enumerate(body) if row and newest[row[column]] == n)])
        os.replace(temporary, self.path)


def _check_columns(path: Path | str, columns) -> None:
    if tuple(columns or ()) != COLUMNS:
        raise ScoreError(f"{path} has columns {list(columns or ())}, not {list(COLUMNS)}: score into a new file")


def parquet_schema():
    import pyarrow as pa

    kinds = {**dict.fromkeys(FLOATS, pa.float64()), **dict.fromkeys(INTEGERS, pa.int64()), **dict.fromkeys(BOOLEANS, pa.bool_())}
    return pa.schema([(name, kinds.get(name, pa.string())) for name in COLUMNS])


class ParquetOutput:
    """Rows as whole part files under ``<output>.parts/``, merged into ``<output>`` by ``finish`` (newest row
    per path kept); ``done`` reads the output and any parts an interrupted run left."""

    flush_rows = 1000  # rows per part file: fewer, larger parts on a long scan

    def __init__(self, path: Path) -> None:
        self.path = path
        self.parts = path.with_name(path.name + ".parts")
        self._run = time.time_ns()  # part names sort by run, then by sequence: the newest row comes last
        self._count = 0

    def _files(self) -> list[Path]:
        parts = sorted(self.parts.glob("part-*.parquet")) if self.parts.is_dir() else []
        return ([self.path] if self.path.is_file() else []) + parts

    def done(self) -> dict[str, str]:
        import pyarrow.parquet as pq

        found: dict[str, str] = {}
        for file in self._files():
            _check_columns(file, pq.read_schema(file).names)
            table = pq.read_table(file, columns=["path", "sha256"])
            found.update(zip(table.column("path").to_pylist(), (s or "" for s in table.column("sha256").to_pylist())))
        return found

    def write(self, rows: list[dict[str, Any]]) -> None:
        """One part file holding ``rows``, whole or not at all."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not rows:
            return
        self.parts.mkdir(parents=True, exist_ok=True)
        self._count += 1
        final = self.parts / f"part-{self._run}-{self._count:06d}.parquet"
        temporary = final.with_suffix(".tmp")
        pq.write_table(pa.Table.from_pylist(rows, schema=parquet_schema()), temporary)
        os.replace(temporary, final)

    def finish(self) -> None:
        """Merge the output and its parts into ``<output>`` (sorted by path, one row per path: the newest),
        written whole then renamed; the parts are removed after."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        files = self._files()
        if not files or files == [self.path]:
            return
        table = pa.concat_tables([pq.read_table(file, schema=parquet_schema()) for file in files])
        table = table.append_column("_order", pa.array(range(table.num_rows), pa.int64()))
        newest = table.group_by("path").aggregate([("_order", "max")]).column("_order_max")  # each path's last row
        table = table.take(newest).drop_columns(["_order"]).sort_by("path")
        temporary = self.path.with_name(self.path.name + ".tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, temporary)
        os.replace(temporary, self.path)
        for part in files[1:] if files[0] == self.path else files:
            part.unlink()
        for leftover in self.parts.glob("*.tmp"):
            leftover.unlink()
        self.parts.rmdir()


def open_output(path: Path) -> CsvOutput | ParquetOutput:
    """The output for ``path``'s suffix: ``.parquet`` or a CSV."""
    return ParquetOutput(path) if path.suffix.lower() == ".parquet" else CsvOutput(path)


def read_rows(path: Path) -> list[dict[str, Any]]:
    """A finished output's rows (CSV values as text, Parquet values typed)."""
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))
