"""Setting the operating point: classify a labelled calibration set (never the test split) and fit the
decision on what came back (``calibration.decide``). ``python -m scripts.calibrate`` and
``train --calibration-size`` call ``calibrate``; ``calibration.write_decision`` writes the result."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from deepfake_service.dataset import Sample
from deepfake_service.training.calibration import decide, describe_set
from deepfake_service.training.evaluate import evaluate


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
    already has is undone) and return (decision, calibration set description) for ``write_decision``."""
    evaluation = evaluate(predictor, list(samples), batch_size, progress)
    labels = evaluation.report["labels"]
    decision = decide(labels, evaluation.truth, evaluation.logits, fake_label, target_fpr, uncertain_fpr)
    model = evaluation.report["model"]
    # Scores move a little between runtimes and precisions: the file says which computed these.
    computed_by = {"runtime": model.get("runtime"), "precision": model.get("precision")}
    return decision, {**describe_set(samples, len(evaluation.truth), source), "computed_by": computed_by}
