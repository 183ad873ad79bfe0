"""The inference core, as stages over one ``Analysis`` per request (handler/analysis.py):

  subjects   (media kind: decode + faces, or video sampling + people)   -> ``subjects`` or ``error``
  forward    (preprocess, runtime or explainer, in even passes of at most 2 x ``forward_batch`` crops,
             ``forward_batch`` for the explainer) -> ``verdicts``,
             ``computed_by`` (and ``maps`` for explanations)
  provenance (C2PA, declared AI metadata)                                -> ``provenance``
  answer     (handler/answers.py)                                        -> JSON, or the ``ClientError``

A bad request ends at the stage that refused it and is answered alone; its batch-mates go on.
"""

from __future__ import annotations

import logging
import uuid
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import torch
from PIL import Image

from handler.analysis import Analysis, Request
from handler.answers import Answer, AnswerContext, ModelIdentity, answer, with_record
from handler.checkpoint import load_image_processor, read_checkpoint_info, weight_files
from handler.consistency import Consistency
from handler.decision import Decision, read_decision
from handler.errors import BadOption, ClientError, RequestFailed, VideoElsewhere
from handler.explain import Explainer
from handler.faces import FaceDetector, FaceSettings, create_detector
from handler.images import ImageLimits
from handler.media import ImageMedia, MediaKind
from handler.options import HandlerOptions
from handler.provenance import ProvenanceReader, ProvenanceSettings, load_trust_list
from handler.records import Recorder, RecordSettings, record_row, weights_sha256
from handler.runtime import Runtime, create_runtime
from handler.verdicts import Verdict, verdicts
from handler.video import VideoMedia, VideoSettings, VideoSubjects

