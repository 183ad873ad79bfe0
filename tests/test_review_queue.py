"""The review queue's queries (deepfake_service/records/review.py), against SQLite and PostgreSQL: filters by
model, version and client with a total for paging, the counts at the top of the page, and the model's agreement
with the reviewers per version over time; probes never counted; the review API in-process, and the review page in
a browser on a SQLite store (no TorchServe)."""

from __future__ import annotations

import datetime
import uuid

import pytest
from sqlalchemy import insert, update

from deepfake_service.records.review import Filters, add_label, agreement_over_time, count_records, list_records, queue_counts
from handler.store import PROBE, connect, labels, records

NOON = datetime.datetime(2026, 12, 3, 12, 0, tzinfo=datetime.timezone.utc)


def add(engine, verdict: str | None = "real", at: datetime.datetime = NOON, version: str = "1.0", client: str = "key:ab12",
        model: str = "tiny", route: str = "predictions") -> str:
    record_id = uuid.uuid4().hex
    with engine.begin() as connection:
        connection.execute(insert(records), [{"id": record_id, "created_at": at, "client": client, "route": route, "media": "image",
                                              "model": model, "version": version, "verdict": verdict, "status": 200 if verdict else 415}])
    return record_id


def labelled_at(engine, record_id: str, label: str, at: datetime.datetime) -> None:
    add_label(engine, record_id, label, None, "alice")
    with engine.begin() as connection:
        connection.execute(update(labels).where(labels.c.record_id == record_id).values(created_at=at))


@pytest.fixture
def engine(store_url):
    engine = connect(store_url)
    yield engine
    engine.dispose()


def test_the_list_filters_by_model_version_and_client_exactly_or_by_a_prefix_ending_in_a_colon(engine):
    old = add(engine, version="1.0", client="page:ann")
    new = add(engine, version="2.0", client="page:bo")
    keyed = add(engine, version="2.0", client="key:ab12", model="other")
    add(engine, version="2.0", client="page:bo", route=PROBE)
    listed = lambda **given: {r["id"] for r in list_records(engine, Filters(**given))}  # noqa: E731
    assert listed(version="2.0") == {new, keyed}
    assert listed(model="other") == {keyed}
    assert listed(client="page:") == {old, new}
    assert listed(client="page:bo") == {new}
    assert listed(client="page") == set()  # no colon: exact
    assert listed(client="%:") == set()  # a prefix, never a pattern


def test_the_total_counts_every_page_of_the_same_filters(engine):
    ids = [add(engine, at=NOON + datetime.timedelta(minutes=i)) for i in range(5)]
    add(engine, route=PROBE)
    labelled_at(engine, ids[0], "fake", NOON)
    pages = [list_records(engine, Filters(limit=2, offset=offset)) for offset in (0, 2, 4)]
    assert [len(page) for page in pages] == [2, 2, 1]
    assert {r["id"] for page in pages for r in page} == set(ids)
    assert count_records(engine) == 5 and count_records(engine, Filters(limit=2)) == 5
    assert count_records(engine, Filters(labelled=False)) == 4 and count_records(engine, Filters(version="9")) == 0


def test_the_counts_give_the_queue_todays_labels_and_the_agreement_with_uncertain_apart(engine):
    agreed, wrong, unsure_verdict, _unlabelled, unsure_label = (add(engine, v) for v in ("fake", "fake", "uncertain", "real", "real"))
    probe = add(engine, "fake", route=PROBE)
    labelled_at(engine, agreed, "fake", NOON - datetime.timedelta(days=1))
    labelled_at(engine, wrong, "real", NOON)
    labelled_at(engine, unsure_verdict, "fake", NOON + datetime.timedelta(hours=1))
    labelled_at(engine, unsure_label, "unsure", NOON)
    labelled_at(engine, probe, "fake", NOON)
    counts = queue_counts(engine, NOON + datetime.timedelta(hours=2))
    assert counts["to_review"] == 1 and counts["labelled_today"] == 3  # wrong, unsure_verdict, unsure_label; the probe never
    assert counts["agreement"] == {"compared": 2, "agreed": 1, "share": 0.5, "uncertain": 1}
    evening = NOON + datetime.timedelta(hours=11)  # a reviewer's local day that began at 23:00 UTC
    assert queue_counts(engine, evening, day_start=evening)["labelled_today"] == 0


