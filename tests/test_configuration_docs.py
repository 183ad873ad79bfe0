"""docs/configuration.md's settings tables say what the shipped model-config.yaml and the code say."""

from __future__ import annotations

import re
from dataclasses import fields

import yaml

from deepfake_service.project import MODEL_CONFIG, RECORDS_CONFIG, ROOT
from handler.options import HandlerOptions

DOC = ROOT / "docs" / "configuration.md"


def documented() -> dict[str, str]:
    """``key -> shipped`` from every table row of the form | `key` | shipped | meaning |."""
    rows = re.findall(r"^\| `([\w.]+)` \| ([^|]+) \|", DOC.read_text(), re.MULTILINE)
    return {key: value.strip() for key, value in rows}


def shown(value) -> str:
    if isinstance(value, str):
        return f'`{value}`' if value else '`""`'
    return str(value)


def test_every_handler_option_is_documented_with_its_shipped_value():
    shipped = yaml.safe_load(MODEL_CONFIG.read_text())["handler"]
    table = documented()
    for option in fields(HandlerOptions):
        assert option.name in table, f"handler option {option.name} missing from {DOC.name}"
        assert option.name in shipped, f"handler option {option.name} not set in {MODEL_CONFIG.name}"
        assert table[option.name] == shown(shipped[option.name]), option.name


def worker_settings() -> dict:
    """TorchServe's settings and the video section's (as ``video.<key>``) of the shipped model-config.yaml."""
    config = yaml.safe_load(MODEL_CONFIG.read_text())
    settings = {k: v for k, v in config.items() if k not in ("handler", "video")}
    return {**settings, **{f"video.{k}": v for k, v in config["video"].items()}}


def test_every_worker_setting_is_documented_with_its_shipped_value():
    shipped = worker_settings()
    table = documented()
    for key, value in shipped.items():
        assert table.get(key) == shown(value), f"{key}: {DOC.name} says {table.get(key)!r}, {MODEL_CONFIG.name} says {value!r}"


def record_settings() -> dict:
    """config/records.yaml as ``records.<key>``."""
    return {f"records.{k}": v for k, v in yaml.safe_load(RECORDS_CONFIG.read_text()).items()}


def test_every_record_store_setting_is_documented_with_its_shipped_value():
    table = documented()
    for key, value in record_settings().items():
        assert table.get(key) == shown(value), f"{key}: {DOC.name} says {table.get(key)!r}, {RECORDS_CONFIG.name} says {value!r}"


def test_the_docs_name_no_setting_that_does_not_exist():
    known = {f.name for f in fields(HandlerOptions)} | set(worker_settings()) | set(record_settings())
    known |= {"CHECKPOINT", "SERVE_FLAGS", "PYTHON", "SOAK_MINUTES"}
    assert set(documented()) <= known, set(documented()) - known
