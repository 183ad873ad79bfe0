"""The upload page in a real browser (Debian's Chromium via Playwright) against the real stack on loopback,
and the page server's bounds without a browser."""

from __future__ import annotations

import io
import json
import re

import pytest
import requests
from PIL import Image
from skimage import data as photos

from deepfake_service.samples.imagegen import photo_jpeg as jpeg
from deepfake_service.serving.properties import free_port
from page.lifecycle import start_page, stop_page
from tests.browser import analyze, shot, upload
from tests.tiny import SERVED_NAME

PHONE = {"width": 375, "height": 740}


@pytest.fixture(scope="module")
def page_url(server):
    url = start_page(server, SERVED_NAME, free_port())
    yield url
    stop_page(server.run_dir)


@pytest.fixture
def page(browser, page_url):
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(30_000)
    errors = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    opened.goto(page_url)
    yield opened
    context.close()
    assert not errors, f"JavaScript errors: {errors}"


def test_upload_and_analyze_shows_verdict_probabilities_and_heatmap(page):
    upload(page, "coffee.jpg", jpeg(Image.fromarray(photos.coffee())))
    assert page.is_visible("#preview")
    analyze(page)
    # The tiny model has no "Fake" label and no decision.json: uncalibrated, the verdict is "Real".
    assert page.is_visible("#verdict") and page.inner_text("#verdict") == "Real"
    assert "Uncalibrated model" in page.inner_text("#decision-note")
    assert page.locator("#probabilities li").count() == 3
    assert re.search(r"^No face of at least \d+ px found", page.inner_text("#analyzed-note"))
    assert page.is_visible("#heatmap") and page.get_attribute("#heatmap", "src").startswith("data:image/png;base64,")
    # The bar's width is set two animation frames after the answer is shown: wait for it, not for a while.
    page.wait_for_selector("#confidence-bar[style*='%']", state="attached")
    width = page.evaluate("document.querySelector('#confidence-bar').style.width")
    assert width.endswith("%") and float(width[:-1]) > 30
    page.wait_for_timeout(1200)  # only for the screenshot: the bar's 1 s transition has finished
    assert page.is_hidden("#demo-banner")
    shot(page, "verdict_whole_image")
    page.uncheck("#heatmap-toggle")
    assert page.is_hidden("#heatmap")


def test_a_photo_with_a_face_shows_its_box_and_per_face_verdict(page):
    upload(page, "astronaut.jpg", jpeg(Image.fromarray(photos.astronaut())))
    analyze(page)
    assert page.locator(".face-box").count() == 1
    assert page.locator("#faces li").count() == 1
    assert "1 face found" in page.inner_text("#analyzed-note")
    # the astronaut's ~95-px face with its margin: a square crop of well under 224 px, which the model enlarged
    seen = re.search(r"from a (\d+)×\1 px crop \(enlarged (\d\.\d)×\)", page.inner_text("#faces li"))
    assert seen and 110 <= int(seen[1]) <= 200 and abs(float(seen[2]) - 224 / int(seen[1])) <= 0.051, page.inner_text("#faces li")
    box = page.locator(".face-box").bounding_box()
    image = page.locator("#preview").bounding_box()
    # The astronaut's face is at x 177..272 of 512: the drawn box sits there on the displayed image.
    assert abs((box["x"] - image["x"]) / image["width"] - 177 / 512) < 0.05
    shot(page, "verdict_one_face")


