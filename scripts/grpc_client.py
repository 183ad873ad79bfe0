"""Predict over TorchServe's gRPC inference API (port 7070, loopback by default).

The stubs are generated, not committed: TorchServe's own .proto files ship inside the installed wheel's
``ts/frontend/model-server.jar``; ``stubs()`` extracts them and runs grpcio-tools' protoc into
``build/grpc/`` the first time. Token authorization applies as over HTTP: the inference key travels as
``authorization: Bearer <key>`` metadata (re-read from key_file.json per call). Bad input: TorchServe's
gRPC frontend returns status OK with the handler's JSON error as the prediction; the client raises it.

  python -m scripts.grpc_client photo.jpg                       # 127.0.0.1:7070, model deepfake-detector
  python -m scripts.grpc_client --face-mode off --address 127.0.0.1:7070 crop.jpg
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from deepfake_service.project import KEY_FILE, MODEL_NAME, RUN_DIR
from deepfake_service.serving.grpc_predict import GrpcClient, GrpcError
from deepfake_service.serving.server import ServeError
from handler.faces import FACE_MODES


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+", type=Path, help="image files to classify")
    parser.add_argument("--address", default="127.0.0.1:7070", help="gRPC inference address (default: %(default)s)")
    parser.add_argument("--model", default=MODEL_NAME, help="(default: %(default)s)")
    parser.add_argument("--version", help="model version (default: the default version)")
    parser.add_argument("--face-mode", choices=FACE_MODES, help="(default: the model's)")
    parser.add_argument("--key-file", type=Path, default=RUN_DIR / KEY_FILE, help="(default: %(default)s)")
    args = parser.parse_args(argv)
    client = GrpcClient(args.address, args.key_file)
    failed = False
    for path in args.images:
        try:
            answer = client.predict(args.model, path.read_bytes(), args.version, args.face_mode)
            print(json.dumps({"path": str(path), **answer}))
        except (GrpcError, ServeError, OSError) as exc:
            failed = True
            print(json.dumps({"path": str(path), "error": str(exc)}))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
