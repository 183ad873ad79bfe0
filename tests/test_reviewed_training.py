"""Labels teach the model: reviewed records' kept crops as a training and evaluation set (deepfake_service/records/
reviewed.py, deepfake_service/training/reviewed.py), read from SQLite and PostgreSQL, split leak-free by groups of
near-duplicates, and a tiny ViT fine-tuned on them moving toward the reviewers' labels on held-out records."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepfake_service.dataset import DatasetError, Sample, read_split, stratified_split
from deepfake_service.packaging.demo import write_random_checkpoint
from deepfake_service.project import handler_options
from deepfake_service.records import migrate
from deepfake_service.records.review import add_label
from deepfake_service.records.reviewed import NoRealFakeLabels, label_names, reviewed_set, utc_moment
from deepfake_service.training.checkpoint_predictor import CheckpointPredictor
from deepfake_service.training.evaluate import evaluate_reviewed
from deepfake_service.training.example_dataset import two_class_dataset
from deepfake_service.training.reviewed import near_duplicate_groups, write_crops
from deepfake_service.training.train import TrainSettings, train
from handler.analysis import Request
from handler.classifier import DeepfakeClassifier
from handler.fingerprint import MATCH_DISTANCE
from handler.options import HandlerOptions
from handler.store import PROBE, RecordSettings, connect
from tests.tiny import tiny_config

TRUTH = {"Real": "real", "Fake": "fake"}


def pictures(root: Path, counts: dict[str, int], seed: int) -> list[tuple[bytes, str]]:
    """Separable generated JPEGs (reddish Real, bluish Fake) and the reviewer's label of each."""
    two_class_dataset(root, counts, seed=seed)
    return [(path.read_bytes(), TRUTH[label]) for label in counts for path in sorted((root / label).glob("*.jpg"))]


def resaved(data: bytes, quality: int = 70) -> bytes:
    """The same picture re-encoded: other bytes, a PDQ hash a few bits away."""
    buffer = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def record(checkpoint: Path, url: str, uploads: list[bytes | Request], labels: list[str | None]) -> list[str]:
    """Records of ``uploads`` answered with the face stage off (each keeps its whole picture as its crop),
    labelled ``labels`` (None: left unlabelled); their ids."""
    classifier = DeepfakeClassifier.from_checkpoint(checkpoint, HandlerOptions(face_mode="off"), name="tiny", version="7",
                                                    records=RecordSettings(url=url, refresh_s=0))
    ids = [answer["record"]["id"] for answer in classifier.predict_batch(uploads)]
    engine = connect(url)
    for record_id, label in zip(ids, labels):
        if label is not None:
            add_label(engine, record_id, label, None, "tester")
    engine.dispose()
    return ids


def sqlite_store(folder: Path) -> str:
    url = f"sqlite:///{folder / 'records.sqlite3'}"
    migrate(url)
    return url


def test_only_records_labelled_real_or_fake_count_probes_left_out(store_url, two_label_checkpoint, tmp_path):
    (real, _), (fake, _), (other, _), (unsure, _), (relabelled, _) = pictures(tmp_path, {"Real": 3, "Fake": 2}, seed=4)
    probe = Request(resaved(real, 50), route=PROBE)
    ids = record(two_label_checkpoint, store_url, [real, fake, other, unsure, probe, relabelled], ["real", "fake", None, "unsure", "fake", "fake"])
    engine = connect(store_url)
    add_label(engine, ids[5], "unsure", "on second thought", "tester")  # the latest label counts
    engine.dispose()
    found = reviewed_set(store_url)
    assert sorted((r.id, r.label, r.media) for r in found.records) == sorted([(ids[0], "real", "image"), (ids[1], "fake", "image")])
    (crop,) = [data for record, _, data in found.kept_crops() if record.id == found.records[0].id]
    assert found.records[0].crops == 1 and Image.open(io.BytesIO(crop)).size == (32, 32)  # the tiny model's input size
    assert found.records[0].sha256 and len(found.records[0].pdq) == 32
    assert reviewed_set(store_url, since=utc_moment("2999-01-01")).records == [] and len(reviewed_set(store_url, since=utc_moment("2020-01-01")).records) == 2
    assert found.describe()["per_label"] == {"real": 1, "fake": 1}
    assert reviewed_set(store_url, model="another").records == [] and len(reviewed_set(store_url, version="7").records) == 2


