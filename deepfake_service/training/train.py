"""Fine-tune a ViT image classifier on a class-per-folder dataset with HF Trainer, leak-free.

The library behind ``python -m scripts.train`` (see its ``--help``).
"""

from __future__ import annotations

import datetime
import io
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageFilter

from deepfake_service.dataset import (
    DatasetError,
    Sample,
    given_splits,
    labelled_samples,
    oversample,
    read_split,
    stratified_split,
    write_split,
)
from deepfake_service.project import handler_options
from handler.checkpoint import labels_from_config
from handler.errors import ClientError
from handler.images import decode_image

DEFAULT_BASE_MODEL = "dima806/deepfake_vs_real_image_detection"
PREFERRED_ORDER = ("Real", "Fake")  # the reference model's class indices: Real=0, Fake=1


@dataclass
class TrainSettings:
    data: Path | None  # a labelled folder; None: the reviewed records alone
    output: Path
    base_model: str = DEFAULT_BASE_MODEL
    labels: tuple[str, ...] | None = None
    test_size: float = 0.4
    # Fraction of all images set aside (stratified, before oversampling) to calibrate on; 0: none.
    calibration_size: float = 0.0
    target_fpr: float = 0.01
    uncertain_fpr: float = 0.05
    given_splits: bool = False
    epochs: float = 2.0
    max_steps: int = -1
    batch_size: int = 32
    learning_rate: float = 1e-6
    weight_decay: float = 0.02
    rotation_degrees: float = 90.0
    sharpness_factor: float = 2.0
    sharpness_p: float = 0.5
    # How files travel (JPEG re-compression, down-and-up scaling, WebP, blur, noise): with probability
    # delivery_p an image goes through one or more of these (Delivery below); 0 turns them off.
    delivery_p: float = 0.8
    delivery_jpeg_quality: tuple[int, int] = (30, 95)
    delivery_min_scale: float = 0.5
    delivery_blur: float = 1.0
    delivery_noise: float = 4.0
    seed: int = 42
    # A record store's URL: its reviewed records' kept crops train beside (or instead of) the folder's images;
    # only those of one model name and version, and created since a time, when given.
    records: str | None = None
    records_model: str | None = None
    records_version: str | None = None
    records_since: datetime.datetime | None = None
    save_steps: int = 500
    workers: int = field(default_factory=lambda: max(0, min(4, (os.cpu_count() or 1) - 1)))
    resume: bool = False
    progress: bool = True


class Augment:
    """Random rotation in [-degrees, degrees] (black fill, same size) and, with probability ``p``,
    sharpness x ``factor``; draws from torch's RNG, which Trainer seeds (and seeds per loader worker)."""

    def __init__(self, degrees: float, factor: float, p: float) -> None:
        self.degrees, self.factor, self.p = degrees, factor, p

    def __call__(self, image: Image.Image) -> Image.Image:
        angle = (torch.rand(()).item() * 2 - 1) * self.degrees
        image = image.rotate(angle, resample=Image.Resampling.BILINEAR)
        if torch.rand(()).item() < self.p:
            image = ImageEnhance.Sharpness(image).enhance(self.factor)
        return image


