"""The TorchServe adapter with a small fake context (no Java): per-request status codes and JSON."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from deepfake_service.samples import imagegen
from handler.ts_handler import DeepfakeHandler, read_request, worker_device


class FakeContext:
    """The parts of ``ts.context.Context`` the handler uses."""

    def __init__(self, model_dir, handler_section=None, gpu_id=None, headers=None):
        self.headers = headers or {}  # request index -> that request's headers
        self.system_properties = {"model_dir": str(model_dir), "gpu_id": gpu_id, "batch_size": 8}
        self.manifest = {"model": {"modelName": "tiny-detector", "modelVersion": "2.0"}}
        self.model_yaml_config = {"handler": handler_section or {}}
        self.statuses, self.content_types = {}, {}

    def set_response_status(self, code=200, phrase="", idx=0):
        self.statuses[idx] = (code, phrase)

    def set_response_content_type(self, idx, value):
        self.content_types[idx] = value

    def get_all_request_header(self, idx):
        return self.headers.get(idx, {})


@pytest.fixture(scope="module")
def model_dir(tiny_checkpoint, tmp_path_factory):
    unpacked = tmp_path_factory.mktemp("unpacked")
    shutil.copytree(tiny_checkpoint, unpacked / "weights")
    return unpacked


@pytest.fixture(scope="module")
def handler(model_dir):
    ts_handler = DeepfakeHandler()
    ts_handler.initialize(FakeContext(model_dir, {"checkpoint": "weights"}))
    return ts_handler


def test_one_json_answer_per_request_in_order(handler, model_dir):
    context = FakeContext(model_dir)
    answers = handler.handle([{"body": imagegen.png(seed=1)}, {"data": imagegen.jpeg(seed=2)}], context)
    assert len(answers) == 2
    first, second = (json.loads(a) for a in answers)
    assert (first["model"], first["version"]) == ("tiny-detector", "2.0")
    assert first != second
    assert context.content_types == {0: "application/json", 1: "application/json"}
    assert context.statuses == {}


def test_bad_requests_get_their_own_status_and_mates_succeed(handler, model_dir):
    context = FakeContext(model_dir)
    batch = [{"file": imagegen.png()}, {"body": {"json": True}}, {"other": b"x"}, {"image": b"junk"}, {"body": b""}]
    answers = [json.loads(a) for a in handler.handle(batch, context)]
    assert "label" in answers[0] and 0 not in context.statuses
    assert {i: code for i, (code, _) in context.statuses.items()} == {1: 415, 2: 400, 3: 415, 4: 400}
    for index in (1, 2, 3, 4):
        assert set(answers[index]) == {"error", "detail"}
        assert context.statuses[index][1] == answers[index]["error"]


def test_a_signed_probe_is_read_with_route_probe_whatever_else_it_asked_and_an_unsigned_one_is_not():
    from handler.clients import PURPOSE_HEADER, PURPOSE_SIGNATURE_HEADER, Clients, probe_headers, signature

    image, clients = {"body": imagegen.jpeg(seed=3)}, Clients("k" * 64)
    signed = probe_headers(clients.key)
    assert read_request(image, signed, clients=clients).route == "probe"
    assert read_request(image, {**signed, "explain": "True"}, clients=clients).route == "probe"
    assert read_request(image, {"explain": "True"}, clients=clients).route == "explanations"
    assert read_request(image, {PURPOSE_HEADER: "probe"}, clients=clients).route == "predictions"  # any caller can send that
    forged = {PURPOSE_HEADER: "probe", PURPOSE_SIGNATURE_HEADER: signature("guess", "probe")}
    assert read_request(image, forged, "v2", clients=clients).route == "v2"
    assert read_request(image, signed).route == "predictions"  # a worker without the run's key believes no probe


def test_unknown_handler_option_fails_initialisation(model_dir):
    with pytest.raises(Exception, match="unknown handler option"):
        DeepfakeHandler().initialize(FakeContext(model_dir, {"checkpoint": "weights", "colour": "blue"}))


def test_worker_device_follows_gpu_id():
    assert worker_device({"gpu_id": None}) == torch.device("cpu")
    expected = torch.device("cuda:1") if torch.cuda.is_available() else torch.device("cpu")
    assert worker_device({"gpu_id": 1}) == expected
