"""The operating decision: calibrated probabilities, a ``fake`` threshold set for a target false-positive
rate on real images, and an ``uncertain`` band below it, from the checkpoint's ``decision.json``.

``decision.json`` is written by ``python -m scripts.calibrate`` from a labelled calibration set (never the
test split). Without it the service is uncalibrated: probabilities are the plain softmax, the verdict
follows the top label and ``uncertain`` never appears.

The rule, for the calibrated probability ``p`` of the fake label:
  ``p >= fake_threshold``                       -> ``fake``
  ``uncertain_threshold <= p < fake_threshold`` -> ``uncertain``
  ``p < uncertain_threshold``                   -> ``real``
``fake_threshold`` flags at most ``target_fpr`` of the calibration set's real images, and
``uncertain_threshold`` at most ``uncertain_fpr`` of them (a looser target), so ``uncertain`` holds the
scores a second, looser operating point would flag and the strict one does not.

The thresholds hold for the kind of input they were fitted on: ``face_mode`` says which face mode
(handler/faces.py) classified the calibration set, None in files written before it was recorded.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from handler.faces import FACE_MODES

DECISION_FILE = "decision.json"
VERDICTS = ("real", "fake", "uncertain")


class DecisionError(Exception):
    """``decision.json`` exists but cannot be used (wrong label, thresholds out of range, bad JSON)."""


@dataclass(frozen=True)
class Decision:
    """How logits become probabilities and a verdict. ``calibrated`` False: softmax and the top label."""

    fake_label: str
    calibrated: bool = False
    temperature: float = 1.0
    fake_threshold: float | None = None
    uncertain_threshold: float | None = None
    target_fpr: float | None = None
    uncertain_fpr: float | None = None
    face_mode: str | None = None  # the face mode the thresholds were fitted on; None: not recorded

    def face_mode_mismatch(self, mode: str) -> bool | None:
        """Whether subjects found in face ``mode`` are another kind of input than the thresholds were fitted
        on: None when a calibrated decision does not say (an older ``decision.json``), False uncalibrated."""
        if not self.calibrated:
            return False
        return None if self.face_mode is None else mode != self.face_mode

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Softmax of ``logits / temperature``, in float64 so thresholds compare the same everywhere."""
        return torch.softmax(logits.double() / self.temperature, dim=-1)

    def verdict(self, probabilities: dict[str, float], label: str) -> str:
        """``real``, ``fake`` or ``uncertain`` for one subject's probabilities and top label."""
        if not self.calibrated:
            return "fake" if label == self.fake_label else "real"
        fake = probabilities[self.fake_label]
        if fake >= self.fake_threshold:
            return "fake"
        if fake >= self.uncertain_threshold:
            return "uncertain"
        return "real"


def _fraction(value: Any, name: str, low: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not low <= value <= 1.0:
        raise DecisionError(f"{name} must be a number in [{low}, 1], got {value!r}")
    return float(value)


def read_decision(folder: Path, labels: Sequence[str], fake_label: str) -> Decision:
    """The checkpoint folder's decision, or an uncalibrated one when it has no ``decision.json``.

    Raises ``DecisionError`` for a file that is there but unusable: a broken operating point must stop
    the model from loading, not serve verdicts nobody chose."""
    path = Path(folder) / DECISION_FILE
    if not path.is_file():
        return Decision(fake_label=fake_label)
    try:
        data = json.loads(path.read_text())
        declared, temperature = data["fake_label"], data["temperature"]
        thresholds, target = data["thresholds"], data["target"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DecisionError(f"{path} is not a decision file written by scripts.calibrate: {exc!r}") from exc
    if declared != fake_label or fake_label not in labels:
        raise DecisionError(
            f"{path} was set for label {declared!r}; the handler's fake_label is {fake_label!r} and the model's labels are {list(labels)}"
        )
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 < temperature < math.inf:
        raise DecisionError(f"{path}: temperature must be a positive number, got {temperature!r}")
    fake = _fraction(thresholds.get("fake"), "thresholds.fake")
    uncertain = _fraction(thresholds.get("uncertain"), "thresholds.uncertain")
    if uncertain > fake:
        raise DecisionError(f"{path}: thresholds.uncertain ({uncertain}) is above thresholds.fake ({fake})")
    face_mode = data.get("face_mode")
    if face_mode is not None and face_mode not in FACE_MODES:
        raise DecisionError(f"{path}: face_mode must be one of {', '.join(FACE_MODES)} or absent, got {face_mode!r}")
    return Decision(
        fake_label=fake_label,
        calibrated=True,
        temperature=float(temperature),
        fake_threshold=fake,
        uncertain_threshold=uncertain,
        target_fpr=_fraction(target.get("fake_fpr"), "target.fake_fpr"),
        uncertain_fpr=_fraction(target.get("uncertain_fpr"), "target.uncertain_fpr"),
        face_mode=face_mode,
    )
