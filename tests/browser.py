"""Driving the upload page in a browser tab: choose a file, analyze, keep a screenshot."""

from __future__ import annotations

from deepfake_service.project import ROOT

SCREENSHOTS = ROOT / "results" / "screenshots"


def upload(page, name: str, payload: bytes, mime: str = "image/jpeg") -> None:
    """Put ``payload`` in the page's file input as a file called ``name``."""
    page.set_input_files("#file", files=[{"name": name, "mimeType": mime, "buffer": payload}])


def analyze(page) -> None:
    """Click Analyze and wait for the answer or the error."""
    page.click("#analyze")
    # A selector, not wait_for_function: the page's Content-Security-Policy forbids eval, as it should.
    page.wait_for_selector("#result:not([hidden]), #error:not([hidden])")


def shot(page, name: str) -> None:
    """A full-page screenshot in results/screenshots/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
