"""A seeded mutation fuzz: small valid files of every accepted kind (images, clips, files carrying
C2PA/XMP/PNG-text metadata), each mutated in ways files really break (bit flips, truncation, inserted,
zeroed or repeated ranges, a scrambled header, trailing garbage). Deterministic for a seed; nothing is
kept in git. ``python -m tests.fuzz DIR`` writes the cases, to replay with curl."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from deepfake_service.samples import imagegen, provenancegen, videogen


def seeds() -> dict[str, bytes]:
    """One small valid file per kind the service takes."""
    picture = imagegen.pattern(64, 48, seed=11)
    clip = dict(count=4, size=(64, 48), people=0)
    return {
        "jpeg": imagegen.encode(picture, "JPEG", quality=85),
        "png": imagegen.encode(picture, "PNG"),
        "webp": imagegen.encode(picture, "WEBP"),
        "gif": imagegen.animated("GIF"),
        "tiff": imagegen.encode(picture, "TIFF"),
        "avif": imagegen.avif(picture),
        "heic": imagegen.heic(picture),
        "mp4": videogen.clip(**clip),
        "webm": videogen.clip(**clip, codec="libvpx-vp9", fmt="webm"),
        "mov": videogen.clip(**clip, fmt="mov"),
        "avi": videogen.clip(**clip, codec="mpeg4", fmt="avi"),
        "mkv": videogen.clip(**clip, fmt="matroska"),
        "c2pa jpeg": provenancegen.signed(imagegen.jpeg(seed=12, width=64, height=48), "image/jpeg"),
        "xmp jpeg": provenancegen.xmp_jpeg(),
        "png text": provenancegen.parameters_png(),
    }


def mutate(data: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    """One mutation of ``data``: its name and the mutated bytes."""
    size = len(data)
    at = int(rng.integers(0, size))
    span = int(rng.integers(1, max(2, min(256, size // 4))))
    kind = int(rng.integers(0, 7))
    buffer = bytearray(data)
    if kind == 0:  # a few flipped bits anywhere
        for spot in rng.integers(0, size, int(rng.integers(1, 9))):
            buffer[spot] ^= 1 << int(rng.integers(0, 8))
        return "bit flips", bytes(buffer)
    if kind == 1:
        return "truncated", data[:at]
    if kind == 2:
        return "random bytes inserted", data[:at] + rng.integers(0, 256, span, dtype=np.uint8).tobytes() + data[at:]
    if kind == 3:
        buffer[at : at + span] = bytes(len(buffer[at : at + span]))
        return "range zeroed", bytes(buffer)
    if kind == 4:
        return "range repeated", data[: at + span] + data[at : at + span] * int(rng.integers(2, 6)) + data[at + span :]
    if kind == 5:  # the header, where lengths, sizes and offsets live
        for spot in rng.integers(0, min(size, 96), int(rng.integers(1, 6))):
            buffer[spot] = int(rng.integers(0, 256))
        return "header scrambled", bytes(buffer)
    return "garbage appended", data + rng.integers(0, 256, span * 8, dtype=np.uint8).tobytes()


def cases(count: int = 510, seed: int = 2026) -> list[tuple[str, bytes]]:
    """``count`` mutated files, cycling through the kinds; deterministic for ``seed``."""
    rng = np.random.default_rng(seed)
    bases = seeds()
    names = list(bases)
    found = []
    for number in range(count):
        kind = names[number % len(names)]
        how, body = mutate(bases[kind], rng)
        found.append((f"{number:03d} {kind}: {how}", body))
    return found


def main(argv: list[str] | None = None) -> None:
    target = Path((argv or sys.argv[1:] or ["results/fuzz"])[0])
    target.mkdir(parents=True, exist_ok=True)
    for name, body in cases():
        (target / ("".join(c if c.isalnum() else "_" for c in name) + ".bin")).write_bytes(body)
    print(f"wrote the cases to {target}")


if __name__ == "__main__":
    main()