logger = logging.getLogger(__name__)


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
        video_endpoint: str | None = None,
        consistency: Consistency | None = None,
        records: Recorder | None = None,
    ) -> None:
        self.processor = processor
        self.labels = tuple(labels)
        self.runtime = runtime
        self.identity = identity
        self.limits = limits
        self.faces = faces
        # Uncalibrated unless the checkpoint carries decision.json (handler/decision.py).
        self.decision = decision or Decision(fake_label=HandlerOptions().fake_label)
        # A detector, or a factory for one: built on the first request that needs faces.
        self._detector = detector
        self._explainer_source = explainer_source
        self._explainer: Explainer | None = None
        self.video = video or HandlerOptions().video
        self.provenance = provenance or ProvenanceReader(ProvenanceSettings(enabled=False))
        # The worker's batchSize: a runtime pass takes at most twice as many crops (a batch with faces makes
        # more crops than requests), the explainer's at most this many; a video's many crops are split.
        self.forward_batch = forward_batch
        # Where videos go when this worker does not analyse them (handler/roles.py); None: here.
        self.video_endpoint = video_endpoint
        # The opt-in re-encoding check of images (handler/consistency.py); None: off.
        self.consistency = consistency
        # The record of every answer and the "seen before" match (handler/records.py); None: off.
        self.records = records
        hashes = records is not None
        self.media: tuple[MediaKind, ...] = (VideoMedia(self.video, faces, self.detector, hashes), ImageMedia(limits, faces, self.detector, hashes))

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
        video_endpoint: str | None = None,
        records: RecordSettings | None = None,
    ) -> "DeepfakeClassifier":
        """Load a checkpoint folder; raises ``CheckpointError`` for unusable folders and ``DecisionError``
        for an unusable ``decision.json``. ``records``: where to keep a record of each answer (None: nowhere)."""
        info = read_checkpoint_info(checkpoint)
        runtime = create_runtime(options.runtime, info.path, torch.device(device), options.precision, options.threads)
        face_model = info.path / options.face_model_file if options.face_model_file else None
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
            video_endpoint=video_endpoint,
            consistency=Consistency(options.consistency_quality, info.config.image_size) if options.consistency_check else None,
            records=_recorder(records, {"name": name, "version": version, "demo": info.demo,
                                        "weights_sha256": weights_sha256(weight_files(info.path))}) if records and records.enabled else None,
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

    @property
    def answers(self) -> AnswerContext:
        """What every answer of this model shares (handler/answers.py)."""
        return AnswerContext(self.identity, self.decision, self.video, self.consistency)

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """RGB images -> ``pixel_values[N, 3, H, W]`` exactly as the checkpoint's processor makes them."""
        return self.processor(images=list(images), return_tensors="pt")["pixel_values"]

    def classify(self, images: Sequence[Image.Image]) -> list[Verdict]:
        """Classify RGB images with the runtime, in the forward passes ``_passes`` sizes."""
        return [verdict for chunk in self._passes(images, explain=False) for verdict, _ in chunk]

    def _passes(self, images: Sequence[Image.Image], explain: bool):
        """Per forward pass (``pass_sizes``: at most 2 x ``forward_batch`` images, ``forward_batch`` with
        ``explain``): (verdict, attention map or None) per image, from the runtime or, with ``explain``,
        the explainer."""
        start = 0
        for size in pass_sizes(len(images), self.forward_batch if explain else 2 * self.forward_batch):
            pixels = self.preprocess(images[start : start + size])
            start += size
            logits, maps = self.explainer.explain(pixels) if explain else (self.runtime.predict(pixels), None)
            found = verdicts(self.labels, logits, self.decision)
            yield [(verdict, None if maps is None else maps[i]) for i, verdict in enumerate(found)]

    def predict_batch(self, requests: Sequence[Request | bytes]) -> list[Answer | ClientError]:
        """Answer each request; a bad one gets its ``ClientError`` at its own index (bytes stand for a
        ``Request`` with the defaults). Plain requests go through the runtime, requests for an explanation
        through the torch explainer, which also returns attentions."""
        analyses = [Analysis(r if isinstance(r, Request) else Request(r)) for r in requests]
        self.find_subjects(*analyses)
        self.forward([a for a in analyses if a.open and not a.request.explain])
        self.forward([a for a in analyses if a.open and a.request.explain], explain=True)
        for analysis in analyses:
            self.read_provenance(analysis)
        if self.records is not None:
            self.match_records(analyses)
        answers = [answer(analysis, self.answers) for analysis in analyses]
        if self.records is not None:
            self.keep_records(analyses, answers)
        return answers

    def match_records(self, analyses: Sequence[Analysis]) -> None:
        """The match stage (records on): each image's perceptual hash against the labelled ones
        (handler/records.py) -> ``match``. A failure here costs the batch its matches, never its answers."""
        try:
            self.records.try_refresh()
            for analysis in analyses:
                if analysis.open and getattr(analysis.subjects, "media", None) == "image":
                    analysis.match = self.records.match(analysis.subjects.fingerprint)
        except Exception:  # noqa: BLE001 - as in keep_records
            logger.exception("no matches for a batch of %d", len(analyses))

    def keep_records(self, analyses: Sequence[Analysis], answers: list[Answer | ClientError]) -> None:
        """The record stage (records on): one record per answer, one transaction for the batch; each answer
        gets its ``record`` block (handler/answers.py:with_record). Never fails the batch."""
        try:
            rows = [record_row(a, r, self.records.model, self.decision.fake_label) for a, r in zip(analyses, answers)]
            blocks = self.records.keep(rows)
        except Exception:  # noqa: BLE001 - keeping the record must never cost the answers
            logger.exception("records not kept for a batch of %d", len(answers))
            blocks = [{"id": None, "kept": False, "detail": "records stage failed (see the worker log)"}] * len(answers)
        for reply, block in zip(answers, blocks):
            with_record(reply, block)

    def find_subjects(self, *analyses: Analysis) -> None:
        """The subjects stage: what to classify, by the first media kind that accepts each request's bytes;
        the requests of one kind go to it together (images: one batched face search). A ``ClientError``
        (bad bytes, bad face mode, no face in mode faces) ends that analysis, and only that one."""
        kinds: dict[int, list[Analysis]] = {}  # by the kind's place in self.media
        for analysis in analyses:
            if not analysis.open:
                continue
            request = analysis.request
            try:
                place, kind = next((i, k) for i, k in enumerate(self.media) if k.accepts(request.payload))
                if kind.name == "video" and self.video_endpoint:
                    raise VideoElsewhere(self.video_endpoint)
                if request.explain and kind.name != "image":
                    raise BadOption(f"explanations are computed for images; send the {kind.name} to /predictions")
                kinds.setdefault(place, []).append(analysis)
            except ClientError as error:
                analysis.error = error
            except Exception:  # noqa: BLE001 - a surprise on this request's bytes must not fail its batch-mates
                analysis.error = _failed("finding what to classify")
        for place, kind in enumerate(self.media):
            batch = kinds.get(place, [])
            try:
                found = kind.subjects_many([(a.request.payload, a.request.face_mode or self.faces.mode) for a in batch]) if batch else []
            except Exception as error:  # noqa: BLE001 - e.g. the face detector failed to load: every request of the kind fails
                found = [error] * len(batch)
            for analysis, result in zip(batch, found):
                if isinstance(result, ClientError):
                    analysis.error = result
                elif isinstance(result, Exception):
                    analysis.error = _failed("finding what to classify", result)
                else:
                    analysis.subjects = result

    def forward(self, analyses: Sequence[Analysis], explain: bool = False) -> None:
        """The forward stage: every crop of ``analyses`` through the runtime (or the explainer, which also
        gives attention maps), in the passes ``_passes`` sizes; each verdict (and map) goes
        to the analysis its crop came from."""
        if not analyses:
            return  # the explainer is loaded on the first request that asks for it
        crops = [(analysis, crop, False) for analysis in analyses for crop in analysis.subjects.crops]
        if self.consistency is not None:
            crops += [(analysis, self.consistency.copy(crop), True) for analysis in analyses
                      if not isinstance(analysis.subjects, VideoSubjects) for crop in analysis.subjects.crops]
        results = (found for chunk in self._passes([crop for _, crop, _ in crops], explain) for found in chunk)
        for (analysis, _, recheck), (verdict, attention) in zip(crops, results):
            (analysis.rechecks if recheck else analysis.verdicts).append(verdict)
            if attention is not None and not recheck:  # the explanation shows the original's attention
                analysis.maps.append(attention)
        engine = self.explainer if explain else self.runtime
        for analysis in analyses:
            analysis.computed_by = (engine.name, engine.precision)

    def read_provenance(self, analysis: Analysis) -> None:
        """The provenance stage: content credentials and declared AI metadata beside the verdict."""
        if analysis.open and self.provenance.settings.enabled:
            try:
                analysis.provenance = self.provenance.read(analysis.request.payload, analysis.subjects.media)
            except Exception:  # noqa: BLE001 - as in find_subjects
                analysis.error = _failed("reading provenance")


