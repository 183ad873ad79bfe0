"""Temperature scaling and the operating point, from a labelled calibration set (never the test split).

The library behind ``python -m scripts.calibrate`` and ``train --calibration-size``; the served side of
the same rule is ``handler/decision.py``, which reads the ``decision.json`` written here.

* Temperature: one scalar ``T`` minimising the negative log-likelihood of ``softmax(logits / T)`` on the
  calibration set. The model's answers carry probabilities, not logits; ``log p`` differs from the logits
  by a per-row constant, which softmax ignores, so fitting on ``log p`` is fitting on the logits.
* Thresholds on the calibrated probability of the fake label: ``fake`` is the lowest threshold that flags
  at most ``target_fpr`` of the real calibration images; ``uncertain`` the same for the looser
  ``uncertain_fpr``. Each sits halfway between the last real score it lets through and the next one up,
  so a score that moves in the last digit (another runtime) does not cross it.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.optimize import minimize_scalar

from deepfake_service.dataset import Sample
from handler.decision import DECISION_FILE

FORMAT = 1
TEMPERATURE_RANGE = (0.05, 20.0)
EPSILON = float(np.finfo(float).tiny)  # floor before log: answers' JSON floats keep probabilities like 1e-40 exactly


CALIBRATION_BINS = 10  # confidence bins of the reliability diagram and the ECE


class CalibrationError(Exception):
    """The calibration set cannot give an operating point (no real or no fake image, bad targets)."""


def log_probabilities(probabilities: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Uncalibrated log-probabilities (up to a per-row constant) of probabilities served at ``temperature``:
    ``softmax(z / T) = p`` means ``z = T log p + c``."""
    return temperature * np.log(np.clip(np.asarray(probabilities, dtype=float), EPSILON, 1.0))


def tempered(logits: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(logits / temperature)`` in float64."""
    scaled = np.asarray(logits, dtype=float) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


def nll(logits: np.ndarray, truth: Sequence[int], temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true classes under ``softmax(logits / temperature)``."""
    probabilities = tempered(logits, temperature)
    picked = probabilities[np.arange(len(truth)), np.asarray(truth, dtype=int)]
    return float(-np.mean(np.log(np.clip(picked, EPSILON, 1.0))))


def fit_temperature(logits: np.ndarray, truth: Sequence[int]) -> float:
    """The temperature with the lowest NLL in ``TEMPERATURE_RANGE`` (searched on log T); 1.0 when nothing
    beats it, so fitting never makes the calibration set's NLL worse."""
    low, high = np.log(TEMPERATURE_RANGE)
    found = minimize_scalar(lambda log_t: nll(logits, truth, float(np.exp(log_t))), bounds=(low, high), method="bounded",
                            options={"xatol": 1e-4})
    best = float(np.exp(found.x))
    return best if nll(logits, truth, best) < nll(logits, truth, 1.0) else 1.0


def threshold_for_fpr(real_scores: Sequence[float], target: float) -> float:
    """The lowest threshold ``t`` with ``mean(real_scores >= t) <= target``, placed halfway between the
    highest real score it lets through and the next higher real score (or 1.0)."""
    scores = np.sort(np.asarray(real_scores, dtype=float))[::-1]
    if len(scores) == 0:
        raise CalibrationError("the calibration set has no real image: no false-positive rate can be set")
    allowed = int(np.floor(target * len(scores) + 1e-9))  # real images that may score at or above t
    if allowed >= len(scores):
        return float(scores[-1])
    passed = scores[allowed]
    above = scores[scores > passed]
    upper = float(above.min()) if len(above) else 1.0
    return float((passed + upper) / 2) if upper > passed else float(np.nextafter(passed, np.inf))


def rates(scores: np.ndarray, is_fake: np.ndarray, threshold: float) -> dict[str, float]:
    """False-positive rate (real images at or above ``threshold``) and true-positive rate (fake ones)."""
    flagged = np.asarray(scores) >= threshold
    is_fake = np.asarray(is_fake, dtype=bool)
    return {
        "fpr": float(flagged[~is_fake].mean()) if (~is_fake).any() else None,
        "tpr": float(flagged[is_fake].mean()) if is_fake.any() else None,
    }


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


def file_list_sha256(samples: Sequence[Sample]) -> str:
    """SHA-256 of the calibration set's sorted ``path,label`` lines: which images set the operating point."""
    lines = sorted(f"{s.path},{s.label}" for s in samples)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def decide(
    labels: Sequence[str],
    truth: Sequence[int],
    logits: np.ndarray,
    fake_label: str,
    target_fpr: float,
    uncertain_fpr: float,
) -> dict:
    """The decision file's content (without the data description): temperature, thresholds, target and
    achieved rates, NLL and ECE before and after scaling."""
    if fake_label not in labels:
        raise CalibrationError(f"fake label {fake_label!r} is not one of the model's labels {list(labels)}")
    if not 0 < target_fpr <= uncertain_fpr < 1:
        raise CalibrationError(f"need 0 < target FPR ({target_fpr}) <= uncertain FPR ({uncertain_fpr}) < 1")
    truth = np.asarray(truth, dtype=int)
    is_fake = truth == labels.index(fake_label)
    if is_fake.all() or not is_fake.any():
        raise CalibrationError(f"the calibration set needs real and {fake_label} images; it has {int(is_fake.sum())} "
                               f"{fake_label} of {len(truth)}")
    temperature = fit_temperature(logits, truth)
    before, after = tempered(logits, 1.0), tempered(logits, temperature)
    scores = after[:, labels.index(fake_label)]
    fake, uncertain = threshold_for_fpr(scores[~is_fake], target_fpr), threshold_for_fpr(scores[~is_fake], uncertain_fpr)
    return {
        "format": FORMAT,
        "fake_label": fake_label,
        "labels": list(labels),
        "temperature": temperature,
        "thresholds": {"fake": fake, "uncertain": min(uncertain, fake)},
        "target": {"fake_fpr": target_fpr, "uncertain_fpr": uncertain_fpr},
        "achieved": {"fake": rates(scores, is_fake, fake), "uncertain": rates(scores, is_fake, min(uncertain, fake))},
        "nll": {"before": nll(logits, truth, 1.0), "after": nll(logits, truth, temperature)},
        "ece": {"before": calibration(truth, before)["ece"], "after": calibration(truth, after)["ece"]},
    }


def describe_set(samples: Sequence[Sample], used: int, source: Path) -> dict:
    """What the operating point was set on: size per label, the file list's hash, where it came from."""
    per_label: dict[str, int] = {}
    for sample in samples:
        per_label[sample.label] = per_label.get(sample.label, 0) + 1
    return {"source": str(source), "images": len(samples), "classified": used, "per_label": per_label,
            "files_sha256": file_list_sha256(samples)}


def write_decision(decision: dict, calibration_set: dict, folder: Path) -> Path:
    """``folder/decision.json`` with the date it was set."""
    content = {**decision, "calibration_set": calibration_set,
               "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    path = folder / DECISION_FILE
    path.write_text(json.dumps(content, indent=2) + "\n")
    return path
