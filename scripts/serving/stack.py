"""The whole local stack: TorchServe from a run folder plus the upload page, up and down together."""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path

from page.lifecycle import start_page, stop_page
from scripts.project import CONFIG_PROPERTIES, MODEL_NAME, MODEL_STORE, PAGE_HOST, PAGE_PORT, RUN_DIR
from scripts.serving.process import running_pid, start, stop, wait_ready
from scripts.serving.properties import read_properties, write_properties
from scripts.serving.server import Server


@dataclass(frozen=True)
class StackSettings:
    """How to run the stack; the defaults are what ``make serve`` runs."""

    config: Path = CONFIG_PROPERTIES
    model_store: Path = MODEL_STORE
    models: list[str] = field(default_factory=lambda: [f"{MODEL_NAME}={MODEL_NAME}.mar"])
    run_dir: Path = RUN_DIR
    timeout: float = 300.0
    page_port: int = PAGE_PORT  # 0: no page
    page_host: str = PAGE_HOST
    enable_model_api: bool = False
    page_options: list[str] = field(default_factory=list)  # page/server.py options: --token-file, --identity-header

    @property
    def model_names(self) -> list[str]:
        return [m.split("=", 1)[0] for m in self.models]


def start_stack(settings: StackSettings) -> Server:
    """Start TorchServe and wait until every model is ready, then the page; prints the URLs.

    Raises ``ServeError`` (with everything stopped again) when either does not come up."""
    config = settings.config
    if settings.enable_model_api:
        settings.run_dir.mkdir(parents=True, exist_ok=True)
        config = write_properties({**read_properties(config), "enable_model_api": "true"}, settings.run_dir / "config.properties")
    server = start(config, settings.model_store, settings.models, settings.run_dir)
    try:
        seconds = wait_ready(server, settings.model_names, settings.timeout)
        print(f"ready in {seconds:.1f} s")
        print(usage(server, settings.model_names), flush=True)
        if settings.page_port:
            url = start_page(server, settings.model_names[0], settings.page_port, settings.page_host,
                             options=settings.page_options)
            print(f"Upload page: {url}", flush=True)
    except BaseException:
        stop_stack(settings.run_dir)
        raise
    return server


def stop_stack(run_dir: Path = RUN_DIR) -> bool:
    """Stop the page, then TorchServe (after accepted work drains); False when no server was running."""
    stop_page(run_dir.resolve())
    return stop(run_dir)


def run_stack(settings: StackSettings) -> int:
    """Serve in the foreground (containers): on SIGTERM or SIGINT drain, then stop. Returns the exit code."""
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    server = start_stack(settings)
    while not stopping.is_set() and running_pid(server.run_dir):
        stopping.wait(1.0)
    signalled = stopping.is_set()
    stop_stack(settings.run_dir)
    print("TorchServe stopped" if signalled else "TorchServe exited on its own", flush=True)
    return 0 if signalled else 1


def usage(server: Server, model_names: list[str]) -> str:
    """URLs and copy-paste calls for a running server."""
    name = model_names[0]
    return "\n".join(
        [
            f"TorchServe is ready (run folder {server.run_dir})",
            f"  inference:  {server.inference_url}/predictions/{name}",
            f"  management: {server.management_url}/models/{name}",
            f"  metrics:    {server.metrics_url}/metrics",
            "Token authorization is on; every call needs the key (make key prints it):",
            "  KEY=$(make -s key)",
            f"  curl -H \"Authorization: Bearer $KEY\" -T some.jpg {server.inference_url}/predictions/{name}",
            "Stop with: make stop",
        ]
    )
