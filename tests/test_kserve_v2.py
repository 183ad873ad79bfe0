"""The same handler behind TorchServe's KServe v2 service envelope (what KServe's TorchServe runtime uses)."""

from __future__ import annotations

import base64
import io

import pytest
import requests
from PIL import Image
from skimage import data as photos

from deepfake_service.samples import imagegen
from handler.classifier import DeepfakeClassifier
from handler.options import HandlerOptions

NAME = "tiny-v2"


def v2_input(payload: bytes, name: str = "image") -> dict:
    return {"name": name, "shape": [1], "datatype": "BYTES", "data": [base64.b64encode(payload).decode("ascii")]}


def astronaut() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(photos.astronaut()).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def v2_server(tiny_checkpoint, tmp_path_factory):
    from tests.servers import running_server

    # The envelope parses only the first request of a batch, so batchSize must be 1 under it.
    settings = dict(batchSize=1, handler={"runtime": "torch", "precision": "fp32"})
    properties = {"service_envelope": "kservev2"}
    with running_server(tmp_path_factory.mktemp("v2"), tiny_checkpoint, NAME, "3.0", properties=properties, **settings) as server:
        yield server


def infer(server, body: dict) -> requests.Response:
    return requests.post(f"{server.inference_url}/v2/models/{NAME}/infer", json=body, headers=server.headers(), timeout=60)


def test_v2_infer_answers_with_the_handlers_json_in_an_output_tensor(v2_server, tiny_checkpoint):
    image = imagegen.jpeg(seed=5)
    answer = infer(v2_server, {"id": "req-1", "inputs": [v2_input(image)]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["id"], body["model_name"], body["model_version"]) == ("req-1", NAME, "3.0")
    (output,) = body["outputs"]
    assert (output["name"], output["datatype"]) == ("image", "BYTES")
    (prediction,) = output["data"]
    expected = DeepfakeClassifier.from_checkpoint(tiny_checkpoint, HandlerOptions()).predict_batch([image])[0]
    assert prediction["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-5)


def test_v2_infer_carries_per_face_results(v2_server):
    (output,) = infer(v2_server, {"inputs": [v2_input(astronaut())]}).json()["outputs"]
    assert output["data"][0]["analyzed"] == "faces" and len(output["data"][0]["faces"]) == 1


def test_v2_request_with_two_images_gets_two_outputs(v2_server):
    body = infer(v2_server, {"inputs": [v2_input(imagegen.jpeg(seed=1), "a"), v2_input(astronaut(), "b")]}).json()
    assert [o["name"] for o in body["outputs"]] == ["a", "b"]
    assert [len(o["data"][0]["faces"]) for o in body["outputs"]] == [0, 1]


@pytest.mark.parametrize(
    "tensor, fragment",
    [
        ({"name": "image", "shape": [1], "datatype": "BYTES", "data": ["%%% not base64"]}, "base64"),
        ({"name": "image", "shape": [3], "datatype": "FP32", "data": [1.0, 2.0, 3.0]}, "not BYTES"),
        (v2_input(b"not an image"), "not a supported image"),
    ],
)
def test_bad_v2_input_is_a_4xx_naming_the_problem(v2_server, tensor, fragment):
    answer = infer(v2_server, {"inputs": [tensor]})
    assert 400 <= answer.status_code < 500, answer.text
    assert fragment in answer.text
