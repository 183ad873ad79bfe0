"""Build the service's container image from the Dockerfile: ``docker build`` where a Docker engine answers,
else buildah (chroot isolation, vfs storage: no daemon, no user namespaces), on the Dockerfile's own base
image when it can be pulled and otherwise on a Debian bookworm base with Python 3.11 made by mmdebstrap.

The library behind ``python -m scripts.build_image`` (see its ``--help``) and ``make image``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from deepfake_service.project import IMAGE, MODEL_NAME, ROOT

DOCKERFILE = ROOT / "Dockerfile"
STORAGE = ("--storage-driver", "vfs")  # overlay needs kernel support a build container may lack; vfs needs none
# The stand-in for python:3.11-slim-bookworm: the same Debian release and Python, headers included (the
# official image carries them; pdqhash compiles against them).
DEBIAN_BASE = f"localhost/{MODEL_NAME}-base:bookworm"
DEBIAN_PACKAGES = ("python3.11", "python3.11-venv", "python3.11-dev", "python-is-python3", "ca-certificates")
CA_BUNDLE_IN_IMAGE = "/etc/ssl/certs/ca-certificates.crt"


class ImageError(Exception):
    """The image could not be built; the message says which step failed and why."""


@dataclass(frozen=True)
class BuildPlan:
    """What one build runs: the tool, the base it stands on, and the whole command line."""

    tool: str  # "docker" or "buildah"
    base: str
    command: list[str]


def run(command: list[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    """``command``'s completed process; raises ``ImageError`` naming ``what`` when it fails or is missing."""
    try:
        done = subprocess.run(command, **kwargs)
    except FileNotFoundError as exc:
        raise ImageError(f"{what}: {command[0]} is not installed ({exc})") from exc
    if done.returncode != 0:
        detail = (done.stderr or "").strip()[-2000:] if isinstance(done.stderr, str) else ""
        raise ImageError(f"{what} failed (exit {done.returncode}): {' '.join(command)}\n{detail}")
    return done


def succeeds(command: list[str], timeout: float = 120) -> bool:
    """Whether ``command`` exits 0 (False when it is missing or runs past ``timeout`` seconds)."""
    try:
        return subprocess.run(command, capture_output=True, timeout=timeout).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def docker_engine() -> bool:
    """Whether a Docker engine answers (``docker info`` succeeds)."""
    return shutil.which("docker") is not None and succeeds(["docker", "info"], timeout=30)


def dockerfile_base(dockerfile: Path = DOCKERFILE) -> str:
    """The Dockerfile's default base image (its ``ARG PYTHON_IMAGE=``)."""
    found = re.search(r"^ARG PYTHON_IMAGE=(\S+)", dockerfile.read_text(), re.MULTILINE)
    if not found:
        raise ImageError(f"{dockerfile} has no ARG PYTHON_IMAGE=<base image>")
    return found.group(1)


def buildah(*args: str) -> list[str]:
    """A buildah command line on the vfs store this module builds into."""
    return ["buildah", *STORAGE, *args]


def image_exists(name: str) -> bool:
    return succeeds(buildah("inspect", "--type", "image", name))


def make_debian_base(name: str = DEBIAN_BASE) -> str:
    """Debian bookworm with Python 3.11 (mmdebstrap, about half a minute), imported as image ``name``."""
    with tempfile.TemporaryDirectory(prefix="debian-base-") as folder:
        tarball = Path(folder) / "base.tar"
        run(["mmdebstrap", "--quiet", "--variant=apt", f"--include={','.join(DEBIAN_PACKAGES)}", "bookworm", str(tarball)],
            "mmdebstrap (the Debian base)", capture_output=True, text=True)
        run(["podman", *STORAGE, "import", str(tarball), name], "podman import (the Debian base)", capture_output=True, text=True)
    return name


