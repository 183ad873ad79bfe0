"""Images and videos on separate registrations of one archive: the roles, the start-up snapshot, and the
image workers' 415 for a video (served behaviour is in test_serving.py)."""

from __future__ import annotations

import json

import pytest

from deepfake_service.packaging.archive import build_mar
from deepfake_service.samples import imagegen, videogen
from deepfake_service.serving.registrations import model_snapshot, registrations
from deepfake_service.serving.server import ServeError
from handler.analysis import Request
from handler.answers import error_body
from handler.classifier import DeepfakeClassifier
from handler.errors import VideoElsewhere
from handler.options import HandlerOptions
from handler.roles import WorkerRole, worker_role
from tests.servers import model_config

SECTION = {"video": {"minWorkers": 2, "maxWorkers": 3, "batchSize": 1, "nice": 7}}
TORCH_FP32 = {"runtime": "torch", "precision": "fp32"}  # no OpenVINO conversion: registrations are the point


def test_roles_follow_the_registration_name_and_the_archives_video_section():
    assert worker_role("detector", SECTION) == WorkerRole("image", video_endpoint="/predictions/detector-video")
    assert worker_role("detector-video", SECTION) == WorkerRole("video", nice=7)
    assert worker_role("detector", {"batchSize": 8}) == WorkerRole("both")  # no section: one registration answers all
    assert worker_role("detector-video", None) == WorkerRole("both")


def test_the_snapshot_registers_each_archive_twice_with_the_sections_settings(tiny_checkpoint, tmp_path):
    config = model_config(tmp_path / "model-config.yaml", batchSize=8, maxBatchDelay=10, minWorkers=1, maxWorkers=1,
                          handler=TORCH_FP32, **SECTION)
    build_mar(tiny_checkpoint, "tiny-roles", "3.0", model_config=config, export_dir=tmp_path)
    found = registrations(["served=tiny-roles.mar"], tmp_path)
    assert sorted(found) == ["served", "served-video"]
    image, video = found["served"]["3.0"], found["served-video"]["3.0"]
    assert (image["batchSize"], image["maxBatchDelay"], image["minWorkers"], image["marName"]) == (8, 10, 1, "tiny-roles.mar")
    assert (video["batchSize"], video["maxBatchDelay"], video["minWorkers"], video["maxWorkers"]) == (1, 10, 2, 3)
    assert "nice" not in video and video["defaultVersion"] is True
    assert json.loads(model_snapshot(["tiny-roles.mar"], tmp_path, batch_size=1))["modelCount"] == 2
    without = model_config(tmp_path / "plain.yaml", video=None, handler=TORCH_FP32)
    build_mar(tiny_checkpoint, "tiny-plain", "1.0", model_config=without, export_dir=tmp_path)
    assert sorted(registrations(["tiny-plain.mar"], tmp_path)) == ["tiny-plain"]


def test_a_missing_or_broken_archive_is_a_serve_error_naming_it(tmp_path):
    (tmp_path / "broken.mar").write_bytes(b"not a zip")
    for mar in ("absent.mar", "broken.mar"):
        with pytest.raises(ServeError, match=mar):
            registrations([mar], tmp_path)


def test_image_workers_answer_a_video_with_a_415_naming_its_endpoint_and_its_batch_mates_normally(tiny_checkpoint):
    classifier = DeepfakeClassifier.from_checkpoint(tiny_checkpoint, HandlerOptions(face_mode="off"),
                                                    video_endpoint="/predictions/m-video")
    image, video = classifier.predict_batch([Request(imagegen.jpeg(seed=5)), Request(videogen.clip(count=3))])
    assert image["media"] == "image"
    assert isinstance(video, VideoElsewhere) and video.status == 415
    assert error_body(video) == {"error": "video on the image endpoint", "endpoint": "/predictions/m-video",
                                           "detail": "videos are analysed by their own workers: send this video to /predictions/m-video"}
