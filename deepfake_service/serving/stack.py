"""The whole local stack: TorchServe from a run folder plus its companions (the upload page, which
``scripts/serve.py`` composes in: this library never imports ``page/``), up and down together."""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Sequence

from deepfake_service.project import CONFIG_PROPERTIES, MODEL_NAME, MODEL_STORE, RUN_DIR
from deepfake_service.serving.process import running_pid, start, stop, wait_ready
from deepfake_service.serving.properties import read_properties, snapshot_models, write_properties
from deepfake_service.serving.server import ServeError, Server
from handler.roles import is_video_twin, video_registration


class Companion(Protocol):
    """A process that runs beside TorchServe: started once the models are ready, stopped before it."""

    def start(self, server: Server, model: str) -> str:
        """Start beside ``server`` for ``model``; returns a line to print (where to find it)."""

    def stop(self, run_dir: Path) -> bool:
        """Stop the one started from ``run_dir``; False when none was running."""


@dataclass(frozen=True)
class StackSettings:
    """How to run the stack; the defaults are what ``make serve`` runs."""

    config: Path = CONFIG_PROPERTIES
    model_store: Path = MODEL_STORE
    # NAME=FILE.mar to load; empty: what config.properties' model_snapshot lists (the KServe layout).
    models: list[str] = field(default_factory=lambda: [f"{MODEL_NAME}={MODEL_NAME}.mar"])
    run_dir: Path = RUN_DIR
    timeout: float = 300.0
    enable_model_api: bool = False

    @property
    def model_names(self) -> list[str]:
        """The models to wait for: ``models``, or with none given those the config's model_snapshot loads."""
        return [m.split("=", 1)[0] for m in self.models] or snapshot_models(read_properties(self.config))


def start_stack(settings: StackSettings, companions: Sequence[Companion] = ()) -> Server:
    """Start TorchServe and wait until every model is ready, then the companions; prints the URLs.

    Raises ``ServeError`` (with everything stopped again) when either does not come up, and before
    starting anything when no model is named and the config has no model_snapshot."""
    names = settings.model_names
    if not names:
        raise ServeError(f"no model to serve: name one with --model, or give a config whose model_snapshot lists "
                         f"them (python -m scripts.kserve_layout writes one); {settings.config} has none")
    config = settings.config
    if settings.enable_model_api:
        settings.run_dir.mkdir(parents=True, exist_ok=True)
        config = write_properties({**read_properties(config), "enable_model_api": "true"}, settings.run_dir / "config.properties")
    server = start(config, settings.model_store, settings.models, settings.run_dir)
    names = snapshot_models(server.properties)  # with the video twins (serving/registrations.py)
    names.sort(key=is_video_twin)
    try:
        seconds = wait_ready(server, names, settings.timeout)
        print(f"ready in {seconds:.1f} s")
        print(usage(server, names), flush=True)
        for companion in companions:
            print(companion.start(server, names[0]), flush=True)
    except BaseException:
        stop_stack(settings.run_dir, companions)
        raise
    return server


def stop_stack(run_dir: Path = RUN_DIR, companions: Sequence[Companion] = ()) -> bool:
    """Stop the companions, then TorchServe (after accepted work drains); False when no server was running."""
    for companion in companions:
        companion.stop(run_dir.resolve())
    return stop(run_dir)


def run_stack(settings: StackSettings, companions: Sequence[Companion] = ()) -> int:
    """Serve in the foreground (containers): on SIGTERM or SIGINT drain, then stop. Returns the exit code."""
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    server = start_stack(settings, companions)
    while not stopping.is_set() and running_pid(server.run_dir):
        stopping.wait(1.0)
    signalled = stopping.is_set()
    stop_stack(settings.run_dir, companions)
    print("TorchServe stopped" if signalled else "TorchServe exited on its own", flush=True)
    return 0 if signalled else 1


def usage(server: Server, model_names: list[str]) -> str:
    """URLs and copy-paste calls for a running server."""
    name = model_names[0]
    videos = video_registration(name, model_names)
    return "\n".join(
        [
            f"TorchServe is ready (run folder {server.run_dir})",
            f"  images:     {server.inference_url}/predictions/{name}",
            f"  videos:     {server.inference_url}/predictions/{videos}",
            f"  management: {server.management_url}/models/{name}",
            f"  metrics:    {server.metrics_url}/metrics",
            "Token authorization is on; every call needs the key (make key prints it):",
            "  KEY=$(make -s key)",
            f"  curl -H \"Authorization: Bearer $KEY\" -T some.jpg {server.inference_url}/predictions/{name}",
            "Stop with: make stop",
        ]
    )
