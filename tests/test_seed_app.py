"""The benchmark's baseline, the seed's design (loadtest/seed_app.py), answers like a prediction server."""

from __future__ import annotations

import importlib

from deepfake_service.samples import imagegen
from tests.tiny import TINY_LABELS


def test_the_seed_baseline_classifies_whole_images_and_refuses_non_images(tiny_checkpoint, monkeypatch):
    monkeypatch.setenv("SEED_CHECKPOINT", str(tiny_checkpoint))
    import loadtest.seed_app as seed_app

    client = importlib.reload(seed_app).app.test_client()
    answer = client.post("/predictions/any", data=imagegen.jpeg(seed=1), content_type="application/octet-stream")
    assert answer.status_code == 200 and answer.json["label"] in TINY_LABELS.values()
    assert client.post("/predictions/any", data=b"not an image").status_code == 415
    assert client.get("/ping").status_code == 200
