"""The Locust file runs headless against a real TorchServe: valid images get 200, the bad-input task 415."""

from __future__ import annotations

import pytest

from deepfake_service.samples import imagegen
from loadtest.harness import run_locust
from tests.tiny import SERVED_NAME as NAME


def headless_run(server, tmp_path, **selection) -> dict[str, dict]:
    """Run the Locust file for 4 s with 2 users; returns its stats rows by request name."""
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    for seed in range(3):
        (images / f"{seed}.jpg").write_bytes(imagegen.jpeg(seed=seed))
    return run_locust(server, 2, 4, tmp_path / "run", images=images, model=NAME, **selection)


def test_valid_images_are_predicted_without_failures(server, tmp_path):
    stats = headless_run(server, tmp_path, exclude_tags=("bad",))
    assert int(stats["predict"]["Request Count"]) > 0
    assert int(stats["Aggregated"]["Failure Count"]) == 0


def test_bad_input_task_expects_a_415(server, tmp_path):
    stats = headless_run(server, tmp_path, tags=("bad",))
    assert int(stats["predict [bad input]"]["Request Count"]) > 0
    assert int(stats["Aggregated"]["Failure Count"]) == 0


def test_images_can_be_sent_as_multipart_uploads(server, tmp_path):
    stats = headless_run(server, tmp_path, exclude_tags=("bad",), upload_field="data")
    assert int(stats["predict"]["Request Count"]) > 0
    assert int(stats["Aggregated"]["Failure Count"]) == 0


@pytest.mark.served
def test_the_litserve_peer_answers_multipart_uploads_in_batches(tiny_checkpoint, tmp_path):
    """The benchmark's LitServe baseline (loadtest/litserve_app.py) serves the same checkpoint."""
    import json
    import os
    import subprocess
    import sys
    import time

    import requests

    from deepfake_service.project import MODEL_NAME, ROOT
    from deepfake_service.serving.process import terminate_group
    from deepfake_service.serving.properties import free_port

    port = free_port()
    env = dict(os.environ, LITSERVE_CHECKPOINT=str(tiny_checkpoint), LITSERVE_PORT=str(port))
    with open(tmp_path / "litserve.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "loadtest.litserve_app"], cwd=ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, ready = time.monotonic() + 120, False
        while time.monotonic() < deadline and not ready and process.poll() is None:
            try:
                ready = requests.get(f"http://127.0.0.1:{port}/ping", timeout=2).status_code == 200
            except requests.RequestException:
                time.sleep(0.5)
        assert ready, (tmp_path / "litserve.log").read_text()[-2000:]
        answer = requests.post(f"http://127.0.0.1:{port}/predictions/{MODEL_NAME}", timeout=60,
                               files={"data": ("a.jpg", imagegen.jpeg(seed=4), "image/jpeg")})
        assert answer.status_code == 200, answer.text
        labels = set(json.loads((tiny_checkpoint / "config.json").read_text())["id2label"].values())
        assert answer.json()["label"] in labels and 0 < answer.json()["confidence"] <= 1
    finally:
        terminate_group(process.pid, 30)
