"""Predict over TorchServe's gRPC inference API (port 7070, loopback by default).

The library behind ``python -m scripts.grpc_client`` (see its ``--help``).
"""

from __future__ import annotations

import importlib
import json
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from deepfake_service.project import ROOT
from deepfake_service.serving.server import read_key_file
from handler.payload import FACE_MODE_FIELD

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
        fields = {"data": image, **({FACE_MODE_FIELD: face_mode.encode()} if face_mode else {})}
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
