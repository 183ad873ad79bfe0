"""Build the service's container image (localhost/<model>:latest) from the Dockerfile: `docker build` where a
Docker engine answers, else buildah (chroot isolation, vfs storage), on the Dockerfile's base image when it can be
pulled and otherwise on a Debian bookworm + Python 3.11 base that mmdebstrap makes (buildah, podman and mmdebstrap
from Debian). By default a buildah build installs what pip on this machine would: pip's find-links folder is
mounted read-only into the build (EXTRA_WHEELS; a torch wheel there replaces PyTorch's index) and pip's CA bundle
over the image's. `make test-image` then runs the built image.

  python -m scripts.build_image
  python -m scripts.build_image --torch-index https://download.pytorch.org/whl/cu128 --tag deepfake-detector:gpu
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deepfake_service.packaging.image import ImageError, build_image, image_size, pip_sources, plan_build
from deepfake_service.project import IMAGE


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tag", default=IMAGE, help="image name (default: %(default)s)")
    parser.add_argument("--extra-wheels", type=Path, help="folder of wheels pip may take (default: pip's find-links here, if a folder)")
    parser.add_argument("--ca-bundle", type=Path, help="CA bundle mounted over the image's during the build (default: pip's cert here)")
    parser.add_argument("--torch-index", help="TORCH_INDEX build argument (default: the Dockerfile's, PyTorch's CPU index; "
                        "none when the extra wheels hold torch)")
    parser.add_argument("--no-local-sources", action="store_true", help="ignore pip's settings here: plain network build")
    args = parser.parse_args(argv)
    wheels, bundle = (None, None) if args.no_local_sources else pip_sources()
    try:
        plan = plan_build(args.tag, args.extra_wheels or wheels, args.ca_bundle or bundle, args.torch_index)
        print(f"building {args.tag} with {plan.tool} on {plan.base}:\n  {' '.join(plan.command)}", flush=True)
        seconds = build_image(plan)
        size = image_size(args.tag) if plan.tool == "buildah" else None
    except ImageError as exc:
        sys.exit(f"error: {exc}")
    print(f"built {args.tag} in {seconds:.0f} s" + (f", {size}" if size else ""))


if __name__ == "__main__":
    main()
