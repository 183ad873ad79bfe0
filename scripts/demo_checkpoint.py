"""Write the offline demo checkpoint: the seed's ViT-B/16 config with seeded random weights.

Its predictions mean nothing; it exists so the service runs without network access.
The safetensors header carries the demo mark, and every prediction served from it says ``"demo": true``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from deepfake_service.packaging.demo import write_demo_checkpoint
from deepfake_service.project import DEMO_CHECKPOINT


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=DEMO_CHECKPOINT, help="folder to write (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="torch seed for the random weights (default: %(default)s)")
    args = parser.parse_args(argv)
    path = write_demo_checkpoint(args.output, args.seed)
    print(f"demo checkpoint written to {path} (random weights: predictions are meaningless)")


if __name__ == "__main__":
    main()
