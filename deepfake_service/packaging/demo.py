"""Write the offline demo checkpoint: the seed's ViT-B/16 config with seeded random weights.

The library behind ``python -m scripts.demo_checkpoint`` (see its ``--help``).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch
from safetensors.torch import save
from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessorPil

from handler.checkpoint import DEMO_METADATA_KEY

# The seed's fine-tuned model (ViT-B/16, 224 px, two classes).
SEED_LABELS = {0: "Real", 1: "Fake"}


def seed_config(**overrides) -> ViTConfig:
    """ViT-B/16 at 224 px with labels Real=0, Fake=1; ``overrides`` change single fields (tests)."""
    labels = overrides.pop("id2label", SEED_LABELS)
    settings = dict(
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        hidden_act="gelu",
        layer_norm_eps=1e-12,
        image_size=224,
        patch_size=16,
        num_channels=3,
        qkv_bias=True,
        architectures=["ViTForImageClassification"],
        id2label={int(k): v for k, v in labels.items()},
        label2id={v: int(k) for k, v in labels.items()},
    )
    settings.update(overrides)
    return ViTConfig(**settings)


def seed_processor(image_size: int = 224) -> ViTImageProcessorPil:
    """The seed's preprocessing: bilinear resize to a square, scale to [0, 1], normalise with mean=std=0.5."""
    return ViTImageProcessorPil(
        do_resize=True,
        size={"height": image_size, "width": image_size},
        resample=2,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )


def write_random_checkpoint(output: Path, config: ViTConfig, *, seed: int, demo: bool) -> Path:
    """Write config, preprocessor and seeded random safetensors weights to ``output``.

    The same config and seed give byte-identical files.
    """
    output.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = ViTForImageClassification(config).eval()
    config.save_pretrained(output)
    seed_processor(config.image_size).save_pretrained(output)
    metadata = {"format": "pt"}
    if demo:
        metadata[DEMO_METADATA_KEY] = "true"
    tensors = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
    (output / "model.safetensors").write_bytes(_stable_header(save(tensors, metadata=metadata)))
    return output


def _stable_header(blob: bytes) -> bytes:
    """Rewrite a safetensors blob's header with its metadata keys sorted.

    safetensors serialises ``__metadata__`` from a hash map, so two saves of the same tensors can
    order those keys differently; the rewritten header has the same length, so offsets stay valid.
    """
    length = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8 : 8 + length])
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":")).encode()
    if len(text) > length:
        raise ValueError("re-serialised safetensors header grew")
    return blob[:8] + text.ljust(length) + blob[8 + length :]


def write_demo_checkpoint(output: Path, seed: int = 0) -> Path:
    """The full-size demo checkpoint (about 340 MB)."""
    return write_random_checkpoint(output, seed_config(), seed=seed, demo=True)
