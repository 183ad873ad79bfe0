"""Records through the real stack: the shared TorchServe writes to the session's record store
(tests/conftest.py: record_store), the upload page's review API and view read and label it."""

from __future__ import annotations

import time

import pytest
import requests
from PIL import Image
from skimage import data as photos
from sqlalchemy import func, select

from deepfake_service.records.review import add_label, get_record
from deepfake_service.samples import videogen
from deepfake_service.samples.imagegen import photo_jpeg
from deepfake_service.serving.properties import free_port
from deepfake_service.serving.rollout import smoke_image, smoke_test
from handler.clients import KEY_FILE as CLIENT_KEY_FILE
from handler.clients import PURPOSE_HEADER, probe_headers
from handler.store import PROBE, connect, now, records
from page.lifecycle import start_page, stop_page
from tests.servers import counted, metrics
from tests.tiny import SERVED_NAME, SERVED_VERSION

TIMEOUT = 120
REVIEWER_HEADER = "X-Forwarded-User"


def post(server, payload: bytes, model: str = SERVED_NAME, headers: dict | None = None) -> requests.Response:
    return requests.post(f"{server.inference_url}/predictions/{model}", data=payload,
                         headers={**server.headers(), **(headers or {})}, timeout=TIMEOUT)


def shrunk_copy(scale: float = 0.8, quality: int = 70) -> bytes:
    image = Image.fromarray(photos.astronaut())
    return photo_jpeg(image.resize((round(image.width * scale), round(image.height * scale))), quality)


def count(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(records)).scalar_one()


@pytest.fixture(scope="module")
def store(record_store):
    engine = connect(record_store)
    yield engine
    engine.dispose()


def test_a_served_answer_carries_its_record_and_the_store_holds_it(server, store):
    answer = post(server, photo_jpeg(photos.chelsea()))
    assert answer.status_code == 200, answer.text
    record = get_record(store, answer.json()["record"]["id"])
    assert (record["model"], record["version"], record["media"], record["status"]) == (SERVED_NAME, SERVED_VERSION, "image", 200)
    assert record["client"].startswith("key:") and record["route"] == "predictions"  # a fingerprint, never the key
    assert record["verdict"] == answer.json()["verdict"] and record["logits"] and record["pdq"]


def test_a_client_header_any_caller_sets_does_not_name_the_client(server, store):
    """Only the page's signed claim names a page user; a caller holding the inference key who sets the header
    is named by its key's fingerprint (handler/clients.py)."""
    forged = post(server, photo_jpeg(photos.chelsea()), headers={"X-Deepfake-Client": "page:someone-else"})
    assert forged.status_code == 200, forged.text
    assert get_record(store, forged.json()["record"]["id"])["client"].startswith("key:")


def test_a_served_4xx_names_its_record(server, store):
    answer = post(server, b"<html>not a picture</html>")
    assert answer.status_code == 415
    record = get_record(store, answer.json()["record"]["id"])
    assert (record["status"], record["error"], record["verdict"]) == (415, "not an image", None)


def test_a_video_on_its_own_workers_is_recorded_with_its_frame_hashes(server, store):
    answer = post(server, videogen.clip(people=1, count=6, fps=6, size=(160, 96)), model=f"{SERVED_NAME}-video")
    assert answer.status_code == 200, answer.text
    record = get_record(store, answer.json()["record"]["id"])
    assert record["media"] == "video" and len(record["frame_hashes"]) == answer.json()["frames_analyzed"]


def test_a_labelled_photo_sent_again_smaller_and_recompressed_comes_back_with_a_match(server, store):
    first = post(server, photo_jpeg(photos.astronaut())).json()
    add_label(store, first["record"]["id"], "fake", "known swap", "alice")
    deadline, answer = time.monotonic() + 60, {}
    while time.monotonic() < deadline:  # each worker reloads the labelled hashes within refresh_s (1 s here)
        answer = post(server, shrunk_copy()).json()
        if "match" in answer:
            break
        time.sleep(0.5)
    assert answer["match"]["record"] == first["record"]["id"] and answer["match"]["label"] == "fake", answer
    assert answer["match"]["distance"] <= 10 and answer["verdict"] in ("real", "fake", "uncertain")  # beside, never instead
    assert "match" not in post(server, photo_jpeg(photos.coffee())).json()
    lines = metrics(server, lambda lines: counted(lines, "Matches", 'Label="fake"') >= 1)
    assert counted(lines, "Matches", 'Label="fake"') >= 1, lines[-40:]