def test_the_counts_of_an_empty_store_have_no_agreement_share(engine):
    assert queue_counts(engine, NOON) == {"to_review": 0, "labelled_today": 0, "day_start": "2026-12-03T00:00:00+00:00",
                                          "agreement": {"compared": 0, "agreed": 0, "share": None, "uncertain": 0}}


def test_agreement_over_time_counts_per_version_and_day_false_positives_and_missed_fakes(engine):
    day2 = NOON + datetime.timedelta(days=1)
    for verdict, label, at, version in [("fake", "fake", NOON, "1.0"), ("fake", "real", NOON, "1.0"), ("real", "fake", NOON, "1.0"),
                                        ("uncertain", "real", NOON, "1.0"), ("real", "real", day2, "1.0"), ("real", "real", NOON, "2.0"),
                                        ("real", "unsure", NOON, "2.0")]:
        labelled_at(engine, add(engine, verdict, at=at, version=version), label, at)
    labelled_at(engine, add(engine, "fake", route=PROBE), "real", NOON)
    add(engine, "fake")  # unlabelled
    rows = agreement_over_time(engine)
    assert [(r["version"], r["day"]) for r in rows] == [("1.0", "2026-12-03"), ("2.0", "2026-12-03"), ("1.0", "2026-12-04")]
    assert rows[0] == {"model": "tiny", "version": "1.0", "day": "2026-12-03", "reviewed": 4, "labelled_real": 2, "labelled_fake": 2,
                       "agreed": 1, "false_positives": 1, "missed_fakes": 1, "uncertain": 1}
    assert (rows[1]["reviewed"], rows[1]["agreed"]) == (1, 1) and (rows[2]["reviewed"], rows[2]["agreed"]) == (1, 1)
    weekly = agreement_over_time(engine, bucket="week")  # 2026-12-03 is a Thursday
    assert [(r["version"], r["day"], r["reviewed"]) for r in weekly] == [("1.0", "2026-11-30", 5), ("2.0", "2026-11-30", 1)]
    with pytest.raises(ValueError, match="bucket must be one of day, week"):
        agreement_over_time(engine, bucket="hour")


def test_the_records_report_draws_agreement_per_version_over_time(engine, store_url, tmp_path, capsys):
    import json

    import numpy as np
    from PIL import Image

    from scripts.records import main as records_command

    for day, version, verdict, label in [(0, "1.0", "fake", "real"), (0, "1.0", "real", "real"), (1, "1.0", "fake", "fake"),
                                         (1, "2.0", "real", "fake"), (2, "2.0", "real", "real")]:
        record = add(engine, verdict, at=NOON + datetime.timedelta(days=day), version=version)
        labelled_at(engine, record, label, NOON + datetime.timedelta(days=day))
    picture = tmp_path / "agreement.png"
    records_command(["--url", store_url, "report", "--fake-label", "Fake", "--png", str(picture)])
    printed = json.loads(capsys.readouterr().out)
    assert [(r["version"], r["day"], r["reviewed"], r["agreed"], r["false_positives"], r["missed_fakes"]) for r in printed["over_time"]] == [
        ("1.0", "2026-12-03", 2, 1, 1, 0), ("1.0", "2026-12-04", 1, 1, 0, 0), ("2.0", "2026-12-04", 1, 0, 0, 1),
        ("2.0", "2026-12-05", 1, 1, 0, 0)]
    drawn = np.asarray(Image.open(picture).convert("RGB"))
    assert drawn.shape == (400, 1300, 3) and len(np.unique(drawn.reshape(-1, 3), axis=0)) > 50  # panels with lines, not a blank page


def test_the_agreement_over_time_reads_only_records_of_its_window(engine):
    old, recent = NOON - datetime.timedelta(days=100), NOON - datetime.timedelta(days=2)
    for at in (old, recent):
        labelled_at(engine, add(engine, "fake", at=at), "fake", at)
    assert [r["day"] for r in agreement_over_time(engine)] == [old.date().isoformat(), recent.date().isoformat()]  # all by default
    assert [r["day"] for r in agreement_over_time(engine, "day", since=NOON - datetime.timedelta(days=90))] == [recent.date().isoformat()]


@pytest.fixture
def api(engine, tmp_path):
    """The page's review API in-process on the store (no TorchServe: these routes never call it)."""
    from page.server import create_app

    return create_app("http://127.0.0.1:9", "tiny", tmp_path / "key_file.json", 1024, records=engine).test_client()


