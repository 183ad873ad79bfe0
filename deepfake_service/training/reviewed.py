"""Reviewed records as training examples, and the groups of near-duplicates a leak-free split keeps together.

A reviewed record's kept crops (deepfake_service/records/reviewed.py) become image files of a run, labelled with
the model's name for the reviewer's real or fake. Records and folder images that show the same picture, the same
bytes (SHA-256) or PDQ hashes within the store's ``match_distance``, form one group, and so do all crops of one
record: ``stratified_split(..., groups=...)`` never puts one group on both sides.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import numpy as np

from deepfake_service.dataset import Sample
from deepfake_service.records.reviewed import ReviewedSet
from handler.errors import ClientError
from handler.fingerprint import MIN_QUALITY, fingerprint
from handler.images import ImageLimits, decode_image


def write_crops(reviewed: ReviewedSet, names: dict[str, str], folder: Path) -> tuple[list[Sample], dict[Path, str]]:
    """Each record's crops as ``folder/<record id>_<n>.jpg``, labelled ``names[record.label]`` (``label_names``),
    each written as it is read from the store (``ReviewedSet.kept_crops``); returns the samples and each crop
    file's record id. ``ReviewError`` when the store cannot be read."""
    folder.mkdir(parents=True, exist_ok=True)
    samples, owners = [], {}
    for record, number, data in reviewed.kept_crops():
        path = (folder / f"{record.id}_{number}.jpg").resolve()
        path.write_bytes(data)
        samples.append(Sample(path, names[record.label]))
        owners[path] = record.id
    return samples, owners


def file_hashes(path: Path, limits: ImageLimits) -> tuple[str, bytes | None]:
    """A folder image's SHA-256 (hex, of its bytes) and PDQ hash as the service computes it on the decoded
    picture (None when unreadable or below ``MIN_QUALITY``)."""
    data = path.read_bytes()
    try:
        found = fingerprint(decode_image(data, limits))
    except (OSError, ClientError):
        return hashlib.sha256(data).hexdigest(), None
    return hashlib.sha256(data).hexdigest(), found.hash if found.quality >= MIN_QUALITY else None


class _Groups:
    """Union-find over node indices."""

    def __init__(self, count: int) -> None:
        self.parent = list(range(count))

    def find(self, node: int) -> int:
        while self.parent[node] != node:
            self.parent[node] = self.parent[self.parent[node]]
            node = self.parent[node]
        return node

    def join(self, a: int, b: int) -> None:
        self.parent[self.find(a)] = self.find(b)


def near_duplicate_groups(reviewed: ReviewedSet, owners: dict[Path, str], folder: Sequence[Sample], match_distance: int,
                          limits: ImageLimits) -> dict[Path, str]:
    """Each sample's group (the key ``stratified_split`` takes): the crops of a record are one group, joined with
    every record and folder image of the same SHA-256, and with every one whose PDQ hash is within
    ``match_distance`` bits of a record's. Folder images are compared by PDQ with the records, not with each other
    (files with the same bytes are joined; a folder-only split keeps one group per file), so the work is O(records x all samples), one vectorised
    pass per record; hashing the folder (decoding every image once) costs more than that."""
    ids = [r.id for r in reviewed.records]
    hashed = [(r.sha256, r.pdq) for r in reviewed.records] + [file_hashes(s.path, limits) for s in folder]
    groups = _Groups(len(hashed))
    first_of: dict[str, int] = {}
    for node, (sha256, _) in enumerate(hashed):
        if sha256:
            groups.join(node, first_of.setdefault(sha256, node))
    with_pdq = [node for node, (_, pdq) in enumerate(hashed) if pdq is not None]
    if with_pdq:
        matrix = np.frombuffer(b"".join(hashed[node][1] for node in with_pdq), np.uint8).reshape(len(with_pdq), -1)
        for row, node in enumerate(with_pdq):
            if node >= len(ids):
                break  # records come first; folder images are not compared with each other
            bits = np.bitwise_count(matrix ^ matrix[row]).sum(axis=1)
            for near in np.flatnonzero(bits <= match_distance):
                groups.join(node, with_pdq[near])
    names = [*ids, *(str(s.path) for s in folder)]
    node_of = {record_id: node for node, record_id in enumerate(ids)}
    keyed = {path: names[groups.find(node_of[record_id])] for path, record_id in owners.items()}
    keyed.update({s.path: names[groups.find(len(ids) + index)] for index, s in enumerate(folder)})
    return keyed
