"""The shipped model-config.yaml, unchanged (runtime and precision auto, faces, JPEG draft), behind a real TorchServe."""

from __future__ import annotations

import pytest
import requests
import yaml

from deepfake_service.project import MODEL_CONFIG
from deepfake_service.samples import imagegen
from handler.classifier import DeepfakeClassifier
from handler.hardware import native_bf16
from handler.options import HandlerOptions
from tests.servers import model_log, running_server

NAME = "shipped-detector"


@pytest.fixture(scope="module")
def server(tiny_checkpoint, tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("shipped"), tiny_checkpoint, NAME) as running:
        yield running


def test_shipped_runtime_answers_and_agrees_with_torch_fp32(server, tiny_checkpoint):
    shipped = yaml.safe_load(MODEL_CONFIG.read_text())["handler"]
    # shorter side under twice the shipped jpeg_draft_side: decoded in full, as the torch fp32 reference decodes it
    image = imagegen.jpeg(seed=5, width=900, height=700)
    answer = requests.post(
        f"{server.inference_url}/predictions/{NAME}", data=image, timeout=60,
        headers={**server.headers(), "Content-Type": "application/octet-stream"},
    )
    assert answer.status_code == 200
    body = answer.json()
    # auto chose among what this CPU computes natively: bf16 only with native BF16, never an ungated int8.
    assert (shipped["runtime"], shipped["precision"]) == ("auto", "auto")
    allowed = {("torch", "fp32"), ("openvino", "fp32")} | ({("torch", "bf16"), ("openvino", "bf16")} if native_bf16() else set())
    assert (body["runtime"], body["precision"]) in allowed
    log = model_log(server)
    assert f"auto chose {body['runtime']} {body['precision']}" in log
    reference = DeepfakeClassifier.from_checkpoint(tiny_checkpoint, HandlerOptions(runtime="torch", precision="fp32"))
    expected = reference.predict_batch([image])[0]["probabilities"]
    assert body["probabilities"] == pytest.approx(expected, abs=0.02)
