"""A broken archive makes start-up fail loudly and soon, instead of TorchServe retrying it for minutes."""

from __future__ import annotations

import socket
import time
import zipfile

import pytest

from deepfake_service.packaging.archive import build_mar
from deepfake_service.project import ROOT
from deepfake_service.serving.process import running_pid, start, stop, wait_ready
from deepfake_service.serving.properties import loopback_config, read_properties
from deepfake_service.serving.server import ServeError

pytestmark = pytest.mark.served  # each test starts a TorchServe of its own


def corrupt_weights(mar, target):
    """A copy of ``mar`` whose safetensors file is garbage."""
    with zipfile.ZipFile(mar) as source, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as copy:
        for name in source.namelist():
            data = b"not safetensors" if name.endswith(".safetensors") else source.read(name)
            copy.writestr(name, data)
    return target


def test_start_fails_fast_with_the_log_tail_and_stops_the_server(tiny_checkpoint, tmp_path):
    built = build_mar(tiny_checkpoint, "broken", "1.0", export_dir=tmp_path / "build")
    store = tmp_path / "store"
    store.mkdir()
    corrupt_weights(built, store / "broken.mar")
    config = loopback_config(ROOT / "config" / "config.properties", tmp_path / "config.properties")
    run_dir = tmp_path / "run"
    server = start(config, store, ["broken=broken.mar"], run_dir)
    began = time.monotonic()
    try:
        with pytest.raises(ServeError, match="failed to load") as caught:
            wait_ready(server, ["broken"], timeout=240)
        assert time.monotonic() - began < 120
        assert "model_log.log" in str(caught.value)
    finally:
        stop(run_dir)
    assert running_pid(run_dir) is None


def test_a_port_held_by_another_process_fails_start_up_at_once_naming_it(tiny_checkpoint, tmp_path):
    built = build_mar(tiny_checkpoint, "portless", "1.0", export_dir=tmp_path / "store")
    config = loopback_config(ROOT / "config" / "config.properties", tmp_path / "config.properties")
    held = read_properties(config)["metrics_address"]
    host, port = held.split("://")[1].rsplit(":", 1)
    run_dir = tmp_path / "run"
    with socket.socket() as holder:
        holder.bind((host, int(port)))
        holder.listen()
        server = start(config, built.parent, [f"portless={built.name}"], run_dir)
        began = time.monotonic()
        try:
            with pytest.raises(ServeError, match=f"could not listen on {held}"):
                wait_ready(server, ["portless"], timeout=240)
            assert time.monotonic() - began < 120  # it used to wait out the whole timeout
        finally:
            stop(run_dir)
    assert running_pid(run_dir) is None
