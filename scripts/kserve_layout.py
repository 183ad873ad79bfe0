"""Write the config this project's image runs under KServe (deploy/kserve/inferenceservice.yaml runs the
image as a custom predictor container, not KServe's TorchServe runtime): ``config/config.properties`` and,
unless --config-only, ``model-store/<archive>`` for a volume.

The config starts from config/config.properties (same caps, queue and URL policy) and changes what the
pod needs: inference on the pod's port 8085 for KServe's ingress, the kservev2 service envelope (v2 /
Open Inference Protocol), metrics on 8082 for scraping, management and gRPC on loopback, and a model
snapshot that loads the archive at start (``python -m scripts.serve run --snapshot``).

Differences an operator must know:
  * batchSize is 1: TorchServe's kservev2 envelope reads only the first request of a batch.
  * token authorization is off inside the pod: KServe's ingress calls the container without a key.
    Protect the InferenceService at the ingress or mesh (e.g. Istio AuthorizationPolicy) instead.

  python -m scripts.kserve_layout --mar model_store/deepfake-detector.mar --output build/kserve
  # the image's build does: --config-only --model-store-path /srv/model_store --output /srv/kserve
"""

from __future__ import annotations

import argparse
from pathlib import Path

from deepfake_service.project import ROOT, archive_path
from deepfake_service.serving.kserve import MODEL_STORE, lay_out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mar", type=Path, default=archive_path(), help="(default: %(default)s)")
    parser.add_argument("--output", type=Path, default=ROOT / "build" / "kserve", help="(default: build/kserve)")
    parser.add_argument("--model-store-path", default=MODEL_STORE,
                        help="the model store as the pod sees it (default: %(default)s, where KServe's storage initializer puts it)")
    parser.add_argument("--config-only", action="store_true", help="write the config only (the archive is already in the image)")
    args = parser.parse_args(argv)
    out = lay_out(args.mar, args.output, model_store=args.model_store_path, copy_archive=not args.config_only)
    copied = "" if args.config_only else f" and {out}/model-store/{args.mar.name}"
    print(f"wrote {out}/config/config.properties{copied}")


if __name__ == "__main__":
    main()
