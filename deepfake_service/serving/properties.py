"""TorchServe's ``config.properties``: read, write, and move a copy's listeners to free loopback ports."""

from __future__ import annotations

import json
from pathlib import Path

from deepfake_service.ports import free_port


def read_properties(path: Path) -> dict[str, str]:
    """Parse a ``config.properties`` file (``key=value`` lines, ``#`` comments)."""
    properties = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")) and "=" in line:
            key, value = line.split("=", 1)
            properties[key.strip()] = value.strip()
    return properties


def write_properties(properties: dict[str, str], path: Path) -> Path:
    path.write_text("".join(f"{key}={value}\n" for key, value in properties.items()))
    return path


def loopback_config(source: Path, target: Path, **overrides: str) -> Path:
    """``source`` config.properties with every listener moved to a free loopback port."""
    properties, taken = read_properties(source), set()
    for kind in ("inference", "management", "metrics"):
        properties[f"{kind}_address"] = f"http://127.0.0.1:{free_port(taken)}"
    properties["grpc_inference_port"] = str(free_port(taken))
    properties["grpc_management_port"] = str(free_port(taken))
    properties.update(overrides)
    return write_properties(properties, target)


def listener_ports(properties: dict[str, str]) -> dict[str, tuple[str, int]]:
    """Each listener's (host, port) by setting name, as TorchServe will bind them."""
    listeners = {}
    for kind in ("inference", "management", "metrics"):
        address = properties.get(f"{kind}_address")
        if address:
            host, _, port = address.split("://", 1)[-1].rpartition(":")
            listeners[f"{kind}_address"] = (host, int(port))
    for kind in ("grpc_inference", "grpc_management"):
        port = properties.get(f"{kind}_port")
        if port:
            listeners[f"{kind}_port"] = (properties.get(f"{kind}_address", "127.0.0.1"), int(port))
    return listeners


def snapshot_models(properties: dict[str, str]) -> list[str]:
    """The model names a config's ``model_snapshot`` loads at start (none without a snapshot)."""
    try:
        return sorted(json.loads(properties["model_snapshot"])["models"])
    except (KeyError, ValueError, TypeError):
        return []