class Delivery:
    """What happens to a file on its way to the service, applied with probability ``p``: each of JPEG
    re-compression (quality drawn from ``jpeg_quality``), down-and-up scaling (to ``min_scale``..1 of the
    size), a WebP re-save, a Gaussian blur (radius up to ``blur``) and Gaussian noise (sigma up to
    ``noise`` grey levels) with probability 1/2 each, in an order a share-and-repost chain would take; at
    least one. Draws from torch's RNG like ``Augment``. ``steps`` records what the last call did."""

    STEPS = ("scale", "blur", "noise", "webp", "jpeg")

    def __init__(self, p: float, jpeg_quality: tuple[int, int] = (30, 95), min_scale: float = 0.5, blur: float = 1.0,
                 noise: float = 4.0) -> None:
        self.p, self.jpeg_quality, self.min_scale, self.blur, self.noise = p, jpeg_quality, min_scale, blur, noise
        self.steps: list[str] = []

    def _uniform(self, low: float, high: float) -> float:
        return low + (high - low) * torch.rand(()).item()

    def __call__(self, image: Image.Image) -> Image.Image:
        self.steps = []
        if torch.rand(()).item() >= self.p:
            return image
        chosen = [step for step in self.STEPS if torch.rand(()).item() < 0.5] or [self.STEPS[int(torch.randint(len(self.STEPS), ()))]]
        for step in chosen:
            image = getattr(self, f"_{step}")(image)
        self.steps = chosen
        return image

    def _scale(self, image: Image.Image) -> Image.Image:
        factor = self._uniform(self.min_scale, 1.0)
        small = image.resize((max(1, round(image.width * factor)), max(1, round(image.height * factor))), Image.Resampling.BILINEAR)
        return small.resize(image.size, Image.Resampling.BILINEAR)

    def _blur(self, image: Image.Image) -> Image.Image:
        return image.filter(ImageFilter.GaussianBlur(self._uniform(0.2, max(0.2, self.blur))))

    def _noise(self, image: Image.Image) -> Image.Image:
        sigma = self._uniform(0.5, max(0.5, self.noise))
        noise = torch.randn(image.height, image.width, 3).numpy() * sigma
        return Image.fromarray(np.clip(np.asarray(image, dtype=np.float32) + noise, 0, 255).astype(np.uint8))

    def _saved(self, image: Image.Image, fmt: str, quality: int) -> Image.Image:
        buffer = io.BytesIO()
        image.save(buffer, fmt, quality=quality)
        return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")

    def _webp(self, image: Image.Image) -> Image.Image:
        return self._saved(image, "WEBP", round(self._uniform(50, 90)))

    def _jpeg(self, image: Image.Image) -> Image.Image:
        low, high = self.jpeg_quality
        return self._saved(image, "JPEG", round(self._uniform(low, high)))


class ImageFolderDataset(torch.utils.data.Dataset):
    """Samples decoded as the handler decodes them, optionally augmented, then the processor's
    resize + normalise, lazily per item."""

    def __init__(self, samples: Sequence[Sample], label2id: dict[str, int], processor,
                 augment: Callable[[Image.Image], Image.Image] | None = None):
        self.samples, self.label2id, self.processor, self.augment = list(samples), label2id, processor, augment
        self.limits = handler_options().limits  # the served model's caps and JPEG draft

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        sample = self.samples[index]
        try:
            image = decode_image(sample.path.read_bytes(), self.limits)
        except (OSError, ClientError) as exc:
            raise DatasetError(f"training image {sample.path} cannot be used: {exc}") from exc
        if self.augment is not None:
            image = self.augment(image)
        pixels = self.processor(images=[image], return_tensors="pt")["pixel_values"][0]
        return {"pixel_values": pixels, "labels": self.label2id[sample.label]}


def class_order(dataset_labels: set[str], base_labels: Sequence[str], requested: Sequence[str] | None) -> tuple[str, ...]:
    """Class index order: --labels if given; else the base model's when it has the same label set (its
    head is kept); else Real, Fake when those are the labels; else sorted."""
    if requested:
        if set(requested) != dataset_labels:
            raise DatasetError(f"--labels {list(requested)} differ from the dataset's labels {sorted(dataset_labels)}")
        return tuple(requested)
    if set(base_labels) == dataset_labels:
        return tuple(base_labels)
    if dataset_labels == set(PREFERRED_ORDER):
        return PREFERRED_ORDER
    return tuple(sorted(dataset_labels))


