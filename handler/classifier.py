"""The inference core, as stages over one ``Analysis`` per request (handler/analysis.py):

  subjects   (the media kind: decode + faces, or video sampling + people)  -> ``kind``, ``subjects``
  forward    (preprocess, runtime or explainer, in the passes ``pass_sizes`` makes)
                                                   -> ``verdicts``, ``computed_by`` (``maps``, ``rechecks``)
  decide     (the media kind's rule over the verdicts)                      -> ``outcome``
  provenance (C2PA, declared AI metadata)                                   -> ``provenance``
  match, record (records on: handler/recorder.py)                           -> ``match``, ``record``
  answer     (handler/answers.py, last)                                     -> the JSON

A request ends at the stage that refused it (``error``) and is answered alone; its batch-mates go on. An
unexpected failure of one request's stage is caught in one place, ``_each``.
"""

from __future__ import annotations

import logging
import uuid
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import torch
from PIL import Image

from handler.analysis import Analysis, Receipt, Request
from handler.answers import Answer, AnswerContext, ModelIdentity, answer
from handler.checkpoint import load_image_processor, read_checkpoint_info, weight_files
from handler.consistency import Consistency
from handler.decision import Decision, read_decision
from handler.detectors import create_detector
from handler.errors import BadOption, RequestError, RequestFailed, VideoElsewhere
from handler.explain import Explainer
from handler.faces import FaceDetector, FaceSettings
from handler.images import ImageLimits
from handler.kept_media import CropShape
from handler.kinds import media_kinds
from handler.options import HandlerOptions
from handler.provenance import ProvenanceReader, ProvenanceSettings, load_trust_list
from handler.recorder import Recorder, weights_sha256
from handler.runtime import Runtime, create_runtime
from handler.store import RecordSettings
from handler.verdicts import Verdict, verdicts
from handler.video import VideoSettings

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
        hashes: bool = False,
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
        # Where a media kind goes when this worker does not analyse it (handler/roles.py): kind -> endpoint.
        self.elsewhere = {"video": video_endpoint} if video_endpoint else {}
        # The opt-in re-encoding check of images (handler/consistency.py); None: off.
        self.consistency = consistency
        # The record of every answer and the "seen before" match (handler/recorder.py); None: off.
        self.records = records
        # Perceptual hashes: for the records, or for a caller that wants them without (a scan's rows).
        self.media = media_kinds(limits, self.video, faces, self.detector, hashes or records is not None)

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
        hashes: bool = False,
    ) -> "DeepfakeClassifier":
        """Load a checkpoint folder; raises ``CheckpointError`` for unusable folders and ``DecisionError``
        for an unusable ``decision.json``. ``records``: where to keep a record of each answer (None: nowhere);
        ``hashes``: compute each image's perceptual hash (``Analysis.subjects.fingerprint``) even without records."""
        info = read_checkpoint_info(checkpoint)
        decision = read_decision(info.path, info.labels, options.fake_label)
        log_fitted_face_mode(decision, options.faces.mode)
        runtime = create_runtime(options.runtime, info.path, torch.device(device), options.precision, options.threads)
        processor = load_image_processor(info.path)
        face_model = info.path / options.face_model_file if options.face_model_file else None
        return cls(
            processor=processor,
            labels=info.labels,
            runtime=runtime,
            identity=ModelIdentity(name=name, version=version, demo=info.demo),
            limits=options.limits,
            detector=partial(create_detector, options.face_detector, face_model, options.face_detect_side, options.face_min_size,
                             options.threads),
            faces=options.faces,
            explainer_source=(info.path, torch.device(device)),
            decision=decision,
            video=options.video,
            forward_batch=forward_batch,
            provenance=ProvenanceReader(ProvenanceSettings(options.provenance, load_trust_list(options.provenance_trust_list, info.path))),
            video_endpoint=video_endpoint,
            consistency=Consistency(options.consistency_quality, info.config.image_size) if options.consistency_check else None,
            records=_recorder(records, {"name": name, "version": version, "demo": info.demo, "weights_sha256": weights_sha256(weight_files(info.path))},
                              CropShape.of(processor)) if records and records.enabled else None,
            hashes=hashes,
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
        return AnswerContext(self.identity, self.decision, self.consistency)

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """RGB images -> ``pixel_values[N, 3, H, W]`` exactly as the checkpoint's processor makes them."""
        return self.processor(images=list(images), return_tensors="pt")["pixel_values"]

    def classify(self, images: Sequence[Image.Image]) -> list[Verdict]:
        """Classify RGB images with the runtime, in the forward passes ``_passes`` sizes."""
        return [verdict for chunk in self._passes(images, explain=False) for verdict, _, _ in chunk]

    def _passes(self, images: Sequence[Image.Image], explain: bool):
        """Per forward pass (``pass_sizes``: at most 2 x ``forward_batch`` images, ``forward_batch`` with
        ``explain``): (verdict, attention map or None, the processor's pixels) per image, from the runtime or,
        with ``explain``, the explainer."""
        start = 0
        for size in pass_sizes(len(images), self.forward_batch if explain else 2 * self.forward_batch):
            pixels = self.preprocess(images[start : start + size])
            start += size
            logits, maps = self.explainer.explain(pixels) if explain else (self.runtime.predict(pixels), None)
            found = verdicts(self.labels, logits, self.decision)
            yield [(verdict, None if maps is None else maps[i], pixels[i]) for i, verdict in enumerate(found)]

    def predict_batch(self, requests: Sequence[Request | bytes]) -> list[Answer | RequestError]:
        """Each request's answer, or the error that ended it, at its own index (bytes stand for a ``Request``
        with the defaults). ``analyse`` keeps everything else that was found."""
        return [analysis.error or answer(analysis, self.answers) for analysis in self.analyse(requests)]

    def analyse(self, requests: Sequence[Request | bytes]) -> list[Analysis]:
        """Every stage over the batch, one ``Analysis`` per request. Plain requests go through the runtime,
        requests for an explanation through the torch explainer, which also returns attentions."""
        analyses = [Analysis(r if isinstance(r, Request) else Request(r)) for r in requests]
        self.find_subjects(analyses)
        self.forward([a for a in analyses if a.open and not a.request.explain])
        self.forward([a for a in analyses if a.open and a.request.explain], explain=True)
        _each("deciding", analyses, self.decide)
        _each("reading provenance", analyses, self.read_provenance)
        if self.records is not None:
            self.match_records(analyses)
            self.keep_records(analyses)
        return analyses

    def find_subjects(self, analyses: Sequence[Analysis]) -> None:
        """The subjects stage: the first media kind that accepts each request's bytes takes it; the requests of
        one kind go to it together (images: one batched face search). A ``ClientError`` (bad bytes, bad face
        mode, no face in mode faces) ends that analysis, and only that one."""
        _each("finding the media kind", analyses, self.route)
        for kind in self.media:
            batch = [a for a in analyses if a.open and a.kind is kind]
            if not batch:
                continue
            try:
                found = kind.subjects_many([(a.request.payload, a.request.face_mode or self.faces.mode) for a in batch])
            except Exception as error:  # noqa: BLE001 - e.g. the face detector failed to load: every request of the kind fails
                found = [error] * len(batch)
            for analysis, result in zip(batch, found):
                if isinstance(result, RequestError):
                    analysis.error = result
                elif isinstance(result, Exception):
                    analysis.error = _failed("finding what to classify", result)
                else:
                    analysis.subjects = result

    def route(self, analysis: Analysis) -> None:
        """The media kind that takes the request; refused when its kind is answered elsewhere or it asks an
        explanation of a kind that has none."""
        kind = next(k for k in self.media if k.accepts(analysis.request.payload))
        if kind.name in self.elsewhere:
            raise VideoElsewhere(self.elsewhere[kind.name])
        if analysis.request.explain and not kind.explains:
            raise BadOption(f"explanations are computed for images; send the {kind.name} to /predictions")
        analysis.kind = kind

    def forward(self, analyses: Sequence[Analysis], explain: bool = False) -> None:
        """The forward stage: every crop of ``analyses`` through the runtime (or the explainer, which also
        gives attention maps), in the passes ``_passes`` sizes; each verdict (and map) goes to the analysis
        its crop came from; with the consistency check on, the re-encoded copies go along."""
        if not analyses:
            return  # the explainer is loaded on the first request that asks for it
        crops = [(analysis, crop, False) for analysis in analyses for crop in analysis.subjects.crops]
        if self.consistency is not None:
            crops += [(analysis, self.consistency.copy(crop), True) for analysis in analyses if analysis.kind.rechecks
                      for crop in analysis.subjects.crops]
        results = (found for chunk in self._passes([crop for _, crop, _ in crops], explain) for found in chunk)
        keep_inputs = self.records is not None and self.records.settings.keeps_media
        for (analysis, _, recheck), (verdict, attention, pixels) in zip(crops, results):
            (analysis.rechecks if recheck else analysis.verdicts).append(verdict)
            if attention is not None and not recheck:  # the explanation shows the original's attention
                analysis.maps.append(attention)
            if keep_inputs and not recheck:  # the record keeps what the model received (handler/kept_media.py)
                analysis.inputs.append(pixels)
        engine = self.explainer if explain else self.runtime
        for analysis in analyses:
            analysis.computed_by = (engine.name, engine.precision)

    def decide(self, analysis: Analysis) -> None:
        """The decide stage: the media kind's rule over the request's verdicts."""
        analysis.outcome = analysis.kind.decide(analysis.subjects, analysis.verdicts, self.decision, analysis.rechecks)

    def read_provenance(self, analysis: Analysis) -> None:
        """The provenance stage: content credentials and declared AI metadata beside the verdict, by the
        readers that apply to the request's media kind."""
        if self.provenance.settings.enabled:
            analysis.provenance = self.provenance.read(analysis.request.payload, analysis.kind.provenance)

    def match_records(self, analyses: Sequence[Analysis]) -> None:
        """The match stage (records on): each perceptual hash its kind matches against the labelled ones
        (handler/recorder.py) -> ``match``. A failure here costs the batch its matches, never its answers."""
        try:
            self.records.try_refresh()
            for analysis in analyses:
                if analysis.open and analysis.subjects.fingerprint is not None:
                    analysis.match = self.records.match(analysis.subjects.fingerprint)
        except Exception:  # noqa: BLE001 - as in keep_records
            logger.exception("no matches for a batch of %d", len(analyses))

    def keep_records(self, analyses: Sequence[Analysis]) -> None:
        """The record stage (records on): one record per request, one transaction for the batch -> each
        one's ``record`` receipt. Never fails the batch."""
        try:
            receipts = self.records.keep_analyses(analyses, self.decision)
        except Exception:  # noqa: BLE001 - keeping the record must never cost the answers
            logger.exception("records not kept for a batch of %d", len(analyses))
            receipts = [Receipt(None, False, "records stage failed (see the worker log)")] * len(analyses)
        for analysis, receipt in zip(analyses, receipts):
            analysis.record = receipt


def _each(stage: str, analyses: Sequence[Analysis], call: Callable[[Analysis], None]) -> None:
    """``call`` on each open analysis: a ``RequestError`` it raises ends that analysis; anything else ends it
    as a ``RequestFailed`` (logged with an error id). The one place a request's stage failure is caught."""
    for analysis in analyses:
        if not analysis.open:
            continue
        try:
            call(analysis)
        except RequestError as error:
            analysis.error = error
        except Exception:  # noqa: BLE001 - a surprise on this request must not fail its batch-mates
            analysis.error = _failed(stage)


def log_fitted_face_mode(decision: Decision, mode: str) -> None:
    """A warning at load when the server's face ``mode`` is not the one the decision was fitted on (its
    thresholds were set on another kind of input); a note when a calibrated decision does not say."""
    mismatch = decision.face_mode_mismatch(mode)
    if mismatch:
        logger.warning("face mode mismatch: the operating point (decision.json) was fitted on face mode %s; this model answers in "
                       "face mode %s by default, so its false-positive rates may not hold (answers say so in decision.note; "
                       "recalibrate with python -m scripts.calibrate, which uses the model config's face mode)", decision.face_mode, mode)
    elif mismatch is None:
        logger.info("decision.json does not say which face mode it was fitted on; this model answers in face mode %s by default "
                    "(recalibrate with python -m scripts.calibrate to record it)", mode)


def pass_sizes(count: int, most: int) -> list[int]:
    """How many crops each forward pass takes: as few passes as ``most`` allows, sized evenly (11 crops at
    most 16: one pass; 20: two of 10), since a small pass costs more per crop (docs/performance.md)."""
    if most < 1:
        raise ValueError(f"a forward pass takes at least one crop, not {most}")
    passes = -(-count // most)
    return [count // passes + (index < count % passes) for index in range(passes)]


def _recorder(settings: RecordSettings, model: dict, shape: CropShape) -> Recorder | None:
    """The recorder, or None (records off, logged) when the URL cannot make an engine (a missing driver,
    a malformed URL): the model still answers."""
    try:
        return Recorder(settings, model, shape=shape)
    except Exception:  # noqa: BLE001 - a records setting must never stop the model from loading
        logger.exception("records off: no engine for the record store URL (see the traceback)")
        return None


def _failed(stage: str, error: BaseException | None = None) -> RequestFailed:
    """The error for one request whose ``stage`` raised ``error`` (default: the exception being handled),
    logged with its traceback and id."""
    error_id = uuid.uuid4().hex[:12]
    logger.error("%s failed for one request (error id %s); the rest of its batch goes on", stage, error_id, exc_info=error or True)
    return RequestFailed(error_id)
