"""The fetch command fails with one clear line, not a traceback, when the Hub cannot be reached."""

from __future__ import annotations

import os
import subprocess
import sys

from deepfake_service.project import ROOT


def test_fetch_without_network_exits_with_a_clear_error(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf-home"))
    result = subprocess.run(
        [sys.executable, "-m", "scripts.fetch_checkpoint", "dima806/deepfake_vs_real_image_detection", "--output", str(tmp_path / "out")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0
    assert "error: could not download 'dima806/deepfake_vs_real_image_detection'" in result.stderr
    assert "Traceback" not in result.stderr


def test_face_model_fetch_without_network_exits_with_a_clear_error(tmp_path):
    from deepfake_service.serving.properties import free_port

    closed = f"http://127.0.0.1:{free_port()}/face_detection_yunet_2023mar.onnx"  # nothing listens there
    result = subprocess.run(
        [sys.executable, "-m", "scripts.fetch_checkpoint", "--face-model", "--output", str(tmp_path), "--face-model-url", closed],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0
    assert "error: could not download the YuNet face model" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.iterdir())
