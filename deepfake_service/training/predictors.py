"""Two ways to classify image files, with one result shape, for the evaluate and score commands.

``CheckpointPredictor`` runs the handler core in-process on a checkpoint folder; ``EndpointPredictor``
posts each file to a running TorchServe. Both give, per file, the handler's prediction dict or the
error text a client would have received, so an unreadable file never stops a run.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Protocol, Sequence

import requests

from deepfake_service.packaging.face_detector import with_detector_file
from deepfake_service.project import KEY_FILE, MODEL_CONFIG, MODEL_NAME, RUN_DIR, handler_options
from deepfake_service.serving.server import read_key_file
from handler.analysis import Request
from handler.classifier import DeepfakeClassifier
from handler.errors import ClientError, RequestError
from handler.faces import FACE_MODES
from handler.options import HandlerOptions
from handler.payload import FACE_MODE_HEADER
from handler.roles import video_twin
from handler.video import container_format

RETRIES = 3  # attempts per file when the server answers 5xx or the connection fails


@dataclass(frozen=True)
class Scored:
    """One file's outcome: ``prediction`` (the handler's dict) or ``error`` (what went wrong)."""

    path: Path
    prediction: dict[str, Any] | None = None
    error: str | None = None


class Predictor(Protocol):
    def predict(self, paths: Sequence[Path]) -> list[Scored]:
        """Classify ``paths`` (one chunk); one ``Scored`` per path, in order."""


def _read(path: Path) -> bytes | ClientError:
    try:
        return path.read_bytes()
    except OSError as exc:
        return ClientError(f"cannot read {path}: {exc.strerror or exc}")


def _error_text(error: RequestError) -> str:
    return f"{error.error}: {error.detail}"


class CheckpointPredictor:
    """The handler core on a checkpoint folder: same decoding, limits and preprocessing as a worker."""

    def __init__(self, checkpoint: Path, options: HandlerOptions, face_mode: str | None = None) -> None:
        self.classifier = DeepfakeClassifier.from_checkpoint(checkpoint, with_detector_file(options, checkpoint))
        self.face_mode = face_mode

    def predict(self, paths: Sequence[Path]) -> list[Scored]:
        results = self.classifier.predict_batch([Request(_read(p), self.face_mode) for p in paths])
        return [
            Scored(path, error=_error_text(r)) if isinstance(r, RequestError) else Scored(path, prediction=r)
            for path, r in zip(paths, results)
        ]


class EndpointPredictor:
    """Posts files to ``<url>/predictions/<model>[/<version>]`` concurrently, so TorchServe batches them;
    videos (by content) to ``<url>/predictions/<video_model>[/<version>]``, the registration whose own
    workers analyse them (default: the model's video twin, handler/roles.py).

    The key is re-read from ``key_file`` (TorchServe's key_file.json) before every chunk: keys expire
    and can be rotated while a long run goes on.
    """

    def __init__(
        self,
        url: str,
        model: str,
        *,
        version: str | None = None,
        key_file: Path | None = None,
        key: str | None = None,
        concurrency: int = 8,
        timeout: float = 120.0,
        face_mode: str | None = None,
        video_model: str | None = None,
    ) -> None:
        self.endpoint = f"{url.rstrip('/')}/predictions/{model}" + (f"/{version}" if version else "")
        self.video_endpoint = f"{url.rstrip('/')}/predictions/{video_model or video_twin(model)}" + (f"/{version}" if version else "")
        self.face_mode = face_mode
        self.key_file, self.key = key_file, key
        self.concurrency, self.timeout = concurrency, timeout
        self._local = threading.local()

    def _headers(self) -> dict[str, str]:
        key = self.key
        if self.key_file is not None:
            key = read_key_file(self.key_file)["inference"]
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return {**headers, FACE_MODE_HEADER: self.face_mode} if self.face_mode else headers

    def _session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def _post(self, path: Path, headers: dict[str, str]) -> Scored:
        payload = _read(path)
        if isinstance(payload, ClientError):
            return Scored(path, error=_error_text(payload))
        problem = "no answer"
        for attempt in range(RETRIES):
            try:
                endpoint = self.video_endpoint if container_format(payload) else self.endpoint
                response = self._session().post(endpoint, data=payload, headers=headers, timeout=self.timeout)
                if response.status_code == 404 and endpoint != self.endpoint:  # a server without a video registration
                    self.video_endpoint = self.endpoint
                    response = self._session().post(self.endpoint, data=payload, headers=headers, timeout=self.timeout)
            except requests.RequestException as exc:
                problem = f"request failed: {exc}"
            else:
                if response.status_code == 200:
                    return Scored(path, prediction=response.json())
                problem = f"HTTP {response.status_code}: {response.text.strip()[:300]}"
                if response.status_code < 500:
                    return Scored(path, error=_client_error_text(response, problem))
            time.sleep(0.5 * (attempt + 1))
        return Scored(path, error=problem)

    def predict(self, paths: Sequence[Path]) -> list[Scored]:
        headers = self._headers()
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(lambda p: self._post(p, headers), paths))


def _client_error_text(response: requests.Response, fallback: str) -> str:
    """``error: detail`` from the handler's JSON error body, else the raw status line."""
    try:
        body = response.json()
        return f"{body['error']}: {body['detail']}"
    except (ValueError, KeyError, TypeError):
        return fallback


def predict_files(predictor: Predictor, paths: Sequence[Path], chunk: int, progress: bool = True, desc: str = "images") -> Iterator[Scored]:
    """Classify ``paths`` in chunks of ``chunk``, yielding results in order, with a progress bar."""
    from tqdm import tqdm

    with tqdm(total=len(paths), desc=desc, unit="img", disable=not progress) as bar:
        for start in range(0, len(paths), chunk):
            for scored in predictor.predict(paths[start : start + chunk]):
                bar.update(1)
                yield scored


def add_predictor_arguments(parser, face_mode: str | None) -> None:
    """CLI options shared by evaluate and score: where the model is, how to reach it, and the face mode
    (``face_mode`` is the command's default; None means the model's own default)."""
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--checkpoint", type=Path, help="HF checkpoint folder, run in-process with the handler core")
    where.add_argument("--endpoint", help="a running TorchServe inference URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--model", default=MODEL_NAME, help="endpoint: model name (default: %(default)s)")
    parser.add_argument("--version", help="endpoint: model version (default: the default version)")
    parser.add_argument("--video-model", help="endpoint: the registration videos go to (default: <model>-video, "
                                              "the video twin make serve registers; the model's own name if the server has none)")
    parser.add_argument("--key-file", type=Path, default=RUN_DIR / KEY_FILE,
                        help="endpoint: TorchServe's key_file.json, re-read per chunk (default: run/key_file.json)")
    parser.add_argument("--concurrency", type=int, default=8, help="endpoint: requests in flight (default: %(default)s)")
    parser.add_argument("--runtime", choices=["torch", "openvino"], default="torch",
                        help="checkpoint: runtime (default: torch; openvino needs openvino_model.xml in the folder)")
    parser.add_argument("--precision", default="fp32", help="checkpoint: precision (default: %(default)s)")
    parser.add_argument("--model-config", type=Path, default=MODEL_CONFIG,
                        help="checkpoint: handler options (image caps, JPEG draft) come from here (default: config/model-config.yaml)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per chunk (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--face-mode", choices=FACE_MODES, default=face_mode,
                        help="auto | faces | off; off for datasets that are already face crops "
                             f"(default: {face_mode or 'the model config default'})")


def served_face_mode(args) -> str:
    """``--face-mode`` when given, else the face mode ``--model-config`` serves (its handler section's
    ``face_mode``): what calibrate fits its thresholds on unless told otherwise."""
    return args.face_mode or handler_options(args.model_config).faces.mode


def predictor_from_args(args) -> Predictor:
    if args.checkpoint is not None:
        options = handler_options(args.model_config, runtime=args.runtime, precision=args.precision)
        return CheckpointPredictor(args.checkpoint, options, args.face_mode)
    key_file = args.key_file if args.key_file and args.key_file.is_file() else None
    return EndpointPredictor(args.endpoint, args.model, version=args.version, key_file=key_file,
                             concurrency=args.concurrency, face_mode=args.face_mode, video_model=args.video_model)
