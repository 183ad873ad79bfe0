"""The Locust file runs headless against a real TorchServe: valid images get 200, the bad-input task 415."""

from __future__ import annotations

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
