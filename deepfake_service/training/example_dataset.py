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
