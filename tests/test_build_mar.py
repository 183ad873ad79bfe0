"""build_mar: what goes into the archive, reproducibility, and the archiver's temp-folder habit."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml

from deepfake_service.packaging.archive import BuildError, build_mar
from deepfake_service.project import MODEL_CONFIG
from tests.archives import manifest, members


@pytest.fixture(scope="module")
def mar(tiny_checkpoint, tmp_path_factory):
    return build_mar(tiny_checkpoint, "tiny-detector", "4.2", export_dir=tmp_path_factory.mktemp("store"))


def test_archive_holds_handler_checkpoint_and_model_config(mar):
    names = set(members(mar))
    assert {"ts_handler.py", "handler/classifier.py", "handler/images.py", "model-config.yaml"} <= names
    assert {"checkpoint/config.json", "checkpoint/preprocessor_config.json", "checkpoint/model.safetensors"} <= names
    assert not any("__pycache__" in name or name.endswith("pytorch_model.bin") for name in names)
    assert yaml.safe_load(members(mar)["model-config.yaml"]) == yaml.safe_load(MODEL_CONFIG.read_text())


def test_the_shipped_auto_runtime_packs_the_converted_model(mar):
    assert yaml.safe_load(MODEL_CONFIG.read_text())["handler"]["runtime"] == "auto"  # auto may choose OpenVINO
    assert {"checkpoint/openvino_model.xml", "checkpoint/openvino_model.bin"} <= set(members(mar))


def test_the_shipped_face_detector_file_is_packed_from_models(mar):
    from deepfake_service.packaging.face_detector import FILE_SHA256

    assert yaml.safe_load(MODEL_CONFIG.read_text())["handler"]["face_detector"] == "blazeface"
    assert hashlib.sha256(members(mar)["checkpoint/face_detection_full_range.tflite"]).hexdigest() == FILE_SHA256


def torch_config(tmp_path: Path) -> Path:
    """The shipped model config with runtime torch fp32: an archive built without the OpenVINO conversion,
    for tests about packaging alone (seconds faster)."""
    config = yaml.safe_load(MODEL_CONFIG.read_text())
    config["handler"].update(runtime="torch", precision="fp32")
    (tmp_path / "model-config.yaml").write_text(yaml.safe_dump(config))
    return tmp_path / "model-config.yaml"


def test_torch_runtime_packs_no_openvino_model(tiny_checkpoint, tmp_path):
    path = build_mar(tiny_checkpoint, "tiny-detector", "1.0", model_config=torch_config(tmp_path), export_dir=tmp_path)
    assert not any(name.startswith("checkpoint/openvino_model") for name in members(path))


def test_manifest_carries_name_version_and_handler(mar):
    model = manifest(mar)["model"]
    assert (model["modelName"], model["modelVersion"], model["handler"]) == ("tiny-detector", "4.2", "ts_handler.py")


def test_same_inputs_give_same_archive_contents(mar, tiny_checkpoint, tmp_path):
    again = build_mar(tiny_checkpoint, "tiny-detector", "4.2", export_dir=tmp_path)
    first, second = members(mar), members(again)
    assert first.keys() == second.keys()
    for name in first:
        if name != "MAR-INF/MANIFEST.json":
            assert first[name] == second[name], name
    created = lambda m: {k: v for k, v in m.items() if k != "createdOn"}  # noqa: E731
    assert created(manifest(mar)) == created(manifest(again))


def test_archive_file_can_be_named_apart_from_the_model(tiny_checkpoint, tmp_path):
    path = build_mar(tiny_checkpoint, "tiny-detector", "5.0", model_config=torch_config(tmp_path), export_dir=tmp_path,
                     mar_name="tiny-detector-v5")
    assert path.name == "tiny-detector-v5.mar"
    assert manifest(path)["model"]["modelName"] == "tiny-detector"


def test_build_leaves_a_same_named_temp_folder_alone(tiny_checkpoint, tmp_path):
    name = f"keep-me-{tmp_path.name}"
    precious = Path(tempfile.gettempdir()) / name
    precious.mkdir()
    try:
        (precious / "data.txt").write_text("still here")
        build_mar(tiny_checkpoint, name, "1.0", model_config=torch_config(tmp_path), export_dir=tmp_path)
        assert (precious / "data.txt").read_text() == "still here"
    finally:
        shutil.rmtree(precious, ignore_errors=True)


def test_pickle_only_checkpoint_is_not_packaged(tiny_checkpoint, tmp_path):
    pickled = shutil.copytree(tiny_checkpoint, tmp_path / "pickled")
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    with pytest.raises(BuildError, match="safetensors"):
        build_mar(pickled, "tiny-detector", "1.0", export_dir=tmp_path / "store")
    assert not (tmp_path / "store" / "tiny-detector.mar").exists()


def yunet_config(tmp_path: Path, face_model: str) -> Path:
    config = yaml.safe_load(MODEL_CONFIG.read_text())
    config["handler"].update(runtime="torch", precision="fp32", face_detector="yunet", face_model=face_model)
    (tmp_path / "model-config.yaml").write_text(yaml.safe_dump(config))
    return tmp_path / "model-config.yaml"


def test_a_configured_face_model_missing_from_the_checkpoint_stops_the_build(tiny_checkpoint, tmp_path):
    with pytest.raises(BuildError, match="--face-model"):
        build_mar(tiny_checkpoint, "tiny-detector", "1.0", model_config=yunet_config(tmp_path, "yunet.onnx"), export_dir=tmp_path)


def test_the_configured_face_model_file_goes_into_the_archive(tiny_checkpoint, tmp_path):
    checkpoint = shutil.copytree(tiny_checkpoint, tmp_path / "with-face-model")
    (checkpoint / "yunet.onnx").write_bytes(b"stand-in bytes: packaging copies the file, loading is the worker's job")
    path = build_mar(checkpoint, "tiny-detector", "1.0", model_config=yunet_config(tmp_path, "yunet.onnx"), export_dir=tmp_path)
    assert members(path)["checkpoint/yunet.onnx"] == (checkpoint / "yunet.onnx").read_bytes()


def test_a_face_model_outside_the_checkpoint_folder_is_refused(tiny_checkpoint, tmp_path):
    with pytest.raises(BuildError, match="file name inside"):
        build_mar(tiny_checkpoint, "tiny-detector", "1.0", model_config=yunet_config(tmp_path, "../x.onnx"), export_dir=tmp_path)
