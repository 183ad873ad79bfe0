"""Build the archive `make serve` serves: from CHECKPOINT (a folder or a Hub id), or the one already there.

Without --checkpoint the archive in the model store is served as it was built: one that make serve built
is rebuilt from its own recorded checkpoint when the model config or handler changed (and kept, saying so,
when that checkpoint changed or is gone); the offline demo is built only when the store holds no archive.
It never replaces an archive built by scripts.build_mar or scripts.rollout: with another --checkpoint it
stops with one line saying what to run.

  python -m scripts.ensure_archive                                   # the archive already there, or the demo
  python -m scripts.ensure_archive --checkpoint runs/exp1
  python -m scripts.ensure_archive --checkpoint dima806/deepfake_vs_real_image_detection
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deepfake_service.packaging.archive import BuildError
from deepfake_service.packaging.ensure import ensure_archive
from deepfake_service.packaging.fetch import FetchError
from deepfake_service.project import MODEL_CONFIG, MODEL_NAME, MODEL_STORE


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="checkpoint folder or Hugging Face Hub id (default: the archive already in the store, "
                        "as built; the demo checkpoint when there is none)")
    parser.add_argument("--name", default=MODEL_NAME, help="model name (default: %(default)s)")
    parser.add_argument("--model-store", type=Path, default=MODEL_STORE, help="(default: %(default)s)")
    parser.add_argument("--model-config", type=Path, default=MODEL_CONFIG, help="(default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        print(ensure_archive(args.checkpoint, args.name, args.model_store, args.model_config), flush=True)
    except (BuildError, FetchError) as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
