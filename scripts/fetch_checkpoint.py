"""Download a fine-tuned ViT checkpoint from the Hugging Face Hub (needs network access).

Only safetensors weights, JSON configs and the preprocessor are fetched; pickle ``.bin`` files never are.
Published fine-tunes: Sxhni/deepfake-detector-vit, dima806/deepfake_vs_real_image_detection.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from handler.checkpoint import CheckpointError, read_checkpoint_info

ALLOWED_FILES = ["*.json", "*.safetensors"]


class FetchError(Exception):
    """The download failed or gave an unusable checkpoint."""


def fetch_checkpoint(repo_id: str, output: Path, revision: str | None = None) -> Path:
    """Download ``repo_id`` into ``output`` and validate it; raises ``FetchError`` with the reason."""
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(repo_id, revision=revision, local_dir=output, allow_patterns=ALLOWED_FILES)
    except Exception as exc:  # network, auth and missing-repo errors all end the same way for a CLI
        raise FetchError(
            f"could not download {repo_id!r} from the Hugging Face Hub: {type(exc).__name__}: {exc}. "
            "Check network access (and HF_TOKEN for private repos), or run `make demo-checkpoint` for the offline demo."
        ) from exc
    try:
        info = read_checkpoint_info(output)
    except CheckpointError as exc:
        raise FetchError(f"{repo_id!r} is not a usable ViT checkpoint: {exc}") from exc
    print(f"{repo_id} -> {output}: labels {list(info.labels)}")
    return output


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("repo_id", help="Hub repository, e.g. dima806/deepfake_vs_real_image_detection")
    parser.add_argument("--output", type=Path, help="folder to write (default: checkpoints/<repo name>)")
    parser.add_argument("--revision", help="branch, tag or commit to download")
    args = parser.parse_args(argv)
    output = args.output or Path("checkpoints") / args.repo_id.split("/")[-1]
    try:
        fetch_checkpoint(args.repo_id, output, args.revision)
    except FetchError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
