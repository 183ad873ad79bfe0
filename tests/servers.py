"""A real TorchServe on free loopback ports, built from the shipped config files (see loadtest/harness.py)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from loadtest.harness import built_server, model_config
from scripts.project import CONFIG_PROPERTIES as SHIPPED_CONFIG
from scripts.serving.server import Server

__all__ = ["SHIPPED_CONFIG", "model_config", "running_server"]


@contextlib.contextmanager
def running_server(
    workdir: Path, checkpoint: Path, name: str, version: str = "1.0", properties: dict | None = None, **settings
) -> Iterator[Server]:
    """Build ``name``.mar from ``checkpoint`` with ``settings`` over the shipped model config, serve it with
    ``properties`` over the shipped config.properties, and always stop it."""
    config = model_config(workdir / "model-config.yaml", **settings)
    with built_server(workdir, checkpoint, name, version, config, properties, timeout=180) as server:
        yield server
