"""gRPC predictions against a real TorchServe, with stubs generated from the protos in TorchServe's jar."""

from __future__ import annotations

import pytest
from skimage import data as photos

from deepfake_service.samples import imagegen
from deepfake_service.samples.imagegen import photo_jpeg as jpeg
from deepfake_service.serving.grpc_predict import GrpcClient, GrpcError, generate_stubs
from handler.classifier import DeepfakeClassifier
from handler.options import HandlerOptions
from tests.tiny import SERVED_NAME, SERVED_VERSION


@pytest.fixture(scope="module")
def client(server) -> GrpcClient:
    return GrpcClient(f"127.0.0.1:{server.properties['grpc_inference_port']}", server.run_dir / "key_file.json")


def test_stubs_are_generated_from_the_servers_own_protos(tmp_path):
    generate_stubs(tmp_path)
    assert "class InferenceAPIsServiceStub" in (tmp_path / "inference_pb2_grpc.py").read_text()
    assert (tmp_path / "management_pb2_grpc.py").is_file()


def test_grpc_prediction_matches_the_core(client, tiny_checkpoint):
    image = imagegen.jpeg(seed=21)
    answer = client.predict(SERVED_NAME, image)
    expected = DeepfakeClassifier.from_checkpoint(tiny_checkpoint, HandlerOptions()).predict_batch([image])[0]
    assert answer["label"] == expected["label"]
    assert answer["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-5)
    assert answer["version"] == SERVED_VERSION


def test_grpc_carries_faces_and_the_face_mode_field(client):
    answer = client.predict(SERVED_NAME, jpeg(photos.astronaut()))
    assert answer["analyzed"] == "faces" and len(answer["faces"]) == 1
    whole = client.predict(SERVED_NAME, jpeg(photos.astronaut()), face_mode="off")
    assert (whole["mode"], whole["faces"]) == ("off", [])


def test_grpc_bad_input_is_an_error_naming_the_problem(client):
    with pytest.raises(GrpcError) as failed:
        client.predict(SERVED_NAME, b"not an image")
    assert "not an image" in failed.value.detail


def test_grpc_needs_the_key(server, tmp_path):
    (tmp_path / "key_file.json").write_text('{"inference": {"key": "wrong"}}')
    stranger = GrpcClient(f"127.0.0.1:{server.properties['grpc_inference_port']}", tmp_path / "key_file.json")
    with pytest.raises(GrpcError):
        stranger.predict(SERVED_NAME, imagegen.jpeg(seed=1))
