"""The preflight check fails within seconds, one line per missing thing, each with its fix."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from deepfake_service.project import CONFIG_PROPERTIES, ROOT
from deepfake_service.serving.preflight import check_disk, check_java, check_not_serving, check_ports, check_python
from deepfake_service.serving.properties import loopback_config, read_properties, write_properties


def fake_java(tmp_path, version: str):
    """A JAVA_HOME whose bin/java prints ``version`` as java -version does (on stderr)."""
    home = tmp_path / f"jdk-{version}"
    (home / "bin").mkdir(parents=True)
    java = home / "bin" / "java"
    java.write_text(f'#!/bin/sh\necho \'openjdk version "{version}" 2020-01-01\' >&2\n')
    java.chmod(0o755)
    return str(home)


def test_a_machine_without_java_is_told_in_seconds_what_to_install(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PATH"] = str(tmp_path)  # no java on it
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "scripts.preflight", "serve", "--page-port", "0",
                             "--config", str(loopback_config(CONFIG_PROPERTIES, tmp_path / "c.properties"))],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert time.monotonic() - started < 30
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("preflight: Java 17+ is needed by TorchServe and none was found on PATH")
    assert "apt-get install openjdk-17-jre-headless" in line


@pytest.mark.parametrize("version, major", [("11.0.22", 11), ("1.8.0_392", 8)])
def test_a_java_older_than_17_is_named_with_its_version(tmp_path, version, major):
    problem = check_java({"JAVA_HOME": fake_java(tmp_path, version), "PATH": os.environ["PATH"]})
    assert f"is Java {major}" in problem and "JAVA_HOME" in problem


def test_java_17_or_newer_passes(tmp_path):
    assert check_java({"JAVA_HOME": fake_java(tmp_path, "21.0.4"), "PATH": ""}) is None
    assert check_java() is None  # the machine's own, which the suite's TorchServe runs on


def test_a_taken_port_is_named(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        properties = read_properties(loopback_config(CONFIG_PROPERTIES, tmp_path / "c.properties"))
        properties["metrics_address"] = f"http://127.0.0.1:{port}"
        config = write_properties(properties, tmp_path / "taken.properties")
        (line,) = check_ports(config, page_port=0)
    assert f"port {port} on 127.0.0.1 (metrics_address) is taken" in line


def test_the_wrong_python_and_a_full_disk_are_named():
    assert "Python 3.11 is needed, this is 3.12" in check_python((3, 12))
    assert check_python((3, 11)) is None
    (line,) = check_disk(10**9, (ROOT,))
    assert "GB free in" in line and "make clean" in line


def test_a_server_still_running_from_the_run_folder_is_named_once(tmp_path):
    (tmp_path / "torchserve.pid").write_text(str(os.getpid()))  # a live process
    assert "already running" in check_not_serving(tmp_path) and "make stop" in check_not_serving(tmp_path)
    (tmp_path / "torchserve.pid").write_text("999999999")
    assert check_not_serving(tmp_path) is None


def test_a_machine_without_a_cpp_compiler_is_told_before_installing(tmp_path):
    from deepfake_service.serving.preflight import check_compiler

    problem = check_compiler({"PATH": str(tmp_path)}, installed=tmp_path / "no-venv-yet")
    assert "apt-get install g++" in problem and "pdqhash" in problem
    assert check_compiler({"PATH": str(tmp_path)}, installed=tmp_path) is None  # installed: nothing left to build
