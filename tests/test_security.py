"""Secure defaults, checked: loopback listeners, token authorization, model API off, URL allow-list,
decoder allow-list and caps, no keys in logs."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

import psutil
import pytest
import requests
import yaml
from PIL import Image

from deepfake_service.project import MODEL_CONFIG, ROOT
from deepfake_service.serving.properties import read_properties
from deepfake_service.serving.server import PID_FILE, read_keys
from handler.images import ACCEPTED_FORMATS
from tests.servers import running_server
from tests.tiny import SERVED_NAME

SHIPPED = read_properties(ROOT / "config" / "config.properties")
TIMEOUT = 60


def test_every_listener_is_configured_on_loopback():
    for key in ("inference_address", "management_address", "metrics_address"):
        assert ipaddress.ip_address(urlsplit(SHIPPED[key]).hostname).is_loopback, key
    for key in ("grpc_inference_address", "grpc_management_address"):
        assert ipaddress.ip_address(SHIPPED[key]).is_loopback, key


def test_risky_features_are_off_and_limits_set():
    assert SHIPPED.get("disable_token_authorization", "false") == "false"
    assert SHIPPED["enable_model_api"] == "false"
    assert int(SHIPPED["max_request_size"]) <= 64 * 2**20 and int(SHIPPED["max_response_size"]) <= 64 * 2**20
    assert SHIPPED["allowed_urls"] == "^$"  # matches no URL: archives load from the model store only


def test_decoder_allow_list_and_pixel_cap():
    assert set(ACCEPTED_FORMATS) == {"JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "AVIF", "HEIF"}
    cap = yaml.safe_load(MODEL_CONFIG.read_text())["handler"]["max_image_pixels"]
    assert cap <= Image.MAX_IMAGE_PIXELS // 2


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return (getattr(ip, "ipv4_mapped", None) or ip).is_loopback


def test_running_server_listens_on_loopback_only(server):
    ports = {urlsplit(server.properties[k]).port for k in ("inference_address", "management_address", "metrics_address")}
    java = [p for p in psutil.Process(int((server.run_dir / PID_FILE).read_text())).children(recursive=True) if "java" in p.name()]
    listening = [c for p in java for c in p.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert ports <= {c.laddr.port for c in listening}
    assert all(is_loopback(c.laddr.ip) for c in listening), [c.laddr for c in listening]


def test_registering_a_model_is_refused_while_the_model_api_is_off(server):
    answer = requests.post(f"{server.management_url}/models", params={"url": f"{SERVED_NAME}.mar"},
                           headers=server.headers("management"), timeout=TIMEOUT)
    assert answer.status_code == 405, answer.text  # TorchServe's answer while enable_model_api=false


def test_logs_never_print_keys(server):
    requests.get(f"{server.inference_url}/ping", headers=server.headers(), timeout=TIMEOUT)
    keys = read_keys(server.run_dir).values()
    for log in list((server.run_dir / "logs").glob("*.log")) + [server.run_dir / "torchserve.out"]:
        text = log.read_text(errors="replace")
        assert not any(key in text for key in keys), log


def test_expired_or_rotated_key_is_refused_and_the_new_one_works(server):
    old = server.key()
    rotated = requests.post(f"{server.management_url}/token", params={"type": "inference"},
                            headers=server.headers("API"), timeout=TIMEOUT)
    assert rotated.status_code == 200, rotated.text
    new = server.key()
    assert new != old
    ping = f"{server.inference_url}/ping"
    assert requests.get(ping, headers={"Authorization": f"Bearer {old}"}, timeout=TIMEOUT).status_code == 400
    assert requests.get(ping, headers={"Authorization": f"Bearer {new}"}, timeout=TIMEOUT).status_code == 200


@pytest.fixture(scope="module")
def model_api_server(tiny_checkpoint, tmp_path_factory):
    """The shipped settings with the model API turned on, as an operator might for rollouts."""
    with running_server(tmp_path_factory.mktemp("model-api"), tiny_checkpoint, "registered",
                        properties={"enable_model_api": "true"}, handler={"runtime": "torch", "precision": "fp32"}) as running:
        yield running


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9/evil.mar",
    "https://example.invalid/model.mar",
    "file:///etc/passwd",
    "../../../../etc/passwd",
])
def test_model_urls_outside_the_store_are_refused(model_api_server, url):
    answer = requests.post(f"{model_api_server.management_url}/models", params={"url": url, "model_name": "evil"},
                           headers=model_api_server.headers("management"), timeout=TIMEOUT)
    assert 400 <= answer.status_code < 500, answer.text
    listed = requests.get(f"{model_api_server.management_url}/models", headers=model_api_server.headers("management"), timeout=TIMEOUT)
    assert "evil" not in listed.text