def test_records_that_kept_no_crop_are_counted_as_skipped(store_url, two_label_checkpoint, tmp_path):
    (data, label), = pictures(tmp_path, {"Real": 1}, seed=6)
    classifier = DeepfakeClassifier.from_checkpoint(two_label_checkpoint, HandlerOptions(face_mode="off"),
                                                    records=RecordSettings(url=store_url, refresh_s=0, keep_media="none"))
    engine = connect(store_url)
    add_label(engine, classifier.predict_batch([data])[0]["record"]["id"], label, None, "tester")
    engine.dispose()
    found = reviewed_set(store_url)
    assert found.records == [] and found.skipped == {"without_crops": 1}


def test_the_crops_are_written_as_they_are_read_never_all_held_at_once(store_url, tmp_path):
    """40 records of 4 crops of 128 KiB (20 MiB in all): reading the set and writing its crops holds a chunk of
    them at a time, not the store's worth."""
    import datetime
    import os
    import tracemalloc
    import uuid

    from sqlalchemy import insert

    from handler.store import record_media, records

    engine = connect(store_url)
    crop_bytes, ids = 128 * 1024, [uuid.uuid4().hex for _ in range(40)]
    for record_id in ids:
        with engine.begin() as connection:
            connection.execute(insert(records), [{"id": record_id, "created_at": datetime.datetime.now(datetime.timezone.utc), "route": "predictions",
                                                  "media": "image", "model": "tiny", "version": "7", "verdict": "real", "status": 200}])
            connection.execute(insert(record_media), [{"record_id": record_id, "position": n, "kind": "crop", "width": 32, "height": 32,
                                                       "content_type": "image/jpeg", "data": os.urandom(crop_bytes)} for n in range(4)])
        add_label(engine, record_id, "fake", None, "tester")
    engine.dispose()
    tracemalloc.start()
    try:
        found = reviewed_set(store_url)
        samples, owners = write_crops(found, label_names(("Real", "Fake")), tmp_path / "crops")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (len(found.records), found.crops, len(samples), len(set(owners.values()))) == (40, 160, 160, 40)
    assert all(s.path.stat().st_size == crop_bytes for s in samples) and {s.label for s in samples} == {"Fake"}
    assert peak < 160 * crop_bytes / 2, f"peak {peak / 2**20:.1f} MiB while writing {160 * crop_bytes / 2**20:.0f} MiB of crops"


def test_a_store_that_cannot_be_read_is_named_without_its_password():
    from deepfake_service.ports import free_port
    from deepfake_service.records.review import ReviewError

    with pytest.raises(ReviewError, match=r"cannot read the record store postgresql\+psycopg://reviewer:\*\*\*@127\.0\.0\.1") as caught:
        reviewed_set(f"postgresql+psycopg://reviewer:s3cret@127.0.0.1:{free_port()}/records")
    assert "s3cret" not in str(caught.value)


def test_a_model_without_real_and_fake_labels_is_refused_by_name(tmp_path):
    assert label_names(("FAKE", "real")) == {"real": "real", "fake": "FAKE"}
    with pytest.raises(NoRealFakeLabels, match=r"\['synthetic', 'authentic', 'unsure'\] have no real and no fake label"):
        label_names(("synthetic", "authentic", "unsure"))
    base = write_random_checkpoint(tmp_path / "base", tiny_config(), seed=1, demo=True)  # tests/tiny.py's labels
    url = sqlite_store(tmp_path)
    with pytest.raises(DatasetError, match="have no real and no fake label"):
        train(TrainSettings(data=None, output=tmp_path / "run", base_model=str(base), records=url, progress=False, workers=0))


