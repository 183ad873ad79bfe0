"""The inference core: decode -> faces -> preprocess -> forward -> postprocess, per-request results in a batch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from handler.checkpoint import load_image_processor, read_checkpoint_info
from handler.errors import BadOption, ClientError, NoFaceFound
from handler.explain import METHOD, Explainer, overlay_png
from handler.faces import FACE_MODES, Box, FaceDetector, create_detector, crop_region, cut
from handler.images import Decoded, ImageLimits, decode
from handler.options import HandlerOptions
from handler.runtime import Runtime, create_runtime

Prediction = dict[str, Any]


@dataclass(frozen=True)
class ModelIdentity:
    """Metadata stamped on every prediction."""

    name: str
    version: str
    demo: bool


@dataclass(frozen=True)
class FaceSettings:
    """How the face stage runs: default ``mode`` (auto | faces | off), crop ``margin``, at most
    ``max_faces`` classified per image, and the label whose probability picks the deciding face."""

    mode: str = "off"
    margin: float = 0.2
    max_faces: int = 8
    fake_label: str = "Fake"


@dataclass(frozen=True)
class Subjects:
    """What gets classified for one image: face crops (with their boxes in original pixels) or the
    whole image (no boxes); ``skipped`` are faces beyond ``max_faces``."""

    crops: list[Image.Image]
    boxes: list[Box]
    skipped: list[Box]
    mode: str
    regions: list[Box]  # what each crop covers, in original pixels (the whole image when no face)

    @property
    def analyzed(self) -> str:
        return "faces" if self.boxes else "image"


class DeepfakeClassifier:
    """A ViT image classifier whose labels come from the checkpoint's ``config.id2label``."""

    def __init__(
        self,
        processor: Any,
        labels: Sequence[str],
        runtime: Runtime,
        identity: ModelIdentity,
        limits: ImageLimits,
        detector: FaceDetector | None = None,
        faces: FaceSettings = FaceSettings(),
        explainer_source: tuple[Path, torch.device] | None = None,
    ) -> None:
        self.processor = processor
        self.labels = tuple(labels)
        self.runtime = runtime
        self.identity = identity
        self.limits = limits
        self.detector = detector
        self.faces = faces
        self._explainer_source = explainer_source
        self._explainer: Explainer | None = None

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
        face_model = info.path / options.face_model if options.face_model else None
        return cls(
            processor=load_image_processor(info.path),
            labels=info.labels,
            runtime=runtime,
            identity=ModelIdentity(name=name, version=version, demo=info.demo),
            limits=options.limits,
            detector=create_detector(options.face_detector, face_model, options.face_detect_side, options.face_min_size),
            faces=FaceSettings(options.face_mode, options.face_margin, options.max_faces, options.fake_label),
            explainer_source=(info.path, torch.device(device)),
        )

    @property
    def explainer(self) -> Explainer:
        """The torch model that returns attentions, loaded on first use (predictions never need it)."""
        if self._explainer is None:
            if self._explainer_source is None:
                raise RuntimeError("this classifier was built without a checkpoint to explain with")
            self._explainer = Explainer(*self._explainer_source)
        return self._explainer

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """RGB images -> ``pixel_values[N, 3, H, W]`` exactly as the checkpoint's processor makes them."""
        return self.processor(images=list(images), return_tensors="pt")["pixel_values"]

    def postprocess(self, logits: torch.Tensor) -> list[Prediction]:
        """Logits -> one ``{label, confidence, probabilities}`` per row."""
        probabilities = torch.softmax(logits.float(), dim=-1).tolist()
        predictions = []
        for row in probabilities:
            best = max(range(len(row)), key=row.__getitem__)
            predictions.append({"label": self.labels[best], "confidence": row[best], "probabilities": dict(zip(self.labels, row))})
        return predictions

    def predict_images(self, images: Sequence[Image.Image]) -> list[Prediction]:
        """Classify decoded RGB images in one forward pass."""
        if not images:
            return []
        return self.postprocess(self.runtime.predict(self.preprocess(images)))

    def subjects(self, decoded: Decoded, mode: str | None = None) -> Subjects:
        """Face crops of ``decoded`` (mode auto or faces), or the whole image (off, or auto without a face).

        Raises ``NoFaceFound`` in mode faces when no face is found, ``BadOption`` for an unknown mode.
        """
        mode = mode or self.faces.mode
        if mode not in FACE_MODES:
            raise BadOption(f"face mode {mode!r} is not one of {', '.join(FACE_MODES)}")
        image = decoded.image
        found = self.detector.detect(image) if mode != "off" and self.detector is not None else []
        if not found:
            if mode == "faces":
                raise NoFaceFound(
                    f"no face of at least the minimum size was found in the {image.width}x{image.height} image; "
                    "send a photo with a visible frontal face, or face mode auto or off to classify the whole image"
                )
            return Subjects([image], [], [], mode, [Box(0, 0, *decoded.original_size)])
        kept, extra = found[: self.faces.max_faces], found[self.faces.max_faces :]
        regions = [crop_region(image.size, box, self.faces.margin) for box in kept]
        sx, sy = decoded.scale
        return Subjects(
            crops=[cut(image, region) for region in regions],
            boxes=[box.scaled(sx, sy) for box in kept],
            skipped=[box.scaled(sx, sy) for box in extra],
            mode=mode,
            regions=[region.scaled(sx, sy) for region in regions],
        )

    def _deciding(self, verdicts: list[Prediction]) -> int:
        """The most-fake face: highest probability of ``fake_label``, else the most confident one."""
        key = self.faces.fake_label
        if key in self.labels:
            return max(range(len(verdicts)), key=lambda i: verdicts[i]["probabilities"][key])
        return max(range(len(verdicts)), key=lambda i: verdicts[i]["confidence"])

    def answer(
        self, subjects: Subjects, verdicts: list[Prediction], original_size: tuple[int, int], computed_by: tuple[str, str]
    ) -> Prediction:
        """One request's answer: the image-level verdict (the deciding face's, or the whole image's),
        the model identity, what computed it (runtime, precision), and each face with its own verdict."""
        deciding = self._deciding(verdicts)
        faces = [{"box": box.as_list(), **verdict} for box, verdict in zip(subjects.boxes, verdicts)]
        return {
            **verdicts[deciding],
            "model": self.identity.name,
            "version": self.identity.version,
            "demo": self.identity.demo,
            "runtime": computed_by[0],
            "precision": computed_by[1],
            "mode": subjects.mode,
            "analyzed": subjects.analyzed,
            "decided_by_face": deciding if faces else None,
            "faces": faces,
            "faces_skipped": [{"box": box.as_list()} for box in subjects.skipped],
            "image_size": list(original_size),
        }

    def explanation(self, subjects: Subjects, maps: torch.Tensor, original_size: tuple[int, int]) -> dict[str, Any]:
        """Rollout maps as numbers (one per face, or one for the whole image) and as one overlay PNG."""
        regions = [r.as_list() for r in subjects.regions]
        grids = [m.numpy() for m in maps]
        return {
            "method": METHOD,
            "grid_size": list(maps.shape[1:]),
            "maps": [{"region": region, "attention": np.round(grid, 4).tolist()} for region, grid in zip(regions, grids)],
            "overlay_png": overlay_png(original_size, regions, grids),
        }

    def predict_batch(
        self,
        payloads: Sequence[bytes | ClientError],
        modes: Sequence[str | None] | None = None,
        explain: Sequence[bool] | None = None,
    ) -> list[Prediction | ClientError]:
        """Classify encoded images; each bad one gets its ``ClientError`` at its own index.

        ``modes`` overrides the face mode per request (None: the configured default). Requests flagged in
        ``explain`` also get an ``explanation`` (attention rollout, computed by the torch explainer); the
        others go through the runtime, crops of all requests in one forward pass. A payload that is
        already a ``ClientError`` (the adapter could not extract bytes) passes through.
        """
        modes = list(modes) if modes is not None else [None] * len(payloads)
        explain = list(explain) if explain is not None else [False] * len(payloads)
        results: list[Prediction | ClientError | None] = [None] * len(payloads)
        pending: list[tuple[int, Subjects, tuple[int, int]]] = []
        for index, (payload, mode) in enumerate(zip(payloads, modes)):
            if isinstance(payload, ClientError):
                results[index] = payload
                continue
            try:
                decoded = decode(payload, self.limits)
                pending.append((index, self.subjects(decoded, mode), decoded.original_size))
            except ClientError as error:
                results[index] = error
        plain = [p for p in pending if not explain[p[0]]]
        verdicts = self.predict_images([crop for _, subjects, _ in plain for crop in subjects.crops])
        for (index, subjects, size), chunk in zip(plain, _split(verdicts, [len(s.crops) for _, s, _ in plain])):
            results[index] = self.answer(subjects, chunk, size, (self.runtime.name, self.runtime.precision))
        explained = [p for p in pending if explain[p[0]]]
        if explained:
            logits, maps = self.explainer.explain(self.preprocess([c for _, s, _ in explained for c in s.crops]))
            counts = [len(s.crops) for _, s, _ in explained]
            for (index, subjects, size), chunk, chunk_maps in zip(explained, _split(self.postprocess(logits), counts), _split(maps, counts)):
                answer = self.answer(subjects, chunk, size, ("torch", "fp32"))
                answer["explanation"] = self.explanation(subjects, torch.stack(list(chunk_maps)), size)
                results[index] = answer
        return results  # type: ignore[return-value]


def _split(items: Sequence, counts: Sequence[int]) -> list:
    """``items`` cut into consecutive runs of ``counts`` lengths."""
    runs, start = [], 0
    for count in counts:
        runs.append(items[start : start + count])
        start += count
    return runs
