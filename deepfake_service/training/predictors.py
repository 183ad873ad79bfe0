"""Three ways to classify image files, with one result shape (``Scored``, deepfake_service/training/scored.py), for the
evaluate, calibrate and score commands.

``CheckpointPredictor`` (deepfake_service/training/checkpoint_predictor.py, imported when first built, so that a
Ray driver never loads torch) runs the handler core in-process on a checkpoint folder; ``EndpointPredictor``
posts each file to a running TorchServe; ``RayPredictor`` (deepfake_service/training/scan.py) runs
``CheckpointPredictor`` in a Ray Data actor pool. Each gives, per file, the handler's prediction dict or the
error text a client would have received, so an unreadable file never stops a run.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Callable, Iterator, Sequence

import requests

from deepfake_service.project import KEY_FILE, MODEL_CONFIG, MODEL_NAME, RUN_DIR, handler_options
from deepfake_service.serving.server import read_key_file
from deepfake_service.training.scan import LOCAL, PoolSettings, pool_rows
from deepfake_service.training.scored import Predictor, Scored, error_text, payload_sha256
from deepfake_service.training.sources import read_media
from handler.errors import ClientError
from handler.faces import FACE_MODES
from handler.payload import FACE_MODE_HEADER
from handler.roles import video_twin
from handler.store import RecordSettings
from handler.video import container_format

RETRIES = 3  # attempts per file when the server answers 5xx or the connection fails


def checkpoint_predictor(*args, **kwargs) -> Predictor:
    """``CheckpointPredictor(*args, **kwargs)`` (deepfake_service/training/checkpoint_predictor.py), imported only
    here: a Ray driver hands this to its actors and never loads torch itself."""
    from deepfake_service.training.checkpoint_predictor import CheckpointPredictor

    return CheckpointPredictor(*args, **kwargs)


def archive_predictor(*args, **kwargs) -> Predictor:
    """``checkpoint_predictor.archive_predictor(*args, **kwargs)``: a model archive's checkpoint, as its worker
    would load it; imported only here, as ``checkpoint_predictor``."""
    from deepfake_service.training import checkpoint_predictor as module

    return module.archive_predictor(*args, **kwargs)


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
        payload = read_media(path)
        if isinstance(payload, ClientError):
            return Scored(path, error=error_text(payload))
        sha256 = payload_sha256(payload)
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
                    return Scored(path, prediction=response.json(), sha256=sha256)
                problem = f"HTTP {response.status_code}: {response.text.strip()[:300]}"
                if response.status_code < 500:
                    return Scored(path, error=_client_error_text(response, problem), sha256=sha256)
            time.sleep(0.5 * (attempt + 1))
        return Scored(path, error=problem, sha256=sha256)

    def predict(self, paths: Sequence[Path]) -> list[Scored]:
        headers = self._headers()
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(lambda p: self._post(p, headers), paths))


class RayPredictor:
    """``factory()``'s predictor (a ``CheckpointPredictor``) in a Ray Data actor pool (deepfake_service/training/scan.py):
    each actor builds it once; ``stream`` yields each batch as it finishes, each path once."""

    def __init__(self, factory: Callable[[], Predictor], pool: PoolSettings) -> None:
        self.factory, self.pool = factory, pool

    def stream(self, paths: Sequence[Path | str], chunk: int, progress: bool = True) -> Iterator[list[Scored]]:
        """Each finished batch's ``Scored``, the path as given; a batch Ray retried after losing a worker adds
        only the paths not already yielded."""
        done: set[int] = set()
        for rows in pool_rows([str(p) for p in paths], self.factory, self.pool, chunk, progress):
            fresh = [row for row in rows if row["i"] not in done]
            done.update(row["i"] for row in fresh)
            if fresh:
                yield [_scored_from_row(paths[row["i"]], row) for row in fresh]

    def predict(self, paths: Sequence[Path | str]) -> list[Scored]:
        found = {scored.path: scored for batch in self.stream(paths, max(1, len(paths))) for scored in batch}
        return [found[p] for p in paths]


def _scored_from_row(path: Path | str, row: dict) -> Scored:
    """A pool row (``ScanActor``'s) back as the ``Scored`` it was made from."""
    fields = {f.name for f in dataclasses.fields(Scored)} - {"path", "prediction"}
    values = {key: row[key] if row[key] != "" or key == "node" else None for key in fields}
    return Scored(path, prediction=json.loads(row["prediction"]) if row["prediction"] else None, **values)


def _client_error_text(response: requests.Response, fallback: str) -> str:
    """``error: detail`` from the handler's JSON error body, else the raw status line."""
    try:
        body = response.json()
        return f"{body['error']}: {body['detail']}"
    except (ValueError, KeyError, TypeError):
        return fallback


def scored_batches(predictor: Predictor, paths: Sequence[Path | str], chunk: int, progress: bool = True,
                   desc: str = "images") -> Iterator[list[Scored]]:
    """Classify ``paths`` in chunks of ``chunk``, yielding each chunk's results: in order with a progress bar,
    or, from a predictor that streams (``RayPredictor.stream``), in the order its chunks finish."""
    if hasattr(predictor, "stream"):
        yield from predictor.stream(paths, chunk, progress)
        return
    from tqdm import tqdm

    with tqdm(total=len(paths), desc=desc, unit="img", disable=not progress) as bar:
        for start in range(0, len(paths), chunk):
            found = predictor.predict(paths[start : start + chunk])
            bar.update(len(found))
            yield found


def predict_files(predictor: Predictor, paths: Sequence[Path | str], chunk: int, progress: bool = True, desc: str = "images") -> Iterator[Scored]:
    """``scored_batches``, one file at a time."""
    for batch in scored_batches(predictor, paths, chunk, progress, desc):
        yield from batch


def add_predictor_arguments(parser, face_mode: str | None) -> None:
    """CLI options shared by evaluate and score: where the model is, how to reach it, and the face mode
    (``face_mode`` is the command's default; None means the model's own default)."""
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--checkpoint", type=Path, help="HF checkpoint folder, run in-process with the handler core")
    where.add_argument("--archive", type=Path, help="a model archive (.mar), its checkpoint and handler options run in-process "
                                                    "as its worker would (--model-config, --runtime and --precision do not apply)")
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
    scale = parser.add_argument_group("Ray (checkpoint only; docs/scanning.md)")
    scale.add_argument("--ray", nargs="?", const=LOCAL, metavar="ADDRESS",
                       help="score in a Ray Data actor pool: on an embedded local Ray (no ADDRESS), or on the cluster at "
                            "ADDRESS (ray start's host:port, or ray://host:10001 for KubeRay)")
    scale.add_argument("--actors", type=int, help="Ray: actors in the pool (default: as many as the cluster's CPUs, or GPUs, hold)")
    scale.add_argument("--cpus-per-actor", type=float, default=1.0,
                       help="Ray: CPUs each actor holds, and its threads: torch's, the face detector's and the video decoder's "
                            "(whole CPUs, at least 1; default: %(default)s)")
    scale.add_argument("--gpus-per-actor", type=float, default=0.0,
                       help="Ray: GPUs each actor holds; > 0 runs the model on CUDA with the server's precision rules (default: %(default)s)")
    parser.add_argument("--keep-records", metavar="URL",
                        help="checkpoint: keep a record of each file in this record store (route scan; PostgreSQL for a cluster), "
                             "one transaction per batch, for the review page, labels, match and calibrate --records")


def served_face_mode(args) -> str:
    """``--face-mode`` when given, else the face mode ``--model-config`` serves (its handler section's
    ``face_mode``): what calibrate fits its thresholds on unless told otherwise."""
    return args.face_mode or handler_options(args.model_config).faces.mode


def predictor_from_args(args) -> Predictor:
    """The predictor the options name; raises ``ValueError`` for Ray or records through an endpoint."""
    archive = getattr(args, "archive", None)
    if args.endpoint is not None and (args.ray or args.keep_records):
        raise ValueError("--ray and --keep-records score with --checkpoint or --archive (an endpoint keeps its own records)")
    if args.endpoint is None:
        pool = PoolSettings(args.ray, args.actors, args.cpus_per_actor, args.gpus_per_actor) if args.ray else None
        records = RecordSettings(url=args.keep_records) if args.keep_records else None
        common = dict(device=pool.device if pool else "cpu", records=records, client=f"scan {getattr(args, 'output', '')}".strip()[:200])
        if archive is not None:
            factory = partial(archive_predictor, archive.resolve(), args.face_mode, threads=pool.threads if pool else None, **common)
        else:
            options = handler_options(args.model_config, runtime=args.runtime, precision=args.precision, threads=pool.threads if pool else None)
            factory = partial(checkpoint_predictor, args.checkpoint.resolve(), options, args.face_mode, **common)
        return RayPredictor(factory, pool) if pool else factory()
    key_file = args.key_file if args.key_file and args.key_file.is_file() else None
    return EndpointPredictor(args.endpoint, args.model, version=args.version, key_file=key_file,
                             concurrency=args.concurrency, face_mode=args.face_mode, video_model=args.video_model)
