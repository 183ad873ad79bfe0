"""Generate a small two-class image dataset to try the training pipeline without downloading anything.

``<output>/Real/*.jpg`` are noisy reddish images, ``<output>/Fake/*.jpg`` noisy bluish ones: a difference
that survives rotation and sharpening, so even a briefly trained ViT separates them. It says nothing
about deepfakes; it only exercises train -> evaluate -> package -> roll out end to end.

  python -m scripts.example_dataset --output data/example
"""

from __future__ import annotations

import argparse
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=Path("data/example"), help="(default: %(default)s)")
    parser.add_argument("--real", type=int, default=40, help="images labelled Real (default: %(default)s)")
    parser.add_argument("--fake", type=int, default=24, help="images labelled Fake (default: %(default)s; unbalanced on purpose)")
    parser.add_argument("--size", type=int, default=64, help="side in pixels (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    args = parser.parse_args(argv)
    two_class_dataset(args.output, {"Real": args.real, "Fake": args.fake}, args.size, args.seed)
    print(f"wrote {args.real} Real and {args.fake} Fake images under {args.output}")


if __name__ == "__main__":
    main()
