"""What a record keeps of its media (handler/kept_media.py), against SQLite and PostgreSQL: the crops as the model
received them and a thumbnail per ``keep_media``, nothing for ``none``, probes or errors, a video's deciding frames,
and every file gone with its record by delete and purge."""

from __future__ import annotations

import datetime
import io

import numpy as np
import pytest
from PIL import Image
from skimage import data as photos
from sqlalchemy import func, select, update

from deepfake_service.records import read_settings
from deepfake_service.records.review import NoSuchMedia, delete_records, get_record, list_records, media_file
from deepfake_service.samples import videogen
from deepfake_service.samples.imagegen import photo_jpeg
from handler.analysis import Request
from handler.classifier import DeepfakeClassifier
from handler.kept_media import THUMBNAIL_SIDE
from handler.options import HandlerOptions
from handler.store import PROBE, RecordSettings, connect, purge_older_than, record_media, records
from tests.photos import astronaut


def recording(checkpoint, url: str, face_mode: str = "auto", **settings) -> DeepfakeClassifier:
    return DeepfakeClassifier.from_checkpoint(checkpoint, HandlerOptions(face_mode=face_mode), name="tiny", version="7",
                                              records=RecordSettings(url=url, refresh_s=0, **settings))


def kept_count(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(record_media)).scalar_one()


