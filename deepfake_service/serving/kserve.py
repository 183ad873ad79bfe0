"""The config this project's own image runs under KServe as a custom predictor container
(deploy/kserve/inferenceservice.yaml), not under KServe's TorchServe runtime, which KServe is removing:
``config/config.properties`` (+ ``model-store/*.mar`` unless only the config is asked for).

The library behind ``python -m scripts.kserve_layout`` (see its ``--help``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from deepfake_service.project import CONFIG_PROPERTIES
from deepfake_service.serving.properties import read_properties, write_properties
from deepfake_service.serving.registrations import model_snapshot

KSERVE_PORT = 8085  # the predictor container's port (containerPort in the InferenceService)
MODEL_STORE = "/mnt/models/model-store"  # where KServe's storage initializer puts the model-store folder


def kserve_properties(mar: Path, source: Path, model_store: str = MODEL_STORE) -> dict[str, str]:
    """``source`` config.properties for a KServe predictor pod serving ``mar``: the v2 envelope, inference
    on the pod's port for KServe's ingress, management and gRPC kept on loopback (the model API stays
    off), metrics on the pod's port 8082 for scraping, and a model snapshot that loads the archive at
    start, with its video twin (deepfake_service/serving/registrations.py), each with batchSize 1
    (TorchServe's kservev2 envelope reads only the first request of a batch).
    Token authorization is off: KServe's ingress calls the container without TorchServe's key, so the
    InferenceService is protected at the ingress or mesh instead (docs/deployment.md)."""
    properties = read_properties(source)
    properties.update(
        inference_address=f"http://0.0.0.0:{KSERVE_PORT}",
        management_address="http://127.0.0.1:8081",
        metrics_address="http://0.0.0.0:8082",
        grpc_inference_address="127.0.0.1",
        grpc_management_address="127.0.0.1",
        enable_metrics_api="true",
        service_envelope="kservev2",
        disable_token_authorization="true",
        model_store=model_store,
    )
    properties["model_snapshot"] = model_snapshot([mar.name], mar.parent, batch_size=1)
    return properties


def lay_out(mar: Path, output: Path, source: Path = CONFIG_PROPERTIES, model_store: str = MODEL_STORE,
            copy_archive: bool = True) -> Path:
    """Write ``output/config/config.properties`` (its model store: ``model_store``) and, with
    ``copy_archive``, ``output/model-store/<archive>``; returns ``output``."""
    (output / "config").mkdir(parents=True, exist_ok=True)
    write_properties(kserve_properties(mar, source, model_store), output / "config" / "config.properties")
    if copy_archive:
        (output / "model-store").mkdir(parents=True, exist_ok=True)
        shutil.copy2(mar, output / "model-store" / mar.name)
    return output
