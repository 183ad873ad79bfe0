"""The forward-pass seam: a runtime turns a pixel batch into logits.

Which runtime serves is chosen once, at load time, by name (``create_runtime``):

- ``torch``: eager PyTorch. CPU: fp32, bf16 (autocast), int8 (dynamically quantized Linear layers).
  CUDA: fp32, fp16, bf16.
- ``openvino``: an OpenVINO IR converted from the checkpoint when the archive was built
  (``openvino_model.xml`` beside the safetensors weights). CPU: fp32, bf16 (inference precision hint),
  int8 (``openvino_model_int8.xml``, NNCF post-training quantization at build time).

int8 is served only with a ``quantization.json`` written at build time: either the validation gate's
passing figures, or an explicit "unvalidated" override whose answers then say ``int8-unvalidated``.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Callable, Protocol

import torch
from transformers import ViTForImageClassification

from handler.checkpoint import (
    OPENVINO_INT8_MODEL,
    OPENVINO_MODEL,
    QUANTIZATION_REPORT,
    CheckpointError,
    read_quantization,
    weight_files,
)
from handler.hardware import native_bf16
from handler.selection import choose

logger = logging.getLogger(__name__)


class Runtime(Protocol):
    """``predict(pixels[N, 3, H, W] float32) -> logits[N, num_labels] float32 on CPU``.

    ``precision`` is what computes the logits, which may differ from the one asked for: ``fallback``
    then says why (e.g. bf16 asked on a CPU without native BF16). ``chosen_by`` says what ``auto``
    measured to pick it (None when model-config.yaml named it)."""

    name: str
    precision: str
    fallback: str | None
    chosen_by: str | None

    def predict(self, pixels: torch.Tensor) -> torch.Tensor: ...


def _check_precision(runtime: str, precision: str, offered: tuple[str, ...], where: str) -> None:
    if precision not in offered:
        raise CheckpointError(
            f"precision {precision!r} is not available on the {runtime} runtime on {where}; choose one of {offered}"
        )


class TorchRuntime:
    """Eager PyTorch on the device TorchServe assigned."""

    name = "torch"
    chosen_by: str | None = None
    PRECISIONS = {"cpu": ("fp32", "bf16", "int8"), "cuda": ("fp32", "fp16", "bf16")}
    AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}

    def __init__(self, checkpoint: Path, device: torch.device, precision: str = "fp32", threads: int = 0) -> None:
        _check_precision(self.name, precision, self.PRECISIONS.get(device.type, ("fp32",)), device.type)
        self.fallback = None
        if device.type == "cpu" and precision == "bf16" and not native_bf16():
            # Autocast would emulate bf16, several times slower than fp32 (seen on AVX2-only CPUs).
            self.fallback = "bf16 asked for, but this CPU has no native BF16 (avx512_bf16 / amx_bf16): running fp32"
            logger.warning("torch runtime: %s", self.fallback)
            precision = "fp32"
        if threads:
            torch.set_num_threads(threads)
        weight_files(checkpoint)  # refuses folders without safetensors before transformers looks
        model = ViTForImageClassification.from_pretrained(checkpoint, use_safetensors=True, local_files_only=True)
        model = model.to(device).eval()
        if precision == "int8":
            model = _quantize_linear_layers(model)
        self.model = model
        self.device = device
        self.precision = precision

    def predict(self, pixels: torch.Tensor) -> torch.Tensor:
        dtype = self.AUTOCAST.get(self.precision)
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            logits = self.model(pixel_values=pixels.to(self.device)).logits
        return logits.float().cpu()


def _quantize_linear_layers(model: torch.nn.Module) -> torch.nn.Module:
    """int8 weights, dynamically quantized activations, for every Linear layer (CPU only)."""
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.ao.quantization's migration notice
        warnings.simplefilter("ignore", UserWarning)
        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


class OpenVinoRuntime:
    """OpenVINO on the CPU, from the IR packed into the archive."""

    name = "openvino"
    chosen_by: str | None = None
    PRECISIONS = ("fp32", "bf16", "int8")
    # int8 keeps the operations NNCF left in float at f32.
    HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
    FILES = {"fp32": OPENVINO_MODEL, "bf16": OPENVINO_MODEL, "int8": OPENVINO_INT8_MODEL}

    def __init__(self, checkpoint: Path, device: torch.device, precision: str = "bf16", threads: int = 0) -> None:
        import openvino as ov

        _check_precision(self.name, precision, self.PRECISIONS, "cpu")
        model_file = checkpoint / self.FILES[precision]
        if not model_file.is_file():
            raise CheckpointError(
                f"{model_file} is missing: build the archive with runtime openvino and precision {precision} in model-config.yaml"
            )
        core = ov.Core()
        # LATENCY with all cores on one request was about twice as fast as THROUGHPUT on 2 cores.
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": self.HINTS[precision]}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(core.read_model(model_file), "CPU", config)
        self.precision, self.fallback = precision, None
        if precision != "int8":  # the plugin may ignore the hint (no native BF16): report what it compiled
            computed = openvino_precision(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
            if computed != precision:
                self.fallback = f"{precision} asked for, but OpenVINO compiled the model for {computed} on this CPU"
                logger.warning("openvino runtime: %s", self.fallback)
                self.precision = computed

    def predict(self, pixels: torch.Tensor) -> torch.Tensor:
        logits = self.compiled(pixels.numpy())[self.compiled.output(0)]
        return torch.from_numpy(logits).float()


def openvino_precision(hint) -> str:
    """OpenVINO's compiled inference precision (an ``ov.Type`` or its name: ``f32``, ``bf16``, ``f16``)
    as this service names precisions."""
    name = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
    return {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}.get(name.strip().lower(), name)


RUNTIMES: dict[str, Callable[..., Runtime]] = {"torch": TorchRuntime, "openvino": OpenVinoRuntime}


def create_runtime(name: str, checkpoint: Path, device: torch.device, precision: str, threads: int = 0) -> Runtime:
    """Build the named runtime for ``checkpoint``; raises ``CheckpointError`` for unknown names or precisions.

    ``auto`` (runtime, precision or both) picks the fastest candidate the archive carries on this machine
    (handler/selection.py); the runtime's ``chosen_by`` then says what was measured. A GPU worker always gets
    the torch runtime (an openvino archive also carries the safetensors weights).
    """
    if device.type != "cpu":
        name = "torch"  # the one place a GPU worker is pinned to torch (an openvino archive also carries the weights)
    if "auto" in (name, precision):
        image_size = int(json.loads((checkpoint / "config.json").read_text()).get("image_size", 224))
        choice, runtime = choose(checkpoint, device, lambda r, p: create_runtime(r, checkpoint, device, p, threads),
                                 image_size, name, precision, threads)
        runtime.chosen_by = choice.reason
        logger.info("%s", choice.reason)
        return runtime
    try:
        factory = RUNTIMES[name]
    except KeyError:
        raise CheckpointError(f"unknown runtime {name!r}; choose one of {sorted(RUNTIMES)}") from None
    validated = int8_validated(checkpoint, name) if precision == "int8" else True
    runtime = factory(checkpoint, device, precision, threads)
    if not validated:
        runtime.precision = "int8-unvalidated"
    return runtime


def int8_validated(checkpoint: Path, runtime: str) -> bool:
    """Whether the build-time gate passed for ``runtime``; raises ``CheckpointError`` when no verdict was written."""
    report = read_quantization(checkpoint)
    if report is None:
        raise CheckpointError(
            f"int8 needs {QUANTIZATION_REPORT} from the build's validation gate (scripts/build_mar.py "
            f"--calibration DIR --validation DIR); none is readable in {checkpoint}"
        )
    if report.get("runtime") != runtime:
        raise CheckpointError(f"{QUANTIZATION_REPORT} in {checkpoint} judges the {report.get('runtime')} runtime, not {runtime}")
    return report.get("validated") is True
