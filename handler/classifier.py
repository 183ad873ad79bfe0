"""The inference core: request -> subjects (decode, faces) -> preprocess -> forward -> answer, with
per-request results inside a batch."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import torch
from PIL import Image

from handler.answers import Answer, ModelIdentity, Verdict, answer, explanation, verdicts, video_answer
from handler.checkpoint import load_image_processor, read_checkpoint_info
from handler.decision import Decision, read_decision
from handler.errors import BadOption, ClientError
from handler.explain import Explainer
from handler.faces import FaceDetector, FaceSettings, create_detector, deciding_face
from handler.images import ImageLimits
from handler.media import ImageMedia, MediaKind
from handler.options import HandlerOptions
from handler.provenance import ProvenanceReader, ProvenanceSettings, load_trust_list
from handler.request import Request, Subjects
from handler.runtime import Runtime, create_runtime
from handler.video import VideoMedia, VideoSettings, VideoSubjects


class DeepfakeClassifier:
    """A ViT image classifier whose labels come from the checkpoint's ``config.id2label``."""

    def __init__(
        self,
        processor,
        labels: Sequence[str],
        runtime: Runtime,
        identity: ModelIdentity,
        limits: ImageLimits,
        faces: FaceSettings,
        detector: FaceDetector | Callable[[], FaceDetector] | None = None,
        explainer_source: tuple[Path, torch.device] | None = None,
        decision: Decision | None = None,
        video: VideoSettings | None = None,
        forward_batch: int = 8,
        provenance: ProvenanceReader | None = None,
    ) -> None:
        self.processor = processor
        self.labels = tuple(labels)
        self.runtime = runtime
        self.identity = identity
        self.limits = limits
        self.faces = faces
        # Uncalibrated unless the checkpoint carries decision.json (handler/decision.py).
        self.decision = decision or Decision(fake_label=faces.fake_label)
        # A detector, or a factory for one: built on the first request that needs faces.
        self._detector = detector
        self._explainer_source = explainer_source
        self._explainer: Explainer | None = None
        self.video = video or HandlerOptions().video
        self.provenance = provenance or ProvenanceReader(ProvenanceSettings(enabled=False))
        # The most crops one forward pass takes (the worker's batchSize): a video's many crops are split.
        self.forward_batch = forward_batch
        self.media: tuple[MediaKind, ...] = (VideoMedia(self.video, faces, self.detector), ImageMedia(limits, faces, self.detector))

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | Path,
        options: HandlerOptions,
        *,
        device: torch.device | str = "cpu",
        name: str = "model",
        version: str = "1.0",
        forward_batch: int = 8,
    ) -> "DeepfakeClassifier":
        """Load a checkpoint folder; raises ``CheckpointError`` for unusable folders and ``DecisionError``
        for an unusable ``decision.json``."""
        info = read_checkpoint_info(checkpoint)
        runtime = create_runtime(options.runtime, info.path, torch.device(device), options.precision, options.threads)
        face_model = info.path / options.face_model if options.face_model else None
        return cls(
            processor=load_image_processor(info.path),
            labels=info.labels,
            runtime=runtime,
            identity=ModelIdentity(name=name, version=version, demo=info.demo),
            limits=options.limits,
            detector=partial(create_detector, options.face_detector, face_model, options.face_detect_side, options.face_min_size),
            faces=options.faces,
            explainer_source=(info.path, torch.device(device)),
            decision=read_decision(info.path, info.labels, options.fake_label),
            video=options.video,
            forward_batch=forward_batch,
            provenance=ProvenanceReader(ProvenanceSettings(options.provenance, load_trust_list(options.provenance_trust_list, info.path))),
        )

    def detector(self) -> FaceDetector:
        """The face detector, built on first use (a batch with faces off never builds it)."""
        if self._detector is None:
            raise RuntimeError("this classifier was built without a face detector")
        if not hasattr(self._detector, "detect"):
            self._detector = self._detector()
        return self._detector

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

    def classify(self, images: Sequence[Image.Image]) -> list[Verdict]:
        """Classify RGB images in forward passes of at most ``forward_batch`` images."""
        found: list[Verdict] = []
        for start in range(0, len(images), self.forward_batch):
            chunk = images[start : start + self.forward_batch]
            found += verdicts(self.labels, self.runtime.predict(self.preprocess(chunk)), self.decision)
        return found

    def subjects(self, request: Request) -> Subjects | VideoSubjects:
        """What to classify for one request, by the first media kind that accepts its bytes.

        Raises ``ClientError`` (bad bytes, bad face mode, no face in mode faces)."""
        if isinstance(request.payload, ClientError):
            raise request.payload
        kind = next(k for k in self.media if k.accepts(request.payload))
        if request.explain and kind.name != "image":
            raise BadOption(f"explanations are computed for images; send the {kind.name} to /predictions")
        return kind.subjects(request.payload, request.face_mode or self.faces.mode)

    def predict_batch(self, requests: Sequence[Request | bytes]) -> list[Answer | ClientError]:
        """Answer each request; a bad one gets its ``ClientError`` at its own index (bytes stand for a
        ``Request`` with the defaults).

        The crops of all plain requests go through the runtime in one forward pass; requests that ask
        for an explanation go through the torch explainer, which also returns attentions.
        """
        requests = [r if isinstance(r, Request) else Request(r) for r in requests]
        results: list[Answer | ClientError | None] = [None] * len(requests)
        pending: list[tuple[int, Subjects]] = []
        for index, request in enumerate(requests):
            try:
                pending.append((index, self.subjects(request)))
            except ClientError as error:
                results[index] = error
        plain = [(i, s) for i, s in pending if not requests[i].explain]
        found = self.classify([crop for _, subjects in plain for crop in subjects.crops])
        for (index, subjects), chunk in zip(plain, _split(found, [len(s.crops) for _, s in plain])):
            results[index] = self._answer(subjects, chunk, (self.runtime.name, self.runtime.precision))
        explained = [(i, s) for i, s in pending if requests[i].explain]
        if explained:
            logits, maps = self.explainer.explain(self.preprocess([c for _, s in explained for c in s.crops]))
            counts = [len(s.crops) for _, s in explained]
            for (index, subjects), chunk, chunk_maps in zip(explained, _split(verdicts(self.labels, logits, self.decision), counts), _split(maps, counts)):
                results[index] = self._answer(subjects, chunk, ("torch", "fp32"))
                results[index]["explanation"] = explanation(subjects, torch.stack(list(chunk_maps)))
        for request, result in zip(requests, results):
            if isinstance(result, dict):
                enabled = self.provenance.settings.enabled
                result["provenance"] = self.provenance.read(request.payload, result["media"]) if enabled else None
        return results  # type: ignore[return-value]

    def _answer(self, subjects: Subjects | VideoSubjects, found: Sequence[Verdict], computed_by: tuple[str, str]) -> Answer:
        if isinstance(subjects, VideoSubjects):
            return video_answer(self.identity, subjects, found, computed_by, self.decision, self.video)
        deciding = deciding_face([v.probabilities for v in found], self.faces.fake_label)
        return answer(self.identity, subjects, found, deciding, computed_by, self.decision)


def _split(items: Sequence, counts: Sequence[int]) -> list:
    """``items`` cut into consecutive runs of ``counts`` lengths."""
    runs, start = [], 0
    for count in counts:
        runs.append(items[start : start + count])
        start += count
    return runs
