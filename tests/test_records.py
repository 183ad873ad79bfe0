"""The record store (handler/store.py, handler/recorder.py, deepfake_service/records/): against SQLite and a real PostgreSQL
the suite starts. Migrations from empty, a record per answer with its fields, labels, "seen before"
matches, two writers at once, a store that is down, purge and delete, calibration from labelled records."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as photos
from sqlalchemy import func, inspect, select, update

from deepfake_service.packaging.demo import write_random_checkpoint
from deepfake_service.records import migrate, read_settings, schema_revision
from deepfake_service.records.review import (
    Filters,
    ReviewError,
    add_label,
    classified_as,
    delete_records,
    get_record,
    labelled_set,
    list_records,
)
from deepfake_service.samples import videogen
from deepfake_service.samples.imagegen import photo_jpeg
from deepfake_service.training.operating_point import calibrate_from_records
from handler.analysis import Request
from handler.answers import answer
from handler.classifier import DeepfakeClassifier
from handler.errors import ClientError
from handler.fingerprint import HashIndex, Labelled, distance, fingerprint
from handler.options import HandlerOptions
from handler.recorder import Recorder
from handler.store import PROBE, RecordSettings, connect, purge_older_than, records
from tests.photos import astronaut
from tests.tiny import tiny_config

ROOT = Path(__file__).resolve().parent.parent


def recording(checkpoint: Path, url: str, **settings) -> DeepfakeClassifier:
    return DeepfakeClassifier.from_checkpoint(checkpoint, HandlerOptions(face_mode="off"), name="tiny", version="7",
                                              records=RecordSettings(url=url, refresh_s=0, **settings))


def test_pdq_survives_a_smaller_recompressed_copy_and_tells_unrelated_photos_apart():
    original = fingerprint(Image.fromarray(photos.astronaut()))
    copy = fingerprint(Image.open(__import__("io").BytesIO(astronaut(0.8, 70))).convert("RGB"))
    unrelated = fingerprint(Image.fromarray(photos.coffee()))
    assert original.quality >= 50
    assert distance(original.hash, copy.hash) <= 10
    assert distance(original.hash, unrelated.hash) >= 80


def test_the_index_returns_the_nearest_labelled_hash_within_the_distance_only():
    rng = np.random.default_rng(0)
    hashes = [rng.integers(0, 256, 32, dtype=np.uint8).tobytes() for _ in range(1000)]
    index = HashIndex([Labelled(f"r{i}", "fake", "t", h) for i, h in enumerate(hashes)])
    near = bytearray(hashes[417])
    near[0] ^= 0b111  # 3 bits away
    entry, bits = index.nearest(bytes(near), 31)
    assert (entry.record, bits) == ("r417", 3)
    assert index.nearest(rng.integers(0, 256, 32, dtype=np.uint8).tobytes(), 31) is None  # random: ~128 bits away
    assert HashIndex().nearest(hashes[0]) is None


def test_migrations_build_the_schema_from_empty_and_are_idempotent(store_url):
    assert schema_revision(store_url) == "0003"
    migrate(store_url)
    engine = connect(store_url)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {"records", "labels", "record_media", "alembic_version"} <= tables


def test_a_store_from_before_face_search_is_upgraded_keeping_its_records(store_url):
    engine = connect(store_url)
    with engine.begin() as connection:  # back to the first schema, with one record in it
        for table in ("labels", "record_media", "records", "alembic_version"):
            connection.exec_driver_sql(f"DROP TABLE {table}")
    engine.dispose()
    migrate(store_url, to="0001")
    engine = connect(store_url)
    with engine.begin() as connection:
        connection.exec_driver_sql("INSERT INTO records (id, created_at, status, verdict) VALUES ('before', CURRENT_TIMESTAMP, 200, 'real')")
    engine.dispose()
    migrate(store_url)
    assert schema_revision(store_url) == "0003"
    engine = connect(store_url)
    kept = get_record(engine, "before")
    engine.dispose()
    assert (kept["verdict"], kept["face_search"], kept["kept_media"]) == ("real", None, [])


def test_each_answer_writes_one_record_with_its_fields(store_url, two_label_checkpoint):
    classifier = recording(two_label_checkpoint, store_url)
    good, bad = astronaut(), b"not an image at all"
    analyses = classifier.analyse([Request(good, client="page:alice"), Request(bad, client="key:abc", route="v2"),
                                   Request(good, face_mode="auto")])
    answers = [answer(a, classifier.answers) for a in analyses]
    assert answers[0]["record"]["kept"] and isinstance(analyses[1].error, ClientError)
    assert answers[1]["record"]["kept"]  # a 4xx answer names its record too
    engine = connect(store_url)
    kept = get_record(engine, answers[0]["record"]["id"])
    refused = get_record(engine, answers[1]["record"]["id"])
    import hashlib

    assert kept["sha256"] == hashlib.sha256(good).hexdigest() and kept["size_bytes"] == len(good)
    assert (kept["client"], kept["route"], kept["media"], kept["status"]) == ("page:alice", "predictions", "image", 200)
    assert (kept["model"], kept["version"], kept["demo"], kept["runtime"], kept["precision"]) == ("tiny", "7", False, "torch", "fp32")
    assert len(kept["weights_sha256"]) == 64 and len(kept["pdq"]) == 64 and kept["pdq_quality"] >= 50
    assert kept["verdict"] == answers[0]["verdict"] and kept["p_fake"] == pytest.approx(answers[0]["probabilities"]["Fake"])
    assert kept["labels"] == ["Real", "Fake"] and len(kept["logits"]) == 2
    probabilities = np.exp(kept["logits"]) / np.exp(kept["logits"]).sum()
    assert probabilities[1] == pytest.approx(answers[0]["probabilities"]["Fake"], abs=1e-5)  # uncalibrated: softmax of the logits
    assert kept["decision"] == answers[0]["decision"] and kept["subjects"] == 0  # face mode off: the whole image
    assert kept["provenance"]["declared_ai"] is None and kept["error"] is None
    assert kept["face_search"] is None  # face mode off: nothing was searched
    searched = get_record(engine, answers[2]["record"]["id"])
    assert searched["face_search"] == answers[2]["face_search"] == {"detector": "haar", "smallest_face": 35}
    assert (refused["status"], refused["error"], refused["client"], refused["route"]) == (415, "not an image", "key:abc", "v2")
    assert refused["verdict"] is None and refused["sha256"] == hashlib.sha256(bad).hexdigest()
    engine.dispose()


def test_a_video_record_keeps_the_hash_of_every_sampled_frame(tmp_path, two_label_checkpoint):
    url = f"sqlite:///{tmp_path / 'r.sqlite3'}"
    migrate(url)
    answer = recording(two_label_checkpoint, url).predict_batch([videogen.clip(people=1, count=8, fps=8, size=(160, 96))])[0]
    record = get_record(connect(url), answer["record"]["id"])
    assert record["media"] == "video" and record["pdq"] is None
    assert len(record["frame_hashes"]) == answer["frames_analyzed"] and record["logits"] is None


def test_a_reencoded_resized_copy_matches_the_latest_label_and_an_unrelated_photo_does_not(store_url, two_label_checkpoint):
    classifier = recording(two_label_checkpoint, store_url)
    first = classifier.predict_batch([astronaut()])[0]
    assert "match" not in first
    engine = connect(store_url)
    add_label(engine, first["record"]["id"], "fake", "known face swap", "alice")
    copy, unrelated = classifier.predict_batch([astronaut(0.8, 70), photo_jpeg(photos.coffee())])
    assert copy["match"]["record"] == first["record"]["id"] and copy["match"]["label"] == "fake"
    assert copy["match"]["distance"] <= 10 and copy["match"]["labelled_at"]
    assert "match" not in unrelated
    assert get_record(engine, copy["record"]["id"])["match"]["record"] == first["record"]["id"]  # the record keeps the match
    add_label(engine, first["record"]["id"], "real", "the original, not a swap", "bob")  # the latest label counts
    assert classifier.predict_batch([astronaut(0.8, 70)])[0]["match"]["label"] == "real"
    add_label(engine, first["record"]["id"], "unsure", None, "carol")  # unsure is no judgement to repeat
    assert "match" not in classifier.predict_batch([astronaut(0.8, 70)])[0]
    history = get_record(engine, first["record"]["id"])["labels_history"]
    assert [(h["label"], h["reviewer"]) for h in history] == [("fake", "alice"), ("real", "bob"), ("unsure", "carol")]
    engine.dispose()


def test_labels_are_checked_and_the_list_filters_and_puts_uncertain_first(store_url, two_label_checkpoint):
    classifier = recording(two_label_checkpoint, store_url)
    ids = [a["record"]["id"] for a in classifier.predict_batch([astronaut(), astronaut(0.5), photo_jpeg(photos.coffee())])]
    engine = connect(store_url)
    with engine.begin() as connection:
        connection.execute(update(records).where(records.c.id == ids[2]).values(verdict="uncertain"))
    with pytest.raises(ReviewError, match="label must be one of"):
        add_label(engine, ids[0], "maybe", None, "alice")
    with pytest.raises(ReviewError, match="no record"):
        add_label(engine, "0" * 32, "fake", None, "alice")
    add_label(engine, ids[0], "fake", None, "alice")
    assert list_records(engine)[0]["id"] == ids[2]
    assert [r["id"] for r in list_records(engine, Filters(verdict="uncertain"))] == [ids[2]]
    assert {r["id"] for r in list_records(engine, Filters(labelled=False))} == {ids[1], ids[2]}
    labelled = list_records(engine, Filters(labelled=True))
    assert [(r["id"], r["label"], r["reviewer"]) for r in labelled] == [(ids[0], "fake", "alice")]
    assert list_records(engine, Filters(since=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1))) == []
    engine.dispose()


def test_a_probe_is_kept_and_read_by_id_but_never_listed_for_review_nor_calibrated_on(store_url, two_label_checkpoint):
    answers = recording(two_label_checkpoint, store_url).predict_batch([astronaut(), Request(astronaut(0.5), route=PROBE)])
    normal, probe = (a["record"]["id"] for a in answers)
    engine = connect(store_url)
    for record_id in (normal, probe):
        add_label(engine, record_id, "fake", None, "alice")
    assert get_record(engine, probe)["route"] == PROBE
    assert [r["id"] for r in list_records(engine)] == [normal]
    assert labelled_set(engine, "Fake").ids == [normal]
    engine.dispose()


WRITER = textwrap.dedent("""
    import sys
    from handler.recorder import Recorder, new_id
    from handler.store import RecordSettings, now
    url, name = sys.argv[1], sys.argv[2]
    recorder = Recorder(RecordSettings(url=url), {"name": name})
    for batch in range(40):
        rows = [{"id": new_id(), "created_at": now(), "client": name, "route": "predictions", "status": 200} for _ in range(4)]
        receipts = recorder.keep(rows)
        assert all(r.kept for r in receipts), receipts
    print("ok")
