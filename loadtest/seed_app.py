"""The seed project's serving design, rebuilt as the benchmark's baseline: a Flask app under gunicorn with
one sync worker, torch fp32, one image per request, the whole image classified (no face stage).

It answers ``POST /predictions/<name>`` (raw image body) so the same Locust file drives it. The
checkpoint folder comes from ``SEED_CHECKPOINT``. Started and stopped by ``loadtest/bench.py``:

  SEED_CHECKPOINT=checkpoints/demo python -m gunicorn -w 1 -k sync -b 127.0.0.1:8090 loadtest.seed_app:app
"""

from __future__ import annotations

import io
import os

import torch
from flask import Flask, jsonify, request
from PIL import Image
from transformers import ViTForImageClassification, ViTImageProcessorPil

CHECKPOINT = os.environ.get("SEED_CHECKPOINT", "checkpoints/demo")
model = ViTForImageClassification.from_pretrained(CHECKPOINT, use_safetensors=True, local_files_only=True).eval()
processor = ViTImageProcessorPil.from_pretrained(CHECKPOINT, local_files_only=True)
app = Flask(__name__)


@app.get("/ping")
def ping():
    return jsonify({"status": "Healthy"})


@app.post("/predictions/<name>")
def predict(name: str):
    try:
        image = Image.open(io.BytesIO(request.get_data())).convert("RGB")
    except Exception as exc:  # noqa: BLE001 - the seed's design: any unreadable upload is a 400
        return jsonify({"error": "not an image", "detail": str(exc)[:200]}), 415
    with torch.inference_mode():
        probabilities = model(**processor(images=image, return_tensors="pt")).logits.softmax(-1)[0]
    best = int(probabilities.argmax())
    return jsonify({"label": model.config.id2label[best], "confidence": float(probabilities[best])})