def buildah_base(wanted: str) -> str:
    """The base for a buildah build: ``wanted`` when present or pullable, else the Debian stand-in (made once)."""
    if image_exists(wanted) or succeeds(buildah("pull", "--quiet", wanted), timeout=600):
        return wanted
    return DEBIAN_BASE if image_exists(DEBIAN_BASE) else make_debian_base()


def has_torch_wheel(folder: Path | None) -> bool:
    return folder is not None and any(folder.glob("torch-*.whl"))


def build_args(extra_wheels: Path | None, torch_index: str | None) -> list[str]:
    """``--build-arg`` pairs: EXTRA_WHEELS when given; TORCH_INDEX when given, or empty (PyTorch's index left
    out) when ``extra_wheels`` holds a torch wheel, which then is the one installed."""
    if torch_index is None and has_torch_wheel(extra_wheels):
        torch_index = ""
    pairs = {"EXTRA_WHEELS": str(extra_wheels) if extra_wheels else None, "TORCH_INDEX": torch_index}
    return [arg for key, value in pairs.items() if value is not None for arg in ("--build-arg", f"{key}={value}")]


def plan_build(tag: str = IMAGE, extra_wheels: Path | None = None, ca_bundle: Path | None = None,
               torch_index: str | None = None, docker: bool | None = None) -> BuildPlan:
    """The build to run. With buildah, ``extra_wheels`` is mounted read-only at its own path into the RUN
    steps and ``ca_bundle`` over the image's CA bundle (for a network whose TLS is re-signed by a local CA);
    with docker they are left out (a docker build mounts nothing)."""
    base = dockerfile_base()
    if docker_engine() if docker is None else docker:
        return BuildPlan("docker", base, ["docker", "build", *build_args(None, torch_index), "-t", tag, str(ROOT)])
    args = build_args(extra_wheels, torch_index)
    base = buildah_base(base)
    mounts = [f"{extra_wheels}:{extra_wheels}:ro"] if extra_wheels else []
    mounts += [f"{ca_bundle}:{CA_BUNDLE_IN_IMAGE}:ro"] if ca_bundle else []
    command = buildah("bud", "--isolation", "chroot", "--format", "docker", "--layers=false", *args,
                      "--build-arg", f"PYTHON_IMAGE={base}", *[a for m in mounts for a in ("--volume", m)], "-t", tag, str(ROOT))
    return BuildPlan("buildah", base, command)


def build_image(plan: BuildPlan) -> float:
    """Run ``plan`` (its output goes to this process's); the seconds it took. Raises ``ImageError``."""
    started = time.monotonic()
    run(plan.command, f"{plan.tool} build")
    return time.monotonic() - started


def pip_setting(name: str) -> str | None:
    """This machine's pip setting ``name`` (``find-links``, ``cert``) from ``pip config list`` (its files and
    PIP_* variables), or None."""
    done = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True)
    found = dict(re.findall(r"^(?:global|:env:)\.([\w-]+)='(.*)'$", done.stdout, re.MULTILINE))
    return found.get(name) or None


def image_config(tag: str = IMAGE) -> dict:
    """The built image's Docker config (``Cmd``, ``Env``, ``Healthcheck``, ``User``, ``Volumes``, ...)."""
    done = run(buildah("inspect", "--type", "image", tag), f"buildah inspect {tag}", capture_output=True, text=True)
    return json.loads(done.stdout)["Docker"]["config"]


def image_size(tag: str = IMAGE) -> str:
    """The image's size as buildah reports it (its layers, uncompressed; e.g. "3.14 GB")."""
    done = run(buildah("images", "--format", "{{.Size}}", tag), f"buildah images {tag}", capture_output=True, text=True)
    return done.stdout.strip()


def pip_sources() -> tuple[Path | None, Path | None]:
    """(extra wheels, CA bundle) from this machine's pip config: its ``find-links`` when a local folder, and its
    ``cert``; each None when unset. A build here then installs what pip here would."""
    links, cert = pip_setting("find-links"), pip_setting("cert")
    wheels = Path(links) if links and Path(links).is_dir() else None
    return wheels, Path(cert) if cert and Path(cert).is_file() else None
