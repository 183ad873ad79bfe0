"""End to end against a real TorchServe serving a tiny ViT .mar on free loopback ports."""

from __future__ import annotations

import re
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from deepfake_service.samples import imagegen
from handler.classifier import DeepfakeClassifier
from handler.options import HandlerOptions
from tests.servers import model_log, sent_together
from tests.tiny import SERVED_NAME as NAME

TIMEOUT = 60


@pytest.fixture(scope="module")
def reference(tiny_checkpoint):
    return DeepfakeClassifier.from_checkpoint(tiny_checkpoint, HandlerOptions(), name=NAME, version="2.5")


def predict(server, **kwargs) -> requests.Response:
    kwargs.setdefault("headers", server.headers())
    return requests.post(f"{server.inference_url}/predictions/{NAME}", timeout=TIMEOUT, **kwargs)


def octet(server, data: bytes) -> requests.Response:
    return predict(server, data=data, headers={**server.headers(), "Content-Type": "application/octet-stream"})


def assert_matches(answer: dict, expected: dict) -> None:
    assert answer["label"] == expected["label"]
    assert answer["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-5)


def test_ping_is_healthy_with_the_inference_key(server):
    answer = requests.get(f"{server.inference_url}/ping", headers=server.headers(), timeout=TIMEOUT)
    assert answer.status_code == 200 and answer.json()["status"] == "Healthy"


@pytest.mark.parametrize("path", ["/ping", f"/predictions/{NAME}"])
def test_inference_api_requires_the_token(server, path):
    assert requests.post(f"{server.inference_url}{path}", data=b"x", timeout=TIMEOUT).status_code == 400
    wrong = {"Authorization": "Bearer not-the-key"}
    assert requests.post(f"{server.inference_url}{path}", data=b"x", headers=wrong, timeout=TIMEOUT).status_code == 400


def test_management_api_requires_its_own_token(server):
    url = f"{server.management_url}/models/{NAME}"
    assert requests.get(url, timeout=TIMEOUT).status_code == 400
    assert requests.get(url, headers=server.headers("inference"), timeout=TIMEOUT).status_code == 400


def test_raw_body_prediction_matches_the_core(server, reference):
    image = imagegen.jpeg(seed=11)
    answer = octet(server, image)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("application/json")
    body = answer.json()
    assert (body["model"], body["version"], body["demo"]) == (NAME, "2.5", False)
    assert_matches(body, reference.predict_batch([image])[0])


def test_put_upload_like_curl_T_is_accepted(server, reference):
    image = imagegen.png(seed=12)
    answer = requests.put(f"{server.inference_url}/predictions/{NAME}", data=image, headers=server.headers(), timeout=TIMEOUT)
    assert answer.status_code == 200
    assert_matches(answer.json(), reference.predict_batch([image])[0])


@pytest.mark.parametrize("field", ["data", "file", "image"])
def test_multipart_field_is_accepted(server, reference, field):
    image = imagegen.jpeg(seed=13)
    answer = predict(server, files={field: ("face.jpg", image, "image/jpeg")})
    assert answer.status_code == 200
    assert_matches(answer.json(), reference.predict_batch([image])[0])


def test_concurrent_requests_are_batched_and_match_singles(server, reference):
    images = [imagegen.jpeg(seed=20 + i) for i in range(8)]

    def send():
        with ThreadPoolExecutor(max_workers=8) as pool:
            return list(pool.map(lambda image: octet(server, image), images))

    answers = sent_together(server, send, lambda n, rejected: n > 1)
    assert [a.status_code for a in answers] == [200] * 8
    for image, answer in zip(images, answers):
        assert_matches(answer.json(), reference.predict_batch([image])[0])


def test_bad_request_in_batch_gets_4xx_while_batch_mates_get_200(server, reference):
    payloads = [imagegen.png(seed=30), b"this is not an image", imagegen.png(seed=31), b""]
    gate = threading.Barrier(len(payloads))

    def send(data):
        gate.wait(timeout=TIMEOUT)
        return octet(server, data)

    def send_all():
        with ThreadPoolExecutor(max_workers=len(payloads)) as pool:
            return list(pool.map(send, payloads))

    answers = sent_together(server, send_all, lambda n, rejected: 0 < rejected < n)  # good and bad in one batch
    assert [a.status_code for a in answers] == [200, 415, 200, 400]
    assert answers[1].json()["error"] == "not an image"
    assert answers[3].json()["error"] == "empty input"
    assert_matches(answers[0].json(), reference.predict_batch([payloads[0]])[0])
    assert_matches(answers[2].json(), reference.predict_batch([payloads[2]])[0])


def test_management_describes_the_model(server):
    described = requests.get(f"{server.management_url}/models/{NAME}", headers=server.headers("management"), timeout=TIMEOUT)
    assert described.status_code == 200
    model = described.json()[0]
    assert (model["modelName"], model["modelVersion"], model["batchSize"], model["maxBatchDelay"]) == (NAME, "2.5", 4, 400)


def test_prometheus_metrics_count_inference_requests(server):
    octet(server, imagegen.png())
    metrics = requests.get(f"{server.metrics_url}/metrics", timeout=TIMEOUT)
    assert metrics.status_code == 200
    assert re.search(rf'ts_inference_requests_total\{{[^}}]*model_name="{NAME}"[^}}]*\}} [1-9]', metrics.text)


def test_a_video_sent_for_images_is_a_415_naming_the_video_endpoint(server):
    from deepfake_service.samples import videogen

    answer = octet(server, videogen.clip(count=4))
    assert answer.status_code == 415
    assert answer.json()["error"] == "video on the image endpoint"
    assert answer.json()["endpoint"] == f"/predictions/{NAME}-video" and f"/predictions/{NAME}-video" in answer.json()["detail"]


def test_videos_and_images_run_on_separate_workers(server):
    from tests.servers import worker_pids

    images, videos = worker_pids(server, NAME), worker_pids(server, f"{NAME}-video")
    assert len(images) == 1 and len(videos) == 1 and set(images).isdisjoint(videos)
    described = requests.get(f"{server.management_url}/models/{NAME}-video", headers=server.headers("management"), timeout=TIMEOUT)
    assert described.json()[0]["batchSize"] == 5  # the archive's video: section, not its image batching (4)
    log = model_log(server)
    assert f"as {NAME}-video (answers videos, nice +10)" in log


def test_an_image_sent_while_videos_are_analysed_does_not_wait_for_them(server):
    """Images and videos have their own workers: an image sent while the video worker is busy is answered
    in about the time it takes alone, before the videos.

    Judged against this machine's own timings, never a fixed figure, so that a faster or slower CPU cannot
    turn it around. First the image's latency alone (``alone``: mostly the image registration's batch delay,
    the same on any CPU). Then copies of a clip, sent at once, keep the video worker busy while the image is
    sent; ``remaining`` is how long after the image was sent the last video was answered. Had the image
    queued behind them on one worker, it could not have been answered before them: its latency would be at
    least ``remaining``. The test asserts it is under ``alone + remaining / 2``, which queueing breaks
    whenever ``remaining`` is over 2 x ``alone``; so it first makes sure ``remaining`` is at least 3 x
    ``alone``, doubling the copies (a bounded number of times) on a CPU that analyses them faster.
    """
    from deepfake_service.samples import videogen

    image, clip = imagegen.jpeg(seed=44), videogen.clip(people=2, count=32, size=(1280, 720))
    urls = {"image": f"{server.inference_url}/predictions/{NAME}", "video": f"{server.inference_url}/predictions/{NAME}-video"}

    def timed(kind: str, data: bytes) -> tuple[float, float]:
        """(sent, answered) on the monotonic clock."""
        sent = time.monotonic()
        answer = requests.post(urls[kind], data=data, headers=server.headers(), timeout=TIMEOUT)
        assert answer.status_code == 200 and answer.json()["media"] == kind, answer.text[:300]
        return sent, time.monotonic()

    alone = statistics.median(answered - sent for sent, answered in (timed("image", image) for _ in range(3)))
    for copies in (1, 2, 4, 8, 16):
        with ThreadPoolExecutor(max_workers=copies) as pool:
            videos = [pool.submit(timed, "video", clip) for _ in range(copies)]
            time.sleep(0.5)  # to send the image while they are analysed; the verdict does not rely on it
            sent, answered = timed("image", image)
            videos_answered = max(video.result()[1] for video in videos)
        remaining = videos_answered - sent
        if remaining >= 3 * alone:
            break
    else:
        pytest.fail(f"16 clips kept the video worker busy for only {remaining:.2f} s after the image was sent, "
                    f"under 3 x its {alone:.2f} s alone: too little to tell whether it waited")
    latency = answered - sent
    timings = f"image {latency:.2f} s (alone {alone:.2f} s); {copies} videos answered {remaining:.2f} s after it was sent"
    print(timings)
    assert latency < alone + remaining / 2, f"the image waited for the videos: {timings}"
    assert answered < videos_answered, timings


def test_a_video_in_a_batch_with_images_is_answered_and_leaves_theirs_untouched(server, reference):
    """On the video registration, which answers both kinds; a poisoned clip fails alone."""
    from deepfake_service.samples import videogen

    clip = videogen.clip(people=2)
    # The last clip's container metadata is not valid UTF-8: once a 503 for its whole batch.
    payloads = [imagegen.jpeg(seed=40), clip, imagegen.png(seed=41), clip[:700], videogen.with_bad_metadata(videogen.clip(count=6))]
    gate = threading.Barrier(len(payloads))

    def send(data):
        gate.wait(timeout=TIMEOUT)
        return requests.post(f"{server.inference_url}/predictions/{NAME}-video", timeout=TIMEOUT, headers=server.headers(),
                             files={"data": ("upload", data, "application/octet-stream")})

    def send_all():
        with ThreadPoolExecutor(max_workers=len(payloads)) as pool:
            return list(pool.map(send, payloads))

    answers = sent_together(server, send_all, lambda n, rejected: n == len(payloads))  # all five in one batch
    assert [a.status_code for a in answers] == [200, 200, 200, 400, 200], [a.text[:200] for a in answers]
    assert answers[4].json()["media"] == "video"
    assert_matches(answers[0].json(), reference.predict_batch([payloads[0]])[0])
    assert_matches(answers[2].json(), reference.predict_batch([payloads[2]])[0])
    assert answers[0].json()["media"] == "image"
    video = answers[1].json()
    assert (video["media"], video["analyzed"], len(video["people"])) == ("video", "faces", 2)
    assert video["frames_analyzed"] == 20 and video["model"] == NAME  # 20 frames: fewer than video_frames, all taken
    assert answers[3].json()["error"] == "corrupt video"


def test_avif_and_heic_photos_are_answered_like_the_same_photo_as_png(server):
    photo = imagegen.pattern(64, 48, seed=9)
    answers = {name: octet(server, data) for name, data in
               (("png", imagegen.encode(photo, "PNG")), ("avif", imagegen.avif(photo, quality=95)), ("heic", imagegen.heic(photo, quality=95)))}
    assert {name: a.status_code for name, a in answers.items()} == {"png": 200, "avif": 200, "heic": 200}
    for name in ("avif", "heic"):
        assert answers[name].json()["image_size"] == [64, 48] and answers[name].json()["media"] == "image"


def test_score_sends_videos_to_their_registration_and_falls_back_when_it_is_absent(server, tmp_path):
    from deepfake_service.samples import videogen
    from deepfake_service.training.predictors import EndpointPredictor

    clip, photo = tmp_path / "clip.mp4", tmp_path / "photo.jpg"
    clip.write_bytes(videogen.clip(count=4))
    photo.write_bytes(imagegen.jpeg(seed=45))
    routed = EndpointPredictor(server.inference_url, NAME, key=server.key()).predict([clip, photo])
    assert routed[0].prediction["media"] == "video" and routed[1].prediction["media"] == "image"
    absent = EndpointPredictor(server.inference_url, NAME, key=server.key(), video_model="no-such-model").predict([clip])
    assert absent[0].prediction is None and "video on the image endpoint" in absent[0].error  # 404 there, then the model's own
