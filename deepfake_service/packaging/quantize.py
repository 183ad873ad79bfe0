"""int8 only where it is proven: post-training quantization and the validation gate.

The library behind ``python -m scripts.quantize`` (see its ``--help``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from deepfake_service.dataset import DatasetError, check_labels, load_samples, read_split
from deepfake_service.dataset import image_files as dataset_images
from deepfake_service.project import handler_options
from handler.checkpoint import OPENVINO_INT8_MODEL, OPENVINO_MODEL, QUANTIZATION_REPORT, load_image_processor, read_checkpoint_info
from handler.classifier import DeepfakeClassifier
from handler.images import ImageLimits, decode_image
from handler.options import HandlerOptions
from handler.runtime import RUNTIMES

MIN_AGREEMENT = 0.995
MAX_ACCURACY_DROP = 0.003
CHUNK = 16


class QuantizationError(Exception):
    """Inputs missing, or the int8 model failed the validation gate."""


@dataclass(frozen=True)
class QuantizationReport:
    runtime: str
    validated: bool
    images: int = 0
    argmax_agreement: float | None = None
    accuracy_fp32: float | None = None
    accuracy_int8: float | None = None
    max_abs_diff: float | None = None

    def write(self, folder: Path) -> Path:
        path = folder / QUANTIZATION_REPORT
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path


def image_files(source: Path) -> list[Path]:
    """Calibration images: a folder (recursive) or a split CSV written by the training command."""
    try:
        return [s.path for s in read_split(source)] if source.suffix.lower() == ".csv" else dataset_images(source)
    except DatasetError as exc:
        raise QuantizationError(str(exc)) from exc


def labelled_images(source: Path, labels: tuple[str, ...]) -> list[tuple[Path, int]]:
    """(path, class index) pairs from ``source/<label>/*`` or a split CSV; every label must be the checkpoint's."""
    try:
        samples = load_samples(source)
        check_labels(samples, labels)
    except DatasetError as exc:
        raise QuantizationError(f"validation data {source}: {exc}") from exc
    return [(s.path, labels.index(s.label)) for s in samples]


def _pixels(processor, paths: list[Path], limits: ImageLimits) -> torch.Tensor:
    """Decode and preprocess image files exactly as a worker would (its limits, the checkpoint's processor)."""
    images = [decode_image(p.read_bytes(), limits) for p in paths]
    return processor(images=images, return_tensors="pt")["pixel_values"]


def quantize_openvino(checkpoint: Path, calibration: Path, limits: ImageLimits, subset_size: int = 300) -> Path:
    """Write ``openvino_model_int8.xml`` next to the fp32 IR in ``checkpoint``, calibrated on ``calibration``."""
    import nncf
    import openvino as ov

    processor = load_image_processor(checkpoint)  # preprocessing only: no torch weights are loaded here
    paths = image_files(calibration)
    samples = [_pixels(processor, paths[i : i + 1], limits).numpy() for i in range(len(paths))]
    model = ov.Core().read_model(checkpoint / OPENVINO_MODEL)
    quantized = nncf.quantize(
        model, nncf.Dataset(samples), model_type=nncf.ModelType.TRANSFORMER, subset_size=min(subset_size, len(samples))
    )
    target = checkpoint / OPENVINO_INT8_MODEL
    ov.save_model(quantized, target, compress_to_fp16=False)
    return target


def validate_int8(checkpoint: Path, runtime: str, validation: Path, limits: ImageLimits) -> QuantizationReport:
    """Agreement and accuracy of the ``runtime`` int8 model against torch fp32 on labelled images."""
    labels = read_checkpoint_info(checkpoint).labels
    pairs = labelled_images(validation, labels)
    reference = DeepfakeClassifier.from_checkpoint(checkpoint, HandlerOptions(runtime="torch", precision="fp32"))
    # The runtime class itself, not create_runtime: the verdict it would ask for is what we are computing.
    candidate = RUNTIMES[runtime](checkpoint, torch.device("cpu"), "int8")
    agree = right_fp32 = right_int8 = 0
    worst = 0.0
    for start in range(0, len(pairs), CHUNK):
        chunk = pairs[start : start + CHUNK]
        pixels = _pixels(reference.processor, [p for p, _ in chunk], limits)
        fp32 = reference.runtime.predict(pixels).softmax(-1)
        int8 = candidate.predict(pixels).softmax(-1)
        truth = [label for _, label in chunk]
        for a, b, t in zip(fp32.argmax(-1).tolist(), int8.argmax(-1).tolist(), truth):
            agree += a == b
            right_fp32 += a == t
            right_int8 += b == t
        worst = max(worst, float((fp32 - int8).abs().max()))
    count = len(pairs)
    return QuantizationReport(
        runtime=runtime,
        validated=True,
        images=count,
        argmax_agreement=agree / count,
        accuracy_fp32=right_fp32 / count,
        accuracy_int8=right_int8 / count,
        max_abs_diff=worst,
    )


def check_gate(report: QuantizationReport) -> None:
    """Raise ``QuantizationError`` unless agreement >= 99.5 % and accuracy drops by at most 0.3 points."""
    drop = report.accuracy_fp32 - report.accuracy_int8
    if report.argmax_agreement < MIN_AGREEMENT or drop > MAX_ACCURACY_DROP + 1e-9:  # 1e-9: float rounding
        raise QuantizationError(
            f"int8 ({report.runtime}) refused: argmax agreement {100 * report.argmax_agreement:.2f} % "
            f"(needs >= {100 * MIN_AGREEMENT:.1f} %), accuracy {100 * report.accuracy_fp32:.2f} % -> "
            f"{100 * report.accuracy_int8:.2f} % (may drop at most {100 * MAX_ACCURACY_DROP:.1f} points) "
            f"on {report.images} validation images"
        )


def prepare_int8(
    checkpoint: Path, runtime: str, calibration: Path | None, validation: Path | None, unvalidated: bool,
    limits: ImageLimits | None = None,
) -> QuantizationReport:
    """Quantize (openvino) and gate; writes ``quantization.json`` into ``checkpoint``. Images are decoded
    with ``limits`` (default: the shipped model config's), as the worker will decode them.

    Raises ``QuantizationError`` for missing folders or a failed gate (nothing is written then).
    """
    limits = limits or handler_options().limits
    if runtime == "openvino":
        if calibration is None:
            raise QuantizationError("openvino int8 needs --calibration DIR (images like those the service will see)")
        quantize_openvino(checkpoint, calibration, limits)
    if unvalidated:
        report = QuantizationReport(runtime=runtime, validated=False)
    else:
        if validation is None:
            raise QuantizationError(
                "int8 needs --validation DIR (labelled <label>/ sub-folders) to prove it matches fp32, "
                "or --unvalidated-int8 for timing only"
            )
        report = validate_int8(checkpoint, runtime, validation, limits)
        check_gate(report)
    report.write(checkpoint)
    return report
