"""Download a fine-tuned ViT checkpoint from the Hugging Face Hub (needs network access).

The library behind ``python -m scripts.fetch_checkpoint`` (see its ``--help``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import requests

from deepfake_service.project import CHECKPOINTS
from handler.checkpoint import CheckpointError, read_checkpoint_info
from handler.detectors import YUNET_FILE

ALLOWED_FILES = ["*.json", "*.safetensors"]
YUNET_URL = f"https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/{YUNET_FILE}"
MAX_FACE_MODEL_BYTES = 16 * 1024 * 1024


class FetchError(Exception):
    """The download failed or gave an unusable checkpoint."""


def hub_folder(repo_id: str) -> Path:
    """Where a Hub checkpoint is kept by default: checkpoints/<repository name>."""
    return CHECKPOINTS / repo_id.split("/")[-1]


def fetch_checkpoint(repo_id: str, output: Path, revision: str | None = None) -> Path:
    """Download ``repo_id`` into ``output`` and validate it; raises ``FetchError`` with the reason."""
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(repo_id, revision=revision, local_dir=output, allow_patterns=ALLOWED_FILES)
    except Exception as exc:  # network, auth and missing-repo errors all end the same way for a CLI
        raise FetchError(
            f"could not download {repo_id!r} from the Hugging Face Hub: {type(exc).__name__}: {exc}. "
            "Check network access (and HF_TOKEN for private repos), or run `make demo-checkpoint` for the offline demo."
        ) from exc
    try:
        info = read_checkpoint_info(output)
    except CheckpointError as exc:
        raise FetchError(f"{repo_id!r} is not a usable ViT checkpoint: {exc}") from exc
    print(f"{repo_id} -> {output}: labels {list(info.labels)}")
    return output


def fetch_face_model(output: Path, url: str = YUNET_URL, sha256: str | None = None, timeout: float = 60.0) -> Path:
    """Download the YuNet ONNX file into ``output``, check it loads in OpenCV; raises ``FetchError``."""
    import cv2

    target = output / YUNET_FILE
    partial = target.with_suffix(".part")
    output.mkdir(parents=True, exist_ok=True)
    try:
        with requests.get(url, stream=True, timeout=timeout) as response:
            response.raise_for_status()
            body = b""
            for chunk in response.iter_content(1 << 16):
                body += chunk
                if len(body) > MAX_FACE_MODEL_BYTES:
                    raise FetchError(f"{url} is larger than {MAX_FACE_MODEL_BYTES} bytes: not the YuNet model")
    except requests.RequestException as exc:
        raise FetchError(
            f"could not download the YuNet face model from {url}: {type(exc).__name__}: {exc}. Check network "
            "access, or keep face_detector: haar (needs no file)."
        ) from exc
    digest = hashlib.sha256(body).hexdigest()
    if sha256 and digest != sha256.lower():
        raise FetchError(f"{url} has sha256 {digest}, expected {sha256}")
    partial.write_bytes(body)
    try:
        cv2.FaceDetectorYN.create(str(partial), "", (320, 320))
    except cv2.error as exc:
        partial.unlink()
        raise FetchError(f"{url} did not load as a YuNet model: {exc}") from exc
    partial.replace(target)
    print(f"YuNet face model -> {target} (sha256 {digest}); set face_detector: yunet, face_model: {YUNET_FILE}")
    return target
