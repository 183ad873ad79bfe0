"""Start, wait for, and stop a TorchServe instance serving model archives.

``start`` launches TorchServe in the background (working directory = the run folder, which
receives logs/ and the token file key_file.json), waits until /ping is healthy and every model
has a READY worker, prints the URLs and a curl example, and returns. It fails loudly, with the
end of the logs and the server stopped, when that does not happen within the timeout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import requests

ROOT = Path(__file__).resolve().parent.parent
PID_FILE = "torchserve.pid"
PAGE_PID_FILE = "page.pid"
DRAINING = "draining"  # marker a Kubernetes preStop hook writes: readiness fails from then on
SERVING_PROPERTIES = "serving.properties"  # the config a run folder's server was started with
KEY_FILE = "key_file.json"
LOG_FILES = ("logs/model_log.log", "logs/ts_log.log", "torchserve.out")
# A model whose worker dies this often while loading is taken as broken: TorchServe would retry it
# with back-off for minutes while /ping answers 500, so start-up stops instead.
MAX_WORKER_DEATHS = 3
WORKER_DIED = "Backend worker process died"


class ServeError(Exception):
    """TorchServe did not come up (or down) as asked."""


def read_properties(path: Path) -> dict[str, str]:
    """Parse a ``config.properties`` file (``key=value`` lines, ``#`` comments)."""
    properties = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")) and "=" in line:
            key, value = line.split("=", 1)
            properties[key.strip()] = value.strip()
    return properties


def write_properties(properties: dict[str, str], path: Path) -> Path:
    path.write_text("".join(f"{key}={value}\n" for key, value in properties.items()))
    return path


@dataclass(frozen=True)
class Server:
    """Where a running TorchServe listens and where its run folder is."""

    run_dir: Path
    properties: dict[str, str]

    @property
    def inference_url(self) -> str:
        return self.properties["inference_address"]

    @property
    def management_url(self) -> str:
        return self.properties["management_address"]

    @property
    def metrics_url(self) -> str:
        return self.properties["metrics_address"]

    def key(self, kind: str = "inference") -> str:
        """The current token of ``kind`` (inference, management or API) from key_file.json."""
        return read_keys(self.run_dir)[kind]

    def headers(self, kind: str = "inference") -> dict[str, str]:
        """The Authorization header (none when the config turned token authorization off)."""
        if self.properties.get("disable_token_authorization") == "true":
            return {}
        return {"Authorization": f"Bearer {self.key(kind)}"}


def read_key_file(path: Path) -> dict[str, str]:
    """Tokens by kind (inference, management, API) from a TorchServe key_file.json; raises
    ``ServeError`` while it is missing or unreadable (TorchServe has not written it yet)."""
    try:
        entries = json.loads(path.read_text())
        return {kind: entry["key"] for kind, entry in entries.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ServeError(f"no readable {path} yet: {exc}") from exc


def read_keys(run_dir: Path) -> dict[str, str]:
    """Tokens by kind from ``run_dir``'s key_file.json (see ``read_key_file``)."""
    return read_key_file(run_dir / KEY_FILE)


def attach(run_dir: Path) -> Server:
    """The server started from ``run_dir``; raises ``ServeError`` when none is running there."""
    run_dir = run_dir.resolve()
    if not running_pid(run_dir):
        raise ServeError(f"no TorchServe is running from {run_dir} (start one with make serve)")
    return Server(run_dir=run_dir, properties=read_properties(run_dir / SERVING_PROPERTIES))


def running_pid(run_dir: Path) -> int | None:
    """The pid recorded in the run folder, if that process is still alive."""
    try:
        pid = int((run_dir / PID_FILE).read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def start(config: Path, model_store: Path, models: list[str], run_dir: Path) -> Server:
    """Launch TorchServe detached in its own process group; returns at once (see ``wait_ready``)."""
    run_dir = run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    if running_pid(run_dir):
        raise ServeError(f"TorchServe is already running from {run_dir}; stop it first (make stop)")
    (run_dir / KEY_FILE).unlink(missing_ok=True)
    (run_dir / DRAINING).unlink(missing_ok=True)
    private_tmp = run_dir / "tmp"  # TorchServe's pid file and unpacked archives, apart from other servers
    private_tmp.mkdir(exist_ok=True)
    env = dict(os.environ, TMPDIR=str(private_tmp), TEMP=str(private_tmp))
    command = [
        str(Path(sys.executable).parent / "torchserve"),
        "--start",
        "--foreground",
        "--ncs",
        "--ts-config", str(config.resolve()),
        "--model-store", str(model_store.resolve()),
        *(["--models", *models] if models else []),  # none: the config's model_snapshot says what to load
    ]
    with open(run_dir / "torchserve.out", "wb") as out:
        process = subprocess.Popen(
            command, cwd=run_dir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    (run_dir / PID_FILE).write_text(str(process.pid))
    # serving.properties records how this server runs, for commands that attach to it later (rollout).
    server = Server(run_dir=run_dir, properties={**read_properties(config), "model_store": str(model_store.resolve())})
    write_properties(server.properties, run_dir / SERVING_PROPERTIES)
    return server


def wait_ready(server: Server, model_names: list[str], timeout: float = 300.0) -> float:
    """Poll until /ping is healthy and every model has a READY worker; returns seconds waited.

    Raises ``ServeError`` when the server exits or the timeout passes.
    """
    started = time.monotonic()
    deadline = started + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if not running_pid(server.run_dir):
            raise ServeError(f"TorchServe exited during start-up\n{log_tail(server.run_dir)}")
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


def log_tail(run_dir: Path, lines: int = 40) -> str:
    """The last lines of each TorchServe log in the run folder."""
    parts = []
    for name in LOG_FILES:
        path = run_dir / name
        if path.is_file():
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path} (last {len(tail)} lines)\n" + "\n".join(tail))
    return "\n".join(parts) or f"(no logs under {run_dir})"


def drain(server: Server, quiet: float = 2.0, timeout: float = 30.0) -> bool:
    """Wait until no job is queued and no prediction has arrived for ``quiet`` seconds; at most ``timeout``.

    TorchServe drops in-flight requests on SIGTERM and offers no way to refuse new ones first (scaling
    workers to 0 strands queued requests), so this lets the work already accepted finish. Returns
    False when the server did not go quiet in time (or could not be asked).
    """
    deadline = time.monotonic() + timeout
    last, quiet_since = None, time.monotonic()
    while time.monotonic() < deadline:
        try:
            arrived = _predictions_arrived(server)
            queued = _jobs_queued(server)
        except (requests.RequestException, ServeError, ValueError):
            return False
        if arrived != last or queued:
            last, quiet_since = arrived, time.monotonic()
        elif time.monotonic() - quiet_since >= quiet:
            return True
        time.sleep(0.2)
    return False


def _predictions_arrived(server: Server) -> float:
    text = requests.get(f"{server.metrics_url}/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("ts_inference_requests_total{"))


def _jobs_queued(server: Server) -> int:
    listed = requests.get(f"{server.management_url}/models", headers=server.headers("management"), timeout=5).json()
    queued = 0
    for model in listed.get("models", []):
        described = requests.get(
            f"{server.management_url}/models/{model['modelName']}/all", headers=server.headers("management"), timeout=5
        ).json()
        queued += sum(version.get("jobQueueStatus", {}).get("pendingRequests", 0) for version in described)
    return queued


def stop(run_dir: Path, timeout: float = 30.0, drain_timeout: float = 30.0) -> bool:
    """Stop the TorchServe started from ``run_dir``: let accepted work finish (``drain``), then SIGTERM
    to its process group, SIGKILL after ``timeout``. Returns False when none was running."""
    run_dir = run_dir.resolve()
    stop_page(run_dir)
    pid = running_pid(run_dir)
    if pid is None:
        (run_dir / PID_FILE).unlink(missing_ok=True)
        return False
    if drain_timeout > 0 and (run_dir / SERVING_PROPERTIES).is_file():
        drain(Server(run_dir, read_properties(run_dir / SERVING_PROPERTIES)), timeout=drain_timeout)
    terminate_group(pid, timeout)
    (run_dir / PID_FILE).unlink(missing_ok=True)
    (run_dir / KEY_FILE).unlink(missing_ok=True)
    return True


def start_page(server: Server, model: str, port: int, host: str = "127.0.0.1", timeout: float = 30.0) -> str:
    """Start the upload page (page/server.py) beside ``server``, detached; returns its URL once it answers.

    It forwards to TorchServe with the key from the run folder's key_file.json; ``stop`` stops it too."""
    run_dir = server.run_dir
    command = [
        sys.executable, "-m", "page.server", "--inference-url", server.inference_url, "--model", model,
        "--key-file", str(run_dir / KEY_FILE), "--host", host, "--port", str(port),
    ]
    with open(run_dir / "page.log", "wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    (run_dir / PAGE_PID_FILE).write_text(str(process.pid))
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            if requests.get(f"{url}healthz", timeout=2).status_code == 200:
                return url
        except requests.RequestException:
            pass
        time.sleep(0.2)
    stop_page(run_dir)
    raise ServeError(f"the upload page did not start on {url}:\n{(run_dir / 'page.log').read_text()[-2000:]}")


def stop_page(run_dir: Path, timeout: float = 10.0) -> bool:
    """Stop the upload page started from ``run_dir``; False when none was running."""
    try:
        pid = int((run_dir / PAGE_PID_FILE).read_text())
    except (OSError, ValueError):
        return False
    (run_dir / PAGE_PID_FILE).unlink(missing_ok=True)
    terminate_group(pid, timeout)
    return True


def terminate_group(pid: int, timeout: float) -> None:
    """SIGTERM the process group led by ``pid``, SIGKILL it after ``timeout`` seconds, reap the leader."""
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _group_alive(pid):
        time.sleep(0.1)
    if _group_alive(pid):
        _signal_group(pid, signal.SIGKILL)
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it when it is our own child (tests)
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


def probe(run_dir: Path, readiness: bool = False, timeout: float = 4.0) -> str | None:
    """Health of the server started from ``run_dir``: None when healthy, else the reason.

    Liveness: ``/ping`` answers 200 with the current inference key. Readiness also fails once the
    ``draining`` marker exists (written by the preStop hook), so the instance leaves the load balancer
    before TorchServe is stopped."""
    run_dir = run_dir.resolve()
    if readiness and (run_dir / DRAINING).exists():
        return "draining"
    try:
        server = Server(run_dir, read_properties(run_dir / SERVING_PROPERTIES))
        answer = requests.get(f"{server.inference_url}/ping", headers=server.headers(), timeout=timeout)
    except (OSError, ServeError, KeyError, requests.RequestException) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None if answer.status_code == 200 else f"/ping answered {answer.status_code}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def loopback_config(source: Path, target: Path, **overrides: str) -> Path:
    """``source`` config.properties with every listener moved to a free loopback port."""
    properties = read_properties(source)
    for kind in ("inference", "management", "metrics"):
        properties[f"{kind}_address"] = f"http://127.0.0.1:{free_port()}"
    properties["grpc_inference_port"] = str(free_port())
    properties["grpc_management_port"] = str(free_port())
    properties.update(overrides)
    return write_properties(properties, target)


@contextlib.contextmanager
def serving(config: Path, model_store: Path, models: list[str], run_dir: Path, timeout: float = 300.0) -> Iterator[Server]:
    """Start TorchServe, wait until ready, yield it, and always stop it."""
    server = start(config, model_store, models, run_dir)
    try:
        wait_ready(server, [m.split("=", 1)[0] for m in models], timeout)
        yield server
    finally:
        stop(run_dir)


def usage(server: Server, model_names: list[str]) -> str:
    """URLs and copy-paste calls for a running server."""
    name = model_names[0]
    key_cmd = f"$(python3 -c 'import json; print(json.load(open(\"{server.run_dir / KEY_FILE}\"))[\"inference\"][\"key\"])')"
    return "\n".join(
        [
            f"TorchServe is ready (run folder {server.run_dir})",
            f"  inference:  {server.inference_url}/predictions/{name}",
            f"  management: {server.management_url}/models/{name}",
            f"  metrics:    {server.metrics_url}/metrics",
            "Token authorization is on; every call needs the key from key_file.json:",
            f"  KEY={key_cmd}",
            f"  curl -H \"Authorization: Bearer $KEY\" -T some.jpg {server.inference_url}/predictions/{name}",
            "Stop with: make stop",
        ]
    )


def start_ready(args) -> tuple[Server, list[str]]:
    """``start`` then ``wait_ready``; stops the server again when it never gets ready."""
    models = args.models or ["deepfake-detector=deepfake-detector.mar"]
    names = [m.split("=", 1)[0] for m in models]
    config = args.config
    if args.enable_model_api:
        args.run_dir.mkdir(parents=True, exist_ok=True)
        config = write_properties({**read_properties(config), "enable_model_api": "true"}, args.run_dir / "config.properties")
    server = start(config, args.model_store, models, args.run_dir)
    try:
        seconds = wait_ready(server, names, args.timeout)
    except BaseException:
        stop(args.run_dir)
        raise
    print(f"ready in {seconds:.1f} s")
    print(usage(server, names), flush=True)
    if args.page_port:
        try:
            url = start_page(server, names[0], args.page_port, args.page_host)
        except BaseException:
            stop(args.run_dir)
            raise
        print(f"Upload page: {url}", flush=True)
    return server, names


def run_until_signalled(args) -> int:
    """Serve in the foreground (containers): on SIGTERM or SIGINT drain, then stop. Returns the exit code."""
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    server, _ = start_ready(args)
    while not stopping.is_set() and running_pid(server.run_dir):
        stopping.wait(1.0)
    signalled = stopping.is_set()
    stop(args.run_dir)
    print("TorchServe stopped" if signalled else "TorchServe exited on its own", flush=True)
    return 0 if signalled else 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("start", help="start TorchServe in the background and wait until the models are ready")
    fg = sub.add_parser("run", help="start, wait until ready, and serve in the foreground; SIGTERM drains, then stops")
    for command in (up, fg):
        command.add_argument("--config", type=Path, default=ROOT / "config" / "config.properties", help="config.properties (default: config/config.properties)")
        command.add_argument("--model-store", type=Path, default=ROOT / "model_store", help="folder of .mar files (default: model_store/)")
        command.add_argument("--model", action="append", dest="models", metavar="NAME=FILE.mar", help="model to load (repeatable; default: deepfake-detector=deepfake-detector.mar)")
        command.add_argument("--run-dir", type=Path, default=ROOT / "run", help="working folder for logs and key_file.json (default: run/)")
        command.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for readiness (default: %(default)s)")
        command.add_argument("--page-port", type=int, default=7860, help="upload page port; 0: no page (default: %(default)s)")
        command.add_argument("--page-host", default="127.0.0.1", help="upload page address (default: %(default)s)")
        command.add_argument("--enable-model-api", action="store_true",
                             help="allow registering and unregistering model versions (needed by scripts.rollout); off by default")
    down = sub.add_parser("stop", help="stop the TorchServe started from the run folder")
    down.add_argument("--run-dir", type=Path, default=ROOT / "run", help="(default: run/)")
    check = sub.add_parser("probe", help="exit 0 when healthy (container and Kubernetes probes)")
    check.add_argument("--readiness", action="store_true", help="also fail while draining (after the preStop hook)")
    check.add_argument("--run-dir", type=Path, default=ROOT / "run", help="(default: run/)")
    key = sub.add_parser("key", help="print the current token")
    key.add_argument("--kind", default="inference", choices=["inference", "management", "API"])
    key.add_argument("--run-dir", type=Path, default=ROOT / "run", help="(default: run/)")
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            start_ready(args)
        elif args.command == "run":
            sys.exit(run_until_signalled(args))
        elif args.command == "probe":
            problem = probe(args.run_dir, args.readiness)
            if problem:
                sys.exit(f"unhealthy: {problem}")
        elif args.command == "stop":
            print("TorchServe stopped" if stop(args.run_dir) else "TorchServe was not running")
        else:
            print(read_keys(args.run_dir.resolve())[args.kind])
    except ServeError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
