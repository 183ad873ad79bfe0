"""Every runtime x precision loads the tiny ViT and agrees with torch fp32 within a stated tolerance."""

from __future__ import annotations

import shutil

import pytest

from handler.checkpoint import CheckpointError
from handler.classifier import DeepfakeClassifier
from handler.options import HandlerOptions
from scripts.packaging.openvino import convert_to_openvino
from scripts.packaging.quantize import prepare_int8
from tests import imagegen
from tests.conftest import TINY_LABELS

# Largest |probability difference| from torch fp32 accepted on the tiny random ViT.
TOLERANCE = {"fp32": 1e-5, "bf16": 0.02, "int8": 0.05}
MODES = [("torch", "fp32"), ("torch", "bf16"), ("torch", "int8"), ("openvino", "fp32"), ("openvino", "bf16"), ("openvino", "int8")]


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
    assert [(a["runtime"], a["precision"]) for a in answers] == [(runtime, precision)] * len(payloads)
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