@pytest.fixture(scope="module")
def review_url(server):
    url = start_page(server, SERVED_NAME, free_port(), options=["--identity-header", REVIEWER_HEADER, "--reviewers", "reviewer-bo,reviewer-cy"])
    yield url
    stop_page(server.run_dir)


def listed(review_url: str, since) -> list[str]:
    """The ids /api/records lists from ``since`` on (as reviewer-bo)."""
    answer = requests.get(f"{review_url}api/records", params={"since": since.isoformat(), "limit": 200},
                          headers={REVIEWER_HEADER: "reviewer-bo"}, timeout=TIMEOUT)
    assert answer.status_code == 200, answer.text
    return [r["id"] for r in answer.json()["records"]]


def test_a_signed_probe_is_recorded_as_one_and_left_out_of_the_review_list(server, store, review_url):
    since = now()
    normal = post(server, photo_jpeg(photos.chelsea())).json()
    signed = probe_headers((server.run_dir / CLIENT_KEY_FILE).read_text().strip())
    probe = post(server, photo_jpeg(photos.chelsea()), headers=signed).json()
    unsigned = post(server, photo_jpeg(photos.chelsea()), headers={PURPOSE_HEADER: PROBE}).json()
    assert get_record(store, probe["record"]["id"])["route"] == PROBE  # kept: hidden from review, never from the store
    assert get_record(store, normal["record"]["id"])["route"] == "predictions"
    assert get_record(store, unsigned["record"]["id"])["route"] == "predictions"  # any caller can send the header
    shown = listed(review_url, since)
    assert {normal["record"]["id"], unsigned["record"]["id"]} <= set(shown) and probe["record"]["id"] not in shown


def test_the_pages_health_probe_and_rollouts_smoke_test_are_recorded_as_probes(server, store, review_url):
    since = now()
    info = requests.get(f"{review_url}api/info", headers={REVIEWER_HEADER: "reviewer-bo"}, timeout=TIMEOUT).json()
    assert info["available"], info  # this page's first /api/info: it asked the model
    smoke_test(server, SERVED_NAME, SERVED_VERSION, SERVED_VERSION, smoke_image())  # two predictions
    with store.connect() as connection:
        routes = connection.execute(select(records.c.id, records.c.route).where(records.c.created_at >= since)).all()
    assert [route for _, route in routes] == [PROBE] * 3, routes
    assert not set(listed(review_url, since)) & {record_id for record_id, _ in routes}


def test_the_review_api_lists_shows_and_labels_with_the_reviewers_identity(server, store, review_url):
    who = {REVIEWER_HEADER: "reviewer-bo"}
    uploaded = requests.post(f"{review_url}api/analyze", files={"image": ("r.jpg", photo_jpeg(photos.rocket()), "image/jpeg")},
                             headers={**who, "Origin": review_url.rstrip("/")}, timeout=TIMEOUT)
    assert uploaded.status_code == 200, uploaded.text
    record_id = uploaded.json()["record"]["id"]
    assert get_record(store, record_id)["client"] == "page:reviewer-bo"
    listed = requests.get(f"{review_url}api/records", params={"labelled": "false", "limit": 200}, headers=who, timeout=TIMEOUT).json()
    assert record_id in [r["id"] for r in listed["records"]]
    assert requests.get(f"{review_url}api/records", timeout=TIMEOUT).status_code == 401  # behind the page's access control
    uploader = {REVIEWER_HEADER: "uploader-dee"}  # may upload, may not read or label others' records
    assert requests.get(f"{review_url}api/records", headers=uploader, timeout=TIMEOUT).status_code == 403
    refused = requests.post(f"{review_url}api/records/{record_id}/label", json={"label": "real"}, timeout=TIMEOUT,
                            headers={**uploader, "Origin": review_url.rstrip("/")})
    assert refused.status_code == 403 and refused.json()["error"] == "not a reviewer"
    assert requests.get(f"{review_url}api/records", params={"verdict": "maybe"}, headers=who, timeout=TIMEOUT).status_code == 400
    url = f"{review_url}api/records/{record_id}/label"
    origin = {**who, "Origin": review_url.rstrip("/")}
    assert requests.post(url, json={"label": "perhaps"}, headers=origin, timeout=TIMEOUT).status_code == 400
    assert requests.post(url, json={"label": "real"}, headers={**who, "Origin": "https://elsewhere.example"}, timeout=TIMEOUT).status_code == 403
    assert requests.post(f"{review_url}api/records/{'f' * 32}/label", json={"label": "real"}, headers=origin, timeout=TIMEOUT).status_code == 404
    labelled = requests.post(url, json={"label": "real", "note": "a launch photo"}, headers=origin, timeout=TIMEOUT)
    assert labelled.status_code == 201 and labelled.json()["reviewer"] == "reviewer-bo"
    shown = requests.get(f"{review_url}api/records/{record_id}", headers=who, timeout=TIMEOUT).json()
    assert shown["label"] == "real" and shown["labels_history"][0]["note"] == "a launch photo"


