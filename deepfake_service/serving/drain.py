"""Let the work a TorchServe already accepted finish before it is stopped."""

from __future__ import annotations

import time

import requests

from deepfake_service.serving.server import ServeError, Server


def drain(server: Server, quiet: float = 2.0, timeout: float = 30.0) -> bool:
    """Wait until no job is queued and no prediction has arrived for ``quiet`` seconds; at most ``timeout``.

    TorchServe drops in-flight requests on SIGTERM and offers no way to refuse new ones first (scaling
    workers to 0 strands queued requests), so this lets the work already accepted finish. Returns
    False when the server did not go quiet in time (or could not be asked).
    """
    deadline = time.monotonic() + timeout
    last, quiet_since = None, time.monotonic()
    while time.monotonic() < deadline:
        try:
            arrived = _predictions_arrived(server)
            queued = _jobs_queued(server)
        except (requests.RequestException, ServeError, ValueError):
            return False
        if arrived != last or queued:
            last, quiet_since = arrived, time.monotonic()
        elif time.monotonic() - quiet_since >= quiet:
            return True
        time.sleep(0.2)
    return False


def _predictions_arrived(server: Server) -> float:
    text = requests.get(f"{server.metrics_url}/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("ts_inference_requests_total{"))


def _jobs_queued(server: Server) -> int:
    listed = requests.get(f"{server.management_url}/models", headers=server.headers("management"), timeout=5).json()
    queued = 0
    for model in listed.get("models", []):
        described = requests.get(
            f"{server.management_url}/models/{model['modelName']}/all", headers=server.headers("management"), timeout=5
        ).json()
        queued += sum(version.get("jobQueueStatus", {}).get("pendingRequests", 0) for version in described)
    return queued
