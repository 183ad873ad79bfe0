"""The Locust file runs headless against a real TorchServe: valid images get 200, the bad-input task 415."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

from scripts.serve import ROOT
from tests import imagegen
from tests.conftest import SERVED_NAME as NAME


def headless_run(server, tmp_path, *extra: str) -> dict[str, dict]:
    """Run the Locust file for 4 s with 2 users; returns its stats rows by request name."""
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    for seed in range(3):
        (images / f"{seed}.jpg").write_bytes(imagegen.jpeg(seed=seed))
    env = dict(os.environ, LOADTEST_KEY_FILE=str(server.run_dir / "key_file.json"), LOADTEST_IMAGES=str(images), LOADTEST_MODEL=NAME)
    result = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtest" / "locustfile.py"), "--headless", "--only-summary",
         "-u", "2", "-r", "2", "-t", "4s", "--stop-timeout", "10", "--host", server.inference_url,
         "--csv", str(tmp_path / "run"), *extra],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    with open(tmp_path / "run_stats.csv") as f:
        return {row["Name"]: row for row in csv.DictReader(f)}


def test_valid_images_are_predicted_without_failures(server, tmp_path):
    stats = headless_run(server, tmp_path, "--exclude-tags", "bad")
    assert int(stats["predict"]["Request Count"]) > 0
    assert int(stats["Aggregated"]["Failure Count"]) == 0


def test_bad_input_task_expects_a_415(server, tmp_path):
    stats = headless_run(server, tmp_path, "--tags", "bad")
    assert int(stats["predict [bad input]"]["Request Count"]) > 0
    assert int(stats["Aggregated"]["Failure Count"]) == 0