@pytest.fixture(scope="module")
def three_answers(tiny_checkpoint, tmp_path_factory) -> dict[str, dict]:
    """Answers of the core for one photo under three decision.json files whose thresholds put its score in
    each state: verdict -> answer (the served round trip of decisions is in test_training.py)."""
    import shutil

    from handler.classifier import DeepfakeClassifier
    from handler.decision import DECISION_FILE
    from handler.options import HandlerOptions

    photo = jpeg(Image.fromarray(photos.astronaut()))
    options = HandlerOptions(fake_label="synthetic", face_mode="auto")
    score = DeepfakeClassifier.from_checkpoint(tiny_checkpoint, options).predict_batch([photo])[0]["probabilities"]["synthetic"]
    answers = {}
    for verdict, (fake, uncertain) in {"fake": (score / 2, score / 4), "uncertain": ((1 + score) / 2, score / 2),
                                       "real": ((2 + score) / 3, (1 + score) / 2)}.items():
        folder = tmp_path_factory.mktemp(f"decided-{verdict}") / "checkpoint"
        shutil.copytree(tiny_checkpoint, folder)
        (folder / DECISION_FILE).write_text(json.dumps({"fake_label": "synthetic", "temperature": 1.0,
                                                         "thresholds": {"fake": fake, "uncertain": uncertain},
                                                         "target": {"fake_fpr": 0.01, "uncertain_fpr": 0.05}}))
        answers[verdict] = DeepfakeClassifier.from_checkpoint(folder, options).predict_batch([photo])[0]
        assert answers[verdict]["verdict"] == verdict
    return answers


@pytest.mark.parametrize(("verdict", "shown", "says"), [
    ("fake", "Fake", "at most 1 % of real images are flagged"),
    ("uncertain", "Uncertain", "have a person review it"),
    ("real", "Real", "the start of the uncertain band"),
])
def test_the_three_verdicts_are_shown_apart_with_what_they_mean(page, three_answers, verdict, shown, says):
    body = json.dumps(three_answers[verdict])
    page.route("**/api/analyze", lambda route: route.fulfill(status=200, content_type="application/json", body=body))
    upload(page, "astronaut.jpg", jpeg(Image.fromarray(photos.astronaut())))
    analyze(page)
    assert page.inner_text("#verdict") == shown
    assert page.get_attribute("#verdict", "class") == f"verdict {verdict}"
    assert says in page.inner_text("#decision-note")
    assert page.get_attribute(".face-box", "class") == f"face-box {verdict}"
    colours = {v: page.evaluate(f"getComputedStyle(document.documentElement).getPropertyValue('--{v}')") for v in ("fake", "real", "uncertain")}
    assert len(set(colours.values())) == 3  # uncertain has its own colour
    shot(page, f"verdict_{verdict}")


def test_an_answer_the_consistency_check_made_uncertain_says_why(page, three_answers):
    from handler.answers import consistency_block
    from handler.consistency import Consistency
    from handler.verdicts import Verdict

    real = three_answers["real"]
    moved = Verdict(real["label"], real["confidence"], real["probabilities"], "fake")
    original = Verdict(real["label"], real["confidence"], real["probabilities"], "real")
    block = consistency_block(Consistency.check(original, moved), original, Consistency(75, 224))
    body = json.dumps({**real, "verdict": "uncertain", "consistency": block})
    page.route("**/api/analyze", lambda route: route.fulfill(status=200, content_type="application/json", body=body))
    upload(page, "astronaut.jpg", jpeg(Image.fromarray(photos.astronaut())))
    analyze(page)
    assert page.inner_text("#verdict") == "Uncertain"
    assert "moved from real to fake when the image was re-encoded (JPEG q75 at 224 px)" in page.inner_text("#decision-note")


def test_a_video_shows_each_person_first_seen_with_a_line_over_time(page):
    from deepfake_service.samples import videogen

    clip = videogen.clip(people=2, codec="libvpx-vp9", fmt="webm")
    upload(page, "two-people.webm", clip, mime="video/webm")
    assert page.is_visible("#preview-video") and page.is_hidden("#preview")
    analyze(page)
    assert page.is_visible("#result") and page.is_hidden("#error")
    assert page.inner_text("#verdict") in {"Real", "Fake", "Uncertain"}
    assert "2 people in 20 frames" in page.inner_text("#analyzed-note")
    assert page.locator(".person").count() == 2
    page.wait_for_selector("#person-1 canvas[data-drawn='true']")  # both people's first-seen face crops drawn
    assert page.get_attribute("#person-0 canvas", "data-drawn") == "true"
    points = page.get_attribute("#person-0 polyline", "points").split()
    assert len(points) == 20 and all(0 <= float(p.split(",")[1]) <= 40 for p in points)
    assert "first seen at" in page.inner_text("#person-0")
    assert page.is_hidden("#heatmap") and page.locator(".face-box").count() == 0
    assert page.is_hidden("#heatmap-toggle")  # videos are not explained
    assert page.get_attribute("#person-0 canvas", "width") == page.get_attribute("#person-0 canvas", "height")
    shot(page, "video_two_people")