def picture(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def test_a_record_keeps_each_face_as_the_model_received_it_and_a_thumbnail(store_url, two_label_checkpoint):
    classifier = recording(two_label_checkpoint, store_url)
    analysis = classifier.analyse([astronaut()])[0]
    answer = classifier.predict_batch([astronaut()])[0]
    engine = connect(store_url)
    record = get_record(engine, analysis.record.id)
    kinds = [m["kind"] for m in record["kept_media"]]
    assert kinds == ["thumbnail"] + ["crop"] * len(answer["faces"]) and answer["faces"]
    thumbnail = picture(media_file(engine, analysis.record.id, 0)[0])
    assert max(thumbnail.size) == THUMBNAIL_SIDE and abs(thumbnail.width / thumbnail.height - 1.0) < 0.02  # the astronaut is square
    crop_info = record["kept_media"][1]
    data, content_type = media_file(engine, analysis.record.id, 1)
    side = classifier.processor.size["height"]  # the tiny model's input (a ViT-B/16's: 224)
    assert content_type == "image/jpeg" and picture(data).size == (side, side) == (crop_info["width"], crop_info["height"])
    face = answer["faces"][0]
    assert crop_info["box"] == face["box"] and crop_info["subject"] == 0 and crop_info["time"] is None
    assert crop_info["verdict"] == face["verdict"] and crop_info["p_fake"] == pytest.approx(face["probabilities"]["Fake"], abs=1e-4)
    # what the model received: the processor's resize of the cut crop (JPEG-compressed, so within a few levels)
    seen = np.asarray(analysis.subjects.crops[0].convert("RGB").resize((side, side), Image.Resampling.BILINEAR), dtype=float)
    assert np.abs(np.asarray(picture(data), dtype=float) - seen).mean() < 4.0
    model_input = classifier.records.shape.picture(analysis.inputs[0])  # what the JPEG was made from: the model's pixels
    assert np.abs(np.asarray(model_input, dtype=float) - seen).max() <= 1.0
    listed = {r["id"]: r for r in list_records(engine)}
    assert listed[analysis.record.id]["thumbnail"] == 0
    with pytest.raises(NoSuchMedia):
        media_file(engine, analysis.record.id, 99)
    engine.dispose()


def test_the_whole_picture_is_the_crop_when_no_face_is_classified(store_url, two_label_checkpoint):
    engine = connect(store_url)
    answer = recording(two_label_checkpoint, store_url, face_mode="off").predict_batch([photo_jpeg(photos.coffee())])[0]
    kept = get_record(engine, answer["record"]["id"])["kept_media"]
    assert [(m["kind"], m["box"], m["subject"]) for m in kept] == [("thumbnail", None, None), ("crop", None, None)]
    assert kept[1]["p_fake"] == pytest.approx(answer["probabilities"]["Fake"], abs=1e-4)
    engine.dispose()


@pytest.mark.parametrize("keep, kinds", [("none", []), ("crops", ["crop"]), ("crops+thumbnail", ["thumbnail", "crop"])])
def test_keep_media_keeps_what_it_names_and_none_keeps_nothing(keep, kinds, tmp_path, two_label_checkpoint):
    from deepfake_service.records import migrate

    url = f"sqlite:///{tmp_path / 'r.sqlite3'}"
    migrate(url)
    answer = recording(two_label_checkpoint, url, face_mode="off", keep_media=keep).predict_batch([photo_jpeg(photos.chelsea())])[0]
    engine = connect(url)
    assert answer["record"]["kept"]
    assert [m["kind"] for m in get_record(engine, answer["record"]["id"])["kept_media"]] == kinds
    assert kept_count(engine) == len(kinds)
    engine.dispose()


def test_probes_and_refused_requests_keep_no_media(store_url, two_label_checkpoint):
    analyses = recording(two_label_checkpoint, store_url).analyse([Request(astronaut(), route=PROBE), b"not an image"])
    engine = connect(store_url)
    assert all(a.record.kept for a in analyses) and analyses[1].error is not None and kept_count(engine) == 0
    engine.dispose()


def test_a_video_keeps_each_persons_deciding_frames_with_their_times(tmp_path, two_label_checkpoint):
    from deepfake_service.records import migrate

    url = f"sqlite:///{tmp_path / 'r.sqlite3'}"
    migrate(url)
    classifier = recording(two_label_checkpoint, url)
    answer = classifier.predict_batch([videogen.clip(people=1, count=8, fps=8)])[0]
    side = classifier.processor.size["height"]
    engine = connect(url)
    kept = get_record(engine, answer["record"]["id"])["kept_media"]
    crops = [m for m in kept if m["kind"] == "crop"]
    assert kept[0]["kind"] == "thumbnail" and max(kept[0]["width"], kept[0]["height"]) <= THUMBNAIL_SIDE
    assert answer["people"] and 1 <= len(crops) <= 3 and {m["subject"] for m in crops} == {0}
    assert all(m["time"] is not None and 0 <= m["time"] <= 1.0 and m["box"] for m in crops)
    assert all(picture(media_file(engine, answer["record"]["id"], m["position"])[0]).size == (side, side) for m in crops)
    engine.dispose()


def test_kept_media_goes_with_its_record_by_delete_and_by_purge(store_url, two_label_checkpoint):
    answers = recording(two_label_checkpoint, store_url, face_mode="off").predict_batch(
        [astronaut(), photo_jpeg(photos.coffee()), photo_jpeg(photos.chelsea())])
    ids = [a["record"]["id"] for a in answers]
    engine = connect(store_url)
    assert kept_count(engine) == 6
    assert delete_records(engine, ids=[ids[0]]) == 1 and kept_count(engine) == 4
    with engine.begin() as connection:
        old = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=40)
        connection.execute(update(records).where(records.c.id == ids[1]).values(created_at=old))
    assert purge_older_than(engine, 30) == 1 and kept_count(engine) == 2
    with engine.connect() as connection:
        assert set(connection.execute(select(record_media.c.record_id)).scalars()) == {ids[2]}
    engine.dispose()


def test_an_unknown_keep_media_is_refused_by_name(tmp_path):
    config = tmp_path / "records.yaml"
    config.write_text("url: off\nkeep_media: everything\n")
    with pytest.raises(ValueError, match="keep_media must be one of none, crops, crops\\+thumbnail"):
        read_settings(config, environ={})


