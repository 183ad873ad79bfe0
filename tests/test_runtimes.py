"""Every runtime x precision loads the tiny ViT and agrees with torch fp32 within a stated tolerance."""

from __future__ import annotations

import shutil

import pytest
import torch

from deepfake_service.packaging.openvino import convert_to_openvino
from deepfake_service.packaging.quantize import prepare_int8
from deepfake_service.samples import imagegen
from handler.checkpoint import CheckpointError
from handler.classifier import DeepfakeClassifier
from handler.hardware import cpu_description, cpu_flags, native_bf16
from handler.options import HandlerOptions
from handler.runtime import OpenVinoRuntime, TorchRuntime, openvino_precision
from tests.tiny import TINY_LABELS

# Largest |probability difference| from torch fp32 accepted on the tiny random ViT.
TOLERANCE = {"fp32": 1e-5, "bf16": 0.02, "int8": 0.05}
MODES = [("torch", "fp32"), ("torch", "bf16"), ("torch", "int8"), ("openvino", "fp32"), ("openvino", "bf16"), ("openvino", "int8")]


def computed(runtime, asked: str) -> str:
    """The precision this CPU really computes for ``asked``: torch falls back to fp32 without native BF16;
    OpenVINO says what it compiled."""
    if isinstance(runtime, OpenVinoRuntime) and asked != "int8":
        return openvino_precision(runtime.compiled.get_property("INFERENCE_PRECISION_HINT"))
    return "fp32" if asked == "bf16" and not native_bf16() else asked


@pytest.fixture(scope="module")
def openvino_checkpoint(tiny_checkpoint, tmp_path_factory):
    folder = shutil.copytree(tiny_checkpoint, tmp_path_factory.mktemp("ov") / "checkpoint")
    convert_to_openvino(folder, folder)
    return folder


@pytest.fixture(scope="module")
def int8_checkpoints(openvino_checkpoint, labelled_folder, tmp_path_factory):
    """One folder per runtime whose int8 model passed the validation gate."""
    folders = {}
    for runtime in ("torch", "openvino"):
        folder = shutil.copytree(openvino_checkpoint, tmp_path_factory.mktemp(f"int8-{runtime}") / "checkpoint")
        prepare_int8(folder, runtime, labelled_folder / TINY_LABELS[0], labelled_folder, unvalidated=False)
        folders[runtime] = folder
    return folders


@pytest.fixture(scope="module")
def payloads():
    return [imagegen.jpeg(seed=s, width=40 + 7 * s, height=36) for s in range(6)]


@pytest.mark.parametrize("runtime,precision", MODES)
def test_runtime_agrees_with_torch_fp32(runtime, precision, classifier, openvino_checkpoint, int8_checkpoints, payloads):
    options = HandlerOptions(runtime=runtime, precision=precision)
    folder = int8_checkpoints[runtime] if precision == "int8" else openvino_checkpoint
    candidate = DeepfakeClassifier.from_checkpoint(folder, options)
    expected = classifier.predict_batch(payloads)
    answers = candidate.predict_batch(payloads)
    assert [(a["runtime"], a["precision"]) for a in answers] == [(runtime, computed(candidate.runtime, precision))] * len(payloads)
    worst = max(
        abs(a["probabilities"][label] - e["probabilities"][label]) for a, e in zip(answers, expected) for label in e["probabilities"]
    )
    assert worst <= TOLERANCE[precision], worst


@pytest.mark.parametrize("runtime,precision", [("torch", "fp16"), ("openvino", "fp64")])
def test_unavailable_precision_is_refused_by_name(runtime, precision, openvino_checkpoint):
    with pytest.raises(CheckpointError, match=precision):
        DeepfakeClassifier.from_checkpoint(openvino_checkpoint, HandlerOptions(runtime=runtime, precision=precision))


def test_openvino_without_converted_model_is_refused(tiny_checkpoint):
    with pytest.raises(CheckpointError, match="openvino_model.xml"):
        DeepfakeClassifier.from_checkpoint(tiny_checkpoint, HandlerOptions(runtime="openvino", precision="fp32"))


def test_int8_verdict_of_another_runtime_is_refused(int8_checkpoints):
    with pytest.raises(CheckpointError, match="judges the openvino runtime"):
        DeepfakeClassifier.from_checkpoint(int8_checkpoints["openvino"], HandlerOptions(runtime="torch", precision="int8"))


def test_torch_bf16_on_a_cpu_without_native_bf16_runs_fp32_and_says_so(tiny_checkpoint, monkeypatch):
    pixels = torch.rand(3, 3, 32, 32)
    reference = TorchRuntime(tiny_checkpoint, torch.device("cpu"), "fp32").predict(pixels)
    monkeypatch.setattr("handler.runtime.native_bf16", lambda: False)
    runtime = TorchRuntime(tiny_checkpoint, torch.device("cpu"), "bf16")
    assert runtime.precision == "fp32" and "no native BF16" in runtime.fallback
    # No autocast ran: fp32 logits to within float rounding (two model copies may round apart in the last
    # bits), where bf16 would be off by about 1e-3.
    torch.testing.assert_close(runtime.predict(pixels), reference, rtol=0, atol=1e-6)


def test_torch_bf16_on_a_cpu_with_native_bf16_autocasts(tiny_checkpoint, monkeypatch):
    monkeypatch.setattr("handler.runtime.native_bf16", lambda: True)
    runtime = TorchRuntime(tiny_checkpoint, torch.device("cpu"), "bf16")
    assert (runtime.precision, runtime.fallback) == ("bf16", None)


def test_openvino_reports_the_precision_it_compiled(openvino_checkpoint):
    runtime = OpenVinoRuntime(openvino_checkpoint, torch.device("cpu"), "bf16")
    compiled = openvino_precision(runtime.compiled.get_property("INFERENCE_PRECISION_HINT"))
    assert runtime.precision == compiled
    assert (runtime.fallback is None) == (compiled == "bf16")
    assert OpenVinoRuntime(openvino_checkpoint, torch.device("cpu"), "fp32").precision == "fp32"


def test_openvino_precision_names():
    import openvino as ov

    assert [openvino_precision(t) for t in (ov.Type.bf16, ov.Type.f32, "f16")] == ["bf16", "fp32", "fp16"]


def test_cpu_flags_are_read_on_x86_and_aarch64(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_tile\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd i8mm bf16\n")
    avx2 = tmp_path / "avx2"
    avx2.write_text("flags\t\t: fpu sse avx avx2 fma\n")
    assert native_bf16(cpu_flags(x86)) and native_bf16(cpu_flags(arm)) and not native_bf16(cpu_flags(avx2))
    described = cpu_description(x86)
    assert described["model"] == "Some CPU" and described["isa"] == ["avx2", "avx512f", "avx512_bf16"]
