"""The operating decision: temperature fitting, thresholds for a target false-positive rate, the
three verdicts, decision.json in the core and in build_mar. Served round trips are in test_training.py."""

from __future__ import annotations

import argparse
import json
import logging
import shutil

import numpy as np
import pytest
import torch

from deepfake_service.packaging.archive import BuildError, build_mar
from deepfake_service.project import MODEL_CONFIG, handler_options
from deepfake_service.samples import imagegen
from deepfake_service.training.calibration import decide, fit_temperature, nll, tempered, threshold_for_fpr
from deepfake_service.training.predictors import served_face_mode
from handler.analysis import Analysis, Request
from handler.answers import decision_block
from handler.classifier import DeepfakeClassifier
from handler.decision import DECISION_FILE, Decision, DecisionError, read_decision
from handler.faces import FACE_MODES
from handler.options import HandlerOptions
from tests.servers import model_config
from tests.tiny import TINY_LABELS

LABELS = ("Real", "Fake")


def overconfident(n: int, true_temperature: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose labels were drawn from softmax(logits / true_temperature): a model that is
    overconfident by that factor."""
    rng = np.random.default_rng(seed)
    margin = rng.normal(0, 6, n)
    logits = np.stack([-margin / 2, margin / 2], axis=1)
    truth = (rng.random(n) < tempered(logits, true_temperature)[:, 1]).astype(int)
    return logits, truth


def test_temperature_fitting_lowers_nll_and_finds_the_overconfidence():
    logits, truth = overconfident(4000, 2.5, seed=0)
    temperature = fit_temperature(logits, truth)
    assert nll(logits, truth, temperature) < nll(logits, truth, 1.0) - 0.05
    assert temperature == pytest.approx(2.5, rel=0.15)


def test_temperature_fitting_never_makes_a_calibrated_model_worse():
    logits, truth = overconfident(2000, 1.0, seed=1)
    temperature = fit_temperature(logits, truth)
    assert nll(logits, truth, temperature) <= nll(logits, truth, 1.0)
    assert temperature == pytest.approx(1.0, rel=0.1)


@pytest.mark.parametrize("target", [0.01, 0.05, 0.1, 0.25])
@pytest.mark.parametrize("n", [7, 100, 1001])
def test_threshold_meets_the_target_fpr_within_one_image(target, n):
    scores = np.random.default_rng(n).random(n)
    threshold = threshold_for_fpr(scores, target)
    flagged = int((scores >= threshold).sum())
    assert flagged / n <= target
    assert flagged >= int(np.floor(target * n)) - 1  # within one image of the target
    # halfway to the next real score: no real image sits on the threshold
    assert not np.isclose(scores, threshold, rtol=0, atol=1e-12).any()


def test_threshold_with_tied_scores_still_meets_the_target():
    scores = np.array([0.9] * 5 + [0.2] * 95)
    threshold = threshold_for_fpr(scores, 0.03)
    assert (scores >= threshold).mean() <= 0.03  # the five tied 0.9s cannot be split: none is flagged
    assert threshold > 0.9


DECIDED = Decision(fake_label="Fake", calibrated=True, temperature=1.0, fake_threshold=0.8, uncertain_threshold=0.4,
                   target_fpr=0.01, uncertain_fpr=0.05)


@pytest.mark.parametrize(
    ("fake", "verdict"),
    [(0.0, "real"), (np.nextafter(0.4, 0), "real"), (0.4, "uncertain"), (0.6, "uncertain"), (np.nextafter(0.8, 0), "uncertain"),
     (0.8, "fake"), (1.0, "fake")],
)
def test_uncertain_is_exactly_the_band_between_the_thresholds(fake, verdict):
    label = "Fake" if fake > 0.5 else "Real"
    assert DECIDED.verdict({"Real": 1 - fake, "Fake": fake}, label) == verdict


def test_uncalibrated_verdict_follows_the_top_label_and_is_never_uncertain():
    plain = Decision(fake_label="Fake")
    assert plain.verdict({"Real": 0.45, "Fake": 0.55}, "Fake") == "fake"
    assert plain.verdict({"Real": 0.55, "Fake": 0.45}, "Real") == "real"
    block = decision_block(plain, "auto")
    assert block["calibrated"] is False and block["fake_threshold"] is None
    assert (block["fitted_face_mode"], block["face_mode_mismatch"]) == (None, False) and "note" not in block


def test_decide_writes_thresholds_that_meet_both_targets_on_its_set():
    logits, truth = overconfident(600, 2.0, seed=4)
    decision = decide(LABELS, truth, logits, "Fake", 0.01, 0.05)
    scores = tempered(logits, decision["temperature"])[:, 1]
    real = truth == 0
    assert (scores[real] >= decision["thresholds"]["fake"]).mean() <= 0.01
    assert (scores[real] >= decision["thresholds"]["uncertain"]).mean() <= 0.05
    assert decision["thresholds"]["uncertain"] <= decision["thresholds"]["fake"]
    assert decision["achieved"]["fake"]["fpr"] <= 0.01 and decision["achieved"]["uncertain"]["fpr"] <= 0.05
    assert decision["nll"]["after"] < decision["nll"]["before"] and decision["ece"]["after"] < decision["ece"]["before"]


@pytest.fixture
def decided_checkpoint(tiny_checkpoint, tmp_path):
    """The tiny checkpoint with a decision.json for its label "synthetic"."""
    folder = tmp_path / "decided"
    shutil.copytree(tiny_checkpoint, folder)
    (folder / DECISION_FILE).write_text(json.dumps({
        "fake_label": "synthetic", "temperature": 3.0, "thresholds": {"fake": 0.36, "uncertain": 0.32},
        "target": {"fake_fpr": 0.01, "uncertain_fpr": 0.05},
    }))
    return folder


def subjects_of(classifier, request):
    analysis = Analysis(request)
    classifier.find_subjects([analysis])
    return analysis.subjects


def test_a_decided_checkpoint_answers_calibrated_probabilities_and_verdicts(decided_checkpoint, tiny_checkpoint):
    options = HandlerOptions(fake_label="synthetic")
    decided = DeepfakeClassifier.from_checkpoint(decided_checkpoint, options)
    plain = DeepfakeClassifier.from_checkpoint(tiny_checkpoint, options)
    images = [imagegen.jpeg(seed=s) for s in range(12)]
    pixels = plain.preprocess([subjects_of(plain, Request(image, "off")).crops[0] for image in images])
    logits = plain.runtime.predict(pixels)
    expected, softmax = torch.softmax(logits.double() / 3.0, dim=-1), torch.softmax(logits.double(), dim=-1)
    for row, plain_row, calibrated, uncalibrated in zip(expected, softmax, decided.predict_batch(images), plain.predict_batch(images)):
        assert calibrated["decision"] == {"calibrated": True, "fake_label": "synthetic", "temperature": 3.0,
                                          "fake_threshold": 0.36, "uncertain_threshold": 0.32, "target_fpr": 0.01,
                                          "uncertain_fpr": 0.05, "fitted_face_mode": None, "face_mode_mismatch": None}
        assert list(calibrated["probabilities"].values()) == pytest.approx(row.tolist(), abs=1e-6)
        fake = calibrated["probabilities"]["synthetic"]
        assert calibrated["verdict"] == ("fake" if fake >= 0.36 else "uncertain" if fake >= 0.32 else "real")
        # Without decision.json: the plain softmax, the top label decides, never uncertain.
        assert uncalibrated["decision"]["calibrated"] is False
        assert uncalibrated["verdict"] == ("fake" if uncalibrated["label"] == "synthetic" else "real")
        assert list(uncalibrated["probabilities"].values()) == pytest.approx(plain_row.tolist(), abs=1e-6)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"fake_label": "Fake"}, "was set for label 'Fake'"),
        ({"thresholds": {"fake": 0.3, "uncertain": 0.5}}, "is above thresholds.fake"),
        ({"thresholds": {"fake": 1.5, "uncertain": 0.5}}, "thresholds.fake must be a number in"),
        ({"temperature": 0}, "temperature must be a positive number"),
        ({"target": {}}, "target.fake_fpr"),
        ({"face_mode": "sideways"}, "face_mode must be one of auto, faces, off or absent"),
    ],
)
def test_an_unusable_decision_file_stops_the_load_and_the_build(decided_checkpoint, tmp_path, change, message):
    path = decided_checkpoint / DECISION_FILE
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    with pytest.raises(DecisionError, match=message):
        read_decision(decided_checkpoint, tuple(TINY_LABELS.values()), "synthetic")
    config = model_config(tmp_path / "mc.yaml", handler={"runtime": "torch", "precision": "fp32", "fake_label": "synthetic"})
    with pytest.raises(BuildError, match=message):
        build_mar(decided_checkpoint, "decided", "1.0", model_config=config, export_dir=tmp_path / "store")


def test_no_decision_file_is_uncalibrated(tiny_checkpoint):
    decision = read_decision(tiny_checkpoint, tuple(TINY_LABELS.values()), "synthetic")
    assert decision == Decision(fake_label="synthetic")


# The face mode the operating point was fitted on, and a server answering in another one.

def fitted_in(folder, face_mode):
    """``folder``'s decision.json, fitted in ``face_mode`` (None: a file from before the key)."""
    path = folder / DECISION_FILE
    content = {key: value for key, value in json.loads(path.read_text()).items() if key != "face_mode"}
    path.write_text(json.dumps(content if face_mode is None else {**content, "face_mode": face_mode}))
    return folder


def test_an_old_decision_file_without_face_mode_loads_and_says_its_face_mode_is_unknown(decided_checkpoint):
    decision = read_decision(decided_checkpoint, tuple(TINY_LABELS.values()), "synthetic")
    assert decision.calibrated and decision.face_mode is None
    block = decision_block(decision, "auto")
    assert (block["fitted_face_mode"], block["face_mode_mismatch"]) == (None, None) and "note" not in block


@pytest.mark.parametrize("face_mode", FACE_MODES)
def test_the_decision_carries_the_face_mode_it_was_fitted_on(decided_checkpoint, face_mode):
    assert read_decision(fitted_in(decided_checkpoint, face_mode), tuple(TINY_LABELS.values()), "synthetic").face_mode == face_mode


def test_the_decision_block_names_the_fitted_face_mode_and_a_request_in_another_mode(decided_checkpoint):
    classifier = DeepfakeClassifier.from_checkpoint(fitted_in(decided_checkpoint, "auto"), HandlerOptions(fake_label="synthetic"))
    image = imagegen.jpeg(seed=3)
    served, asked_auto = classifier.predict_batch([image, Request(image, "auto")])  # the server's mode (off), then auto
    assert served["mode"] == "off" and served["decision"]["fitted_face_mode"] == "auto"
    assert served["decision"]["face_mode_mismatch"] is True
    assert "fitted on face mode auto" in served["decision"]["note"] and "analysed in face mode off" in served["decision"]["note"]
    assert asked_auto["decision"]["face_mode_mismatch"] is False and "note" not in asked_auto["decision"]
    assert served["verdict"] == asked_auto["verdict"]  # the note is beside the verdict, never in it


def test_loading_warns_when_the_served_face_mode_is_not_the_fitted_one(decided_checkpoint, caplog):
    options = HandlerOptions(fake_label="synthetic", face_mode="off")
    with caplog.at_level(logging.INFO, logger="handler.classifier"):
        DeepfakeClassifier.from_checkpoint(fitted_in(decided_checkpoint, "auto"), options)
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "fitted on face mode auto" in warned[0].getMessage() and "face mode off" in warned[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="handler.classifier"):
        DeepfakeClassifier.from_checkpoint(fitted_in(decided_checkpoint, "off"), options)
        DeepfakeClassifier.from_checkpoint(fitted_in(decided_checkpoint, None), options)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert ["does not say which face mode" in r.getMessage() for r in caplog.records] == [True]


def test_calibrate_fits_on_the_model_configs_face_mode_unless_told(tmp_path):
    shipped = handler_options(MODEL_CONFIG).faces.mode
    off = model_config(tmp_path / "off.yaml", handler={"face_mode": "off"})
    assert served_face_mode(argparse.Namespace(face_mode=None, model_config=MODEL_CONFIG)) == shipped == "auto"
    assert served_face_mode(argparse.Namespace(face_mode=None, model_config=off)) == "off"
    assert served_face_mode(argparse.Namespace(face_mode="faces", model_config=off)) == "faces"


@pytest.mark.parametrize(("given", "fitted"), [([], "auto"), (["--model-config", "off"], "off"),
                                               (["--model-config", "off", "--face-mode", "auto"], "auto")])
def test_calibrate_writes_the_face_mode_it_classified_in(tiny_checkpoint, labelled_folder, tmp_path, given, fitted):
    from scripts import calibrate

    given = [str(model_config(tmp_path / "off.yaml", handler={"face_mode": "off"})) if g == "off" else g for g in given]
    calibrate.main(["--checkpoint", str(tiny_checkpoint), "--data", str(labelled_folder), "--fake-label", "synthetic",
                    "--output", str(tmp_path), "--no-progress", *given])
    written = json.loads((tmp_path / DECISION_FILE).read_text())
    assert written["face_mode"] == fitted
    assert read_decision(tmp_path, tuple(TINY_LABELS.values()), "synthetic").face_mode == fitted
