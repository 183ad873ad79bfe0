"""The built image (make image), run as Docker would run it: uid 1000, its own CMD and HEALTHCHECK, the record
store on a volume. `make test-image`; docs/deployment.md gives its time. The container shares the host's
network, so the ports in the image's config.properties must be free here."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests

from deepfake_service.packaging.image import image_exists
from deepfake_service.project import IMAGE, KEY_FILE, MODEL_NAME
from deepfake_service.samples import imagegen, videogen
from deepfake_service.serving.properties import read_properties
from deepfake_service.serving.server import read_key_file
from tests.containers import container, healthcheck, process_running, stop

pytestmark = pytest.mark.image
USER = "1000:1000"
READY_WITHIN = 600  # seconds: the JVM, two models' workers and their first compile on a slow CPU
RECORDS = "/home/model-server/records"
SERVING_WORDS = ["scripts.serve", "run"]


def argument(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def ports(properties: dict[str, str]) -> list[int]:
    """Every port the image's TorchServe listens on."""
    found = [urlparse(v).port for k, v in properties.items() if k.endswith("_address") and v.startswith("http")]
    return found + [int(v) for k, v in properties.items() if k.startswith("grpc_") and k.endswith("_port")]


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


class Served:
    """The running container: where to send requests, its serving process, its volume, what it printed."""

    def __init__(self, box, volume: Path, log: Path):
        self.box, self.volume, self.log = box, volume, log
        self.cmd = box.config["Cmd"]
        self.properties = read_properties(box.path(argument(self.cmd, "--config")))
        self.run_dir = argument(self.cmd, "--run-dir")
        self.started = time.monotonic()
        self.buildah = subprocess.Popen(box.command(self.cmd, USER, {volume: RECORDS}), stdout=log.open("w"), stderr=subprocess.STDOUT)
        self.serving = process_running(self.buildah, SERVING_WORDS)
        self.ready_after = self.first_answer_after = None

    def probe(self) -> subprocess.CompletedProcess:
        """The image's own HEALTHCHECK, run inside the container as its user."""
        return subprocess.run(self.box.command(healthcheck(self.box.config), USER), capture_output=True, text=True, timeout=60)

    def wait_healthy(self) -> None:
        while time.monotonic() - self.started < READY_WITHIN:
            assert self.buildah.poll() is None, f"the container stopped (exit {self.buildah.returncode}):\n{self.log.read_text()[-3000:]}"
            if self.probe().returncode == 0:
                self.ready_after = time.monotonic() - self.started
                return
            time.sleep(5)
        raise AssertionError(f"not healthy within {READY_WITHIN} s:\n{self.log.read_text()[-3000:]}")

    def post(self, path: str, body: bytes) -> requests.Response:
        key = read_key_file(self.box.path(self.run_dir) / KEY_FILE)["inference"]
        answer = requests.post(f"{self.properties['inference_address'].replace('0.0.0.0', '127.0.0.1')}{path}", data=body, timeout=300,
                               headers={"Authorization": f"Bearer {key}", "Content-Type": "application/octet-stream"})
        if self.first_answer_after is None:
            self.first_answer_after = time.monotonic() - self.started
        return answer


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    if not image_exists(IMAGE):
        pytest.fail(f"no image {IMAGE}: run make image first")
    volume = tmp_path_factory.mktemp("records")
    volume.chmod(0o777)  # the container's uid 1000 writes there, as on a docker volume it owns
    with container(IMAGE) as box:
        properties = read_properties(box.path(argument(box.config["Cmd"], "--config")))
        busy = [p for p in ports(properties) if not port_is_free(p)]
        assert not busy, f"the image listens on the host's ports {ports(properties)}; in use here: {busy}"
        running = Served(box, volume, tmp_path_factory.mktemp("log") / "container.log")
        try:
            yield running
        finally:
            if running.serving.is_running():  # a test failed before the SIGTERM test: drain and stop it all the same
                stop(running.serving, timeout=90)
            running.buildah.wait(30)
            print(f"\nready after {running.ready_after} s, first answer after {running.first_answer_after} s")


def test_the_image_runs_as_uid_1000_with_the_record_store_on_its_volume(served):
    assert served.box.config["User"] == USER and RECORDS in served.box.config["Volumes"]
    assert served.serving.uids().real == 1000


@pytest.mark.timeout(READY_WITHIN + 60)
def test_its_healthcheck_passes_once_it_serves(served):
    served.wait_healthy()
    assert served.probe().returncode == 0


def test_it_answers_an_image_with_the_documented_json(served):
    answer = served.post(f"/predictions/{MODEL_NAME}", imagegen.jpeg(seed=4, width=320, height=240))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["media"] == "image" and body["label"] in body["probabilities"] and body["verdict"]
    assert body["record"]["kept"] is True


def test_it_answers_a_video_with_the_documented_json(served):
    answer = served.post(f"/predictions/{MODEL_NAME}-video", videogen.clip(people=1, count=10))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["media"] == "video" and body["label"] in body["probabilities"] and isinstance(body["people"], list)
    assert body["record"]["kept"] is True


def test_sigterm_answers_the_request_it_accepted_then_stops(served):
    answers, clip = [], videogen.clip(people=1, count=6)

    def send() -> None:
        answers.append(served.post(f"/predictions/{MODEL_NAME}-video", clip))
        answers.append(time.monotonic())

    sending = threading.Thread(target=send)
    sending.start()
    time.sleep(0.3)  # sent and accepted, not yet answered (the clip takes about a second here); answered
    # within the drain's quiet period (deepfake_service/serving/drain.py)
    signalled = time.monotonic()
    stop(served.serving, timeout=120)
    sending.join(120)
    assert served.buildah.wait(30) == 0
    assert answers and answers[0].status_code == 200, answers
    assert answers[1] > signalled, "answered before the SIGTERM: the test proved nothing"


def test_the_records_stay_on_the_volume_after_it_stops(served):
    assert served.buildah.poll() is not None, "runs after the SIGTERM test"
    with sqlite3.connect(served.volume / "records.sqlite3") as db:
        media = [row[0] for row in db.execute("SELECT media FROM records")]
    assert sorted(media) == ["image", "video", "video"]
