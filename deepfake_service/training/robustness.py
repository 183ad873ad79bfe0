"""Robustness to re-encoding: the held-out images re-saved as JPEG 90/70/50, shrunk to half and back,
re-saved as WebP, and cropped by 5 %, each scored again; per transform the ROC-AUC, the share of
verdicts that flip against the original image's, and the share that cross the fake threshold (fake
before and not after, or the other way; with an uncalibrated model: the top label's change to or from
the fake label).

The library behind ``python -m scripts.evaluate --robustness``. A detector that learned compression
rather than manipulation shows it here: AUC falls and verdicts flip on a plain JPEG re-save.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image
from sklearn.metrics import roc_auc_score

from deepfake_service.dataset import Sample
from deepfake_service.training.evaluate import Evaluation, evaluate
from deepfake_service.training.predictors import Predictor


def _saved(image: Image.Image, fmt: str, **settings) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **settings)
    return buffer.getvalue()


def _half_and_back(image: Image.Image) -> bytes:
    half = image.resize((max(1, image.width // 2), max(1, image.height // 2)), Image.Resampling.BILINEAR)
    return _saved(half.resize(image.size, Image.Resampling.BILINEAR), "PNG")


def _crop(image: Image.Image, share: float = 0.05) -> bytes:
    """The central part left after cutting ``share`` of each side's length (half from each end)."""
    dx, dy = round(image.width * share / 2), round(image.height * share / 2)
    return _saved(image.crop((dx, dy, image.width - dx, image.height - dy)), "PNG")


TRANSFORMS: dict[str, Callable[[Image.Image], bytes]] = {
    "jpeg q90": lambda image: _saved(image, "JPEG", quality=90),
    "jpeg q70": lambda image: _saved(image, "JPEG", quality=70),
    "jpeg q50": lambda image: _saved(image, "JPEG", quality=50),
    "half size and back": _half_and_back,
    "webp q80": lambda image: _saved(image, "WEBP", quality=80),
    "crop 5 %": _crop,
}


def _fake_scores(evaluation: Evaluation) -> tuple[np.ndarray, np.ndarray] | None:
    labels = evaluation.report["labels"]
    fake_label = evaluation.decision.get("fake_label")
    if fake_label not in labels:
        return None
    index = labels.index(fake_label)
    return np.asarray(evaluation.truth) == index, evaluation.probabilities[:, index]


def robustness(predictor: Predictor, samples: list[Sample], original: Evaluation, batch_size: int = 32,
               progress: bool = True) -> dict:
    """Score every transform of ``samples`` and compare with ``original`` (their evaluation as they are)."""
    before = {s.path: (s.prediction or {}).get("verdict") for s in original.scored}
    known = _fake_scores(original)
    rows = [{"transform": "none", "images": len(original.truth),
             "roc_auc": float(roc_auc_score(*known)) if known and 0 < known[0].sum() < len(known[0]) else None,
             "flipped": 0.0, "crossed_fake": 0.0, "changes": {}}]
    with tempfile.TemporaryDirectory(prefix="robustness-") as scratch:
        for number, (name, transform) in enumerate(TRANSFORMS.items()):
            folder = Path(scratch) / str(number)
            folder.mkdir()
            moved, origin = [], {}
            for index, sample in enumerate(samples):
                try:
                    with Image.open(sample.path) as opened:
                        payload = transform(opened.convert("RGB"))
                except OSError:
                    continue  # unreadable originals are listed by the main evaluation
                target = folder / f"{index:06d}{sample.path.suffix or '.img'}"
                target.write_bytes(payload)
                moved.append(Sample(target, sample.label))
                origin[target] = sample.path
            evaluation = evaluate(predictor, moved, batch_size, progress)
            pairs = [(before[origin[s.path]], s.prediction.get("verdict")) for s in evaluation.scored
                     if s.prediction is not None and before.get(origin[s.path]) is not None]
            changes: dict[str, int] = {}
            for was, now in pairs:
                if was != now:
                    changes[f"{was} -> {now}"] = changes.get(f"{was} -> {now}", 0) + 1
            scores = _fake_scores(evaluation)
            auc = float(roc_auc_score(*scores)) if scores and 0 < scores[0].sum() < len(scores[0]) else None
            crossed = sum((was == "fake") != (now == "fake") for was, now in pairs)
            rows.append({"transform": name, "images": len(evaluation.truth), "roc_auc": auc,
                         "flipped": sum(changes.values()) / len(pairs) if pairs else None,
                         "crossed_fake": crossed / len(pairs) if pairs else None, "changes": dict(sorted(changes.items()))})
    return {"fake_label": original.decision.get("fake_label"), "calibrated": bool(original.decision.get("calibrated")),
            "transforms": rows}


def plot_robustness(result: dict, path: Path) -> Path:
    """AUC and flipped share per transform, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["transforms"]
    names = [row["transform"] for row in rows]
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    left.barh(names, [row["roc_auc"] or 0 for row in rows], color="tab:blue")
    left.set(xlim=(0, 1), xlabel="ROC-AUC (fake vs real)", title="AUC after re-encoding")
    right.barh(names, [row["flipped"] or 0 for row in rows], color="tab:red")
    right.set(xlim=(0, 1), xlabel="share of verdicts that flip", title="Verdict flips against the original")
    for ax in (left, right):
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def write_robustness(predictor: Predictor, samples: list[Sample], original: Evaluation, folder: Path, batch_size: int = 32,
                     progress: bool = True) -> list[Path]:
    """robustness.json and robustness.png in ``folder``; prints a line per transform."""
    import json

    result = robustness(predictor, samples, original, batch_size, progress)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "robustness.json").write_text(json.dumps(result, indent=2) + "\n")
    for row in result["transforms"]:
        auc = "n/a" if row["roc_auc"] is None else f"{row['roc_auc']:.4f}"
        flipped = "n/a" if row["flipped"] is None else f"{row['flipped']:.1%}"
        crossed = "n/a" if row["crossed_fake"] is None else f"{row['crossed_fake']:.1%}"
        changes = ", ".join(f"{k} {v}" for k, v in row["changes"].items())
        print(f"  {row['transform']:>20}: AUC {auc}  verdicts flipped {flipped}  across the fake threshold {crossed}  "
              f"({row['images']} images){': ' + changes if changes else ''}")
    return [folder / "robustness.json", plot_robustness(result, folder / "robustness.png")]
