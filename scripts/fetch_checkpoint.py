"""Download a fine-tuned ViT checkpoint from the Hugging Face Hub (needs network access).

Only safetensors weights, JSON configs and the preprocessor are fetched; pickle ``.bin`` files never are.
Published fine-tunes: Sxhni/deepfake-detector-vit, dima806/deepfake_vs_real_image_detection.

``--face-model`` also downloads OpenCV's YuNet face detector (an ONNX file of ~230 KB from the OpenCV
model zoo) into the checkpoint folder, where ``face_detector: yunet`` / ``face_model:`` in
config/model-config.yaml pick it up and scripts.build_mar packs it into the archive:

  python -m scripts.fetch_checkpoint dima806/deepfake_vs_real_image_detection --face-model
  python -m scripts.fetch_checkpoint --face-model --output checkpoints/demo      # detector only
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import requests

from handler.checkpoint import CheckpointError, read_checkpoint_info

ALLOWED_FILES = ["*.json", "*.safetensors"]
YUNET_FILE = "face_detection_yunet_2023mar.onnx"
YUNET_URL = f"https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/{YUNET_FILE}"
MAX_FACE_MODEL_BYTES = 16 * 1024 * 1024


class FetchError(Exception):
    """The download failed or gave an unusable checkpoint."""


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("repo_id", nargs="?", help="Hub repository, e.g. dima806/deepfake_vs_real_image_detection")
    parser.add_argument("--output", type=Path, help="folder to write (default: checkpoints/<repo name>)")
    parser.add_argument("--revision", help="branch, tag or commit to download")
    parser.add_argument("--face-model", action="store_true", help=f"also download the YuNet face detector ({YUNET_FILE})")
    parser.add_argument("--face-model-url", default=YUNET_URL, help="where YuNet is downloaded from (default: the OpenCV model zoo)")
    parser.add_argument("--face-model-sha256", help="refuse the YuNet file unless it has this SHA-256")
    args = parser.parse_args(argv)
    if not args.repo_id and not (args.face_model and args.output):
        parser.error("give a repo_id, or --face-model with --output for the detector alone")
    output = args.output or Path("checkpoints") / args.repo_id.split("/")[-1]
    try:
        if args.repo_id:
            fetch_checkpoint(args.repo_id, output, args.revision)
        if args.face_model:
            fetch_face_model(output, args.face_model_url, args.face_model_sha256)
    except FetchError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
