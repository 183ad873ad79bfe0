"""Reading a built .mar back: its members and its manifest."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path


def members(mar: Path) -> dict[str, bytes]:
    """Every file in the archive, by its name inside it."""
    with zipfile.ZipFile(mar) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def manifest(mar: Path) -> dict:
    """The archive's MAR-INF/MANIFEST.json."""
    return json.loads(members(mar)["MAR-INF/MANIFEST.json"])
