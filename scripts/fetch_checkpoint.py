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
import sys
from pathlib import Path

from deepfake_service.packaging.fetch import YUNET_FILE, YUNET_URL, FetchError, fetch_checkpoint, fetch_face_model, hub_folder


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
    output = args.output or hub_folder(args.repo_id)
    try:
        if args.repo_id:
            fetch_checkpoint(args.repo_id, output, args.revision)
        if args.face_model:
            fetch_face_model(output, args.face_model_url, args.face_model_sha256)
    except FetchError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
