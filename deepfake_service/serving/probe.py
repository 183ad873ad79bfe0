"""Health probes for containers and Kubernetes: liveness and readiness of a run folder's server."""

from __future__ import annotations

from pathlib import Path

import requests

from deepfake_service.serving.process import DRAINING
from deepfake_service.serving.server import ServeError, recorded


def probe(run_dir: Path, readiness: bool = False, timeout: float = 4.0) -> str | None:
    """Health of the server started from ``run_dir``: None when healthy, else the reason.

    Liveness: ``/ping`` answers 200 with the current inference key. Readiness also fails once the
    ``draining`` marker exists (written by the preStop hook), so the instance leaves the load balancer
    before TorchServe is stopped."""
    run_dir = run_dir.resolve()
    if readiness and (run_dir / DRAINING).exists():
        return "draining"
    try:
        server = recorded(run_dir)
        answer = requests.get(f"{server.inference_url}/ping", headers=server.headers(), timeout=timeout)
    except (OSError, ServeError, KeyError, requests.RequestException) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None if answer.status_code == 200 else f"/ping answered {answer.status_code}"
