"""Classification metrics and their figures: accuracy, per-class precision/recall/F1, ROC-AUC,
calibration (expected calibration error, reliability diagram), confusion matrix, misclassified files,
and at the operating point: TPR at 1/5/10 % FPR, EER, the decision's rates and the share of ``uncertain``.

One function computes the numbers (``classification_report``), one draws them (``save_figures``), so the
training and evaluation commands report the same things the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support, roc_auc_score, roc_curve

from deepfake_service.training.calibration import calibration, tempered

FPR_POINTS = (0.01, 0.05, 0.10)
FIGURES = ("confusion_matrix.png", "roc_curve.png", "reliability.png")


def _one_vs_rest(truth: np.ndarray, probabilities: np.ndarray, labels: Sequence[str]) -> dict[str, float]:
    """ROC-AUC of each label against the rest, for labels that have both positives and negatives."""
    scores = {}
    for index, label in enumerate(labels):
        positives = truth == index
        if positives.any() and not positives.all():
            scores[label] = float(roc_auc_score(positives, probabilities[:, index]))
    return scores


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


def operating_report(
    labels: Sequence[str],
    truth: Sequence[int],
    probabilities: np.ndarray,
    logits: np.ndarray,
    verdicts: Sequence[str | None],
    decision: dict,
) -> dict | None:
    """Fake-vs-real figures on the fake label's probability: TPR at ``FPR_POINTS``, the equal error rate,
    reliability before and after temperature scaling, and, for a calibrated model, the rates at its
    thresholds, the share of ``uncertain`` answers and the accuracy of the others. None when the data
    lacks real or fake images or the model has no fake label."""
    fake_label = decision.get("fake_label")
    if fake_label not in labels:
        return None
    truth = np.asarray(truth, dtype=int)
    is_fake = truth == list(labels).index(fake_label)
    if is_fake.all() or not is_fake.any():
        return None
    scores = np.asarray(probabilities, dtype=float)[:, list(labels).index(fake_label)]
    fpr, tpr, _ = roc_curve(is_fake, scores)
    miss = 1 - tpr
    crossing = int(np.argmin(np.abs(fpr - miss)))
    result = {
        "fake_label": fake_label,
        "calibrated": bool(decision.get("calibrated")),
        "tpr_at_fpr": {f"{point:g}": float(tpr[fpr <= point].max()) for point in FPR_POINTS},
        "eer": float((fpr[crossing] + miss[crossing]) / 2),
        "calibration_before": calibration(truth, tempered(logits, 1.0)),
        "calibration_after": calibration(truth, np.asarray(probabilities, dtype=float)),
    }
    if result["calibrated"]:
        counts = {v: sum(x == v for x in verdicts) for v in ("real", "fake", "uncertain")}
        decided = [(v == "fake", f) for v, f in zip(verdicts, is_fake) if v in ("real", "fake")]
        result["verdicts"] = counts
        result["uncertain_share"] = counts["uncertain"] / len(verdicts)
        result["accuracy_of_decided"] = float(np.mean([v == f for v, f in decided])) if decided else None
        for name in ("fake", "uncertain"):
            threshold = decision[f"{name}_threshold"]
            flagged = scores >= threshold
            result[f"at_{name}_threshold"] = {"threshold": threshold, "fpr": float(flagged[~is_fake].mean()),
                                              "tpr": float(flagged[is_fake].mean())}
    return result


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
    operating = report.get("operating") or {}
    for name, marker in (("fake", "o"), ("uncertain", "s")):
        point = operating.get(f"at_{name}_threshold")
        if point:
            ax.plot([point["fpr"]], [point["tpr"]], marker=marker, markersize=9, linestyle="none",
                    label=f"{name} threshold {point['threshold']:.3f}: FPR {point['fpr']:.3f}, TPR {point['tpr']:.3f}")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC curve")
    ax.legend(loc="lower right")


def _plot_reliability(calibrated: dict, ax, title: str = "reliability diagram") -> None:
    bins = calibrated["bins"]
    centres = [(b["low"] + b["high"]) / 2 for b in bins if b["count"]]
    accuracy = [b["accuracy"] for b in bins if b["count"]]
    width = bins[0]["high"] - bins[0]["low"]
    ax.bar(centres, accuracy, width=width * 0.9, edgecolor="black", label="accuracy in bin")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top label)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title} (ECE {calibrated['ece']:.3f})")
    ax.legend(loc="upper left")


def _draw_reliability(report: dict, figure) -> None:
    """One diagram; two (before and after temperature scaling) for a calibrated model."""
    operating = report.get("operating") or {}
    if not operating.get("calibrated"):
        _plot_reliability(report["calibration"], figure.add_subplot(1, 1, 1))
        return
    figure.set_size_inches(11, 5)
    _plot_reliability(operating["calibration_before"], figure.add_subplot(1, 2, 1), "before temperature scaling")
    temperature = (report.get("decision") or {}).get("temperature")
    _plot_reliability(operating["calibration_after"], figure.add_subplot(1, 2, 2), f"after, T = {temperature:.3g}")


def save_figures(report: dict, truth: Sequence[int], probabilities: np.ndarray, folder: Path) -> list[Path]:
    """Write confusion_matrix.png, roc_curve.png (operating point marked) and reliability.png (before
    and after temperature scaling for a calibrated model) into ``folder``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    truth = np.asarray(truth, dtype=int)
    probabilities = np.asarray(probabilities, dtype=float)
    drawers = {
        "confusion_matrix.png": lambda figure: _plot_confusion(report, figure.add_subplot(1, 1, 1)),
        "roc_curve.png": lambda figure: _plot_roc(report, truth, probabilities, figure.add_subplot(1, 1, 1)),
        "reliability.png": lambda figure: _draw_reliability(report, figure),
    }
    written = []
    for name in FIGURES:
        figure = plt.figure(figsize=(5.5, 5))
        drawers[name](figure)
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
    operating = report.get("operating")
    if operating:
        tpr = "  ".join(f"{float(k):.0%}: {v:.3f}" for k, v in operating["tpr_at_fpr"].items())
        lines.append(f"  TPR at FPR {tpr}  EER {operating['eer']:.4f}")
        if operating["calibrated"]:
            point = operating["at_fake_threshold"]
            decided = operating["accuracy_of_decided"]
            lines.append(f"  operating point (fake >= {point['threshold']:.4f}): FPR {point['fpr']:.4f}  TPR {point['tpr']:.4f}  "
                         f"uncertain {operating['uncertain_share']:.1%}  accuracy of the rest "
                         f"{'n/a' if decided is None else format(decided, '.4f')}")
        else:
            lines.append("  uncalibrated: no decision.json, verdicts follow the top label (python -m scripts.calibrate sets one)")
    return "\n".join(lines)
