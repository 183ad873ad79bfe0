"""Locust load test for the prediction API (token authorization on).

Environment:
  LOADTEST_KEY_FILE  TorchServe's key_file.json (default: the run folder's); re-read at every user start
  LOADTEST_IMAGES    folder of images to send (default: 16 generated 256x256 JPEGs)
  LOADTEST_MODEL     model name (default: the project's, deepfake_service/project.py)
  LOADTEST_FACE_MODE face mode sent in the X-Face-Mode header (auto | faces | off; default: the model's)
  LOADTEST_UPLOAD_FIELD  send each image as a multipart file in this field (default: the raw body)

  locust -f loadtest/locustfile.py --headless -u 8 -r 8 -t 60s --host http://127.0.0.1:8080
  (add --exclude-tags bad to send only valid images)
"""

from __future__ import annotations

import io
import os
import random
import sys
from pathlib import Path

import numpy as np
from locust import FastHttpUser, tag, task
from PIL import Image
from urllib3 import encode_multipart_formdata

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # Locust puts only loadtest/ on the path
from deepfake_service.project import KEY_FILE as KEY_FILE_NAME  # noqa: E402
from deepfake_service.project import MODEL_NAME, RUN_DIR  # noqa: E402
from deepfake_service.serving.server import read_key_file  # noqa: E402
from handler.payload import FACE_MODE_HEADER  # noqa: E402

MODEL = os.environ.get("LOADTEST_MODEL", MODEL_NAME)
KEY_FILE = Path(os.environ.get("LOADTEST_KEY_FILE", RUN_DIR / KEY_FILE_NAME))
FACE_MODE = os.environ.get("LOADTEST_FACE_MODE")
UPLOAD_FIELD = os.environ.get("LOADTEST_UPLOAD_FIELD")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


def generated_images(count: int = 16) -> list[bytes]:
    """Deterministic 256x256 JPEGs, the size of the training face crops."""
    rng = np.random.default_rng(0)
    images = []
    for _ in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(buffer, "JPEG", quality=90)
        images.append(buffer.getvalue())
    return images


def load_images() -> list[bytes]:
    """Every image is read once, here, and kept in memory."""
    folder = os.environ.get("LOADTEST_IMAGES")
    if not folder:
        return generated_images()
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise SystemExit(f"LOADTEST_IMAGES={folder} holds no images")
    return [p.read_bytes() for p in paths]


IMAGES = load_images()
# (body, Content-Type) per image: the raw bytes, or a multipart form holding them (encoded once, here).
BODIES = [encode_multipart_formdata({UPLOAD_FIELD: ("upload.jpg", image, "image/jpeg")}) if UPLOAD_FIELD
          else (image, "application/octet-stream") for image in IMAGES]


class PredictUser(FastHttpUser):
    """Sends images back to back, as a client with its own upload queue would."""

    def on_start(self) -> None:
        key = read_key_file(KEY_FILE)["inference"]
        self.auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/octet-stream"}
        if FACE_MODE:
            self.auth[FACE_MODE_HEADER] = FACE_MODE
        self.order = random.Random(id(self))

    @task(20)
    def predict(self) -> None:
        body, content_type = self.order.choice(BODIES)
        headers = {**self.auth, "Content-Type": content_type}
        with self.client.post(f"/predictions/{MODEL}", data=body, headers=headers, name="predict", catch_response=True) as answer:
            if answer.status_code != 200 or "label" not in (answer.json() or {}):
                answer.failure(f"{answer.status_code}: {answer.text[:200]}")

    @tag("bad")
    @task(1)
    def predict_bad_input(self) -> None:
        """A non-image must get a 4xx JSON error, never a 5xx."""
        with self.client.post(
            f"/predictions/{MODEL}", data=b"not an image", headers=self.auth, name="predict [bad input]", catch_response=True
        ) as answer:
            if answer.status_code == 415 and "error" in answer.json():
                answer.success()
            else:
                answer.failure(f"expected 415 JSON, got {answer.status_code}: {answer.text[:200]}")
