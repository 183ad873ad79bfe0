"""Lay out the folder KServe's TorchServe runtime loads: ``config/config.properties`` + ``model-store/*.mar``.

The library behind ``python -m scripts.kserve_layout`` (see its ``--help``).
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import yaml

from deepfake_service.project import CONFIG_PROPERTIES
from deepfake_service.serving.properties import read_properties, write_properties

KSERVE_PORT = 8085
MODEL_STORE = "/mnt/models/model-store"  # where KServe's storage initializer puts the model-store folder


def archive_settings(mar: Path) -> tuple[str, str, dict]:
    """(model name, version, model-config.yaml) from inside an archive."""
    with zipfile.ZipFile(mar) as archive:
        manifest = json.loads(archive.read("MAR-INF/MANIFEST.json"))
        config = yaml.safe_load(archive.read("model-config.yaml")) if "model-config.yaml" in archive.namelist() else {}
    return manifest["model"]["modelName"], manifest["model"]["modelVersion"], config or {}


def kserve_properties(mar: Path, source: Path) -> dict[str, str]:
    name, version, config = archive_settings(mar)
    properties = read_properties(source)
    properties.update(
        inference_address=f"http://0.0.0.0:{KSERVE_PORT}",
        management_address=f"http://0.0.0.0:{KSERVE_PORT}",
        metrics_address="http://0.0.0.0:8082",
        grpc_inference_address="0.0.0.0",
        enable_metrics_api="true",
        service_envelope="kservev2",
        disable_token_authorization="true",
        model_store=MODEL_STORE,
    )
    snapshot = {
        "name": "startup.cfg",
        "modelCount": 1,
        "models": {
            name: {
                version: {
                    "defaultVersion": True,
                    "marName": mar.name,
                    "minWorkers": config.get("minWorkers", 1),
                    "maxWorkers": config.get("maxWorkers", 1),
                    "batchSize": 1,
                    "maxBatchDelay": config.get("maxBatchDelay", 50),
                    "responseTimeout": config.get("responseTimeout", 120),
                }
            }
        },
    }
    properties["model_snapshot"] = json.dumps(snapshot, separators=(",", ":"))
    return properties


def lay_out(mar: Path, output: Path, source: Path = CONFIG_PROPERTIES) -> Path:
    """Write ``output/config/config.properties`` and ``output/model-store/<archive>``; returns ``output``."""
    (output / "config").mkdir(parents=True, exist_ok=True)
    (output / "model-store").mkdir(parents=True, exist_ok=True)
    write_properties(kserve_properties(mar, source), output / "config" / "config.properties")
    shutil.copy2(mar, output / "model-store" / mar.name)
    return output