def test_the_kept_thumbnail_and_crops_are_served_to_reviewers_only(server, review_url):
    who = {REVIEWER_HEADER: "reviewer-bo"}
    uploaded = requests.post(f"{review_url}api/analyze", files={"image": ("a.jpg", photo_jpeg(photos.astronaut()), "image/jpeg")},
                             data={"face_mode": "auto"}, headers={**who, "Origin": review_url.rstrip("/")}, timeout=TIMEOUT)
    assert uploaded.status_code == 200, uploaded.text
    record_id = uploaded.json()["record"]["id"]
    kept = requests.get(f"{review_url}api/records/{record_id}", headers=who, timeout=TIMEOUT).json()["kept_media"]
    assert [m["kind"] for m in kept] == ["thumbnail", "crop"]  # config/records.yaml: crops+thumbnail; the astronaut's one face
    url = f"{review_url}api/records/{record_id}/media/1"
    shown = requests.get(url, headers=who, timeout=TIMEOUT)
    assert shown.status_code == 200 and shown.headers["Content-Type"] == "image/jpeg" and "no-store" in shown.headers["Cache-Control"]
    assert Image.open(__import__("io").BytesIO(shown.content)).size == (kept[1]["width"], kept[1]["height"])
    assert requests.get(url, headers={REVIEWER_HEADER: "uploader-dee"}, timeout=TIMEOUT).status_code == 403
    assert requests.get(url, timeout=TIMEOUT).status_code == 401
    assert requests.get(f"{review_url}api/records/{record_id}/media/7", headers=who, timeout=TIMEOUT).status_code == 404


def test_a_reviewer_labels_an_uncertain_record_in_the_browser(browser, server, store, review_url):
    from sqlalchemy import update

    from handler.store import records

    answer = post(server, photo_jpeg(photos.camera()), headers={"X-Face-Mode": "auto"}).json()
    assert answer["face_search"]["smallest_face"] > 0
    with store.begin() as connection:  # the tiny model never says uncertain; the view must list such records first
        connection.execute(update(records).where(records.c.id == answer["record"]["id"]).values(verdict="uncertain"))
    context = browser.new_context(viewport={"width": 1100, "height": 900}, extra_http_headers={REVIEWER_HEADER: "reviewer-cy"})
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{review_url}review")
    page.select_option("#f-verdict", "uncertain")
    page.click("#filters button")
    row = page.locator(f"#rows tr[data-id='{answer['record']['id']}']")
    row.click()
    page.wait_for_selector("#detail:not([hidden])")
    assert answer["record"]["id"] in page.text_content("#d-id")
    search = answer["face_search"]  # the record keeps what the face search could see
    assert f"searched from {search['smallest_face']} px, {search['detector']}" in page.text_content("#d-summary")
    page.select_option("#l-label", "fake")
    page.fill("#l-note", "blending seam at the jaw")
    page.click("#label-form button")
    page.wait_for_selector("#d-history li")
    assert "reviewer-cy: fake (blending seam at the jaw)" in page.text_content("#d-history")
    context.close()
    assert not errors, errors
    assert get_record(store, answer["record"]["id"])["label"] == "fake"


@pytest.mark.served
def test_records_and_labels_survive_a_restart_and_a_labelled_photo_matches_at_once(tiny_checkpoint, tmp_path, monkeypatch):
    """stop, then start again with the same store (what make stop; make serve does): the records are
    there and the first answer after the start already carries the match (no refresh delay)."""
    from deepfake_service.packaging.archive import build_mar
    from deepfake_service.records import REFRESH_ENV, migrate
    from loadtest.harness import local_server, model_config

    url = f"sqlite:///{tmp_path / 'kept' / 'records.sqlite3'}"
    monkeypatch.setenv(REFRESH_ENV, "3600")  # only the load at start can bring the label in
    # Images only (no video section): one worker to start.
    config = model_config(tmp_path / "model-config.yaml", video=None, handler={"runtime": "torch", "precision": "fp32"})
    build_mar(tiny_checkpoint, "restarted", "1.0", model_config=config, export_dir=tmp_path / "store")
    models = ["restarted=restarted.mar"]
    with local_server(tmp_path / "first", tmp_path / "store", models, timeout=180, records_url=url) as server:
        first = post(server, photo_jpeg(photos.astronaut()), model="restarted").json()
    store = connect(url)
    add_label(store, first["record"]["id"], "fake", "before the restart", "alice")
    migrate(url)
    with local_server(tmp_path / "second", tmp_path / "store", models, timeout=180, records_url=url) as server:
        again = post(server, shrunk_copy(), model="restarted").json()
    assert get_record(store, first["record"]["id"])["labels_history"][0]["note"] == "before the restart"
    assert again["match"]["record"] == first["record"]["id"] and again["match"]["label"] == "fake"
    store.dispose()


