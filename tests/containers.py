"""A built image run with buildah, as ``docker run`` would run it: chroot isolation on the host's network (its
ports are the host's), the image's own user, CMD, environment and working folder, volumes from host folders."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from deepfake_service.packaging.image import buildah, image_config, run


@dataclass(frozen=True)
class Container:
    """A working container of an image: its name and where its root file system lies on the host."""

    name: str
    rootfs: Path
    config: dict

    def path(self, inside: str) -> Path:
        """The host path of ``inside`` (an absolute path in the container)."""
        return self.rootfs / inside.lstrip("/")

    def command(self, argv: list[str], user: str, volumes: dict[Path, str] | None = None) -> list[str]:
        """The buildah command line that runs ``argv`` in this container as ``user``."""
        mounts = [a for host, inside in (volumes or {}).items() for a in ("--volume", f"{host}:{inside}")]
        return buildah("run", "--isolation", "chroot", "--user", user, *mounts, self.name, "--", *argv)


@contextlib.contextmanager
def container(image: str) -> Iterator[Container]:
    """A fresh working container of ``image``, removed afterwards."""
    name = run(buildah("from", image), f"buildah from {image}", capture_output=True, text=True).stdout.strip()
    try:
        rootfs = Path(run(buildah("mount", name), f"buildah mount {name}", capture_output=True, text=True).stdout.strip())
        yield Container(name, rootfs, image_config(image))
    finally:
        subprocess.run(buildah("rm", name), capture_output=True)


def healthcheck(config: dict) -> list[str]:
    """The image's HEALTHCHECK as an argv (its exec form, ``["CMD", ...]``)."""
    test = config["Healthcheck"]["Test"]
    assert test[0] == "CMD", f"HEALTHCHECK is not in exec form: {test}"
    return test[1:]


def process_running(started: subprocess.Popen, words: list[str], timeout: float = 30) -> psutil.Process:
    """The descendant of ``started`` whose command line holds ``words`` (buildah forks before it execs the
    container's command, and signals sent to buildah are not passed on)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in psutil.Process(started.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                line = child.cmdline()
                if all(w in line for w in words) and not line[0].startswith("buildah"):  # not buildah-chroot-exec
                    return child
        time.sleep(0.2)
    raise AssertionError(f"no process running {words} under buildah (pid {started.pid})")


def stop(process: psutil.Process, timeout: float) -> int | None:
    """SIGTERM ``process`` and wait at most ``timeout`` seconds; its exit code (None: not its parent's child)."""
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout)