def test_a_picture_that_cannot_be_kept_costs_only_its_own_media(tmp_path, two_label_checkpoint, monkeypatch):
    import handler.recorder as recorder_module
    from deepfake_service.records import migrate

    url = f"sqlite:///{tmp_path / 'r.sqlite3'}"
    migrate(url)
    made = recorder_module.media_rows

    def odd_one_fails(analysis, record_id, *args):
        if analysis.request.client == "odd":
            raise ValueError("an odd picture")
        return made(analysis, record_id, *args)

    monkeypatch.setattr(recorder_module, "media_rows", odd_one_fails)
    classifier = recording(two_label_checkpoint, url, face_mode="off")
    analyses = classifier.analyse([Request(astronaut(), client="a"), Request(photo_jpeg(photos.coffee()), client="odd"),
                                   Request(photo_jpeg(photos.chelsea()), client="b")])
    engine = connect(url)
    assert all(a.record.kept for a in analyses)
    assert [len(get_record(engine, a.record.id)["kept_media"]) for a in analyses] == [2, 0, 2]
    with engine.begin() as connection:  # a store that refuses the pictures still keeps the records
        connection.exec_driver_sql("DROP TABLE record_media")
    later = classifier.analyse([astronaut()])[0]
    assert later.record.kept and get_record_row(engine, later.record.id)
    engine.dispose()


def get_record_row(engine, record_id: str) -> bool:
    with engine.connect() as connection:
        return connection.execute(select(records.c.id).where(records.c.id == record_id)).first() is not None


def test_a_deleted_records_pictures_are_overwritten_in_the_sqlite_file(tmp_path, two_label_checkpoint):
    from deepfake_service.records import migrate

    path = tmp_path / "r.sqlite3"
    migrate(f"sqlite:///{path}")
    answer = recording(two_label_checkpoint, f"sqlite:///{path}", face_mode="off").predict_batch([astronaut()])[0]
    engine = connect(f"sqlite:///{path}")
    data, _ = media_file(engine, answer["record"]["id"], 0)
    piece = data[len(data) // 2 : len(data) // 2 + 64]  # from inside the JPEG's entropy-coded data

    def on_disk() -> bytes:
        with engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        return b"".join(p.read_bytes() for p in tmp_path.glob("r.sqlite3*"))

    assert piece in on_disk()
    assert delete_records(engine, ids=[answer["record"]["id"]]) == 1
    assert piece not in on_disk()  # secure_delete: not left in free pages
    engine.dispose()
    # The check sees bytes a delete leaves behind: the same file, a picture deleted with secure_delete off.
    # (Debian's SQLite defaults it on; connect sets it for builds that do not.)
    import sqlite3

    plain = sqlite3.connect(path)
    plain.execute("PRAGMA secure_delete=OFF")
    plain.execute("INSERT INTO record_media (record_id, position, kind, width, height, content_type, data) VALUES ('r', 0, 'crop', 1, 1, 'x', ?)", (data,))
    plain.commit()
    plain.execute("DELETE FROM record_media")
    plain.commit()
    plain.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    plain.close()
    assert piece in b"".join(p.read_bytes() for p in tmp_path.glob("r.sqlite3*"))


def test_a_purge_deletes_in_batches_until_none_is_left(tmp_path, two_label_checkpoint, monkeypatch):
    import handler.store as store_module
    from deepfake_service.records import migrate

    url = f"sqlite:///{tmp_path / 'r.sqlite3'}"
    migrate(url)
    answers = recording(two_label_checkpoint, url, face_mode="off").predict_batch([astronaut(), astronaut(0.5), astronaut(0.7)])
    engine = connect(url)
    with engine.begin() as connection:
        old = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=40)
        connection.execute(update(records).where(records.c.id.in_([a["record"]["id"] for a in answers])).values(created_at=old))
    monkeypatch.setattr(store_module, "PURGE_BATCH", 2)
    assert purge_older_than(engine, 30) == 3 and kept_count(engine) == 0
    engine.dispose()


def test_a_crop_of_a_model_without_the_fake_label_keeps_no_p_fake(tmp_path, tiny_checkpoint):
    from deepfake_service.records import migrate

    url = f"sqlite:///{tmp_path / 'r.sqlite3'}"
    migrate(url)
    answer = recording(tiny_checkpoint, url, face_mode="off").predict_batch([astronaut()])[0]
    engine = connect(url)
    crop = get_record(engine, answer["record"]["id"])["kept_media"][1]
    assert crop["kind"] == "crop" and crop["verdict"] == answer["verdict"] and crop["p_fake"] is None  # never a made-up 0
    engine.dispose()
