"""Start, wait for, and stop a TorchServe process whose working folder is a run folder.

The run folder receives logs/, the token file key_file.json, the pid file and ``serving.properties``
(the config it was started with, for commands that attach to it later).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import requests

from deepfake_service.project import KEY_FILE
from deepfake_service.records import migrate, read_settings, redacted
from deepfake_service.serving.drain import drain
from deepfake_service.serving.properties import read_properties, snapshot_models, write_properties
from deepfake_service.serving.registrations import model_snapshot
from deepfake_service.serving.server import PID_FILE, SERVING_PROPERTIES, ServeError, Server, recorded
from handler.clients import KEY_ENV as CLIENT_KEY_ENV
from handler.clients import KEY_FILE as CLIENT_KEY_FILE
from handler.store import SETTINGS_ENV, RecordSettings, connect, purge_older_than

DRAINING = "draining"  # marker a Kubernetes preStop hook writes: readiness fails from then on
LOG_FILES = ("logs/model_log.log", "logs/ts_log.log", "torchserve.out")
BIND_FAILURE = re.compile(r"Failed to bind to address:? (\S+)")
# A model whose worker dies this often while loading is taken as broken: TorchServe would retry it
# with back-off for minutes while /ping answers 500, so start-up stops instead.
MAX_WORKER_DEATHS = 3
WORKER_DIED = "Backend worker process died"


def attach(run_dir: Path) -> Server:
    """The server started from ``run_dir``; raises ``ServeError`` when none is running there."""
    run_dir = run_dir.resolve()
    if not running_pid(run_dir):
        raise ServeError(f"no TorchServe is running from {run_dir} (start one with make serve)")
    return recorded(run_dir)


def running_pid(run_dir: Path) -> int | None:
    """The pid recorded in the run folder, if that process is still alive."""
    try:
        pid = int((run_dir / PID_FILE).read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def start(config: Path, model_store: Path, models: list[str], run_dir: Path, records_url: str | None = None) -> Server:
    """Launch TorchServe detached in its own process group; returns at once (see ``wait_ready``).

    ``models`` (``NAME=FILE.mar``) become the config's model snapshot, each with its video twin when the
    archive asks for one (deepfake_service/serving/registrations.py); with none, the config's own
    model_snapshot says what to load. The config TorchServe runs with is written to the run folder.
    The record store (config/records.yaml, ``DEEPFAKE_RECORDS_URL`` over it, ``records_url`` over both;
    "off": none) is migrated and purged first and its settings handed to the workers."""
    run_dir = run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    if running_pid(run_dir):
        raise ServeError(f"TorchServe is already running from {run_dir}; stop it first (make stop)")
    (run_dir / KEY_FILE).unlink(missing_ok=True)
    (run_dir / DRAINING).unlink(missing_ok=True)
    private_tmp = run_dir / "tmp"  # TorchServe's pid file and unpacked archives, apart from other servers
    private_tmp.mkdir(exist_ok=True)
    properties = {**read_properties(config), "model_store": str(model_store.resolve())}
    if models:
        properties["model_snapshot"] = model_snapshot(models, model_store)
    server = Server(run_dir=run_dir, properties=properties)
    write_properties(properties, run_dir / SERVING_PROPERTIES)
    env = dict(os.environ, TMPDIR=str(private_tmp), TEMP=str(private_tmp), **{SETTINGS_ENV: prepare_records(records_url).to_environment()},
               **{CLIENT_KEY_ENV: new_client_key(run_dir)})
    command = [
        str(Path(sys.executable).parent / "torchserve"),
        "--start",
        "--foreground",
        "--ncs",
        "--ts-config", str(run_dir / SERVING_PROPERTIES),
        "--model-store", str(model_store.resolve()),
    ]
    with open(run_dir / "torchserve.out", "wb") as out:
        process = subprocess.Popen(
            command, cwd=run_dir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    (run_dir / PID_FILE).write_text(str(process.pid))
    return server


def new_client_key(run_dir: Path) -> str:
    """A fresh key for this run with which the upload page signs who asked (handler/clients.py), written to
    the run folder readable by its owner alone."""
    key = secrets.token_hex(32)
    path = run_dir / CLIENT_KEY_FILE
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(key)
    return key


def prepare_records(url: str | None = None) -> RecordSettings:
    """The record store's settings (``url`` over the configured store's), its schema migrated and old
    records purged; a store that cannot be reached is reported and the server starts anyway (answers then
    say their record was not kept)."""
    try:
        settings = read_settings(url=url)
    except ValueError as exc:
        raise ServeError(str(exc)) from None
    if not settings.enabled:
        return settings
    try:
        migrate(settings.url)
        engine = connect(settings.url)
        try:
            purged = purge_older_than(engine, settings.retention_days)
        finally:
            engine.dispose()
        if purged:
            print(f"records: purged {purged} older than {settings.retention_days} days", file=sys.stderr)
    except Exception as exc:  # noqa: BLE001 - unreachable, not migratable (a newer schema), a bad URL: serve anyway
        print(f"records: the store at {redacted(settings.url)} is unavailable ({type(exc).__name__}); serving without "
              "keeping records until it is back and migrated (python -m scripts.records migrate)", file=sys.stderr)
    return settings


def wait_ready(server: Server, model_names: list[str] | None = None, timeout: float = 300.0) -> float:
    """Poll until /ping is healthy and every model (default: every registration the server started
    with) has a READY worker; returns seconds waited.

    Raises ``ServeError`` when the server exits or the timeout passes.
    """
    model_names = model_names or snapshot_models(server.properties)
    started = time.monotonic()
    deadline = started + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if not running_pid(server.run_dir):
            raise ServeError(f"TorchServe exited during start-up\n{log_tail(server.run_dir)}")
        taken = bind_failure(server.run_dir)
        if taken:  # the frontend stops its listeners but its process lingers: stop waiting at once
            raise ServeError(f"TorchServe could not listen on {taken}: another process holds that port\n{log_tail(server.run_dir)}")
        deaths = worker_deaths(server.run_dir)
        if deaths >= MAX_WORKER_DEATHS:
            raise ServeError(
                f"the model failed to load: its worker died {deaths} times during start-up (broken archive?)\n"
                f"{log_tail(server.run_dir)}"
            )
        try:
            last = _readiness(server, model_names)
            if last == "ready":
                return time.monotonic() - started
        except (ServeError, requests.RequestException) as exc:
            last = str(exc)
        time.sleep(0.5)
    raise ServeError(f"not ready after {timeout:.0f} s ({last})\n{log_tail(server.run_dir)}")


def _readiness(server: Server, model_names: list[str]) -> str:
    ping = requests.get(f"{server.inference_url}/ping", headers=server.headers(), timeout=5)
    if ping.status_code != 200:
        return f"/ping answered {ping.status_code}"
    for name in model_names:
        described = requests.get(f"{server.management_url}/models/{name}", headers=server.headers("management"), timeout=5)
        if described.status_code != 200:
            return f"model {name}: {described.status_code} {described.text.strip()}"
        workers = [w for version in described.json() for w in version.get("workers", [])]
        if not any(w.get("status") == "READY" for w in workers):
            return f"model {name}: no READY worker yet"
    return "ready"


def worker_deaths(run_dir: Path) -> int:
    """How often a backend worker died, from the model log."""
    log = run_dir / "logs" / "model_log.log"
    return log.read_text(errors="replace").count(WORKER_DIED) if log.is_file() else 0


def bind_failure(run_dir: Path) -> str | None:
    """The address TorchServe's frontend failed to bind, from its console log, or None."""
    try:
        found = BIND_FAILURE.search((run_dir / "torchserve.out").read_text(errors="replace"))
    except OSError:
        return None
    return found.group(1) if found else None