""")


def test_two_workers_writing_at_once_lose_no_record(store_url):
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, store_url, f"worker-{i}"], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for i in range(2)]
    outcomes = [writer.communicate(timeout=240) for writer in writers]
    assert [w.returncode for w in writers] == [0, 0], outcomes
    engine = connect(store_url)
    with engine.connect() as connection:
        counts = dict(connection.execute(select(records.c.client, func.count()).group_by(records.c.client)).all())
    engine.dispose()
    assert counts == {"worker-0": 160, "worker-1": 160}


@pytest.mark.parametrize("url", ["postgresql+psycopg://nobody@127.0.0.1:{port}/none", "sqlite:///{tmp}/missing/folder/r.sqlite3"])
def test_a_store_that_is_down_never_fails_an_analysis(url, tmp_path, two_label_checkpoint):
    from deepfake_service.serving.properties import free_port

    classifier = recording(two_label_checkpoint, url.format(port=free_port(), tmp=tmp_path))
    answers = [answer(a, classifier.answers) for a in classifier.analyse([astronaut(), b"junk"])]
    assert answers[0]["verdict"] in ("real", "fake", "uncertain")
    assert answers[0]["record"] == {"id": None, "kept": False, "detail": answers[0]["record"]["detail"]}
    assert "record store unavailable" in answers[0]["record"]["detail"]
    assert answers[1]["record"]["kept"] is False
    # Not retried on every batch: the second batch gets the same answer without waiting on the store again.
    assert classifier.predict_batch([astronaut()])[0]["record"]["kept"] is False


def test_purge_removes_old_records_with_their_labels_and_delete_goes_by_id_or_sha256(store_url, two_label_checkpoint):
    classifier = recording(two_label_checkpoint, store_url)
    answers = classifier.predict_batch([astronaut(), astronaut(0.5), photo_jpeg(photos.coffee()), photo_jpeg(photos.chelsea())])
    ids = [a["record"]["id"] for a in answers]
    engine = connect(store_url)
    add_label(engine, ids[0], "fake", None, "alice")
    with engine.begin() as connection:
        old = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=40)
        connection.execute(update(records).where(records.c.id.in_(ids[:2])).values(created_at=old))
    assert purge_older_than(engine, 0) == 0  # 0: kept forever
    assert purge_older_than(engine, 30) == 2
    assert {r["id"] for r in list_records(engine)} == set(ids[2:])
    sha = get_record(engine, ids[3])["sha256"]
    assert delete_records(engine, ids=[ids[2]]) == 1 and delete_records(engine, sha256=[sha.upper()]) == 1
    assert list_records(engine) == []
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(records)).scalar() == 0
    engine.dispose()


def test_calibration_from_labelled_records_uses_their_logits_and_reports_agreement(tmp_path, two_label_checkpoint):
    url = f"sqlite:///{tmp_path / 'r.sqlite3'}"
    migrate(url)
    classifier = recording(two_label_checkpoint, url)
    pictures = [photos.astronaut(), photos.coffee(), photos.chelsea(), photos.rocket(), photos.camera()]
    payloads = [photo_jpeg(np.asarray(Image.fromarray(p).convert("RGB").rotate(angle)), 85) for p in pictures for angle in (0, 7, 15, 30)]
    answers = classifier.predict_batch(payloads)
    engine = connect(url)
    fake_scores = sorted(a["probabilities"]["Fake"] for a in answers)
    cut = fake_scores[len(fake_scores) // 2]
    for a in answers:  # reviewers call the upper half fake: calibration can separate them
        add_label(engine, a["record"]["id"], "fake" if a["probabilities"]["Fake"] >= cut else "real", None, "alice")
    labelled = labelled_set(engine, "Fake", model="tiny", version="7")
    assert len(labelled.ids) == 20 and labelled.labels == ("Real", "Fake")
    decision, described = calibrate_from_records(labelled, "Fake", target_fpr=0.1, uncertain_fpr=0.2)
    assert decision["achieved"]["fake"]["fpr"] <= 0.1 and decision["achieved"]["fake"]["tpr"] == 1.0
    review = described["review"]
    assert (review["labelled_records"], review["reviewed_real"], review["reviewed_fake"]) == (20, 10, 10)
    served_fake_on_real = sum(a["verdict"] == "fake" for a in answers if a["probabilities"]["Fake"] < cut)
    assert review["false_positive_rate_on_reviewed_real"] == pytest.approx(served_fake_on_real / 10)
    # The command: the records of this checkpoint's weights, decision.json beside a copy of the checkpoint.
    import shutil

    from scripts.calibrate import main as calibrate_command

    copy = shutil.copytree(two_label_checkpoint, tmp_path / "recalibrated")
    # Answered in face mode off: whole images, which the shipped config's auto would not have classified
    # for the photos with a face; the command takes the served mode unless told.
    with pytest.raises(SystemExit, match="what face mode auto classifies [(]20 labelled records classified another kind"):
        calibrate_command(["--checkpoint", str(copy), "--records", url])
    calibrate_command(["--checkpoint", str(copy), "--records", url, "--face-mode", "off", "--target-fpr", "0.1", "--uncertain-fpr", "0.2"])
    written = json.loads((copy / "decision.json").read_text())
    assert written["thresholds"] == decision["thresholds"] and written["calibration_set"]["review"] == review
    assert written["face_mode"] == "off" and decision["face_mode"] is None  # labelled_set without a face mode: not sorted
    recalibrated = DeepfakeClassifier.from_checkpoint(copy, HandlerOptions(face_mode="off"))
    assert recalibrated.decision.calibrated and recalibrated.decision.fake_threshold == decision["thresholds"]["fake"]
    assert recalibrated.decision.face_mode == "off"
    other = write_random_checkpoint(tmp_path / "other", tiny_config(id2label={0: "Real", 1: "Fake"}), seed=9, demo=False)
    with pytest.raises(SystemExit, match="no image record"):  # other weights: none of these records are theirs
        calibrate_command(["--checkpoint", str(other), "--records", url])
    with pytest.raises(ReviewError, match="different labels|not one of"):
        labelled_set(engine, "Synthetic")
    engine.dispose()


@pytest.mark.parametrize(
    ("face_mode", "faces", "searched", "taken"),
    [("auto", 1, True, True), ("auto", 0, True, True), ("auto", 1, False, True), ("auto", 0, False, False),
     ("faces", 1, True, True), ("faces", 0, True, False), ("faces", 0, False, False),
     ("off", 0, False, True), ("off", 0, True, True), ("off", 1, True, False), (None, 1, False, True)],
)
def test_a_record_is_taken_for_a_face_mode_when_its_subject_is_what_that_mode_classifies(face_mode, faces, searched, taken):
    assert classified_as(face_mode, faces, searched) is taken


def test_calibration_from_records_takes_only_the_subjects_of_its_face_mode(tmp_path, two_label_checkpoint):
    url = f"sqlite:///{tmp_path / 'r.sqlite3'}"
    migrate(url)
    classifier = recording(two_label_checkpoint, url)  # its own face mode: off
    face, no_face = astronaut(), photo_jpeg(photos.coffee(), 90)
    answers = classifier.predict_batch([Request(face, "auto"), Request(no_face, "auto"), face, no_face])
    assert [(a["mode"], a["analyzed"]) for a in answers] == [("auto", "faces"), ("auto", "image"), ("off", "image"), ("off", "image")]
    engine = connect(url)
    for a in answers:
        add_label(engine, a["record"]["id"], "real", None, "alice")
    ids = [a["record"]["id"] for a in answers]
    taken = {mode: labelled_set(engine, "Fake", face_mode=mode) for mode in ("auto", "faces", "off", None)}
    assert {mode: set(found.ids) for mode, found in taken.items()} == {
        "auto": {ids[0], ids[1]}, "faces": {ids[0]}, "off": {ids[1], ids[2], ids[3]}, None: set(ids)}
    assert taken["faces"].skipped == {"without_logits": 0, "other_subject": 3} and taken["faces"].face_mode == "faces"
    engine.dispose()


def test_records_and_labels_survive_a_restart_of_whoever_reads_them(tmp_path, two_label_checkpoint):
    url = f"sqlite:///{tmp_path / 'r.sqlite3'}"
    migrate(url)
    answer = recording(two_label_checkpoint, url).predict_batch([astronaut()])[0]
    add_label(connect(url), answer["record"]["id"], "fake", "keep me", "alice")
    migrate(url)  # what every start does
    shown = subprocess.run([sys.executable, "-m", "scripts.records", "--url", url, "show", answer["record"]["id"]], cwd=ROOT,
                           capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(shown.stdout)["labels_history"][0]["note"] == "keep me"


def test_the_default_store_lives_outside_the_folder_stop_clears(monkeypatch):
    from deepfake_service.project import RUN_DIR

    settings = read_settings(environ={})
    path = Path(settings.url.removeprefix("sqlite:///"))
    assert settings.url.startswith("sqlite:///") and path.is_absolute()
    assert RUN_DIR not in path.parents and settings.refresh_s > 0
    assert read_settings(environ={"DEEPFAKE_RECORDS_URL": "off"}).enabled is False


def test_the_shipped_records_yaml_states_the_settings_defaults():
    """config/records.yaml writes out every setting; past the url, its values are RecordSettings' defaults, so the
    file and a library user's store behave alike."""
    import yaml

    from deepfake_service.project import RECORDS_CONFIG

    shipped = yaml.safe_load(RECORDS_CONFIG.read_text())
    defaults = RecordSettings()
    assert set(shipped) == {"url", "match_distance", "refresh_s", "retention_days", "client_header", "keep_media"}
    assert {key: shipped[key] for key in ("match_distance", "refresh_s", "retention_days", "client_header", "keep_media")} == {
        "match_distance": defaults.match_distance, "refresh_s": defaults.refresh_s, "retention_days": defaults.retention_days,
        "client_header": defaults.client_header, "keep_media": defaults.keep_media}


