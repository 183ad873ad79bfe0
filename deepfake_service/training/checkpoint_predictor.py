"""The handler core in process on a checkpoint folder or a model archive's contents: ``predictors.Predictor``'s
answers as a TorchServe worker would give them. Imported by ``predictors.checkpoint_predictor`` and
``predictors.archive_predictor`` when one is built (in process, or in a Ray actor), never by a Ray driver.
"""

from __future__ import annotations

import atexit
import dataclasses
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Sequence

from deepfake_service.packaging.face_detector import with_detector_file
from deepfake_service.serving.registrations import archive_settings
from deepfake_service.training.scored import Scored, error_text, payload_sha256
from deepfake_service.training.sources import read_media
from handler.analysis import Analysis, Request
from handler.answers import answer
from handler.checkpoint import read_checkpoint_info, weight_files
from handler.classifier import DeepfakeClassifier
from handler.errors import RequestError
from handler.options import HandlerOptions
from handler.recorder import weights_sha256
from handler.store import RecordSettings


class CheckpointPredictor:
    """The handler core on a checkpoint folder: same decoding, limits and preprocessing as a worker.

    ``device``: where the runtime runs (the server's precision rules apply); ``records``: keep a record of
    each file there (route ``route``, client ``client``; None: no records); ``name``, ``version``: the model
    identity answers carry."""

    def __init__(self, checkpoint: Path, options: HandlerOptions, face_mode: str | None = None, *, device: str = "cpu",
                 records: RecordSettings | None = None, client: str | None = None, route: str = "scan", name: str = "model",
                 version: str = "1.0") -> None:
        self.classifier = DeepfakeClassifier.from_checkpoint(checkpoint, with_detector_file(options, checkpoint), device=device,
                                                             records=records, hashes=True, name=name, version=version)
        self.weights_sha256 = weights_sha256(weight_files(read_checkpoint_info(checkpoint).path))
        self.face_mode, self.client, self.route = face_mode, client, route

    def predict(self, paths: Sequence[Path | str]) -> list[Scored]:
        payloads = [read_media(p) for p in paths]
        analyses = self.classifier.analyse([Request(p, self.face_mode, client=self.client, route=self.route) for p in payloads])
        return [self._scored(path, payload, analysis) for path, payload, analysis in zip(paths, payloads, analyses)]

    def _scored(self, path: Path | str, payload: bytes | RequestError, analysis: Analysis) -> Scored:
        """The file's ``Scored``: the answer the server would give (``predict_batch``'s), or its error."""
        record = analysis.record.id if analysis.record is not None else None
        common = dict(sha256=payload_sha256(payload), weights_sha256=self.weights_sha256, record=record)
        if analysis.error is not None:
            return Scored(path, error=error_text(analysis.error), **common)
        fingerprint = analysis.subjects.fingerprint
        return Scored(path, prediction=answer(analysis, self.classifier.answers), pdq=fingerprint.hex if fingerprint else None, **common)


def archive_predictor(mar: Path, face_mode: str | None = None, *, threads: int | None = None, **settings) -> CheckpointPredictor:
    """A ``CheckpointPredictor`` on a model archive's contents, as its worker would load them: the checkpoint
    folder unpacked once (into a temporary folder, removed at exit), the archive's own handler options (its
    ``threads`` replaced when given), name and version. ``settings``: ``CheckpointPredictor``'s keywords."""
    name, version, config = archive_settings(mar)
    options = HandlerOptions.from_mapping(config.get("handler"))
    if threads is not None:
        options = dataclasses.replace(options, threads=threads)
    folder = Path(tempfile.mkdtemp(prefix="scan-mar-"))
    atexit.register(shutil.rmtree, folder, True)
    with zipfile.ZipFile(mar) as archive:
        archive.extractall(folder, [member for member in archive.namelist() if member.startswith(options.checkpoint.rstrip("/") + "/")])
    return CheckpointPredictor(folder / options.checkpoint, options, face_mode, name=name, version=version, **settings)
