"""Reading a HuggingFace ``ViTForImageClassification`` checkpoint folder (safetensors only)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from safetensors import safe_open
from transformers import ViTConfig, ViTImageProcessorPil

# Key in the safetensors header metadata that marks the random-weight demo checkpoint.
# ``save_pretrained`` rewrites that header, so a model fine-tuned from the demo is not marked.
DEMO_METADATA_KEY = "deepfake_detector_demo"

REQUIRED_FILES = ("config.json", "preprocessor_config.json")
# What a build adds to the checkpoint folder inside an archive: the OpenVINO IR (fp32 weights; bf16 is a
# compile hint), the int8 IR and the validation gate's verdict on int8.
OPENVINO_MODEL = "openvino_model.xml"
OPENVINO_INT8_MODEL = "openvino_model_int8.xml"
QUANTIZATION_REPORT = "quantization.json"
# Written beside the checkpoint folder into each archive by the build (what it was built from, and by which
# command); auto's cache key reads it.
BUILD_RECORD = "build.json"


class CheckpointError(Exception):
    """The checkpoint folder is missing files or holds weights in a format we refuse to load."""


@dataclass(frozen=True)
class CheckpointInfo:
    """What the service needs to know about a checkpoint besides its weights."""

    path: Path
    config: ViTConfig
    labels: tuple[str, ...]
    demo: bool


def weight_files(path: Path) -> list[Path]:
    """The checkpoint's safetensors files; raises ``CheckpointError`` when there are none."""
    files = sorted(path.glob("*.safetensors"))
    if not files:
        pickled = sorted(p.name for p in path.glob("*.bin")) + sorted(p.name for p in path.glob("*.pt*"))
        hint = f" (found {', '.join(pickled)}: pickle files are never loaded)" if pickled else ""
        raise CheckpointError(f"{path} holds no .safetensors weights{hint}")
    return files


def read_checkpoint_info(path: str | Path) -> CheckpointInfo:
    """Validate a checkpoint folder and read its config, labels and demo mark."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint folder {path} does not exist")
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}")
    files = weight_files(path)
    config = ViTConfig.from_pretrained(path, local_files_only=True)
    labels = labels_from_config(config)
    return CheckpointInfo(path=path, config=config, labels=labels, demo=is_demo(files[0]))


def labels_from_config(config: ViTConfig) -> tuple[str, ...]:
    """Class names ordered by class index, from ``config.id2label``."""
    id2label = {int(k): str(v) for k, v in config.id2label.items()}
    if sorted(id2label) != list(range(config.num_labels)):
        raise CheckpointError(f"config.id2label {id2label} does not cover classes 0..{config.num_labels - 1}")
    return tuple(id2label[i] for i in range(config.num_labels))


def is_demo(weights: Path) -> bool:
    """True when the safetensors header carries the demo mark."""
    with safe_open(str(weights), framework="pt") as f:
        metadata = f.metadata() or {}
    return metadata.get(DEMO_METADATA_KEY) == "true"


def load_image_processor(path: str | Path) -> ViTImageProcessorPil:
    """The checkpoint's own preprocessing (size, mean, std, resample from ``preprocessor_config.json``).

    ``ViTImageProcessorPil`` is the Pillow implementation of ``ViTImageProcessor``; naming it
    avoids transformers' torchvision fallback warning, and it is what that fallback would pick.
    """
    return ViTImageProcessorPil.from_pretrained(path, local_files_only=True)


def read_quantization(checkpoint: Path) -> dict | None:
    """The build-time int8 gate's verdict in ``checkpoint`` (``runtime``, ``validated`` and its figures),
    or None when the folder has none or it is unreadable."""
    try:
        report = json.loads((Path(checkpoint) / QUANTIZATION_REPORT).read_text())
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) else None