def test_near_duplicates_of_a_record_never_straddle_the_split(two_label_checkpoint, tmp_path):
    """Same bytes (SHA-256) and a re-saved copy (PDQ within the match distance) of one picture, as records and as a
    folder image, form one group; across seeds the group is always on one side."""
    folder = tmp_path / "folder"
    uploads = pictures(tmp_path / "records", {"Real": 10, "Fake": 10}, seed=7)
    shared, label = uploads[0]
    (folder / "Real").mkdir(parents=True)
    (folder / "Real" / "copy.jpg").write_bytes(resaved(shared, 80))  # the folder holds a re-saved copy
    two_class_dataset(folder, {"Real": 6, "Fake": 6}, seed=8)
    url = sqlite_store(tmp_path)
    pictures_and_labels = uploads + [(shared, label), (resaved(shared), label)]
    ids = record(two_label_checkpoint, url, [p for p, _ in pictures_and_labels], [x for _, x in pictures_and_labels])
    reviewed = reviewed_set(url)
    crops, owners = write_crops(reviewed, label_names(("Real", "Fake")), tmp_path / "crops")
    folder_samples = sorted(Sample(p.resolve(), p.parent.name) for p in folder.rglob("*.jpg"))
    groups = near_duplicate_groups(reviewed, owners, folder_samples, MATCH_DISTANCE, handler_options().limits)
    family = {path for path, owner in owners.items() if owner in (ids[0], ids[-2], ids[-1])} | {(folder / "Real" / "copy.jpg").resolve()}
    assert len({groups[path] for path in family}) == 1
    assert len(set(groups.values())) == len(groups) - len(family) + 1  # the unrelated pictures are alone
    for seed in range(8):
        train_part, test_part = stratified_split(crops + folder_samples, 0.4, seed, groups)
        sides = {bool({s.path for s in test_part} & {path}) for path in family}
        assert len(sides) == 1, f"seed {seed}: the near-duplicates straddle the split"
        assert not {s.path for s in train_part} & {s.path for s in test_part}


def test_a_folder_alone_splits_as_before_one_group_per_file():
    samples = [Sample(Path(f"/data/{label}/{i}.jpg"), label) for label, n in {"Real": 50, "Fake": 11}.items() for i in range(n)]
    singletons = {s.path: str(s.path) for s in samples}
    train_part, test_part = stratified_split(samples, 0.4, 0, singletons)
    assert (len(train_part), len(test_part)) == (36, 25) and sum(s.label == "Fake" for s in test_part) in (4, 5)
    with pytest.raises(DatasetError, match="at least two groups"):
        stratified_split(samples, 0.4, 0, {s.path: s.label if s.label == "Fake" else str(s.path) for s in samples})


def mean_p_true(evaluation) -> tuple[float, float]:
    """Mean P(reviewer's label) over the held-out records, and the accuracy."""
    p_true = evaluation.probabilities[np.arange(len(evaluation.truth)), evaluation.truth]
    return float(p_true.mean()), evaluation.report["accuracy"]


@pytest.fixture(scope="module")
def held_out(two_label_checkpoint, tmp_path_factory) -> str:
    """A store of 16 labelled records no training run reads."""
    folder = tmp_path_factory.mktemp("held-out")
    uploads = pictures(folder / "pictures", {"Real": 8, "Fake": 8}, seed=21)
    url = sqlite_store(folder)
    record(two_label_checkpoint, url, [p for p, _ in uploads], [label for _, label in uploads])
    return url


def fine_tune(base: Path, output: Path, data: Path | None, records: str, **overrides) -> dict:
    values = dict(data=data, output=output, base_model=str(base), records=records, epochs=10.0, batch_size=8, learning_rate=1e-3,
                  test_size=0.25, workers=0, save_steps=1000, progress=False)
    values.update(overrides)
    train(TrainSettings(**values))
    return json.loads((output / "training.json").read_text())