def log_tail(run_dir: Path, lines: int = 40) -> str:
    """The last lines of each TorchServe log in the run folder."""
    parts = []
    for name in LOG_FILES:
        path = run_dir / name
        if path.is_file():
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path} (last {len(tail)} lines)\n" + "\n".join(tail))
    return "\n".join(parts) or f"(no logs under {run_dir})"


def stop(run_dir: Path, timeout: float = 30.0, drain_timeout: float = 30.0) -> bool:
    """Stop the TorchServe started from ``run_dir``: let accepted work finish (``drain``), then SIGTERM
    to its process group, SIGKILL after ``timeout``. Returns False when none was running."""
    run_dir = run_dir.resolve()
    pid = running_pid(run_dir)
    if pid is None:
        (run_dir / PID_FILE).unlink(missing_ok=True)
        return False
    if drain_timeout > 0 and (run_dir / SERVING_PROPERTIES).is_file():
        drain(recorded(run_dir), timeout=drain_timeout)
    terminate_group(pid, timeout)
    (run_dir / PID_FILE).unlink(missing_ok=True)
    (run_dir / KEY_FILE).unlink(missing_ok=True)
    (run_dir / CLIENT_KEY_FILE).unlink(missing_ok=True)
    return True


def terminate_group(pid: int, timeout: float) -> None:
    """SIGTERM the process group led by ``pid``, SIGKILL it after ``timeout`` seconds, reap the leader."""
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _group_alive(pid):
        _reap(pid)
        time.sleep(0.1)
    if _group_alive(pid):
        _signal_group(pid, signal.SIGKILL)
    _reap(pid)


def _reap(pid: int) -> None:
    """Collect the leader's exit when it is our own child (tests, ``serving``): until then it lingers as a
    zombie, which still counts as a member of its group and kept every stop waiting out its timeout."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def _group_alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


@contextlib.contextmanager
def serving(config: Path, model_store: Path, models: list[str], run_dir: Path, timeout: float = 300.0,
            records_url: str | None = None) -> Iterator[Server]:
    """Start TorchServe (``records_url``: as ``start``), wait until ready, yield it, and always stop it."""
    server = start(config, model_store, models, run_dir, records_url)
    try:
        wait_ready(server, timeout=timeout)
        yield server
    finally:
        stop(run_dir)
