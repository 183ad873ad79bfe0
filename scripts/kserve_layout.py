"""Lay out the folder KServe's TorchServe runtime loads: ``config/config.properties`` + ``model-store/*.mar``.

The config starts from config/config.properties (same caps, queue and URL policy) and adds what the
runtime needs: listeners on the pod's port 8085 for KServe's model server to call, the kservev2 service
envelope (v2 / Open Inference Protocol), and a model snapshot that loads the archive at start.

Differences an operator must know:
  * batchSize is 1: TorchServe's kservev2 envelope reads only the first request of a batch.
  * token authorization is off inside the pod: KServe's model server calls TorchServe without a key.
    Protect the InferenceService at the ingress or mesh (e.g. Istio AuthorizationPolicy) instead.

  python -m scripts.kserve_layout --mar model_store/deepfake-detector.mar --output build/kserve
  # then copy build/kserve to the storageUri of deploy/kserve/inferenceservice.yaml
"""

from __future__ import annotations

import argparse
import json
import shutil
import zipfile
from pathlib import Path

import yaml

from scripts.serve import ROOT, read_properties, write_properties

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


def lay_out(mar: Path, output: Path, source: Path = ROOT / "config" / "config.properties") -> Path:
    """Write ``output/config/config.properties`` and ``output/model-store/<archive>``; returns ``output``."""
    (output / "config").mkdir(parents=True, exist_ok=True)
    (output / "model-store").mkdir(parents=True, exist_ok=True)
    write_properties(kserve_properties(mar, source), output / "config" / "config.properties")
    shutil.copy2(mar, output / "model-store" / mar.name)
    return output


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mar", type=Path, default=ROOT / "model_store" / "deepfake-detector.mar", help="(default: model_store/deepfake-detector.mar)")
    parser.add_argument("--output", type=Path, default=ROOT / "build" / "kserve", help="(default: build/kserve)")
    args = parser.parse_args(argv)
    out = lay_out(args.mar, args.output)
    print(f"wrote {out}/config/config.properties and {out}/model-store/{args.mar.name}")


if __name__ == "__main__":
    main()
