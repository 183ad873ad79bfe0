"""Convert a HF ViT checkpoint to an OpenVINO IR (``openvino_model.xml`` + ``.bin``), dynamic batch axis.

Runs at packaging time; the worker only reads the IR. Weights stay fp32 in the IR: bf16 is chosen when
the worker compiles the model (``INFERENCE_PRECISION_HINT``).
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import torch
from transformers import ViTForImageClassification

from handler.runtime import OPENVINO_MODEL


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=Path("checkpoints/demo"), help="HF checkpoint folder (default: %(default)s)")
    parser.add_argument("--output", type=Path, help="folder for the IR (default: the checkpoint folder)")
    args = parser.parse_args(argv)
    print(f"wrote {convert_to_openvino(args.checkpoint, args.output or args.checkpoint)}")


if __name__ == "__main__":
    main()
