"""What ``make serve`` and ``make test`` need from the machine, checked in seconds before anything is
installed or built. Standard library only: it runs on the interpreter that will create the venv.

Each check returns None when satisfied, else one line: what is missing and the command that fixes it.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from deepfake_service.project import CONFIG_PROPERTIES, PAGE_HOST, PAGE_PORT, ROOT, RUN_DIR
from deepfake_service.serving.properties import listener_ports, read_properties
from deepfake_service.serving.server import PID_FILE

PYTHON = (3, 11)  # pyproject.toml: requires-python
JAVA = 17  # TorchServe 0.12's frontend needs Java 17 or newer
VENV = ROOT / ".venv"
CHROMIUM = Path("/usr/bin/chromium")
# Free space (GB) a first run needs: the venv (~2.5 GB), the demo checkpoint and its archive (~1 GB),
# and for the suite the archives and servers it builds in the temporary folder.
DISK_GB = {"serve": 5.0, "test": 6.0}


def check_python(version: tuple[int, ...] = tuple(sys.version_info[:2])) -> str | None:
    """The interpreter that makes the venv must be the one pyproject.toml accepts, with venv and pip."""
    if tuple(version[:2]) != PYTHON:
        return (f"Python {PYTHON[0]}.{PYTHON[1]} is needed, this is {version[0]}.{version[1]} ({sys.executable}): "
                f"install it (apt-get install python3.11 python3.11-venv) and run make PYTHON=python3.11 ...")
    if VENV.joinpath("bin", "python").exists():
        return None
    try:
        import ensurepip  # noqa: F401  (venv needs it to install pip)
        import venv  # noqa: F401
    except ImportError:
        return f"{sys.executable} cannot make a virtual environment (no venv/ensurepip): apt-get install python3.11-venv"
    return None


def java_command(environ: dict[str, str] | None = None) -> str:
    """The java TorchServe will start: $JAVA_HOME/bin/java when JAVA_HOME is set, else java on PATH."""
    environ = os.environ if environ is None else environ
    home = environ.get("JAVA_HOME")
    return str(Path(home) / "bin" / "java") if home else "java"


def check_java(environ: dict[str, str] | None = None) -> str | None:
    """A Java TorchServe 0.12 accepts (17 or newer) where TorchServe looks for it."""
    environ = dict(os.environ if environ is None else environ)
    java = java_command(environ)
    fix = "install it (apt-get install openjdk-17-jre-headless) or point JAVA_HOME at a JDK 17+"
    found = shutil.which(java, path=environ.get("PATH")) if os.sep not in java else (java if os.access(java, os.X_OK) else None)
    if not found:
        where = f"JAVA_HOME={environ['JAVA_HOME']}" if environ.get("JAVA_HOME") else "PATH"
        return f"Java {JAVA}+ is needed by TorchServe and none was found on {where}: {fix}"
    try:
        shown = subprocess.run([found, "-version"], capture_output=True, text=True, timeout=30, env=environ)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{found} -version failed ({type(exc).__name__}): {fix}"
    match = re.search(r'version "(\d+)(?:\.(\d+))?', shown.stderr + shown.stdout)
    if not match:
        return f"{found} -version printed no version: {fix}"
    major = int(match.group(2)) if match.group(1) == "1" else int(match.group(1))  # "1.8.0" is Java 8
    if major < JAVA:
        return f"Java {JAVA}+ is needed by TorchServe, {found} is Java {major}: {fix}"
    return None


def check_ports(config: Path = CONFIG_PROPERTIES, page_port: int = PAGE_PORT, page_host: str = PAGE_HOST) -> list[str]:
    """Every port the stack will listen on is free (one line per taken port)."""
    listeners = dict(listener_ports(read_properties(config)))
    if page_port:
        listeners["the upload page"] = (page_host, page_port)
    problems = []
    for name, (host, port) in listeners.items():
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                problems.append(f"port {port} on {host} ({name}) is taken: stop what listens there (make stop, or "
                                f"ss -ltnp 'sport = :{port}'), or change it in {config.relative_to(ROOT) if config.is_relative_to(ROOT) else config}")
    return problems


def check_disk(needed_gb: float, folders: tuple[Path, ...] = (ROOT, Path(tempfile.gettempdir()))) -> list[str]:
    """At least ``needed_gb`` free where the venv and archives go (and in the temporary folder)."""
    problems = []
    for folder in dict.fromkeys(folders):
        free = shutil.disk_usage(folder).free / 1e9
        if free < needed_gb:
            problems.append(f"{free:.1f} GB free in {folder}, {needed_gb:.0f} GB needed: free some space (make clean removes "
                            "the venv, checkpoints, results, models/, run/, build/ and every model_store/*.mar; var/ "
                            "(the record store) stays)")
    return problems


def check_chromium() -> str | None:
    """The browser tests need Debian's Chromium; the Makefile installs it when it may use apt."""
    if CHROMIUM.exists() or os.geteuid() == 0 or shutil.which("sudo"):
        return None
    return f"the browser tests need {CHROMIUM} and there is no root or sudo to install it: apt-get install chromium (as root)"


def check_compiler(environ: dict[str, str] | None = None, installed: Path = ROOT / ".venv" / ".installed") -> str | None:
    """pdqhash (the record store's PDQ hash) builds from its sdist when the virtual environment is
    installed: until it is, a C++ compiler must be there."""
    path = (environ if environ is not None else os.environ).get("PATH")
    if installed.exists() or shutil.which("c++", path=path) or shutil.which("g++", path=path):
        return None
    return "no C++ compiler found: pdqhash (the PDQ perceptual hash of the record store) builds from source; apt-get install g++"


def check_postgres() -> str | None:
    """The record store's tests start Debian's PostgreSQL; the Makefile installs it when it may use apt."""
    import glob

    if glob.glob("/usr/lib/postgresql/*/bin/initdb") or os.geteuid() == 0 or shutil.which("sudo"):
        return None
    return "the record-store tests need PostgreSQL's server and there is no root or sudo to install it: apt-get install postgresql (as root)"


def check_not_serving(run_dir: Path = RUN_DIR) -> str | None:
    """``make serve`` twice: the first server still runs from the run folder."""
    try:
        os.kill(int((run_dir / PID_FILE).read_text()), 0)
    except (OSError, ValueError):
        return None
    return f"TorchServe is already running from {run_dir}: make stop first (or call it: make key prints its key)"


def problems(target: str, config: Path = CONFIG_PROPERTIES, page_port: int = PAGE_PORT) -> list[str]:
    """Everything missing for ``target`` (serve or test), one line each; empty when all is there."""
    found = [check_python(), check_java(), check_compiler(), *check_disk(DISK_GB[target])]
    if target == "serve":
        running = check_not_serving()
        found += [running] if running else check_ports(config, page_port)
    else:
        found += [check_chromium(), check_postgres()]
    return [p for p in found if p]
