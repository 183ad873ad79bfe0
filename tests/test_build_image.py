"""make image's plan (deepfake_service/packaging/image.py), without building: tests/test_image.py runs the image."""

from __future__ import annotations

from deepfake_service.packaging.image import build_args, dockerfile_base, plan_build


def test_a_local_torch_wheel_leaves_pytorchs_index_out(tmp_path):
    (tmp_path / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").touch()
    assert build_args(tmp_path, None) == ["--build-arg", f"EXTRA_WHEELS={tmp_path}", "--build-arg", "TORCH_INDEX="]


def test_without_a_torch_wheel_the_dockerfiles_torch_index_stands(tmp_path):
    assert build_args(tmp_path, None) == ["--build-arg", f"EXTRA_WHEELS={tmp_path}"]
    assert build_args(None, None) == []
    assert build_args(None, "https://download.pytorch.org/whl/cu128") == ["--build-arg", "TORCH_INDEX=https://download.pytorch.org/whl/cu128"]


def test_the_base_image_is_the_dockerfiles(tmp_path):
    assert dockerfile_base() == "python:3.11-slim-bookworm"


def test_a_docker_build_takes_no_local_wheels_or_mounts(tmp_path):
    (tmp_path / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").touch()
    plan = plan_build("x:1", extra_wheels=tmp_path, ca_bundle=tmp_path / "ca.crt", docker=True)
    assert plan.tool == "docker" and plan.command[:2] == ["docker", "build"]
    assert not any("EXTRA_WHEELS" in a or "TORCH_INDEX" in a or a == "--volume" for a in plan.command)
