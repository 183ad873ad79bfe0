"""Where the ViT looked: attention rollout (Abnar & Zuidema, 2020) over the patch grid.

Rollout multiplies, layer by layer, each layer's head-averaged attention mixed half-and-half with the
identity (the residual connection), rows renormalised; the [CLS] row of the product says how much each
patch contributed to the classification token. Computed with a torch copy of the model that returns
attentions, loaded on the first explanation request, so predictions never pay for it.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

METHOD = "attention rollout (Abnar & Zuidema 2020)"
OVERLAY_SIDE = 256  # the overlay PNG's longer side
# A short black-body-like ramp (dark red -> red -> orange -> yellow) for the heat overlay.
RAMP = np.array([[80, 0, 0], [200, 20, 0], [255, 120, 0], [255, 230, 60]], dtype=np.float32)


def attention_rollout(attentions: Sequence[torch.Tensor]) -> torch.Tensor:
    """``attentions``: one ``[B, heads, T, T]`` tensor per layer, token 0 = [CLS], the rest a square grid
    of patches. Returns ``[B, g, g]`` maps in [0, 1] (min-max normalised per image)."""
    rollout = None
    for layer in attentions:
        mixed = 0.5 * layer.float().mean(dim=1) + 0.5 * torch.eye(layer.shape[-1], device=layer.device)
        mixed = mixed / mixed.sum(dim=-1, keepdim=True)
        rollout = mixed if rollout is None else mixed @ rollout
    cls_to_patches = rollout[:, 0, 1:]
    side = int(round(cls_to_patches.shape[-1] ** 0.5))
    maps = cls_to_patches.reshape(-1, side, side)
    low = maps.amin(dim=(1, 2), keepdim=True)
    high = maps.amax(dim=(1, 2), keepdim=True)
    spread = high - low
    # A flat map (spread at float rounding level) stays flat at 0 instead of magnifying the noise.
    flat = spread <= 1e-5 * high.abs().clamp_min(1e-12)
    return torch.where(flat, torch.zeros_like(maps), (maps - low) / spread.clamp_min(1e-12))


class Explainer:
    """A torch fp32 ViT (eager attention, so attentions can be returned) for explanations only; ``name`` and
    ``precision`` say what computed its logits, as a runtime's do."""

    name = "torch"
    precision = "fp32"

    def __init__(self, checkpoint: Path, device: torch.device) -> None:
        from transformers import ViTForImageClassification

        self.model = ViTForImageClassification.from_pretrained(
            str(checkpoint), use_safetensors=True, local_files_only=True, attn_implementation="eager"
        ).to(device).eval()
        self.device = device

    @torch.inference_mode()
    def explain(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``pixels[N, 3, H, W]`` -> (logits ``[N, classes]``, rollout maps ``[N, g, g]``), on the CPU."""
        output = self.model(pixel_values=pixels.to(self.device), output_attentions=True)
        return output.logits.float().cpu(), attention_rollout(output.attentions).cpu()


def heat(values: np.ndarray) -> np.ndarray:
    """[0, 1] values -> RGBA uint8: the ramp's colour, alpha rising with the value."""
    position = np.clip(values, 0, 1) * (len(RAMP) - 1)
    low = np.floor(position).astype(int).clip(0, len(RAMP) - 2)
    fraction = (position - low)[..., None]
    rgb = RAMP[low] * (1 - fraction) + RAMP[low + 1] * fraction
    alpha = (40 + 180 * np.clip(values, 0, 1))[..., None]
    return np.concatenate([rgb, alpha], axis=-1).astype(np.uint8)


def overlay_png(image_size: tuple[int, int], regions: Sequence[Sequence[int]], maps: Sequence[np.ndarray]) -> str:
    """A transparent PNG with the photo's aspect (longer side ``OVERLAY_SIDE``) where each map is
    painted over its region (``[x, y, w, h]`` in the photo's pixels); base64-encoded."""
    width, height = image_size
    scale = OVERLAY_SIDE / max(width, height)
    canvas = Image.new("RGBA", (max(1, round(width * scale)), max(1, round(height * scale))), (0, 0, 0, 0))
    for (x, y, w, h), grid in zip(regions, maps):
        left, top = min(round(x * scale), canvas.width - 1), min(round(y * scale), canvas.height - 1)
        size = (max(1, min(round(w * scale), canvas.width - left)), max(1, min(round(h * scale), canvas.height - top)))
        smooth = Image.fromarray(np.asarray(grid, dtype=np.float32), mode="F").resize(size, Image.Resampling.BILINEAR)
        tile = Image.fromarray(heat(np.asarray(smooth)), "RGBA")
        canvas.alpha_composite(tile, (left, top))
    buffer = io.BytesIO()
    canvas.save(buffer, "PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
