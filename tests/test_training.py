"""Training, evaluation, scoring and version rollout on a generated two-class dataset with a tiny ViT."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import requests

from deepfake_service.dataset import (
    MEDIA_SUFFIXES,
    DatasetError,
    Sample,
    given_splits,
    image_files,
    labelled_samples,
    oversample,
    read_split,
    stratified_split,
)
from deepfake_service.packaging.demo import write_random_checkpoint
from deepfake_service.project import handler_options
from deepfake_service.serving.rollout import RolloutError, deploy, predict, rollback, smoke_image, versions
from deepfake_service.training.checkpoint_predictor import CheckpointPredictor
from deepfake_service.training.evaluate import evaluate, write_evaluation
from deepfake_service.training.example_dataset import two_class_dataset
from deepfake_service.training.predictors import EndpointPredictor
from deepfake_service.training.report import FIGURES, classification_report
from deepfake_service.training.score import score
from deepfake_service.training.train import TrainSettings, logging_steps, train
from handler.analysis import Request
from handler.decision import DECISION_FILE
from tests.servers import model_config, running_server
from tests.tiny import tiny_config

COUNTS = {"Real": 30, "Fake": 18}  # unbalanced on purpose
TORCH_FP32 = {"runtime": "torch", "precision": "fp32"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def settings(data: Path, output: Path, base: Path, **overrides) -> TrainSettings:
    # The reference lr (1e-6) is for fine-tuning a trained ViT; a random tiny one needs more.
    values = dict(data=data, output=output, base_model=str(base), epochs=10.0, batch_size=8, learning_rate=1e-3,
                  workers=0, save_steps=20, progress=False)
    values.update(overrides)
    return TrainSettings(**values)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    config = tiny_config(id2label={0: "Real", 1: "Fake"})
    return write_random_checkpoint(tmp_path_factory.mktemp("base") / "checkpoint", config, seed=3, demo=True)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return two_class_dataset(tmp_path_factory.mktemp("dataset"), COUNTS)


@pytest.fixture(scope="module")
def run(dataset, base, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("runs") / "exp1"
    train(settings(dataset, output, base))
    return output


@pytest.fixture(scope="module")
def calibrated_run(base, tmp_path_factory) -> Path:
    """A run that sets its operating point on its own calibration split (targets loose enough for 18 real
    calibration images: 1 and 3 of them may be flagged)."""
    data = two_class_dataset(tmp_path_factory.mktemp("dataset-calibrated"), {"Real": 60, "Fake": 40}, seed=5)
    output = tmp_path_factory.mktemp("runs") / "calibrated"
    train(settings(data, output, base, test_size=0.3, calibration_size=0.3, target_fpr=0.06, uncertain_fpr=0.2))
    return output


def samples(counts: dict[str, int]) -> list[Sample]:
    return [Sample(Path(f"/data/{label}/{i}.jpg"), label) for label, n in counts.items() for i in range(n)]


def test_oversampling_after_the_split_never_copies_a_test_image_into_training():
    train_part, test_part = stratified_split(samples({"Real": 50, "Fake": 11}), test_size=0.4, seed=0)
    balanced = oversample(train_part, seed=0)
    assert not {s.path for s in balanced} & {s.path for s in test_part}
    assert {s.path for s in balanced} == {s.path for s in train_part}
    per_label = {label: sum(s.label == label for s in balanced) for label in ("Real", "Fake")}
    assert per_label["Real"] == per_label["Fake"] == 30


def test_stratified_split_keeps_label_proportions():
    train_part, test_part = stratified_split(samples({"Real": 50, "Fake": 10}), test_size=0.4, seed=1)
    assert sum(s.label == "Fake" for s in test_part) == 4
    assert sum(s.label == "Fake" for s in train_part) == 6


def test_a_label_with_one_image_cannot_be_split():
    with pytest.raises(DatasetError, match="at least two images"):
        stratified_split(samples({"Real": 10, "Fake": 1}), test_size=0.4, seed=0)


def test_kaggle_layout_is_read_with_its_own_splits(tmp_path):
    for split in ("Train", "Validation", "Test"):
        two_class_dataset(tmp_path / split, {"Real": 2, "Fake": 2}, size=16)
    assert len(labelled_samples(tmp_path)) == 12
    splits = given_splits(tmp_path)
    assert sorted(splits) == ["test", "train", "validation"]
    assert all(s.path.parent.parent.name == "Test" for s in splits["test"])


def test_the_folder_holding_kaggles_unzipped_dataset_is_accepted(tmp_path):
    for split in ("Train", "Validation", "Test"):
        two_class_dataset(tmp_path / "Dataset" / split, {"Real": 2, "Fake": 2}, size=16)
    assert labelled_samples(tmp_path) == labelled_samples(tmp_path / "Dataset")
    assert sorted(given_splits(tmp_path)) == ["test", "train", "validation"]


def test_every_run_logs_a_loss_history_of_about_twenty_points(run, dataset, base, tmp_path):
    history = [e for e in json.loads((run / "training.json").read_text())["log_history"] if "loss" in e]
    assert 10 <= len(history) <= 30, len(history)  # 50 steps, a loss every 2
    assert logging_steps(36, settings(dataset, tmp_path, base, max_steps=3)) == 1  # short runs log every step
    assert logging_steps(10_000, settings(dataset, tmp_path, base, batch_size=10, epochs=2.0)) == 100


def test_training_split_files_are_disjoint_and_cover_the_dataset(run, dataset):
    train_files = {s.path for s in read_split(run / "splits" / "train.csv")}
    test_files = {s.path for s in read_split(run / "splits" / "test.csv")}
    assert not train_files & test_files
    assert train_files | test_files == {s.path for s in labelled_samples(dataset)}
    recorded = json.loads((run / "training.json").read_text())["splits"]
    assert recorded["train_oversampled_per_label"] == {"Real": 18, "Fake": 18}


def test_calibration_split_is_disjoint_and_sets_an_operating_point_that_meets_its_targets(calibrated_run):
    splits = {name: read_split(calibrated_run / "splits" / f"{name}.csv") for name in ("train", "test", "calibration")}
    files = {name: {s.path for s in group} for name, group in splits.items()}
    assert (len(files["train"]), len(files["test"]), len(files["calibration"])) == (40, 30, 30)
    assert not files["train"] & files["test"] and not files["train"] & files["calibration"] and not files["test"] & files["calibration"]
    decision = json.loads((calibrated_run / DECISION_FILE).read_text())
    assert decision["fake_label"] == "Fake" and decision["target"] == {"fake_fpr": 0.06, "uncertain_fpr": 0.2}
    assert decision["nll"]["after"] <= decision["nll"]["before"]
    assert decision["achieved"]["fake"]["fpr"] <= 0.06 and decision["achieved"]["uncertain"]["fpr"] <= 0.2
    assert 0 < decision["thresholds"]["uncertain"] <= decision["thresholds"]["fake"] <= 1
    assert decision["calibration_set"]["images"] == 30 and decision["calibration_set"]["per_label"] == {"Real": 18, "Fake": 12}
    assert len(decision["calibration_set"]["files_sha256"]) == 64 and decision["created"].startswith("20")
    assert decision["calibration_set"]["computed_by"] == {"runtime": "torch", "precision": "fp32"}
    # The held-out report is at the operating point.
    operating = json.loads((calibrated_run / "report" / "metrics.json").read_text())["operating"]
    assert operating["calibrated"] is True and set(operating["tpr_at_fpr"]) == {"0.01", "0.05", "0.1"}
    assert sum(operating["verdicts"].values()) == 30 and 0 <= operating["eer"] <= 1
    assert operating["at_fake_threshold"]["threshold"] == decision["thresholds"]["fake"]


def test_an_uncalibrated_run_says_so_in_its_report(run):
    assert not (run / DECISION_FILE).exists() and not (run / "splits" / "calibration.csv").exists()
    report = json.loads((run / "report" / "metrics.json").read_text())
    assert report["decision"]["calibrated"] is False
    assert report["operating"]["calibrated"] is False and "verdicts" not in report["operating"]


def test_trained_tiny_vit_is_clearly_above_chance_on_held_out_images(run):
    report = json.loads((run / "report" / "metrics.json").read_text())
    assert report["images"] == 20
    assert report["accuracy"] >= 0.85, report["confusion_matrix"]


def test_training_output_is_a_checkpoint_with_report_and_figures(run):
    for name in ("model.safetensors", "config.json", "preprocessor_config.json"):
        assert (run / name).is_file()
    assert not (run / "training_args.bin").exists()
    for name in FIGURES:
        assert (run / "report" / name).read_bytes().startswith(PNG_SIGNATURE)
    config = json.loads((run / "config.json").read_text())
    assert config["id2label"] == {"0": "Real", "1": "Fake"}
    report = json.loads((run / "report" / "metrics.json").read_text())
    assert report["model"]["demo"] is False  # fine-tuned weights are not the demo checkpoint


def test_training_refuses_an_earlier_run_unless_resumed(dataset, base, run):
    with pytest.raises(DatasetError, match="--resume"):
        train(settings(dataset, run, base))


def test_training_resumes_from_its_last_checkpoint(dataset, base, tmp_path):
    output = tmp_path / "resumable"
    train(settings(dataset, output, base, epochs=2.0, save_steps=5))
    first = [e for e in json.loads((output / "training.json").read_text())["log_history"] if "loss" in e]
    train(settings(dataset, output, base, epochs=4.0, save_steps=5, resume=True))
    recorded = json.loads((output / "training.json").read_text())
    assert recorded["resumed_from"].endswith("checkpoint-10")
    losses = [e for e in recorded["log_history"] if "loss" in e]
    assert [e["step"] for e in losses] == list(range(1, 21))  # runs this short log every step
    # Steps 1-10 were restored from the checkpoint, not rerun (a rerun under the 4-epoch learning-rate
    # schedule would log other losses).
    assert losses[:10] == first


def test_report_metrics_match_hand_computed_values():
    truth = [0, 0, 1, 1]
    probabilities = np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.2, 0.8]])
    report = classification_report(("Real", "Fake"), truth, probabilities, ["a", "b", "c", "d"])
    assert report["accuracy"] == 0.75
    assert report["confusion_matrix"] == [[1, 1], [0, 2]]
    assert report["roc_auc"] == 1.0  # every Fake scores above every Real
    assert report["per_class"]["Fake"]["precision"] == pytest.approx(2 / 3)
    # bins: 0.9 (correct), 0.6 (wrong), 0.7 (correct), 0.8 (correct) -> ECE = (0.1 + 0.6 + 0.3 + 0.2) / 4
    assert report["calibration"]["ece"] == pytest.approx(0.3)
    assert report["misclassified"] == [{"path": "b", "label": "Real", "predicted": "Fake", "confidence": 0.6}]


def test_score_reports_unreadable_files_and_resumes(run, dataset, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for index, path in enumerate(sorted((dataset / "Real").iterdir())[:4]):
        (folder / f"{index}.jpg").write_bytes(path.read_bytes())
    (folder / "broken.jpg").write_bytes(b"not an image at all")
    predictor = CheckpointPredictor(run, handler_options(model_config(tmp_path / "mc.yaml"), **TORCH_FP32))
    paths = sorted(folder.iterdir())
    output = tmp_path / "scores.csv"
    first = score(predictor, paths[:2], output, batch_size=2, progress=False)
    second = score(predictor, paths, output, batch_size=2, progress=False)
    assert (first.scored, second.scored, second.skipped, second.failed) == (2, 2, 2, 1)
    with open(output, newline="") as handle:
        rows = {row["path"]: row for row in csv.DictReader(handle)}
    assert sorted(rows) == sorted(map(str, paths))
    assert "not an image" in rows[str(folder / "broken.jpg")]["error"]
    good = rows[str(folder / "0.jpg")]
    assert set(json.loads(good["probabilities"])) == {"Real", "Fake"} and good["demo"] == "false"
    assert good["verdict"] == good["label"].lower() and good["calibrated"] == "false"  # no decision.json: top label
    changed = folder / "1.jpg"
    changed.write_bytes(sorted((dataset / "Real").iterdir())[5].read_bytes())
    third = score(predictor, paths, output, batch_size=2, progress=False)
    assert (third.rescored, third.skipped) == (1, len(paths) - 1)
    with open(output, newline="") as handle:
        again = list(csv.DictReader(handle))
    assert sorted(row["path"] for row in again) == sorted(map(str, paths))  # one row per file, the newest
    assert next(row for row in again if row["path"] == str(changed))["sha256"] == hashlib.sha256(changed.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def versioned_server(run, tmp_path_factory):
    """The trained checkpoint served as version 1.0 with the model API on (only here)."""
    workdir = tmp_path_factory.mktemp("versioned")
    with running_server(workdir, run, "detector", "1.0", properties={"enable_model_api": "true"}, handler=TORCH_FP32) as server:
        yield server


def test_evaluate_gives_the_same_metrics_in_process_and_through_torchserve(run, versioned_server, tmp_path):
    held_out = read_split(run / "splits" / "test.csv")
    options = handler_options(model_config(tmp_path / "mc.yaml"), **TORCH_FP32)
    local = evaluate(CheckpointPredictor(run, options, face_mode="off"), held_out, progress=False)
    served = evaluate(
        EndpointPredictor(versioned_server.inference_url, "detector", key_file=versioned_server.run_dir / "key_file.json",
                          face_mode="off"),
        held_out,
        progress=False,
    )
    assert (served.report["images"], served.report["labels"]) == (local.report["images"], local.report["labels"])
    # The counts follow each image's top label, and the two routes batch differently, so their scores may
    # differ in the last digits: an image scored within that of 0.5 could land on either side. Every other
    # image gets the same label; when none is that close (nearly always), the counts are exactly equal.
    fake = local.probabilities[:, local.report["labels"].index("Fake")]
    clear = np.abs(fake - 0.5) > 1e-4
    assert [v for v, c in zip(served.verdicts, clear) if c] == [v for v, c in zip(local.verdicts, clear) if c]
    if clear.all():
        for key in ("accuracy", "per_class", "confusion_matrix"):
            assert served.report[key] == local.report[key], key
        assert [m["path"] for m in served.report["misclassified"]] == [m["path"] for m in local.report["misclassified"]]
    assert served.report["model"]["version"] == "1.0"
    assert served.report["roc_auc"] == pytest.approx(local.report["roc_auc"], abs=1e-6)
    assert served.report["calibration"]["ece"] == pytest.approx(local.report["calibration"]["ece"], abs=1e-6)
    np.testing.assert_allclose(served.probabilities, local.probabilities, atol=1e-5)
    written = write_evaluation(served, tmp_path / "served")
    assert {p.name for p in written} == {"metrics.json", "predictions.csv", *FIGURES}


@pytest.fixture(scope="module")
def calibrated_version(versioned_server, calibrated_run, tmp_path_factory):
    """The calibrated run rolled out as version 2.0 of the served model."""
    config = model_config(tmp_path_factory.mktemp("rollout") / "mc.yaml", handler=TORCH_FP32)
    return deploy(versioned_server, "detector", checkpoint=calibrated_run, model_config=config)


def test_rollout_promotes_a_smoke_tested_version_and_rollback_restores_the_old(calibrated_version, calibrated_run, versioned_server):
    server, image = versioned_server, smoke_image()
    assert calibrated_version.version == "2.0"
    decision = json.loads((calibrated_run / DECISION_FILE).read_text())
    smoke = calibrated_version.smoke["decision"]  # the smoke answer shows the new version's operating point
    assert (smoke["calibrated"], smoke["temperature"]) == (True, decision["temperature"])
    assert (smoke["fake_threshold"], smoke["uncertain_threshold"]) == (decision["thresholds"]["fake"], decision["thresholds"]["uncertain"])
    assert (Path(server.properties["model_store"]) / "detector-v2.0.mar").is_file()
    assert versions(server, "detector").default == "2.0"
    assert predict(server, "detector", None, image)["version"] == "2.0"
    assert versions(server, "detector-video") == versions(server, "detector")  # the video twin follows
    twin = requests.get(f"{server.management_url}/models/detector-video/2.0", headers=server.headers("management"), timeout=30)
    assert twin.json()[0]["batchSize"] == 1  # the archive's video section, not its image batching
    assert rollback(server, "detector") == "1.0"
    assert predict(server, "detector", None, image)["version"] == "1.0"
    assert predict(server, "detector-video", None, image)["version"] == "1.0"
    assert versions(server, "detector").registered == ["1.0", "2.0"]  # 2.0 kept for a roll forward


def test_served_calibrated_answers_equal_the_core_with_the_same_decision(calibrated_version, calibrated_run, versioned_server, tmp_path):
    held_out = read_split(calibrated_run / "splits" / "test.csv")
    options = handler_options(model_config(tmp_path / "mc.yaml"), **TORCH_FP32)
    local = evaluate(CheckpointPredictor(calibrated_run, options, face_mode="off"), held_out, progress=False)
    served = evaluate(
        EndpointPredictor(versioned_server.inference_url, "detector", version="2.0",
                          key_file=versioned_server.run_dir / "key_file.json", face_mode="off"),
        held_out,
        progress=False,
    )
    assert served.decision == local.decision and served.decision["calibrated"] is True
    np.testing.assert_allclose(served.probabilities, local.probabilities, atol=1e-5)
    # Batches differ between the two routes, so scores may differ in the last digits, and this separable set
    # puts real scores within 0.1 % of the thresholds: compare verdicts away from them (the served ones are
    # checked against the rule on their own scores below).
    thresholds = np.array([served.decision["fake_threshold"], served.decision["uncertain_threshold"]])
    local_fake = local.probabilities[:, local.report["labels"].index("Fake")]
    clear = [bool(np.all(np.abs(score - thresholds) > 1e-3 * thresholds)) for score in local_fake]  # relative: scores span 1e-30..1
    assert [v for v, c in zip(served.verdicts, clear) if c] == [v for v, c in zip(local.verdicts, clear) if c]
    assert any(clear)
    fake = served.probabilities[:, served.report["labels"].index("Fake")]
    expected = np.where(fake >= served.decision["fake_threshold"], "fake",
                        np.where(fake >= served.decision["uncertain_threshold"], "uncertain", "real"))
    assert served.verdicts == expected.tolist()
    counted = {verdict: served.verdicts.count(verdict) for verdict in ("real", "fake", "uncertain")}
    assert served.report["operating"]["verdicts"] == counted
    if all(clear):  # then no verdict could differ between the routes, nor their counts
        assert served.report["operating"]["verdicts"] == local.report["operating"]["verdicts"]


def test_rollout_refuses_a_version_with_other_labels_and_keeps_the_default(versioned_server, tiny_checkpoint, tmp_path):
    server = versioned_server
    before = versions(server, "detector"), versions(server, "detector-video")
    config = model_config(tmp_path / "mc.yaml", handler=TORCH_FP32)
    with pytest.raises(RolloutError, match="labels changed"):
        deploy(server, "detector", checkpoint=tiny_checkpoint, model_config=config)
    assert (versions(server, "detector"), versions(server, "detector-video")) == before  # unregistered again


def test_the_calibrate_command_reproduces_the_runs_operating_point(calibrated_run, tmp_path, capsys):
    from scripts import calibrate

    # The run calibrates its face crops as they are (face mode off), and says so; the command takes the
    # served mode (auto) unless told.
    calibrate.main(["--checkpoint", str(calibrated_run), "--data", str(calibrated_run / "splits" / "calibration.csv"),
                    "--target-fpr", "0.06", "--uncertain-fpr", "0.2", "--output", str(tmp_path), "--no-progress", "--face-mode", "off"])
    again, first = (json.loads((folder / DECISION_FILE).read_text()) for folder in (tmp_path, calibrated_run))
    assert again["face_mode"] == first["face_mode"] == "off"
    # The run's own decision.json is undone (its temperature divided out) before refitting on the same images.
    assert again["temperature"] == pytest.approx(first["temperature"], rel=1e-3)
    assert again["thresholds"] == pytest.approx(first["thresholds"], abs=1e-6)
    assert again["calibration_set"]["files_sha256"] == first["calibration_set"]["files_sha256"]
    assert "fake      if P(Fake) >=" in capsys.readouterr().out


def test_evaluate_robustness_reports_auc_and_flips_per_re_encoding(calibrated_run, tmp_path):
    from scripts import evaluate as evaluate_command

    evaluate_command.main(["--checkpoint", str(calibrated_run), "--data", str(calibrated_run / "splits" / "test.csv"),
                           "--output", str(tmp_path), "--robustness", "--no-progress"])
    result = json.loads((tmp_path / "robustness.json").read_text())
    names = [row["transform"] for row in result["transforms"]]
    assert names == ["none", "jpeg q90", "jpeg q70", "jpeg q50", "half size and back", "webp q80", "crop 5 %"]
    assert all(row["images"] == 30 and 0 <= row["flipped"] <= 1 and 0 <= row["roc_auc"] <= 1 for row in result["transforms"])
    assert result["transforms"][0]["flipped"] == 0.0 and result["calibrated"] is True
    assert (tmp_path / "robustness.png").read_bytes().startswith(PNG_SIGNATURE)
    with open(tmp_path / "predictions.csv", newline="") as handle:
        assert {row["verdict"] for row in csv.DictReader(handle)} <= {"real", "fake", "uncertain"}


def test_evaluate_and_score_take_videos_beside_images_one_row_each(run, dataset, tmp_path):
    from deepfake_service.samples import videogen

    folder = tmp_path / "mixed"
    for label in ("Real", "Fake"):
        (folder / label).mkdir(parents=True)
        source = sorted((dataset / label).iterdir())[0]
        (folder / label / source.name).write_bytes(source.read_bytes())
    (folder / "Real" / "walk.mp4").write_bytes(videogen.clip(people=1, count=6))
    (folder / "Fake" / "pair.webm").write_bytes(videogen.clip(people=2, count=6, codec="libvpx-vp9", fmt="webm"))
    predictor = CheckpointPredictor(run, handler_options(model_config(tmp_path / "mc.yaml"), **TORCH_FP32), face_mode="auto")
    samples = labelled_samples(folder, MEDIA_SUFFIXES)
    evaluation = evaluate(predictor, samples, progress=False)
    assert evaluation.report["images"] == 4 and not evaluation.report["unreadable"]
    media = {s.path.name: s.prediction["media"] for s in evaluation.scored}
    assert media == {**{s.path.name: "image" for s in samples if s.path.suffix == ".jpg"}, "walk.mp4": "video", "pair.webm": "video"}
    output = tmp_path / "scores.csv"
    summary = score(predictor, image_files(folder, MEDIA_SUFFIXES), output, progress=False)
    assert (summary.scored, summary.failed) == (4, 0)
    with open(output, newline="") as handle:
        rows = {Path(row["path"]).name: row for row in csv.DictReader(handle)}
    assert rows["pair.webm"]["verdict"] in {"real", "fake"} and rows["walk.mp4"]["label"] in {"Real", "Fake"}
    assert labelled_samples(folder) == [s for s in samples if s.path.suffix == ".jpg"]  # training reads images only


def test_delivery_augmentation_is_on_by_default_and_visibly_applied():
    import torch
    from PIL import Image

    from deepfake_service.training.train import Augment, Chain, Delivery, augmentation

    settings = TrainSettings(data=Path("."), output=Path("."))
    assert settings.delivery_p > 0 and isinstance(augmentation(settings), Chain)
    assert isinstance(augmentation(TrainSettings(data=Path("."), output=Path("."), delivery_p=0)), Augment)
    torch.manual_seed(3)
    source = Image.fromarray(np.random.default_rng(3).integers(0, 256, (64, 80, 3), dtype=np.uint8))
    delivery, seen = Delivery(p=1.0, jpeg_quality=(30, 40)), set()
    for _ in range(40):
        delivered = delivery(source)
        assert (delivered.size, delivered.mode) == (source.size, "RGB") and delivery.steps
        assert np.abs(np.asarray(delivered, dtype=float) - np.asarray(source, dtype=float)).mean() > 1.0, delivery.steps
        seen.update(delivery.steps)
    assert seen == set(Delivery.STEPS)
    assert Delivery(p=0.0)(source) is source


def test_robustness_with_and_without_delivery_augmentation_on_a_set_where_delivery_matters(base, tmp_path):
    """A held-out set whose fake trace (a faint checkerboard) JPEG and rescaling wipe out; the same tiny
    model trained without and with delivery augmentation; each report has AUC, flips and threshold
    crossings per transform (the figures: docs/training.md)."""
    from deepfake_service.training.example_dataset import delivery_dataset
    from deepfake_service.training.robustness import robustness

    data = delivery_dataset(tmp_path / "data", {"Real": 40, "Fake": 40}, size=32, seed=8, amplitude=30)  # the tiny model sees 32 px
    reports = {}
    for name, delivery_p in (("without", 0.0), ("with", 0.8)):
        output = tmp_path / name
        train(settings(data, output, base, epochs=40.0, learning_rate=3e-3, delivery_p=delivery_p))
        held_out = read_split(output / "splits" / "test.csv")
        predictor = CheckpointPredictor(output, handler_options(**TORCH_FP32), face_mode="off")
        original = evaluate(predictor, held_out, progress=False)
        reports[name] = robustness(predictor, held_out, original, progress=False)
        assert json.loads((output / "training.json").read_text())["settings"]["delivery_p"] == delivery_p
    for report in reports.values():
        rows = {row["transform"]: row for row in report["transforms"]}
        assert set(rows) >= {"none", "jpeg q50", "half size and back"}
        for row in rows.values():
            assert row["images"] == 32 and {"roc_auc", "flipped", "crossed_fake", "changes"} <= set(row)
            assert 0 <= row["crossed_fake"] <= row["flipped"] <= 1
    print({name: {row["transform"]: (row["roc_auc"], row["flipped"], row["crossed_fake"]) for row in report["transforms"]}
           for name, report in reports.items()})


def test_the_consistency_check_answers_uncertain_when_a_re_encoded_copy_moves_the_verdict(run):
    """Blends of a reddish and a bluish image span the trained model's boundary; near it a JPEG q30 copy
    gets the other verdict: those are answered uncertain with the reason, the rest keep their verdict."""
    from PIL import Image

    from deepfake_service.samples import imagegen
    from handler.classifier import DeepfakeClassifier
    from handler.options import HandlerOptions

    checked = DeepfakeClassifier.from_checkpoint(run, HandlerOptions(face_mode="off", consistency_check=True, consistency_quality=30))
    plain = DeepfakeClassifier.from_checkpoint(run, HandlerOptions(face_mode="off"))
    rng = np.random.default_rng(4)
    noise = rng.integers(40, 216, (48, 48, 3)).astype(np.int16)
    red, blue = (np.clip(noise + tint, 0, 255) for tint in ([70, 0, -70], [-70, 0, 70]))
    blends = [Image.fromarray(np.clip((1 - a) * red + a * blue, 0, 255).astype(np.uint8)) for a in np.linspace(0, 1, 81)]
    payloads = [imagegen.encode(image, "PNG") for image in blends]
    answers, references = checked.predict_batch(payloads), plain.predict_batch(payloads)
    moved = [a for a in answers if not a["consistency"]["agrees"]]
    kept = [(a, r) for a, r in zip(answers, references) if a["consistency"]["agrees"]]
    assert moved and kept
    for answer in moved:
        assert answer["verdict"] == "uncertain" and "re-encoded (JPEG q30 at 32 px)" in answer["consistency"]["reason"]
    for answer, reference in kept:
        assert answer["verdict"] == reference["verdict"] == answer["consistency"]["verdict"] != "uncertain"
    for answer, reference in zip(answers, references):
        assert answer["probabilities"] == pytest.approx(reference["probabilities"], abs=1e-5)  # the original's scores
    assert "consistency" not in references[0] and {a["verdict"] for _, a in kept} == {"real", "fake"}
    moved_payload = payloads[answers.index(moved[0])]
    explained = checked.predict_batch([Request(moved_payload, explain=True)])[0]  # the page asks /explanations
    assert explained["verdict"] == "uncertain" and not explained["consistency"]["agrees"]
    assert len(explained["explanation"]["maps"]) == 1  # the original's attention only


def test_rollout_refuses_an_archive_whose_video_section_does_not_match_the_server(versioned_server, tiny_checkpoint, tmp_path):
    before = versions(versioned_server, "detector"), versions(versioned_server, "detector-video")
    config = model_config(tmp_path / "mc.yaml", handler=TORCH_FP32, video=None)
    with pytest.raises(RolloutError, match="no video: section"):
        deploy(versioned_server, "detector", checkpoint=tiny_checkpoint, model_config=config, version="9.0")
    assert (versions(versioned_server, "detector"), versions(versioned_server, "detector-video")) == before
