"""Fine-tune a ViT image classifier on a class-per-folder dataset, reviewed records, or both, with HF Trainer, leak-free.

Steps: list the labelled images -> stratified train/test split (or the dataset's own Train/Test folders)
-> random oversampling of the *training* split only -> fine-tune (random rotation + sharpness augmentation, then
delivery augmentation: JPEG re-compression, down-and-up scaling, WebP, blur, noise, on training images; test images
only resized + normalised by the checkpoint's processor) -> evaluate on
the held-out split. With --calibration-size, a further stratified share of the images (never trained
on, never tested on) sets the operating point (scripts.calibrate) before the held-out evaluation. Defaults are those of the reference fine-tune of
dima806/deepfake_vs_real_image_detection: 60/40 split, 2 epochs, batch 32, lr 1e-6, weight decay 0.02.

With --records URL, the store's reviewed records (latest label real or fake; unsure, unlabelled and probe
records left out) train too: each kept crop (already the model's input size) is one image labelled with the base
model's own name for real or fake (a model without both is refused), copied into <output>/reviewed/. Folder images
and records are split together, stratified, by groups: the crops of one record, and records and folder images with
the same SHA-256 or PDQ hashes within the store's match_distance (config/records.yaml), stay on one side.

Writes into --output:
  model.safetensors, config.json, preprocessor_config.json   the checkpoint, ready for scripts.build_mar
  splits/train.csv, splits/test.csv    path,label of each split before oversampling (for evaluate, score
                                       and build_mar --calibration/--validation)
  splits/calibration.csv, decision.json   with --calibration-size: the calibration split and the operating
                                       point set on it (temperature, fake and uncertain thresholds)
  training.json                        settings, split sizes, loss history, duration
  report/                              held-out metrics.json, confusion_matrix.png, roc_curve.png,
                                       reliability.png, predictions.csv
  trainer/                             Trainer checkpoints; --resume continues from the last one
  reviewed/, splits/reviewed.json      with --records: copies of the crops used (personal data: delete the run
                                       folder with the records it came from) and the store (no password),
                                       records and crops used (also in training.json)

  python -m scripts.train --data Dataset/ --base-model dima806/deepfake_vs_real_image_detection --output runs/exp1
  python -m scripts.train --records sqlite:///var/records.sqlite3 --data Dataset/ --base-model runs/exp1 --output runs/exp2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deepfake_service.dataset import (
    DatasetError,
)
from deepfake_service.records.reviewed import add_records_arguments
from deepfake_service.training.train import TrainSettings, train


def main(argv: list[str] | None = None) -> None:
    defaults = TrainSettings(data=Path("."), output=Path("."))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="root/<label>/* or root/{Train,Validation,Test}/<label>/* (--data, --records or both)")
    add_records_arguments(parser)
    parser.add_argument("--output", type=Path, required=True, help="run folder (checkpoint, splits, report)")
    parser.add_argument("--base-model", default=defaults.base_model, help="local checkpoint folder or Hub id (default: %(default)s)")
    parser.add_argument("--labels", help="comma-separated class order, e.g. Real,Fake (default: the base model's, else Real,Fake, else sorted)")
    parser.add_argument("--test-size", type=float, default=defaults.test_size, help="held-out fraction, stratified (default: %(default)s)")
    parser.add_argument("--given-splits", action="store_true", help="use the dataset's Train/ and Test/ folders instead of splitting")
    parser.add_argument("--calibration-size", type=float, default=defaults.calibration_size,
                        help="fraction of all images held out to set the operating point (with --given-splits: the "
                             "Validation/ folder when there is one); 0: no calibration (default: %(default)s)")
    parser.add_argument("--target-fpr", type=float, default=defaults.target_fpr,
                        help="with --calibration-size: false-positive rate of the fake verdict (default: %(default)s)")
    parser.add_argument("--uncertain-fpr", type=float, default=defaults.uncertain_fpr,
                        help="with --calibration-size: the looser rate that starts the uncertain band (default: %(default)s)")
    parser.add_argument("--epochs", type=float, default=defaults.epochs, help="(default: %(default)s)")
    parser.add_argument("--max-steps", type=int, default=defaults.max_steps, help="stop after this many steps; -1: run all epochs (default)")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="(default: %(default)s)")
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate, help="(default: %(default)s)")
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay, help="(default: %(default)s)")
    parser.add_argument("--rotation-degrees", type=float, default=defaults.rotation_degrees, help="augmentation: random rotation range (default: %(default)s)")
    parser.add_argument("--sharpness-factor", type=float, default=defaults.sharpness_factor, help="augmentation: sharpness factor (default: %(default)s)")
    parser.add_argument("--sharpness-p", type=float, default=defaults.sharpness_p, help="augmentation: sharpness probability (default: %(default)s)")
    parser.add_argument("--delivery-p", type=float, default=defaults.delivery_p,
                        help="augmentation: probability an image is re-delivered (JPEG, down-and-up scaling, WebP, blur, noise; "
                             "0: off) (default: %(default)s)")
    parser.add_argument("--delivery-jpeg-quality", type=int, nargs=2, default=defaults.delivery_jpeg_quality, metavar=("LOW", "HIGH"),
                        help="augmentation: JPEG quality range (default: %(default)s)")
    parser.add_argument("--delivery-min-scale", type=float, default=defaults.delivery_min_scale,
                        help="augmentation: smallest down-scaling before scaling back (default: %(default)s)")
    parser.add_argument("--delivery-blur", type=float, default=defaults.delivery_blur, help="augmentation: largest blur radius (default: %(default)s)")
    parser.add_argument("--delivery-noise", type=float, default=defaults.delivery_noise,
                        help="augmentation: largest noise sigma in grey levels (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="split, oversampling, init and order (default: %(default)s)")
    parser.add_argument("--save-steps", type=int, default=defaults.save_steps, help="Trainer checkpoint every N steps (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=defaults.workers, help="data loader processes (default: %(default)s)")
    parser.add_argument("--resume", action="store_true", help="continue from the last Trainer checkpoint in --output")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.data is None and args.records is None:
        parser.error("give --data, --records, or both")
    settings = TrainSettings(
        data=args.data, output=args.output, base_model=args.base_model,
        labels=tuple(args.labels.split(",")) if args.labels else None,
        test_size=args.test_size, calibration_size=args.calibration_size, target_fpr=args.target_fpr,
        uncertain_fpr=args.uncertain_fpr, given_splits=args.given_splits, epochs=args.epochs, max_steps=args.max_steps,
        batch_size=args.batch_size, learning_rate=args.learning_rate, weight_decay=args.weight_decay,
        rotation_degrees=args.rotation_degrees, sharpness_factor=args.sharpness_factor, sharpness_p=args.sharpness_p,
        delivery_p=args.delivery_p, delivery_jpeg_quality=tuple(args.delivery_jpeg_quality), delivery_min_scale=args.delivery_min_scale,
        delivery_blur=args.delivery_blur, delivery_noise=args.delivery_noise,
        seed=args.seed, records=args.records, records_model=args.records_model, records_version=args.records_version,
        records_since=args.records_since, save_steps=args.save_steps, workers=args.workers, resume=args.resume, progress=not args.no_progress,
    )
    try:
        report = train(settings)
    except DatasetError as exc:
        sys.exit(f"train: {exc}")
    from deepfake_service.training.report import summary

    print(f"held-out report in {settings.output / 'report'}")
    print(summary(report))
    print(f"checkpoint: {settings.output} (serve it: make serve CHECKPOINT={settings.output})")


if __name__ == "__main__":
    main()
