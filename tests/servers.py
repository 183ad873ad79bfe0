"""A real TorchServe on free loopback ports, built from the shipped config files."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import yaml

from scripts.build_mar import DEFAULT_MODEL_CONFIG, build_mar
from scripts.serve import ROOT, Server, loopback_config, serving

SHIPPED_CONFIG = ROOT / "config" / "config.properties"


def model_config(target: Path, **overrides) -> Path:
    """The shipped model-config.yaml with top-level settings overridden (``handler`` merges key by key)."""
    config = yaml.safe_load(DEFAULT_MODEL_CONFIG.read_text())
    config["handler"].update(overrides.pop("handler", {}))
    config.update(overrides)
    target.write_text(yaml.safe_dump(config))
    return target


@contextlib.contextmanager
def running_server(
    workdir: Path, checkpoint: Path, name: str, version: str = "1.0", properties: dict | None = None, **settings
) -> Iterator[Server]:
    """Build ``name``.mar from ``checkpoint`` with ``settings`` over the shipped model config, serve it with
    ``properties`` over the shipped config.properties, and always stop it."""
    store = workdir / "model_store"
    build_mar(checkpoint, name, version, model_config=model_config(workdir / "model-config.yaml", **settings), export_dir=store)
    config = loopback_config(SHIPPED_CONFIG, workdir / "config.properties", **(properties or {}))
    with serving(config, store, [f"{name}={name}.mar"], workdir / "run", timeout=180) as server:
        yield server
