"""Roll a new model version out to a running TorchServe through its management API, and roll it back.
A model's video twin (``<name>-video``, serving/registrations.py) gets each new version and default too.

The library behind ``python -m scripts.rollout`` (see its ``--help``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import requests
from packaging.version import InvalidVersion, Version
from PIL import Image

from deepfake_service.packaging.archive import BuildError, build_mar
from deepfake_service.project import MODEL_CONFIG
from deepfake_service.serving.registrations import registrations
from deepfake_service.serving.server import ServeError, Server
from handler.clients import KEY_FILE as CLIENT_KEY_FILE
from handler.clients import probe_headers, read_key
from handler.roles import video_twin

TIMEOUT = 300.0  # seconds for a synchronous registration (the worker loads the model)


class RolloutError(Exception):
    """The management API refused a step, or the new version failed its smoke test."""


@dataclass(frozen=True)
class Deployed:
    """The version made default and its smoke-test answer (which shows its ``decision``)."""

    version: str
    smoke: dict


@dataclass(frozen=True)
class Versions:
    default: str
    registered: list[str]


def _order(version: str) -> tuple:
    try:
        return (0, Version(version))
    except InvalidVersion:
        return (1, version)


def _check(response: requests.Response, action: str) -> requests.Response:
    if response.status_code != 200:
        hint = " (start the server with --enable-model-api)" if response.status_code == 405 else ""
        raise RolloutError(f"{action}: HTTP {response.status_code} {response.text.strip()[:400]}{hint}")
    return response


def versions(server: Server, name: str) -> Versions:
    """The default version and every registered version of ``name``, oldest first."""
    headers = server.headers("management")
    default = _check(requests.get(f"{server.management_url}/models/{name}", headers=headers, timeout=30), f"describe {name}")
    everything = _check(requests.get(f"{server.management_url}/models/{name}/all", headers=headers, timeout=30), f"list {name}")
    registered = sorted({entry["modelVersion"] for entry in everything.json()}, key=_order)
    return Versions(default=default.json()[0]["modelVersion"], registered=registered)


def next_version(registered: list[str]) -> str:
    """One major version above the newest registered one: 1.0 -> 2.0."""
    newest = max(registered, key=_order)
    try:
        return f"{Version(newest).major + 1}.0"
    except InvalidVersion as exc:
        raise RolloutError(f"cannot count on from version {newest!r}; pass --version") from exc


def smoke_image() -> bytes:
    """A small gradient JPEG: any image the service must answer with a 200."""
    image = Image.linear_gradient("L").resize((224, 224)).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def predict(server: Server, name: str, version: str | None, image: bytes) -> dict:
    """The answer of ``name`` (``version``; None: the default) for ``image``, sent as a probe: its record is
    kept apart from review (handler/clients.py: a probe signed under the run's key). Raises ``RolloutError``
    unless it is a 200."""
    url = f"{server.inference_url}/predictions/{name}" + (f"/{version}" if version else "")
    probe = probe_headers(read_key(server.run_dir / CLIENT_KEY_FILE))
    response = requests.post(url, data=image, headers={**server.headers(), **probe}, timeout=120)
    if response.status_code != 200:
        raise RolloutError(f"prediction from {name} {version or '(default)'}: HTTP {response.status_code} {response.text.strip()[:400]}")
    return response.json()


def smoke_test(server: Server, name: str, version: str, serving: str, image: bytes) -> dict:
    """The new version answers, says it is ``version``, and has the serving version's labels."""
    answer = predict(server, name, version, image)
    if str(answer.get("version")) != version:
        raise RolloutError(f"smoke test: asked version {version}, answered by version {answer.get('version')}")
    old = predict(server, name, serving, image)
    if list(answer["probabilities"]) != list(old["probabilities"]):
        raise RolloutError(f"smoke test: labels changed from {list(old['probabilities'])} to {list(answer['probabilities'])}")
    return answer


def register(server: Server, mar: str, workers: int = 1, name: str | None = None, settings: dict | None = None) -> None:
    """Register ``mar`` (under its own name, or ``name``) with ``workers`` workers; ``settings`` (a
    snapshot entry, serving/registrations.py) give its batch size and delay."""
    params = {"url": mar, "initial_workers": workers, "synchronous": "true"}
    if name:
        params["model_name"] = name
    if settings:
        params.update(batch_size=settings["batchSize"], max_batch_delay=settings["maxBatchDelay"],
                      response_timeout=settings["responseTimeout"])
    _check(requests.post(f"{server.management_url}/models", params=params, headers=server.headers("management"), timeout=TIMEOUT),
           f"register {mar}" + (f" as {name}" if name else ""))


def served_twin(server: Server, name: str) -> str | None:
    """``name``'s video twin when the server has it registered (serving/registrations.py), else None."""
    listed = _check(requests.get(f"{server.management_url}/models", params={"limit": 1000}, headers=server.headers("management"),
                                 timeout=30), "list models")
    twin = video_twin(name)
    return twin if any(m["modelName"] == twin for m in listed.json().get("models", [])) else None


def unregister(server: Server, name: str, version: str) -> None:
    answer = requests.delete(f"{server.management_url}/models/{name}/{version}", headers=server.headers("management"), timeout=TIMEOUT)
    _check(answer, f"unregister {name} {version}")


def set_default(server: Server, name: str, version: str) -> None:
    answer = requests.put(f"{server.management_url}/models/{name}/{version}/set-default", headers=server.headers("management"), timeout=30)
    _check(answer, f"set {name} {version} default")


def deploy(
    server: Server,
    name: str,
    *,
    checkpoint: Path | None = None,
    mar: str | None = None,
    version: str | None = None,
    model_config: Path = MODEL_CONFIG,
    image: bytes | None = None,
) -> Deployed:
    """Register, smoke-test and promote a new version. The old default stays registered."""
    before = versions(server, name)
    if checkpoint is not None:
        version = version or next_version(before.registered)
        if version in before.registered:
            raise RolloutError(f"{name} version {version} is already registered")
        mar = f"{name}-v{version}.mar"
        try:
            build_mar(checkpoint, name, version, model_config=model_config,
                      export_dir=Path(server.properties["model_store"]), mar_name=mar[: -len(".mar")],
                      built_by="scripts.rollout")
        except BuildError as exc:
            raise RolloutError(f"packaging {checkpoint}: {exc}") from exc
    if mar is None:
        raise RolloutError("deploy needs --checkpoint or --mar")
    twin, settings = _twin_settings(server, name, mar)
    register(server, mar)
    after = versions(server, name)
    added = [v for v in after.registered if v not in before.registered]
    if len(added) != 1:
        raise RolloutError(f"{mar} did not add one new version of {name} (registered: {after.registered})")
    new = added[0]
    registered = [name]
    try:
        answer = smoke_test(server, name, new, before.default, image or smoke_image())
        if twin:  # the same archive again for videos, with the video section's batching (handler/roles.py)
            register(server, mar, settings["minWorkers"], twin, settings)
            registered.append(twin)
            smoke_test(server, twin, new, before.default, image or smoke_image())
    except RolloutError:
        for each in registered:
            unregister(server, each, new)
        raise
    for each in registered:
        set_default(server, each, new)
    return Deployed(new, answer)


def _twin_settings(server: Server, name: str, mar: str) -> tuple[str | None, dict | None]:
    """The video twin to register ``mar`` under too, with its snapshot settings; refuses, before anything
    is registered, an archive whose video section does not match what the server serves."""
    try:
        found = registrations([f"{name}={mar}"], Path(server.properties["model_store"]))
    except ServeError as exc:
        raise RolloutError(str(exc)) from exc
    twin, wanted = served_twin(server, name), video_twin(name)
    if twin and wanted not in found:
        raise RolloutError(f"the server serves videos on {twin}, but {mar} has no video: section; build it with one "
                           "(config/model-config.yaml) or restart the server with this archive")
    if not twin and wanted in found:
        raise RolloutError(f"{mar} has a video: section but the server has no {wanted} registration; restart it "
                           "(make stop; make serve) to serve videos on their own workers")
    return twin, next(iter(found[wanted].values())) if twin else None


def rollback(server: Server, name: str, to: str | None = None, retire: bool = False) -> str:
    """Make ``to`` (default: the newest version older than the current default) the default; returns it."""
    state = versions(server, name)
    if to is None:
        older = [v for v in state.registered if _order(v) < _order(state.default)]
        if not older:
            raise RolloutError(f"no version of {name} older than {state.default} is registered (registered: {state.registered})")
        to = older[-1]
    if to not in state.registered:
        raise RolloutError(f"{name} version {to} is not registered (registered: {state.registered})")
    names = [name]
    twin = served_twin(server, name)  # the video twin follows the image registration
    if twin:
        twin_state = versions(server, twin)
        if to not in twin_state.registered:
            raise RolloutError(f"{twin} has no version {to} (registered: {twin_state.registered}); nothing was changed")
        names.append(twin)
    for each in names:
        set_default(server, each, to)
    if retire and state.default != to:
        for each in names:
            if each == name or state.default in twin_state.registered:
                unregister(server, each, state.default)
    return to


def describe_decision(decision: dict) -> str:
    """One line on the operating point an answer was decided by."""
    if not decision.get("calibrated"):
        return "uncalibrated (no decision.json): verdicts follow the top label, never uncertain"
    return (f"calibrated, T {decision['temperature']:.4g}; fake if P({decision['fake_label']}) >= {decision['fake_threshold']:.4f} "
            f"(target FPR {decision['target_fpr']}), uncertain from {decision['uncertain_threshold']:.4f} "
            f"(FPR {decision['uncertain_fpr']})")
