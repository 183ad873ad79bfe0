"""Attention rollout: the maths on hand-made attentions, and explanations from the core and TorchServe."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import requests
import torch
from PIL import Image
from skimage import data as photos

from deepfake_service.samples import imagegen
from deepfake_service.samples.imagegen import photo_jpeg as jpeg
from handler.analysis import Request
from handler.classifier import DeepfakeClassifier
from handler.explain import attention_rollout
from handler.options import HandlerOptions
from tests.tiny import SERVED_NAME

TOKENS = 1 + 16  # [CLS] + a 4 x 4 patch grid


def focused_attention(patch: int, layers: int = 3, heads: int = 2) -> list[torch.Tensor]:
    """Every head of every layer: [CLS] attends only to ``patch``, other tokens to themselves."""
    attention = torch.eye(TOKENS).repeat(1, heads, 1, 1)
    attention[:, :, 0, :] = 0
    attention[:, :, 0, 1 + patch] = 1
    return [attention.clone() for _ in range(layers)]


def test_rollout_finds_the_patch_cls_attends_to():
    (grid,) = attention_rollout(focused_attention(patch=6))
    assert grid.shape == (4, 4)
    assert divmod(int(grid.argmax()), 4) == (1, 2)
    assert float(grid.max()) == 1.0 and float(grid.min()) == 0.0


def test_rollout_of_uniform_attention_is_flat_not_nan():
    uniform = [torch.full((1, 2, TOKENS, TOKENS), 1 / TOKENS) for _ in range(2)]
    (grid,) = attention_rollout(uniform)
    assert torch.isfinite(grid).all() and float(grid.max()) == 0.0


def decode_png(encoded: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(encoded)))


@pytest.fixture(scope="module")
def auto(tiny_checkpoint) -> DeepfakeClassifier:
    return DeepfakeClassifier.from_checkpoint(tiny_checkpoint, HandlerOptions(face_mode="auto"))


def test_predictions_never_load_the_explainer(tiny_checkpoint):
    classifier = DeepfakeClassifier.from_checkpoint(tiny_checkpoint, HandlerOptions(face_mode="auto"))
    classifier.predict_batch([imagegen.jpeg(seed=1), jpeg(photos.astronaut())])
    assert classifier._explainer is None


def test_explanation_gives_the_same_verdict_and_a_map_per_face(auto):
    payload = jpeg(photos.astronaut())
    predicted, explained = auto.predict_batch([Request(payload), Request(payload, explain=True)])
    assert "explanation" not in predicted
    assert explained["label"] == predicted["label"]
    assert explained["probabilities"] == pytest.approx(predicted["probabilities"], abs=1e-5)
    explanation = explained["explanation"]
    assert explanation["grid_size"] == [4, 4]  # tiny ViT: 32 px images, 8 px patches
    (face_map,) = explanation["maps"]
    grid = np.array(face_map["attention"])
    assert grid.shape == (4, 4) and grid.min() == 0.0 and grid.max() == 1.0
    x, y, w, h = face_map["region"]
    fx, fy, fw, fh = explained["faces"][0]["box"]
    assert x <= fx and y <= fy and x + w >= fx + fw and y + h >= fy + fh  # the crop covers its face
    overlay = decode_png(explanation["overlay_png"])
    assert overlay.mode == "RGBA" and overlay.size == (256, 256)
    alpha = np.asarray(overlay)[:, :, 3]
    scale = 256 / 512
    assert alpha[round((y + h / 2) * scale), round((x + w / 2) * scale)] > 0  # painted over the face
    assert alpha[5, 5] == 0 and alpha[250, 250] == 0  # transparent far from it


class NamedRuntime:
    """The classifier's torch runtime under another name, so answers show which engine computed them."""

    name, precision, fallback, chosen_by = "openvino", "bf16", None, None

    def __init__(self, runtime):
        self.runtime = runtime

    def predict(self, pixels):
        return self.runtime.predict(pixels)


def test_explanations_are_chunked_like_predictions_and_say_what_computed_them(tiny_checkpoint):
    """Three explained photos and a plain one with a 2-crop forward batch: explanations in passes of 2 and
    1, each answer its own map, each answer naming the engine that computed it."""
    classifier = DeepfakeClassifier.from_checkpoint(tiny_checkpoint, HandlerOptions(runtime="torch", precision="fp32"),
                                                    forward_batch=2)
    classifier.runtime = NamedRuntime(classifier.runtime)
    sizes, original = [], classifier.explainer.explain

    def recording(pixels):
        sizes.append(len(pixels))
        return original(pixels)

    classifier.explainer.explain = recording
    payloads = [imagegen.jpeg(seed=seed, width=40 + 8 * seed) for seed in range(3)]
    *answers, plain = classifier.predict_batch([Request(p, explain=True) for p in payloads] + [Request(payloads[0])])
    assert sizes == [2, 1]
    assert (plain["runtime"], plain["precision"]) == ("openvino", "bf16") and "explanation" not in plain
    for payload, answer in zip(payloads, answers):
        (whole,) = answer["explanation"]["maps"]
        assert whole["region"] == [0, 0, *answer["image_size"]]
        assert (answer["runtime"], answer["precision"]) == ("torch", "fp32")
        alone = classifier.predict_batch([Request(payload, explain=True)])[0]
        # Its own map, not a batch-mate's: the same region and attention; a pass of 1 and a pass of 2 may round
        # apart in the last bits, which can move a value rounded to 4 decimals by one unit.
        (own,) = alone["explanation"]["maps"]
        assert own["region"] == whole["region"]
        np.testing.assert_allclose(own["attention"], whole["attention"], rtol=0, atol=1.5e-4)


def test_whole_image_explanation_covers_the_image(auto):
    answer = auto.predict_batch([Request(jpeg(photos.coffee()), explain=True)])[0]
    (whole,) = answer["explanation"]["maps"]
    assert answer["analyzed"] == "image" and whole["region"] == [0, 0, 600, 400]
    assert decode_png(answer["explanation"]["overlay_png"]).size == (256, 171)


def test_explanations_through_torchserve(server):
    answer = requests.post(
        f"{server.inference_url}/explanations/{SERVED_NAME}",
        data=jpeg(photos.astronaut()),
        headers={**server.headers(), "Content-Type": "application/octet-stream"},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert len(body["faces"]) == 1 and len(body["explanation"]["maps"]) == 1
    assert decode_png(body["explanation"]["overlay_png"]).mode == "RGBA"
    plain = requests.post(
        f"{server.inference_url}/predictions/{SERVED_NAME}",
        data=jpeg(photos.astronaut()),
        headers={**server.headers(), "Content-Type": "application/octet-stream"},
        timeout=60,
    ).json()
    assert "explanation" not in plain
    assert body["probabilities"] == pytest.approx(plain["probabilities"], abs=1e-5)


def test_bad_input_to_explanations_is_a_4xx_json(server):
    answer = requests.post(
        f"{server.inference_url}/explanations/{SERVED_NAME}",
        data=b"not an image",
        headers={**server.headers(), "Content-Type": "application/octet-stream"},
        timeout=60,
    )
    assert answer.status_code == 415 and answer.json()["error"] == "not an image"