def augmentation(settings: TrainSettings) -> Callable[[Image.Image], Image.Image]:
    """The training images' augmentation: the seed's rotation and sharpness, then delivery (if on)."""
    seed = Augment(settings.rotation_degrees, settings.sharpness_factor, settings.sharpness_p)
    if settings.delivery_p <= 0:
        return seed
    delivery = Delivery(settings.delivery_p, settings.delivery_jpeg_quality, settings.delivery_min_scale,
                        settings.delivery_blur, settings.delivery_noise)
    return Chain(seed, delivery)


class Chain:
    """Augmentations applied one after the other (a class, not a closure: loader workers may pickle it)."""

    def __init__(self, *steps: Callable[[Image.Image], Image.Image]) -> None:
        self.steps = steps

    def __call__(self, image: Image.Image) -> Image.Image:
        for step in self.steps:
            image = step(image)
        return image


REVIEWED_DIR = "reviewed"  # the run's copies of the reviewed records' crops, which its split files list
REVIEWED_FILE = "reviewed.json"  # in splits/: which store and how many records and crops the run used


def pooled_samples(settings: TrainSettings, base_labels: Sequence[str]) -> tuple[list[Sample], dict[Path, str] | None, dict | None]:
    """The folder's images and the reviewed records' crops (copied into ``<output>/reviewed/``, labelled with
    the names for real and fake of --labels, else of the folder's labels, else of the base model's), the groups
    of near-duplicates the split keeps together (None: a folder alone, one group per file), and what was read
    from the store (None: no store)."""
    from deepfake_service.records import read_settings
    from deepfake_service.records.review import ReviewError
    from deepfake_service.records.reviewed import label_names, reviewed_set
    from deepfake_service.training.reviewed import near_duplicate_groups, write_crops

    if settings.data is None and settings.records is None:
        raise DatasetError("nothing to train on: give a labelled folder (--data), a record store (--records), or both")
    folder = labelled_samples(settings.data) if settings.data is not None else []
    if settings.records is None:
        return folder, None, None
    try:
        names = label_names(settings.labels or sorted({s.label for s in folder}) or base_labels)
        reviewed = reviewed_set(settings.records, settings.records_model, settings.records_version, settings.records_since)
        if not reviewed.records and not folder:
            raise DatasetError(f"the record store {reviewed.store} holds no record labelled real or fake that kept crops "
                               f"(model {settings.records_model or 'any'}, version {settings.records_version or 'any'}; {reviewed.skipped})")
        crops, owners = write_crops(reviewed, names, settings.output / REVIEWED_DIR)  # read from the store as they are written
    except ReviewError as exc:
        raise DatasetError(str(exc)) from exc
    groups = near_duplicate_groups(reviewed, owners, folder, read_settings().match_distance, handler_options().limits)
    return folder + crops, groups, reviewed.describe()


