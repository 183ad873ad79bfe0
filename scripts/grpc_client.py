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
import importlib
import json
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from handler.faces import FACE_MODES
from scripts.serve import ServeError, read_key_file

ROOT = Path(__file__).resolve().parent.parent
STUB_DIR = ROOT / "build" / "grpc"
PROTOS = ("proto/inference.proto", "proto/management.proto", "google/rpc/status.proto")


class GrpcError(Exception):
    """The call failed; ``code`` is the gRPC status name, ``detail`` its message."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code, self.detail = code, detail


def server_jar() -> Path:
    import ts

    return Path(ts.__file__).resolve().parent / "frontend" / "model-server.jar"


def generate_stubs(target: Path) -> Path:
    """Extract TorchServe's protos from its jar and compile them (messages and gRPC services) into ``target``."""
    from grpc_tools import protoc

    sources = target / "proto-src"
    with zipfile.ZipFile(server_jar()) as jar:
        for name in PROTOS:
            destination = sources / name.removeprefix("proto/")
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(jar.read(name))
    includes = Path(protoc.__file__).resolve().parent / "_proto"  # google/protobuf/*.proto
    files = [str(sources / name.removeprefix("proto/")) for name in PROTOS]
    status = protoc.main(["protoc", f"-I{sources}", f"-I{includes}", f"--python_out={target}", f"--grpc_python_out={target}", *files])
    if status != 0:
        raise RuntimeError(f"protoc failed ({status}) on {files}")
    return target


def stubs(target: Path = STUB_DIR) -> tuple[ModuleType, ModuleType]:
    """(inference_pb2, inference_pb2_grpc), generated on first use."""
    if not (target / "inference_pb2_grpc.py").is_file():
        generate_stubs(target)
    if str(target) not in sys.path:
        sys.path.insert(0, str(target))
    return importlib.import_module("inference_pb2"), importlib.import_module("inference_pb2_grpc")


@dataclass
class GrpcClient:
    """Predictions over gRPC with the inference key from ``key_file``."""

    address: str
    key_file: Path
    timeout: float = 60.0

    def _metadata(self) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {read_key_file(self.key_file)['inference']}")]

    def predict(self, model: str, image: bytes, version: str | None = None, face_mode: str | None = None) -> dict:
        """The handler's JSON answer as a dict; raises ``GrpcError`` (e.g. INVALID_ARGUMENT for bad input)."""
        import grpc

        messages, services = stubs()
        fields = {"data": image, **({"face_mode": face_mode.encode()} if face_mode else {})}
        request = messages.PredictionsRequest(model_name=model, model_version=version or "", input=fields)
        with grpc.insecure_channel(self.address) as channel:  # loopback; put TLS in front to go further
            try:
                response = services.InferenceAPIsServiceStub(channel).Predictions(
                    request, metadata=self._metadata(), timeout=self.timeout
                )
            except grpc.RpcError as exc:
                raise GrpcError(exc.code().name, exc.details() or "") from exc
        answer = json.loads(response.prediction)
        # TorchServe 0.12's gRPC frontend answers OK even when the handler set a 4xx for the request; the
        # body is then the handler's JSON error.
        if "error" in answer and "label" not in answer:
            raise GrpcError("INVALID_ARGUMENT", f"{answer['error']}: {answer.get('detail', '')}")
        return answer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+", type=Path, help="image files to classify")
    parser.add_argument("--address", default="127.0.0.1:7070", help="gRPC inference address (default: %(default)s)")
    parser.add_argument("--model", default="deepfake-detector", help="(default: %(default)s)")
    parser.add_argument("--version", help="model version (default: the default version)")
    parser.add_argument("--face-mode", choices=FACE_MODES, help="(default: the model's)")
    parser.add_argument("--key-file", type=Path, default=ROOT / "run" / "key_file.json", help="(default: run/key_file.json)")
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