def test_a_nested_records_section_is_refused_not_read_as_records_off(tmp_path):
    config = tmp_path / "records.yaml"
    config.write_text("records:\n  url: sqlite:///var/r.sqlite3\n")
    with pytest.raises(ValueError, match="unknown record store setting.*records.*the file is flat"):
        read_settings(config, environ={})


def test_a_recorder_without_labels_matches_nothing(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.sqlite3'}"
    migrate(url)
    recorder = Recorder(RecordSettings(url=url, refresh_s=0), {"name": "m"})
    recorder.refresh(force=True)
    assert len(recorder.index) == 0 and recorder.match(fingerprint(Image.fromarray(photos.astronaut()))) is None


def test_the_background_refresh_brings_new_labels_and_a_full_reload_drops_deleted_records(tmp_path, two_label_checkpoint):
    import time

    import handler.recorder as records_module

    url = f"sqlite:///{tmp_path / 'r.sqlite3'}"
    migrate(url)
    classifier = DeepfakeClassifier.from_checkpoint(two_label_checkpoint, HandlerOptions(face_mode="off"),
                                                    records=RecordSettings(url=url, refresh_s=0.2))
    first = classifier.predict_batch([astronaut()])[0]  # the first batch loads the (empty) labelled hashes
    engine = connect(url)
    add_label(engine, first["record"]["id"], "fake", None, "alice")
    deadline, found = time.monotonic() + 30, None
    while time.monotonic() < deadline and found is None:  # no batch needed: the refresh runs on its own thread
        found = classifier.records.match(fingerprint(Image.fromarray(photos.astronaut())))
        time.sleep(0.1)
    assert found is not None and found.record == first["record"]["id"]
    delete_records(engine, ids=[first["record"]["id"]])
    deadline = time.monotonic() + 30 + records_module.FULL_RELOAD_EVERY * 0.2
    while time.monotonic() < deadline and found is not None:
        found = classifier.records.match(fingerprint(Image.fromarray(photos.astronaut())))
        time.sleep(0.1)
    assert found is None  # a deleted record stops matching at the next full reload
    engine.dispose()