def pass_sizes(count: int, most: int) -> list[int]:
    """How many crops each forward pass takes: as few passes as ``most`` allows, sized evenly (11 crops at
    most 16: one pass; 20: two of 10), since a small pass costs more per crop (OpenVINO bf16, machine B:
    12.4 img/s at 3 against 13.1 at 8 and 14.0 at 11; docs/performance.md)."""
    if most < 1:
        raise ValueError(f"a forward pass takes at least one crop, not {most}")
    passes = -(-count // most)
    return [count // passes + (index < count % passes) for index in range(passes)]


def _recorder(settings: RecordSettings, model: dict) -> Recorder | None:
    """The recorder, or None (records off, logged) when the URL cannot make an engine (a missing driver,
    a malformed URL): the model still answers."""
    try:
        return Recorder(settings, model)
    except Exception:  # noqa: BLE001 - a records setting must never stop the model from loading
        logger.exception("records off: no engine for the record store URL (see the traceback)")
        return None


def _failed(stage: str, error: BaseException | None = None) -> RequestFailed:
    """The error for one request whose ``stage`` raised ``error`` (default: the exception being handled),
    logged with its traceback and id."""
    error_id = uuid.uuid4().hex[:12]
    logger.error("%s failed for one request (error id %s); the rest of its batch goes on", stage, error_id, exc_info=error or True)
    return RequestFailed(error_id)
