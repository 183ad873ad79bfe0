"""The inference core: decode -> preprocess -> forward -> postprocess, per-request results in a batch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image

from handler.checkpoint import load_image_processor, read_checkpoint_info
from handler.errors import ClientError
from handler.images import ImageLimits, decode_image
from handler.options import HandlerOptions
from handler.runtime import Runtime, create_runtime

Prediction = dict[str, Any]


@dataclass(frozen=True)
class ModelIdentity:
    """Metadata stamped on every prediction."""

    name: str
    version: str
    demo: bool


class DeepfakeClassifier:
    """A ViT image classifier whose labels come from the checkpoint's ``config.id2label``."""

    def __init__(
        self,
        processor: Any,
        labels: Sequence[str],
        runtime: Runtime,
        identity: ModelIdentity,
        limits: ImageLimits,
    ) -> None:
        self.processor = processor
        self.labels = tuple(labels)
        self.runtime = runtime
        self.identity = identity
        self.limits = limits

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | Path,
        options: HandlerOptions,
        *,
        device: torch.device | str = "cpu",
        name: str = "deepfake-detector",
        version: str = "1.0",
    ) -> "DeepfakeClassifier":
        """Load a checkpoint folder; raises ``CheckpointError`` for unusable folders."""
        info = read_checkpoint_info(checkpoint)
        runtime = create_runtime(options.runtime, info.path, torch.device(device), options.precision, options.threads)
        return cls(
            processor=load_image_processor(info.path),
            labels=info.labels,
            runtime=runtime,
            identity=ModelIdentity(name=name, version=version, demo=info.demo),
            limits=options.limits,
        )

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """RGB images -> ``pixel_values[N, 3, H, W]`` exactly as the checkpoint's processor makes them."""
        return self.processor(images=list(images), return_tensors="pt")["pixel_values"]

    def postprocess(self, logits: torch.Tensor) -> list[Prediction]:
        """Logits -> one prediction dict per row."""
        probabilities = torch.softmax(logits.float(), dim=-1).tolist()
        predictions = []
        for row in probabilities:
            best = max(range(len(row)), key=row.__getitem__)
            predictions.append(
                {
                    "label": self.labels[best],
                    "confidence": row[best],
                    "probabilities": dict(zip(self.labels, row)),
                    "model": self.identity.name,
                    "version": self.identity.version,
                    "demo": self.identity.demo,
                    "runtime": self.runtime.name,
                    "precision": self.runtime.precision,
                }
            )
        return predictions

    def predict_images(self, images: Sequence[Image.Image]) -> list[Prediction]:
        """Classify decoded RGB images in one forward pass."""
        if not images:
            return []
        return self.postprocess(self.runtime.predict(self.preprocess(images)))

    def predict_batch(self, payloads: Sequence[bytes | ClientError]) -> list[Prediction | ClientError]:
        """Classify encoded images; each bad one gets its ``ClientError`` at its own index.

        A payload that is already a ``ClientError`` (the adapter could not extract bytes) passes through.
        """
        results: list[Prediction | ClientError | None] = [None] * len(payloads)
        good_indices, images = [], []
        for index, payload in enumerate(payloads):
            if isinstance(payload, ClientError):
                results[index] = payload
                continue
            try:
                images.append(decode_image(payload, self.limits))
                good_indices.append(index)
            except ClientError as error:
                results[index] = error
        for index, prediction in zip(good_indices, self.predict_images(images)):
            results[index] = prediction
        return results  # type: ignore[return-value]
