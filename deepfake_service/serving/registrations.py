"""What TorchServe registers at start: each archive as ``<name>`` and, when its model-config.yaml has a
``video:`` section, again as ``<name>-video`` with that section's workers and batching (handler/roles.py
says what each registration answers). Written as the ``model_snapshot`` a config starts with, the one
way TorchServe takes per-registration batch sizes at start-up (an archive's own model-config.yaml
would otherwise set them for every name it is served under).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import yaml

from deepfake_service.serving.server import ServeError
from handler.roles import video_section, video_twin

# The settings a snapshot entry takes, with TorchServe's defaults for an archive that leaves them out.
SNAPSHOT_DEFAULTS = {"minWorkers": 1, "maxWorkers": 1, "batchSize": 1, "maxBatchDelay": 100, "responseTimeout": 120}


def archive_settings(mar: Path) -> tuple[str, str, dict]:
    """(model name, version, model-config.yaml) from inside an archive; raises ``ServeError`` when
    ``mar`` is missing or not a model archive."""
    try:
        with zipfile.ZipFile(mar) as archive:
            manifest = json.loads(archive.read("MAR-INF/MANIFEST.json"))
            packed = manifest["model"].get("configFile")  # the model config keeps its file name in the archive
            config = yaml.safe_load(archive.read(packed)) if packed else {}
        return manifest["model"]["modelName"], manifest["model"]["modelVersion"], config or {}
    except (OSError, zipfile.BadZipFile, KeyError, TypeError, ValueError, yaml.YAMLError) as exc:
        raise ServeError(f"{mar}: not a readable model archive ({type(exc).__name__}: {exc})") from exc


def _entry(mar: str, version: str, settings: dict, batch_size: int | None) -> dict:
    entry = {key: settings.get(key, default) for key, default in SNAPSHOT_DEFAULTS.items()}
    if batch_size is not None:
        entry["batchSize"] = batch_size
    return {version: {"defaultVersion": True, "marName": mar, **entry}}


def registrations(models: list[str], model_store: Path, batch_size: int | None = None) -> dict[str, dict]:
    """Snapshot entries by registration name for ``models`` (``NAME=FILE.mar`` or ``FILE.mar``, in
    ``model_store``): the image registration from the archive's top-level settings, its video twin
    from those with the ``video:`` section over them. ``batch_size`` overrides every batch size."""
    found = {}
    for model in models:
        alias, _, mar = model.rpartition("=")
        name, version, config = archive_settings(model_store / mar)
        name = alias or name
        found[name] = _entry(mar, version, config, batch_size)
        section = video_section(config)
        if section is not None:
            found[video_twin(name)] = _entry(mar, version, {**config, **section}, batch_size)
    return found


def model_snapshot(models: list[str], model_store: Path, batch_size: int | None = None) -> str:
    """The ``model_snapshot`` property that registers ``models`` (see ``registrations``)."""
    entries = registrations(models, model_store, batch_size)
    return json.dumps({"name": "startup.cfg", "modelCount": len(entries), "models": entries}, separators=(",", ":"))
