"""A real TorchServe on free loopback ports, built from the shipped config files (see loadtest/harness.py)."""

from __future__ import annotations

import contextlib
import gzip
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import requests

from deepfake_service.project import CONFIG_PROPERTIES as SHIPPED_CONFIG
from deepfake_service.serving.server import Server
from loadtest.harness import built_server, model_config

__all__ = ["SHIPPED_CONFIG", "batch_logged", "batches", "counted", "metrics", "model_config", "running_server", "sent_together",
           "worker_pids"]

T = TypeVar("T")


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


def batches(server: Server) -> list[tuple[int, int]]:
    """(requests, rejected) for every batch the workers of ``server`` logged, oldest first."""
    return [(int(n), int(r)) for n, r in re.findall(r"batch of (\d+) requests, (\d+) rejected", model_log(server))]


def batch_logged(server: Server, since: int, wanted: Callable[[int, int], bool], timeout: float = 10) -> bool:
    """Whether a batch logged after the first ``since`` is ``wanted(requests, rejected)``, waiting at most
    ``timeout`` seconds for it: a worker's log line reaches the file a moment after its answers reach the
    client."""
    deadline = time.monotonic() + timeout
    while True:
        if any(wanted(n, r) for n, r in batches(server)[since:]):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def metrics(server: Server, ready: Callable[[list[str]], bool], timeout: float = 10) -> list[str]:
    """The Prometheus lines of ``server`` (comments left out) once ``ready(lines)``, or as they are after
    ``timeout`` seconds: the handler's own metrics travel in the worker's log, which reaches TorchServe a
    moment after the answer reaches the client."""
    deadline = time.monotonic() + timeout
    while True:
        text = requests.get(f"{server.metrics_url}/metrics", timeout=timeout).text
        lines = [line for line in text.splitlines() if not line.startswith("#")]
        if ready(lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


def counted(lines: list[str], name: str, label: str = "") -> float:
    """The value of metric ``name`` (its first line holding ``label``) in Prometheus ``lines``; 0 if absent."""
    found = [line for line in lines if line.startswith(name) and label in line]
    return float(found[0].rsplit(" ", 1)[1]) if found else 0.0


def sent_together(server: Server, send: Callable[[], T], wanted: Callable[[int, int], bool], tries: int = 3) -> T:
    """What ``send()`` (several requests at once) returned on a try in which one of the batches it caused was
    ``wanted(requests, rejected)``. Whether requests sent at once meet in one batch depends on when each
    arrives, so a try where they did not is repeated, at most ``tries`` times."""
    for _ in range(tries):
        since = len(batches(server))
        result = send()
        if batch_logged(server, since, wanted):
            return result
    raise AssertionError(f"in {tries} tries the requests never shared a batch as wanted; the last: {batches(server)[since:]}")
