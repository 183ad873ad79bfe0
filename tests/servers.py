"""A real TorchServe on free loopback ports, built from the shipped config files."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path
from typing import Iterator

import yaml

from scripts.build_mar import DEFAULT_MODEL_CONFIG, build_mar
from scripts.serve import ROOT, Server, read_properties, start, stop, wait_ready, write_properties

SHIPPED_CONFIG = ROOT / "config" / "config.properties"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def loopback_config(target: Path, **overrides: str) -> Path:
    """The shipped config.properties with every listener moved to a free loopback port."""
    properties = read_properties(SHIPPED_CONFIG)
    for kind in ("inference", "management", "metrics"):
        properties[f"{kind}_address"] = f"http://127.0.0.1:{free_port()}"
    properties["grpc_inference_port"] = str(free_port())
    properties["grpc_management_port"] = str(free_port())
    properties.update(overrides)
    return write_properties(properties, target)


def model_config(target: Path, **overrides) -> Path:
    """The shipped model-config.yaml with top-level settings overridden."""
    config = yaml.safe_load(DEFAULT_MODEL_CONFIG.read_text())
    config.update(overrides)
    target.write_text(yaml.safe_dump(config))
    return target


@contextlib.contextmanager
def running_server(workdir: Path, checkpoint: Path, name: str, version: str = "1.0", **batching) -> Iterator[Server]:
    """Build ``name``.mar from ``checkpoint``, serve it, yield the server, always stop it."""
    store = workdir / "model_store"
    build_mar(checkpoint, name, version, model_config=model_config(workdir / "model-config.yaml", **batching), export_dir=store)
    config = loopback_config(workdir / "config.properties")
    run_dir = workdir / "run"
    server = start(config, store, [f"{name}={name}.mar"], run_dir)
    try:
        wait_ready(server, [name], timeout=180)
        yield server
    finally:
        stop(run_dir)
