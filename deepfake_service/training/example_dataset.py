"""Generate a small two-class image dataset to try the training pipeline without downloading anything.

The library behind ``python -m scripts.example_dataset`` (see its ``--help``).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

TINTS = (np.array([70, 0, -70]), np.array([-70, 0, 70]))


def two_class_dataset(root: Path, counts: dict[str, int], size: int = 48, seed: int = 0) -> Path:
    """``root/<label>/*.jpg`` for the (at most two) labels in ``counts``: the first reddish, the second
    bluish. Counts may be unbalanced to exercise oversampling. Deterministic for a seed; returns ``root``."""
    if len(counts) > len(TINTS):
        raise ValueError(f"at most {len(TINTS)} labels, got {list(counts)}")
    rng = np.random.default_rng(seed)
    for tint, (label, count) in zip(TINTS, counts.items()):
        (root / label).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            noise = rng.integers(40, 216, (size, size, 3)).astype(np.int16) + tint
            buffer = io.BytesIO()
            Image.fromarray(np.clip(noise, 0, 255).astype(np.uint8), "RGB").save(buffer, "JPEG", quality=90)
            (root / label / f"{label.lower()}_{index:03d}.jpg").write_bytes(buffer.getvalue())
    return root


def delivery_dataset(root: Path, counts: dict[str, int], size: int = 64, seed: int = 0, amplitude: int = 10) -> Path:
    """``root/<label>/*.png`` where delivery matters: every image is a smooth random picture; the second
    label's ("fake") also carry a faint 2-pixel checkerboard of ``amplitude`` grey levels, the kind of
    high-frequency trace generators leave and JPEG re-compression or down-and-up scaling wipes out. Saved
    lossless, so the originals keep it. Deterministic for a seed; returns ``root``."""
    rng = np.random.default_rng(seed)
    checker = ((np.indices((size, size)).sum(axis=0) % 2) * 2 - 1)[..., None] * amplitude
    for number, (label, count) in enumerate(counts.items()):
        (root / label).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            coarse = rng.integers(30, 226, (4, 4, 3), dtype=np.uint8)
            smooth = np.asarray(Image.fromarray(coarse, "RGB").resize((size, size), Image.Resampling.BICUBIC), dtype=np.int16)
            picture = smooth + (checker if number == 1 else 0)
            Image.fromarray(np.clip(picture, 0, 255).astype(np.uint8), "RGB").save(root / label / f"{label.lower()}_{index:03d}.png")
    return root
