"""The face stage end to end: a real TorchServe (shipped face settings, tiny ViT) batching photos."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from PIL import Image
from skimage import data as photos

from deepfake_service.packaging.face_detector import with_detector_file
from deepfake_service.project import handler_options
from deepfake_service.samples.faceset import matched
from deepfake_service.samples.imagegen import photo_jpeg as jpeg
from handler.classifier import DeepfakeClassifier
from tests.photos import ASTRONAUT_FACE, as_box
from tests.servers import counted, metrics, sent_together
from tests.tiny import SERVED_NAME as NAME

TIMEOUT = 60


@pytest.fixture(scope="module")
def photos_by_faces() -> dict[int, bytes]:
    astronaut = photos.astronaut()
    pair = Image.new("RGB", (1024, 512))
    pair.paste(Image.fromarray(astronaut), (0, 0))
    pair.paste(Image.fromarray(astronaut).transpose(Image.Transpose.FLIP_LEFT_RIGHT), (512, 0))
    buffer = io.BytesIO()
    pair.save(buffer, "JPEG", quality=95)
    return {0: jpeg(photos.coffee()), 1: jpeg(astronaut), 2: buffer.getvalue()}


def post(server, payload: bytes, headers: dict | None = None) -> requests.Response:
    return requests.post(
        f"{server.inference_url}/predictions/{NAME}",
        data=payload,
        headers={**server.headers(), "Content-Type": "application/octet-stream", **(headers or {})},
        timeout=TIMEOUT,
    )


def test_a_photo_gets_per_face_boxes_and_verdicts(server, photos_by_faces):
    answer = post(server, photos_by_faces[1])
    assert answer.status_code == 200
    body = answer.json()
    assert (body["mode"], body["analyzed"], body["image_size"]) == ("auto", "faces", [512, 512])
    (face,) = body["faces"]
    assert as_box(face["box"]).iou(ASTRONAUT_FACE) > 0.7
    assert set(face) == {"box", "crop_pixels", "label", "confidence", "probabilities", "verdict"}


def test_batched_photos_with_0_1_2_faces_each_get_their_own_faces(server, photos_by_faces, tiny_checkpoint):
    # The served archive's settings: the shipped handler section with torch fp32 (tests/conftest.py:server).
    shipped = handler_options(runtime="torch", precision="fp32")
    reference = DeepfakeClassifier.from_checkpoint(tiny_checkpoint, with_detector_file(shipped, tiny_checkpoint))
    order = [0, 1, 2, 2, 1, 0]
    with ThreadPoolExecutor(max_workers=len(order)) as pool:
        answers = list(pool.map(lambda n: post(server, photos_by_faces[n]), order))
    for faces, answer in zip(order, answers):
        assert answer.status_code == 200
        body = answer.json()
        expected = reference.predict_batch([photos_by_faces[faces]])[0]
        # BlazeFace runs on OpenVINO (in bf16 where the CPU has it natively) over the canvases of the whole
        # batch, which may round apart from one photo's alone and move a box by a pixel: the same faces, and
        # the same scores wherever the box, and so the crop, is the same.
        boxes = [as_box(f["box"]) for f in body["faces"]]
        assert matched(boxes, tuple(as_box(f["box"]) for f in expected["faces"]), threshold=0.9) == (len(expected["faces"]), 0)
        for face in body["faces"]:
            twin = max(expected["faces"], key=lambda f: as_box(f["box"]).iou(as_box(face["box"])))
            if twin["box"] == face["box"]:
                assert face["probabilities"] == pytest.approx(twin["probabilities"], abs=1e-5)


def test_faces_mode_by_header_rejects_a_face_free_photo_without_harming_its_batch_mates(server, photos_by_faces):
    requests_ = [(photos_by_faces[0], {"X-Face-Mode": "faces"}), (photos_by_faces[1], {"X-Face-Mode": "faces"}),
                 (photos_by_faces[2], None)]

    def send():
        with ThreadPoolExecutor(max_workers=3) as pool:
            return list(pool.map(lambda r: post(server, *r), requests_))

    answers = sent_together(server, send, lambda n, rejected: 0 < rejected < n)  # the 422 had batch-mates
    assert answers[0].status_code == 422
    assert answers[0].json()["error"] == "no face found"
    assert answers[1].status_code == 200 and answers[1].json()["mode"] == "faces"
    assert answers[2].status_code == 200 and len(answers[2].json()["faces"]) == 2


def test_face_mode_off_by_form_field_classifies_the_whole_photo(server, photos_by_faces):
    answer = requests.post(
        f"{server.inference_url}/predictions/{NAME}",
        files={"data": ("astronaut.jpg", photos_by_faces[1], "image/jpeg")},
        data={"face_mode": "off"},
        headers=server.headers(),
        timeout=TIMEOUT,
    )
    assert answer.status_code == 200
    assert (answer.json()["mode"], answer.json()["analyzed"], answer.json()["faces"]) == ("off", "image", [])


def test_an_unknown_face_mode_is_a_400_naming_the_choices(server, photos_by_faces):
    answer = post(server, photos_by_faces[1], {"X-Face-Mode": "sometimes"})
    assert answer.status_code == 400
    assert answer.json()["error"] == "bad option" and "auto, faces, off" in answer.json()["detail"]


def test_the_handlers_own_counters_reach_prometheus(server, photos_by_faces):
    assert post(server, photos_by_faces[2]).status_code == 200
    assert post(server, b"not an image").status_code == 415
    # Uncalibrated tiny model without a "Fake" label: every answer's verdict is "real".
    wanted = {("FacesClassified", ""): 2, ("RejectedRequests", 'Error="not an image"'): 1, ("Verdicts", 'Verdict="real"'): 1}
    lines = metrics(server, lambda lines: all(counted(lines, *metric) >= least for metric, least in wanted.items()))
    for (name, label), least in wanted.items():
        assert counted(lines, name, label) >= least, (name, label, lines)
