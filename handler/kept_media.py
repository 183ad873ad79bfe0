"""What a record keeps of the media it judged (the record store's ``keep_media``, docs/records.md): the crops
as the model received them (its processor's output, turned back into pixels), each with its own verdict, P(fake)
and box, and with ``crops+thumbnail`` a small thumbnail of the whole picture (a clip: a sampled frame), as
JPEG files in ``record_media`` rows (handler/store.py) written with the record and deleted with it. Only
reviewers read them (page/server.py). A video keeps each person's deciding frames, not every frame.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from handler.analysis import Analysis
from handler.fingerprint import PREVIEW_SIDE
from handler.store import PROBE
from handler.verdicts import Verdict

THUMBNAIL_SIDE = PREVIEW_SIDE  # the thumbnail's longer side, in pixels: the subjects' ``picture`` is already that small
JPEG_QUALITY = 90
MOST_CROPS = 12  # a record keeps at most this many crops (the subjects' ``shown`` order)


@dataclass(frozen=True)
class CropShape:
    """What the model's processor does to a crop: resizes it to ``size`` (width, height) with ``resample``,
    scales by ``rescale`` (None: not) and normalises with ``mean`` and ``std`` (None: not), so that its pixels
    can be turned back into the picture the model received."""

    size: tuple[int, int] = (224, 224)
    resample: int = Image.Resampling.BILINEAR
    rescale: float | None = 1 / 255
    mean: tuple[float, ...] | None = (0.5, 0.5, 0.5)
    std: tuple[float, ...] | None = (0.5, 0.5, 0.5)

    @classmethod
    def of(cls, processor) -> "CropShape":
        """The shape ``processor`` (a ViT image processor) gives its inputs."""
        size = dict(getattr(processor, "size", None) or {})
        if "width" in size and "height" in size:
            shape = (int(size["width"]), int(size["height"]))
        else:  # a processor that sizes by the shortest edge: a face crop is square, so that edge squared
            side = int(size.get("shortest_edge", 224))
            shape = (side, side)
        resample = getattr(processor, "resample", None)
        normalize = getattr(processor, "do_normalize", False)
        return cls(shape, int(resample) if resample is not None else Image.Resampling.BILINEAR,
                   float(processor.rescale_factor) if getattr(processor, "do_rescale", False) else None,
                   tuple(processor.image_mean) if normalize else None, tuple(processor.image_std) if normalize else None)

    def picture(self, pixels: torch.Tensor) -> Image.Image:
        """The RGB picture whose processing gave ``pixels`` ([3, H, W], as the model received them)."""
        values = pixels.detach().float().cpu().numpy()
        if self.std is not None and self.mean is not None:
            values = values * np.asarray(self.std).reshape(-1, 1, 1) + np.asarray(self.mean).reshape(-1, 1, 1)
        if self.rescale is not None:
            values = values / self.rescale
        return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8).transpose(1, 2, 0))

    def resized(self, crop: Image.Image) -> Image.Image:
        """``crop`` resized as the processor resizes it (for a crop whose pixels were not kept)."""
        return crop.convert("RGB").resize(self.size, self.resample)


def media_rows(analysis: Analysis, record_id: str, keep: str, shape: CropShape, fake_label: str) -> list[dict[str, Any]]:
    """The ``record_media`` rows of one analysis under ``keep`` (none | crops | crops+thumbnail): nothing for
    ``none``, an error, or a probe; else the thumbnail first (when kept), then the crops."""
    if keep == "none" or analysis.error is not None or analysis.outcome is None or analysis.request.route == PROBE:
        return []
    subjects = analysis.subjects
    rows: list[dict[str, Any]] = []
    if keep == "crops+thumbnail" and subjects.picture is not None:
        rows.append(_row(subjects.picture, kind="thumbnail"))  # already the preview, at most THUMBNAIL_SIDE
    scores = [verdict.probabilities.get(fake_label, 0.0) for verdict in analysis.verdicts]  # the order shown
    for index in subjects.shown(analysis.outcome, scores)[:MOST_CROPS]:
        verdict: Verdict = analysis.verdicts[index]
        subject, time, box = subjects.place(index)
        # the model's own input, turned back into a picture (no second resize); else resized the processor's way
        crop = shape.picture(analysis.inputs[index]) if index < len(analysis.inputs) else shape.resized(subjects.crops[index])
        rows.append(_row(crop, kind="crop", subject=subject, time=time, box=None if box is None else box.as_list(),
                         verdict=verdict.verdict, p_fake=verdict.probabilities.get(fake_label)))  # None: no such label
    for position, row in enumerate(rows):
        row.update(record_id=record_id, position=position)
    return rows


def _row(image: Image.Image, **fields) -> dict[str, Any]:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=JPEG_QUALITY)
    row = {"kind": fields.pop("kind"), "subject": None, "time": None, "box": None, "verdict": None, "p_fake": None,
           "width": image.width, "height": image.height, "content_type": "image/jpeg", "data": buffer.getvalue()}
    row.update(fields)
    return row