def test_a_non_image_shows_the_servers_error_and_the_page_stays_usable(page):
    upload(page, "notes.png", b"this is text, not a PNG", mime="image/png")  # passes the type check
    analyze(page)
    assert page.is_visible("#error") and "not an image" in page.inner_text("#error")
    assert page.is_hidden("#result")
    shot(page, "error_not_an_image")
    upload(page, "astronaut.jpg", jpeg(Image.fromarray(photos.astronaut())))
    assert page.is_hidden("#error")
    analyze(page)
    assert page.is_visible("#result") and page.is_hidden("#error")


def test_a_heic_photo_the_browser_gives_no_type_is_analysed(page):
    from deepfake_service.samples import imagegen

    upload(page, "phone.heic", imagegen.heic(Image.fromarray(photos.astronaut())), mime="")
    analyze(page)
    assert page.is_visible("#result") and page.is_hidden("#error")
    assert page.inner_text("#verdict") in ("Real", "Fake", "Uncertain")


def info_loaded(page) -> None:
    """Wait until /api/info has answered (its first call asks the model; until then the page checks no type)."""
    page.locator("#limits", has_text="MB").wait_for()  # no wait_for_function: the page's CSP forbids eval


def test_the_client_refuses_a_file_that_is_not_an_image_type(page):
    info_loaded(page)
    upload(page, "notes.txt", b"hello", mime="text/plain")
    error = page.inner_text("#error")
    assert "not a supported image" in error and "AVIF" in error and "HEIC" in error
    assert page.is_disabled("#analyze")


def test_the_drop_hint_names_the_types_api_info_accepts(page):
    info_loaded(page)
    hint = page.inner_text("#limits")
    assert "AVIF" in hint and "HEIC" in hint and "MP4" in hint


def test_the_file_picker_offers_the_types_the_page_server_accepts():
    from page.server import ACCEPTED_TYPES, STATIC

    accept = re.search(r'id="file" type="file" accept="([^"]+)"', (STATIC / "index.html").read_text()).group(1)
    # Besides the MIME types, extensions (.heic, .avif) for systems that give such files no type.
    assert {entry for entry in accept.split(",") if "/" in entry} == set(ACCEPTED_TYPES)


def test_phone_width_renders_without_horizontal_scroll(browser, page_url):
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    phone = context.new_page()
    phone.goto(page_url)
    upload(phone, "astronaut.jpg", jpeg(Image.fromarray(photos.astronaut())))
    analyze(phone)
    assert phone.is_visible("#verdict")
    overflow = phone.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    shot(phone, "phone_width")
    context.close()
    assert overflow <= 0


@pytest.fixture(scope="module")
def demo_page_url(tiny_demo_checkpoint, tmp_path_factory):
    from tests.servers import running_server

    settings = dict(handler={"runtime": "torch", "precision": "fp32"})
    with running_server(tmp_path_factory.mktemp("demo-serving"), tiny_demo_checkpoint, SERVED_NAME, **settings) as demo:
        url = start_page(demo, SERVED_NAME, free_port())
        yield url
        stop_page(demo.run_dir)


