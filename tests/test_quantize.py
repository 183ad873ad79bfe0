"""int8 only where it is proven: the validation gate, its verdict file, and what the worker does with it."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from deepfake_service.packaging.archive import BuildError, Int8Inputs, build_mar
from deepfake_service.packaging.quantize import QuantizationError, QuantizationReport, check_gate, labelled_images, prepare_int8
from deepfake_service.project import MODEL_CONFIG
from deepfake_service.samples import imagegen
from handler.checkpoint import CheckpointError
from handler.classifier import DeepfakeClassifier
from handler.options import HandlerOptions
from tests.archives import members
from tests.tiny import TINY_LABELS

TORCH_INT8 = HandlerOptions(runtime="torch", precision="int8")


@pytest.fixture
def validation(labelled_folder):
    return labelled_folder


@pytest.fixture
def checkpoint(tiny_checkpoint, tmp_path):
    return shutil.copytree(tiny_checkpoint, tmp_path / "checkpoint")


def report(agreement: float, fp32: float, int8: float) -> QuantizationReport:
    return QuantizationReport("torch", True, 1000, agreement, fp32, int8, 0.01)


def test_int8_without_a_verdict_is_refused(checkpoint):
    with pytest.raises(CheckpointError, match="quantization.json"):
        DeepfakeClassifier.from_checkpoint(checkpoint, TORCH_INT8)


def test_validated_int8_is_served_as_int8(checkpoint, validation):
    written = prepare_int8(checkpoint, "torch", None, validation, unvalidated=False)
    assert written.validated and written.images == 12 and written.argmax_agreement >= 0.995
    assert json.loads((checkpoint / "quantization.json").read_text())["images"] == 12
    answer = DeepfakeClassifier.from_checkpoint(checkpoint, TORCH_INT8).predict_batch([imagegen.png()])[0]
    assert answer["precision"] == "int8"


def test_unvalidated_int8_says_so_in_every_answer(checkpoint):
    prepare_int8(checkpoint, "torch", None, None, unvalidated=True)
    answer = DeepfakeClassifier.from_checkpoint(checkpoint, TORCH_INT8).predict_batch([imagegen.png()])[0]
    assert answer["precision"] == "int8-unvalidated"


def test_int8_without_validation_folder_is_refused(checkpoint):
    with pytest.raises(QuantizationError, match="--validation"):
        prepare_int8(checkpoint, "torch", None, None, unvalidated=False)
    assert not (checkpoint / "quantization.json").exists()


@pytest.mark.parametrize("agreement,fp32,int8", [(0.994, 0.9, 0.9), (1.0, 0.9, 0.896)])
def test_gate_refuses_low_agreement_or_accuracy_drop(agreement, fp32, int8):
    with pytest.raises(QuantizationError, match="refused"):
        check_gate(report(agreement, fp32, int8))


def test_gate_accepts_the_bounds_themselves():
    check_gate(report(0.995, 0.9, 0.897))


def test_validation_folder_labels_must_be_the_checkpoints(tmp_path):
    (tmp_path / "cats").mkdir()
    (tmp_path / "cats" / "a.jpg").write_bytes(imagegen.jpeg())
    with pytest.raises(QuantizationError, match="cats"):
        labelled_images(tmp_path, tuple(TINY_LABELS.values()))


def int8_config(tmp_path, runtime):
    config = yaml.safe_load(MODEL_CONFIG.read_text())
    config["handler"].update(runtime=runtime, precision="int8")
    path = tmp_path / "model-config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow  # NNCF's quantization and the OpenVINO conversion: the heaviest build without a server
def test_openvino_int8_archive_carries_quantized_model_and_verdict(tiny_checkpoint, validation, tmp_path):
    calibration = validation / TINY_LABELS[0]
    path = build_mar(
        tiny_checkpoint, "tiny-detector", "1.0", model_config=int8_config(tmp_path, "openvino"), export_dir=tmp_path,
        int8=Int8Inputs(calibration=calibration, validation=validation),
    )
    contents = members(path)
    assert "checkpoint/openvino_model_int8.xml" in contents
    verdict = json.loads(contents["checkpoint/quantization.json"])
    assert verdict["validated"] and verdict["runtime"] == "openvino" and verdict["images"] == 12


def test_int8_archive_without_proof_is_not_built(tiny_checkpoint, tmp_path):
    with pytest.raises(BuildError, match="--validation"):
        build_mar(tiny_checkpoint, "tiny-detector", "1.0", model_config=int8_config(tmp_path, "torch"), export_dir=tmp_path / "store")
    assert not (tmp_path / "store" / "tiny-detector.mar").exists()
