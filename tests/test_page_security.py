"""The upload page is not an open door: access control, same-origin POSTs, per-client limits and the audit
record, through a real page server in front of the real TorchServe (all on loopback)."""

from __future__ import annotations

import json

import pytest
import requests

from deepfake_service.samples import imagegen
from deepfake_service.serving.properties import free_port
from deepfake_service.serving.server import read_key_file
from page.guard import TOKEN_HEADER
from page.lifecycle import PAGE_LOG, start_page, stop_page
from tests.browser import analyze as click_analyze
from tests.browser import shot, upload
from tests.tiny import SERVED_NAME

TOKEN = "a-page-token-for-the-tests-0123456789"
TIMEOUT = 60


@pytest.fixture
def guarded(server, tmp_path_factory):
    """The page with a page token and a low rate limit (3 analyses a minute per client); one per test, so
    each starts with an empty limiter and its own log."""
    token_file = tmp_path_factory.mktemp("secrets") / "page-token"
    token_file.write_text(TOKEN + "\n")
    url = start_page(server, SERVED_NAME, free_port(), options=["--token-file", str(token_file), "--rate", "3"])
    yield url
    stop_page(server.run_dir)


def analyze(url: str, headers: dict | None = None, payload: bytes | None = None) -> requests.Response:
    files = {"image": ("photo.jpg", payload or imagegen.jpeg(seed=5), "image/jpeg")}
    return requests.post(f"{url}api/analyze", files=files, headers=headers or {}, timeout=TIMEOUT)


def test_a_missing_or_wrong_token_is_401_and_the_right_one_is_answered(guarded):
    missing = analyze(guarded)
    assert missing.status_code == 401 and missing.json()["detail"] == "missing page token"
    wrong = analyze(guarded, {TOKEN_HEADER: "guess"})
    assert wrong.status_code == 401 and wrong.json()["detail"] == "wrong page token"
    assert requests.get(f"{guarded}api/info", timeout=TIMEOUT).status_code == 401
    info = requests.get(f"{guarded}api/info", headers={TOKEN_HEADER: TOKEN}, timeout=TIMEOUT)
    assert info.status_code == 200 and info.json()["token_header"] == TOKEN_HEADER
    assert requests.get(guarded, timeout=TIMEOUT).status_code == 200  # the page itself loads, to ask for the token
    right = analyze(guarded, {TOKEN_HEADER: TOKEN, "Origin": guarded.rstrip("/")})
    assert right.status_code == 200 and right.json()["model"] == SERVED_NAME


def test_a_cross_site_post_is_403_even_with_the_token(guarded):
    for header in ({"Origin": "http://evil.example"}, {"Referer": "http://evil.example/page"}, {"Origin": "null"}):
        answer = analyze(guarded, {TOKEN_HEADER: TOKEN, **header})
        assert answer.status_code == 403 and answer.json()["error"] == "cross-site request", header


def test_the_rate_limit_answers_429_with_retry_after(guarded):
    statuses = [analyze(guarded, {TOKEN_HEADER: TOKEN}).status_code for _ in range(5)]
    assert 429 in statuses and statuses.count(200) <= 3
    limited = analyze(guarded, {TOKEN_HEADER: TOKEN})
    assert limited.status_code == 429 and 1 <= int(limited.headers["Retry-After"]) <= 60
    assert "at most 3 analyses a minute" in limited.json()["detail"]


def test_each_analysis_is_recorded_and_the_key_appears_nowhere(guarded, server):
    answer = analyze(guarded, {TOKEN_HEADER: TOKEN, "X-Forwarded-For": "203.0.113.9"})
    log = (server.run_dir / PAGE_LOG).read_text()
    records = [json.loads(line.split("page.audit ", 1)[1]) for line in log.splitlines() if "page.audit " in line]
    assert records and {"time", "client", "sha256", "bytes", "status", "model_version", "verdict"} <= set(records[-1])
    assert all(len(r["sha256"]) == 64 and r["client"] for r in records)
    key = read_key_file(server.run_dir / "key_file.json")["inference"]
    texts = [log, answer.text, json.dumps(dict(answer.headers)), requests.get(guarded, timeout=TIMEOUT).text,
             requests.get(f"{guarded}api/info", headers={TOKEN_HEADER: TOKEN}, timeout=TIMEOUT).text]
    assert not any(key in text for text in texts)
    assert not any(TOKEN in text for text in texts[:2])  # the page token is neither logged nor echoed


def test_beyond_loopback_the_page_refuses_to_start_without_access_control(capsys):
    from page import server as page_server

    with pytest.raises(SystemExit) as stopped:
        page_server.main(["--host", "0.0.0.0", "--port", str(free_port())])
    message = str(stopped.value.code)
    assert message.startswith("page: refusing to serve the page on 0.0.0.0 without access control")
    assert "--token-file" in message and "--identity-header" in message and "\n" not in message


def test_an_identity_header_from_a_proxy_is_required_when_configured(server):
    url = start_page(server, SERVED_NAME, free_port(), options=["--identity-header", "X-Forwarded-User"])
    try:
        assert analyze(url).status_code == 401
        assert analyze(url, {"X-Forwarded-User": "reviewer@example.org"}).status_code == 200
    finally:
        stop_page(server.run_dir)
    log = (server.run_dir / PAGE_LOG).read_text()
    assert '"client": "reviewer@example.org"' in log


def test_the_browser_asks_for_the_token_once_and_then_analyzes(guarded, browser):
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(guarded)
    page.wait_for_selector("#token-form:not([hidden])")
    page.fill("#token-input", "not the token")
    page.click("#token-form button")
    page.wait_for_selector("#token-note:has-text('wrong page token')")
    page.fill("#token-input", TOKEN)
    page.click("#token-form button")
    page.wait_for_selector("#token-form[hidden]", state="attached")
    upload(page, "photo.jpg", imagegen.jpeg(seed=6, width=96, height=96))
    click_analyze(page)
    assert page.is_visible("#result") and page.is_hidden("#error")
    shot(page, "page_token_unlocked")
    context.close()