def test_demo_weights_show_the_banner(browser, demo_page_url):
    context = browser.new_context()
    page = context.new_page()
    page.goto(demo_page_url)
    page.wait_for_selector("#demo-banner", state="visible")
    assert "predictions are meaningless" in page.inner_text("#demo-banner")
    upload(page, "coffee.jpg", jpeg(Image.fromarray(photos.coffee())))
    analyze(page)
    assert "DEMO WEIGHTS" in page.inner_text("#meta")
    shot(page, "demo_banner")
    context.close()


def test_page_server_never_hands_out_the_key(server, page_url):
    key = server.key()
    answers = [
        requests.get(page_url, timeout=30),
        requests.get(f"{page_url}api/info", timeout=30),
        requests.post(f"{page_url}api/analyze", files={"image": ("a.jpg", jpeg(Image.fromarray(photos.coffee())))}, timeout=60),
    ]
    assert [a.status_code for a in answers] == [200, 200, 200]
    for answer in answers:
        assert key not in answer.text and key not in json.dumps(dict(answer.headers))
    assert "default-src 'self'" in answers[0].headers["Content-Security-Policy"]


def test_page_server_refuses_oversized_uploads_before_forwarding(page_url):
    huge = b"\xff\xd8" + b"0" * (11 * 1024 * 1024)
    answer = requests.post(f"{page_url}api/analyze", files={"image": ("big.jpg", huge)}, timeout=60)
    assert answer.status_code == 413 and answer.json()["error"] == "payload too large"


def test_page_server_passes_4xx_through_and_checks_its_fields(page_url):
    bad = requests.post(f"{page_url}api/analyze", files={"image": ("x.jpg", b"")}, timeout=30)
    assert bad.status_code == 400 and bad.json()["error"] == "empty input"
    missing = requests.post(f"{page_url}api/analyze", files={"other": ("x.jpg", b"x")}, timeout=30)
    assert missing.status_code == 400 and missing.json()["error"] == "no image in request"
    mode = requests.post(f"{page_url}api/analyze", files={"image": ("x.jpg", b"x")}, data={"face_mode": "maybe"}, timeout=30)
    assert mode.status_code == 400 and mode.json()["error"] == "bad option"


def test_page_server_says_when_torchserve_is_down(tmp_path):
    from page.server import create_app

    (tmp_path / "key_file.json").write_text(json.dumps({"inference": {"key": "k"}}))
    app = create_app(f"http://127.0.0.1:{free_port()}", "m", tmp_path / "key_file.json", 1024)
    answer = app.test_client().post("/api/analyze", data={"image": (io.BytesIO(b"x"), "a.jpg")})
    assert answer.status_code == 503 and answer.get_json()["error"] == "model server unavailable"


def test_page_server_keeps_the_models_label_order(page_url):
    answer = requests.post(f"{page_url}api/analyze", files={"image": ("a.jpg", jpeg(Image.fromarray(photos.coffee())))}, timeout=60)
    assert list(answer.json()["probabilities"]) == ["synthetic", "authentic", "unsure"]  # id2label order, not sorted


def test_the_provenance_panel_shows_a_signed_ai_declaration_beside_the_verdict(page):
    from deepfake_service.samples import imagegen, provenancegen

    signed = provenancegen.signed(imagegen.jpeg(seed=3, width=96, height=96), "image/jpeg")
    upload(page, "generated.jpg", signed)
    analyze(page)
    assert page.is_visible("#provenance")
    assert page.inner_text("#provenance-declared") == "declares AI"
    assert "declare this file AI-generated" in page.inner_text("#provenance-statement")
    details = page.inner_text("#provenance-details")
    assert "Valid, unverified (no trust list configured)" in details and "Test Generator" in details
    assert page.inner_text("#verdict") == "Real"  # the model's verdict (tiny, uncalibrated) is not changed by it
    assert "Absence proves nothing" not in page.inner_text("#provenance")  # something was found
    shot(page, "provenance_signed")
    upload(page, "plain.jpg", imagegen.jpeg(seed=4, width=96, height=96))
    analyze(page)
    assert page.inner_text("#provenance").count("Absence proves nothing") == 1
