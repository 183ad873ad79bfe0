"""A running TorchServe as its clients see it: where it listens, and the tokens to call it with."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from deepfake_service.project import KEY_FILE
from deepfake_service.serving.properties import read_properties

PID_FILE = "torchserve.pid"
SERVING_PROPERTIES = "serving.properties"  # the config a run folder's server was started with


class ServeError(Exception):
    """TorchServe did not come up (or down) as asked, or cannot be reached."""


@dataclass(frozen=True)
class Server:
    """Where a running TorchServe listens and where its run folder is."""

    run_dir: Path
    properties: dict[str, str]

    @property
    def inference_url(self) -> str:
        return self.properties["inference_address"]

    @property
    def management_url(self) -> str:
        return self.properties["management_address"]

    @property
    def metrics_url(self) -> str:
        return self.properties["metrics_address"]

    def key(self, kind: str = "inference") -> str:
        """The current token of ``kind`` (inference, management or API) from key_file.json."""
        return read_keys(self.run_dir)[kind]

    def headers(self, kind: str = "inference") -> dict[str, str]:
        """The Authorization header (none when the config turned token authorization off)."""
        if self.properties.get("disable_token_authorization") == "true":
            return {}
        return {"Authorization": f"Bearer {self.key(kind)}"}


def read_key_file(path: Path) -> dict[str, str]:
    """Tokens by kind (inference, management, API) from a TorchServe key_file.json; raises
    ``ServeError`` while it is missing or unreadable (TorchServe has not written it yet)."""
    try:
        entries = json.loads(path.read_text())
        return {kind: entry["key"] for kind, entry in entries.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ServeError(f"no readable {path} yet: {exc}") from exc


def read_keys(run_dir: Path) -> dict[str, str]:
    """Tokens by kind from ``run_dir``'s key_file.json (see ``read_key_file``)."""
    return read_key_file(run_dir / KEY_FILE)


def recorded(run_dir: Path) -> Server:
    """The server as recorded in ``run_dir`` when it was started (running or not)."""
    return Server(run_dir=run_dir.resolve(), properties=read_properties(run_dir / SERVING_PROPERTIES))