@pytest.mark.served
def test_a_benchmark_server_keeps_its_records_in_its_own_store_never_in_the_served_one(tiny_checkpoint, tmp_path, monkeypatch):
    """make bench, bench-faces, bench-video and soak serve through loadtest/harness.py: the store make serve
    writes to (config/records.yaml's, here DEEPFAKE_RECORDS_URL's over it) gains no record from them."""
    from deepfake_service.records import URL_ENV, migrate
    from loadtest.harness import RECORDS_ENV, THROWAWAY_RECORDS, built_server, model_config

    served_url = f"sqlite:///{tmp_path / 'var' / 'records.sqlite3'}"
    migrate(served_url)
    monkeypatch.setenv(URL_ENV, served_url)
    monkeypatch.delenv(RECORDS_ENV)  # no opt-in, as in a user's shell
    served = connect(served_url)
    before = count(served)
    config = model_config(tmp_path / "model-config.yaml", video=None, handler={"runtime": "torch", "precision": "fp32"})
    with built_server(tmp_path / "bench", tiny_checkpoint, "benched", config=config, timeout=180) as server:
        answers = [post(server, photo_jpeg(picture), model="benched").json() for picture in (photos.chelsea(), photos.coffee())]
        own = connect(f"sqlite:///{server.run_dir / THROWAWAY_RECORDS}")
    assert count(served) == before
    assert [get_record(own, a["record"]["id"])["model"] for a in answers] == ["benched"] * 2  # kept, in the run's own store
    served.dispose()
    own.dispose()


def test_a_shared_page_token_never_reviews_and_without_access_control_the_local_user_does():
    from page.guard import Access

    assert "named reviewers" in Access(token="t" * 24).may_review("127.0.0.1")
    assert Access(identity_header="X-User", reviewers=frozenset({"ann"})).may_review("ann") is None
    assert "not a reviewer" in Access(identity_header="X-User", reviewers=frozenset({"ann"})).may_review("bo")
    assert Access().may_review("127.0.0.1") is None  # loopback without access control: make serve's own user


def uploaded_as(review_url: str, who: str, picture: bytes) -> str:
    """The record id of ``picture`` analysed through the page for ``who`` (client ``page:<who>``), faces searched."""
    answer = requests.post(f"{review_url}api/analyze", files={"image": ("p.jpg", picture, "image/jpeg")}, data={"face_mode": "auto"},
                           headers={REVIEWER_HEADER: who, "Origin": review_url.rstrip("/")}, timeout=TIMEOUT)
    assert answer.status_code == 200, answer.text
    return answer.json()["record"]["id"]


def shown_id(page) -> str:
    return page.text_content("#d-id")


