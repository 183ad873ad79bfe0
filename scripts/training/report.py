"""Classification metrics and their figures: accuracy, per-class precision/recall/F1, ROC-AUC,
calibration (expected calibration error, reliability diagram), confusion matrix, misclassified files.

One function computes the numbers (``classification_report``), one draws them (``save_figures``), so the
training and evaluation commands report the same things the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support, roc_auc_score, roc_curve

CALIBRATION_BINS = 10
FIGURES = ("confusion_matrix.png", "roc_curve.png", "reliability.png")


def _one_vs_rest(truth: np.ndarray, probabilities: np.ndarray, labels: Sequence[str]) -> dict[str, float]:
    """ROC-AUC of each label against the rest, for labels that have both positives and negatives."""
    scores = {}
    for index, label in enumerate(labels):
        positives = truth == index
        if positives.any() and not positives.all():
            scores[label] = float(roc_auc_score(positives, probabilities[:, index]))
    return scores


def calibration(truth: np.ndarray, probabilities: np.ndarray, bins: int = CALIBRATION_BINS) -> dict:
    """Top-label calibration: per confidence bin, mean confidence, accuracy and count; and the ECE
    (count-weighted mean |accuracy - confidence|)."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == truth
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        members = index == b
        count = int(members.sum())
        row = {"low": float(edges[b]), "high": float(edges[b + 1]), "count": count, "confidence": None, "accuracy": None}
        if count:
            row["confidence"] = float(confidence[members].mean())
            row["accuracy"] = float(correct[members].mean())
            ece += count / len(truth) * abs(row["accuracy"] - row["confidence"])
        rows.append(row)
    return {"ece": float(ece), "bins": rows}


def classification_report(
    labels: Sequence[str], truth: Sequence[int], probabilities: np.ndarray, paths: Sequence[str]
) -> dict:
    """Metrics for ``probabilities[N, len(labels)]`` against class indices ``truth[N]`` of files ``paths``."""
    truth = np.asarray(truth, dtype=int)
    probabilities = np.asarray(probabilities, dtype=float)
    predicted = probabilities.argmax(axis=1)
    indices = list(range(len(labels)))
    precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, labels=indices, zero_division=0)
    auc = _one_vs_rest(truth, probabilities, labels)
    return {
        "images": int(len(truth)),
        "labels": list(labels),
        "accuracy": float(accuracy_score(truth, predicted)),
        "per_class": {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, support)
        },
        # Binary: both labels' one-vs-rest AUCs are the same number. More labels: the macro mean.
        "roc_auc": float(np.mean(list(auc.values()))) if auc else None,
        "roc_auc_per_class": auc,
        "calibration": calibration(truth, probabilities),
        "confusion_matrix": confusion_matrix(truth, predicted, labels=indices).tolist(),
        "misclassified": [
            {"path": str(path), "label": labels[t], "predicted": labels[p], "confidence": float(row[p])}
            for path, t, p, row in zip(paths, truth, predicted, probabilities)
            if t != p
        ],
    }


def _plot_confusion(report: dict, ax) -> None:
    matrix = np.asarray(report["confusion_matrix"])
    ax.imshow(matrix, cmap="Blues")
    labels = report["labels"]
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (row, col), count in np.ndenumerate(matrix):
        colour = "white" if count > matrix.max() / 2 else "black"
        ax.text(col, row, str(count), ha="center", va="center", color=colour)
    ax.set_title(f"confusion matrix (accuracy {report['accuracy']:.3f}, n={report['images']})")


def _plot_roc(report: dict, truth: np.ndarray, probabilities: np.ndarray, ax) -> None:
    labels = report["labels"]
    shown = report["roc_auc_per_class"]
    # Binary: one curve says it all (the other label's is its mirror image).
    names = [labels[-1]] if len(labels) == 2 and labels[-1] in shown else list(shown)
    for name in names:
        index = labels.index(name)
        fpr, tpr, _ = roc_curve(truth == index, probabilities[:, index])
        ax.plot(fpr, tpr, label=f"{name} vs rest (AUC {shown[name]:.3f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC curve")
    ax.legend(loc="lower right")


def _plot_reliability(report: dict, ax) -> None:
    bins = report["calibration"]["bins"]
    centres = [(b["low"] + b["high"]) / 2 for b in bins if b["count"]]
    accuracy = [b["accuracy"] for b in bins if b["count"]]
    width = bins[0]["high"] - bins[0]["low"]
    ax.bar(centres, accuracy, width=width * 0.9, edgecolor="black", label="accuracy in bin")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top label)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability diagram (ECE {report['calibration']['ece']:.3f})")
    ax.legend(loc="upper left")


def save_figures(report: dict, truth: Sequence[int], probabilities: np.ndarray, folder: Path) -> list[Path]:
    """Write confusion_matrix.png, roc_curve.png and reliability.png into ``folder``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    truth = np.asarray(truth, dtype=int)
    probabilities = np.asarray(probabilities, dtype=float)
    drawers = {
        "confusion_matrix.png": lambda ax: _plot_confusion(report, ax),
        "roc_curve.png": lambda ax: _plot_roc(report, truth, probabilities, ax),
        "reliability.png": lambda ax: _plot_reliability(report, ax),
    }
    written = []
    for name in FIGURES:
        figure, ax = plt.subplots(figsize=(5.5, 5))
        drawers[name](ax)
        figure.tight_layout()
        figure.savefig(folder / name, dpi=100)
        plt.close(figure)
        written.append(folder / name)
    return written


def write_report(report: dict, folder: Path, name: str = "metrics.json") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path


def summary(report: dict) -> str:
    """A few lines for the terminal."""
    lines = [f"images {report['images']}  accuracy {report['accuracy']:.4f}  ROC-AUC "
             f"{'n/a' if report['roc_auc'] is None else format(report['roc_auc'], '.4f')}  "
             f"ECE {report['calibration']['ece']:.4f}"]
    for label, row in report["per_class"].items():
        lines.append(f"  {label:>12}: precision {row['precision']:.4f}  recall {row['recall']:.4f}  "
                     f"F1 {row['f1']:.4f}  support {row['support']}")
    lines.append(f"  misclassified: {len(report['misclassified'])}")
    return "\n".join(lines)
