"""Start and stop the upload page beside a running TorchServe (detached, its pid in the run folder)."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import requests

from deepfake_service.project import KEY_FILE, PAGE_HOST, ROOT
from deepfake_service.serving.process import terminate_group
from deepfake_service.serving.properties import snapshot_models
from deepfake_service.serving.server import ServeError, Server
from handler.roles import video_registration

PAGE_PID_FILE = "page.pid"
PAGE_LOG = "page.log"


def start_page(server: Server, model: str, port: int, host: str = PAGE_HOST, timeout: float = 30.0,
               options: Sequence[str] = ()) -> str:
    """Start the upload page (page/server.py) beside ``server``, detached; returns its URL once it answers.

    It forwards to TorchServe with the key from the run folder's key_file.json; ``options`` are more of its
    command-line options (page token, identity header, limits); ``stop_page`` stops it."""
    run_dir = server.run_dir
    # Videos go to the model's video twin when the server registered one (serving/registrations.py).
    videos = video_registration(model, snapshot_models(server.properties))
    command = [
        sys.executable, "-m", "page.server", "--inference-url", server.inference_url, "--model", model, "--video-model", videos,
        "--key-file", str(run_dir / KEY_FILE), "--host", host, "--port", str(port), *options,
    ]
    with open(run_dir / PAGE_LOG, "ab") as out:  # the audit trail of earlier starts is kept
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    (run_dir / PAGE_PID_FILE).write_text(str(process.pid))
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            if requests.get(f"{url}healthz", timeout=2).status_code == 200:
                return url
        except requests.RequestException:
            pass
        time.sleep(0.2)
    stop_page(run_dir)
    raise ServeError(f"the upload page did not start on {url}:\n{(run_dir / PAGE_LOG).read_text()[-2000:]}")


def stop_page(run_dir: Path, timeout: float = 10.0) -> bool:
    """Stop the upload page started from ``run_dir``; False when none was running."""
    try:
        pid = int((run_dir / PAGE_PID_FILE).read_text())
    except (OSError, ValueError):
        return False
    (run_dir / PAGE_PID_FILE).unlink(missing_ok=True)
    terminate_group(pid, timeout)
    return True


@dataclass(frozen=True)
class UploadPage:
    """The upload page as a companion of the local stack (deepfake_service/serving/stack.py:Companion):
    ``port``, ``host`` and more page/server.py ``options`` (page token, identity header)."""

    port: int
    host: str = PAGE_HOST
    options: Sequence[str] = ()

    def start(self, server: Server, model: str) -> str:
        return f"Upload page: {start_page(server, model, self.port, self.host, options=self.options)}"

    def stop(self, run_dir: Path) -> bool:
        return stop_page(run_dir)
