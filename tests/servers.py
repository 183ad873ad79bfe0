"""A real TorchServe on free loopback ports, built from the shipped config files (see loadtest/harness.py)."""

from __future__ import annotations

import contextlib
import gzip
from pathlib import Path
from typing import Iterator

import requests

from deepfake_service.project import CONFIG_PROPERTIES as SHIPPED_CONFIG
from deepfake_service.serving.server import Server
from loadtest.harness import built_server, model_config

__all__ = ["SHIPPED_CONFIG", "model_config", "running_server", "worker_pids"]


@contextlib.contextmanager
def running_server(
    workdir: Path, checkpoint: Path, name: str, version: str = "1.0", properties: dict | None = None, **settings
) -> Iterator[Server]:
    """Build ``name``.mar from ``checkpoint`` with ``settings`` over the shipped model config, serve it with
    ``properties`` over the shipped config.properties, and always stop it."""
    config = model_config(workdir / "model-config.yaml", **settings)
    with built_server(workdir, checkpoint, name, version, config, properties, timeout=180) as server:
        yield server


def worker_pids(server: Server, name: str, timeout: float = 60) -> list[int]:
    """The process ids of model ``name``'s READY workers, from the management API."""
    described = requests.get(f"{server.management_url}/models/{name}", headers=server.headers("management"), timeout=timeout)
    return [w["pid"] for w in described.json()[0]["workers"] if w["status"] == "READY"]


def model_log(server: Server) -> str:
    """The worker log of ``server``, rolled parts first: TorchServe rolls ``model_log.log`` at midnight into
    ``model_log.<dd-MMM>.log.gz``, so a test that spans midnight finds its load lines there."""
    logs = server.run_dir / "logs"
    rolled = sorted(logs.glob("model_log.*.log.gz"), key=lambda path: path.stat().st_mtime)
    current = logs / "model_log.log"
    return "".join([gzip.decompress(path.read_bytes()).decode(errors="replace") for path in rolled]
                   + [current.read_text(errors="replace") if current.is_file() else ""])
