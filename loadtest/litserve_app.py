"""A peer users might pick instead of TorchServe, as the benchmark's second baseline: the same checkpoint
behind LitServe with dynamic batching (up to 8 requests, 10 ms), torch bf16 autocast, whole images (no
face stage, no provenance), multipart uploads (field ``data``). It answers ``POST /predictions/<name>``
and ``GET /ping`` (LitServe's health check there), so the bench starts and loads it like the seed's design.

  LITSERVE_CHECKPOINT=checkpoints/demo LITSERVE_PORT=8091 python -m loadtest.litserve_app
"""

from __future__ import annotations

import io
import os

import litserve as ls
import torch
from PIL import Image
from transformers import ViTForImageClassification, ViTImageProcessorPil

from deepfake_service.project import MODEL_NAME


class ViTAPI(ls.LitAPI):
    def setup(self, device) -> None:
        checkpoint = os.environ.get("LITSERVE_CHECKPOINT", "checkpoints/demo")
        self.model = ViTForImageClassification.from_pretrained(checkpoint, use_safetensors=True, local_files_only=True).eval()
        self.processor = ViTImageProcessorPil.from_pretrained(checkpoint, local_files_only=True)

    def decode_request(self, request) -> torch.Tensor:
        image = Image.open(io.BytesIO(request["data"].file.read())).convert("RGB")
        return self.processor(images=image, return_tensors="pt")["pixel_values"][0]

    def predict(self, pixels: torch.Tensor) -> list[dict]:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            probabilities = self.model(pixel_values=pixels).logits.float().softmax(-1)
        best = probabilities.argmax(-1)
        return [{"label": self.model.config.id2label[int(b)], "confidence": float(p[b])} for p, b in zip(probabilities, best)]

    def encode_response(self, output: dict) -> dict:
        return output


def main() -> None:
    api = ViTAPI(max_batch_size=8, batch_timeout=0.01, api_path=f"/predictions/{MODEL_NAME}")
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1, healthcheck_path="/ping", timeout=300)
    server.run(host="127.0.0.1", port=int(os.environ.get("LITSERVE_PORT", "8091")), generate_client_file=False)


if __name__ == "__main__":
    main()