def test_labelled_records_alone_teach_the_model_their_labels(two_label_checkpoint, held_out, tmp_path):
    uploads = pictures(tmp_path / "pictures", {"Real": 14, "Fake": 14}, seed=11)
    url = sqlite_store(tmp_path)
    record(two_label_checkpoint, url, [p for p, _ in uploads], [label for _, label in uploads])
    run = tmp_path / "run"
    summary = fine_tune(two_label_checkpoint, run, None, url)
    assert summary["reviewed"]["records"] == summary["reviewed"]["crops"] == 28 and summary["reviewed"]["store"].startswith("sqlite:///")
    assert summary["splits"]["train"] + summary["splits"]["test"] == 28 and summary["settings"]["records"] == summary["reviewed"]["store"]
    assert {s.path.parent for s in read_split(run / "splits" / "train.csv")} == {(run / "reviewed").resolve()}
    held = reviewed_set(held_out)
    before = mean_p_true(evaluate_reviewed(CheckpointPredictor(two_label_checkpoint, handler_options(), "off"), held, progress=False))
    after_evaluation = evaluate_reviewed(CheckpointPredictor(run, handler_options(), "off"), held, progress=False)
    after = mean_p_true(after_evaluation)
    print(f"held-out records: mean P(true label) {before[0]:.3f} -> {after[0]:.3f}, accuracy {before[1]:.3f} -> {after[1]:.3f}")
    assert after[0] >= before[0] + 0.2, (before, after)
    assert after[1] >= before[1] and after[1] >= 0.85, (before, after)
    assert after_evaluation.report["reviewed"]["records"] == 16 and after_evaluation.report["images"] == 16


def test_records_beside_a_folder_train_together_and_a_shared_picture_stays_on_one_side(two_label_checkpoint, held_out, tmp_path):
    folder = two_class_dataset(tmp_path / "folder", {"Real": 10, "Fake": 6}, seed=12)
    shared = sorted((folder / "Fake").glob("*.jpg"))[0]
    uploads = pictures(tmp_path / "pictures", {"Real": 6, "Fake": 10}, seed=13) + [(shared.read_bytes(), "fake")]
    url = sqlite_store(tmp_path)
    ids = record(two_label_checkpoint, url, [p for p, _ in uploads], [label for _, label in uploads])
    run = tmp_path / "run"
    summary = fine_tune(two_label_checkpoint, run, folder, url, calibration_size=0.2)
    assert summary["reviewed"]["records"] == 17 and summary["splits"]["train"] + summary["splits"]["test"] + summary["splits"]["calibration"] == 33
    sides = {name: {s.path for s in read_split(run / "splits" / f"{name}.csv")} for name in ("train", "test", "calibration")}
    family = {shared.resolve(), (run / "reviewed" / f"{ids[-1]}_0.jpg").resolve()}
    assert [name for name, paths in sides.items() if paths & family] in (["train"], ["test"], ["calibration"])
    assert all(family <= paths for paths in sides.values() if paths & family)
    held = reviewed_set(held_out)
    before = mean_p_true(evaluate_reviewed(CheckpointPredictor(two_label_checkpoint, handler_options(), "off"), held, progress=False))
    after = mean_p_true(evaluate_reviewed(CheckpointPredictor(run, handler_options(), "off"), held, progress=False))
    print(f"held-out records (folder + records): mean P(true label) {before[0]:.3f} -> {after[0]:.3f}, accuracy {before[1]:.3f} -> {after[1]:.3f}")
    assert after[0] >= before[0] + 0.15 and after[1] >= before[1], (before, after)


def test_the_evaluate_command_reports_on_a_reviewed_set_one_row_per_record(two_label_checkpoint, held_out, tmp_path, capsys):
    from scripts.evaluate import main

    main(["--checkpoint", str(two_label_checkpoint), "--records", held_out, "--output", str(tmp_path), "--no-progress"])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["images"] == 16 and metrics["reviewed"]["records"] == 16 and metrics["reviewed"]["crops"] == 16
    rows = (tmp_path / "predictions.csv").read_text().splitlines()[1:]
    assert len(rows) == 16 and all(row.startswith("record/") for row in rows)
    assert "images 16" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--checkpoint", str(two_label_checkpoint), "--records", held_out, "--data", str(tmp_path), "--output", str(tmp_path)])


def test_the_evaluate_command_refuses_to_post_records_crops_to_a_server_that_would_record_them(tmp_path, capsys):
    from scripts.evaluate import main

    with pytest.raises(SystemExit) as stopped:
        main(["--endpoint", "http://127.0.0.1:9", "--records", sqlite_store(tmp_path), "--output", str(tmp_path / "eval")])
    assert stopped.value.code == 2 and "in-process only (--checkpoint)" in capsys.readouterr().err
    assert not (tmp_path / "eval").exists()
