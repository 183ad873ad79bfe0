"""The forward-pass seam: a runtime turns a pixel batch into logits.

Which runtime serves is chosen once, at load time, by name (``create_runtime``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol

import torch
from transformers import ViTForImageClassification

from handler.checkpoint import CheckpointError, weight_files


class Runtime(Protocol):
    """``predict(pixels[N, 3, H, W] float32) -> logits[N, num_labels] float32 on CPU``."""

    name: str
    precision: str

    def predict(self, pixels: torch.Tensor) -> torch.Tensor: ...


class TorchRuntime:
    """Eager PyTorch on the device TorchServe assigned."""

    name = "torch"
    precisions = ("fp32",)

    def __init__(self, checkpoint: Path, device: torch.device, precision: str = "fp32") -> None:
        if precision not in self.precisions:
            raise CheckpointError(
                f"precision {precision!r} is not available on the torch runtime; choose one of {self.precisions}"
            )
        weight_files(checkpoint)  # refuses folders without safetensors before transformers looks
        model = ViTForImageClassification.from_pretrained(
            checkpoint, use_safetensors=True, local_files_only=True
        )
        self.model = model.to(device).eval()
        self.device = device
        self.precision = precision

    def predict(self, pixels: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            logits = self.model(pixel_values=pixels.to(self.device)).logits
        return logits.float().cpu()


RUNTIMES: dict[str, Callable[..., Runtime]] = {"torch": TorchRuntime}


def create_runtime(name: str, checkpoint: Path, device: torch.device, precision: str) -> Runtime:
    """Build the named runtime for ``checkpoint``; raises ``CheckpointError`` for unknown names."""
    try:
        factory = RUNTIMES[name]
    except KeyError:
        raise CheckpointError(f"unknown runtime {name!r}; choose one of {sorted(RUNTIMES)}") from None
    return factory(checkpoint, device, precision)
