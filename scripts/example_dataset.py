"""Generate a small two-class image dataset to try the training pipeline without downloading anything.

``<output>/Real/*.jpg`` are noisy reddish images, ``<output>/Fake/*.jpg`` noisy bluish ones: a difference
that survives rotation and sharpening, so even a briefly trained ViT separates them. It says nothing
about deepfakes; it only exercises train -> evaluate -> package -> roll out end to end.

  python -m scripts.example_dataset --output data/example
"""

from __future__ import annotations

import argparse
from pathlib import Path

from deepfake_service.training.example_dataset import two_class_dataset


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
