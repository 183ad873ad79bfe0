"""Several replicas on one PostgreSQL record store: concurrent starts migrate it once, a label given through
one replica's review API is matched by another, both replicas' records are in one review list, and a purge
run by one leaves the other's recent records alone."""

from __future__ import annotations

import threading

import pytest

from deepfake_service.records import migrate, schema_revision
from deepfake_service.records.postgres import postgres

pytestmark = pytest.mark.database


@pytest.fixture(scope="module")
def shared_url():
    with postgres() as url:
        yield url


def test_replicas_starting_at_once_migrate_the_shared_store_one_after_the_other(shared_url):
    from deepfake_service.records import shared_store
    from handler.store import RecordSettings, connect

    engine = connect(shared_url)
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE IF EXISTS labels, record_media, records, alembic_version")
    engine.dispose()
    gate, failures = threading.Barrier(4), []

    def start() -> None:
        gate.wait(timeout=60)
        try:
            migrate(shared_url)
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            failures.append(repr(exc))

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    assert schema_revision(shared_url) is not None
    assert shared_store(RecordSettings(url=shared_url)).url == shared_url  # --shared-records accepts it, migrated


def shrunk_astronaut(scale: float = 0.8, quality: int = 70) -> bytes:
    from PIL import Image
    from skimage import data as photos

    from deepfake_service.samples.imagegen import photo_jpeg

    image = Image.fromarray(photos.astronaut())
    return photo_jpeg(image.resize((round(image.width * scale), round(image.height * scale))), quality)


@pytest.mark.served
def test_a_label_given_on_one_replica_is_matched_by_the_other_and_a_purge_spares_recent_records(
        shared_url, tiny_checkpoint, tmp_path, monkeypatch):
    """Two TorchServes ("replicas", their own processes and ports) on one PostgreSQL, the review page beside
    the first: its reviewer labels what the first answered, the second matches a re-encoded copy within the
    refresh delay (1 s in the tests), one review list holds both replicas' records, and a purge run from one
    removes only what is past retention."""
    import datetime
    import time

    import requests
    from skimage import data as photos
    from sqlalchemy import update

    from deepfake_service.packaging.archive import build_mar
    from deepfake_service.records import URL_ENV
    from deepfake_service.records.review import NoSuchRecord, get_record
    from deepfake_service.samples.imagegen import photo_jpeg
    from deepfake_service.serving.properties import free_port
    from handler.store import connect, purge_older_than, records
    from loadtest.harness import local_server, model_config
    from page.lifecycle import start_page, stop_page

    migrate(shared_url)
    config = model_config(tmp_path / "model-config.yaml", video=None, handler={"runtime": "torch", "precision": "fp32"})
    build_mar(tiny_checkpoint, "replicated", "1.0", model_config=config, export_dir=tmp_path / "store")
    models, who = ["replicated=replicated.mar"], {"X-Forwarded-User": "reviewer-ann"}

    def post(server, payload: bytes) -> dict:
        answer = requests.post(f"{server.inference_url}/predictions/replicated", data=payload, headers=server.headers(), timeout=120)
        assert answer.status_code == 200, answer.text
        return answer.json()

    with (local_server(tmp_path / "a", tmp_path / "store", models, timeout=180, records_url=shared_url) as first,
          local_server(tmp_path / "b", tmp_path / "store", models, timeout=180, records_url=shared_url) as second):
        monkeypatch.setenv(URL_ENV, shared_url)  # the page reads the same store
        page = start_page(first, "replicated", free_port(), options=["--identity-header", "X-Forwarded-User", "--reviewers", "reviewer-ann"])
        try:
            seen = post(first, photo_jpeg(photos.astronaut()))["record"]
            labelled = requests.post(f"{page}api/records/{seen['id']}/label", json={"label": "fake", "note": "known swap"},
                                     headers={**who, "Origin": page.rstrip("/")}, timeout=60)
            assert labelled.status_code == 201, labelled.text
            deadline, again = time.monotonic() + 60, {}
            while time.monotonic() < deadline and "match" not in again:  # the other replica's refresh brings the label
                again = post(second, shrunk_astronaut())
                time.sleep(0.5)
            print("the second replica matched:", again["match"] if "match" in again else again)
            assert again.get("match", {}).get("record") == seen["id"] and again["match"]["label"] == "fake", again
            listed = requests.get(f"{page}api/records", params={"limit": 200}, headers=who, timeout=60).json()["records"]
            assert {seen["id"], again["record"]["id"]} <= {r["id"] for r in listed}  # one review list, both replicas
            old = post(second, photo_jpeg(photos.coffee()))["record"]
            engine = connect(shared_url)
            with engine.begin() as connection:
                connection.execute(update(records).where(records.c.id == old["id"])
                                   .values(created_at=datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=400)))
            assert purge_older_than(engine, 365) == 1  # as either replica's start or hourly purge runs it
            with pytest.raises(NoSuchRecord):
                get_record(engine, old["id"])
            assert get_record(engine, seen["id"])["label"] == "fake" and get_record(engine, again["record"]["id"]) is not None
            engine.dispose()
            assert post(second, shrunk_astronaut())["match"]["record"] == seen["id"]  # the other replica goes on
            assert post(first, photo_jpeg(photos.chelsea()))["record"]["kept"] is True
        finally:
            stop_page(first.run_dir)
