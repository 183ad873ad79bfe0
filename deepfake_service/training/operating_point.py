"""Setting the operating point: classify a labelled calibration set (never the test split) and fit the
decision on what came back (``calibration.decide``). ``python -m scripts.calibrate`` and
``train --calibration-size`` call ``calibrate``; ``calibration.write_decision`` writes the result."""

from __future__ import annotations

import datetime
import hashlib
from pathlib import Path
from typing import Sequence

from deepfake_service.dataset import Sample
from deepfake_service.training.calibration import CalibrationError, decide, describe_set
from deepfake_service.training.evaluate import evaluate
from deepfake_service.training.predictors import Scored


def calibrate(
    predictor,
    samples: Sequence[Sample],
    source: Path,
    fake_label: str,
    target_fpr: float = 0.01,
    uncertain_fpr: float = 0.05,
    batch_size: int = 32,
    progress: bool = True,
) -> tuple[dict, dict]:
    """Classify the calibration ``samples`` with ``predictor`` (a checkpoint or an endpoint; a decision it
    already has is undone) and return (decision, calibration set description) for ``write_decision``. The
    decision's ``face_mode`` is the one the answers say they were analysed in (their ``mode``)."""
    evaluation = evaluate(predictor, list(samples), batch_size, progress)
    labels = evaluation.report["labels"]
    decision = decide(labels, evaluation.truth, evaluation.logits, fake_label, target_fpr, uncertain_fpr)
    decision["face_mode"] = answered_face_mode(evaluation.scored)
    model = evaluation.report["model"]
    # Scores move a little between runtimes and precisions: the file says which computed these.
    computed_by = {"runtime": model.get("runtime"), "precision": model.get("precision")}
    return decision, {**describe_set(samples, len(evaluation.truth), source), "computed_by": computed_by}


def answered_face_mode(scored: Sequence[Scored]) -> str | None:
    """The face mode the answers were analysed in, when they all say the same one; else None."""
    modes = {s.prediction.get("mode") for s in scored if s.prediction is not None}
    return modes.pop() if len(modes) == 1 else None


def calibrate_from_records(labelled, fake_label: str, target_fpr: float = 0.01, uncertain_fpr: float = 0.05,
                           source: str = "records") -> tuple[dict, dict]:
    """The operating point from reviewed records (``LabelledSet`` of deepfake_service/records/review.py):
    their stored raw logits, the reviewers' labels as truth; no image is read again. The decision's
    ``face_mode`` is the one the set was taken for (``labelled.face_mode``). Returns (decision, calibration
    set description) for ``write_decision``."""
    if not labelled.ids:
        other = labelled.skipped.get("other_subject", 0)
        beside = (f" whose subject is what face mode {labelled.face_mode} classifies ({other} labelled records classified "
                  "another kind; --face-mode picks the mode)") if other else ""
        raise CalibrationError(f"no image record has a real or fake label with stored logits{beside}; review some first")
    decision = decide(list(labelled.labels), labelled.truth, labelled.logits, fake_label, target_fpr, uncertain_fpr)
    decision["face_mode"] = labelled.face_mode
    report = review_report(labelled)
    described = {"source": source, "images": len(labelled.ids), "classified": len(labelled.ids),
                 "per_label": {"real": report["reviewed_real"], "fake": report["reviewed_fake"]},
                 "records_sha256": hashlib.sha256("\n".join(sorted(labelled.ids)).encode()).hexdigest(), "review": report}
    return decision, described


def review_report(labelled) -> dict:
    """How the served verdicts compare with the reviewers' labels on labelled image records: agreement
    over the records the model decided (real or fake), how many it left uncertain, and the false-positive
    rate it reached on images the reviewers called real."""
    truth = ["fake" if t == labelled.fake_index else "real" for t in labelled.truth.tolist()]
    pairs = list(zip(labelled.verdicts, truth))
    decided = [(v, t) for v, t in pairs if v in ("real", "fake")]
    on_real = [v for v, t in pairs if t == "real"]
    return {
        "labelled_records": len(pairs),
        "reviewed_real": len(on_real),
        "reviewed_fake": len(pairs) - len(on_real),
        "uncertain": sum(v == "uncertain" for v, _ in pairs),
        "agreement": round(sum(v == t for v, t in decided) / len(decided), 4) if decided else None,
        "false_positive_rate_on_reviewed_real": round(sum(v == "fake" for v in on_real) / len(on_real), 4) if on_real else None,
        "missed_on_reviewed_fake": sum(v == "real" for v, t in pairs if t == "fake"),
        "skipped": labelled.skipped,
    }


# (title, the part, its whole, the y label) of each panel; agreement is over the records the model decided (real or
# fake), as the review page and review_report count it.
AGREEMENT_PANELS = (
    ("agreement", lambda r: r["agreed"], lambda r: r["reviewed"] - r["uncertain"], "agreement with reviewers, of decided"),
    ("false positives", lambda r: r["false_positives"], lambda r: r["labelled_real"], "called fake, of reviewed real"),
    ("fakes called real", lambda r: r["missed_fakes"], lambda r: r["labelled_fake"], "called real, of reviewed fake"),
)


def save_agreement_figure(series: list[dict], path: Path) -> Path:
    """Draw ``agreement_over_time``'s rows (deepfake_service/records/review.py) as three panels over time, one
    line per model version: agreement with the reviewers over the records the model decided (real or fake), false
    positives among records labelled real, fakes called real among records labelled fake (each as a share; a
    day without such records has no point).
    Writes the PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    versions: dict[str, list[dict]] = {}
    for row in series:
        versions.setdefault(f"{row['model']} {row['version']}".strip() or "(unnamed)", []).append(row)
    figure, axes = plt.subplots(1, len(AGREEMENT_PANELS), figsize=(13, 4), sharex=True)
    for axis, (title, part, whole, ylabel) in zip(axes, AGREEMENT_PANELS):
        for name, rows in versions.items():
            points = [(datetime.date.fromisoformat(r["day"]), part(r) / whole(r)) for r in rows if whole(r)]
            if points:
                axis.plot(*zip(*points), marker="o", label=name)
        axis.set_title(title)
        axis.set_ylabel(ylabel)
        axis.set_ylim(-0.05, 1.05)
        axis.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
        axis.tick_params(axis="x", labelrotation=30)
        axis.grid(alpha=0.3)
    if versions:
        axes[0].legend(fontsize="small")
    else:
        axes[1].text(0.5, 0.5, "no reviewed records yet", ha="center", va="center", transform=axes[1].transAxes)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
