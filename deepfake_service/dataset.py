"""Labelled image folders, leak-free splits and training-set oversampling.

Two layouts are read:
  * ``root/<label>/*`` (any class-per-folder dataset), and
  * ``root/{Train,Validation,Test}/<label>/*`` (Kaggle's "Deepfake and Real Images"; the folder that
    holds its ``Dataset/`` works too).
Split files are CSVs of ``path,label`` that training writes and evaluation, scoring and the
int8 gate read back, so every step sees exactly the same held-out images.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi"})
# What evaluate and score read: images and videos (one row per file); training reads images only.
MEDIA_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES
SPLIT_FOLDERS = ("train", "validation", "test")  # matched case-insensitively


class DatasetError(Exception):
    """A folder or split file that cannot be used as a labelled dataset."""


@dataclass(frozen=True, order=True)
class Sample:
    path: Path
    label: str


def image_files(folder: Path, suffixes: frozenset[str] = IMAGE_SUFFIXES) -> list[Path]:
    """Files under ``folder`` (recursive) with one of ``suffixes`` (images by default), sorted; raises
    ``DatasetError`` when there are none."""
    if not folder.is_dir():
        raise DatasetError(f"{folder} is not a folder")
    files = sorted(p.resolve() for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
    if not files:
        raise DatasetError(f"{folder} holds no {'images' if suffixes == IMAGE_SUFFIXES else 'images or videos'} "
                           f"(looked for {', '.join(sorted(suffixes))})")
    return files


def _split_folders(root: Path) -> dict[str, Path]:
    return {p.name.lower(): p for p in root.iterdir() if p.is_dir() and p.name.lower() in SPLIT_FOLDERS}


def _class_folders(root: Path, suffixes: frozenset[str] = IMAGE_SUFFIXES) -> list[Sample]:
    samples = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        samples += [Sample(path, sub.name) for path in image_files(sub, suffixes)]
    return samples


def dataset_root(root: Path) -> Path:
    """``root``, or its one sub-folder when that holds the split folders: Kaggle's download unzips to
    ``Dataset/{Train,Validation,Test}``, and either folder may be given."""
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder")
    if _split_folders(root):
        return root
    subfolders = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if len(subfolders) == 1 and _split_folders(subfolders[0]):
        return subfolders[0]
    return root


def labelled_samples(root: Path, suffixes: frozenset[str] = IMAGE_SUFFIXES) -> list[Sample]:
    """Every labelled image (or file with one of ``suffixes``) under ``root``, in either layout (split
    folders are pooled)."""
    root = dataset_root(root)
    splits = _split_folders(root)
    samples = ([s for folder in splits.values() for s in _class_folders(folder, suffixes)] if splits
               else _class_folders(root, suffixes))
    if not samples:
        raise DatasetError(f"{root} has no <label>/ sub-folders with images")
    return sorted(samples)


def given_splits(root: Path) -> dict[str, list[Sample]] | None:
    """The dataset's own Train/Validation/Test folders as ``{"train": [...], ...}``, or None if it has none."""
    splits = _split_folders(dataset_root(root))
    return {name: sorted(_class_folders(folder)) for name, folder in splits.items()} or None


def stratified_split(samples: list[Sample], test_size: float | int, seed: int,
                     groups: Mapping[Path, str] | None = None) -> tuple[list[Sample], list[Sample]]:
    """(train, test) with each label in the same proportion in both; deterministic for a seed. ``test_size``
    is a fraction, or a count of images. ``groups`` (a sample's path -> its group) keeps each group on one
    side: the groups are split, stratified by their most common label, and a count becomes the same share of
    the groups; None: every file is its own group (the folder datasets' split, unchanged)."""
    if groups is not None:
        return _group_split(samples, test_size, seed, groups)
    labels = [s.label for s in samples]
    _check_splittable(Counter(labels), "images")
    from sklearn.model_selection import train_test_split  # the train extra; building an archive needs none of it

    train, test = train_test_split(samples, test_size=test_size, random_state=seed, stratify=labels)
    return sorted(train), sorted(test)


def _check_splittable(counts: Counter, what: str) -> None:
    if len(counts) < 2:
        raise DatasetError(f"need at least two labels, found {sorted(counts)}")
    if min(counts.values()) < 2:
        raise DatasetError(f"every label needs at least two {what} to split, found {dict(counts)}")


def _group_split(samples: list[Sample], test_size: float | int, seed: int,
                 groups: Mapping[Path, str]) -> tuple[list[Sample], list[Sample]]:
    members: dict[str, list[Sample]] = {}
    for sample in samples:
        members.setdefault(groups.get(sample.path, str(sample.path)), []).append(sample)
    keys = sorted(members)
    labels = [Counter(s.label for s in members[key]).most_common(1)[0][0] for key in keys]
    _check_splittable(Counter(labels), "groups of near-duplicates")
    if isinstance(test_size, int):
        test_size = min(len(keys) - 1, max(1, round(test_size * len(keys) / len(samples))))
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(keys, test_size=test_size, random_state=seed, stratify=labels)
    return sorted(s for key in train for s in members[key]), sorted(s for key in test for s in members[key])


def oversample(samples: list[Sample], seed: int) -> list[Sample]:
    """Random oversampling: repeat randomly chosen images of each smaller label until every label
    has as many as the largest. Apply to the training split only (after splitting), so no copy of
    a held-out image can land in training."""
    by_label: dict[str, list[Sample]] = {}
    for sample in samples:
        by_label.setdefault(sample.label, []).append(sample)
    target = max(len(group) for group in by_label.values())
    rng = np.random.default_rng(seed)
    result = list(samples)
    for label in sorted(by_label):
        group = by_label[label]
        extra = rng.choice(len(group), size=target - len(group), replace=True) if len(group) < target else []
        result += [group[i] for i in extra]
    order = rng.permutation(len(result))
    return [result[i] for i in order]


def write_split(samples: list[Sample], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        writer.writerows([str(s.path), s.label] for s in samples)
    return path


def read_split(path: Path) -> list[Sample]:
    """Samples from a ``path,label`` CSV written by ``write_split``."""
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        samples = [Sample(Path(row["path"]), row["label"]) for row in rows]
    except (OSError, KeyError, TypeError) as exc:
        raise DatasetError(f"{path} is not a split file with path,label columns: {exc}") from exc
    if not samples:
        raise DatasetError(f"{path} lists no images")
    return samples


def load_samples(source: Path, suffixes: frozenset[str] = IMAGE_SUFFIXES) -> list[Sample]:
    """A labelled folder (either layout; files with one of ``suffixes``) or a split CSV."""
    return read_split(source) if source.suffix.lower() == ".csv" else labelled_samples(source, suffixes)


def check_labels(samples: list[Sample], labels: tuple[str, ...]) -> None:
    """Raise ``DatasetError`` if a sample's label is not one of the model's ``labels``."""
    unknown = sorted({s.label for s in samples} - set(labels))
    if unknown:
        raise DatasetError(f"labels {unknown} in the data are not the model's labels {list(labels)}")