def make_splits(settings: TrainSettings, base_labels: Sequence[str] = ()) -> tuple[list[Sample], list[Sample], list[Sample]]:
    """(train, test, calibration) before oversampling, pairwise disjoint; reread from splits/ when
    resuming so nothing moves. Calibration is empty unless ``calibration_size`` asks for it: the given
    Validation/ folder with --given-splits, else a stratified share carved out of the training images.
    With ``settings.records``, reviewed crops join the folder's images (``pooled_samples``), split by groups
    of near-duplicates; ``base_labels`` name real and fake for them."""
    split_dir = settings.output / "splits"
    if settings.resume and (split_dir / "train.csv").is_file():
        calibration_file = split_dir / "calibration.csv"
        held = read_split(calibration_file) if calibration_file.is_file() else []
        return read_split(split_dir / "train.csv"), read_split(split_dir / "test.csv"), held
    calibration: list[Sample] = []
    if settings.given_splits:
        if settings.records is not None:
            raise DatasetError("--given-splits keeps the dataset's own Train/Test folders, where reviewed records have no "
                               "place: leave it out to split folder and records together")
        splits = given_splits(settings.data)
        if not splits or "train" not in splits or "test" not in splits:
            raise DatasetError(f"{settings.data} has no Train/ and Test/ folders for --given-splits")
        train, test = splits["train"], splits["test"]
        if settings.calibration_size > 0 and splits.get("validation"):
            calibration = splits["validation"]
        elif settings.calibration_size > 0:
            train, calibration = stratified_split(train, settings.calibration_size, settings.seed)
    else:
        (split_dir / REVIEWED_FILE).unlink(missing_ok=True)  # an earlier run's
        samples, groups, reviewed = pooled_samples(settings, base_labels)
        train, test = stratified_split(samples, settings.test_size, settings.seed, groups)
        if settings.calibration_size > 0:
            count = round(settings.calibration_size * (len(train) + len(test)))  # a share of all images
            if not 0 < count < len(train):
                raise DatasetError(f"--calibration-size {settings.calibration_size} leaves no training images beside "
                                   f"--test-size {settings.test_size}")
            train, calibration = stratified_split(train, count, settings.seed, groups)
        if reviewed is not None:
            split_dir.mkdir(parents=True, exist_ok=True)
            (split_dir / REVIEWED_FILE).write_text(json.dumps(reviewed, indent=2) + "\n")
    named = {"train": train, "test": test, "calibration": calibration}
    for first, second in (("train", "test"), ("train", "calibration"), ("test", "calibration")):
        overlap = {s.path for s in named[first]} & {s.path for s in named[second]}
        if overlap:
            raise DatasetError(f"{len(overlap)} files are in both {first} and {second}, e.g. {sorted(overlap)[0]}")
    write_split(train, split_dir / "train.csv")
    write_split(test, split_dir / "test.csv")
    if calibration:
        write_split(calibration, split_dir / "calibration.csv")
    return train, test, calibration


def load_base(base_model: str):
    """(config, processor) of the base model: a local checkpoint folder or a Hub id (downloads)."""
    from transformers import ViTConfig
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

    local = Path(base_model).is_dir()
    config = ViTConfig.from_pretrained(base_model, local_files_only=local)
    processor = ViTImageProcessorPil.from_pretrained(base_model, local_files_only=local)
    return config, processor


def _described(settings: TrainSettings) -> dict:
    """The settings as JSON, the record store's URL without its password."""
    from deepfake_service.records import redacted

    described = {k: (str(v) if isinstance(v, (Path, datetime.datetime)) else v) for k, v in asdict(settings).items()}
    if settings.records is not None:
        described["records"] = redacted(settings.records) if settings.records else "(the configured store)"
    return described


def _reviewed(settings: TrainSettings) -> dict | None:
    """splits/reviewed.json: the store, records and crops a run with --records used (None: no store)."""
    found = settings.output / "splits" / REVIEWED_FILE
    return json.loads(found.read_text()) if found.is_file() else None


LOSS_POINTS = 20  # loss history points per run (or one per step when the run is shorter)


