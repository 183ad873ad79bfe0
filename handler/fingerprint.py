"""Perceptual hashes (PDQ, the hash moderation tools share for known content) and the in-memory index of
labelled hashes that tells an answer "seen before".

PDQ (``pdqhash``, Meta's reference C++ built from its sdist) gives 256 bits and a quality from 0 to 100.
It reduces any picture to 64x64 luminance first, so it is computed on a copy scaled to ``HASH_SIDE``
pixels on its longer side, a fraction of the cost of full-size hashing with the same distances (tests/test_records.py
holds re-saved copies near and unrelated photos far; the costs are in docs/records.md and ``make bench-records``).
Hashes whose quality is below ``MIN_QUALITY`` (flat, featureless pictures) are kept but never matched:
PDQ's own guidance is that they say little.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pdqhash
from PIL import Image

HASH_SIDE = 128
PREVIEW_SIDE = 256  # the small copy a record's hash is computed on and its thumbnail shows
HASH_BYTES = 32
MIN_QUALITY = 50
# PDQ's published operating point: pairs at most 31 bits apart are the same picture.
MATCH_DISTANCE = 31


@dataclass(frozen=True)
class Fingerprint:
    """One picture's PDQ hash (32 bytes) and its quality (0-100)."""

    hash: bytes
    quality: int

    @property
    def hex(self) -> str:
        return self.hash.hex()


def fingerprint(image: Image.Image) -> Fingerprint:
    """The PDQ hash of an RGB picture (scaled to ``HASH_SIDE`` on its longer side first)."""
    copy = image.convert("RGB") if image.mode != "RGB" else image.copy()
    copy.thumbnail((HASH_SIDE, HASH_SIDE), Image.Resampling.BILINEAR, reducing_gap=2.0)
    bits, quality = pdqhash.compute(np.ascontiguousarray(np.asarray(copy)))
    return Fingerprint(np.packbits(bits.astype(np.uint8)).tobytes(), int(quality))


def preview(image: Image.Image) -> Image.Image:
    """An RGB copy of ``image`` at most ``PREVIEW_SIDE`` on its longer side (never enlarged): reduced by an
    integer box filter, then bilinear (a fraction of a plain resize's cost). Its hash is the full picture's
    (the hash scales to ``HASH_SIDE`` anyway), and a record keeps it as the thumbnail."""
    rgb = image.convert("RGB") if image.mode != "RGB" else image
    scale = PREVIEW_SIDE / max(rgb.size)
    if scale >= 1.0:
        return rgb.copy() if rgb is image else rgb
    size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
    return rgb.resize(size, Image.Resampling.BILINEAR, reducing_gap=1.0)


def distance(a: bytes, b: bytes) -> int:
    """Hamming distance in bits between two hashes."""
    return int(np.bitwise_count(np.frombuffer(a, np.uint8) ^ np.frombuffer(b, np.uint8)).sum())


@dataclass(frozen=True)
class Labelled:
    """A human-labelled record's hash: what a match reports."""

    record: str
    label: str
    labelled_at: str
    hash: bytes


class HashIndex:
    """Labelled hashes as four columns of uint64 (a ``[4, N]`` matrix): a lookup XORs and popcounts each
    column into one running sum (``make bench-records`` times it); the nearest within
    ``max_distance`` wins. One caller at a time (its scratch buffers are reused); swap in a new index to
    change the entries."""

    def __init__(self, entries: Sequence[Labelled] = ()) -> None:
        self.entries = list(entries)
        packed = b"".join(e.hash for e in self.entries)
        rows = np.frombuffer(packed, dtype=np.uint64).reshape(-1, HASH_BYTES // 8) if packed else np.zeros((0, 4), np.uint64)
        self.columns = np.ascontiguousarray(rows.T)
        count = len(self.entries)
        self._xor, self._bits, self._sum = np.empty(count, np.uint64), np.empty(count, np.uint8), np.empty(count, np.uint16)

    def __len__(self) -> int:
        return len(self.entries)

    def nearest(self, hash: bytes, max_distance: int = MATCH_DISTANCE) -> tuple[Labelled, int] | None:
        """The closest labelled hash within ``max_distance`` bits and its distance, or None."""
        if not self.entries:
            return None
        query = np.frombuffer(hash, dtype=np.uint64)
        for column in range(HASH_BYTES // 8):
            np.bitwise_xor(self.columns[column], query[column], out=self._xor)
            np.bitwise_count(self._xor, out=self._bits)
            if column == 0:
                self._sum[:] = self._bits
            else:
                self._sum += self._bits
        best = int(self._sum.argmin())
        found = int(self._sum[best])
        return (self.entries[best], found) if found <= max_distance else None