def test_a_reviewer_works_the_queue_by_keyboard_across_pages_and_sees_the_pictures_counts_and_chart(browser, server, store, review_url):
    uploader = f"uploader-{__import__('uuid').uuid4().hex[:8]}"  # this test's records alone: the client filter
    camera, cat, face = (uploaded_as(review_url, uploader, photo_jpeg(p())) for p in (photos.camera, photos.chelsea, photos.astronaut))
    context = browser.new_context(viewport={"width": 1280, "height": 900}, extra_http_headers={REVIEWER_HEADER: "reviewer-cy"})
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{review_url}review?client=page:{uploader}&limit=2")
    page.wait_for_function("id => document.querySelector('#d-id').textContent === id", arg=face)  # newest first, opened at once
    assert page.text_content("#page-range") == "1\u20132 of 3" and page.locator("#rows tr").count() == 2
    loaded = "sel => [...document.querySelectorAll(sel)].length > 0 && [...document.querySelectorAll(sel)].every(i => i.complete && i.naturalWidth > 0)"
    page.wait_for_function(loaded, arg="#d-thumb")  # the pictures are really there
    page.wait_for_function(loaded, arg="#d-crops img")
    page.wait_for_function(loaded, arg=f"#rows tr[data-id='{face}'] img")
    assert "P(fake)" in page.text_content("#d-crops") and "box " in page.text_content("#d-crops")
    assert page.get_attribute(f"#rows tr[data-id='{face}'] time", "title").endswith("(UTC)")
    page.wait_for_function("() => document.querySelector('#c-today').textContent !== '-'")
    today = int(page.text_content("#c-today"))

    page.keyboard.press("f")
    page.wait_for_function("id => document.querySelector('#d-id').textContent === id", arg=cat)
    assert get_record(store, face)["label"] == "fake"
    page.locator("#l-note").press_sequentially("fur, a real cat")  # f, u and r typed into the note label nothing
    page.press("#l-note", "Escape")
    page.keyboard.press("r")
    page.wait_for_function("id => document.querySelector('#d-id').textContent === id", arg=camera)  # the next page
    assert get_record(store, face)["label"] == "fake"
    cat_labels = get_record(store, cat)["labels_history"]
    assert [(e["label"], e["note"], e["reviewer"]) for e in cat_labels] == [("real", "fur, a real cat", "reviewer-cy")]
    assert page.text_content("#page-range") == "1\u20131 of 1"  # the two labelled ones left the "not yet" queue
    page.wait_for_function("n => Number(document.querySelector('#c-today').textContent) >= n", arg=today + 2)

    page.select_option("#f-labelled", "")  # every record of this test: paging with the buttons
    page.click("#filters button")  # Show redraws the chart too, now with this test's labels
    page.wait_for_selector(f"#chart svg[data-measure='agreement'] polyline[data-version='{SERVED_NAME} {SERVED_VERSION}']", state="attached")
    page.wait_for_function("() => document.querySelector('#page-range').textContent === '1\u20132 of 3'")
    page.click("#next")
    page.wait_for_function("() => document.querySelector('#page-range').textContent === '3\u20133 of 3'")
    page.keyboard.press("k")
    page.wait_for_function("() => document.querySelector('#page-range').textContent === '1\u20132 of 3'")
    # the list is drawn before the last record on it opens (its detail is fetched after): wait for it to open
    page.wait_for_function("id => document.querySelector('#d-id').textContent === id", arg=cat)
    assert shown_id(page) == cat and "reviewer-cy: real (fur, a real cat)" in page.text_content("#d-history")
    context.close()
    assert not errors, errors


def test_the_review_api_pages_with_a_total_filters_by_client_and_version_and_counts_the_queue(server, review_url):
    who = {REVIEWER_HEADER: "reviewer-bo"}
    uploader = f"uploader-{__import__('uuid').uuid4().hex[:8]}"
    ids = [uploaded_as(review_url, uploader, photo_jpeg(p())) for p in (photos.coffee, photos.rocket)]

    def get(path: str, **params) -> requests.Response:
        return requests.get(f"{review_url}api/records{path}", params=params, headers=who, timeout=TIMEOUT)

    page = get("", client=f"page:{uploader}", version=SERVED_VERSION, limit=1).json()
    assert page["total"] == 2 and [r["id"] for r in page["records"]] == ids[1:]
    assert get("", client="page:", limit=200).json()["total"] >= 2
    assert get("", client=f"page:{uploader}", version="no-such-version").json() == {"records": [], "total": 0}
    day_start = now().replace(hour=0, minute=0, second=0, microsecond=0).isoformat()  # one day for both: midnight may pass between
    before = get("/counts", day_start=day_start).json()
    requests.post(f"{review_url}api/records/{ids[0]}/label", json={"label": "fake"}, timeout=TIMEOUT,
                  headers={**who, "Origin": review_url.rstrip("/")}).raise_for_status()
    after = get("/counts", day_start=day_start).json()
    assert after["to_review"] == before["to_review"] - 1 and after["labelled_today"] >= before["labelled_today"] + 1
    assert set(after["agreement"]) == {"compared", "agreed", "share", "uncertain"}
    series = get("/agreement").json()
    assert series["bucket"] == "day" and any(r["version"] == SERVED_VERSION and r["labelled_fake"] >= 1 for r in series["series"])
    for path, params in [("", {"client": "x" * 201}), ("/counts", {"day_start": "yesterday"}), ("/agreement", {"bucket": "hour"})]:
        refused = get(path, **params)
        assert refused.status_code == 400 and refused.json()["error"] == "bad filter", refused.text
    assert requests.get(f"{review_url}api/records/counts", headers={REVIEWER_HEADER: "uploader-dee"}, timeout=TIMEOUT).status_code == 403
