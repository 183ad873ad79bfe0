"""Package a checkpoint folder and the handler into a TorchServe model archive (.mar).

The library behind ``python -m scripts.build_mar`` (see its ``--help``).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from deepfake_service.packaging.face_detector import detector_file
from deepfake_service.packaging.openvino import convert_to_openvino
from deepfake_service.packaging.quantize import QuantizationError, prepare_int8
from deepfake_service.project import FACE_DETECTORS, HANDLER_PACKAGE, MODEL_CONFIG, MODEL_STORE, handler_options
from handler.checkpoint import BUILD_RECORD, CheckpointError, read_checkpoint_info, weight_files
from handler.decision import DECISION_FILE, DecisionError, read_decision
from handler.detectors import DETECTORS
from handler.options import HandlerOptions, OptionsError

ENTRY_POINT = "ts_handler.py"


class BuildError(Exception):
    """The inputs cannot make a working archive."""


@dataclass(frozen=True)
class Int8Inputs:
    """What an int8 archive needs: calibration images (openvino) and a labelled validation folder,
    or the explicit timing-only override."""

    calibration: Path | None = None
    validation: Path | None = None
    unvalidated: bool = False


def in_fresh_process(function, *args):
    """``function(*args)`` in a freshly spawned interpreter; its exception, if any, is raised here.

    OpenVINO names nodes from process-wide counters, so converting twice in one process would give two
    different (if equivalent) model.xml files; a fresh process keeps archives reproducible."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def stage_payload(checkpoint: Path, options: HandlerOptions, stage: Path, int8: Int8Inputs = Int8Inputs()) -> Path:
    """Lay out handler/ and the checkpoint folder under ``stage``; returns ``stage``."""
    shutil.copytree(HANDLER_PACKAGE, stage / "handler", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    target = stage / options.checkpoint
    target.mkdir(parents=True)
    for name in ("config.json", "preprocessor_config.json"):
        shutil.copy2(checkpoint / name, target / name)
    for weights in weight_files(checkpoint):
        shutil.copy2(weights, target / weights.name)
    for optional in ("model.safetensors.index.json", DECISION_FILE):  # decision.json: the operating point
        if (checkpoint / optional).is_file():
            shutil.copy2(checkpoint / optional, target / optional)
    if options.face_model_file:
        stage_face_model(checkpoint, options, target)
    if _packed_trust_list(options):
        stage_checkpoint_file(checkpoint, options.provenance_trust_list, target, "provenance_trust_list",
                              "put the PEM file in the checkpoint folder, or give an absolute path on the serving host")
    if options.runtime in ("openvino", "auto"):  # auto may choose OpenVINO where it is fastest
        try:
            in_fresh_process(convert_to_openvino, checkpoint, target)
        except Exception as exc:
            raise BuildError(f"OpenVINO conversion failed: {type(exc).__name__}: {exc}") from exc
    if options.precision == "int8":
        try:
            in_fresh_process(prepare_int8, target, options.runtime, int8.calibration, int8.validation, int8.unvalidated,
                             options.limits)
        except QuantizationError as exc:
            raise BuildError(str(exc)) from exc
    return stage


def _packed_trust_list(options: HandlerOptions) -> bool:
    """A trust list named relative to the checkpoint folder travels in the archive; an absolute one stays
    on the serving host (operators replace it without a rebuild)."""
    return bool(options.provenance_trust_list) and not Path(options.provenance_trust_list).is_absolute()


def stage_face_model(checkpoint: Path, options: HandlerOptions, target: Path) -> None:
    """Copy the configured face detector file (BlazeFace's TFLite, YuNet's ONNX) into the archive's
    checkpoint folder."""
    source = detector_file(checkpoint, options)
    if source is not None and source.parent == FACE_DETECTORS:  # a detector's default file, from models/
        if not source.is_file():
            raise BuildError(f"{source} is missing: {DETECTORS[options.face_detector].get_file}; or set face_detector: haar")
        shutil.copy2(source, target / source.name)
        return
    stage_checkpoint_file(checkpoint, options.face_model_file, target, "face_model",
                          f"download it with python -m scripts.fetch_checkpoint --face-model --output {checkpoint}, "
                          "or set face_detector: haar")


def stage_checkpoint_file(checkpoint: Path, name: str, target: Path, option: str, remedy: str) -> None:
    """Copy the file ``option`` names from the checkpoint folder into the archive's."""
    if Path(name).name != name:
        raise BuildError(f"{option} must be a file name inside the checkpoint folder, got {name!r}")
    source = checkpoint / name
    if not source.is_file():
        raise BuildError(f"{option} {name} is not in {checkpoint}; {remedy}")
    shutil.copy2(source, target / name)


def digest_files(paths: list[Path], root: Path | None) -> str:
    """sha256 over the files' names (relative to ``root``; None: their own names) and contents, in name order."""
    digest = hashlib.sha256()

    def named(path: Path) -> str:
        return path.relative_to(root).as_posix() if root is not None else path.name

    for path in sorted(paths, key=named):
        digest.update(named(path).encode() + b"\0")
        with open(path, "rb") as f:
            while block := f.read(1 << 22):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def build_inputs(checkpoint: Path, model_config: Path, options: HandlerOptions) -> dict[str, str]:
    """Content hashes of what an archive is built from: the model's own files in the checkpoint folder,
    the model config, the files the model config names in that folder (face model, trust list) and the
    handler code. Equal hashes give an equivalent archive. Raises ``CheckpointError`` for a folder without
    safetensors weights."""
    checkpoint = checkpoint.resolve()
    model = [checkpoint / n for n in ("config.json", "preprocessor_config.json", "model.safetensors.index.json", DECISION_FILE)]
    model += weight_files(checkpoint)
    source = detector_file(checkpoint, options)
    named = [source] if source is not None else []
    named += [checkpoint / options.provenance_trust_list] if _packed_trust_list(options) else []
    handler = [p for p in HANDLER_PACKAGE.rglob("*.py") if "__pycache__" not in p.parts]
    return {
        "checkpoint_sha256": digest_files([p for p in model if p.is_file()], checkpoint),
        "model_config_sha256": hashlib.sha256(model_config.read_bytes()).hexdigest(),
        "config_files_sha256": digest_files([p for p in named if p.is_file()], None),
        "handler_sha256": digest_files(handler, HANDLER_PACKAGE),
    }


def read_build_record(mar: Path) -> dict | None:
    """The build record inside an archive, or None (no archive, one built without a record, or a record
    without the fields every build writes)."""
    try:
        with zipfile.ZipFile(mar) as archive:
            record = json.loads(archive.read(BUILD_RECORD))
        return record if isinstance(record, dict) and {"built_by", "checkpoint"} <= set(record) else None
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None


def load_options(model_config: Path) -> HandlerOptions:
    """The handler options of a model-config.yaml; raises ``BuildError`` naming what is wrong."""
    try:
        options = handler_options(model_config)
    except (OSError, ValueError, AttributeError, OptionsError) as exc:
        raise BuildError(f"{model_config}: {exc}") from exc
    if options.precision == "int8" and options.runtime not in ("torch", "openvino"):
        raise BuildError(f"{model_config}: precision int8 is built and gated for one runtime: set runtime torch or openvino")
    entry = DETECTORS[options.face_detector]
    if entry.needs_file and not entry.file_name(options.face_model):
        raise BuildError(f"{model_config}: face_detector {entry.name} needs face_model, its file in the checkpoint folder "
                         f"({entry.get_file}), or set face_detector: haar")
    return options


def build_mar(
    checkpoint: Path,
    name: str,
    version: str,
    *,
    model_config: Path = MODEL_CONFIG,
    export_dir: Path = MODEL_STORE,
    mar_name: str | None = None,
    int8: Int8Inputs = Int8Inputs(),
    built_by: str = "scripts.build_mar",
    source: str | None = None,
) -> Path:
    """Build ``export_dir/<mar_name or name>.mar``; raises ``BuildError`` for unusable inputs.

    A ``decision.json`` in the checkpoint folder (the operating point, ``scripts.calibrate``) is packed
    and checked against the model's labels first. The archive carries ``build.json``: the checkpoint (``source``: where it came from, e.g. a Hub id),
    the content hashes of ``build_inputs`` and ``built_by``. The same inputs give the same archive
    members with the same bytes, except the creation time torch-model-archiver stamps into
    MAR-INF/MANIFEST.json.
    """
    options = load_options(model_config)
    try:
        info = read_checkpoint_info(checkpoint)
        read_decision(checkpoint, info.labels, options.fake_label)  # a decision the worker would refuse
    except (CheckpointError, DecisionError) as exc:
        raise BuildError(str(exc)) from exc
    record = {"name": name, "version": version, "built_by": built_by, "checkpoint": str(checkpoint.resolve()),
              "source": source, **build_inputs(checkpoint, model_config, options)}
    export_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="build-mar-") as scratch:
        scratch = Path(scratch)
        payload = stage_payload(checkpoint, options, scratch / "payload", int8)
        (payload / BUILD_RECORD).write_text(json.dumps(record, indent=2) + "\n")
        command = [
            str(Path(sys.executable).parent / "torch-model-archiver"),
            "--model-name", name,
            "--version", version,
            "--handler", str(payload / "handler" / ENTRY_POINT),
            "--extra-files", str(payload),
            "--config-file", str(model_config),
            "--export-path", str(scratch),
            "--archive-format", "zip-store",
            "--force",
        ]
        # The archiver stages in $TMPDIR/<model-name> and deletes it afterwards: keep that private.
        private_tmp = scratch / "tmp"
        private_tmp.mkdir()
        env = dict(os.environ, TMPDIR=str(private_tmp))
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise BuildError(f"torch-model-archiver failed:\n{result.stdout}{result.stderr}")
        # The archive file may be named apart from the model (one file per version in one store).
        target = export_dir / f"{mar_name or name}.mar"
        shutil.move(scratch / f"{name}.mar", target)
    return target
