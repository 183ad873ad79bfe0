"""Lay out the folder KServe's TorchServe runtime loads: ``config/config.properties`` + ``model-store/*.mar``.

The config starts from config/config.properties (same caps, queue and URL policy) and adds what the
runtime needs: listeners on the pod's port 8085 for KServe's model server to call, the kservev2 service
envelope (v2 / Open Inference Protocol), and a model snapshot that loads the archive at start.

Differences an operator must know:
  * batchSize is 1: TorchServe's kservev2 envelope reads only the first request of a batch.
  * token authorization is off inside the pod: KServe's model server calls TorchServe without a key.
    Protect the InferenceService at the ingress or mesh (e.g. Istio AuthorizationPolicy) instead.

  python -m scripts.kserve_layout --mar model_store/deepfake-detector.mar --output build/kserve
  # then copy build/kserve to the storageUri of deploy/kserve/inferenceservice.yaml
"""

from __future__ import annotations

import argparse
from pathlib import Path

from deepfake_service.project import ROOT, archive_path
from deepfake_service.serving.kserve import lay_out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mar", type=Path, default=archive_path(), help="(default: %(default)s)")
    parser.add_argument("--output", type=Path, default=ROOT / "build" / "kserve", help="(default: build/kserve)")
    args = parser.parse_args(argv)
    out = lay_out(args.mar, args.output)
    print(f"wrote {out}/config/config.properties and {out}/model-store/{args.mar.name}")


if __name__ == "__main__":
    main()
