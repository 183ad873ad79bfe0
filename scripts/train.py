"""Fine-tune a ViT image classifier on a class-per-folder dataset with HF Trainer, leak-free.

Steps: list the labelled images -> stratified train/test split (or the dataset's own Train/Test folders)
-> random oversampling of the *training* split only -> fine-tune (random rotation + sharpness augmentation
on training images; test images only resized + normalised by the checkpoint's processor) -> evaluate on
the held-out split. Defaults are those of the reference fine-tune of
dima806/deepfake_vs_real_image_detection: 60/40 split, 2 epochs, batch 32, lr 1e-6, weight decay 0.02.

Writes into --output:
  model.safetensors, config.json, preprocessor_config.json   the checkpoint, ready for scripts.build_mar
  splits/train.csv, splits/test.csv    path,label of each split before oversampling (for evaluate, score
                                       and build_mar --calibration/--validation)
  training.json                        settings, split sizes, loss history, duration
  report/                              held-out metrics.json, confusion_matrix.png, roc_curve.png,
                                       reliability.png, predictions.csv
  trainer/                             Trainer checkpoints; --resume continues from the last one

  python -m scripts.train --data Dataset/ --base-model dima806/deepfake_vs_real_image_detection --output runs/exp1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image, ImageEnhance

from handler.checkpoint import labels_from_config
from handler.errors import ClientError
from handler.images import ImageLimits, decode_image
from scripts.dataset import (
    DatasetError,
    Sample,
    given_splits,
    labelled_samples,
    oversample,
    read_split,
    stratified_split,
    write_split,
)

DEFAULT_BASE_MODEL = "dima806/deepfake_vs_real_image_detection"
PREFERRED_ORDER = ("Real", "Fake")  # the reference model's class indices: Real=0, Fake=1


@dataclass
class TrainSettings:
    data: Path
    output: Path
    base_model: str = DEFAULT_BASE_MODEL
    labels: tuple[str, ...] | None = None
    test_size: float = 0.4
    given_splits: bool = False
    epochs: float = 2.0
    max_steps: int = -1
    batch_size: int = 32
    learning_rate: float = 1e-6
    weight_decay: float = 0.02
    rotation_degrees: float = 90.0
    sharpness_factor: float = 2.0
    sharpness_p: float = 0.5
    seed: int = 42
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


class ImageFolderDataset(torch.utils.data.Dataset):
    """Samples decoded as the handler decodes them, optionally augmented, then the processor's
    resize + normalise, lazily per item."""

    def __init__(self, samples: Sequence[Sample], label2id: dict[str, int], processor, augment: Augment | None = None):
        self.samples, self.label2id, self.processor, self.augment = list(samples), label2id, processor, augment
        self.limits = ImageLimits(max_bytes=64 * 1024 * 1024, max_pixels=100_000_000, jpeg_draft_side=0)

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


def make_splits(settings: TrainSettings) -> tuple[list[Sample], list[Sample]]:
    """(train, test) before oversampling; reread from splits/ when resuming so nothing moves."""
    split_dir = settings.output / "splits"
    if settings.resume and (split_dir / "train.csv").is_file():
        return read_split(split_dir / "train.csv"), read_split(split_dir / "test.csv")
    if settings.given_splits:
        splits = given_splits(settings.data)
        if not splits or "train" not in splits or "test" not in splits:
            raise DatasetError(f"{settings.data} has no Train/ and Test/ folders for --given-splits")
        train, test = splits["train"], splits["test"]
    else:
        train, test = stratified_split(labelled_samples(settings.data), settings.test_size, settings.seed)
    overlap = {s.path for s in train} & {s.path for s in test}
    if overlap:
        raise DatasetError(f"{len(overlap)} files are in both train and test, e.g. {sorted(overlap)[0]}")
    write_split(train, split_dir / "train.csv")
    write_split(test, split_dir / "test.csv")
    return train, test


def load_base(base_model: str):
    """(config, processor) of the base model: a local checkpoint folder or a Hub id (downloads)."""
    from transformers import ViTConfig
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

    local = Path(base_model).is_dir()
    config = ViTConfig.from_pretrained(base_model, local_files_only=local)
    processor = ViTImageProcessorPil.from_pretrained(base_model, local_files_only=local)
    return config, processor


def _collate(items: list[dict]) -> dict[str, torch.Tensor]:
    return {
        "pixel_values": torch.stack([item["pixel_values"] for item in items]),
        "labels": torch.tensor([item["labels"] for item in items]),
    }


def train(settings: TrainSettings) -> dict:
    """Run the whole pipeline; returns the held-out report. Raises ``DatasetError`` for unusable data."""
    from transformers import Trainer, TrainingArguments, ViTForImageClassification, set_seed
    from transformers.trainer_utils import get_last_checkpoint

    from scripts.evaluate import evaluate, write_evaluation
    from scripts.predictors import CheckpointPredictor, handler_options

    started = time.monotonic()
    trainer_dir = settings.output / "trainer"
    if trainer_dir.is_dir() and any(trainer_dir.glob("checkpoint-*")) and not settings.resume:
        raise DatasetError(f"{settings.output} holds an earlier run: pass --resume to continue it, or another --output")
    set_seed(settings.seed)
    train_samples, test_samples = make_splits(settings)
    balanced = oversample(train_samples, settings.seed)
    base_config, processor = load_base(settings.base_model)
    labels = class_order({s.label for s in train_samples} | {s.label for s in test_samples},
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
    augment = Augment(settings.rotation_degrees, settings.sharpness_factor, settings.sharpness_p)
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
        logging_steps=max(1, min(50, settings.save_steps)),
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
    predictor = CheckpointPredictor(settings.output, handler_options(
        Path(__file__).resolve().parent.parent / "config" / "model-config.yaml", runtime="torch", precision="fp32"), "off")
    evaluation = evaluate(predictor, test_samples, settings.batch_size, settings.progress)
    write_evaluation(evaluation, settings.output / "report")
    summary = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(settings).items()},
        "labels": list(labels),
        "splits": {
            "train": len(train_samples),
            "train_oversampled": len(balanced),
            "test": len(test_samples),
            "train_per_label": {label: sum(s.label == label for s in train_samples) for label in labels},
            "train_oversampled_per_label": {label: sum(s.label == label for s in balanced) for label in labels},
        },
        "resumed_from": last,
        "log_history": trainer.state.log_history,
        "seconds": round(time.monotonic() - started, 1),
        "test": {k: evaluation.report[k] for k in ("accuracy", "roc_auc", "per_class")},
    }
    (settings.output / "training.json").write_text(json.dumps(summary, indent=2) + "\n")
    return evaluation.report


def main(argv: list[str] | None = None) -> None:
    defaults = TrainSettings(data=Path("."), output=Path("."))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="root/<label>/* or root/{Train,Validation,Test}/<label>/*")
    parser.add_argument("--output", type=Path, required=True, help="run folder (checkpoint, splits, report)")
    parser.add_argument("--base-model", default=defaults.base_model, help="local checkpoint folder or Hub id (default: %(default)s)")
    parser.add_argument("--labels", help="comma-separated class order, e.g. Real,Fake (default: the base model's, else Real,Fake, else sorted)")
    parser.add_argument("--test-size", type=float, default=defaults.test_size, help="held-out fraction, stratified (default: %(default)s)")
    parser.add_argument("--given-splits", action="store_true", help="use the dataset's Train/ and Test/ folders instead of splitting")
    parser.add_argument("--epochs", type=float, default=defaults.epochs, help="(default: %(default)s)")
    parser.add_argument("--max-steps", type=int, default=defaults.max_steps, help="stop after this many steps; -1: run all epochs (default)")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="(default: %(default)s)")
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate, help="(default: %(default)s)")
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay, help="(default: %(default)s)")
    parser.add_argument("--rotation-degrees", type=float, default=defaults.rotation_degrees, help="augmentation: random rotation range (default: %(default)s)")
    parser.add_argument("--sharpness-factor", type=float, default=defaults.sharpness_factor, help="augmentation: sharpness factor (default: %(default)s)")
    parser.add_argument("--sharpness-p", type=float, default=defaults.sharpness_p, help="augmentation: sharpness probability (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="split, oversampling, init and order (default: %(default)s)")
    parser.add_argument("--save-steps", type=int, default=defaults.save_steps, help="Trainer checkpoint every N steps (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=defaults.workers, help="data loader processes (default: %(default)s)")
    parser.add_argument("--resume", action="store_true", help="continue from the last Trainer checkpoint in --output")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    settings = TrainSettings(
        data=args.data, output=args.output, base_model=args.base_model,
        labels=tuple(args.labels.split(",")) if args.labels else None,
        test_size=args.test_size, given_splits=args.given_splits, epochs=args.epochs, max_steps=args.max_steps,
        batch_size=args.batch_size, learning_rate=args.learning_rate, weight_decay=args.weight_decay,
        rotation_degrees=args.rotation_degrees, sharpness_factor=args.sharpness_factor, sharpness_p=args.sharpness_p,
        seed=args.seed, save_steps=args.save_steps, workers=args.workers, resume=args.resume, progress=not args.no_progress,
    )
    try:
        report = train(settings)
    except DatasetError as exc:
        sys.exit(f"train: {exc}")
    from scripts.report import summary

    print(f"held-out report in {settings.output / 'report'}")
    print(summary(report))
    print(f"checkpoint: {settings.output} (package it: python -m scripts.build_mar --checkpoint {settings.output} ...)")


if __name__ == "__main__":
    main()