def test_the_agreement_api_draws_the_last_90_days_unless_asked_for_another_window(engine, api):
    from handler.store import now

    for days in (100, 2):
        at = now() - datetime.timedelta(days=days)
        labelled_at(engine, add(engine, "fake", at=at), "fake", at)
    reviewed = lambda **params: sum(r["reviewed"] for r in api.get("/api/records/agreement", query_string=params).json["series"])  # noqa: E731
    assert (reviewed(), reviewed(days=365), reviewed(since="2000-01-01"), reviewed(days=1)) == (1, 2, 2, 0)
    for params in ({"days": "0"}, {"days": "ninety"}, {"days": "36501"}, {"days": "9", "since": "2026-01-01"}, {"since": "soon"}):
        refused = api.get("/api/records/agreement", query_string=params)
        assert refused.status_code == 400 and refused.json["error"] == "bad filter", (params, refused.json)


def test_a_day_start_or_time_at_the_ends_of_the_calendar_is_a_bad_filter_not_a_500(api):
    for path, params in [("/api/records/counts", {"day_start": "9999-12-31T23:00"}), ("/api/records", {"since": "0001-01-01T00:00+01:00"}),
                         ("/api/records/counts", {"day_start": "9999-12-31T23:59:59-01:00"})]:
        refused = api.get(path, query_string=params)
        assert refused.status_code == 400 and refused.json["error"] == "bad filter", (params, refused.json)
    assert api.get("/api/records/counts", query_string={"day_start": "9999-12-30T00:00"}).status_code == 200


def test_a_media_position_beyond_any_kept_is_404_before_the_store_sees_it(engine, api):
    from deepfake_service.records.review import NoSuchMedia, media_file

    record_id = add(engine)
    for position in (10_001, 2**63, 10**30):  # SQLite overflows on an integer beyond 64 bits, PostgreSQL on one beyond 32
        answer = api.get(f"/api/records/{record_id}/media/{position}")
        assert answer.status_code == 404 and answer.json["error"] == "no such media", answer.json
    with pytest.raises(NoSuchMedia):
        media_file(engine, record_id, -1)


@pytest.fixture
def review_page(tmp_path):
    """/review on a SQLite store holding one unlabelled record answered real, served in a thread (no TorchServe):
    the page's address and the store."""
    import threading

    from werkzeug.serving import make_server

    from deepfake_service.ports import free_port
    from deepfake_service.records import migrate
    from page.server import create_app

    url = f"sqlite:///{tmp_path / 'records.sqlite3'}"
    migrate(url)
    engine = connect(url)
    add(engine, "real", at=datetime.datetime.now(datetime.timezone.utc))
    served = make_server("127.0.0.1", free_port(), create_app("http://127.0.0.1:9", "tiny", tmp_path / "key_file.json", 1024,
                                                              records=engine), threaded=True)
    thread = threading.Thread(target=served.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{served.server_port}/review", engine
    served.shutdown()
    thread.join()
    engine.dispose()


def test_an_empty_list_leaves_no_record_to_label_and_any_labelled_survives_a_reload(browser, review_page):
    from deepfake_service.records.review import get_record

    address, engine = review_page
    (record_id,) = (r["id"] for r in list_records(engine))
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors, labels_sent = [], []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("request", lambda request: labels_sent.append(request.url) if request.method == "POST" else None)
    page.goto(address)
    page.wait_for_function("id => document.querySelector('#d-id').textContent === id", arg=record_id)  # opened at once
    page.select_option("#f-verdict", "fake")  # no record answered fake
    page.click("#filters button")
    page.wait_for_selector("#empty:not([hidden])")
    assert page.is_hidden("#detail")
    page.keyboard.press("r")
    page.wait_for_timeout(500)
    assert labels_sent == [] and get_record(engine, record_id)["label"] is None  # the record left the list: not labelled

    page.select_option("#f-verdict", "")
    page.select_option("#f-labelled", "")  # any
    page.click("#filters button")
    page.wait_for_selector(f"#rows tr[data-id='{record_id}']")
    assert "labelled=" in page.url
    page.reload()
    page.wait_for_selector(f"#rows tr[data-id='{record_id}']")
    assert page.eval_on_selector("#f-labelled", "select => select.value") == ""  # still any, not back to "not yet"
    context.close()
    assert not errors, errors
