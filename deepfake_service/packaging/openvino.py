"""Convert a HF ViT checkpoint to an OpenVINO IR (``openvino_model.xml`` + ``.bin``), dynamic batch axis.

The library behind ``python -m scripts.convert_openvino`` (see its ``--help``).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from transformers import ViTForImageClassification

from handler.checkpoint import OPENVINO_MODEL


class _Logits(torch.nn.Module):
    """pixel_values -> logits, the one output the runtime seam needs."""

    def __init__(self, model: ViTForImageClassification) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).logits


def convert_to_openvino(checkpoint: Path, output: Path) -> Path:
    """Write ``output/openvino_model.xml`` (and ``.bin``) converted from ``checkpoint``; returns the xml path."""
    import openvino as ov

    model = ViTForImageClassification.from_pretrained(checkpoint, use_safetensors=True, local_files_only=True).eval()
    size, channels = model.config.image_size, model.config.num_channels
    example = torch.zeros(1, channels, size, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape checks that are constant for this model
        converted = ov.convert_model(_Logits(model), example_input=example, input=[(-1, channels, size, size)])
    output.mkdir(parents=True, exist_ok=True)
    target = output / OPENVINO_MODEL
    ov.save_model(converted, target, compress_to_fp16=False)
    return target
