"""`make serve`'s archive step: it builds the checkpoint it was asked for and never replaces another
command's archive."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile

import pytest
import yaml

from deepfake_service.packaging.archive import BuildError, build_mar, read_build_record
from deepfake_service.packaging.ensure import ensure_archive
from deepfake_service.project import ROOT
from loadtest.harness import model_config


@pytest.fixture
def torch_config(tmp_path):
    return model_config(tmp_path / "model-config.yaml", handler={"runtime": "torch", "precision": "fp32"})


def test_builds_once_then_keeps_the_archive_while_nothing_changed(tmp_path, tiny_checkpoint, torch_config):
    store = tmp_path / "store"
    first = ensure_archive(str(tiny_checkpoint), "tiny", store, torch_config)
    assert first.action == "built"
    record = read_build_record(first.archive)
    assert record["built_by"] == "make serve" and record["checkpoint"] == str(tiny_checkpoint.resolve())
    stamp = first.archive.stat().st_mtime_ns
    assert ensure_archive(str(tiny_checkpoint), "tiny", store, torch_config).action == "kept"
    assert first.archive.stat().st_mtime_ns == stamp


def test_its_own_archive_is_rebuilt_for_another_checkpoint_or_config(tmp_path, tiny_checkpoint, tiny_demo_checkpoint, torch_config):
    store = tmp_path / "store"
    ensure_archive(str(tiny_demo_checkpoint), "tiny", store, torch_config)
    demo_hash = read_build_record(store / "tiny.mar")["checkpoint_sha256"]
    switched = ensure_archive(str(tiny_checkpoint), "tiny", store, torch_config)
    assert switched.action == "rebuilt" and "checkpoint" in switched.reason
    assert read_build_record(store / "tiny.mar")["checkpoint_sha256"] != demo_hash
    settings = yaml.safe_load(torch_config.read_text())
    settings["batchSize"] = 2
    torch_config.write_text(yaml.safe_dump(settings))
    changed = ensure_archive(str(tiny_checkpoint), "tiny", store, torch_config)
    assert changed.action == "rebuilt" and "model config" in changed.reason


def test_another_commands_archive_is_never_replaced_by_another_checkpoint(tmp_path, tiny_checkpoint, tiny_demo_checkpoint, torch_config):
    store = tmp_path / "store"
    built = build_mar(tiny_checkpoint, "tiny", "1.0", model_config=torch_config, export_dir=store)
    before = built.read_bytes()
    with pytest.raises(BuildError) as refused:
        ensure_archive(str(tiny_demo_checkpoint), "tiny", store, torch_config)
    message = str(refused.value)
    assert "scripts.build_mar" in message and str(tiny_checkpoint.resolve()) in message and "make serve" in message
    assert "\n" not in message
    assert built.read_bytes() == before


def test_without_a_checkpoint_another_commands_archive_is_served_as_it_is(tmp_path, tiny_checkpoint, torch_config):
    store = tmp_path / "store"
    built = build_mar(tiny_checkpoint, "tiny", "1.0", model_config=torch_config, export_dir=store)
    before = built.read_bytes()
    outcome = ensure_archive(None, "tiny", store, torch_config)
    assert outcome.action == "kept-foreign" and "scripts.build_mar" in outcome.reason
    assert built.read_bytes() == before


@pytest.mark.slow  # three commands, each importing torch; the same decisions are tested in process above
def test_a_plain_make_serve_after_a_checkpoint_serves_that_checkpoint_never_the_demo(tmp_path, tiny_checkpoint, torch_config):
    """make serve CHECKPOINT=<folder>; make stop; make serve -- through the archive step's command."""
    store = tmp_path / "store"

    def make_serve(*checkpoint: str) -> str:
        command = [sys.executable, "-m", "scripts.ensure_archive", "--name", "tiny", "--model-store", str(store),
                   "--model-config", str(torch_config), *(["--checkpoint", *checkpoint] if checkpoint else [])]
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    assert make_serve(str(tiny_checkpoint)).endswith(f"built (from {tiny_checkpoint.resolve()})")
    assert make_serve() == f"{store / 'tiny.mar'}: kept (up to date with {tiny_checkpoint.resolve()})"
    settings = yaml.safe_load(torch_config.read_text())
    settings["batchSize"] = 2
    torch_config.write_text(yaml.safe_dump(settings))
    rebuilt = make_serve()
    assert rebuilt.endswith(f"rebuilt (from {tiny_checkpoint.resolve()}, its own checkpoint; changed: model config)"), rebuilt
    record = read_build_record(store / "tiny.mar")
    assert record["checkpoint"] == str(tiny_checkpoint.resolve()) and "demo" not in rebuilt
    assert yaml.safe_load(zipfile.ZipFile(store / "tiny.mar").read("model-config.yaml"))["batchSize"] == 2


def test_a_plain_make_serve_keeps_the_archive_when_its_checkpoint_changed_or_went(tmp_path, tiny_checkpoint, torch_config):
    checkpoint = tmp_path / "exp1"
    shutil.copytree(tiny_checkpoint, checkpoint)
    store = tmp_path / "store"
    ensure_archive(str(checkpoint), "tiny", store, torch_config)
    before = (store / "tiny.mar").read_bytes()
    (checkpoint / "config.json").write_text((checkpoint / "config.json").read_text().replace("authentic", "genuine"))
    kept = ensure_archive(None, "tiny", store, torch_config)
    assert kept.action == "kept" and "files changed since" in kept.reason and f"CHECKPOINT={checkpoint}" in kept.reason
    (checkpoint / "model.safetensors").unlink()
    unusable = ensure_archive(None, "tiny", store, torch_config)
    assert unusable.action == "kept" and "unusable now" in unusable.reason and "safetensors" in unusable.reason
    with pytest.raises(BuildError, match="safetensors"):
        ensure_archive(str(checkpoint), "tiny", store, torch_config)
    shutil.rmtree(checkpoint)
    gone = ensure_archive(None, "tiny", store, torch_config)
    assert gone.action == "kept" and "which is gone" in gone.reason
    assert (store / "tiny.mar").read_bytes() == before


def test_a_hub_id_without_network_stops_with_one_line(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf-home"))
    result = subprocess.run(
        [sys.executable, "-m", "scripts.ensure_archive", "--checkpoint", "example-org/no-such-detector",
         "--model-store", str(tmp_path / "store")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: could not download 'example-org/no-such-detector'"), result.stderr
    assert not (tmp_path / "store").exists()


def test_yunet_without_its_model_file_is_refused_at_build_time(tmp_path, tiny_checkpoint):
    config = model_config(tmp_path / "model-config.yaml", handler={"runtime": "torch", "precision": "fp32",
                                                                  "face_detector": "yunet", "face_model": ""})
    with pytest.raises(BuildError, match="face_detector yunet needs face_model"):
        build_mar(tiny_checkpoint, "tiny", "1.0", model_config=config, export_dir=tmp_path / "store")