def logging_steps(train_images: int, settings: TrainSettings) -> int:
    """Steps between loss logs: about ``LOSS_POINTS`` over the run, every step for runs that short."""
    per_epoch = math.ceil(train_images / settings.batch_size)
    total = settings.max_steps if settings.max_steps > 0 else math.ceil(settings.epochs * per_epoch)
    return max(1, total // LOSS_POINTS)


def _collate(items: list[dict]) -> dict[str, torch.Tensor]:
    return {
        "pixel_values": torch.stack([item["pixel_values"] for item in items]),
        "labels": torch.tensor([item["labels"] for item in items]),
    }


def train(settings: TrainSettings) -> dict:
    """Run the whole pipeline; returns the held-out report. Raises ``DatasetError`` for unusable data."""
    from transformers import Trainer, TrainingArguments, ViTForImageClassification, set_seed
    from transformers.trainer_utils import get_last_checkpoint

    from deepfake_service.training.calibration import write_decision
    from deepfake_service.training.checkpoint_predictor import CheckpointPredictor
    from deepfake_service.training.evaluate import evaluate, write_evaluation
    from deepfake_service.training.operating_point import calibrate
    from handler.decision import DECISION_FILE

    started = time.monotonic()
    trainer_dir = settings.output / "trainer"
    if trainer_dir.is_dir() and any(trainer_dir.glob("checkpoint-*")) and not settings.resume:
        raise DatasetError(f"{settings.output} holds an earlier run: pass --resume to continue it, or another --output")
    set_seed(settings.seed)
    base_config, processor = load_base(settings.base_model)
    train_samples, test_samples, calibration_samples = make_splits(settings, labels_from_config(base_config))
    balanced = oversample(train_samples, settings.seed)
    labels = class_order({s.label for s in train_samples + test_samples + calibration_samples},
                         labels_from_config(base_config), settings.labels)
    label2id = {label: i for i, label in enumerate(labels)}
    model = ViTForImageClassification.from_pretrained(
        settings.base_model,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id=label2id,
        ignore_mismatched_sizes=True,
        use_safetensors=True,
        local_files_only=Path(settings.base_model).is_dir(),
    )
    augment = augmentation(settings)
    arguments = TrainingArguments(
        output_dir=str(trainer_dir),
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        per_device_train_batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        weight_decay=settings.weight_decay,
        seed=settings.seed,
        data_seed=settings.seed,
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=2,
        logging_steps=logging_steps(len(balanced), settings),
        eval_strategy="no",
        report_to="none",
        remove_unused_columns=False,
        dataloader_num_workers=settings.workers,
        dataloader_pin_memory=torch.cuda.is_available(),
        disable_tqdm=not settings.progress,
    )
    trainer = Trainer(
        model=model,
        args=arguments,
        train_dataset=ImageFolderDataset(balanced, label2id, processor, augment),
        data_collator=_collate,
    )
    last = get_last_checkpoint(str(trainer_dir)) if settings.resume and trainer_dir.is_dir() else None
    trainer.train(resume_from_checkpoint=last)
    trainer.save_model(str(settings.output))
    (settings.output / "training_args.bin").unlink(missing_ok=True)  # a pickle; training.json records the settings
    processor.save_pretrained(str(settings.output))

    # The held-out images are face crops like the training ones: no face stage.
    options = handler_options(runtime="torch", precision="fp32")
    (settings.output / DECISION_FILE).unlink(missing_ok=True)  # a new model needs its own operating point
    decision = None
    if calibration_samples:
        decision, described = calibrate(CheckpointPredictor(settings.output, options, "off"), calibration_samples,
                                        settings.output / "splits" / "calibration.csv", options.fake_label,
                                        settings.target_fpr, settings.uncertain_fpr, settings.batch_size, settings.progress)
        write_decision(decision, described, settings.output)
    predictor = CheckpointPredictor(settings.output, options, "off")
    evaluation = evaluate(predictor, test_samples, settings.batch_size, settings.progress)
    write_evaluation(evaluation, settings.output / "report")
    summary = {
        "settings": _described(settings),
        "labels": list(labels),
        "splits": {
            "train": len(train_samples),
            "train_oversampled": len(balanced),
            "test": len(test_samples),
            "calibration": len(calibration_samples),
            "train_per_label": {label: sum(s.label == label for s in train_samples) for label in labels},
            "train_oversampled_per_label": {label: sum(s.label == label for s in balanced) for label in labels},
        },
        "reviewed": _reviewed(settings),
        "resumed_from": last,
        "log_history": trainer.state.log_history,
        "seconds": round(time.monotonic() - started, 1),
        "test": {k: evaluation.report[k] for k in ("accuracy", "roc_auc", "per_class", "operating")},
        "decision": decision,
    }
    (settings.output / "training.json").write_text(json.dumps(summary, indent=2) + "\n")
    return evaluation.report
