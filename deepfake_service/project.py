"""Project-wide names and paths: the one place they are written (standard library only, so the
preflight check can import it before the virtual environment exists)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MODEL_NAME = "deepfake-detector"  # served at /predictions/<MODEL_NAME>
MODEL_VERSION = "1.0"  # the version `make serve` builds
IMAGE = f"localhost/{MODEL_NAME}:latest"  # the container image `make image` builds

CONFIG_DIR = ROOT / "config"
CONFIG_PROPERTIES = CONFIG_DIR / "config.properties"  # TorchServe's settings (ports, auth, limits)
MODEL_CONFIG = CONFIG_DIR / "model-config.yaml"  # workers, batching, handler options packed in each .mar
RECORDS_CONFIG = CONFIG_DIR / "records.yaml"  # the record store: URL, matching, retention

HANDLER_PACKAGE = ROOT / "handler"
MODEL_STORE = ROOT / "model_store"
CHECKPOINTS = ROOT / "checkpoints"  # fetched checkpoints and the demo one
FACE_DETECTORS = ROOT / "models"  # face detector files taken at setup (scripts.fetch_face_detector, which make serve and make test run)
DEMO_CHECKPOINT = CHECKPOINTS / "demo"
RUN_DIR = ROOT / "run"  # the running server's logs, pid files and key file
KEY_FILE = "key_file.json"  # TorchServe writes its tokens here, in the server's working folder

PAGE_HOST = "127.0.0.1"
PAGE_PORT = 7860
LOCUSTFILE = ROOT / "loadtest" / "locustfile.py"


def read_model_config(model_config: Path = MODEL_CONFIG) -> dict:
    """A model-config.yaml as a mapping (the shipped one by default): workers, batching and the
    ``handler`` section. The one reader of that file for every tool."""
    import yaml

    return yaml.safe_load(model_config.read_text()) or {}


def handler_options(model_config: Path = MODEL_CONFIG, **overrides):
    """The ``handler:`` section of ``model_config`` (the shipped one by default) as validated
    ``HandlerOptions``, with ``overrides`` (None values ignored): the one source of the image limits,
    face settings and runtime that tools share with the served model."""
    from handler.options import HandlerOptions

    section = dict(read_model_config(model_config).get("handler") or {})
    section.update({k: v for k, v in overrides.items() if v is not None})
    return HandlerOptions.from_mapping(section)


def archive_path(name: str = MODEL_NAME, store: Path = MODEL_STORE) -> Path:
    """Where the archive of model ``name`` lives in a model store."""
    return store / f"{name}.mar"
